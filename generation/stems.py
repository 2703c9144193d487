"""From a validated request to finished stems: prompts, one batched generation, then each
stem put on the request's grid and gain-staged (``generation.arrangement``).

This is the one place the CLI and the service's ``generate_stem`` activity share: both call
``render_stems`` and only differ in where the audio goes. The preview mix of finished stems
is ``generation.musical.mix``; ``mix_record`` describes it in the manifest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from generation.arrangement import GridPlan, TrackAnalysis, finish_stem, measure, plan_grid
from generation.model_loader import LoadedModel
from generation.musicgen import (
    ClipSpec,
    MelodyCondition,
    ProgressCallback,
    SamplingParams,
    generate_clips,
)
from generation.prompts import build_stem_prompt
from generation.request import MAX_SEED, GenerationRequest, Stem
from generation.settings import GenerationSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderedStem:
    """One finished stem: float audio ``[channels, samples]`` at ``sample_rate`` Hz, on the
    request's grid and gain-staged, with what was measured on the way."""

    stem: Stem
    prompt: str
    audio: np.ndarray = field(repr=False)
    sample_rate: int
    seed: int
    duration_seconds: float  # of the finished audio
    generation_seconds: float  # wall time of the batched call this stem was part of
    processing_seconds: float = 0.0  # tempo lock and gain staging of this stem
    detected_bpm: float | None = None  # of the raw stem; None: no tempo lock or no beat
    stretch_ratio: float = 1.0  # target tempo / raw tempo
    loudness_lufs: float | None = None  # integrated, after gain staging
    true_peak_dbtp: float | None = None
    melody_conditioned: bool = False
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class StemRecord:
    """A stem as the manifest describes it."""

    stem: str
    file: str
    prompt: str
    seed: int
    duration_seconds: float
    samples: int
    sample_rate: int
    model_id: str
    generation_seconds: float
    format: str
    processing_seconds: float = 0.0
    detected_bpm: float | None = None
    stretch_ratio: float = 1.0
    loudness_lufs: float | None = None
    true_peak_dbtp: float | None = None
    melody_conditioned: bool = False
    warnings: list[str] = field(default_factory=list)


def sampling_for(request: GenerationRequest, settings: GenerationSettings) -> SamplingParams:
    """The request's sampling parameters, with the settings' defaults where it left them out."""
    p = request.parameters
    return SamplingParams(
        top_k=p.top_k if p.top_k is not None else settings.default_top_k,
        top_p=p.top_p if p.top_p is not None else settings.default_top_p,
        temperature=p.temperature if p.temperature is not None else settings.default_temperature,
        guidance_scale=(
            p.guidance_scale if p.guidance_scale is not None else settings.default_guidance_scale
        ),
    )


def stem_seed(request_seed: int, stem: Stem) -> int:
    """The seed of ``stem`` in a request seeded ``request_seed``: guitar gets the request's
    seed, bass the next one, and so on in ``Stem`` order, so stems draw independent noise
    and a stem's audio does not depend on which other stems were asked for."""
    return (request_seed + list(Stem).index(stem)) % (MAX_SEED + 1)


def prompt_for(request: GenerationRequest, stem: Stem, plan: GridPlan | None = None) -> str:
    """The text prompt this request gives MusicGen for ``stem``: with ``plan``, its tempo
    (requested or the upload's) and the upload's key."""
    p = request.parameters
    plan = plan or plan_grid(p)
    return build_stem_prompt(
        stem, style=p.style, target_bpm=plan.target_bpm, prompt=p.prompt, key=plan.key
    )


def render_stems(
    loaded: LoadedModel,
    request: GenerationRequest,
    settings: GenerationSettings,
    *,
    stems: Sequence[Stem] | None = None,
    plan: GridPlan | None = None,
    melody: MelodyCondition | None = None,
    progress: ProgressCallback | None = None,
    generate: Callable[[Sequence[ClipSpec]], list[np.ndarray]] | None = None,
) -> list[RenderedStem]:
    """Generate ``stems`` (default: all the request's stems) in one batched call, in order,
    then finish each on ``plan`` (default: the request's own grid, no upload).

    ``request.seed`` must be set (``GenerationRequest.with_seed``); each stem is seeded
    with ``stem_seed``, so a stem comes out the same alone or with others. ``melody``
    (the uploaded track) conditions every stem; only a melody checkpoint takes one.
    ``generate`` replaces the direct call (the service passes its ``ClipBatcher``).
    """
    if request.seed is None:
        raise ValueError("request.seed must be set before rendering (use with_seed())")
    plan = plan or plan_grid(request.parameters)
    chosen = list(stems) if stems is not None else list(request.target_stems)
    prompts = [prompt_for(request, stem, plan) for stem in chosen]
    seeds = [stem_seed(request.seed, stem) for stem in chosen]
    duration = plan.generation_s
    sampling = sampling_for(request, settings)
    started = time.perf_counter()
    clips = [
        ClipSpec(p, duration, s, sampling, melody=melody)
        for p, s in zip(prompts, seeds, strict=True)
    ]
    if generate is not None:
        audio = generate(clips)
    else:
        audio = generate_clips(
            loaded,
            clips,
            window_s=settings.window_seconds,
            stride_s=settings.extend_stride_seconds,
            progress=progress,
        )
    elapsed = time.perf_counter() - started
    logger.info(
        "generated %d stem(s) of %.1f s for %s in %.1f s (seed %d)",
        len(chosen),
        duration,
        request.generation_request_id,
        elapsed,
        request.seed,
    )
    rendered = []
    for stem, prompt, seed, raw in zip(chosen, prompts, seeds, audio, strict=True):
        finishing = time.perf_counter()
        finished = finish_stem(raw, loaded.sample_rate, stem, plan)
        for warning in finished.warnings:
            logger.warning("%s %s: %s", request.generation_request_id, stem.value, warning)
        rendered.append(
            RenderedStem(
                stem=stem,
                prompt=prompt,
                audio=finished.audio,
                sample_rate=loaded.sample_rate,
                seed=seed,
                duration_seconds=round(finished.audio.shape[-1] / loaded.sample_rate, 6),
                generation_seconds=round(elapsed, 3),
                processing_seconds=round(time.perf_counter() - finishing, 3),
                detected_bpm=finished.detected_bpm,
                stretch_ratio=finished.stretch_ratio,
                loudness_lufs=finished.loudness_lufs,
                true_peak_dbtp=finished.true_peak_dbtp,
                melody_conditioned=melody is not None,
                warnings=finished.warnings,
            )
        )
    return rendered


def stem_record(rendered: RenderedStem, file: str, model_id: str, fmt: str) -> StemRecord:
    """The manifest entry for ``rendered`` written to ``file``."""
    return StemRecord(
        stem=rendered.stem.value,
        file=file,
        prompt=rendered.prompt,
        seed=rendered.seed,
        duration_seconds=rendered.duration_seconds,
        samples=int(rendered.audio.shape[-1]),
        sample_rate=rendered.sample_rate,
        model_id=model_id,
        generation_seconds=rendered.generation_seconds,
        format=fmt,
        processing_seconds=rendered.processing_seconds,
        detected_bpm=rendered.detected_bpm,
        stretch_ratio=rendered.stretch_ratio,
        loudness_lufs=rendered.loudness_lufs,
        true_peak_dbtp=rendered.true_peak_dbtp,
        melody_conditioned=rendered.melody_conditioned,
        warnings=list(rendered.warnings),
    )


@dataclass(frozen=True)
class MixRecord:
    """The preview mix as the manifest describes it."""

    file: str
    stems: list[str]
    samples: int
    sample_rate: int
    loudness_lufs: float | None
    true_peak_dbtp: float | None
    format: str


def mix_record(audio: np.ndarray, sr: int, file: str, stems: Sequence[str], fmt: str) -> MixRecord:
    """The manifest entry for the mix ``audio`` written to ``file``."""
    loudness, peak = measure(audio, sr)
    return MixRecord(file, list(stems), int(audio.shape[-1]), sr, loudness, peak, fmt)


def build_manifest(
    request: GenerationRequest,
    records: Sequence[StemRecord | dict[str, Any]],
    *,
    model_id: str,
    failed_stems: Sequence[dict[str, Any]] = (),
    timings: dict[str, Any] | None = None,
    plan: GridPlan | None = None,
    upload: TrackAnalysis | None = None,
    mix: MixRecord | dict[str, Any] | None = None,
    warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """The ``manifest.json`` document: the request, the musical grid (``musical``: target
    tempo, bars, time signature, key, the upload's analysis), each stem, the mix, failures,
    warnings and timings."""
    plan = plan or plan_grid(request.parameters, upload)
    return {
        "generation_request_id": request.generation_request_id,
        "created_at": datetime.now(UTC).isoformat(),
        "model_id": model_id,
        "seed": request.seed,
        "request": request.model_dump(mode="json", exclude={"callback_url"}),
        "musical": musical_summary(plan, upload),
        "stems": [asdict(r) if isinstance(r, StemRecord) else dict(r) for r in records],
        "mix": asdict(mix) if isinstance(mix, MixRecord) else mix,
        "failed_stems": list(failed_stems),
        "warnings": list(warnings),
        "timings": timings or {},
    }


def musical_summary(plan: GridPlan, upload: TrackAnalysis | None) -> dict[str, Any]:
    """The grid and the upload's analysis, as the manifest and the callback carry them."""
    return {**plan.summary(), "upload": upload.to_dict() if upload is not None else None}
