"""Webhook sender for terminal generation events, after cog's ``python/cog/server/webhook.py``.

A terminal callback is POSTed as JSON and retried with exponential backoff on 429, 5xx,
timeouts and connection errors; any other 4xx is final. Delivery failures never raise: the
returned ``CallbackOutcome`` records them. Callback URLs may carry secrets (tokens in the
query string, ``user:password@``), so only ``scheme://host/path`` is ever logged or recorded.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import requests

logger = logging.getLogger(__name__)

USER_AGENT = "musicgen-stems-callback/1"


class CallbackStatus(StrEnum):
    """The terminal states a callback reports."""

    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True)
class CallbackOutcome:
    """What happened to one callback.

    ``attempts`` counts POSTs sent; ``status_code`` and ``error`` describe the last one
    (``error`` is None once delivered). ``target`` is the URL as ``scheme://host/path``.
    """

    delivered: bool
    skipped: bool
    attempts: int
    status_code: int | None
    error: str | None
    target: str | None

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


def send_callback(
    url: str | None,
    payload: dict[str, Any],
    *,
    session: requests.Session | None = None,
    timeout_s: float = 10.0,
    max_attempts: int = 5,
    backoff_s: float = 1.0,
    max_backoff_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> CallbackOutcome:
    """POST ``payload`` as JSON to ``url``; never raises for delivery failures.

    ``url`` None or empty: a skipped outcome, no request. 2xx: delivered. 429, 5xx,
    timeouts and connection errors: retried up to ``max_attempts`` POSTs in all, waiting
    ``backoff_s * 2**(n-1)`` seconds after the n-th, or the numeric ``Retry-After``,
    both capped at ``max_backoff_s``. Any other status (3xx redirects are not followed, since
    they could turn the POST into a GET or send it elsewhere) and invalid URLs are final.
    ``timeout_s`` bounds the connect and the read of each attempt, in seconds.
    ``session`` is used as given and left open; without one a session is made and closed.
    A payload that is not strict JSON (objects, NaN) raises ``TypeError``/``ValueError``
    before any request: that is the caller's bug, not a delivery failure.
    """
    if not url:
        logger.info("no callback URL; callback skipped")
        return CallbackOutcome(
            delivered=False, skipped=True, attempts=0, status_code=None, error=None, target=None
        )
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    body = json.dumps(payload, allow_nan=False).encode("utf-8")
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    target = redact_url(url)
    own_session = session is None
    http = session if session is not None else requests.Session()
    try:
        attempt = 0
        while True:
            attempt += 1
            status_code, error, retryable, retry_after = _post_once(
                http, url, body, headers, timeout_s
            )
            if error is None:
                logger.info(
                    "callback to %s delivered: HTTP %s (attempt %d/%d)",
                    target,
                    status_code,
                    attempt,
                    max_attempts,
                )
                return CallbackOutcome(
                    delivered=True,
                    skipped=False,
                    attempts=attempt,
                    status_code=status_code,
                    error=None,
                    target=target,
                )
            if not retryable or attempt >= max_attempts:
                logger.warning(
                    "callback to %s not delivered: %s (attempt %d/%d, %s)",
                    target,
                    error,
                    attempt,
                    max_attempts,
                    "giving up" if retryable else "not retryable",
                )
                return CallbackOutcome(
                    delivered=False,
                    skipped=False,
                    attempts=attempt,
                    status_code=status_code,
                    error=error,
                    target=target,
                )
            delay = backoff_s * 2 ** (attempt - 1) if retry_after is None else retry_after
            delay = min(delay, max_backoff_s)
            logger.warning(
                "callback to %s failed: %s (attempt %d/%d); retrying in %.1f s",
                target,
                error,
                attempt,
                max_attempts,
                delay,
            )
            sleep(delay)
    finally:
        if own_session:
            http.close()


def _post_once(
    http: requests.Session, url: str, body: bytes, headers: dict[str, str], timeout_s: float
) -> tuple[int | None, str | None, bool, float | None]:
    """One POST: ``(status_code, error, retryable, retry_after_s)``; ``error`` None on 2xx."""
    try:
        with http.post(
            url, data=body, headers=headers, timeout=timeout_s, allow_redirects=False
        ) as response:
            status = response.status_code
            retry_after = _retry_after_s(response)
    except (requests.Timeout, requests.ConnectionError) as exc:
        # The exception's text quotes the URL's path and query: record the type only.
        return None, type(exc).__name__, True, None
    except requests.RequestException as exc:  # invalid URL, unsupported scheme, ...
        return None, type(exc).__name__, False, None
    if 200 <= status <= 299:
        return status, None, False, None
    return status, f"HTTP {status}", _is_retryable_status(status), retry_after
