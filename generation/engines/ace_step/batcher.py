"""Stems of one request, asked for by separate activities, through the DiT together.

The service runs one activity per stem; ACE-Step is fastest with every stem of a request in
one batch (one VAE encode of the track, one DiT pass per step for all stems). The gatherer
waits a short window for batches that can be merged: same task, same musical inputs and the
same audio context (named by ``context_id``, e.g. the blob the track came from), then
generates them in one call on its own thread and hands each caller its clips.

Merging is safe because a clip's audio depends only on its own caption, seed and stem and on
what the merged batches share: in fp32 a merged batch returns the same audio as separate
calls (tested); in bf16 the difference is rounding (well under the bf16 tolerance).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace

import numpy as np

from generation.engines.base import ClipBatch
from generation.engines.gathering import get_before

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class _Pending:
    batch: ClipBatch
    context_id: str | None
    future: Future[list[np.ndarray]]

    def key(self) -> tuple:
        b = self.batch
        return (b.task, b.duration_s, b.bpm, b.key, b.beats_per_bar, self.context_id)


class AceStepGatherer:
    """Coalesces concurrent ``generate`` calls with the same key into one engine call."""

    def __init__(
        self,
        generate: Callable[[ClipBatch], list[np.ndarray]],
        *,
        window_s: float = 0.5,
        max_clips: int = 8,
    ) -> None:
        self._generate = generate
        self._window_s = window_s
        self._max_clips = max_clips
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def generate(self, batch: ClipBatch, context_id: str | None = None) -> list[np.ndarray]:
        """Like the engine's ``generate``; batches with ``context_id`` None (or with audio
        but no id) run alone, since their contexts cannot be told apart cheaply."""
        if context_id is None and batch.audio is not None:
            return self._generate(batch)
        item = _Pending(batch, context_id, Future())
        self._ensure_thread()
        self._queue.put(item)
        return item.future.result()

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="ace-step-gather", daemon=True
                )
                self._thread.start()

    def _gather(self) -> list[_Pending]:
        """The next group: the first waiting item and every item with its key that arrives
        within the window (up to ``max_clips`` clips); others are put back, in order."""
        first = self._queue.get()
        group, others = [first], []
        clips = len(first.batch.clips)
        deadline = time.monotonic() + self._window_s
        while clips < self._max_clips and (item := get_before(self._queue, deadline)) is not None:
            if item.key() == first.key() and clips + len(item.batch.clips) <= self._max_clips:
                group.append(item)
                clips += len(item.batch.clips)
            else:
                others.append(item)
        for item in others:
            self._queue.put(item)
        return group

    def _run(self) -> None:
        while True:
            group = self._gather()
            merged = replace(
                group[0].batch, clips=tuple(c for item in group for c in item.batch.clips)
            )
            try:
                audio = self._generate(merged)
            except BaseException as error:  # noqa: BLE001 - handed to every waiting caller
                for item in group:
                    item.future.set_exception(error)
                continue
            if len(group) > 1:
                logger.info("ACE-Step: %d requests' clips generated in one batch", len(group))
            start = 0
            for item in group:
                count = len(item.batch.clips)
                item.future.set_result(audio[start : start + count])
                start += count
