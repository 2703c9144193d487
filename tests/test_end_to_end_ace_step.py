"""The ACE-Step engine through the whole service (see ``test_end_to_end``): HTTP start, the
real orchestrator replayed by azure-functions-durable, the real activities on the tiny
ACE-Step checkpoint, real Azurite blobs and a real callback receiver."""

from __future__ import annotations

import io
import json

import pytest
import soundfile as sf
from pytest_httpserver import HTTPServer

from generation.audio.codecs import encode_audio
from generation.request import OutputFormat
from orchestrators import activities, runtime
from orchestrators.generation_orchestrator import (
    ANALYZE_UPLOAD,
    FINALIZE_GENERATION,
    GENERATE_GUIDE,
    GENERATE_STEM,
    SEND_CALLBACK,
)
from tests.synthetic_audio import SR, demo_track
from tests.test_end_to_end import download, drive, start, status, the_one_callback

ACE_SR = 48_000
FUNCTIONS = {
    ANALYZE_UPLOAD: activities.analyze_upload,
    GENERATE_GUIDE: activities.generate_guide,
    GENERATE_STEM: activities.generate_stem,
    FINALIZE_GENERATION: activities.finalize_generation,
    SEND_CALLBACK: activities.send_callback,
}


@pytest.fixture
def ace_step_env(service_env, monkeypatch, ace_tiny_checkpoint):
    """The service serving ACE-Step too (tiny checkpoint, few steps), loaded."""
    monkeypatch.setenv("ENGINES", "musicgen,ace_step")
    monkeypatch.setenv("ACE_STEP_MODEL", str(ace_tiny_checkpoint))
    monkeypatch.setenv("ACE_STEP_STEPS", "3")
    runtime.reset_for_tests()
    runtime.ace_step().warm_up_in_background().join(timeout=120)
    return ace_tiny_checkpoint


def test_an_upload_gets_lego_stems_in_time_with_it(
    ace_step_env, durable_client, httpserver: HTTPServer
):
    track = encode_audio(demo_track(), SR, OutputFormat.FLAC)
    runtime.blob_store().upload_bytes("uploads/take-7.flac", track, "audio/flac")
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    request_body = {
        "generation_request_id": "ace-lego",
        "target_stems": ["bass", "drums"],
        "audio_file_id": "take-7.flac",
        "parameters": {"bars": 1, "style": "funk", "engine": "ace_step"},
        "callback_url": httpserver.url_for("/hook"),
        "seed": 3,
    }
    instance_id, client_input = start(durable_client, request_body)

    driver, last = drive(instance_id, client_input, FUNCTIONS)

    assert last.is_done and last.output["status"] == "completed"
    assert [e.name for e in driver.executions] == [
        ANALYZE_UPLOAD,
        GENERATE_STEM,
        GENERATE_STEM,
        FINALIZE_GENERATION,
        SEND_CALLBACK,
    ]
    one_bar = round(4 * 60 / 112 * ACE_SR)  # the upload's tempo, at ACE-Step's 48 kHz
    prefix = f"generations/{instance_id}/"
    for name in ("bass.wav", "drums.wav", "mix.wav"):
        audio, rate = sf.read(io.BytesIO(download(prefix + name)))
        assert rate == ACE_SR and audio.shape == (one_bar, 2)  # stereo end to end
    callback = the_one_callback(httpserver)
    assert [(s["engine"], s["task"], s["model_id"]) for s in callback["stems"]] == [
        ("ace_step", "lego", str(ace_step_env))
    ] * 2
    # The parts keep the track's timing: nothing re-detected, nothing stretched.
    assert all((s["detected_bpm"], s["stretch_ratio"]) == (None, 1.0) for s in callback["stems"])
    manifest = json.loads(download(prefix + "manifest.json"))
    # The harmony check runs on the parts too: drums are not held to the key; the bass is
    # (random weights make hiss, read as nothing pitched, or a share with its warning).
    in_key = {s["stem"]: s["in_key"] for s in callback["stems"]}
    assert in_key["drums"] is None and manifest["musical"]["key"]
    bass = next(s for s in manifest["stems"] if s["stem"] == "bass")
    assert bass["in_key"] == in_key["bass"]
    assert in_key["bass"] is None or 0.0 <= in_key["bass"] <= 1.0
    clash = any("may clash" in w for w in bass["warnings"])
    assert clash == (in_key["bass"] is not None and in_key["bass"] < 0.8)
    assert manifest["request"]["parameters"]["engine"] == "ace_step"
    assert manifest["guide"] is None
    assert manifest["musical"]["target_bpm"] == 112.0
    assert status(durable_client, instance_id, last)["status"] == "completed"


def test_without_an_upload_the_stems_are_extracted_from_one_guide(
    ace_step_env, durable_client, httpserver: HTTPServer
):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    request_body = {
        "generation_request_id": "ace-guide",
        "target_stems": ["guitar", "bass"],
        "parameters": {
            "duration_seconds": 1.5,
            "target_bpm": 100,
            "style": "funk",
            "engine": "ace_step",
        },
        "callback_url": httpserver.url_for("/hook"),
        "seed": 5,
    }
    instance_id, client_input = start(durable_client, request_body)

    driver, last = drive(instance_id, client_input, FUNCTIONS)

    assert last.is_done and last.output["status"] == "completed"
    assert [e.name for e in driver.executions] == [
        GENERATE_GUIDE,
        GENERATE_STEM,
        GENERATE_STEM,
        FINALIZE_GENERATION,
        SEND_CALLBACK,
    ]
    one_bar = round(4 * 60 / 100 * ACE_SR)
    prefix = f"generations/{instance_id}/"
    guide, rate = sf.read(io.BytesIO(download(prefix + "guide.flac")))
    assert rate == ACE_SR and guide.shape == (one_bar, 2)
    for name in ("guitar.wav", "bass.wav", "mix.wav"):
        audio, rate = sf.read(io.BytesIO(download(prefix + name)))
        assert rate == ACE_SR and audio.shape == (one_bar, 2)
    callback = the_one_callback(httpserver)
    assert {(s["engine"], s["task"]) for s in callback["stems"]} == {("ace_step", "extract")}
    manifest = json.loads(download(prefix + "manifest.json"))
    assert manifest["guide"]["file"] == prefix + "guide.flac"
    assert (manifest["guide"]["task"], manifest["guide"]["engine"]) == ("text2music", "ace_step")
    assert manifest["guide"]["model_id"] == str(ace_step_env)
