"""Batched MusicGen generation: clips (prompt, duration, seed, sampling) in, float audio out.

All clips of one call run as ONE batch through the project's decoding loop (``decoding``):
decoding is memory-bound, so a batch of three costs little more than one. Each clip has its
own random generator, so its audio depends only on its own prompt, seed, duration, sampling
and melody, never on what shares the batch. Durations map to exact sample counts; beyond the
model's window, audio is produced by windowed continuation on the codec tokens, as
audiocraft's ``extend_stride`` does: each new window is prompted with the last ``window -
stride`` seconds of tokens and adds ``stride`` seconds.

With a MusicGen-melody checkpoint a clip can follow a melody (``MelodyCondition``): its
chroma, from the checkpoint's own feature-extractor settings, conditions every window. Each
window follows the melody's matching time span, as audiocraft's ``generate_with_chroma``
does beyond one window: window ``w`` starts ``w * stride`` seconds into the clip and sees the
melody from there for ``window`` seconds, looping back to the melody's start wherever it
runs out. A melody shorter than the window therefore loops sample-exact, also for a clip of
one window (transformers, given that melody's chroma, would repeat whole chroma frames,
which drifts by up to a frame per repeat). The chroma then fills the model's
``chroma_length`` frames as transformers does (repeated when shorter, cut when longer);
with the default 30 s window it is exactly ``chroma_length`` frames. Clips without a melody
on a melody checkpoint get transformers' default chroma (every frame pitch class 0). Clips
with and without melodies, and with different melodies or prompt lengths, share a batch:
each row's conditioning prefix is left-padded and masked, so a clip's audio never depends on
its batch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import soxr
import torch

from generation.engines.musicgen.chroma import ChromaExtractor
from generation.engines.musicgen.decoding import (
    DecodeRow,
    SamplingParams,
    decode_codes,
    decode_steps,
    melody_prefix,
)
from generation.engines.musicgen.loader import LoadedModel

__all__ = [
    "ClipSpec",
    "LengthPlan",
    "MelodyCondition",
    "SamplingParams",
    "generate_audio",
    "generate_clips",
]

from generation.settings import DEFAULT_EXTEND_STRIDE_SECONDS, DEFAULT_WINDOW_SECONDS

logger = logging.getLogger(__name__)

DEFAULT_SAMPLING = SamplingParams()

ProgressCallback = Callable[[int, int], None]
"""Called after each decoding step with ``(steps_done, steps_total)``."""


@dataclass(frozen=True, eq=False)
class MelodyCondition:
    """A track whose chords a clip follows: float32 audio ``[channels, samples]`` at
    ``sample_rate`` Hz (any rate: it is resampled to the model's feature extractor's).

    Compared and hashed by identity (``eq=False``): arrays have no cheap, unambiguous
    equality, and a ``ClipSpec`` holding one must stay hashable.
    """

    audio: np.ndarray = field(repr=False)
    sample_rate: int

    def __post_init__(self) -> None:
        audio = np.asarray(self.audio, dtype=np.float32)
        if audio.ndim != 2 or audio.shape[0] < 1 or audio.shape[1] < 1:
            raise ValueError(
                f"melody audio must be [channels, samples] and not empty, got {audio.shape}"
            )
        if self.sample_rate <= 0:
            raise ValueError(f"melody sample rate must be positive, got {self.sample_rate}")
        if not np.isfinite(audio).all():
            raise ValueError("melody audio must be finite (no NaN or infinity)")
        object.__setattr__(self, "audio", audio)

    def mono(self, sample_rate: int) -> np.ndarray:
        """The channels averaged and resampled to ``sample_rate`` Hz: float32 ``[samples]``
        (transformers' extractor also averages the channels)."""
        mono = self.audio.mean(axis=0)
        if self.sample_rate != sample_rate:
            # soxr: cost bounded by the lengths, whatever the rates' ratio (a polyphase
            # filter sized by gcd-reduced rates can need gigabytes for odd rates).
            mono = soxr.resample(mono, self.sample_rate, sample_rate, quality="HQ")
        return np.asarray(mono, dtype=np.float32)


@dataclass(frozen=True)
class ClipSpec:
    """One clip to generate: text prompt, length in seconds, seed and sampling, and
    optionally a melody to follow (melody checkpoints only)."""

    prompt: str
    duration_s: float
    seed: int
    sampling: SamplingParams = DEFAULT_SAMPLING
    melody: MelodyCondition | None = None


@dataclass(frozen=True)
class LengthPlan:
    """How a duration becomes decoder steps: frames per window and exact output samples."""

    samples: int  # output length at the model's sample rate
    frames: int  # codec frames needed to cover ``samples``
    windows: tuple[int, ...]  # new frames generated by each window, first included
    prompt_frames: int  # frames of context carried into each continuation window
    steps: int  # decoder steps in total (each window adds num_codebooks - 1 delay steps)


def plan_length(
    duration_s: float,
    *,
    sample_rate: int,
    frame_rate: float,
    num_codebooks: int,
    window_s: float = DEFAULT_WINDOW_SECONDS,
    stride_s: float = DEFAULT_EXTEND_STRIDE_SECONDS,
) -> LengthPlan:
    """Plan the windows for ``duration_s`` seconds (see module docstring)."""
    if duration_s <= 0:
        raise ValueError("duration must be positive")
    samples = round(duration_s * sample_rate)
    frames = math.ceil(samples / sample_rate * frame_rate)
    window = int(window_s * frame_rate)
    stride = int(stride_s * frame_rate)
    windows = [min(frames, window)]
    while sum(windows) < frames:
        windows.append(min(stride, frames - sum(windows)))
    steps = sum(decode_steps(w, num_codebooks) for w in windows)
    return LengthPlan(samples, frames, tuple(windows), window - stride, steps)


def _group_key(plan: LengthPlan) -> tuple[int, ...]:
    # Single-window clips batch together whatever their lengths; longer ones need the same
    # window sequence to continue in lockstep.
    return (1,) if len(plan.windows) == 1 else plan.windows


def prefix_positions(loaded: LoadedModel, prompt: str) -> int:
    """Decoder positions a clip's conditioning takes before its tokens: MusicGen-melody's
    prefix (``chroma_length`` chroma frames and the prompt's text tokens); 0 for text-only
    MusicGen, which cross-attends instead."""
    if not loaded.decoder.prefix_conditioning:
        return 0
    tokens = loaded.processor(text=[prompt])["input_ids"][0]
    return loaded.decoder.chroma_length + len(tokens)


def generate_clips(
    loaded: LoadedModel,
    clips: Sequence[ClipSpec],
    *,
    window_s: float = DEFAULT_WINDOW_SECONDS,
    stride_s: float = DEFAULT_EXTEND_STRIDE_SECONDS,
    progress: ProgressCallback | None = None,
) -> list[np.ndarray]:
    """Generate every clip, batched; returns float32 audio ``[channels, samples]`` per clip,
    in order, each exactly ``round(duration_s * sample_rate)`` samples at
    ``loaded.sample_rate`` Hz."""
    if not clips:
        raise ValueError("at least one clip is needed")
    if not loaded.supports_melody and any(c.melody is not None for c in clips):
        raise ValueError(
            f"{loaded.model_id} is a text-only checkpoint: it cannot follow a melody "
            "(a MusicGen-melody checkpoint, e.g. facebook/musicgen-melody, can)"
        )
    plans = [
        plan_length(
            c.duration_s,
            sample_rate=loaded.sample_rate,
            frame_rate=loaded.frame_rate,
            num_codebooks=loaded.num_codebooks,
            window_s=window_s,
            stride_s=stride_s,
        )
        for c in clips
    ]
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, plan in enumerate(plans):
        groups.setdefault(_group_key(plan), []).append(index)
    k = loaded.num_codebooks
    total = sum(
        sum(
            decode_steps(max(plans[i].windows[w] for i in members), k)
            for w in range(len(plans[members[0]].windows))
        )
        for members in groups.values()
    )
    done = 0

    def on_step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(min(done, total), total)

    results: list[np.ndarray | None] = [None] * len(clips)
    melodies = _Melodies(
        loaded.chroma, window_s, int(stride_s * loaded.frame_rate) / loaded.frame_rate
    )
    with loaded.lock, torch.inference_mode():
        for members in groups.values():
            audio = _generate_group(
                loaded,
                [clips[i] for i in members],
                [plans[i] for i in members],
                melodies,
                on_step,
            )
            for i, clip_audio in zip(members, audio, strict=True):
                results[i] = clip_audio
    return [cast(np.ndarray, r) for r in results]


def window_melody(
    mono: np.ndarray, window: int, *, sample_rate: int, window_s: float, stride_s: float
) -> np.ndarray:
    """The melody samples continuation window ``window`` follows (see module docstring):
    ``window_s`` seconds of ``mono`` ``[samples]`` (at ``sample_rate`` Hz) from
    ``window * stride_s`` seconds on, looping back to its start wherever it runs out."""
    start = round(window * stride_s * sample_rate)
    return mono[(start + np.arange(round(window_s * sample_rate))) % len(mono)]


class _Melodies:
    """Each window's chroma of each clip's melody, computed once per call: the stems of a
    request share one melody."""

    def __init__(self, extractor: ChromaExtractor | None, window_s: float, stride_s: float):
        self.extractor = extractor
        self.window_s = window_s  # seconds of melody each window sees
        self.stride_s = stride_s  # seconds between window starts (whole codec frames)
        self._mono: dict[int, np.ndarray] = {}
        self._chroma: dict[tuple[int, int], torch.Tensor] = {}

    def chroma(self, melody: MelodyCondition | None, window: int) -> torch.Tensor | None:
        """One-hot chroma ``[frames, num_chroma]`` window ``window`` follows, or None."""
        if melody is None or self.extractor is None:
            return None
        rate = self.extractor.sampling_rate
        key = (id(melody), window)  # the clips keep their melodies alive for the call
        if key not in self._chroma:
            if id(melody) not in self._mono:
                self._mono[id(melody)] = melody.mono(rate)
            span = window_melody(
                self._mono[id(melody)],
                window,
                sample_rate=rate,
                window_s=self.window_s,
                stride_s=self.stride_s,
            )
            self._chroma[key] = self.extractor(span)
        return self._chroma[key]


def _generate_group(
    loaded: LoadedModel,
    clips: Sequence[ClipSpec],
    plans: Sequence[LengthPlan],
    melodies: _Melodies,
    on_step: Callable[[], None],
) -> list[np.ndarray]:
    device = loaded.device
    text = loaded.processor(text=[c.prompt for c in clips], padding=True, return_tensors="pt")
    ids, mask = text["input_ids"].to(device), text["attention_mask"].to(device)
    encoded = loaded.model.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    states = loaded.decoder.project_text(encoded, mask)
    generators = [torch.Generator(device=device).manual_seed(c.seed) for c in clips]
    codes: torch.Tensor | None = None
    for window in range(len(plans[0].windows)):
        rows = [DecodeRow(p.windows[window], c.sampling) for c, p in zip(clips, plans, strict=True)]
        context = None if codes is None else codes[..., -plans[0].prompt_frames :]
        cond, cond_mask, null = states, mask, None
        if loaded.decoder.prefix_conditioning:  # MusicGen-melody: a prefix per window
            chroma = [melodies.chroma(c.melody, window) for c in clips]
            cond, cond_mask, null = melody_prefix(loaded.decoder, states, mask, chroma)
        new = decode_codes(
            loaded.decoder,
            cond,
            cond_mask,
            rows,
            generators,
            null=null,
            prompt_codes=context,
            on_step=on_step,
        )
        codes = new if codes is None else torch.cat([codes, new[..., plans[0].prompt_frames :]], -1)
    assert codes is not None
    return _decode_audio(loaded, codes, plans)


def _decode_audio(
    loaded: LoadedModel, codes: torch.Tensor, plans: Sequence[LengthPlan]
) -> list[np.ndarray]:
    """EnCodec-decode each clip's own frames, one clip at a time: as fast as a batch here,
    and the codec's activations at 32 kHz are large (a batch of three 10 s clips took
    1.2 GB more than one at a time)."""
    codec: Any = loaded.model.audio_encoder
    out = []
    for i, plan in enumerate(plans):
        clip_codes = codes[i : i + 1, :, : plan.frames]
        audio = codec.decode(clip_codes[None], audio_scales=[None]).audio_values
        clip = audio[0, :, : plan.samples].float().cpu().numpy()
        if clip.shape[-1] != plan.samples:
            raise RuntimeError(f"codec gave {clip.shape[-1]} samples, expected {plan.samples}")
        out.append(clip)
    return out


def generate_audio(
    loaded: LoadedModel,
    prompts: Sequence[str],
    duration_s: float,
    *,
    seed: int | Sequence[int],
    sampling: SamplingParams = DEFAULT_SAMPLING,
    melody: MelodyCondition | None = None,
    window_s: float = DEFAULT_WINDOW_SECONDS,
    stride_s: float = DEFAULT_EXTEND_STRIDE_SECONDS,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """One clip per prompt, all ``duration_s`` long: float32 ``[len(prompts), channels,
    samples]``. ``seed`` is one seed for every row or one per prompt; ``melody`` (melody
    checkpoints only) is followed by every clip."""
    seeds = [seed] * len(prompts) if isinstance(seed, int) else list(seed)
    if len(seeds) != len(prompts):
        raise ValueError("give one seed, or one seed per prompt")
    clips = [
        ClipSpec(p, duration_s, s, sampling, melody) for p, s in zip(prompts, seeds, strict=True)
    ]
    audio = generate_clips(loaded, clips, window_s=window_s, stride_s=stride_s, progress=progress)
    return np.stack(audio)
