"""send_callback against a real local HTTP server (pytest-httpserver)."""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Iterator

import pytest
import requests
from pytest_httpserver import HTTPServer

from generation.callback import CallbackOutcome, CallbackStatus, redact_url, send_callback

PAYLOAD = {
    "generation_request_id": "req-1",
    "status": CallbackStatus.COMPLETED,
    "stems": {
        "bass": "http://127.0.0.1:10000/devstoreaccount1/audio-files/generations/req-1/bass.wav"
    },
    "duration_seconds": 10.0,
}


class FakeSleep:
    """Records the delays it is asked for instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def fake_sleep() -> FakeSleep:
    return FakeSleep()


def our_log(caplog: pytest.LogCaptureFixture) -> str:
    """What this module logged (the receiver and urllib3 log the full URL themselves)."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "generation.callback")


def closed_port() -> int:
    """A local TCP port with nothing listening on it (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (kernel backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def test_status_values() -> None:
    assert [s.value for s in CallbackStatus] == ["completed", "failed"]


def test_delivered_on_first_try_with_the_payload_as_json(
    httpserver: HTTPServer, fake_sleep: FakeSleep
) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    outcome = send_callback(httpserver.url_for("/hook"), PAYLOAD, sleep=fake_sleep)
    assert outcome == CallbackOutcome(
        delivered=True,
        skipped=False,
        attempts=1,
        status_code=200,
        error=None,
        target=httpserver.url_for("/hook"),
    )
    assert fake_sleep.delays == []
    (request, _), *_ = httpserver.log
    assert request.headers["Content-Type"] == "application/json"
    assert request.get_json() == {**PAYLOAD, "status": "completed"}


def test_uses_the_injected_session(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook", method="POST", headers={"X-Test": "1"}).respond_with_data(
        "", status=204
    )
    with requests.Session() as session:
        session.headers["X-Test"] = "1"
        outcome = send_callback(httpserver.url_for("/hook"), PAYLOAD, session=session)
        assert outcome.delivered
        assert outcome.status_code == 204
        # still usable: the sender leaves an injected session open
        assert session.post(httpserver.url_for("/hook"), timeout=5).status_code == 204


def test_500_then_200_is_delivered_on_the_second_attempt(
    httpserver: HTTPServer, fake_sleep: FakeSleep
) -> None:
    httpserver.expect_ordered_request("/hook", method="POST").respond_with_data("no", status=500)
    httpserver.expect_ordered_request("/hook", method="POST").respond_with_data("ok")
    outcome = send_callback(httpserver.url_for("/hook"), PAYLOAD, sleep=fake_sleep)
    assert outcome.delivered
    assert outcome.attempts == 2
    assert outcome.status_code == 200
    assert outcome.error is None
    assert fake_sleep.delays == [1.0]
    assert len(httpserver.log) == 2
    httpserver.check_assertions()


def test_backoff_is_exponential_and_capped(httpserver: HTTPServer, fake_sleep: FakeSleep) -> None:
    for _ in range(4):
        httpserver.expect_ordered_request("/hook").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request("/hook").respond_with_data("ok")
    outcome = send_callback(
        httpserver.url_for("/hook"), PAYLOAD, sleep=fake_sleep, backoff_s=1.0, max_backoff_s=5.0
    )
    assert outcome.delivered
    assert outcome.attempts == 5
    assert fake_sleep.delays == [1.0, 2.0, 4.0, 5.0]


def test_429_retry_after_is_honoured(httpserver: HTTPServer, fake_sleep: FakeSleep) -> None:
    httpserver.expect_ordered_request("/hook").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "7"}
    )
    httpserver.expect_ordered_request("/hook").respond_with_data("ok")
    outcome = send_callback(httpserver.url_for("/hook"), PAYLOAD, sleep=fake_sleep)
    assert outcome.delivered
    assert outcome.attempts == 2
    assert fake_sleep.delays == [7.0]


def test_retry_after_is_capped_and_a_date_falls_back_to_backoff(
    httpserver: HTTPServer, fake_sleep: FakeSleep
) -> None:
    httpserver.expect_ordered_request("/hook").respond_with_data(
        "", status=429, headers={"Retry-After": "3600"}
    )
    httpserver.expect_ordered_request("/hook").respond_with_data(
        "", status=503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    )
    httpserver.expect_ordered_request("/hook").respond_with_data("ok")
    outcome = send_callback(
        httpserver.url_for("/hook"), PAYLOAD, sleep=fake_sleep, backoff_s=0.5, max_backoff_s=30
    )
    assert outcome.delivered
    assert fake_sleep.delays == [30.0, 1.0]


def test_404_is_final_without_retry(httpserver: HTTPServer, fake_sleep: FakeSleep) -> None:
    httpserver.expect_request("/hook").respond_with_data("gone", status=404)
    outcome = send_callback(httpserver.url_for("/hook"), PAYLOAD, sleep=fake_sleep)
    assert not outcome.delivered
    assert not outcome.skipped
    assert outcome.attempts == 1
    assert outcome.status_code == 404
    assert outcome.error == "HTTP 404"
    assert fake_sleep.delays == []
    assert len(httpserver.log) == 1


def test_redirects_are_not_followed(httpserver: HTTPServer, fake_sleep: FakeSleep) -> None:
    httpserver.expect_request("/hook").respond_with_data(
        "", status=302, headers={"Location": httpserver.url_for("/elsewhere")}
    )
    outcome = send_callback(httpserver.url_for("/hook"), PAYLOAD, sleep=fake_sleep)
    assert not outcome.delivered
    assert outcome.status_code == 302
    assert outcome.attempts == 1
    assert [req.path for req, _ in httpserver.log] == ["/hook"]


def test_receiver_down_gives_up_after_max_attempts_without_raising(
    fake_sleep: FakeSleep, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{closed_port()}/hook?token=s3cret"
    outcome = send_callback(url, PAYLOAD, sleep=fake_sleep, max_attempts=3, timeout_s=2)
    assert not outcome.delivered
    assert outcome.attempts == 3
    assert outcome.status_code is None
    assert outcome.error == "ConnectionError"
    assert fake_sleep.delays == [1.0, 2.0]
    assert "callback to http://127.0.0.1:" in our_log(caplog)
    assert "s3cret" not in our_log(caplog)
    assert "s3cret" not in str(outcome.to_dict())


def test_a_silent_receiver_times_out_and_is_retried(
    silent_port: int, fake_sleep: FakeSleep
) -> None:
    url = f"http://127.0.0.1:{silent_port}/hook"
    outcome = send_callback(url, PAYLOAD, sleep=fake_sleep, max_attempts=2, timeout_s=0.2)
    assert not outcome.delivered
    assert outcome.attempts == 2
    assert outcome.error == "ReadTimeout"


def test_an_invalid_url_is_final_and_does_not_raise(fake_sleep: FakeSleep) -> None:
    outcome = send_callback("ftp://example.invalid/hook", PAYLOAD, sleep=fake_sleep)
    assert not outcome.delivered
    assert outcome.attempts == 1
    assert outcome.error == "InvalidSchema"
    assert fake_sleep.delays == []


@pytest.mark.parametrize("url", [None, ""])
def test_skipped_without_a_url(url: str | None, httpserver: HTTPServer) -> None:
    outcome = send_callback(url, PAYLOAD)
    assert outcome == CallbackOutcome(
        delivered=False, skipped=True, attempts=0, status_code=None, error=None, target=None
    )
    assert httpserver.log == []


def test_target_has_no_query_string_or_credentials(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="generation.callback")
    httpserver.expect_request("/hook").respond_with_data("ok")
    base = httpserver.url_for("/hook")
    with_secrets = base.replace("http://", "http://user:pa55word@") + "?token=s3cret#frag"
    outcome = send_callback(with_secrets, PAYLOAD)
    assert outcome.delivered
    assert outcome.target == base
    assert outcome.to_dict()["target"] == base
    assert "delivered" in our_log(caplog)
    assert "s3cret" not in our_log(caplog)
    assert "pa55word" not in our_log(caplog)
    (request, _), *_ = httpserver.log
    assert request.args["token"] == "s3cret"  # the receiver still gets its token


def test_redact_url() -> None:
    assert redact_url("https://u:p@hooks.example.com:8443/a/b?sig=x#f") == (
        "https://hooks.example.com:8443/a/b"
    )
    assert redact_url("http://[::1]:8080/h?x=1") == "http://[::1]:8080/h"


def test_outcome_to_dict_and_is_frozen() -> None:
    outcome = CallbackOutcome(True, False, 1, 200, None, "http://h/p")
    assert outcome.to_dict() == {
        "delivered": True,
        "skipped": False,
        "attempts": 1,
        "status_code": 200,
        "error": None,
        "target": "http://h/p",
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.attempts = 2  # type: ignore[misc]


def test_a_payload_that_is_not_json_raises_before_any_request(httpserver: HTTPServer) -> None:
    with pytest.raises(TypeError):
        send_callback(httpserver.url_for("/hook"), {"x": object()})
    assert httpserver.log == []
