"""ACE-Step as an ``Engine``: one pipeline per process, batches of clips in, 48 kHz stereo out.

Tasks: ``text2music`` (the guide: a whole performance from caption, tempo, key and metre),
``lego`` (each clip one stem played over ``batch.audio``) and ``extract`` (each clip one stem
taken out of ``batch.audio``). lego and extract need a base checkpoint (``ACE_STEP_MODEL``);
an optional turbo checkpoint (``guide_model``) makes text2music in 8 steps and shares the
base's VAE, text encoder and tokenizer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from generation.engines.ace_step.generate import (
    Clip,
    Musical,
    Sampling,
    Task,
    generate_clips,
    track_for_stem,
)
from generation.engines.ace_step.loader import LoadedAceStep, Precision, load_ace_step
from generation.engines.base import ClipBatch, Conditioning, EngineHolder, EngineState
from generation.engines.loading import resolve_device
from generation.errors import ModelLoadError, SettingsError
from generation.settings import GenerationSettings

# The variants' own sampling recipes (ACE-Step 1.5's model zoo).
BASE_SAMPLING = Sampling(steps=50, guidance_scale=7.0, shift=3.0)
TURBO_SAMPLING = Sampling(steps=8, guidance_scale=1.0, shift=3.0)


@dataclass(frozen=True)
class _Loaded:
    base: LoadedAceStep
    guide: LoadedAceStep | None  # a turbo checkpoint for text2music; None: the base makes it


class AceStepEngine:
    """The ACE-Step engine of this process (see the module docstring)."""

    name = "ace_step"
    conditioning = frozenset(
        {
            Conditioning.TEXT,
            Conditioning.TEMPO,
            Conditioning.KEY,
            Conditioning.TIME_SIGNATURE,
            Conditioning.AUDIO_CONTEXT,
        }
    )

    def __init__(
        self,
        model: str,
        cache_dir: Path | None,
        *,
        device: torch.device | None = None,
        precision: Precision = "auto",
        guide_model: str | None = None,
        base_sampling: Sampling = BASE_SAMPLING,
        turbo_sampling: Sampling = TURBO_SAMPLING,
        offline: bool = False,
        compile_dit: bool = False,
    ) -> None:
        self._model = model
        self._device = device or torch.device("cpu")
        self.base_sampling = base_sampling
        self.turbo_sampling = turbo_sampling
        # One generation at a time: the base and the guide share modules, the schedulers
        # are stateful, and one batch already uses every core.
        self._lock = threading.Lock()

        def load() -> _Loaded:
            base = load_ace_step(
                model,
                cache_dir,
                device=self._device,
                precision=precision,
                offline=offline,
                compile_dit=compile_dit,
            )
            guide = None
            if guide_model:
                guide = load_ace_step(
                    guide_model,
                    cache_dir,
                    device=self._device,
                    precision=precision,
                    share_with=base,
                    offline=offline,
                    compile_dit=compile_dit,
                )
            return _Loaded(base, guide)

        self._holder: EngineHolder[_Loaded] = EngineHolder("ACE-Step", load)

    @classmethod
    def from_settings(cls, settings: GenerationSettings) -> AceStepEngine:
        """The engine ``settings`` describe (``ACE_STEP_MODEL``, its guide, precision and
        steps, the cache, the device); ``SettingsError`` when no checkpoint is named."""
        if not settings.ace_step_model:
            raise SettingsError(
                "ACE_STEP_MODEL (--ace-step-model in the CLI) must name a checkpoint to use "
                "the ace_step engine"
            )
        return cls(
            settings.ace_step_model,
            settings.model_cache_dir,
            device=resolve_device(settings.use_gpu),
            precision=settings.ace_step_precision,
            guide_model=settings.ace_step_guide_model,
            base_sampling=Sampling(steps=settings.ace_step_steps),
            offline=settings.hf_hub_offline,
            compile_dit=settings.ace_step_compile,
        )

    @property
    def state(self) -> EngineState:
        return self._holder.state

    @property
    def error(self) -> ModelLoadError | None:
        return self._holder.error

    @property
    def model_id(self) -> str:
        return self._model

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def sample_rate(self) -> int:
        return self._holder.get().base.sample_rate

    @property
    def channels(self) -> int:
        return self._holder.get().base.channels

    def warm_up_in_background(self) -> threading.Thread:
        return self._holder.warm_up_in_background()

    def checkpoint_for(self, task: str) -> str:
        """The model id that makes ``task`` (what the manifest names)."""
        loaded = self._holder.get()
        if Task(task) is Task.TEXT2MUSIC and loaded.guide is not None:
            return loaded.guide.model_id
        return loaded.base.model_id

    def generate(self, batch: ClipBatch) -> list[np.ndarray]:
        """48 kHz stereo float32 ``[2, samples]`` per clip; ``ValueError`` for a batch ACE-Step
        cannot make (unknown task or stem, lego/extract without audio, ...)."""
        try:
            task = Task(batch.task)
        except ValueError:
            raise ValueError(f"ACE-Step has no task {batch.task!r}") from None
        loaded = self._holder.get()
        model = loaded.guide if task is Task.TEXT2MUSIC and loaded.guide else loaded.base
        sampling = self.turbo_sampling if model.is_turbo else self.base_sampling
        by_stem = task is not Task.TEXT2MUSIC
        clips = [
            Clip(
                task,
                request.prompt,
                request.seed,
                track=track_for_stem(request.stem) if by_stem and request.stem else None,
            )
            for request in batch.clips
        ]
        musical = Musical(
            duration_s=batch.duration_s,
            bpm=None if batch.bpm is None else round(batch.bpm),
            keyscale=batch.key,
            timesignature=None if batch.beats_per_bar is None else str(batch.beats_per_bar),
        )
        with self._lock:
            return generate_clips(
                model.pipeline, clips, musical, source=batch.audio, sampling=sampling
            )
