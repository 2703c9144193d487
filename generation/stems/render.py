"""From a validated request to finished stems: prompts, one batched generation, then each
stem put on the request's grid and gain-staged (``generation.stems.finish``).

This is the one place the CLI and the service's ``generate_stem`` activity share: both call
``render_stems`` and then write through ``generation.stems.output``; they differ only in
where the files go.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np

from generation.engines.musicgen.generate import (
    ClipSpec,
    MelodyCondition,
    ProgressCallback,
    SamplingParams,
    generate_clips,
)
from generation.engines.musicgen.loader import LoadedModel
from generation.request import MAX_SEED, GenerationRequest, Stem
from generation.settings import GenerationSettings
from generation.stems.chord_guide import GUIDE_RATE_HZ, chord_guide
from generation.stems.finish import finish_stem
from generation.stems.grid import GridPlan, plan_grid
from generation.stems.prompts import build_stem_prompt
from generation.stems.record import RenderedStem, StemRecord

logger = logging.getLogger(__name__)


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
    """The text prompt this request gives MusicGen for ``stem``: its tempo (requested or
    the upload's), and the set's one key and chord progression (see ``plan_grid``)."""
    p = request.parameters
    plan = plan or plan_grid(p, seed=request.seed)
    return build_stem_prompt(
        stem,
        style=p.style,
        target_bpm=plan.target_bpm,
        prompt=p.prompt,
        key=plan.key,
        chords=" ".join(plan.chords) or None,
    )


def stem_melody(
    plan: GridPlan,
    *,
    supports_melody: bool,
    upload_audio: Callable[[], tuple[np.ndarray, int]] | None,
) -> tuple[MelodyCondition | None, str | None]:
    """What a request's stems follow on a melody checkpoint, and its label for the stem
    record (``melody_source``): the CLI and the service both decide here.

    - ``"upload"``: the uploaded track (``upload_audio`` returns float32 ``[channels,
      samples]`` and its rate; called only then), unless the request set its own chords;
    - ``"chords"``: the request's chords on a tempo-locked plan, as a chord guide
      (``generation.stems.chord_guide``), so every stem follows the same progression;
    - nothing (None, None): a text-only checkpoint (key and chords are in its prompt
      only), no upload and no chords of the request's, or the request's chords without a
      tempo (the upload's audio would contradict them, and a guide needs bars).
    """
    if not supports_melody:
        return None, None
    if plan.chords_source == "request":
        if not plan.tempo_locked:
            return None, None
        return MelodyCondition(chord_guide(plan), GUIDE_RATE_HZ), "chords"
    if upload_audio is not None:
        return MelodyCondition(*upload_audio()), "upload"
    return None, None


def render_stems(
    loaded: LoadedModel,
    request: GenerationRequest,
    settings: GenerationSettings,
    *,
    stems: Sequence[Stem] | None = None,
    plan: GridPlan | None = None,
    melody: MelodyCondition | None = None,
    melody_source: str | None = None,
    progress: ProgressCallback | None = None,
    generate: Callable[[Sequence[ClipSpec]], list[np.ndarray]] | None = None,
) -> list[RenderedStem]:
    """Generate ``stems`` (default: all the request's stems) in one batched call, in order,
    then finish each on ``plan`` (default: the request's own grid, no upload).

    ``request.seed`` must be set (``GenerationRequest.with_seed``); each stem is seeded
    with ``stem_seed``, so a stem comes out the same alone or with others. ``melody``
    conditions every stem (only a melody checkpoint takes one) and ``melody_source`` names
    it for the records (see ``stem_melody``, which decides both).
    ``generate`` replaces the direct call (the service passes its ``ClipBatcher``).
    """
    if request.seed is None:
        raise ValueError("request.seed must be set before rendering (use with_seed())")
    if (melody is None) != (melody_source is None):
        raise ValueError("melody and melody_source go together (see stem_melody)")
    plan = plan or plan_grid(request.parameters, seed=request.seed)
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
        record = StemRecord(
            stem=stem.value,
            prompt=prompt,
            seed=seed,
            model_id=loaded.model_id,
            format=request.output_format.value,
            sample_rate=loaded.sample_rate,
            samples=int(finished.audio.shape[-1]),
            duration_seconds=round(finished.audio.shape[-1] / loaded.sample_rate, 6),
            generation_seconds=round(elapsed, 3),
            processing_seconds=round(time.perf_counter() - finishing, 3),
            detected_bpm=finished.detected_bpm,
            stretch_ratio=finished.stretch_ratio,
            loudness_lufs=finished.loudness_lufs,
            true_peak_dbtp=finished.true_peak_dbtp,
            in_key=finished.in_key,
            melody_source=melody_source,
            warnings=finished.warnings,
        )
        rendered.append(RenderedStem(record, finished.audio))
    return rendered
