"""Faults injected into the real pipeline, and nothing lost.

Each test breaks one thing under the real pieces (the tiny MusicGen, Azurite, a real local
callback receiver, the real orchestrator replayed by ``DurableDriver``) and shows that every
stem that could be delivered was, the blobs are whole and unduplicated, and the outcome is
recorded. Faults covered here:

- the callback receiver answering 500, then 500 for good, down, and too slow;
- blob storage failing transiently (each blob's first upload answered 503, or refused at
  the connection), injected at the azure-core transport under the real ``BlobStore``;
- the same request posted 20 times at once, then generated: one orchestration, one set
  of blobs;
- a poison batch file: lines that are not JSON, not UTF-8, not objects, nested too deep,
  too large, with NaN, a repeated key or a bad id, beside good lines that still run; and a
  JSON array with a too-deep item among good ones.

Covered elsewhere, not repeated here:

- one stem's generation raising on every retry (the others delivered, the failure in the
  manifest, callback and status): ``tests/test_end_to_end.py::
  test_a_stem_failing_every_retry_still_delivers_the_rest``;
- an activity executed twice (same blobs, no duplicates): ``tests/test_end_to_end.py::
  test_a_redelivered_stem_activity_rewrites_the_same_blob``;
- concurrent posts without the pipeline (50 at once, in one worker and across workers):
  ``tests/orchestrators/test_http_api.py``;
- a batch file that is not JSON at all, and a batch file with broken lines:
  ``tests/orchestrators/test_batch_trigger.py``.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import socket
import time
from collections import Counter
from typing import Any

import azure.functions as func
import pytest
import requests
import soundfile as sf
from azure.core.exceptions import ServiceRequestError
from azure.core.pipeline.transport import RequestsTransport, RequestsTransportResponse
from azure.storage.blob import BlobServiceClient
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from generation.adapters.storage import BlobStore
from generation.errors import StorageError
from orchestrators import activities, runtime
from orchestrators.generation_orchestrator import FINALIZE_GENERATION, GENERATE_STEM, orchestrate
from orchestrators.http_api import handle_generate
from orchestrators.starter import ORCHESTRATOR
from tests.orchestrators.durable_driver import DurableDriver
from tests.orchestrators.durable_history import Replay
from tests.orchestrators.test_batch_trigger import drop_and_trigger
from tests.service_fixtures import FakeDurableClient

DURATION_S = 1.0
SAMPLE_RATE = 32000
STEMS = ["guitar", "bass"]
ACTIVITIES = {
    GENERATE_STEM: activities.generate_stem,
    FINALIZE_GENERATION: activities.finalize_generation,
    "send_callback": activities.send_callback,
}


def body(request_id: str, callback_url: str | None = None) -> dict[str, Any]:
    return {
        "generation_request_id": request_id,
        "target_stems": STEMS,
        "parameters": {"duration_seconds": DURATION_S, "style": "funk"},
        "callback_url": callback_url,
        "seed": 11,
    }


def post(request_body: dict[str, Any]) -> func.HttpRequest:
    return func.HttpRequest(
        "POST",
        "http://localhost/generate",
        body=json.dumps(request_body).encode(),
        headers={"Content-Type": "application/json"},
    )


def start(client: FakeDurableClient, request_body: dict[str, Any]) -> tuple[str, Any]:
    """POST /generate through the real handler; the instance id and its input."""
    response = asyncio.run(handle_generate(post(request_body), client))
    assert response.status_code == 202, response.get_body()
    [(name, instance_id, client_input)] = client.started
    assert name == ORCHESTRATOR
    return instance_id, client_input


def drive(instance_id: str, client_input: Any) -> tuple[DurableDriver, Replay]:
    """Play the Durable host for the instance ``start`` began, to its end."""
    driver = DurableDriver(
        orchestrate, client_input, ACTIVITIES, name=ORCHESTRATOR, instance_id=instance_id
    )
    return driver, driver.run()


def blob_names(prefix: str) -> list[str]:
    container = runtime.blob_store()._container  # the SDK client: what is really there
    return sorted(blob.name for blob in container.list_blobs(name_starts_with=prefix))


def assert_delivered_whole(instance_id: str) -> dict[str, Any]:
    """Both stems and the manifest are in storage, complete; returns the manifest."""
    prefix = f"generations/{instance_id}/"
    assert blob_names(prefix) == [
        f"{prefix}{n}" for n in ("bass.wav", "guitar.wav", "manifest.json", "mix.wav")
    ]
    store = runtime.blob_store()
    for stem in STEMS:
        audio, sample_rate = sf.read(io.BytesIO(store.download_bytes(f"{prefix}{stem}.wav")))
        assert sample_rate == SAMPLE_RATE and audio.shape[0] == int(DURATION_S * SAMPLE_RATE)
    manifest = json.loads(store.download_bytes(f"{prefix}manifest.json"))
    assert [s["stem"] for s in manifest["stems"]] == STEMS and manifest["failed_stems"] == []
    return manifest


# --- the callback receiver misbehaves -------------------------------------------------------


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"  # nothing listens there now


@pytest.mark.parametrize("receiver", ["500 then 200", "500 for good", "down", "slow"])
def test_a_misbehaving_callback_receiver_never_costs_the_generation(
    service_env, durable_client, httpserver: HTTPServer, monkeypatch, receiver
):
    monkeypatch.setenv("CALLBACK_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("CALLBACK_TIMEOUT_SECONDS", "0.5")
    runtime.reset_for_tests()
    url = httpserver.url_for("/hook")
    if receiver == "500 then 200":
        httpserver.expect_ordered_request("/hook", method="POST").respond_with_data("no", 500)
        httpserver.expect_ordered_request("/hook", method="POST").respond_with_data("ok", 200)
    elif receiver == "500 for good":
        httpserver.expect_request("/hook", method="POST").respond_with_data("no", 500)
    elif receiver == "down":
        url = closed_port_url()
    else:

        def too_slow(request: Request) -> Response:
            time.sleep(1.0)  # twice the callback timeout
            return Response("late", 200)

        httpserver.expect_request("/hook", method="POST").respond_with_handler(too_slow)
    instance_id, client_input = start(durable_client, body(f"cb-{receiver.replace(' ', '-')}", url))

    driver, last = drive(instance_id, client_input)

    assert last.is_done and last.error is None  # the stems were delivered: it completed
    assert last.output["status"] == "completed" and last.output["failed_stems"] == []
    assert_delivered_whole(instance_id)
    outcome = last.output["callback"]  # and what became of the callback is recorded
    assert outcome["target"] == url.split("?")[0]
    if receiver == "500 then 200":
        assert outcome["delivered"] is True and outcome["attempts"] == 2
        assert outcome["status_code"] == 200 and outcome["error"] is None
    else:
        assert outcome["delivered"] is False and outcome["error"]
        assert 1 <= outcome["attempts"] <= 3
    if receiver == "500 for good":
        assert outcome["status_code"] == 500 and outcome["attempts"] == 3
        assert len(httpserver.log) == 3
    if receiver == "slow":
        # The receiver still works through the abandoned POSTs one by one; let it finish so
        # that they are not logged into the next test.
        deadline = time.monotonic() + 10
        while len(httpserver.log) < outcome["attempts"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(httpserver.log) == outcome["attempts"]
    # Each activity ran once: the callback's trouble never re-ran a generation.
    assert Counter(e.name for e in driver.executions) == {
        GENERATE_STEM: 2,
        FINALIZE_GENERATION: 1,
        "send_callback": 1,
    }


# --- blob storage fails transiently ---------------------------------------------------------


class FlakyTransport(RequestsTransport):
    """A real HTTP transport that fails the first upload of every blob under ``prefix``.

    ``mode`` "503": Azure Storage's "server busy" answer; "refused": a connection error
    (``ServiceRequestError``), as when the storage front end drops the connection.
    """

    def __init__(self, prefix: str, mode: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.mode = mode
        self.uploads: Counter[str] = Counter()
        self.failed: list[str] = []

    def send(self, request, **kwargs):
        path = request.url.split("?", 1)[0]
        if request.method == "PUT" and f"/{self.prefix}" in path:
            blob = path.split(f"/{self.prefix}", 1)[1]
            self.uploads[blob] += 1
            if self.uploads[blob] == 1:
                self.failed.append(blob)
                if self.mode == "refused":
                    raise ServiceRequestError("injected: connection refused")
                return self._busy(request)
        return super().send(request, **kwargs)

    @staticmethod
    def _busy(request) -> RequestsTransportResponse:
        response = requests.Response()
        response.status_code = 503
        response.reason = "Server Busy"
        response.headers["x-ms-error-code"] = "ServerBusy"
        response.headers["Content-Length"] = "0"
        response._content = b""
        return RequestsTransportResponse(request, response)


@pytest.mark.parametrize("mode", ["503", "refused"])
def test_transient_blob_failures_are_retried_by_the_activities_and_nothing_is_lost(
    service_env, httpserver: HTTPServer, monkeypatch, azurite_connection_string, mode
):
    durable_client = FakeDurableClient()
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    request_id = f"flaky-{mode}"
    transport = FlakyTransport(f"generations/{request_id}/", mode)
    real = runtime.blob_store()  # the container, created; then the same one, flaky
    # No retries inside the SDK: each failure reaches the activity, whose retry must cope.
    service = BlobServiceClient.from_connection_string(
        azurite_connection_string, transport=transport, retry_total=0
    )
    monkeypatch.setattr(
        runtime, "_store", functools.cache(lambda: BlobStore(service, real.container))
    )
    instance_id, client_input = start(durable_client, body(request_id, httpserver.url_for("/hook")))

    driver, last = drive(instance_id, client_input)

    assert last.is_done and last.output["status"] == "completed"
    assert sorted(transport.failed) == ["bass.wav", "guitar.wav", "manifest.json", "mix.wav"]
    # Every blob write failed once and succeeded on the activity's second attempt.
    attempts = [(e.name, e.input.get("stem"), e.attempt, e.succeeded) for e in driver.executions]
    assert attempts == [
        (GENERATE_STEM, "guitar", 1, False),
        (GENERATE_STEM, "guitar", 2, True),
        (GENERATE_STEM, "bass", 1, False),
        (GENERATE_STEM, "bass", 2, True),
        (FINALIZE_GENERATION, None, 1, False),  # the mix's first upload
        (FINALIZE_GENERATION, None, 2, False),  # the manifest's first upload
        (FINALIZE_GENERATION, None, 3, True),
        ("send_callback", None, 1, True),
    ]
    first_failure = driver.executions[0].error
    assert isinstance(first_failure, StorageError)  # translated at the adapter, as it should be
    expected = "HTTP 503" if mode == "503" else "cannot reach the storage endpoint"
    assert expected in str(first_failure)
    manifest = assert_delivered_whole(instance_id)
    assert manifest["request"]["seed"] == 11
    [(callback_request, _)] = httpserver.log
    assert callback_request.get_json()["status"] == "completed"


# --- the same request, many times at once, through the pipeline ------------------------------


def test_the_same_request_posted_20_times_at_once_is_generated_once(
    service_env, httpserver: HTTPServer
):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    client = FakeDurableClient()
    request_body = body("together", httpserver.url_for("/hook"))

    async def post_all():
        return await asyncio.gather(
            *(handle_generate(post(request_body), client) for _ in range(20))
        )

    responses = asyncio.run(post_all())
    assert {r.status_code for r in responses} == {202}
    assert sum(not json.loads(r.get_body())["duplicate"] for r in responses) == 1
    [(_, instance_id, client_input)] = client.started

    _, last = drive(instance_id, client_input)

    assert last.is_done
    assert_delivered_whole(instance_id)
    assert len(httpserver.log) == 1


# --- a poison batch file --------------------------------------------------------------------


def test_a_poison_batch_file_runs_its_good_lines_and_reports_each_bad_one(
    service_env, durable_client
):
    good = {"generation_request_id": "p-1", "target_stems": ["bass"]}
    lines = [
        json.dumps(good),  # 1
        "{not json",  # 2
        "[" * 50_000,  # 3: a depth bomb
        '{"generation_request_id": "p-4", "target_stems": ["bass"], "x": '
        + "[" * 20
        + "]" * 20
        + "}",
        json.dumps([good]),  # 5: not an object
        "42",  # 6
        json.dumps({**good, "generation_request_id": "p-7", "pad": "x" * 70_000}),  # 7: too big
        '{"generation_request_id": "p-8", "target_stems": ["bass"], "seed": NaN}',  # 8
        '{"generation_request_id": "p-9", "generation_request_id": "p-x", "target_stems": []}',
        json.dumps({**good, "generation_request_id": "../p-10"}),  # 10
        json.dumps({**good, "generation_request_id": "p-11"}),  # 11
    ]
    # 12: a request written in Latin-1, not UTF-8 (so encoded below)
    lines.append('{"generation_request_id": "p-12", "target_stems": ["bass"], "prompt": "caf\xe9"}')
    data = b"\xef\xbb\xbf" + "\n".join(lines).encode("utf-8").replace(
        "caf\xe9".encode(), "caf\xe9".encode("latin-1")
    )

    report = drop_and_trigger("poison.jsonl", data, durable_client)

    assert report["error"] is None
    assert [s[1] for s in durable_client.started] == ["p-1", "p-11"]
    by_line = {e["line"]: e for e in report["entries"]}
    assert by_line[1]["outcome"] == by_line[11]["outcome"] == "started"
    messages = {n: by_line[n]["errors"][0]["message"] for n in (*range(2, 11), 12)}
    assert all(by_line[n]["outcome"] == "invalid" for n in messages)
    assert "not valid JSON" in messages[2]
    assert "deeper than" in messages[3] and "deeper than" in messages[4]
    assert "JSON object" in messages[5] and "JSON object" in messages[6]
    assert "larger than" in messages[7]
    assert "NaN" in messages[8]
    assert "twice" in messages[9]
    assert by_line[10]["errors"][0]["field"] == "generation_request_id"
    assert "not UTF-8" in messages[12]
    assert report["counts"] == {
        "started": 2,
        "duplicate": 0,
        "conflict": 0,
        "invalid": 10,
        "error": 0,
    }


def test_a_batch_array_with_a_too_deep_item_runs_the_others(service_env, durable_client):
    items = [
        {"generation_request_id": "a-1", "target_stems": ["drums"]},
        {
            "generation_request_id": "a-2",
            "target_stems": ["drums"],
            "x": json.loads("[" * 12 + "]" * 12),
        },
        "not an object",
        {"generation_request_id": "a-4", "target_stems": ["drums"]},
    ]
    report = drop_and_trigger("deep.json", json.dumps(items).encode(), durable_client)
    assert [s[1] for s in durable_client.started] == ["a-1", "a-4"]
    outcomes = [e["outcome"] for e in report["entries"]]
    assert outcomes == ["started", "invalid", "invalid", "started"]
    assert "deeper than" in report["entries"][1]["errors"][0]["message"]
