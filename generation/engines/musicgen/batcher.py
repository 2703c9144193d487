"""Cross-request batching: clips asked for at the same time in one process share a batch.

Activities run on the worker's thread pool, one stem each. Decoding is memory-bound (each
step reads every weight), so twelve clips in one batch cost little more than three. The
batcher collects clips for a short window (``BATCH_WINDOW_MS``), up to ``MAX_BATCH_SIZE``
clips and a KV-cache memory budget (``BATCH_KV_BUDGET_MB``), generates them in one call on
its own thread and hands each caller its clip. A clip's audio depends only on its own
prompt, seed, duration, sampling and melody (per-row generators, per-row conditioning), so
batching never changes it. Clips are queued as they are: a melody's audio is never compared
or hashed here.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from generation.engines.musicgen.generate import (
    ClipSpec,
    generate_clips,
    plan_length,
    prefix_positions,
)
from generation.engines.musicgen.loader import LoadedModel
from generation.settings import DEFAULT_EXTEND_STRIDE_SECONDS, DEFAULT_WINDOW_SECONDS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchPolicy:
    """How clips are gathered: wait up to ``window_s`` for more, at most ``max_clips``
    clips and ``kv_budget_bytes`` of KV cache per batch."""

    window_s: float = 0.2
    max_clips: int = 12
    kv_budget_bytes: int = 3 << 30


@dataclass(eq=False)  # compared by identity: a clip may hold a melody's audio
class _Pending:
    clip: ClipSpec
    future: Future[np.ndarray]
    kv_bytes: int


class ClipBatcher:
    """Coalesces concurrent ``generate`` calls into batched ``generate_clips`` calls."""

    def __init__(
        self,
        model: Callable[[], LoadedModel],
        policy: BatchPolicy = BatchPolicy(),
        *,
        window_s: float = DEFAULT_WINDOW_SECONDS,
        stride_s: float = DEFAULT_EXTEND_STRIDE_SECONDS,
    ) -> None:
        self._model = model
        self._policy = policy
        self._window_s = window_s
        self._stride_s = stride_s
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches: list[int] = []  # sizes of the batches run so far (for tests/metrics)

    def generate(self, clips: Sequence[ClipSpec]) -> list[np.ndarray]:
        """Generate ``clips`` (blocking), sharing batches with concurrent callers.

        Returns float32 audio ``[channels, samples]`` per clip, in order; raises what the
        generation of a clip raised.
        """
        loaded = self._model()  # load (or fail) in the caller's thread, with its error
        self._ensure_thread()
        pending = [_Pending(c, Future(), self._kv_bytes(loaded, c)) for c in clips]
        for item in pending:
            self._queue.put(item)
        return [item.future.result() for item in pending]

    def _kv_bytes(self, loaded: LoadedModel, clip: ClipSpec) -> int:
        """Self-attention cache ``clip`` needs: its longest window's positions, the carried
        context, MusicGen-melody's conditioning prefix, twice with guidance."""
        plan = plan_length(
            clip.duration_s,
            sample_rate=loaded.sample_rate,
            frame_rate=loaded.frame_rate,
            num_codebooks=loaded.num_codebooks,
            window_s=self._window_s,
            stride_s=self._stride_s,
        )
        positions = max(plan.windows) + plan.prompt_frames * (len(plan.windows) > 1) + 4
        positions += prefix_positions(loaded, clip.prompt)
        guided = 2 if clip.sampling.guidance_scale > 1 else 1
        return positions * guided * loaded.decoder.kv_bytes_per_position

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="clip-batcher", daemon=True)
                self._thread.start()

    def _gather(self) -> list[_Pending]:
        batch = [self._queue.get()]
        used = batch[0].kv_bytes
        deadline = time.monotonic() + self._policy.window_s
        while len(batch) < self._policy.max_clips:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if used + item.kv_bytes > self._policy.kv_budget_bytes:
                self._queue.put(item)  # next batch; order among waiters is not promised
                break
            batch.append(item)
            used += item.kv_bytes
        return batch

    def _run(self) -> None:
        while True:
            batch = self._gather()
            self.batches.append(len(batch))
            try:
                audio = generate_clips(
                    self._model(),
                    [item.clip for item in batch],
                    window_s=self._window_s,
                    stride_s=self._stride_s,
                )
            except Exception as error:  # noqa: BLE001 - handed to each waiting caller
                if len(batch) > 1:
                    logger.warning(
                        "batch of %d failed (%s): retrying one by one", len(batch), error
                    )
                    for item in batch:
                        self._run_alone(item)
                    continue
                batch[0].future.set_exception(error)
                continue
            logger.info("generated a batch of %d clip(s)", len(batch))
            for item, clip_audio in zip(batch, audio, strict=True):
                item.future.set_result(clip_audio)

    def _run_alone(self, item: _Pending) -> None:
        try:
            [audio] = generate_clips(
                self._model(), [item.clip], window_s=self._window_s, stride_s=self._stride_s
            )
        except Exception as error:  # noqa: BLE001 - handed to the waiting caller
            item.future.set_exception(error)
        else:
            item.future.set_result(audio)
