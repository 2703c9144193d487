"""Process-wide things the Functions app shares: settings, the model, blob storage.

Each is created once per worker process, on first use, so importing the app stays fast
(the host gives a worker 60 s to start) and tests can point the environment elsewhere
before first use.
"""

from __future__ import annotations

import functools
import logging
import threading

from generation.batcher import BatchPolicy, ClipBatcher
from generation.model_loader import ModelHolder, model_holder
from generation.settings import ServiceSettings, service_settings
from generation.storage import BlobStore

logger = logging.getLogger(__name__)

BATCH_CONTAINER = "generation-batches"
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


@functools.cache
def _store() -> BlobStore:
    return BlobStore.from_settings(settings())


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
    batcher.cache_clear()
    _container_ready.clear()


def blob_store_reachable() -> bool:
    """Whether the output storage answers now (health check; never raises)."""
    try:
        return _store().is_reachable()
    except Exception:
        logger.warning("storage health check failed", exc_info=True)
        return False
