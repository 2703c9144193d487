"""The HTTP functions called directly, with a fake durable client."""

import asyncio
import json

import azure.functions as func
import pytest

from generation.engines.musicgen.loader import ModelState
from generation.request import MAX_ERRORS, parse_request
from orchestrators import runtime, starter
from orchestrators.http_api import handle_generate, handle_status, health, health_report
from orchestrators.starter import ORCHESTRATOR
from tests.service_fixtures import SYSTEM_KEY, FakeDurableClient

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


def post(
    body, raw: bytes | None = None, content_type: str | None = "application/json"
) -> func.HttpRequest:
    data = raw if raw is not None else json.dumps(body).encode()
    headers = {"Content-Type": content_type} if content_type is not None else {}
    return func.HttpRequest("POST", "http://localhost/generate", body=data, headers=headers)


def call(coro):
    return asyncio.run(coro)


def decoded(response: func.HttpResponse):
    return json.loads(response.get_body())


def test_valid_request_starts_one_orchestration_named_by_its_id(durable_client):
    response = call(handle_generate(post(BODY), durable_client))
    assert response.status_code == 202
    body = decoded(response)
    assert body == {
        "id": "req-1",
        "status_url": "http://localhost/generate/req-1",
        "duplicate": False,
    }
    assert response.headers["Location"] == body["status_url"]
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


def with_params(**fields) -> dict:
    return {**BODY, "parameters": {**BODY["parameters"], **fields}}


def nested(depth: int) -> bytes:
    return b'{"generation_request_id": "req-1", "target_stems": ["bass"], "x": ' + (
        b"[" * depth + b"]" * depth + b"}"
    )


@pytest.mark.parametrize(
    ("body", "raw", "field"),
    [
        # Numbers are JSON numbers, ints exact: no strings, no booleans, no 7.5 seeds.
        ({**BODY, "seed": 7.5}, None, "seed"),
        ({**BODY, "seed": 7.0}, None, "seed"),
        ({**BODY, "seed": True}, None, "seed"),
        ({**BODY, "seed": "7"}, None, "seed"),
        ({**BODY, "seed": -1}, None, "seed"),
        ({**BODY, "seed": 2**32}, None, "seed"),
        (with_params(duration_seconds="10"), None, "parameters.duration_seconds"),
        (with_params(duration_seconds=0.5), None, "parameters.duration_seconds"),
        (with_params(duration_seconds=301), None, "parameters.duration_seconds"),
        (with_params(duration_seconds=False), None, "parameters.duration_seconds"),
        (with_params(target_bpm=39), None, "parameters.target_bpm"),
        (with_params(target_bpm=241), None, "parameters.target_bpm"),
        (with_params(target_bpm=True), None, "parameters.target_bpm"),
        (with_params(top_k=3.0), None, "parameters.top_k"),
        (with_params(style="s" * 201), None, "parameters.style"),
        (with_params(prompt="p" * 1001), None, "parameters.prompt"),
        (with_params(prompt=7), None, "parameters.prompt"),
        (None, b'{"generation_request_id": "r", "target_stems": ["bass"], "seed": 1e400}', "seed"),
        (
            None,
            b'{"generation_request_id": "r", "target_stems": ["bass"], '
            b'"parameters": {"duration_seconds": 1e400}}',
            "parameters.duration_seconds",
        ),
        # Stems: known, distinct, 1 to 8.
        ({**BODY, "target_stems": ["bass", "bass"]}, None, "target_stems"),
        ({**BODY, "target_stems": []}, None, "target_stems"),
        (
            {
                **BODY,
                "target_stems": [
                    "guitar",
                    "bass",
                    "drums",
                    "piano",
                    "keys",
                    "synth",
                    "strings",
                    "brass",
                    "vocals",
                ],
            },
            None,
            "target_stems",
        ),
        ({**BODY, "target_stems": "bass"}, None, "target_stems"),
        # Unknown fields, at every level.
        ({**BODY, "priority": 1}, None, "priority"),
        (with_params(tempo=120), None, "parameters.tempo"),
        # Ids: one safe path segment, a valid Durable instance id.
        ({**BODY, "generation_request_id": ".."}, None, "generation_request_id"),
        ({**BODY, "generation_request_id": "a..b"}, None, "generation_request_id"),
        ({**BODY, "generation_request_id": ".hidden"}, None, "generation_request_id"),
        ({**BODY, "generation_request_id": "trailing."}, None, "generation_request_id"),
        ({**BODY, "generation_request_id": "a/b"}, None, "generation_request_id"),
        ({**BODY, "generation_request_id": "a\\b"}, None, "generation_request_id"),
        ({**BODY, "generation_request_id": "a#b"}, None, "generation_request_id"),
        ({**BODY, "generation_request_id": "@entity"}, None, "generation_request_id"),
        ({**BODY, "generation_request_id": "req\n"}, None, "generation_request_id"),
        ({**BODY, "generation_request_id": "re\x00q"}, None, "generation_request_id"),
        ({**BODY, "generation_request_id": "réq"}, None, "generation_request_id"),
        ({**BODY, "generation_request_id": "r" * 129}, None, "generation_request_id"),
        ({**BODY, "generation_request_id": ""}, None, "generation_request_id"),
        ({**BODY, "generation_request_id": 42}, None, "generation_request_id"),
        ({**BODY, "audio_file_id": "../x"}, None, "audio_file_id"),
        # The body itself.
        ([BODY], None, "body"),
        ("req-1", None, "body"),
        (None, b"null", "body"),
        (None, b"42", "body"),
        (None, b'{"seed": 1, "seed": 2}', "body"),
        (None, b'{"seed": Infinity}', "body"),
        (None, b"\xef\xbb\xbf" + json.dumps(BODY).encode(), "body"),
        (None, json.dumps(BODY).encode("utf-16"), "body"),
        (None, b'{"generation_request_id": "caf\xe9"}', "body"),
        (None, b"[" * 100_000, "body"),
        (None, nested(9), "body"),
        (None, nested(10_000), "body"),
        (None, json.dumps({**BODY, "pad": "x" * (64 * 1024)}).encode(), "body"),
    ],
)
def test_every_bad_input_is_400_listing_the_field_and_starts_nothing(
    durable_client, body, raw, field
):
    response = call(handle_generate(post(body, raw), durable_client))
    assert response.status_code == 400
    reply = decoded(response)
    assert reply["error"] == "invalid request"
    assert field in {e["field"] for e in reply["errors"]}, reply["errors"]
    assert all(set(e) == {"field", "message", "type"} for e in reply["errors"])
    assert durable_client.started == []


def test_brackets_inside_strings_are_not_nesting(durable_client):
    prompt = 'say "[[[[[[[[[[[[" \\" {{{{{{{{{{ \\\\ [[[[[[[[['
    response = call(handle_generate(post(with_params(prompt=prompt)), durable_client))
    assert response.status_code == 202, response.get_body()
    assert durable_client.started[0][2]["parameters"]["prompt"] == prompt


def test_shallow_unknown_nesting_is_an_unknown_field_not_a_parse_error(durable_client):
    response = call(handle_generate(post(None, nested(7)), durable_client))
    assert response.status_code == 400
    assert [e["field"] for e in decoded(response)["errors"]] == ["x"]


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "application/jsonp",
        "application/json; charset=latin-1",
        "application/json; charset=utf-16",
    ],
)
def test_a_body_not_declared_as_utf8_json_is_400(durable_client, content_type):
    response = call(handle_generate(post(BODY, content_type=content_type), durable_client))
    assert response.status_code == 400
    [error] = decoded(response)["errors"]
    assert error["field"] == "body" and (
        "Content-Type" in error["message"] or "charset" in error["message"]
    )
    assert durable_client.started == []


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON",
        "application/json; charset=UTF-8",
        'application/json;charset="utf-8"',
    ],
)
def test_json_content_types_are_accepted(durable_client, content_type):
    response = call(handle_generate(post(BODY, content_type=content_type), durable_client))
    assert response.status_code == 202


def test_thousands_of_errors_are_summarised(durable_client):
    body = {**BODY, **{f"extra{i}": i for i in range(500)}}
    errors = decoded(call(handle_generate(post(body), durable_client)))["errors"]
    assert len(errors) == MAX_ERRORS + 1
    assert errors[-1] == {
        "field": "body",
        "message": "450 more errors not listed",
        "type": "too_many_errors",
    }


def test_the_same_request_posted_50_times_at_once_starts_one_orchestration(durable_client):
    async def post_all():
        return await asyncio.gather(
            *(handle_generate(post(BODY), durable_client) for _ in range(50))
        )

    responses = call(post_all())
    assert [s[1] for s in durable_client.started] == ["req-1"]
    assert {r.status_code for r in responses} == {202}
    bodies = [decoded(r) for r in responses]
    assert {b["id"] for b in bodies} == {"req-1"}
    assert sum(not b["duplicate"] for b in bodies) == 1
    assert durable_client.starts_refused == 0  # the worker's lock ordered them


def test_concurrent_workers_start_one_orchestration_and_the_rest_are_duplicates(
    durable_client, monkeypatch
):
    # As if each post ran in its own worker process: no shared lock, all read "unknown"
    # before any start; the durable extension refuses all starts but the first.
    monkeypatch.setattr(starter, "_lock_for", lambda instance_id: asyncio.Lock())

    async def post_all():
        return await asyncio.gather(
            *(handle_generate(post(BODY), durable_client) for _ in range(50))
        )

    responses = call(post_all())
    assert [s[1] for s in durable_client.started] == ["req-1"]
    assert durable_client.starts_refused == 49
    assert {r.status_code for r in responses} == {202}
    bodies = [decoded(r) for r in responses]
    assert {b["id"] for b in bodies} == {"req-1"}
    assert sorted(b["duplicate"] for b in bodies) == [False] + [True] * 49
    assert {b.get("runtimeStatus") for b in bodies if b["duplicate"]} == {"Pending"}


def test_a_start_refused_after_a_stale_read_is_answered_as_a_duplicate(durable_client):
    durable_client.set("req-1", "Running", input_=started_as(BODY))
    real_get_status = durable_client.get_status
    reads = []

    async def stale_first(instance_id, **kwargs):
        reads.append(instance_id)
        status = await real_get_status(instance_id, **kwargs)
        return type(status)(None) if len(reads) == 1 else status

    durable_client.get_status = stale_first
    response = call(handle_generate(post(BODY), durable_client))
    assert response.status_code == 202
    body = decoded(response)
    assert body["duplicate"] is True and body["runtimeStatus"] == "Running"
    assert durable_client.started == [] and durable_client.starts_refused == 1


def test_a_durable_client_failure_is_503_not_500(durable_client):
    durable_client.fail_next_start = ConnectionError("task hub unreachable")
    response = call(handle_generate(post(BODY), durable_client))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "req-1" in decoded(response)["error"] and durable_client.started == []


def test_status_of_an_impossible_id_is_400():
    client = FakeDurableClient()
    response = call(handle_status("../etc", client))
    assert response.status_code == 400
    assert decoded(response)["errors"][0]["field"] == "generation_request_id"


def test_status_when_the_durable_client_fails_is_503(durable_client):
    async def broken(instance_id):
        raise ConnectionError("task hub unreachable")

    durable_client.get_status = broken
    response = call(handle_status("req-1", durable_client))
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"


@pytest.mark.parametrize(
    ("state", "code"), [("Running", 202), ("Pending", 202), ("Completed", 200)]
)
def test_repeat_while_running_or_completed_starts_nothing(durable_client, state, code):
    durable_client.set("req-1", state, input_=started_as(BODY))
    response = call(handle_generate(post(BODY), durable_client))
    assert response.status_code == code
    body = decoded(response)
    assert body["duplicate"] is True and body["runtimeStatus"] == state and body["id"] == "req-1"
    assert durable_client.started == []


def test_repeat_after_failure_starts_again_without_the_first_runs_files(
    service_env, durable_client
):
    store = runtime.blob_store()
    store.upload_bytes("generations/req-1/guitar.wav", b"first run", "audio/wav")
    store.upload_bytes("generations/req-10/guitar.wav", b"another id", "audio/wav")
    durable_client.set("req-1", "Failed", input_=started_as(BODY))
    other = {**BODY, "target_stems": ["piano"]}  # a new body is allowed after a failure
    response = call(handle_generate(post(other), durable_client))
    assert response.status_code == 202
    assert [s[1] for s in durable_client.started] == ["req-1"]
    assert not store.exists("generations/req-1/guitar.wav")
    assert store.exists("generations/req-10/guitar.wav")  # a prefix of another id: untouched


def started_as(body, seed=1234):
    """The instance input a start of ``body`` leaves: the validated request, seed drawn."""
    return parse_request(body).with_seed().model_dump(mode="json") | (
        {} if body.get("seed") is not None else {"seed": seed}
    )


@pytest.mark.parametrize("state", ["Pending", "Running", "Completed"])
def test_the_same_id_with_a_different_body_is_a_conflict(durable_client, state):
    durable_client.set("req-1", state, input_=started_as(BODY))
    different = {**BODY, "parameters": {**BODY["parameters"], "target_bpm": 121}}
    response = call(handle_generate(post(different), durable_client))
    assert response.status_code == 409
    body = decoded(response)
    assert "already in use by a different request" in body["error"]
    assert body["runtimeStatus"] == state and durable_client.started == []


def test_a_seed_the_caller_did_not_give_matches_the_drawn_one(durable_client):
    durable_client.set("req-1", "Running", input_=started_as(BODY, seed=99))
    assert call(handle_generate(post(BODY), durable_client)).status_code == 202
    assert call(handle_generate(post({**BODY, "seed": 99}), durable_client)).status_code == 202
    assert call(handle_generate(post({**BODY, "seed": 98}), durable_client)).status_code == 409
    assert durable_client.started == []


def test_no_response_carries_the_durable_system_key(durable_client):
    seen = []
    for body in (BODY, BODY, {**BODY, "target_stems": ["piano"]}):
        response = call(handle_generate(post(body), durable_client))
        seen.append((response.get_body().decode(), dict(response.headers)))
    durable_client.set("req-1", "Completed", input_=started_as(BODY), output={"stems": []})
    seen.append((call(handle_status("req-1", durable_client)).get_body().decode(), {}))
    assert [json.loads(text).get("duplicate") for text, _ in seen[:2]] == [False, True]
    for text, headers in seen:
        assert SYSTEM_KEY not in text and SYSTEM_KEY not in json.dumps(headers)
        assert "code=" not in text and "runtime/webhooks" not in text


@pytest.mark.parametrize(
    ("callback_url", "env", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data", {}, "https"),
        ("https://169.254.169.254/latest/meta-data", {}, "cloud metadata"),
        ("https://10.0.0.5/cb", {}, "private"),
        ("https://[::ffff:127.0.0.1]/cb", {}, "loopback"),
        ("https://hooks.example.com/cb", {"CALLBACK_ALLOWED_HOSTS": "ok.example"}, "ALLOWED"),
        # Metadata stays blocked where local development allows private networks.
        (
            "http://169.254.169.254/latest/meta-data",
            {"CALLBACK_ALLOW_HTTP": "true", "CALLBACK_ALLOW_PRIVATE_NETWORKS": "true"},
            "cloud metadata",
        ),
        (
            "http://[fd00:ec2::254]/",
            {"CALLBACK_ALLOW_HTTP": "true", "CALLBACK_ALLOW_PRIVATE_NETWORKS": "true"},
            "cloud metadata",
        ),
    ],
)
def test_an_unsafe_callback_url_is_a_400_at_post(
    durable_client, monkeypatch, callback_url, env, reason
):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    runtime.reset_for_tests()
    response = call(handle_generate(post({**BODY, "callback_url": callback_url}), durable_client))
    assert response.status_code == 400
    [error] = decoded(response)["errors"]
    assert error["field"] == "callback_url" and reason in error["message"]
    assert durable_client.started == []


def test_an_unsafe_default_callback_url_is_a_400_naming_the_setting(durable_client, monkeypatch):
    monkeypatch.setenv("CALLBACK_URL", "https://127.0.0.1/hook")
    runtime.reset_for_tests()
    response = call(handle_generate(post(BODY), durable_client))
    assert response.status_code == 400
    assert decoded(response)["errors"][0]["field"] == "CALLBACK_URL"


def test_a_public_https_callback_passes_at_post(durable_client):
    body = {**BODY, "callback_url": "https://hooks.example.com/stems?token=x"}
    assert call(handle_generate(post(body), durable_client)).status_code == 202


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
SERVICE_KEYS = {"stable_audio", "musicgen", "ace_step", "storage", "device"}


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
        "ace_step": "disabled",
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
    with caplog.at_level("INFO"):
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


def test_an_engine_this_worker_does_not_serve_is_400_and_starts_nothing(
    service_env, durable_client
):
    response = call(handle_generate(post(with_params(engine="ace_step")), durable_client))
    assert response.status_code == 400
    [error] = decoded(response)["errors"]
    assert error["field"] == "parameters.engine"
    assert "not served by this worker (ENGINES=musicgen)" in error["message"]
    assert durable_client.started == []


def test_an_engine_still_loading_or_failed_is_503_and_starts_nothing(
    service_env, durable_client, monkeypatch, tmp_path
):
    monkeypatch.setenv("ENGINES", "musicgen,ace_step")
    monkeypatch.setenv("ACE_STEP_MODEL", str(tmp_path / "missing-ace-step"))
    runtime.reset_for_tests()
    response = call(handle_generate(post(with_params(engine="ace_step")), durable_client))
    assert response.status_code == 503  # not loaded yet: the load starts now
    runtime.ace_step().warm_up_in_background().join(timeout=30)
    response = call(handle_generate(post(with_params(engine="ace_step")), durable_client))
    assert response.status_code == 503
    assert "failed" in decoded(response)["error"]
    assert "cannot load ACE-Step model" in decoded(response)["error"]
    assert durable_client.started == []
    runtime.model().get()
    body, status = health_report()
    assert status == 503 and body["services"]["ace_step"] == "failed"
    assert body["services"]["musicgen"] == "available"


def test_health_needs_every_served_engine_available(
    service_env, monkeypatch, ace_tiny_checkpoint, durable_client
):
    monkeypatch.setenv("ENGINES", "musicgen,ace_step")
    monkeypatch.setenv("ACE_STEP_MODEL", str(ace_tiny_checkpoint))
    runtime.reset_for_tests()
    runtime.model().get()
    body, status = health_report()
    assert status == 503 and body["services"]["ace_step"] == "not_loaded"
    runtime.ace_step().warm_up_in_background().join(timeout=60)
    body, status = health_report()
    assert status == 200 and body["services"]["ace_step"] == "available"
    response = call(handle_generate(post(with_params(engine="ace_step")), durable_client))
    assert response.status_code == 202
    assert durable_client.started[0][2]["parameters"]["engine"] == "ace_step"
