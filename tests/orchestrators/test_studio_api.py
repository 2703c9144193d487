"""The studio's handlers in the Functions app: the page, uploads and a request's files,
against real Azurite blobs."""

from __future__ import annotations

import io
import json
import re
from html.parser import HTMLParser
from typing import Any

import azure.functions as func
import numpy as np
import pytest
import soundfile as sf

from generation.adapters.storage import BlobSink
from generation.audio.codecs import encode_audio
from generation.request import GenerationRequest, OutputFormat
from generation.studio import site
from orchestrators import runtime, studio_api
from tests.studio_sets import write_set

SR = 32000


def tone(seconds: float = 1.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 220 * t))[np.newaxis, :].astype(np.float32)


def get(url: str, headers: dict[str, str] | None = None, **route: str) -> func.HttpRequest:
    return func.HttpRequest(
        "GET", f"http://localhost{url}", headers=headers or {}, route_params=route, body=b""
    )


def post(body: bytes, params: dict[str, str] | None = None, **headers: str) -> func.HttpRequest:
    return func.HttpRequest(
        "POST",
        "http://localhost/uploads",
        headers={"Content-Type": "audio/wav", "Content-Length": str(len(body)), **headers},
        params=params or {},
        body=body,
    )


def json_of(response: func.HttpResponse) -> Any:
    return json.loads(response.get_body())


class _Markup(HTMLParser):
    """What a Content-Security-Policy without 'unsafe-inline' would refuse."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.inline.append("inline <script>")
        if tag == "style":
            self.inline.append("<style> element")
        self.inline += [f"{tag} {name}=" for name in names if name == "style" or name[:2] == "on"]


# -- the page ----------------------------------------------------------------------------


def test_the_page_is_served_anonymously_with_a_strict_policy(service_env):
    response = studio_api.handle_page(get("/"))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    policy = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    markup = _Markup()
    markup.feed(response.get_body().decode())
    assert markup.inline == []


def test_the_script_never_writes_markup_from_strings():
    script = (site.STATIC_DIR / "studio.js").read_text()
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", script)
    assert "setAttribute('style'" not in script


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("studio.js", "text/javascript; charset=utf-8"), ("studio.css", "text/css; charset=utf-8")],
)
def test_page_files_are_served_with_their_types_and_revalidated(service_env, name, content_type):
    response = studio_api.studio_asset(get(f"/studio/{name}", name=name))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    assert response.get_body() == (site.STATIC_DIR / name).read_bytes()
    etag = response.headers["ETag"]
    again = studio_api.studio_asset(get(f"/studio/{name}", {"If-None-Match": etag}, name=name))
    assert again.status_code == 304 and again.get_body() == b""


@pytest.mark.parametrize("name", ["index.html", "..", "studio.py", "local.py", "%2e%2e"])
def test_no_other_file_is_served(service_env, name):
    response = studio_api.studio_asset(get(f"/studio/{name}", name=name))
    assert response.status_code == 404


def test_the_config_carries_the_apis_own_request_schema_and_upload_limit(service_env, monkeypatch):
    monkeypatch.setenv("MAX_UPLOAD_MB", "12.5")
    runtime.reset_for_tests()
    response = studio_api.studio_asset(get("/studio/config.json", name="config.json"))
    config = json_of(response)
    assert config["mode"] == "service" and config["read_only"] is False
    assert config["max_upload_mb"] == 12.5
    assert config["request_schema"] == GenerationRequest.model_json_schema()
    assert response.headers["Cache-Control"] == "no-store"


# -- uploads -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encode", "extension", "content_type"),
    [
        (lambda a: encode_audio(a, SR, OutputFormat.WAV), "wav", "audio/wav"),
        (lambda a: encode_audio(a, SR, OutputFormat.FLAC), "flac", "audio/flac"),
        (lambda a: encode_audio(a, SR, OutputFormat.MP3), "mp3", "audio/mpeg"),
    ],
)
def test_an_upload_is_checked_and_stored_where_the_service_reads_it(
    service_env, encode, extension, content_type
):
    data = encode(tone())
    response = studio_api.handle_upload(post(data))
    assert response.status_code == 201, response.get_body()
    body = json_of(response)
    audio_file_id = body["audio_file_id"]
    assert re.fullmatch(rf"upload-[0-9a-f]{{16}}\.{extension}", audio_file_id)
    assert body["bytes"] == len(data) and body["format"] == extension
    assert body["sample_rate"] == SR and body["channels"] == 1
    assert body["duration_seconds"] == pytest.approx(1.5, abs=0.1)
    store = runtime.upload_store()
    assert store.download_bytes(f"uploads/{audio_file_id}") == data
    blob = store._container.get_blob_client(f"uploads/{audio_file_id}")
    assert blob.get_blob_properties().content_settings.content_type == content_type


def test_an_ogg_upload_is_accepted(service_env):
    buffer = io.BytesIO()
    sf.write(buffer, tone().T, SR, format="OGG", subtype="VORBIS")
    response = studio_api.handle_upload(post(buffer.getvalue()))
    assert response.status_code == 201 and json_of(response)["format"] == "ogg"


def test_an_upload_goes_to_the_upload_container_and_template(service_env, monkeypatch):
    container = f"ups-{runtime.settings().blob_container_name[4:20]}"
    monkeypatch.setenv("UPLOAD_CONTAINER_NAME", container)
    monkeypatch.setenv("UPLOAD_BLOB_TEMPLATE", "tracks/{audio_file_id}/audio")
    runtime.reset_for_tests()
    data = encode_audio(tone(), SR, OutputFormat.WAV)
    response = studio_api.handle_upload(post(data, {"audio_file_id": "my-take.wav"}))
    assert response.status_code == 201
    assert json_of(response)["audio_file_id"] == "my-take.wav"
    store = runtime.upload_store()
    assert store.container == container
    assert store.download_bytes("tracks/my-take.wav/audio") == data
    store.delete_container()


@pytest.mark.parametrize(
    "data",
    [b"RIFF\x00\x00\x00\x00WAVEfmt not really", b"hello, this is text", b"\x00" * 4096],
)
def test_an_upload_that_is_not_audio_is_400_and_stores_nothing(service_env, data):
    response = studio_api.handle_upload(post(data))
    assert response.status_code == 400
    [error] = json_of(response)["errors"]
    assert error["field"] == "body" and error["type"] == "not_audio"
    assert "not a readable audio file" in error["message"]
    blobs = list(runtime.blob_store()._container.list_blobs(name_starts_with="uploads/"))
    assert blobs == []


def test_an_empty_upload_is_400(service_env):
    response = studio_api.handle_upload(post(b""))
    assert response.status_code == 400
    assert json_of(response)["errors"][0]["type"] == "empty"


def test_an_upload_over_max_upload_mb_is_413_before_it_is_read(service_env, monkeypatch):
    monkeypatch.setenv("MAX_UPLOAD_MB", "0.05")
    runtime.reset_for_tests()
    data = encode_audio(tone(2.0), SR, OutputFormat.WAV)  # 128 kB
    response = studio_api.handle_upload(post(data))
    assert response.status_code == 413
    assert "MAX_UPLOAD_MB (0.05 MB)" in json_of(response)["error"]
    # A body larger than it claims is measured too.
    lying = studio_api.handle_upload(post(data, **{"Content-Length": "10"}))
    assert lying.status_code == 413


@pytest.mark.parametrize("bad_id", ["../etc", "a/b", ".hidden", "x" * 129, "a..b", ""])
def test_an_upload_id_follows_the_audio_file_id_rules(service_env, bad_id):
    data = encode_audio(tone(), SR, OutputFormat.WAV)
    response = studio_api.handle_upload(post(data, {"audio_file_id": bad_id}))
    assert response.status_code == 400
    assert [e["field"] for e in json_of(response)["errors"]] == ["audio_file_id"]


def test_an_upload_never_overwrites_one_already_stored(service_env):
    data = encode_audio(tone(), SR, OutputFormat.WAV)
    first = studio_api.handle_upload(post(data, {"audio_file_id": "take-1.wav"}))
    assert first.status_code == 201
    other = encode_audio(tone(1.0), SR, OutputFormat.WAV)
    second = studio_api.handle_upload(post(other, {"audio_file_id": "take-1.wav"}))
    assert second.status_code == 409
    assert runtime.upload_store().download_bytes("uploads/take-1.wav") == data


# -- a request's files -------------------------------------------------------------------


def store_set(request_id: str, output_format: OutputFormat = OutputFormat.WAV) -> dict[str, bytes]:
    """A finished request's blobs, written as the activities write them, plus a blob under
    its prefix that the manifest does not list; the listed files, name -> bytes."""
    store = runtime.blob_store()
    manifest = write_set(BlobSink(store, request_id), request_id, output_format=output_format)
    store.upload_bytes(f"generations/{request_id}/secret.wav", b"not listed", "audio/wav")
    locations = [s["file"] for s in manifest["stems"]] + [manifest["mix"]["file"]]
    locations.append(f"generations/{request_id}/manifest.json")
    return {location.rsplit("/", 1)[1]: store.download_bytes(location) for location in locations}


def file(request_id: str, name: str, headers: dict[str, str] | None = None):
    return studio_api.handle_file(
        request_id, name, get(f"/generate/{request_id}/files/{name}", headers)
    )


@pytest.mark.parametrize(
    ("output_format", "extension"), [(OutputFormat.WAV, "wav"), (OutputFormat.FLAC, "flac")]
)
def test_every_file_the_manifest_lists_is_served_with_its_type(
    service_env, output_format, extension
):
    files = store_set("req-files", output_format)
    assert sorted(files) == sorted(
        ["manifest.json", f"guitar.{extension}", f"bass.{extension}", f"mix.{extension}"]
    )
    for name, data in files.items():
        response = file("req-files", name)
        assert response.status_code == 200, name
        assert response.get_body() == data
        assert response.headers["Content-Type"] == site.content_type_for(name)
        assert response.headers["Content-Disposition"] == f'attachment; filename="{name}"'
        assert response.headers["Cache-Control"] == "private, no-cache"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert site.content_type_for(f"guitar.{extension}") == f"audio/{extension}"


def test_a_file_the_browser_holds_is_not_sent_again(service_env):
    store_set("req-etag")
    etag = file("req-etag", "guitar.wav").headers["ETag"]
    again = file("req-etag", "guitar.wav", {"If-None-Match": etag})
    assert again.status_code == 304 and again.get_body() == b""


def test_a_blob_the_manifest_does_not_list_is_not_served(service_env):
    store_set("req-unlisted")
    response = file("req-unlisted", "secret.wav")
    assert response.status_code == 404
    assert "not a file of generation" in json_of(response)["error"]


def test_a_manifest_pointing_outside_its_request_is_not_followed(service_env):
    store = runtime.blob_store()
    store.upload_bytes("uploads/private.wav", b"someone else's", "audio/wav")
    store.upload_bytes("generations/other/guitar.wav", b"another request's", "audio/wav")
    manifest = {
        "generation_request_id": "req-evil",
        "stems": [
            {"stem": "guitar", "file": "uploads/private.wav"},
            {"stem": "bass", "file": "generations/other/guitar.wav"},
        ],
    }
    store.upload_json("generations/req-evil/manifest.json", manifest)
    assert file("req-evil", "private.wav").status_code == 404
    assert file("req-evil", "guitar.wav").status_code == 404


def test_no_manifest_yet_is_404(service_env):
    response = file("req-not-done", "manifest.json")
    assert response.status_code == 404
    assert "has no manifest (yet)" in json_of(response)["error"]


@pytest.mark.parametrize(("request_id", "name"), [("../x", "guitar.wav"), ("ok", "a..b.wav")])
def test_bad_ids_and_names_are_400(service_env, request_id, name):
    response = file(request_id, name)
    assert response.status_code == 400


def test_storage_down_is_503_not_500(service_env, monkeypatch):
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING",
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;",
    )
    runtime.reset_for_tests()
    runtime._container_ready.set()  # the container check would fail first
    response = file("req-down", "manifest.json")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
