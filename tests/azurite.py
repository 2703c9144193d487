"""Pytest fixtures for a real Azurite blob service on 127.0.0.1:10000.

Registered by ``pytest_plugins = ["tests.azurite"]``. A missing Azurite fails the tests
that need it; they never skip.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest

from generation.adapters.storage import BlobStore

AZURITE_HOST = "127.0.0.1"
AZURITE_BLOB_PORT = 10000
# Azurite's well-known development account; public, not a secret.
AZURITE_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
AZURITE_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    f"AccountKey={AZURITE_ACCOUNT_KEY};"
    f"BlobEndpoint=http://{AZURITE_HOST}:{AZURITE_BLOB_PORT}/devstoreaccount1;"
)
START_HINT = (
    "azurite-blob --blobHost 127.0.0.1 --blobPort 10000 --skipApiVersionCheck "
    "--inMemoryPersistence --silent &  (npm install azurite), or run .ci/run"
)


@pytest.fixture(scope="session")
def azurite_connection_string() -> str:
    """The dev-account connection string, after checking Azurite's blob port answers."""
    try:
        with socket.create_connection((AZURITE_HOST, AZURITE_BLOB_PORT), timeout=2.0):
            problem = None
    except OSError as error:
        problem = str(error)
    if problem is not None:
        pytest.fail(
            f"Azurite is not running on {AZURITE_HOST}:{AZURITE_BLOB_PORT} ({problem}); "
            f"start it with: {START_HINT}",
            pytrace=False,
        )
    return AZURITE_CONNECTION_STRING


@pytest.fixture
def blob_store(azurite_connection_string: str) -> Iterator[BlobStore]:
    """A ``BlobStore`` on a fresh, uniquely named, already created container (deleted after)."""
    store = BlobStore.from_connection_string(
        azurite_connection_string, f"test-{uuid.uuid4().hex[:24]}"
    )
    store.ensure_container()
    yield store
    store.delete_container()
