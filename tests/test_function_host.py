"""The test host itself: routes and keys from the function index, the SDK's real durable
client over the host's RPC API, orchestrations run to their end, one host after another."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest

from tests.function_host import FunctionHost, match_route, parse_route

bp = df.Blueprint()


@bp.route(route="start/{run_id}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def start(req: func.HttpRequest, client) -> func.HttpResponse:
    run_id = req.route_params["run_id"]
    await client.start_new("echo_orchestrator", run_id, {"run": run_id})
    return func.HttpResponse(json.dumps(client.create_http_management_payload(run_id)))


@bp.route(route="runs/{run_id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def status(req: func.HttpRequest, client) -> func.HttpResponse:
    found = await client.get_status(req.route_params["run_id"])
    if found.runtime_status is None:
        return func.HttpResponse(status_code=404)
    body = {"status": found.runtime_status.value, "output": found.output}
    return func.HttpResponse(json.dumps(body), mimetype="application/json")


@bp.route(route="{page:maxlength(0)?}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def root(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("root", mimetype="text/plain")


def echo_orchestrator(context: df.DurableOrchestrationContext):
    result = yield context.call_activity("echo", context.get_input())
    return result


@bp.activity_trigger(input_name="payload", activity="echo")
def echo(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "echoed": True}


bp.orchestration_trigger(context_name="context")(echo_orchestrator)

KEY = "host-test-key"


def call(url: str, method: str = "GET", key: str | None = KEY) -> tuple[int, bytes, Any]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if key:
        request.add_header("x-functions-key", key)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("generate/{id}", "generate/r1", {"id": "r1"}),
        ("generate/{id}", "generate/r1/files/x", None),
        ("generate/{id}/files/{name}", "generate/r1/files/a.wav", {"id": "r1", "name": "a.wav"}),
        ("{page:maxlength(0)?}", "", {}),
        ("{page:maxlength(0)?}", "health", None),
        ("static/{*rest}", "static/a/b", {"rest": "a/b"}),
    ],
)
def test_route_templates_match_as_the_host_matches_them(template, path, expected):
    parts = [p for p in path.split("/") if p]
    assert match_route(parse_route(template), parts) == expected


def test_two_hosts_in_turn_start_and_finish_orchestrations_through_the_real_client():
    for run in ("first", "second"):  # the SDK's shared HTTP session survives a new host
        app = df.DFApp()
        app.register_functions(bp)
        host = FunctionHost(app, key=KEY, orchestrators={"echo_orchestrator": echo_orchestrator})
        host.start()
        try:
            assert call(host.url, key=None)[:2] == (200, b"root")
            assert call(f"{host.url}start/{run}", "POST", key=None)[0] == 401
            assert call(f"{host.url}start/{run}", "POST", key="wrong")[0] == 401
            code, body, _ = call(f"{host.url}start/{run}", "POST")
            assert code == 200 and json.loads(body)["id"] == run
            deadline = time.monotonic() + 30
            while True:
                code, body, headers = call(f"{host.url}runs/{run}")
                state = json.loads(body)
                if state["status"] == "Completed" or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert state == {"status": "Completed", "output": {"run": run, "echoed": True}}
            assert headers["Content-Type"] == "application/json"
            assert call(f"{host.url}runs/never")[0] == 404
        finally:
            host.stop()
        assert host.errors == []
