"""Starting one orchestration per ``generation_request_id``, exactly once however many
repeats arrive at once: shared by the HTTP trigger and the batch trigger."""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass
from typing import Any, Protocol

from generation.request import GenerationRequest

logger = logging.getLogger(__name__)

ORCHESTRATOR = "stem_generation_orchestrator"
# Still running or done well: a repeat returns this instance and starts nothing.
KEEP = frozenset({"Pending", "Running", "Completed", "ContinuedAsNew", "Suspended"})


class DurableClient(Protocol):
    """The part of ``DurableOrchestrationClient`` the API uses."""

    async def start_new(
        self, orchestration_function_name: str, instance_id: str | None, client_input: Any
    ) -> str: ...

    async def get_status(self, instance_id: str) -> Any: ...

    def create_http_management_payload(self, instance_id: str) -> dict[str, str]: ...


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


@dataclass(frozen=True)
class StartOutcome:
    """What ``start_once`` did: ``started``, and the instance's runtime status before
    (``None`` when new) or, for a duplicate, the status that made it one."""

    started: bool
    runtime_status: str | None


async def start_once(client: DurableClient, request: GenerationRequest) -> StartOutcome:
    """Start the orchestration for ``request`` unless its id is already pending, running or
    completed; exactly one start however many repeats arrive at once.

    Within this worker a per-id lock orders the check and the start. Across workers, the
    Durable extension refuses to start an id that is still pending or running; that refusal
    is read back as a duplicate. Any other client failure propagates.
    """
    instance_id = request.generation_request_id
    async with _lock_for(instance_id):
        existing = read_runtime_status(await client.get_status(instance_id))
        if existing in KEEP:
            return StartOutcome(started=False, runtime_status=existing)
        try:
            await client.start_new(ORCHESTRATOR, instance_id, request.model_dump(mode="json"))
        except Exception:
            now = read_runtime_status(await client.get_status(instance_id))
            if now not in KEEP:
                raise
            logger.info("%s was started elsewhere meanwhile (%s)", instance_id, now)
            return StartOutcome(started=False, runtime_status=now)
        return StartOutcome(started=True, runtime_status=existing)
