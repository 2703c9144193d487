"""Cross-request batching: clips asked for at the same time in one process share a batch.

Activities run on the worker's thread pool, one stem each. Decoding is memory-bound (each
step reads every weight), so twelve clips in one batch cost little more than three. The
batcher collects clips for a short window (``BATCH_WINDOW_MS``), up to ``MAX_BATCH_SIZE``
clips and a KV-cache memory budget (``BATCH_KV_BUDGET_MB``), generates them in one call on
its own thread and hands each caller its clip. A clip's audio depends only on its own
prompt, seed, duration, sampling and melody (per-row generators, per-row conditioning), so
batching never changes it. Clips are queued as they are: a melody's audio is never compared
or hashed here.

The worker's memory budget (``WORKER_MEMORY_BUDGET_MB``, ``BatchPolicy.memory_budget_bytes``)
bounds everything in flight: the running batch's attention cache, one EnCodec decode, and
each clip's audio and post-processing (``generation.engines.musicgen.memory``) from its
batch until its caller is done with it (the end of a ``lease()``). A batch starts only when
it fits beside the clips still held; a clip that could never fit fails with
``MemoryBudgetError``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field

import numpy as np

from generation.engines.gathering import get_before
from generation.engines.musicgen.generate import (
    ClipSpec,
    generate_clips,
    plan_length,
    prefix_positions,
)
from generation.engines.musicgen.loader import LoadedModel
from generation.engines.musicgen.memory import (
    MB,
    MUSICGEN_SMALL,
    MemoryProfile,
    clip_work_bytes,
    kv_positions,
)
from generation.errors import MemoryBudgetError
from generation.settings import DEFAULT_EXTEND_STRIDE_SECONDS, DEFAULT_WINDOW_SECONDS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchPolicy:
    """How clips are gathered: wait up to ``window_s`` for more, at most ``max_clips``
    clips and ``kv_budget_bytes`` of KV cache per batch, and never more than
    ``memory_budget_bytes`` in flight on the worker (None: unbounded), counted with
    ``profile``'s constants."""

    window_s: float = 0.2
    max_clips: int = 12
    kv_budget_bytes: int = 3 << 30
    memory_budget_bytes: int | None = None
    profile: MemoryProfile = MUSICGEN_SMALL


@dataclass(eq=False)  # compared by identity: a clip may hold a melody's audio
class _Pending:
    clip: ClipSpec
    future: Future[np.ndarray]
    kv_bytes: int
    work_bytes: int  # audio and post-processing, held from its batch to the lease's end
    lease: _Lease


@dataclass(eq=False)
class _Lease:
    held_bytes: int = 0  # work bytes of this lease's clips that went into a batch


@dataclass
class _Budget:
    """Work bytes held by clips generated and not yet released (guarded by ``changed``)."""

    held_bytes: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)


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
        self._budget = _Budget()
        self.batches: list[int] = []  # sizes of the batches run so far (for tests/metrics)
        self.peak_in_flight_bytes = 0  # most memory-model bytes in flight at once (tests)

    @property
    def held_bytes(self) -> int:
        """Work bytes of clips generated and not yet released."""
        return self._budget.held_bytes

    def generate(self, clips: Sequence[ClipSpec]) -> list[np.ndarray]:
        """Generate ``clips`` (blocking), sharing batches with concurrent callers; their
        memory is released on return (use ``lease`` to hold it while post-processing).

        Returns float32 audio ``[channels, samples]`` per clip, in order; raises what the
        generation of a clip raised.
        """
        with self.lease() as generate:
            return generate(clips)

    @contextlib.contextmanager
    def lease(self) -> Iterator[Callable[[Sequence[ClipSpec]], list[np.ndarray]]]:
        """A ``generate`` whose clips keep their share of the memory budget (audio and
        post-processing) until this block ends: wrap the generation AND the finishing and
        writing of the stems in it."""
        lease = _Lease()
        try:
            yield lambda clips: self._generate(clips, lease)
        finally:
            with self._budget.changed:
                self._budget.held_bytes -= lease.held_bytes
                lease.held_bytes = 0
                self._budget.changed.notify_all()

    def _generate(self, clips: Sequence[ClipSpec], lease: _Lease) -> list[np.ndarray]:
        loaded = self._model()  # load (or fail) in the caller's thread, with its error
        self._ensure_thread()
        pending = [
            _Pending(
                c,
                Future(),
                self._kv_bytes(loaded, c),
                clip_work_bytes(self._policy.profile, c.duration_s),
                lease,
            )
            for c in clips
        ]
        for item in pending:
            self._queue.put(item)
        # Every clip settled before any error is raised: a clip still queued would otherwise
        # be counted against this lease after it ended, and never released.
        wait([item.future for item in pending])
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
        positions = kv_positions(plan) + prefix_positions(loaded, clip.prompt)
        guided = 2 if clip.sampling.guidance_scale > 1 else 1
        return positions * guided * loaded.decoder.kv_bytes_per_position

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="clip-batcher", daemon=True)
                self._thread.start()

    def _need(self, batch: Sequence[_Pending]) -> int:
        """Memory in flight if ``batch`` ran now: what is held, its clips' work, its
        attention cache and one decode."""
        work = sum(item.work_bytes + item.kv_bytes for item in batch)
        return self._budget.held_bytes + work + round(self._policy.profile.decode_peak_mb * MB)

    def _fits(self, batch: Sequence[_Pending]) -> bool:
        budget = self._policy.memory_budget_bytes
        return budget is None or self._need(batch) <= budget

    def _first(self) -> _Pending:
        """The next clip that can ever fit, once it fits beside what is held."""
        budget = self._policy.memory_budget_bytes
        while True:
            item = self._queue.get()
            alone = (
                item.work_bytes + item.kv_bytes + round(self._policy.profile.decode_peak_mb * MB)
            )
            if budget is not None and alone > budget:
                item.future.set_exception(
                    MemoryBudgetError(
                        f"a clip of {item.clip.duration_s:g} s needs about {alone / MB:,.0f} MB, "
                        f"more than WORKER_MEMORY_BUDGET_MB ({budget / MB:,.0f} MB)"
                    )
                )
                continue
            with self._budget.changed:
                self._budget.changed.wait_for(functools.partial(self._fits, [item]))
            return item

    def _gather(self) -> list[_Pending]:
        batch = [self._first()]
        used = batch[0].kv_bytes
        deadline = time.monotonic() + self._policy.window_s
        while (
            len(batch) < self._policy.max_clips
            and (item := get_before(self._queue, deadline)) is not None
        ):
            if used + item.kv_bytes > self._policy.kv_budget_bytes or not self._fits(
                [*batch, item]
            ):
                self._queue.put(item)  # next batch; order among waiters is not promised
                break
            batch.append(item)
            used += item.kv_bytes
        with self._budget.changed:  # held from now until each caller's lease ends
            self.peak_in_flight_bytes = max(self.peak_in_flight_bytes, self._need(batch))
            for item in batch:
                item.lease.held_bytes += item.work_bytes
                self._budget.held_bytes += item.work_bytes
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
