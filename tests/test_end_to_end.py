"""The whole pipeline without the Functions host: HTTP start, orchestration, activities.

``handle_generate`` validates the body and starts the orchestration on a fake durable
client; ``DurableDriver`` then plays the Durable host, replaying the real orchestrator
through azure-functions-durable's replay and running the real activities: the tiny MusicGen,
real Azurite blobs and a real HTTP callback receiver. ``handle_status`` finally reports what
the driver ended with. Only the host is stood in for; see ``durable_driver`` for how.
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import azure.functions as func
import pytest
import soundfile as sf
from pytest_httpserver import HTTPServer

from generation.audio.codecs import encode_audio
from generation.request import OutputFormat, Stem
from orchestrators import activities, runtime
from orchestrators.generation_orchestrator import (
    ANALYZE_UPLOAD,
    FINALIZE_GENERATION,
    GENERATE_STEM,
    RETRY,
    SEND_CALLBACK,
    StemGenerationFailed,
    orchestrate,
)
from orchestrators.http_api import handle_generate, handle_status
from orchestrators.starter import ORCHESTRATOR
from tests.orchestrators.durable_driver import DurableDriver
from tests.orchestrators.durable_history import Replay
from tests.service_fixtures import FakeDurableClient
from tests.synthetic_audio import SR, demo_track

DURATION_S = 1.5
# At 100 BPM, 1.5 s rounds to one whole 4/4 bar: every stem is exactly 2.4 s.
STEM_SAMPLES = round(4 * 60 / 100 * 32000)
SAMPLE_RATE = 32000
STEMS = ["guitar", "bass"]
ACTIVITIES = {
    ANALYZE_UPLOAD: activities.analyze_upload,
    GENERATE_STEM: activities.generate_stem,
    FINALIZE_GENERATION: activities.finalize_generation,
    SEND_CALLBACK: activities.send_callback,
}


def body(request_id: str, callback_url: str) -> dict[str, Any]:
    return {
        "generation_request_id": request_id,
        "target_stems": STEMS,
        "parameters": {"duration_seconds": DURATION_S, "target_bpm": 100, "style": "funk"},
        "callback_url": callback_url,
        "seed": 5,
    }


def start(client: FakeDurableClient, request_body: dict[str, Any]) -> tuple[str, Any]:
    """POST /generate through the real handler; the instance id and orchestration input."""
    request = func.HttpRequest(
        "POST",
        "http://localhost/generate",
        body=json.dumps(request_body).encode(),
        headers={"Content-Type": "application/json"},
    )
    response = asyncio.run(handle_generate(request, client))
    assert response.status_code == 202, response.get_body()
    [(name, instance_id, client_input)] = client.started
    assert name == ORCHESTRATOR
    return instance_id, client_input


def drive(
    instance_id: str, client_input: Any, functions: dict[str, Any] = ACTIVITIES, **options: Any
) -> tuple[DurableDriver, Replay]:
    """Play the host for the instance ``start`` began, to its end."""
    driver = DurableDriver(
        orchestrate,
        client_input,
        functions,
        name=ORCHESTRATOR,
        instance_id=instance_id,
        **options,
    )
    return driver, driver.run()


def status(client: FakeDurableClient, instance_id: str, last: Replay) -> dict[str, Any]:
    """GET /generate/{id} after the driver reported ``last`` to the fake client."""
    if last.is_done:
        client.set(instance_id, "Completed", output=last.output, custom_status=last.custom_status)
    else:
        client.set(instance_id, "Failed", output=last.error, custom_status=last.custom_status)
    response = asyncio.run(handle_status(instance_id, client))
    assert response.status_code == 200
    return json.loads(response.get_body())


def blob_names(prefix: str) -> list[str]:
    container = runtime.blob_store()._container  # the SDK client: list what is really there
    return sorted(blob.name for blob in container.list_blobs(name_starts_with=prefix))


def download(name: str) -> bytes:
    return runtime.blob_store().download_bytes(name)


def assert_valid_stem_wav(name: str) -> None:
    audio, sample_rate = sf.read(io.BytesIO(download(name)))
    assert sample_rate == SAMPLE_RATE
    assert audio.shape[0] == STEM_SAMPLES


def the_one_callback(httpserver: HTTPServer) -> dict[str, Any]:
    [(request, response)] = httpserver.log
    assert request.method == "POST" and response.status_code == 200
    return request.get_json()


def test_a_two_stem_request_is_generated_stored_and_called_back(
    service_env, durable_client, httpserver: HTTPServer
):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    instance_id, client_input = start(
        durable_client, body("e2e-ok", httpserver.url_for("/hook?token=secret"))
    )

    driver, last = drive(instance_id, client_input)

    assert last.is_done and last.error is None
    output = last.output
    assert output["status"] == "completed" and output["failed_stems"] == []
    prefix = f"generations/{instance_id}/"
    assert blob_names(prefix) == [
        f"{prefix}{name}" for name in ("bass.wav", "guitar.wav", "manifest.json", "mix.wav")
    ]
    for stem in STEMS:
        assert_valid_stem_wav(f"{prefix}{stem}.wav")
    manifest = json.loads(download(f"{prefix}manifest.json"))
    assert [s["stem"] for s in manifest["stems"]] == STEMS
    assert [s["file"] for s in manifest["stems"]] == [f"{prefix}{s}.wav" for s in STEMS]
    assert manifest["failed_stems"] == [] and manifest["request"]["seed"] == 5
    assert all(s["stem"] in s["prompt"] and "funk" in s["prompt"] for s in manifest["stems"])

    callback = the_one_callback(httpserver)
    assert callback["status"] == "completed" and callback["error"] is None
    assert callback["generation_request_id"] == instance_id
    urls = {s["stem"]: s["blob_url"] for s in callback["stems"]}
    assert list(urls) == STEMS
    assert urls == {s["stem"]: runtime.blob_store().url(s["file"]) for s in output["stems"]}
    assert callback["manifest_url"] == output["manifest_url"]
    assert callback["manifest_url"] == runtime.blob_store().url(f"{prefix}manifest.json")
    assert output["callback"]["delivered"] is True
    assert "secret" not in json.dumps(output)  # the callback target is recorded redacted

    # Each activity ran once, the callback last; the orchestrator scheduled nothing else.
    assert [(e.name, e.attempt) for e in driver.executions] == [
        (GENERATE_STEM, 1),
        (GENERATE_STEM, 1),
        (FINALIZE_GENERATION, 1),
        (SEND_CALLBACK, 1),
    ]
    assert last.function_names == [GENERATE_STEM, GENERATE_STEM, FINALIZE_GENERATION, SEND_CALLBACK]

    reported = status(durable_client, instance_id, last)
    assert reported["status"] == "completed" and reported["error"] is None
    assert reported["progress"] == {
        "phase": "done",
        "stems": dict.fromkeys(STEMS, "completed"),
        "completed": 2,
        "failed": 0,
        "total": 2,
    }
    assert [s["blob_url"] for s in reported["stems"]] == list(urls.values())
    assert reported["manifest_url"] == output["manifest_url"]


def test_a_stem_failing_every_retry_still_delivers_the_rest(
    service_env, durable_client, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
):
    render_stems = activities.render_stems

    def bass_breaks(loaded, request, settings, *, stems=None, **kwargs):
        if stems is not None and Stem.BASS in stems:
            raise RuntimeError("boom")
        return render_stems(loaded, request, settings, stems=stems, **kwargs)

    monkeypatch.setattr(activities, "render_stems", bass_breaks)
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    instance_id, client_input = start(durable_client, body("e2e-bass", httpserver.url_for("/hook")))

    driver, last = drive(instance_id, client_input)

    assert [(e.name, e.input.get("stem"), e.attempt, e.succeeded) for e in driver.executions] == [
        (GENERATE_STEM, "guitar", 1, True),
        *[(GENERATE_STEM, "bass", n, False) for n in range(1, RETRY.max_number_of_attempts + 1)],
        (FINALIZE_GENERATION, None, 1, True),
        (SEND_CALLBACK, None, 1, True),
    ]
    prefix = f"generations/{instance_id}/"
    assert blob_names(prefix) == [
        f"{prefix}guitar.wav",
        f"{prefix}manifest.json",
        f"{prefix}mix.wav",
    ]
    assert_valid_stem_wav(f"{prefix}guitar.wav")

    error = "Activity function 'generate_stem' failed: Exception: RuntimeError: boom"
    failed = [{"stem": "bass", "error": error}]
    manifest = json.loads(download(f"{prefix}manifest.json"))
    assert [s["stem"] for s in manifest["stems"]] == ["guitar"]
    assert manifest["failed_stems"] == failed

    callback = the_one_callback(httpserver)
    assert callback["status"] == "failed" and callback["failed_stems"] == failed
    assert [s["stem"] for s in callback["stems"]] == ["guitar"]
    assert callback["manifest_url"] == runtime.blob_store().url(f"{prefix}manifest.json")

    summary = f"1 of 2 stems failed: bass ({error})"
    assert not last.is_done and last.error == summary and callback["error"] == summary
    assert isinstance(last.exception, StemGenerationFailed)
    reported = status(durable_client, instance_id, last)
    assert reported["status"] == "failed" and reported["error"] == summary
    assert reported["failed_stems"] == failed
    assert reported["progress"]["stems"] == {"guitar": "completed", "bass": "failed"}


def test_a_redelivered_stem_activity_rewrites_the_same_blob(
    service_env, durable_client, httpserver: HTTPServer
):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    instance_id, client_input = start(
        durable_client, body("e2e-twice", httpserver.url_for("/hook"))
    )
    written: dict[str, list[bytes]] = {stem: [] for stem in STEMS}

    def generate_and_snapshot(payload: dict[str, Any]) -> dict[str, Any]:
        result = activities.generate_stem(payload)
        written[result["stem"]].append(download(result["file"]))
        return result

    driver, last = drive(
        instance_id,
        client_input,
        functions={**ACTIVITIES, GENERATE_STEM: generate_and_snapshot},
        deliveries={GENERATE_STEM: 2},
    )

    assert last.is_done and last.output["status"] == "completed"
    deliveries = [
        (e.input["stem"], e.delivery) for e in driver.executions if e.name == GENERATE_STEM
    ]
    assert deliveries == [("guitar", 1), ("guitar", 2), ("bass", 1), ("bass", 2)]
    prefix = f"generations/{instance_id}/"
    assert blob_names(prefix) == [
        f"{prefix}bass.wav",
        f"{prefix}guitar.wav",
        f"{prefix}manifest.json",
        f"{prefix}mix.wav",
    ]
    for stem in STEMS:
        first, second = written[stem]
        assert first == second == download(f"{prefix}{stem}.wav")
    callback = the_one_callback(httpserver)
    assert callback["status"] == "completed"
    assert [s["stem"] for s in callback["stems"]] == STEMS


def test_a_request_following_an_upload_gets_locked_stems_a_mix_and_the_musical_facts(
    service_env, durable_client, httpserver: HTTPServer
):
    track = encode_audio(demo_track(), SR, OutputFormat.FLAC)
    runtime.blob_store().upload_bytes("uploads/take-3.flac", track, "audio/flac")
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    request_body = {
        **body("e2e-follow", httpserver.url_for("/hook")),
        "audio_file_id": "take-3.flac",
        "parameters": {"bars": 1, "style": "funk"},  # no tempo: the upload's
    }
    instance_id, client_input = start(durable_client, request_body)

    driver, last = drive(instance_id, client_input)

    assert last.is_done and last.output["status"] == "completed"
    assert [e.name for e in driver.executions] == [
        ANALYZE_UPLOAD,
        GENERATE_STEM,
        GENERATE_STEM,
        FINALIZE_GENERATION,
        SEND_CALLBACK,
    ]
    one_bar = round(4 * 60 / 112 * SAMPLE_RATE)
    prefix = f"generations/{instance_id}/"
    for name in ("guitar.wav", "bass.wav", "mix.wav"):
        audio, _ = sf.read(io.BytesIO(download(prefix + name)))
        assert audio.shape[0] == one_bar
    callback = the_one_callback(httpserver)
    musical = callback["musical"]
    assert (musical["target_bpm"], musical["tempo_source"], musical["bars"]) == (112.0, "upload", 1)
    assert musical["key"] == "A minor" and musical["upload"]["bpm"] == 112.0
    assert callback["mix_url"] == runtime.blob_store().url(prefix + "mix.wav")
    assert [s["samples"] for s in callback["stems"]] == [one_bar, one_bar]
    assert all("loudness_lufs" in s and "detected_bpm" in s for s in callback["stems"])
    reported = status(durable_client, instance_id, last)
    assert reported["mix_url"] == callback["mix_url"] and reported["musical"] == musical


def test_a_request_whose_upload_is_missing_fails_clearly_before_generating(
    service_env, durable_client, httpserver: HTTPServer
):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    request_body = {
        **body("e2e-noupload", httpserver.url_for("/hook")),
        "audio_file_id": "never-uploaded.wav",
        "parameters": {"duration_seconds": 2},
    }
    instance_id, client_input = start(durable_client, request_body)

    driver, last = drive(instance_id, client_input)

    assert [e.name for e in driver.executions] == [ANALYZE_UPLOAD, SEND_CALLBACK]
    assert blob_names(f"generations/{instance_id}/") == []
    callback = the_one_callback(httpserver)
    assert callback["status"] == "failed"
    assert callback["error"].startswith("the uploaded track cannot be used: audio_file_id")
    assert "no such upload" in callback["error"]
    reported = status(durable_client, instance_id, last)
    assert reported["status"] == "failed" and reported["error"] == callback["error"]
    assert reported["progress"]["stems"] == {"guitar": "skipped", "bass": "skipped"}
