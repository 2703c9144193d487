"""Fixtures for the Functions face: a service environment and a fake durable client."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.durable_functions import OrchestrationRuntimeStatus

from orchestrators import runtime

SYSTEM_KEY = "durable-system-key-must-never-leak"


@dataclass
class FakeStatus:
    """The fields of ``DurableOrchestrationStatus`` the app reads."""

    runtime_status: OrchestrationRuntimeStatus | None
    input_: Any = None
    custom_status: Any = None
    output: Any = None
    created_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_updated_time: datetime = field(default_factory=lambda: datetime.now(UTC))


class FakeDurableClient:
    """An in-memory stand-in for ``DurableOrchestrationClient`` (start, status, payload).

    Like the Durable extension (``overridableExistingInstanceStates`` NonRunningStates, its
    default), ``start_new`` refuses an id that is still pending, running or suspended, with
    the plain ``Exception`` the Python SDK raises; ``starts_refused`` counts those refusals.
    Each call awaits once first, so concurrent callers interleave as over the network.
    ``fail_next_start`` makes the next ``start_new`` raise that exception instead.
    """

    NOT_OVERRIDABLE = frozenset({"Pending", "Running", "Suspended", "ContinuedAsNew"})

    def __init__(self) -> None:
        self.instances: dict[str, FakeStatus] = {}
        self.started: list[tuple[str, str, Any]] = []
        self.starts_refused = 0
        self.fail_next_start: Exception | None = None

    async def start_new(self, name: str, instance_id: str | None = None, client_input=None) -> str:
        await asyncio.sleep(0)
        if self.fail_next_start is not None:
            error, self.fail_next_start = self.fail_next_start, None
            raise error
        instance_id = instance_id or uuid.uuid4().hex
        current = self.instances.get(instance_id)
        state = current.runtime_status.value if current and current.runtime_status else None
        if state in self.NOT_OVERRIDABLE:
            self.starts_refused += 1
            # The SDK raises a bare Exception carrying the extension's message.
            message = f"An Orchestration instance with the status {state} already exists."
            raise Exception(message)  # noqa: TRY002
        self.started.append((name, instance_id, client_input))
        self.instances[instance_id] = FakeStatus(OrchestrationRuntimeStatus.Pending, client_input)
        return instance_id

    async def get_status(self, instance_id: str, *, show_input: bool = False) -> FakeStatus:
        await asyncio.sleep(0)
        # The real client answers an unknown id with an empty status, not an error, and
        # leaves the input out unless asked.
        status = self.instances.get(instance_id, FakeStatus(None))
        return status if show_input else dataclasses.replace(status, input_=None)

    def create_http_management_payload(self, instance_id: str) -> dict[str, str]:
        # As on a real host: every management URL carries the Durable system key. The app
        # must never call this nor hand these URLs out (tests look for SYSTEM_KEY).
        base = f"http://localhost:7071/runtime/webhooks/durabletask/instances/{instance_id}"
        key = f"taskHub=StemGenerationHub&connection=Storage&code={SYSTEM_KEY}"
        return {
            "id": instance_id,
            "statusQueryGetUri": f"{base}?{key}",
            "sendEventPostUri": f"{base}/raiseEvent/{{eventName}}?{key}",
            "terminatePostUri": f"{base}/terminate?reason={{text}}&{key}",
            "purgeHistoryDeleteUri": f"{base}?{key}",
        }

    def set(self, instance_id: str, status: str, **fields: Any) -> None:
        self.instances[instance_id] = FakeStatus(OrchestrationRuntimeStatus(status), **fields)


@pytest.fixture
def durable_client() -> FakeDurableClient:
    return FakeDurableClient()


@pytest.fixture
def service_env(
    monkeypatch: pytest.MonkeyPatch, azurite_connection_string: str, tiny_checkpoint: Path
) -> Iterator[None]:
    """The service's settings pointing at Azurite, a fresh container and the tiny model."""
    container = f"out-{uuid.uuid4().hex[:20]}"
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_connection_string)
    monkeypatch.setenv("AzureWebJobsStorage", azurite_connection_string)  # as the host sets it
    monkeypatch.setenv("BLOB_CONTAINER_NAME", container)
    monkeypatch.setenv("MUSICGEN_MODEL", str(tiny_checkpoint))
    monkeypatch.setenv("MODEL_WARMUP_ON_START", "false")
    monkeypatch.setenv("CALLBACK_BACKOFF_SECONDS", "0")
    # The callback receiver is a local pytest-httpserver: plain http on loopback.
    monkeypatch.setenv("CALLBACK_ALLOW_HTTP", "true")
    monkeypatch.setenv("CALLBACK_ALLOW_PRIVATE_NETWORKS", "true")
    for key in ("CALLBACK_SECRET", "CALLBACK_ALLOWED_HOSTS", "CALLBACK_MAX_TOTAL_SECONDS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("CALLBACK_URL", raising=False)
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_URL", raising=False)
    runtime.reset_for_tests()
    yield
    runtime.reset_for_tests()


@pytest.fixture
def function_app(service_env: None):
    """The ``function_app`` module, imported fresh under the service environment."""
    import function_app as module

    return importlib.reload(module)
