"""Process-wide things the Functions app shares: settings, the model, blob storage.

Each is created once per worker process, on first use, so importing the app stays fast
(the host gives a worker 60 s to start) and tests can point the environment elsewhere
before first use.
"""

from __future__ import annotations

import functools
import logging
import threading

from generation.adapters.storage import BlobStore
from generation.engines.musicgen.batcher import BatchPolicy, ClipBatcher
from generation.engines.musicgen.loader import ModelHolder, model_holder
from generation.errors import SettingsError
from orchestrators.settings import ServiceSettings, service_settings

logger = logging.getLogger(__name__)

BATCH_CONTAINER = "generation-batches"
BATCH_REPORTS_CONTAINER = "generation-batch-reports"
_container_ready = threading.Event()


def settings() -> ServiceSettings:
    """The service settings (read once per process; fails naming a bad key)."""
    return service_settings()


def model() -> ModelHolder:
    """This process's MusicGen holder."""
    return model_holder(settings())


@functools.cache
def batcher() -> ClipBatcher:
    """The worker's cross-request batcher (one per process, over this process's model)."""
    s = settings()
    policy = BatchPolicy(
        window_s=s.batch_window_ms / 1000,
        max_clips=s.max_batch_size,
        kv_budget_bytes=s.batch_kv_budget_mb << 20,
    )
    holder = model()
    return ClipBatcher(
        holder.get, policy, window_s=s.window_seconds, stride_s=s.extend_stride_seconds
    )


def store_from_settings(s: ServiceSettings, container: str | None = None) -> BlobStore:
    """The store the service settings describe; ``container`` defaults to
    ``BLOB_CONTAINER_NAME``. The connection string wins over the account URL."""
    name = container or s.blob_container_name
    if s.azure_storage_connection_string is not None:
        return BlobStore.from_connection_string(
            s.azure_storage_connection_string.get_secret_value(), name
        )
    if s.azure_storage_account_url:
        return BlobStore.from_account_url(s.azure_storage_account_url, name)
    raise SettingsError("AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_URL must be set")


@functools.cache
def _store() -> BlobStore:
    return store_from_settings(settings())


def blob_store() -> BlobStore:
    """The output container's store; the container is created on first use."""
    store = _store()
    if not _container_ready.is_set():
        store.ensure_container()
        _container_ready.set()
    return store


def upload_store() -> BlobStore:
    """The store uploaded tracks are read from (``UPLOAD_CONTAINER_NAME``, default the
    output container). Never created here: a missing container means a missing upload."""
    name = settings().upload_container_name
    return _store().for_container(name) if name else _store()


@functools.cache
def batch_store() -> BlobStore:
    """The ``generation-batches`` container of the ``AzureWebJobsStorage`` account: the
    account the blob trigger reads batch files from, so their reports land beside them
    whatever account the outputs go to. Raises ``SettingsError`` when that connection is
    not configured."""
    s = settings()
    if s.azure_web_jobs_storage is not None:
        connection = s.azure_web_jobs_storage.get_secret_value()
        return BlobStore.from_connection_string(connection, BATCH_CONTAINER)
    if s.azure_web_jobs_storage_blob_uri:
        return BlobStore.from_account_url(s.azure_web_jobs_storage_blob_uri, BATCH_CONTAINER)
    if s.azure_web_jobs_storage_account_name:
        url = f"https://{s.azure_web_jobs_storage_account_name}.blob.core.windows.net"
        return BlobStore.from_account_url(url, BATCH_CONTAINER)
    raise SettingsError(
        "AzureWebJobsStorage (or AzureWebJobsStorage__blobServiceUri / __accountName) is not "
        "set: batch files are read through that connection and their reports written there"
    )


@functools.cache
def batch_report_store() -> BlobStore:
    """Where batch reports go: their own container in the batch files' account (created on
    first use), so a report never lands among the batch files."""
    store = batch_store().for_container(BATCH_REPORTS_CONTAINER)
    store.ensure_container()
    return store


def check_configuration() -> None:
    """Read the settings and build the stores now, so a missing or bad setting fails the
    worker at start with a message naming the key (no network is used)."""
    settings()
    _store()
    batch_store()


def start_model_warmup() -> None:
    """Begin loading MusicGen in the background unless ``MODEL_WARMUP_ON_START`` is false."""
    if settings().model_warmup_on_start:
        model().warm_up_in_background()
    else:
        logger.info("MODEL_WARMUP_ON_START is false: MusicGen loads on the first request")


def reset_for_tests() -> None:
    """Forget cached settings and store (tests change the environment between cases)."""
    service_settings.cache_clear()
    _store.cache_clear()
    batch_store.cache_clear()
    batch_report_store.cache_clear()
    batcher.cache_clear()
    _container_ready.clear()


def blob_store_reachable() -> bool:
    """Whether the output storage answers now (health check; never raises)."""
    try:
        return _store().is_reachable()
    except Exception:
        logger.warning("storage health check failed", exc_info=True)
        return False
