"""From a validated request to finished stems: prompts, one batched generation, clip guard.

This is the one place the CLI and the service's ``generate_stem`` activity share: both call
``render_stems`` and only differ in where the audio goes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from generation.audio import protect_from_clipping
from generation.model_loader import LoadedModel
from generation.musicgen import ClipSpec, ProgressCallback, SamplingParams, generate_clips
from generation.prompts import build_stem_prompt
from generation.request import MAX_SEED, GenerationRequest, Stem
from generation.settings import GenerationSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderedStem:
    """One generated stem: float audio ``[channels, samples]`` at ``sample_rate`` Hz."""

    stem: Stem
    prompt: str
    audio: np.ndarray = field(repr=False)
    sample_rate: int
    seed: int
    duration_seconds: float
    generation_seconds: float  # wall time of the batched call this stem was part of


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


def prompt_for(request: GenerationRequest, stem: Stem) -> str:
    """The text prompt this request gives MusicGen for ``stem``."""
    p = request.parameters
    return build_stem_prompt(stem, style=p.style, target_bpm=p.target_bpm, prompt=p.prompt)


def render_stems(
    loaded: LoadedModel,
    request: GenerationRequest,
    settings: GenerationSettings,
    *,
    stems: Sequence[Stem] | None = None,
    progress: ProgressCallback | None = None,
    generate: Callable[[Sequence[ClipSpec]], list[np.ndarray]] | None = None,
) -> list[RenderedStem]:
    """Generate ``stems`` (default: all the request's stems) in one batched call, in order.

    ``request.seed`` must be set (``GenerationRequest.with_seed``); each stem is seeded
    with ``stem_seed``, so a stem comes out the same alone or with others. ``generate``
    replaces the direct call (the service passes its cross-request ``ClipBatcher``).
    """
    if request.seed is None:
        raise ValueError("request.seed must be set before rendering (use with_seed())")
    chosen = list(stems) if stems is not None else list(request.target_stems)
    prompts = [prompt_for(request, stem) for stem in chosen]
    seeds = [stem_seed(request.seed, stem) for stem in chosen]
    duration = request.parameters.duration_seconds
    sampling = sampling_for(request, settings)
    started = time.perf_counter()
    clips = [ClipSpec(p, duration, s, sampling) for p, s in zip(prompts, seeds, strict=True)]
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
    return [
        RenderedStem(
            stem=stem,
            prompt=prompt,
            audio=protect_from_clipping(audio[i]),
            sample_rate=loaded.sample_rate,
            seed=seeds[i],
            duration_seconds=duration,
            generation_seconds=round(elapsed, 3),
        )
        for i, (stem, prompt) in enumerate(zip(chosen, prompts, strict=True))
    ]


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
    )


def build_manifest(
    request: GenerationRequest,
    records: Sequence[StemRecord | dict[str, Any]],
    *,
    model_id: str,
    failed_stems: Sequence[dict[str, Any]] = (),
    timings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``manifest.json`` document: the request, each stem, failures and timings."""
    return {
        "generation_request_id": request.generation_request_id,
        "created_at": datetime.now(UTC).isoformat(),
        "model_id": model_id,
        "request": request.model_dump(mode="json", exclude={"callback_url"}),
        "stems": [asdict(r) if isinstance(r, StemRecord) else dict(r) for r in records],
        "failed_stems": list(failed_stems),
        "timings": timings or {},
    }
