"""The activities against a real Azurite, with the tiny checkpoint."""

import io
import json
import os

import pytest
import soundfile as sf
from pytest_httpserver import HTTPServer

from generation.adapters.storage import BlobStore
from generation.engines.musicgen.loader import ModelState
from generation.errors import UnknownStemError
from generation.request import parse_request
from orchestrators import activities, runtime

REQUEST = parse_request(
    {
        "generation_request_id": "req-act-1",
        "target_stems": ["guitar", "bass"],
        "parameters": {"duration_seconds": 1.5, "target_bpm": 100, "style": "funk"},
        "seed": 11,
    }
).model_dump(mode="json")


def store() -> BlobStore:
    return runtime.blob_store()


def blob_names(prefix: str) -> list[str]:
    container = store()._container  # the SDK client, to list what really is there
    return sorted(b.name for b in container.list_blobs(name_starts_with=prefix))


def test_generate_stem_writes_the_stem_at_its_fixed_name(service_env):
    result = activities.generate_stem({"request": REQUEST, "stem": "bass", "stem_index": 1})
    assert result["file"] == "generations/req-act-1/bass.wav"
    assert result["blob_url"].endswith("/generations/req-act-1/bass.wav")
    # bass is seeded request seed + 1 (stem_seed), whatever else the request asked for
    # 1.5 s at 100 BPM rounds to one whole bar: 2.4 s
    assert (result["sample_rate"], result["samples"], result["seed"]) == (32000, 76800, 12)
    assert "funk" in result["prompt"] and "100 bpm" in result["prompt"]
    assert len(json.dumps(result)) < 2000  # names and URLs, never audio
    info = sf.info(io.BytesIO(store().download_bytes(result["file"])))
    assert (info.frames, info.samplerate, info.subtype) == (76800, 32000, "PCM_16")


def test_generate_stem_twice_repeats_never_duplicates(service_env):
    payload = {"request": REQUEST, "stem": "guitar", "stem_index": 0}
    first = activities.generate_stem(payload)
    data_first = store().download_bytes(first["file"])
    second = activities.generate_stem(payload)
    assert second["file"] == first["file"]
    assert blob_names("generations/req-act-1/") == ["generations/req-act-1/guitar.wav"]
    assert store().download_bytes(second["file"]) == data_first  # same seed, same audio


def test_a_failing_activity_leaves_no_files_and_the_worker_healthy(
    service_env, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tmp_path))
    with pytest.raises(UnknownStemError):
        activities.generate_stem({"request": REQUEST, "stem": "kazoo", "stem_index": 0})
    assert set(os.listdir(tmp_path)) == before
    assert blob_names("generations/req-act-1/") == []
    assert runtime.model().state is ModelState.AVAILABLE
    ok = activities.generate_stem({"request": REQUEST, "stem": "bass", "stem_index": 1})
    assert ok["samples"] == 76800


def test_the_model_is_loaded_once_per_worker(service_env):
    activities.generate_stem({"request": REQUEST, "stem": "bass", "stem_index": 1})
    loaded = runtime.model().get()
    activities.generate_stem({"request": REQUEST, "stem": "guitar", "stem_index": 0})
    assert runtime.model().get() is loaded


def test_finalize_writes_the_manifest_beside_the_stems(service_env):
    stems = [
        activities.generate_stem({"request": REQUEST, "stem": s, "stem_index": i})
        for i, s in enumerate(["guitar"])
    ]
    failed = [{"stem": "bass", "error": "boom"}]
    result = activities.finalize_generation(
        {
            "request": REQUEST,
            "stems": stems,
            "failed_stems": failed,
            "started_at": "2026-01-01T00:00:00+00:00",
        }
    )
    assert result["manifest_blob_name"] == "generations/req-act-1/manifest.json"
    manifest = json.loads(store().download_bytes(result["manifest_blob_name"]))
    assert manifest["generation_request_id"] == "req-act-1"
    assert manifest["request"]["seed"] == 11
    [entry] = manifest["stems"]
    assert entry["file"] == "generations/req-act-1/guitar.wav"
    assert {
        "prompt",
        "seed",
        "duration_seconds",
        "sample_rate",
        "model_id",
        "generation_seconds",
    } <= set(entry)
    assert manifest["failed_stems"] == failed
    assert manifest["timings"]["started_at"] == "2026-01-01T00:00:00+00:00"
    assert "callback_url" not in manifest["request"]


def test_send_callback_posts_the_payload(service_env, httpserver: HTTPServer):
    httpserver.expect_oneshot_request("/hook", method="POST").respond_with_data("ok")
    payload = {"generation_request_id": "req-act-1", "status": "completed", "stems": []}
    outcome = activities.send_callback(
        {"callback_url": httpserver.url_for("/hook"), "payload": payload}
    )
    assert outcome["delivered"] is True and outcome["attempts"] == 1
    [(request, _)] = httpserver.log
    assert request.get_json() == payload


def test_send_callback_falls_back_to_the_setting_then_skips(
    service_env, monkeypatch, httpserver: HTTPServer
):
    httpserver.expect_oneshot_request("/default", method="POST").respond_with_data("ok")
    monkeypatch.setenv("CALLBACK_URL", httpserver.url_for("/default"))
    runtime.reset_for_tests()
    assert activities.send_callback({"callback_url": None, "payload": {}})["delivered"] is True
    monkeypatch.delenv("CALLBACK_URL")
    runtime.reset_for_tests()
    outcome = activities.send_callback({"callback_url": None, "payload": {}})
    assert outcome["skipped"] is True and outcome["delivered"] is False


def test_send_callback_to_a_receiver_that_stays_down_records_it(service_env, monkeypatch):
    monkeypatch.setenv("CALLBACK_MAX_ATTEMPTS", "2")
    runtime.reset_for_tests()
    outcome = activities.send_callback(
        {"callback_url": "http://127.0.0.1:9/hook", "payload": {"status": "completed"}}
    )
    assert outcome["delivered"] is False and outcome["attempts"] == 2 and outcome["error"]


def test_concurrent_stem_activities_of_several_requests_share_a_batch(service_env, monkeypatch):
    import threading

    monkeypatch.setenv("BATCH_WINDOW_MS", "1500")
    runtime.reset_for_tests()
    other = parse_request(
        {
            "generation_request_id": "req-act-2",
            "target_stems": ["drums"],
            "parameters": {"duration_seconds": 1.0},
            "seed": 3,
        }
    ).model_dump(mode="json")
    payloads = [
        {"request": REQUEST, "stem": "guitar", "stem_index": 0},
        {"request": REQUEST, "stem": "bass", "stem_index": 1},
        {"request": other, "stem": "drums", "stem_index": 0},
    ]
    results: list = [None] * 3
    threads = [
        threading.Thread(
            target=lambda i=i: results.__setitem__(i, activities.generate_stem(payloads[i]))
        )
        for i in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [r["file"] for r in results] == [
        "generations/req-act-1/guitar.wav",
        "generations/req-act-1/bass.wav",
        "generations/req-act-2/drums.wav",
    ]
    assert runtime.batcher().batches == [3]


def test_generate_stem_writes_flac_and_mp3_under_their_own_names(service_env):
    for fmt, container in (("flac", "FLAC"), ("mp3", "MP3")):
        request = {**REQUEST, "output_format": fmt}
        result = activities.generate_stem({"request": request, "stem": "bass", "stem_index": 1})
        assert result["file"] == f"generations/req-act-1/bass.{fmt}"
        assert result["format"] == fmt
        info = sf.info(io.BytesIO(store().download_bytes(result["file"])))
        assert (info.format, info.samplerate, info.frames) == (container, 32000, 76800)
