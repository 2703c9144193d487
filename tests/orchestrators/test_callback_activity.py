"""The send_callback activity applies the callback settings: policy, secret, time budget."""

from __future__ import annotations

import logging

import pytest
from pytest_httpserver import HTTPServer

from generation.adapters.callback import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from generation.errors import SettingsError
from orchestrators import activities, runtime
from orchestrators.settings import load_service_settings

NEW = "activity-secret-new-0123456789"
OLD = "activity-secret-old-0123456789"
PAYLOAD = {"generation_request_id": "req-cb-1", "status": "completed", "stems": []}


def reload(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    runtime.reset_for_tests()


def test_a_loopback_url_is_not_contacted_in_production_settings(
    service_env, monkeypatch, httpserver: HTTPServer
):
    reload(monkeypatch, CALLBACK_ALLOW_HTTP="true", CALLBACK_ALLOW_PRIVATE_NETWORKS="false")
    httpserver.expect_request("/hook").respond_with_data("ok")
    outcome = activities.send_callback(
        {"callback_url": httpserver.url_for("/hook?token=abc"), "payload": PAYLOAD}
    )
    assert outcome["delivered"] is False and outcome["skipped"] is False
    assert outcome["attempts"] == 0
    assert (
        outcome["error"] == "unsafe callback URL: host 'localhost' resolves to a loopback address"
    )
    assert "abc" not in str(outcome)
    assert httpserver.log == []


def test_plain_http_is_refused_by_default(service_env, monkeypatch, httpserver: HTTPServer):
    monkeypatch.delenv("CALLBACK_ALLOW_HTTP")
    monkeypatch.delenv("CALLBACK_ALLOW_PRIVATE_NETWORKS")
    runtime.reset_for_tests()
    assert runtime.settings().callback_allow_http is False
    assert runtime.settings().callback_allow_private_networks is False
    outcome = activities.send_callback(
        {"callback_url": httpserver.url_for("/hook"), "payload": PAYLOAD}
    )
    assert outcome["error"].startswith("unsafe callback URL: the scheme must be https")
    assert httpserver.log == []


def test_the_allowlist_setting_is_applied(service_env, monkeypatch, httpserver: HTTPServer):
    reload(monkeypatch, CALLBACK_ALLOWED_HOSTS="hooks.example.com, other.example.com")
    outcome = activities.send_callback(
        {"callback_url": httpserver.url_for("/hook"), "payload": PAYLOAD}
    )
    assert outcome["error"] == (
        "unsafe callback URL: host 'localhost' is not in CALLBACK_ALLOWED_HOSTS"
    )
    reload(monkeypatch, CALLBACK_ALLOWED_HOSTS="LOCALHOST")
    httpserver.expect_request("/hook").respond_with_data("ok")
    outcome = activities.send_callback(
        {"callback_url": httpserver.url_for("/hook"), "payload": PAYLOAD}
    )
    assert outcome["delivered"] is True


def test_callbacks_are_signed_with_the_first_secret(
    service_env, monkeypatch, httpserver: HTTPServer, caplog
):
    caplog.set_level(logging.DEBUG)
    reload(monkeypatch, CALLBACK_SECRET=f"{NEW}, {OLD}")
    httpserver.expect_request("/hook").respond_with_data("ok")
    outcome = activities.send_callback(
        {"callback_url": httpserver.url_for("/hook"), "payload": PAYLOAD}
    )
    assert outcome["delivered"] is True and outcome["signed"] is True
    [(request, _)] = httpserver.log
    args = (
        request.headers[TIMESTAMP_HEADER],
        request.get_data(),
        request.headers[SIGNATURE_HEADER],
    )
    assert verify_signature(NEW, *args)
    assert not verify_signature(OLD, *args)
    assert NEW not in caplog.text and OLD not in caplog.text
    assert NEW not in str(outcome) and NEW not in repr(runtime.settings())


def test_unsigned_callbacks_are_warned_about_at_start(service_env, caplog):
    caplog.set_level(logging.WARNING, logger="orchestrators.settings")
    runtime.reset_for_tests()
    settings = runtime.settings()
    assert settings.callback_secrets() == []
    assert "CALLBACK_SECRET is not set: callbacks are sent unsigned" in caplog.text


def test_the_time_budget_setting_is_read(service_env, monkeypatch):
    assert runtime.settings().callback_max_total_seconds == 120
    reload(monkeypatch, CALLBACK_MAX_TOTAL_SECONDS="30")
    assert runtime.settings().callback_max_total_seconds == 30


@pytest.mark.parametrize(
    "value",
    [
        "short",
        "a-long-enough-secret-000000,short",
        "one-long-enough-secret-00000,two-long-enough-secret-0000,three-long-enough-secret-00",
        "a-long-enough-secret-000000,",
    ],
)
def test_a_bad_secret_fails_at_start_naming_the_key_not_the_value(service_env, monkeypatch, value):
    monkeypatch.setenv("CALLBACK_SECRET", value)
    with pytest.raises(SettingsError, match="CALLBACK_SECRET") as raised:
        load_service_settings()
    for part in value.split(","):
        if part:
            assert part not in str(raised.value)
