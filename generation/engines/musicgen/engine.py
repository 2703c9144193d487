"""MusicGen as an ``Engine``: the process's model holder and batcher behind the interface.

MusicGen hears a caption (tempo, key and metre as words in it) and, with a melody
checkpoint, the chroma of ``batch.audio``. Its only task is text2music; each clip is made on
its own and fitted to the grid afterwards by the stems layer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from generation.engines.base import ClipBatch, Conditioning, EngineState
from generation.engines.musicgen.decoding import SamplingParams
from generation.engines.musicgen.generate import ClipSpec, MelodyCondition
from generation.engines.musicgen.loader import ModelHolder
from generation.errors import ModelLoadError


class MusicGenEngine:
    """The MusicGen engine of this process."""

    name = "musicgen"

    def __init__(
        self,
        holder: ModelHolder,
        generate: Callable[[Sequence[ClipSpec]], list[np.ndarray]],
        sampling: SamplingParams | None = None,
    ) -> None:
        self._holder = holder
        self._generate = generate  # the cross-request batcher's generate, or a direct call
        self._sampling = sampling or SamplingParams()

    @property
    def holder(self) -> ModelHolder:
        return self._holder

    @property
    def conditioning(self) -> frozenset[Conditioning]:
        """Text; the upload's chords too when the loaded checkpoint is a melody one."""
        if self._holder.state is EngineState.AVAILABLE and self._holder.get().supports_melody:
            return frozenset({Conditioning.TEXT, Conditioning.MELODY})
        return frozenset({Conditioning.TEXT})

    @property
    def state(self) -> EngineState:
        return self._holder.state

    @property
    def error(self) -> ModelLoadError | None:
        return self._holder.error

    @property
    def model_id(self) -> str:
        return self._holder.model_id

    @property
    def sample_rate(self) -> int:
        return self._holder.get().sample_rate

    @property
    def channels(self) -> int:
        audio_config: Any = self._holder.get().model.config.audio_encoder
        return int(audio_config.audio_channels)

    def warm_up_in_background(self) -> threading.Thread:
        return self._holder.warm_up_in_background()

    def generate(self, batch: ClipBatch) -> list[np.ndarray]:
        """One float32 ``[channels, samples]`` clip per request, ``duration_s`` long."""
        if batch.task != "text2music":
            raise ValueError(f"MusicGen has no task {batch.task!r}; it only makes text2music")
        melody = None
        if batch.audio is not None:
            melody = MelodyCondition(batch.audio, self.sample_rate)
        clips = [
            ClipSpec(c.prompt, batch.duration_s, c.seed, self._sampling, melody=melody)
            for c in batch.clips
        ]
        return self._generate(clips)
