"""The studio page in a real browser, against the app's real HTTP handlers.

``FunctionHost`` serves the Functions app's HTTP functions on 127.0.0.1 (routes, auth
levels and durable-client bindings from the app's own function index) and runs each
orchestration through the real replay with the real activities: the tiny MusicGen and
real Azurite blobs. Headless Chromium (Debian's) does what a producer does: enters the key,
asks for a set, watches the stems change state, sees the waveforms, plays, mutes a stem
and downloads a file, whose bytes are compared with the blob's.

Screenshots land in ``artifacts/studio/`` (``STUDIO_ARTIFACTS_DIR``).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from generation.audio.codecs import encode_audio
from generation.request import GenerationRequest, OutputFormat
from generation.studio import site
from orchestrators import runtime
from orchestrators.generation_orchestrator import GENERATE_STEM, orchestrate
from orchestrators.starter import ORCHESTRATOR
from tests.browser import chromium, console_errors, screenshot, wait_for
from tests.function_host import FunctionHost
from tests.synthetic_audio import SR, demo_track

KEY = "studio-test-key-7f3a"
GATE_TIMEOUT_S = 300.0


class StemGate:
    """Holds each ``generate_stem`` activity until the test lets that stem through."""

    def __init__(self) -> None:
        self._open: dict[str, threading.Event] = {}
        self._all = threading.Event()
        self._lock = threading.Lock()

    def _event(self, stem: str) -> threading.Event:
        with self._lock:
            return self._open.setdefault(stem, threading.Event())

    def __call__(self, name: str, payload: Any) -> None:
        if name != GENERATE_STEM or self._all.is_set():
            return
        event = self._event(payload["stem"])
        if not event.wait(GATE_TIMEOUT_S) and not self._all.is_set():
            raise TimeoutError(f"the test never let {payload['stem']} through")

    def release(self, stem: str) -> None:
        self._event(stem).set()

    def release_all(self) -> None:
        self._all.set()
        with self._lock:
            for event in self._open.values():
                event.set()


@pytest.fixture
def gate() -> Iterator[StemGate]:
    gate = StemGate()
    yield gate
    gate.release_all()


@pytest.fixture
def host(function_app: Any, gate: StemGate) -> Iterator[FunctionHost]:
    """The Functions app itself (``function_app.app``), served on 127.0.0.1."""
    server = FunctionHost(
        function_app.app, key=KEY, orchestrators={ORCHESTRATOR: orchestrate}, gate=gate
    ).start()
    yield server
    server.stop()
    assert not server.errors, server.errors


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[tuple[WebDriver, Path]]:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = chromium(tmp_path / "profile", downloads)
    yield driver, downloads
    driver.quit()


def css(driver: WebDriver, selector: str) -> list[Any]:
    return driver.find_elements(By.CSS_SELECTOR, selector)


def text(driver: WebDriver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def stem_states(driver: WebDriver) -> dict[str, str]:
    """Each stem's state as the page shows it, read in one go."""
    return driver.execute_script(
        "return Object.fromEntries(Array.from(document.querySelectorAll('#stem-states li'),"
        " (li) => [li.dataset.stem, li.dataset.state]));"
    )


def set_value(driver: WebDriver, element_id: str, value: str) -> None:
    field = driver.find_element(By.ID, element_id)
    field.clear()
    if value:
        field.send_keys(value)


def choose_stems(driver: WebDriver, wanted: set[str]) -> None:
    for box in css(driver, "#stem-choices input"):
        if box.is_selected() != (box.get_attribute("value") in wanted):
            # The checkbox is visually hidden behind its label (a toggle): click the label.
            driver.find_element(By.CSS_SELECTOR, f"label[for='{box.get_attribute('id')}']").click()


# Fraction of each lane's canvas painted in its waveform colour.
WAVE_COVERAGE_JS = """
const probe = document.createElement('canvas').getContext('2d');
const rgb = (name) => {
  probe.fillStyle = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  probe.fillRect(0, 0, 1, 1);
  return Array.from(probe.getImageData(0, 0, 1, 1).data.slice(0, 3));
};
const result = {};
for (const lane of document.querySelectorAll('.lane')) {
  const canvas = lane.querySelector('canvas');
  const [r, g, b] = rgb(lane.dataset.track === 'mix' ? '--wave-mix' : '--wave');
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i] === r && data[i + 1] === g && data[i + 2] === b) painted += 1;
  }
  result[lane.dataset.track] = painted / (canvas.width * canvas.height);
}
return result;
"""


def enter_key(driver: WebDriver) -> None:
    """The key, entered once, is kept but never shown."""
    wait_for("the key form", lambda: driver.find_element(By.ID, "key-form").is_displayed())
    driver.find_element(By.ID, "function-key").send_keys(KEY)
    driver.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    assert text(driver, "key-state") == "A key is saved in this browser."
    assert driver.find_element(By.ID, "function-key").get_attribute("value") == ""
    assert KEY not in driver.page_source


def ask_with_a_bad_length(driver: WebDriver) -> None:
    """The API's own validation message lands next to the field it names."""
    wait_for("the stem toggles", lambda: css(driver, "#stem-choices input"))
    choose_stems(driver, {"guitar", "bass"})
    set_value(driver, "f-parameters-target_bpm", "100")
    set_value(driver, "f-parameters-duration_seconds", "0.5")
    driver.find_element(By.ID, "submit").click()
    message = wait_for(
        "the duration's error", lambda: text(driver, "f-parameters-duration_seconds-error")
    )
    assert "greater than or equal to 1" in message
    duration = driver.find_element(By.ID, "f-parameters-duration_seconds")
    assert duration.get_attribute("aria-invalid") == "true"
    screenshot(driver, "1-ask-with-a-field-error")
    # The 400 itself is the only thing the console reported.
    assert [e for e in console_errors(driver) if "400" not in e] == []


def upload_a_track(driver: WebDriver, track: Path) -> None:
    """A track is checked as audio and stored where the service reads uploads."""
    track.write_bytes(encode_audio(demo_track(), SR, OutputFormat.FLAC))
    driver.find_element(By.ID, "track").send_keys(str(track))
    wait_for("the upload", lambda: "Uploaded as" in text(driver, "track-state"))
    audio_file_id = text(driver, "track-state").split("Uploaded as ")[1].split(":")[0]
    stored = runtime.upload_store().download_bytes(f"uploads/{audio_file_id}")
    assert stored == track.read_bytes()


def ask_and_watch(driver: WebDriver, gate: StemGate) -> str:
    """Ask for guitar and bass following the uploaded track, watch both pending with the
    track's tempo and key shown, then guitar done while bass waits, then the set ready;
    the request's id."""
    # 1.5 s at 100 BPM is one 4/4 bar of 2.4 s.
    set_value(driver, "f-parameters-duration_seconds", "1.5")
    set_value(driver, "f-parameters-style", "funk")
    set_value(driver, "f-seed", "5")
    driver.find_element(By.ID, "submit").click()
    request_id = wait_for(
        "the id in the URL", lambda: parse_qs(urlsplit(driver.current_url).query).get("id")
    )[0]
    assert request_id.startswith("studio-")
    wait_for(
        "both stems pending",
        lambda: stem_states(driver) == dict.fromkeys(["guitar", "bass"], "pending"),
    )
    facts = wait_for("the track's facts", lambda: text(driver, "upload-facts"))
    assert "Track tempo\n112 BPM" in facts and "Track key\nA minor" in facts, facts
    screenshot(driver, "2-watch-pending")
    gate.release("guitar")
    wait_for(
        "guitar completed, bass pending",
        lambda: stem_states(driver) == {"guitar": "completed", "bass": "pending"},
        timeout_s=300,
    )
    gate.release_all()
    wait_for("the set to be ready", lambda: text(driver, "hear-state") == "Ready.", timeout_s=300)
    assert stem_states(driver) == {"guitar": "completed", "bass": "completed"}
    assert text(driver, "phase").startswith("completed: Done")
    return request_id


def play_and_mute(driver: WebDriver) -> None:
    """Every lane drawn; playback runs on the audio clock; muting the bass quiets it only."""
    lanes = [lane.get_attribute("data-track") for lane in css(driver, ".lane")]
    assert lanes == ["guitar", "bass", "mix"]
    coverage = driver.execute_script(WAVE_COVERAGE_JS)
    assert all(coverage[name] > 0.05 for name in lanes), coverage

    driver.find_element(By.ID, "loop-on").click()  # the set is 2.4 s: keep it playing
    driver.find_element(By.ID, "play").click()
    transport = driver.find_element(By.ID, "transport")
    wait_for("playback", lambda: transport.get_attribute("data-state") == "playing")
    first = float(wait_for("the clock", lambda: transport.get_attribute("data-audio-clock")))
    wait_for(
        "the audio clock to advance",
        lambda: float(transport.get_attribute("data-audio-clock")) > first + 0.3,
        timeout_s=10,
    )
    level = driver.find_element(By.ID, "level")
    wait_for("sound at the output", lambda: float(level.get_attribute("value")) > 0, 5)
    assert transport.get_attribute("data-state") == "playing"

    driver.find_element(By.CSS_SELECTOR, "button[aria-label='Mute bass']").click()
    audible = driver.execute_script(
        "return Object.fromEntries(Array.from(document.querySelectorAll('.lane'),"
        " (lane) => [lane.dataset.track, lane.dataset.audible]));"
    )
    # The mix is muted from the start: the stems play.
    assert audible == {"guitar": "true", "bass": "false", "mix": "false"}


def test_a_producer_asks_watches_hears_mutes_and_downloads(
    host: FunctionHost, gate: StemGate, browser: tuple[WebDriver, Path], tmp_path: Path
):
    driver, downloads = browser
    driver.get(host.url)
    enter_key(driver)
    ask_with_a_bad_length(driver)
    upload_a_track(driver, tmp_path / "take.flac")
    request_id = ask_and_watch(driver, gate)

    # Reloading with the id in the URL resumes the view.
    driver.refresh()
    wait_for("the set after a reload", lambda: text(driver, "hear-state") == "Ready.", timeout_s=60)
    assert text(driver, "request-id") == request_id
    assert text(driver, "grid-facts").startswith("100 BPM (request) · 4/4 · 1 bar ·")

    play_and_mute(driver)
    driver.set_window_size(1280, 1200)
    screenshot(driver, "3-hear-playing")

    # Download the guitar: the very bytes of the blob.
    driver.find_element(By.CSS_SELECTOR, "a.download[data-file='guitar.wav']").click()
    saved = downloads / "guitar.wav"
    wait_for("the download", lambda: saved.is_file() and not list(downloads.glob("*.crdownload")))
    blob = runtime.blob_store().download_bytes(f"generations/{request_id}/guitar.wav")
    assert saved.read_bytes() == blob

    driver.set_window_size(390, 844)  # a phone: the open set comes first
    driver.execute_script("document.getElementById('hear').scrollIntoView()")
    screenshot(driver, "4-phone")
    # Nothing wider than the phone: no sideways scrolling.
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    assert console_errors(driver) == []


def with_parameters(extra: dict[str, Any]) -> dict[str, Any]:
    """The request schema with ``extra`` parameter fields, as a future API might have."""
    schema = copy.deepcopy(GenerationRequest.model_json_schema())
    schema["$defs"]["GenerationParameters"]["properties"].update(extra)
    return schema


@pytest.mark.parametrize(
    ("engines", "shown"), [(["musicgen", "ace_step"], True), (["musicgen"], False)]
)
def test_the_form_follows_the_apis_schema(
    host: FunctionHost,
    browser: tuple[WebDriver, Path],
    monkeypatch: pytest.MonkeyPatch,
    engines: list[str],
    shown: bool,
):
    """An engine choice appears where more than one is served; a field the API gains gets
    a control in its group; the API's error about it lands next to it."""
    schema = with_parameters(
        {
            "engine": {"enum": engines, "type": "string", "default": "musicgen"},
            "mood": {"anyOf": [{"type": "string", "maxLength": 20}, {"type": "null"}]},
        }
    )
    monkeypatch.setattr(site, "request_schema", lambda: schema)
    driver, _ = browser
    driver.get(host.url)
    enter_key(driver)
    mood = wait_for("the mood field", lambda: css(driver, "#f-parameters-mood"))[0]
    assert css(driver, "label[for='f-parameters-mood']")[0].text == "mood"
    engine = css(driver, "#f-parameters-engine")
    assert bool(engine) is shown
    if shown:
        options = [o.get_attribute("value") for o in engine[0].find_elements(By.TAG_NAME, "option")]
        assert options == ["", *engines]
    # The running API does not know the field yet: its 400 is shown where the field is.
    mood.send_keys("calm")
    driver.find_element(By.ID, "submit").click()
    message = wait_for("the mood's error", lambda: text(driver, "f-parameters-mood-error"))
    assert message == "Extra inputs are not permitted"
    assert mood.get_attribute("aria-invalid") == "true"
    assert [e for e in console_errors(driver) if "400" not in e] == []
