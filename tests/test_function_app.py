"""The function index as the host reads it: every function, trigger, route and binding."""

import json
from pathlib import Path

import pytest

from generation.errors import SettingsError


def index(app) -> dict[str, list[dict]]:
    return {
        f.get_function_name(): json.loads(f.get_function_json())["bindings"]
        for f in app.get_functions()
    }


def binding(bindings: list[dict], kind: str) -> dict:
    [found] = [b for b in bindings if b["type"] == kind]
    return found


def test_every_function_is_indexed(function_app):
    assert set(index(function_app.app)) == {
        "start_generation",
        "generation_status",
        "health",
        "stem_generation_orchestrator",
        "analyze_upload",
        "generate_stem",
        "finalize_generation",
        "send_callback",
        "start_batch",
        "studio_page",
        "studio_asset",
        "upload_track",
        "generation_file",
    }


@pytest.mark.parametrize(
    ("name", "route", "method"),
    [
        ("start_generation", "generate", "POST"),
        ("generation_status", "generate/{generation_request_id}", "GET"),
        ("health", "health", "GET"),
    ],
)
def test_http_routes_are_the_old_workers(function_app, name, route, method):
    bindings = index(function_app.app)[name]
    trigger = binding(bindings, "httpTrigger")
    assert trigger["route"] == route and trigger["methods"] == [method]
    assert binding(bindings, "http")["direction"] == "OUT"


@pytest.mark.parametrize(
    ("name", "auth_level"),
    [("start_generation", "FUNCTION"), ("generation_status", "FUNCTION"), ("health", "ANONYMOUS")],
)
def test_generation_endpoints_need_a_function_key_health_does_not(function_app, name, auth_level):
    # As the host reads it from the function index; FUNCTION: a function or host key.
    trigger = binding(index(function_app.app)[name], "httpTrigger")
    assert trigger["authLevel"] == auth_level


@pytest.mark.parametrize(
    ("name", "route", "method", "auth_level"),
    [
        # An empty optional segment: the only route template the host matches at "/".
        ("studio_page", "{page:maxlength(0)?}", "GET", "ANONYMOUS"),
        ("studio_asset", "studio/{name}", "GET", "ANONYMOUS"),
        ("upload_track", "uploads", "POST", "FUNCTION"),
        ("generation_file", "generate/{generation_request_id}/files/{name}", "GET", "FUNCTION"),
    ],
)
def test_studio_routes_the_page_is_anonymous_the_data_needs_a_key(
    function_app, name, route, method, auth_level
):
    bindings = index(function_app.app)[name]
    trigger = binding(bindings, "httpTrigger")
    assert trigger["route"] == route and trigger["methods"] == [method]
    assert trigger["authLevel"] == auth_level
    assert not [b for b in bindings if b["type"] == "durableClient"]


def test_generation_endpoints_get_a_durable_client_health_does_not(function_app):
    functions = index(function_app.app)
    assert binding(functions["start_generation"], "durableClient")["name"] == "client"
    assert binding(functions["generation_status"], "durableClient")["name"] == "client"
    assert not [b for b in functions["health"] if b["type"] == "durableClient"]


def test_orchestrator_and_activities_bindings(function_app):
    functions = index(function_app.app)
    assert binding(functions["stem_generation_orchestrator"], "orchestrationTrigger")["name"] == (
        "context"
    )
    for activity in ("analyze_upload", "generate_stem", "finalize_generation", "send_callback"):
        trigger = binding(functions[activity], "activityTrigger")
        assert trigger["name"] == "payload" and trigger["activity"] == activity


def test_batch_blob_trigger(function_app):
    bindings = index(function_app.app)["start_batch"]
    trigger = binding(bindings, "blobTrigger")
    assert trigger["path"] == "generation-batches/{name}"
    assert trigger["connection"] == "AzureWebJobsStorage"
    assert binding(bindings, "durableClient")["name"] == "client"


def test_host_json_serves_the_api_at_the_root_with_durable_settings():
    host = json.loads((Path(__file__).resolve().parents[1] / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensions"]["http"]["routePrefix"] == ""
    assert host["extensionBundle"]["version"].startswith("[4.")
    assert "durableTask" in host["extensions"]


def test_a_bad_setting_stops_the_app_at_start_naming_the_key(service_env, monkeypatch):
    import importlib

    import function_app
    from orchestrators import runtime

    monkeypatch.setenv("CALLBACK_MAX_ATTEMPTS", "zero")
    runtime.reset_for_tests()
    with pytest.raises(SettingsError, match="CALLBACK_MAX_ATTEMPTS"):
        importlib.reload(function_app)
