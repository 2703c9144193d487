"""send_callback against a real local HTTP server (pytest-httpserver).

The receiver listens on loopback over plain http, so most tests use the development policy
``LOCAL``; the policy itself is tested in ``test_url_safety.py``, and here only that the
sender applies it, connects where it checked, signs, and retries within its budget.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import random
import socket
import ssl
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
from pytest_httpserver import HTTPServer

from generation.adapters.callback import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    CallbackOutcome,
    CallbackStatus,
    delivery_id,
    redact_url,
    send_callback,
    sign,
    verify_signature,
)
from generation.adapters.url_safety import CallbackPolicy

LOCAL = CallbackPolicy(allow_http=True, allow_private_networks=True)
SECRET = "whsec-new-0123456789abcdef0123456789"
OLD_SECRET = "whsec-old-fedcba9876543210fedcba98"
NOW = 1_780_000_000.0  # unix seconds, for signatures


def no_jitter() -> float:
    """The top of the full-jitter range: each delay is its cap (deterministic tests)."""
    return 1.0


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
    return "\n".join(
        r.getMessage() for r in caplog.records if r.name == "generation.adapters.callback"
    )


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
    outcome = send_callback(httpserver.url_for("/hook"), PAYLOAD, policy=LOCAL, sleep=fake_sleep)
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
        outcome = send_callback(httpserver.url_for("/hook"), PAYLOAD, policy=LOCAL, session=session)
        assert outcome.delivered
        assert outcome.status_code == 204
        # still usable: the sender leaves an injected session open
        assert session.post(httpserver.url_for("/hook"), timeout=5).status_code == 204


def test_500_then_200_is_delivered_on_the_second_attempt(
    httpserver: HTTPServer, fake_sleep: FakeSleep
) -> None:
    httpserver.expect_ordered_request("/hook", method="POST").respond_with_data("no", status=500)
    httpserver.expect_ordered_request("/hook", method="POST").respond_with_data("ok")
    outcome = send_callback(
        httpserver.url_for("/hook"), PAYLOAD, policy=LOCAL, sleep=fake_sleep, jitter=no_jitter
    )
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
        httpserver.url_for("/hook"),
        PAYLOAD,
        policy=LOCAL,
        sleep=fake_sleep,
        jitter=no_jitter,
        backoff_s=1.0,
        max_backoff_s=5.0,
    )
    assert outcome.delivered
    assert outcome.attempts == 5
    assert fake_sleep.delays == [1.0, 2.0, 4.0, 5.0]


def test_429_retry_after_is_honoured(httpserver: HTTPServer, fake_sleep: FakeSleep) -> None:
    httpserver.expect_ordered_request("/hook").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "7"}
    )
    httpserver.expect_ordered_request("/hook").respond_with_data("ok")
    outcome = send_callback(
        httpserver.url_for("/hook"), PAYLOAD, policy=LOCAL, sleep=fake_sleep, jitter=no_jitter
    )
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
        httpserver.url_for("/hook"),
        PAYLOAD,
        policy=LOCAL,
        sleep=fake_sleep,
        jitter=no_jitter,
        backoff_s=0.5,
        max_backoff_s=30,
    )
    assert outcome.delivered
    assert fake_sleep.delays == [30.0, 1.0]


def test_404_is_final_without_retry(httpserver: HTTPServer, fake_sleep: FakeSleep) -> None:
    httpserver.expect_request("/hook").respond_with_data("gone", status=404)
    outcome = send_callback(
        httpserver.url_for("/hook"), PAYLOAD, policy=LOCAL, sleep=fake_sleep, jitter=no_jitter
    )
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
    outcome = send_callback(
        httpserver.url_for("/hook"), PAYLOAD, policy=LOCAL, sleep=fake_sleep, jitter=no_jitter
    )
    assert not outcome.delivered
    assert outcome.status_code == 302
    assert outcome.attempts == 1
    assert [req.path for req, _ in httpserver.log] == ["/hook"]


def test_receiver_down_gives_up_after_max_attempts_without_raising(
    fake_sleep: FakeSleep, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{closed_port()}/hook?token=s3cret"
    outcome = send_callback(
        url,
        PAYLOAD,
        policy=LOCAL,
        signing_secrets=[SECRET],
        sleep=fake_sleep,
        jitter=no_jitter,
        max_attempts=3,
        timeout_s=2,
    )
    assert not outcome.delivered
    assert outcome.attempts == 3
    assert outcome.status_code is None
    assert outcome.error == "ConnectionError"
    assert fake_sleep.delays == [1.0, 2.0]
    assert "callback to http://127.0.0.1:" in our_log(caplog)
    assert "s3cret" not in our_log(caplog)
    assert "s3cret" not in str(outcome.to_dict())
    assert SECRET not in caplog.text  # no logger at all, urllib3's included
    assert SECRET not in str(outcome.to_dict())


def test_a_silent_receiver_times_out_and_is_retried(
    silent_port: int, fake_sleep: FakeSleep
) -> None:
    url = f"http://127.0.0.1:{silent_port}/hook"
    outcome = send_callback(
        url, PAYLOAD, policy=LOCAL, sleep=fake_sleep, max_attempts=2, timeout_s=0.2
    )
    assert not outcome.delivered
    assert outcome.attempts == 2
    assert outcome.error == "ReadTimeout"


def test_an_invalid_url_is_final_and_does_not_raise(fake_sleep: FakeSleep) -> None:
    outcome = send_callback("ftp://example.invalid/hook", PAYLOAD, policy=LOCAL, sleep=fake_sleep)
    assert not outcome.delivered
    assert outcome.attempts == 0
    assert outcome.error == "unsafe callback URL: the scheme must be https"
    assert fake_sleep.delays == []


@pytest.mark.parametrize("url", [None, ""])
def test_skipped_without_a_url(url: str | None, httpserver: HTTPServer) -> None:
    outcome = send_callback(url, PAYLOAD, signing_secrets=[SECRET])
    assert outcome == CallbackOutcome(
        delivered=False, skipped=True, attempts=0, status_code=None, error=None, target=None
    )
    assert httpserver.log == []


def test_target_and_logs_have_no_query_string_and_no_secret(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    httpserver.expect_request("/hook").respond_with_data("ok")
    base = httpserver.url_for("/hook")
    outcome = send_callback(
        base + "?token=s3cret#frag", PAYLOAD, policy=LOCAL, signing_secrets=[SECRET]
    )
    assert outcome.delivered
    assert outcome.target == base
    assert outcome.to_dict()["target"] == base
    assert "delivered" in our_log(caplog)
    assert "s3cret" not in our_log(caplog)  # urllib3 logs the request line itself at DEBUG
    assert SECRET not in caplog.text
    assert "s3cret" not in str(outcome.to_dict()) and SECRET not in str(outcome.to_dict())
    (request, _), *_ = httpserver.log
    assert request.args["token"] == "s3cret"  # the receiver still gets its token


def test_credentials_in_the_url_are_refused_without_contact_or_echo(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture, fake_sleep: FakeSleep
) -> None:
    caplog.set_level(logging.DEBUG)
    httpserver.expect_request("/hook").respond_with_data("ok")
    with_secrets = httpserver.url_for("/hook").replace("http://", "http://user:pa55word@")
    outcome = send_callback(with_secrets, PAYLOAD, policy=LOCAL, sleep=fake_sleep)
    assert not outcome.delivered and outcome.attempts == 0
    assert outcome.error is not None and outcome.error.startswith("unsafe callback URL:")
    assert "pa55word" not in caplog.text
    assert "pa55word" not in str(outcome.to_dict())
    assert httpserver.log == []


def test_redact_url() -> None:
    assert redact_url("https://u:p@hooks.example.com:8443/a/b?sig=x#f") == (
        "https://hooks.example.com:8443/a/b"
    )
    assert redact_url("http://[::1]:8080/h?x=1") == "http://[::1]:8080/h"


def test_outcome_to_dict_and_is_frozen() -> None:
    outcome = CallbackOutcome(True, False, 1, 200, None, "http://h/p", signed=True)
    assert outcome.to_dict() == {
        "delivered": True,
        "skipped": False,
        "attempts": 1,
        "status_code": 200,
        "error": None,
        "target": "http://h/p",
        "signed": True,
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.attempts = 2  # type: ignore[misc]


def test_a_payload_that_is_not_json_raises_before_any_request(httpserver: HTTPServer) -> None:
    with pytest.raises(TypeError):
        send_callback(httpserver.url_for("/hook"), {"x": object()}, policy=LOCAL)
    assert httpserver.log == []


# --- signing -----------------------------------------------------------------------------


def test_a_signed_callback_verifies_with_the_body_the_server_received(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    outcome = send_callback(
        httpserver.url_for("/hook"),
        PAYLOAD,
        policy=LOCAL,
        signing_secrets=[SECRET],
        wall_clock=lambda: NOW + 0.7,
    )
    assert outcome.delivered and outcome.signed
    [(request, _)] = httpserver.log
    body = request.get_data()
    timestamp = request.headers[TIMESTAMP_HEADER]
    signature = request.headers[SIGNATURE_HEADER]
    assert timestamp == str(int(NOW))
    assert signature.startswith("v1=") and len(signature) == 3 + 64
    assert verify_signature(SECRET, timestamp, body, signature, now=NOW + 10)
    assert verify_signature(SECRET, int(timestamp), body.decode(), signature, now=NOW)
    # anything changed fails: secret, body, timestamp; and an old message is a replay
    assert not verify_signature("another-secret-0123456789", timestamp, body, signature, now=NOW)
    assert not verify_signature(SECRET, timestamp, body + b" ", signature, now=NOW)
    assert not verify_signature(SECRET, str(int(NOW) + 1), body, signature, now=NOW)
    assert not verify_signature(SECRET, timestamp, body, signature, now=NOW + 301)
    assert verify_signature(SECRET, timestamp, body, signature, tolerance_s=600, now=NOW + 301)
    assert not verify_signature(SECRET, "soon", body, signature, now=NOW)
    assert not verify_signature(SECRET, timestamp, body, "v0=" + signature[3:], now=NOW)
    assert not verify_signature(SECRET, timestamp, body, "", now=NOW)
    assert not verify_signature([], timestamp, body, signature, now=NOW)


def test_verify_signature_defaults_to_the_current_time() -> None:
    import time

    timestamp = int(time.time())
    assert verify_signature(SECRET, timestamp, b"{}", sign(SECRET, timestamp, b"{}"))
    assert not verify_signature(
        SECRET, timestamp - 3600, b"{}", sign(SECRET, timestamp - 3600, b"{}")
    )


def deliver_signed_with_rotation(httpserver: HTTPServer) -> tuple[str, bytes, str]:
    """Send PAYLOAD signed with (new, old) secrets; the (timestamp, body, signature) the
    receiver got."""
    httpserver.expect_request("/hook").respond_with_data("ok")
    send_callback(
        httpserver.url_for("/hook"),
        PAYLOAD,
        policy=LOCAL,
        signing_secrets=[SECRET, OLD_SECRET],
        wall_clock=lambda: NOW,
    )
    [(request, _)] = httpserver.log
    return (
        request.headers[TIMESTAMP_HEADER],
        request.get_data(),
        request.headers[SIGNATURE_HEADER],
    )


def test_rotation_signs_with_the_first_and_verifies_with_either(httpserver: HTTPServer) -> None:
    args = deliver_signed_with_rotation(httpserver)
    assert verify_signature(SECRET, *args, now=NOW)
    assert verify_signature([OLD_SECRET, SECRET], *args, now=NOW)  # a receiver mid-rotation
    assert not verify_signature(OLD_SECRET, *args, now=NOW)  # signed with the new one only
    # A receiver that knows both accepts what the old secret signed, too.
    old_signed = sign(OLD_SECRET, args[0], args[1])
    assert verify_signature([SECRET, OLD_SECRET], args[0], args[1], old_signed, now=NOW)
    # Several v1= entries in one header: any match is enough.
    both = f"{old_signed}, {args[2]}"
    assert verify_signature(SECRET, args[0], args[1], both, now=NOW)


def test_without_a_secret_callbacks_are_sent_unsigned(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("ok")
    outcome = send_callback(httpserver.url_for("/hook"), PAYLOAD, policy=LOCAL)
    assert outcome.delivered and not outcome.signed
    [(request, _)] = httpserver.log
    assert TIMESTAMP_HEADER not in request.headers and SIGNATURE_HEADER not in request.headers
    assert request.headers[DELIVERY_HEADER] == delivery_id(PAYLOAD)


def test_retries_carry_the_same_delivery_id_and_fresh_valid_signatures(
    httpserver: HTTPServer, fake_sleep: FakeSleep
) -> None:
    for _ in range(2):
        httpserver.expect_ordered_request("/hook").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request("/hook").respond_with_data("ok")
    times = iter([NOW, NOW + 40, NOW + 80])
    outcome = send_callback(
        httpserver.url_for("/hook"),
        PAYLOAD,
        policy=LOCAL,
        signing_secrets=[SECRET],
        sleep=fake_sleep,
        wall_clock=lambda: next(times),
    )
    assert outcome.delivered and outcome.attempts == 3 and outcome.signed
    requests_seen = [request for request, _ in httpserver.log]
    ids = {r.headers[DELIVERY_HEADER] for r in requests_seen}
    assert ids == {delivery_id(PAYLOAD)}
    stamps = [int(r.headers[TIMESTAMP_HEADER]) for r in requests_seen]
    assert stamps == [int(NOW), int(NOW) + 40, int(NOW) + 80]
    for r, stamp in zip(requests_seen, stamps, strict=True):
        assert verify_signature(
            SECRET,
            r.headers[TIMESTAMP_HEADER],
            r.get_data(),
            r.headers[SIGNATURE_HEADER],
            now=stamp,
        )


def test_delivery_id_is_fixed_by_request_id_and_status() -> None:
    same = delivery_id({**PAYLOAD, "duration_seconds": 99.0})
    assert same == delivery_id(PAYLOAD) == delivery_id({**PAYLOAD, "status": "completed"})
    assert delivery_id({**PAYLOAD, "status": CallbackStatus.FAILED}) != same
    assert delivery_id({**PAYLOAD, "generation_request_id": "req-2"}) != same
    assert delivery_id({}) == delivery_id({})
    assert len(same) == 36  # a UUID


# --- jitter and the total budget ---------------------------------------------------------


class FakeClock:
    """A monotonic clock that only moves when the sender sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.delays: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.now += seconds


def test_backoff_has_full_jitter_within_the_exponential_cap(
    httpserver: HTTPServer, fake_sleep: FakeSleep
) -> None:
    for _ in range(5):
        httpserver.expect_ordered_request("/hook").respond_with_data("busy", status=503)
    draws = iter([0.5, 0.0, 0.25, 0.9])
    outcome = send_callback(
        httpserver.url_for("/hook"),
        PAYLOAD,
        policy=LOCAL,
        sleep=fake_sleep,
        jitter=lambda: next(draws),
        backoff_s=2.0,
        max_backoff_s=10.0,
    )
    assert not outcome.delivered and outcome.attempts == 5
    # caps 2, 4, 8, 10 (capped), each scaled by the draw
    assert fake_sleep.delays == [1.0, 0.0, 2.0, 9.0]


def test_jitter_from_a_real_generator_stays_within_the_caps(
    httpserver: HTTPServer, fake_sleep: FakeSleep
) -> None:
    httpserver.expect_request("/hook").respond_with_data("busy", status=500)
    rng = random.Random(1234)
    send_callback(
        httpserver.url_for("/hook"),
        PAYLOAD,
        policy=LOCAL,
        sleep=fake_sleep,
        jitter=rng.random,
        max_attempts=8,
        backoff_s=1.0,
        max_backoff_s=20.0,
        max_total_s=10_000,
    )
    caps = [1, 2, 4, 8, 16, 20, 20]
    assert len(fake_sleep.delays) == 7
    assert all(0 <= d <= cap for d, cap in zip(fake_sleep.delays, caps, strict=True))
    assert len(set(fake_sleep.delays)) == 7  # jittered, not in lockstep


def test_total_time_is_bounded(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("busy", status=503)
    clock = FakeClock()
    outcome = send_callback(
        httpserver.url_for("/hook"),
        PAYLOAD,
        policy=LOCAL,
        sleep=clock.sleep,
        clock=clock,
        jitter=no_jitter,
        max_attempts=20,
        backoff_s=1.0,
        max_backoff_s=30.0,
        max_total_s=10.0,
    )
    # t=0, 1, 3, 7; the next wait (8 s) would end past 10 s: give up, recorded.
    assert clock.delays == [1.0, 2.0, 4.0]
    assert outcome.attempts == 4 and not outcome.delivered
    assert outcome.error == "HTTP 503" and outcome.status_code == 503
    assert len(httpserver.log) == 4


def test_a_long_retry_after_past_the_budget_ends_the_retries(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data(
        "", status=429, headers={"Retry-After": "60"}
    )
    clock = FakeClock()
    outcome = send_callback(
        httpserver.url_for("/hook"),
        PAYLOAD,
        policy=LOCAL,
        sleep=clock.sleep,
        clock=clock,
        max_backoff_s=120,
        max_total_s=30,
    )
    assert outcome.attempts == 1 and outcome.error == "HTTP 429"
    assert clock.delays == []


def test_each_attempt_timeout_is_cut_to_the_time_left(silent_port: int) -> None:
    import time

    url = f"http://127.0.0.1:{silent_port}/hook"
    started = time.monotonic()
    outcome = send_callback(url, PAYLOAD, policy=LOCAL, timeout_s=30, max_total_s=0.3)
    assert time.monotonic() - started < 5
    assert outcome.error == "ReadTimeout" and outcome.attempts == 1


# --- the URL policy, applied by the sender -----------------------------------------------


class FakeResolver:
    """``socket.getaddrinfo`` answering from a script: one answer (or error) per call."""

    def __init__(self, *answers: Sequence[str] | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[str] = []

    def __call__(self, host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        self.calls.append(host)
        answer = self.answers[min(len(self.calls), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in answer
        ]


def test_the_default_policy_refuses_a_local_receiver_without_contacting_it(
    httpserver: HTTPServer, fake_sleep: FakeSleep, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    httpserver.expect_request("/hook").respond_with_data("ok")
    outcome = send_callback(
        httpserver.url_for("/hook?token=s3cret"),
        PAYLOAD,
        sleep=fake_sleep,
        signing_secrets=[SECRET],
    )
    assert outcome == CallbackOutcome(
        delivered=False,
        skipped=False,
        attempts=0,
        status_code=None,
        error="unsafe callback URL: the scheme must be https (plain http is not allowed)",
        target=httpserver.url_for("/hook"),
        signed=False,
    )
    assert httpserver.log == [] and fake_sleep.delays == []
    assert "unsafe callback URL" in our_log(caplog)
    assert "s3cret" not in caplog.text and SECRET not in caplog.text


def test_a_name_resolving_to_a_private_address_is_not_contacted(
    httpserver: HTTPServer, fake_sleep: FakeSleep
) -> None:
    httpserver.expect_request("/hook").respond_with_data("ok")
    resolver = FakeResolver(["127.0.0.1"])
    url = f"http://hooks.example.test:{httpserver.port}/hook"
    outcome = send_callback(
        url, PAYLOAD, policy=CallbackPolicy(allow_http=True), resolver=resolver, sleep=fake_sleep
    )
    assert not outcome.delivered and outcome.attempts == 0
    assert (
        outcome.error
        == "unsafe callback URL: host 'hooks.example.test' resolves to a loopback address"
    )
    assert "127.0.0.1" not in str(outcome.to_dict())
    assert httpserver.log == []


def test_the_connection_goes_to_the_checked_address_with_the_original_host(
    httpserver: HTTPServer,
) -> None:
    # hooks.example.test exists in no DNS: delivery proves the sender connected to the
    # address it checked rather than looking the name up again.
    httpserver.expect_request("/hook").respond_with_data("ok")
    resolver = FakeResolver(["127.0.0.1"])
    url = f"http://hooks.example.test:{httpserver.port}/hook?x=1"
    outcome = send_callback(url, PAYLOAD, policy=LOCAL, resolver=resolver)
    assert outcome.delivered and resolver.calls == ["hooks.example.test"]
    [(request, _)] = httpserver.log
    assert request.headers["Host"] == f"hooks.example.test:{httpserver.port}"
    assert request.args["x"] == "1"


def test_the_next_checked_address_is_tried_when_one_refuses(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("ok")
    # nothing listens on 127.0.0.2 at this port (the server is bound to 127.0.0.1)
    resolver = FakeResolver(["127.0.0.2", "127.0.0.1"])
    url = f"http://multi.example.test:{httpserver.port}/hook"
    outcome = send_callback(url, PAYLOAD, policy=LOCAL, resolver=resolver)
    assert outcome.delivered and outcome.attempts == 1
    assert len(httpserver.log) == 1


def test_every_attempt_checks_again_so_a_rebound_name_is_refused(
    httpserver: HTTPServer, fake_sleep: FakeSleep
) -> None:
    # First answer: no such name (transient, retried). Second: the metadata address.
    httpserver.expect_request("/hook").respond_with_data("ok")
    resolver = FakeResolver(socket.gaierror(socket.EAI_AGAIN, "try again"), ["169.254.169.254"])
    url = f"http://rebind.example.test:{httpserver.port}/hook"
    outcome = send_callback(
        url,
        PAYLOAD,
        policy=CallbackPolicy(allow_http=True),
        resolver=resolver,
        sleep=fake_sleep,
        jitter=no_jitter,
    )
    assert resolver.calls == ["rebind.example.test", "rebind.example.test"]
    assert fake_sleep.delays == [1.0]
    assert outcome.attempts == 0 and not outcome.delivered
    assert outcome.error == (
        "unsafe callback URL: host 'rebind.example.test' resolves to a cloud metadata address"
    )
    assert httpserver.log == []


def test_a_name_that_never_resolves_uses_up_the_attempts(fake_sleep: FakeSleep) -> None:
    resolver = FakeResolver(socket.gaierror(socket.EAI_NONAME, "unknown"))
    outcome = send_callback(
        "https://gone.example.test/hook",
        PAYLOAD,
        resolver=resolver,
        sleep=fake_sleep,
        jitter=no_jitter,
        max_attempts=3,
    )
    assert outcome.attempts == 0 and outcome.error == "NameResolutionError"
    assert len(resolver.calls) == 3 and fake_sleep.delays == [1.0, 2.0]


# --- https to a pinned address: TLS is still verified against the host name --------------


def _tls_files(tmp_path: Path, hostname: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for ``hostname``: (ca, cert, key) PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("test CA"))
        .issuer_name(name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(hostname))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[HTTPServer, Path]]:
    """An https receiver on 127.0.0.1 whose certificate names hooks.example.test."""
    ca, cert, key = _tls_files(tmp_path, "hooks.example.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.start()
    try:
        yield server, ca
    finally:
        server.clear()
        server.stop()


def test_https_to_the_pinned_address_verifies_the_certificate_for_the_host(
    tls_server: tuple[HTTPServer, Path],
) -> None:
    server, ca = tls_server
    server.expect_request("/hook", method="POST").respond_with_data("ok")
    resolver = FakeResolver(["127.0.0.1"])
    with requests.Session() as session:
        session.verify = str(ca)
        outcome = send_callback(
            f"https://hooks.example.test:{server.port}/hook",
            PAYLOAD,
            policy=CallbackPolicy(allow_private_networks=True),  # https only
            session=session,
            resolver=resolver,
            signing_secrets=[SECRET],
        )
    assert outcome.delivered and outcome.signed, outcome
    [(request, _)] = server.log
    assert request.headers["Host"] == f"hooks.example.test:{server.port}"


def test_https_to_a_host_the_certificate_does_not_name_fails(
    tls_server: tuple[HTTPServer, Path], fake_sleep: FakeSleep
) -> None:
    server, ca = tls_server
    server.expect_request("/hook").respond_with_data("ok")
    resolver = FakeResolver(["127.0.0.1"])
    with requests.Session() as session:
        session.verify = str(ca)
        outcome = send_callback(
            f"https://other.example.test:{server.port}/hook",
            PAYLOAD,
            policy=CallbackPolicy(allow_private_networks=True),
            session=session,
            resolver=resolver,
            sleep=fake_sleep,
            max_attempts=1,
        )
    assert not outcome.delivered and outcome.error == "SSLError"
    assert server.log == []


def test_https_is_not_trusted_without_the_ca(
    tls_server: tuple[HTTPServer, Path], fake_sleep: FakeSleep
) -> None:
    server, _ = tls_server
    server.expect_request("/hook").respond_with_data("ok")
    outcome = send_callback(
        f"https://hooks.example.test:{server.port}/hook",
        PAYLOAD,
        policy=CallbackPolicy(allow_private_networks=True),
        resolver=FakeResolver(["127.0.0.1"]),
        sleep=fake_sleep,
        max_attempts=1,
    )
    assert not outcome.delivered and outcome.error == "SSLError"


def test_an_ip_literal_is_used_without_a_lookup(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("ok")

    def no_lookup(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("looked up an IP literal")

    url = f"http://127.0.0.1:{httpserver.port}/hook"
    assert send_callback(url, PAYLOAD, policy=LOCAL, resolver=no_lookup).delivered


def test_the_verification_snippet_in_security_md_works(httpserver: HTTPServer) -> None:
    text = (Path(__file__).parents[3] / "SECURITY.md").read_text()
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)  # the receiver's copy-paste code, standard library only
    args = deliver_signed_with_rotation(httpserver)
    check = namespace["verify_signature"]
    assert check([SECRET, OLD_SECRET], *args, now=NOW)
    assert check([OLD_SECRET, SECRET], *args, now=NOW + 299)
    assert not check([OLD_SECRET], *args, now=NOW)
    assert not check([SECRET], *args, now=NOW + 301)
    assert not check([SECRET], args[0], args[1] + b"x", args[2], now=NOW)
    # A missing or empty header is a clear refusal, not an exception.
    assert not check([SECRET], args[0], args[1], None, now=NOW)
    assert not check([SECRET], None, args[1], args[2], now=NOW)
    assert not check([SECRET], args[0], args[1], "", now=NOW)
