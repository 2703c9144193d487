"""Starting one orchestration per ``generation_request_id``, exactly once however many
repeats arrive at once: shared by the HTTP trigger and the batch trigger."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from generation.adapters.storage import generation_prefix
from generation.request import GenerationRequest
from orchestrators import runtime

logger = logging.getLogger(__name__)

ORCHESTRATOR = "stem_generation_orchestrator"
# Still running or done well: a repeat returns this instance and starts nothing.
KEEP = frozenset({"Pending", "Running", "Completed", "ContinuedAsNew", "Suspended"})


class DurableClient(Protocol):
    """The part of ``DurableOrchestrationClient`` the API uses. (Its
    ``create_http_management_payload`` is never used: those URLs carry the Durable system
    key, which must not reach callers.)"""

    async def start_new(
        self, orchestration_function_name: str, instance_id: str | None, client_input: Any
    ) -> str: ...

    async def get_status(self, instance_id: str, *, show_input: bool = False) -> Any: ...


def read_runtime_status(status: Any) -> str | None:
    """The instance's runtime status name, or ``None`` when the instance is unknown."""
    value = getattr(status, "runtime_status", None)
    return None if value is None else getattr(value, "value", str(value))


# One lock per instance id being started in this worker: concurrent repeats of a request
# wait for the first to start it, then find it running. Entries vanish once nobody holds them.
_start_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


def _lock_for(instance_id: str) -> asyncio.Lock:
    lock = _start_locks.get(instance_id)
    if lock is None:
        lock = _start_locks[instance_id] = asyncio.Lock()
    return lock


# Ended without success: the id may be started again (documented in the README); its
# earlier outputs are cleared first so the two runs' files never mix.
RESTARTABLE = frozenset({"Failed", "Terminated", "Canceled"})


def fingerprint(request: GenerationRequest, *, with_seed: bool) -> str:
    """A canonical hash of a validated request (SHA-256 of its sorted JSON); without the
    seed when ``with_seed`` is false (a request that names no seed matches any seed)."""
    data = request.model_dump(mode="json", exclude=None if with_seed else {"seed"})
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def same_request(stored: Any, request: GenerationRequest) -> bool:
    """Whether the instance input ``stored`` (the request it was started with, seed drawn)
    is the request ``request`` (as the caller sent it, seed maybe absent)."""
    if isinstance(stored, str):
        try:
            stored = json.loads(stored)
        except ValueError:
            return False
    try:
        earlier = GenerationRequest.model_validate(stored)
    except ValidationError:
        return False  # started by an older version with another shape: not provably equal
    with_seed = request.seed is not None
    return fingerprint(earlier, with_seed=with_seed) == fingerprint(request, with_seed=with_seed)


@dataclass(frozen=True)
class StartOutcome:
    """What ``start_once`` did: ``started`` (with the request as started, its seed drawn),
    or why not: the instance's runtime status that made this a duplicate, or ``conflict``
    when that instance holds a different request. ``runtime_status`` of a start is the
    status before it (``None`` when new)."""

    started: bool
    runtime_status: str | None
    conflict: bool = False
    request: GenerationRequest | None = None


async def start_once(
    client: DurableClient,
    request: GenerationRequest,
    *,
    before_restart: Callable[[str], Awaitable[None]] | None = None,
) -> StartOutcome:
    """Start the orchestration for ``request`` unless its id is already pending, running or
    completed; exactly one start however many repeats arrive at once.

    A repeat with the same request is a duplicate; with a different one (a canonical hash
    of the validated request differs) it is a conflict, and nothing starts. An id whose
    run failed, was terminated or canceled starts again, with any request; ``before_restart``
    (given the id) runs first, to clear the earlier run's outputs.

    Within this worker a per-id lock orders the check and the start. Across workers, the
    Durable extension refuses to start an id that is still pending or running; that refusal
    is read back as a duplicate (or conflict). Any other client failure propagates.
    """
    instance_id = request.generation_request_id
    async with _lock_for(instance_id):
        status = await client.get_status(instance_id, show_input=True)
        existing = read_runtime_status(status)
        if existing in KEEP:
            return _repeat(status, existing, request)
        if existing in RESTARTABLE and before_restart is not None:
            await before_restart(instance_id)
        seeded = request.with_seed()
        try:
            await client.start_new(ORCHESTRATOR, instance_id, seeded.model_dump(mode="json"))
        except Exception:
            status = await client.get_status(instance_id, show_input=True)
            now = read_runtime_status(status)
            if now not in KEEP:
                raise
            logger.info("%s was started elsewhere meanwhile (%s)", instance_id, now)
            return _repeat(status, now, request)
        return StartOutcome(started=True, runtime_status=existing, request=seeded)


def _repeat(status: Any, runtime_status: str, request: GenerationRequest) -> StartOutcome:
    conflict = not same_request(getattr(status, "input_", None), request)
    return StartOutcome(started=False, runtime_status=runtime_status, conflict=conflict)


async def clear_outputs(instance_id: str) -> None:
    """Delete an earlier run's files (``generations/{id}/``) before the id runs again."""
    prefix = generation_prefix(instance_id)
    deleted = await asyncio.to_thread(runtime.blob_store().delete_prefix, prefix)
    logger.info("%s starts again: %d file(s) of the earlier run deleted", instance_id, deleted)
