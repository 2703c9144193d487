"""Fixtures for the Functions face: a service environment and a fake durable client."""

from __future__ import annotations

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
    """An in-memory stand-in for ``DurableOrchestrationClient`` (start, status, payload)."""

    def __init__(self) -> None:
        self.instances: dict[str, FakeStatus] = {}
        self.started: list[tuple[str, str, Any]] = []

    async def start_new(self, name: str, instance_id: str | None = None, client_input=None) -> str:
        instance_id = instance_id or uuid.uuid4().hex
        self.started.append((name, instance_id, client_input))
        self.instances[instance_id] = FakeStatus(OrchestrationRuntimeStatus.Pending, client_input)
        return instance_id

    async def get_status(self, instance_id: str) -> FakeStatus:
        # The real client answers an unknown id with an empty status, not an error.
        return self.instances.get(instance_id, FakeStatus(None))

    def create_http_management_payload(self, instance_id: str) -> dict[str, str]:
        base = f"http://localhost:7071/runtime/webhooks/durabletask/instances/{instance_id}"
        return {
            "id": instance_id,
            "statusQueryGetUri": base,
            "sendEventPostUri": f"{base}/raiseEvent/{{eventName}}",
            "terminatePostUri": f"{base}/terminate",
            "purgeHistoryDeleteUri": base,
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
    monkeypatch.setenv("BLOB_CONTAINER_NAME", container)
    monkeypatch.setenv("MUSICGEN_MODEL", str(tiny_checkpoint))
    monkeypatch.setenv("MODEL_WARMUP_ON_START", "false")
    monkeypatch.setenv("CALLBACK_BACKOFF_SECONDS", "0")
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
