"""The HTTP functions called directly, with a fake durable client."""

import asyncio
import json

import azure.functions as func
import pytest

from generation.model_loader import ModelState
from orchestrators import runtime
from orchestrators.http_api import (
    ORCHESTRATOR,
    handle_generate,
    handle_status,
    health,
    health_report,
)

BODY = {
    "generation_request_id": "req-1",
    "audio_file_id": "file-1",
    "target_stems": ["guitar", "bass", "drums"],
    "parameters": {
        "target_bpm": 120,
        "duration_seconds": 10,
        "style": "rock",
        "prompt": "energetic",
    },
}


def post(body, raw: bytes | None = None) -> func.HttpRequest:
    data = raw if raw is not None else json.dumps(body).encode()
    return func.HttpRequest(
        "POST", "http://localhost/generate", body=data, headers={"Content-Type": "application/json"}
    )


def call(coro):
    return asyncio.run(coro)


def decoded(response: func.HttpResponse):
    return json.loads(response.get_body())


def test_valid_request_starts_one_orchestration_named_by_its_id(durable_client):
    response = call(handle_generate(post(BODY), durable_client))
    assert response.status_code == 202
    body = decoded(response)
    assert body["id"] == "req-1" and body["statusQueryGetUri"] and body["duplicate"] is False
    assert response.headers["Location"] == body["statusQueryGetUri"]
    [(name, instance_id, started_input)] = durable_client.started
    assert (name, instance_id) == (ORCHESTRATOR, "req-1")
    assert started_input["target_stems"] == ["guitar", "bass", "drums"]
    assert isinstance(started_input["seed"], int)  # drawn once, so retries repeat
    assert started_input["parameters"]["top_k"] is None  # defaults stay the settings'
    json.dumps(started_input)  # plain JSON for the durable input


@pytest.mark.parametrize(
    ("body", "raw", "field"),
    [
        ({**BODY, "target_stems": ["kazoo"]}, None, "target_stems.0"),
        ({**BODY, "parameters": {"duration_seconds": -1}}, None, "parameters.duration_seconds"),
        (
            {k: v for k, v in BODY.items() if k != "generation_request_id"},
            None,
            "generation_request_id",
        ),
        (None, b"{not json", "body"),
        (None, b"", "body"),
        (None, b'{"parameters": {"duration_seconds": NaN}}', "body"),
    ],
)
def test_invalid_request_is_400_with_field_errors_and_starts_nothing(
    durable_client, body, raw, field
):
    response = call(handle_generate(post(body, raw), durable_client))
    assert response.status_code == 400
    errors = decoded(response)["errors"]
    assert isinstance(errors, list) and field in {e["field"] for e in errors}
    assert all(set(e) == {"field", "message", "type"} for e in errors)
    assert durable_client.started == []


@pytest.mark.parametrize(
    ("state", "code"), [("Running", 202), ("Pending", 202), ("Completed", 200)]
)
def test_repeat_while_running_or_completed_starts_nothing(durable_client, state, code):
    durable_client.set("req-1", state)
    response = call(handle_generate(post(BODY), durable_client))
    assert response.status_code == code
    body = decoded(response)
    assert body["duplicate"] is True and body["runtimeStatus"] == state and body["id"] == "req-1"
    assert durable_client.started == []


def test_repeat_after_failure_starts_again(durable_client):
    durable_client.set("req-1", "Failed")
    response = call(handle_generate(post(BODY), durable_client))
    assert response.status_code == 202
    assert [s[1] for s in durable_client.started] == ["req-1"]


def test_status_of_an_unknown_id_is_404(durable_client):
    response = call(handle_status("nope", durable_client))
    assert response.status_code == 404
    assert "nope" in decoded(response)["error"]


def test_status_while_running_shows_per_stem_progress(durable_client):
    durable_client.set(
        "req-1",
        "Running",
        custom_status={
            "phase": "generating",
            "stems": {"guitar": "completed", "bass": "pending"},
            "completed": 1,
            "failed": 0,
            "total": 2,
        },
    )
    body = decoded(call(handle_status("req-1", durable_client)))
    assert body["status"] == "running"
    assert body["progress"]["stems"] == {"guitar": "completed", "bass": "pending"}
    assert body["progress"]["completed"] == 1 and body["stems"] == [] and body["error"] is None


def test_status_when_done_lists_blob_urls(durable_client):
    output = {
        "status": "completed",
        "manifest_url": "http://blob/m.json",
        "callback": {},
        "stems": [
            {
                "stem": "bass",
                "blob_url": "http://blob/bass.wav",
                "duration_seconds": 10,
                "sample_rate": 32000,
                "prompt": "p",
            }
        ],
    }
    durable_client.set(
        "req-1",
        "Completed",
        output=output,
        custom_status={"phase": "done", "stems": {"bass": "completed"}},
    )
    body = decoded(call(handle_status("req-1", durable_client)))
    assert body["status"] == "completed"
    assert body["stems"] == [
        {
            "stem": "bass",
            "blob_url": "http://blob/bass.wav",
            "duration_seconds": 10,
            "sample_rate": 32000,
        }
    ]
    assert body["manifest_url"] == "http://blob/m.json"


def test_status_when_failed_gives_the_error_and_what_was_delivered(durable_client):
    durable_client.set(
        "req-1",
        "Failed",
        output="1 of 2 stems failed: bass (boom)",
        custom_status={
            "phase": "done",
            "stems": {"guitar": "completed", "bass": "failed"},
            "failed_stems": [{"stem": "bass", "error": "boom"}],
            "error": "1 of 2 stems failed: bass (boom)",
            "manifest_url": "http://blob/m.json",
        },
    )
    body = decoded(call(handle_status("req-1", durable_client)))
    assert body["status"] == "failed"
    assert body["error"] == "1 of 2 stems failed: bass (boom)"
    assert body["failed_stems"] == [{"stem": "bass", "error": "boom"}]
    assert body["manifest_url"] == "http://blob/m.json"


HEALTH_KEYS = {"status", "timestamp", "services", "gpu_available"}
SERVICE_KEYS = {"stable_audio", "musicgen", "storage", "device"}


def test_health_is_200_when_model_available_and_storage_reachable(service_env):
    runtime.model().get()
    response = health(func.HttpRequest("GET", "http://localhost/health", body=b""))
    body = decoded(response)
    assert response.status_code == 200
    assert set(body) == HEALTH_KEYS and set(body["services"]) == SERVICE_KEYS
    assert body["status"] == "healthy"
    assert body["services"] == {
        "stable_audio": "not_loaded",
        "musicgen": "available",
        "storage": "connected",
        "device": "cpu",
    }
    assert body["gpu_available"] is False


def test_health_is_503_while_the_model_is_not_loaded(service_env, monkeypatch, tmp_path):
    monkeypatch.setenv("MUSICGEN_MODEL", str(tmp_path / "not-yet"))
    runtime.reset_for_tests()
    body, status = health_report()
    assert status == 503 and body["status"] == "unhealthy"
    assert body["services"]["musicgen"] == "not_loaded"
    assert body["services"]["storage"] == "connected"


def test_health_reports_a_failed_load_as_not_loaded_and_503(service_env, monkeypatch, tmp_path):
    monkeypatch.setenv("MUSICGEN_MODEL", str(tmp_path / "missing-model"))
    runtime.reset_for_tests()
    runtime.model().warm_up_in_background().join(timeout=30)
    assert runtime.model().state is ModelState.FAILED
    body, status = health_report()
    assert status == 503 and body["services"]["musicgen"] == "not_loaded"


def test_health_is_503_when_storage_is_unreachable(service_env, monkeypatch):
    runtime.model().get()
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING",
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;",
    )
    runtime.reset_for_tests()
    body, status = health_report()
    assert status == 503 and body["services"]["storage"] == "disconnected"
    assert body["services"]["musicgen"] == "available"


def test_start_up_loads_the_model_in_the_background_and_logs_it(
    service_env, monkeypatch, caplog, tiny_checkpoint
):
    monkeypatch.setenv("MODEL_WARMUP_ON_START", "true")
    # Another spelling of the same directory: a holder no other test has loaded yet.
    monkeypatch.setenv("MUSICGEN_MODEL", f"{tiny_checkpoint}/.")
    runtime.reset_for_tests()
    with caplog.at_level("INFO", logger="generation.model_loader"):
        import importlib

        import function_app

        importlib.reload(function_app)
        holder = runtime.model()
        assert holder.state in {ModelState.LOADING, ModelState.AVAILABLE, ModelState.NOT_LOADED}
        for thread in __import__("threading").enumerate():
            if thread.name == "musicgen-warmup":
                thread.join(timeout=60)
    assert holder.state is ModelState.AVAILABLE
    assert "MusicGen loaded successfully" in caplog.text
