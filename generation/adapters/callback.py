"""Webhook sender for terminal generation events, after cog's ``python/cog/server/webhook.py``.

A terminal callback is POSTed as JSON and retried with exponential backoff and full jitter
on 429, 5xx, timeouts and connection errors, within a total time budget; any other 4xx is
final. Delivery failures never raise: the returned ``CallbackOutcome`` records them.

Safety (see SECURITY.md):

- Before every attempt the URL is checked against a ``CallbackPolicy``
  (``generation/adapters/url_safety.py``: https only, no credentials, optional host allowlist, no
  private, loopback, link-local or metadata addresses) and the connection goes to the very
  address that was checked (``_PinnedAdapter``), so a second DNS answer cannot swap in an
  internal address (DNS rebinding). Redirects are never followed. Proxies are not used.
- With a secret, each POST is signed: ``X-Stem-Timestamp`` (unix seconds) and
  ``X-Stem-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>``; receivers check
  it with ``verify_signature``. ``X-Stem-Delivery`` is the same for every retry of one
  result (generation_request_id + status), for receivers to drop duplicates.
- Callback URLs may carry secrets (tokens in the query string), so only
  ``scheme://host/path`` is ever logged or recorded; the signing secret never is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import math
import random
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from generation.adapters.url_safety import CallbackPolicy, IPAddress, Resolver, check_callback_url
from generation.errors import UnsafeCallbackUrl

logger = logging.getLogger(__name__)


class _RedactQueryStrings(logging.Filter):
    """Cuts query strings out of urllib3's request lines (``"POST /hook?token=..."``):
    callers put tokens there, and urllib3 logs each request at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                a.split("?", 1)[0] + "?<redacted>" if isinstance(a, str) and "?" in a else a
                for a in record.args
            )
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_RedactQueryStrings())

USER_AGENT = "musicgen-stems-callback/1"
TIMESTAMP_HEADER = "X-Stem-Timestamp"
SIGNATURE_HEADER = "X-Stem-Signature"
DELIVERY_HEADER = "X-Stem-Delivery"
SIGNATURE_VERSION = "v1"
# uuid5 namespace of delivery ids; changing it changes every id.
_DELIVERY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:musicgen-stems:callback-delivery")


class CallbackStatus(StrEnum):
    """The terminal states a callback reports."""

    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True)
class CallbackOutcome:
    """What happened to one callback.

    ``attempts`` counts POSTs tried (a failed DNS lookup or a refused URL is none);
    ``status_code`` and ``error`` describe the last one
    (``error`` is None once delivered; ``"unsafe callback URL: ..."`` when the policy
    refused the URL, then nothing more was sent). ``target`` is the URL as
    ``scheme://host/path``. ``signed``: the POSTs carried an ``X-Stem-Signature``.
    """

    delivered: bool
    skipped: bool
    attempts: int
    status_code: int | None
    error: str | None
    target: str | None
    signed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return dataclasses.asdict(self)


def redact_url(url: str) -> str:
    """``scheme://host[:port]/path`` of ``url``: no userinfo, query string or fragment."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    if not parts.scheme and not host:
        return parts.path
    return f"{parts.scheme}://{host}{parts.path}"


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def sign(secret: str | bytes, timestamp: int | str, body: str | bytes) -> str:
    """The ``X-Stem-Signature`` value: ``v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>``.

    ``timestamp`` is in unix seconds; ``body`` is the exact bytes POSTed (str: UTF-8).
    """
    message = f"{timestamp}.".encode() + _as_bytes(body)
    digest = hmac.new(_as_bytes(secret), message, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def verify_signature(
    secret: str | bytes | Sequence[str | bytes],
    timestamp: int | str,
    body: str | bytes,
    signature: str,
    *,
    tolerance_s: float = 300,
    now: float | None = None,
) -> bool:
    """Whether a callback is genuine: for receivers (and tests). Never raises.

    ``secret``: one secret, or several during a rotation (any may match). ``timestamp``:
    the ``X-Stem-Timestamp`` header; ``body``: the raw request body, exactly as received
    (not re-serialised JSON); ``signature``: the ``X-Stem-Signature`` header (one or more
    comma-separated ``v1=<hex>``). False when the timestamp is more than ``tolerance_s``
    seconds from ``now`` (unix seconds, default the current time): a replay.
    """
    secrets = [secret] if isinstance(secret, str | bytes) else list(secret)
    try:
        sent_at = int(str(timestamp).strip())
    except ValueError:
        return False
    current = time.time() if now is None else now
    if not math.isfinite(current) or abs(current - sent_at) > tolerance_s:
        return False
    candidates = [
        part.strip()
        for part in str(signature).split(",")
        if part.strip().startswith(f"{SIGNATURE_VERSION}=")
    ]
    matched = False
    for candidate in candidates:
        for key in secrets:
            if not key:
                continue
            # compare_digest on ASCII str needs ASCII input: compare bytes instead.
            expected = sign(key, sent_at, body).encode()
            matched |= hmac.compare_digest(expected, candidate.encode("utf-8", "replace"))
    return matched


def delivery_id(payload: Mapping[str, Any]) -> str:
    """The ``X-Stem-Delivery`` value: a UUID fixed by generation_request_id and status.

    Every retry of one result carries the same id, so receivers can drop duplicates. A
    payload without both fields gets an id derived from its canonical JSON instead.
    """
    request_id = payload.get("generation_request_id")
    status = payload.get("status")
    if request_id is not None and status is not None:
        basis = f"{request_id}\n{status}"
    else:
        basis = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return str(uuid.uuid5(_DELIVERY_NAMESPACE, basis))


def _is_retryable_status(status: int) -> bool:
    return status == 429 or 500 <= status <= 599


def _retry_after_s(response: requests.Response) -> float | None:
    """The numeric ``Retry-After`` header in seconds, or None (absent, a date, nonsense)."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if math.isnan(seconds) or seconds < 0:
        return None
    return seconds


class _PinnedAdapter(HTTPAdapter):
    """A transport that connects to one checked address, whatever DNS says now.

    The request keeps its URL, so the ``Host`` header names the host and, for https, TLS
    sends SNI for and verifies the certificate against that host name (``server_hostname``):
    only the TCP connection is pinned. Proxies are ignored: a proxy would resolve the name
    itself. Needs requests >= 2.32.3 (``get_connection_with_tls_context``).
    """

    def __init__(self, address: IPAddress) -> None:
        super().__init__(max_retries=0)
        self._address = address

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: bool | str,
        proxies: dict[str, str] | None = None,
        cert: tuple[str, str] | str | None = None,
    ) -> Any:
        host_params, pool_kwargs = self.build_connection_pool_key_attributes(request, verify, cert)
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = host_params["host"]
        return self.poolmanager.connection_from_host(
            host=str(self._address),
            port=host_params["port"],
            scheme=host_params["scheme"],
            pool_kwargs=pool_kwargs,
        )

    def get_connection(self, url: str, proxies: dict[str, str] | None = None) -> Any:
        # Older requests call this instead and would connect wherever DNS points: refuse.
        raise RuntimeError("requests >= 2.32.3 is needed to pin callback addresses")

    def add_headers(self, request: requests.PreparedRequest, **kwargs: Any) -> None:
        # The pool's host is the address; the Host header must still name the host.
        request.headers["Host"] = urlsplit(request.url or "").netloc.rpartition("@")[2]


@dataclass(frozen=True)
class _Attempt:
    """One attempt: ``error`` None on 2xx; ``unsafe`` when the policy refused the URL;
    ``sent`` False when no POST went out; ``connect_failed`` when no connection was made."""

    status_code: int | None
    error: str | None
    retryable: bool
    retry_after_s: float | None = None
    sent: bool = True
    unsafe: bool = False
    connect_failed: bool = False


def send_callback(
    url: str | None,
    payload: dict[str, Any],
    *,
    policy: CallbackPolicy | None = None,
    signing_secrets: Sequence[str] = (),
    session: requests.Session | None = None,
    timeout_s: float = 10.0,
    max_attempts: int = 5,
    backoff_s: float = 1.0,
    max_backoff_s: float = 30.0,
    max_total_s: float = 120.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
    jitter: Callable[[], float] = random.random,
    resolver: Resolver = socket.getaddrinfo,
) -> CallbackOutcome:
    """POST ``payload`` as JSON to ``url``; never raises for delivery failures.

    ``url`` None or empty: a skipped outcome, no request. Before every attempt the URL is
    checked against ``policy`` (default ``CallbackPolicy()``: https, public addresses only)
    and the POST connects to an address that passed; a refused URL is final and recorded as
    ``"unsafe callback URL: <why>"``. 2xx: delivered. 429, 5xx, timeouts, connection errors
    and failed DNS lookups: retried, up to ``max_attempts`` attempts in all (a failed
    lookup is one, though it sends nothing), waiting a random
    ``[0, 1)`` share (``jitter``) of ``backoff_s * 2**(n-1)`` seconds after the n-th ("full
    jitter", so many failed callbacks do not retry in step), or the numeric ``Retry-After``,
    both capped at ``max_backoff_s``. No attempt starts after ``max_total_s`` seconds
    (``clock``) from the first, and each attempt's connect and read timeouts (``timeout_s``
    each, seconds) are cut to the time left. Any other status (3xx redirects are not
    followed: they could turn the POST into a GET or send it elsewhere) is final.

    ``signing_secrets``: with any, each POST is signed with the first (the others are the
    older secrets of a rotation, which only receivers use); ``wall_clock`` gives the
    timestamp. ``session`` supplies headers, auth and TLS settings (``verify``, ``cert``)
    and is left open; the connection itself is always made by a pinned transport, never
    by the session's adapters. A payload that is not strict JSON (objects, NaN) raises
    ``TypeError``/``ValueError`` before any request: that is the caller's bug.
    """
    secret = next((s for s in signing_secrets if s), None)
    signed = secret is not None
    if not url:
        logger.info("no callback URL; callback skipped")
        return CallbackOutcome(
            delivered=False, skipped=True, attempts=0, status_code=None, error=None, target=None
        )
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    policy = policy if policy is not None else CallbackPolicy()
    body = json.dumps(payload, allow_nan=False).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        DELIVERY_HEADER: delivery_id(payload),
    }
    target = redact_url(url)
    started = clock()
    deadline = started + max_total_s
    own_session = session is None
    http = session if session is not None else requests.Session()

    def outcome(attempts: int, result: _Attempt, delivered: bool = False) -> CallbackOutcome:
        return CallbackOutcome(
            delivered=delivered,
            skipped=False,
            attempts=attempts,
            status_code=result.status_code,
            error=result.error,
            target=target,
            signed=signed and attempts > 0,
        )

    try:
        try:
            prepared = http.prepare_request(
                requests.Request("POST", url, data=body, headers=headers)
            )
        except requests.RequestException as exc:  # no scheme, no host, bad IDNA name, ...
            logger.warning("callback to %s not sent: invalid URL (%s)", target, type(exc).__name__)
            return outcome(0, _Attempt(None, type(exc).__name__, retryable=False, sent=False))
        tries = 0  # attempts made, sent or not (a failed DNS lookup sends nothing)
        attempts = 0  # POSTs sent
        while True:
            tries += 1
            timestamp = int(wall_clock())
            if secret is not None:
                prepared.headers[TIMESTAMP_HEADER] = str(timestamp)
                prepared.headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
            result = _attempt(
                http, prepared, policy, resolver, lambda: min(timeout_s, deadline - clock())
            )
            attempts += 1 if result.sent else 0
            if result.error is None:
                logger.info(
                    "callback to %s delivered: HTTP %s (attempt %d/%d, %s)",
                    target,
                    result.status_code,
                    tries,
                    max_attempts,
                    "signed" if signed else "unsigned",
                )
                return outcome(attempts, result, delivered=True)
            delay, give_up = _next_wait(
                result,
                tries,
                max_attempts=max_attempts,
                backoff_s=backoff_s,
                max_backoff_s=max_backoff_s,
                jitter=jitter,
            )
            if give_up is None and clock() + delay >= deadline:
                give_up = f"giving up: {max_total_s:g} s total reached"
            if give_up is not None:
                logger.warning(
                    "callback to %s not delivered: %s (attempt %d/%d, %s)",
                    target,
                    result.error,
                    tries,
                    max_attempts,
                    give_up,
                )
                return outcome(attempts, result)
            logger.warning(
                "callback to %s failed: %s (attempt %d/%d); retrying in %.1f s",
                target,
                result.error,
                tries,
                max_attempts,
                delay,
            )
            sleep(delay)
    finally:
        if own_session:
            http.close()


def _next_wait(
    result: _Attempt,
    tries: int,
    *,
    max_attempts: int,
    backoff_s: float,
    max_backoff_s: float,
    jitter: Callable[[], float],
) -> tuple[float, str | None]:
    """``(seconds to wait, None)`` before the next try, or ``(0, why)`` to stop now.

    Full jitter: a random share of ``backoff_s * 2**(tries-1)``, capped at
    ``max_backoff_s``; a numeric ``Retry-After`` is honoured as it is (capped the same).
    """
    if result.unsafe:
        return 0.0, "refused by the callback policy"
    if not result.retryable:
        return 0.0, "not retryable"
    if tries >= max_attempts:
        return 0.0, "giving up"
    if result.retry_after_s is not None:
        delay = result.retry_after_s
    else:
        delay = min(max_backoff_s, backoff_s * 2 ** (tries - 1)) * jitter()
    return min(max(delay, 0.0), max_backoff_s), None


def _attempt(
    http: requests.Session,
    prepared: requests.PreparedRequest,
    policy: CallbackPolicy,
    resolver: Resolver,
    timeout_left: Callable[[], float],
) -> _Attempt:
    """Check the URL now, then POST to the checked addresses in turn until one connects.

    ``timeout_left()``: the connect and read timeout for the next connection, seconds.
    """
    try:
        addresses = check_callback_url(prepared.url or "", policy, resolver)
    except UnsafeCallbackUrl as exc:
        return _Attempt(None, str(exc), retryable=False, sent=False, unsafe=True)
    except (OSError, UnicodeError):
        # The name did not resolve (now): may be transient, like a refused connection.
        return _Attempt(None, "NameResolutionError", retryable=True, sent=False)
    result = _Attempt(None, "no address", retryable=True, sent=False)
    for address in addresses:
        timeout_s = timeout_left()
        if timeout_s <= 0 and result.sent:
            break
        result = _post_once(http, prepared, address, max(timeout_s, 0.001))
        if not result.connect_failed:
            break  # delivered, answered, or a read timeout: this server got the request
    return result


def _post_once(
    http: requests.Session,
    prepared: requests.PreparedRequest,
    address: IPAddress,
    timeout_s: float,
) -> _Attempt:
    """One POST over a new connection to ``address``."""
    adapter = _PinnedAdapter(address)
    try:
        with adapter.send(
            prepared, timeout=timeout_s, verify=http.verify, cert=http.cert
        ) as response:
            status = response.status_code
            retry_after = _retry_after_s(response)
    except (requests.ConnectTimeout, requests.ConnectionError) as exc:
        # No connection (refused, unreachable, TLS failed): the next address may do. The
        # exception's text quotes the URL's path and query: record the type only.
        return _Attempt(None, type(exc).__name__, retryable=True, connect_failed=True)
    except requests.Timeout as exc:
        return _Attempt(None, type(exc).__name__, retryable=True)
    except requests.RequestException as exc:  # invalid URL, ...
        return _Attempt(None, type(exc).__name__, retryable=False)
    finally:
        adapter.close()
    if 200 <= status <= 299:
        return _Attempt(status, None, retryable=False)
    return _Attempt(status, f"HTTP {status}", _is_retryable_status(status), retry_after)
