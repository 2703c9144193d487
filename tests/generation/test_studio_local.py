"""``python -m generation studio OUT_DIR``: the page over a folder, read-only, on loopback."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from generation.stems.output import LocalFolder
from generation.studio import site
from generation.studio.local import DEFAULT_HOST, FolderError, make_server, url_of
from tests.browser import chromium, console_errors, screenshot, wait_for
from tests.studio_sets import write_set

REQUEST_ID = "cli-0123456789ab"


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    folder = tmp_path / "out"
    write_set(LocalFolder(folder), REQUEST_ID)
    server = make_server(folder, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield url_of(server), folder
    server.shutdown()
    server.server_close()


def fetch(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_it_listens_on_loopback_by_default(tmp_path):
    write_set(LocalFolder(tmp_path), REQUEST_ID)
    server = make_server(tmp_path, port=0)
    try:
        assert server.server_address[0] == DEFAULT_HOST == "127.0.0.1"
    finally:
        server.server_close()


def test_a_folder_without_a_manifest_is_refused(tmp_path):
    with pytest.raises(FolderError, match="no readable manifest"):
        make_server(tmp_path, port=0)
    (tmp_path / "manifest.json").write_text('{"not": "a manifest"}')
    with pytest.raises(FolderError, match="not a manifest"):
        make_server(tmp_path, port=0)


def test_the_same_page_is_served_with_the_same_policy(studio):
    url, _ = studio
    status, headers, body = fetch(url)
    assert status == 200 and body == (site.STATIC_DIR / "index.html").read_bytes()
    assert headers["Content-Security-Policy"] == site.CONTENT_SECURITY_POLICY
    for name in ("studio.js", "studio.css"):
        status, headers, body = fetch(f"{url}studio/{name}")
        assert status == 200 and body == (site.STATIC_DIR / name).read_bytes()


def test_the_config_says_read_only_and_names_the_folders_set(studio):
    url, _ = studio
    config = json.loads(fetch(f"{url}studio/config.json")[2])
    assert config["mode"] == "local" and config["read_only"] is True
    assert config["generation_request_id"] == REQUEST_ID


def test_the_status_is_the_apis_shape_for_a_completed_set(studio):
    url, _ = studio
    status = json.loads(fetch(f"{url}generate/{REQUEST_ID}")[2])
    assert status["status"] == "completed"
    assert status["progress"] == {
        "phase": "done",
        "stems": {"guitar": "completed", "bass": "completed"},
        "completed": 2,
        "failed": 0,
        "total": 2,
    }
    assert status["musical"]["target_bpm"] == 120.0 and status["musical"]["bars"] == 2
    assert fetch(f"{url}generate/someone-else")[0] == 404


def test_only_the_files_the_manifest_lists_are_served(studio):
    url, folder = studio
    for name in ("guitar.wav", "bass.wav", "mix.wav", "manifest.json"):
        status, headers, body = fetch(f"{url}generate/{REQUEST_ID}/files/{name}")
        assert status == 200 and body == (folder / name).read_bytes()
        assert headers["Content-Type"] == site.content_type_for(name)
    (folder / "notes.wav").write_bytes(b"private")
    assert fetch(f"{url}generate/{REQUEST_ID}/files/notes.wav")[0] == 404
    assert fetch(f"{url}generate/{REQUEST_ID}/files/..%2fout%2fguitar.wav")[0] == 404


def test_a_listed_file_that_leads_out_of_the_folder_is_not_served(studio, tmp_path):
    url, folder = studio
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"outside")
    (folder / "guitar.wav").unlink()
    (folder / "guitar.wav").symlink_to(secret)
    assert fetch(f"{url}generate/{REQUEST_ID}/files/guitar.wav")[0] == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_it_is_read_only(studio, method):
    url, _ = studio
    status, _, body = fetch(f"{url}generate", method)
    assert status == 405 and b"read-only" in body
    assert fetch(f"{url}uploads", method)[0] == 405


def test_the_page_plays_a_folder_in_a_browser(studio, tmp_path):
    url, folder = studio
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = chromium(tmp_path / "profile", downloads)
    try:
        driver.get(url)
        wait_for("the set", lambda: driver.find_element(By.ID, "hear-state").text == "Ready.")
        assert not driver.find_element(By.ID, "ask").is_displayed()
        assert not driver.find_element(By.ID, "key-form").is_displayed()
        lanes = [
            e.get_attribute("data-track") for e in driver.find_elements(By.CSS_SELECTOR, ".lane")
        ]
        assert lanes == ["guitar", "bass", "mix"]
        driver.find_element(By.ID, "play").click()
        transport = driver.find_element(By.ID, "transport")
        wait_for("playback", lambda: transport.get_attribute("data-state") == "playing")
        start = float(wait_for("the clock", lambda: transport.get_attribute("data-audio-clock")))
        wait_for(
            "the clock to advance",
            lambda: float(transport.get_attribute("data-audio-clock")) > start + 0.3,
            timeout_s=10,
        )
        # Loop bar 1 of 2 (2 s at 120 BPM): the position wraps instead of running on.
        driver.find_element(By.ID, "loop-on").click()
        for field, value in (("loop-from", "1"), ("loop-to", "1")):
            box = driver.find_element(By.ID, field)
            box.clear()
            box.send_keys(value, Keys.TAB)
        looped_at = float(transport.get_attribute("data-audio-clock"))
        wait_for(
            "a second time round the loop",
            lambda: float(transport.get_attribute("data-audio-clock")) > looped_at + 2.6,
            timeout_s=10,
        )
        # The clock reads "bar B.b · m:ss.mmm / m:ss.mmm" (the slider may hold focus now).
        clock = driver.find_element(By.ID, "clock").text
        at = clock.split(" · ")[1].split(" / ")[0]
        assert clock.startswith("bar 1.") and at.startswith("0:0") and float(at[2:]) < 2.0, clock

        # Pause holds the position; the slider seeks by a beat from the keyboard.
        driver.find_element(By.ID, "play").click()
        assert transport.get_attribute("data-state") == "stopped"
        slider = driver.find_element(By.ID, "position")
        slider.send_keys(Keys.HOME, *[Keys.ARROW_RIGHT] * 5)
        assert slider.get_attribute("value") == "2.5"
        assert driver.find_element(By.ID, "clock").text == "bar 2.2 · 0:02.500 / 0:04.000"
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.SPACE)  # Space plays
        wait_for("playback again", lambda: transport.get_attribute("data-state") == "playing")
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.SPACE)

        driver.find_element(By.CSS_SELECTOR, "a.download[data-file='bass.wav']").click()
        saved = downloads / "bass.wav"
        wait_for("the download", lambda: saved.is_file() and not list(downloads.glob("*.crdown*")))
        assert saved.read_bytes() == (folder / "bass.wav").read_bytes()
        screenshot(driver, "5-local-folder")
        assert console_errors(driver) == []
    finally:
        driver.quit()
