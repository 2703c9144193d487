"""Stems made from their musical context (ACE-Step): over an upload, or out of a guide.

With an upload, each stem is ACE-Step's ``lego`` task over the uploaded track: the part is
generated against the track itself, in time with it, with the track's (or the request's)
tempo, key and metre as native inputs. Without one, the request first gets a guide
performance (``text2music`` with its tempo, key, metre, style and prompt), put on the grid
once (one stretch and one downbeat move for the whole performance), and each stem is then
the ``extract`` task on that guide: the stems of a set are parts of one performance.

Post-processing keeps the alignment the model made: the context is the plan's output window
of the track (from its first sample, so the part lines up with the track as it is), each
part is cut (or padded) to exactly the plan's length with a short fade where audio is cut,
and gain-staged to its instrument's loudness target. Nothing re-detects a part's downbeat
or stretches it away from the track's tempo.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.signal import resample_poly

from generation.audio.arrays import as_2d, raised_cosine
from generation.audio.codecs import ENCODINGS, decode_audio, encode_audio
from generation.audio.conform import FADE_OUT_S
from generation.audio.loudness import PEAK_CEILING_DBTP, true_peak_limit
from generation.engines.base import ClipBatch, ClipRequest
from generation.request import GenerationRequest, OutputFormat, Stem
from generation.stems.finish import FinishedStem, gain_stage, harmony_check, measure
from generation.stems.grid import GridPlan, lock_to_grid
from generation.stems.output import Sink
from generation.stems.record import RenderedStem, StemRecord
from generation.stems.render import stem_seed

logger = logging.getLogger(__name__)

ENGINE = "ace_step"
Generate = Callable[[ClipBatch], list[np.ndarray]]


def caption(request: GenerationRequest) -> str:
    """ACE-Step's caption for the request: style and prompt (tempo, key and metre go in as
    native inputs, not as words)."""
    p = request.parameters
    parts = [text for text in (p.style.strip(), p.prompt.strip()) if text]
    return ", ".join(parts) or "instrumental"


def context_audio(audio: np.ndarray, sr: int, plan: GridPlan, engine_sr: int) -> np.ndarray:
    """The track as the model's context: stereo float32 ``[2, samples]`` at ``engine_sr``
    Hz, its first ``plan.output_samples`` samples (the stems' window, from the track's
    first sample; a shorter track stays shorter)."""
    track = as_2d(np.asarray(audio, dtype=np.float32))
    if track.shape[0] == 1:
        track = np.repeat(track, 2, axis=0)
    elif track.shape[0] > 2:
        track = track[:2]
    if sr != engine_sr:
        common = math.gcd(sr, engine_sr)
        track = resample_poly(track, engine_sr // common, sr // common, axis=1)
    return np.ascontiguousarray(track[:, : plan.output_samples(engine_sr)], dtype=np.float32)


def fit_to_plan(audio: np.ndarray, sr: int, plan: GridPlan) -> np.ndarray:
    """``audio`` exactly ``plan.output_samples(sr)`` long, its timing untouched: cut with a
    short fade-out where audio continues, zero-padded where it is short."""
    length = plan.output_samples(sr)
    part = as_2d(np.asarray(audio, dtype=np.float32))
    out = np.zeros((part.shape[0], length), dtype=np.float32)
    kept = part[:, :length].copy()
    if part.shape[1] > length:
        n = min(round(FADE_OUT_S * sr), kept.shape[1])
        kept[:, kept.shape[1] - n :] *= raised_cosine(n)[::-1].astype(np.float32)
    out[:, : kept.shape[1]] = kept
    return out


def finish_part(audio: np.ndarray, sr: int, stem: Stem, plan: GridPlan) -> FinishedStem:
    """A part made in time with its context: fitted to the plan, gain-staged, measured,
    its harmony checked."""
    fitted = fit_to_plan(audio, sr, plan)
    warnings: tuple[str, ...] = ()
    if not np.any(fitted):
        warnings = ("the part is silent",)
    staged = gain_stage(fitted, sr, stem)
    loudness, peak = measure(staged, sr)
    in_key, clash = harmony_check(staged, sr, stem, plan)
    return FinishedStem(
        audio=staged,
        detected_bpm=None,
        stretch_ratio=1.0,
        loudness_lufs=loudness,
        true_peak_dbtp=peak,
        warnings=warnings + clash,
        in_key=in_key,
    )


def guide_batch(request: GenerationRequest, plan: GridPlan) -> ClipBatch:
    """The guide's text2music batch: the request's caption, tempo, key and metre; as long as
    the plan generates (room to put it on the grid when there is a tempo)."""
    assert request.seed is not None
    return ClipBatch(
        clips=(ClipRequest(caption(request), request.seed),),
        duration_s=plan.generation_s,
        task="text2music",
        bpm=plan.target_bpm,
        key=plan.key,
        beats_per_bar=plan.beats_per_bar,
    )


def finish_guide(audio: np.ndarray, sr: int, plan: GridPlan) -> tuple[np.ndarray, tuple[str, ...]]:
    """The guide on the grid (tempo-locked plans: one stretch, downbeat in place) or fitted
    to the plan's length, true-peak limited: ``[channels, samples]`` and warnings."""
    if plan.tempo_locked:
        locked = lock_to_grid(audio, sr, plan)
        placed, warnings = locked.audio, locked.warnings
    else:
        placed, warnings = fit_to_plan(audio, sr, plan), ()
    return true_peak_limit(placed, sr, PEAK_CEILING_DBTP), warnings


# The guide is kept lossless whatever the request's format: the stems are extracted from it.
GUIDE_FORMAT = OutputFormat.FLAC


def write_guide(
    sink: Sink,
    request: GenerationRequest,
    audio: np.ndarray,
    sample_rate: int,
    *,
    model_id: str,
    generation_seconds: float,
    warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """Write the guide as ``guide.flac`` beside the stems; its record (the manifest's
    ``guide``)."""
    encoding = ENCODINGS[GUIDE_FORMAT]
    data = encode_audio(audio, sample_rate, GUIDE_FORMAT)
    file, url = sink.write(f"guide.{encoding.extension}", data, encoding.content_type)
    return {
        "file": file,
        "blob_url": url,
        "engine": ENGINE,
        "model_id": model_id,
        "task": "text2music",
        "prompt": caption(request),
        "seed": request.seed,
        "samples": int(audio.shape[-1]),
        "sample_rate": sample_rate,
        "format": GUIDE_FORMAT.value,
        "generation_seconds": round(generation_seconds, 3),
        "warnings": list(warnings),
    }


def read_guide(sink: Sink, guide: dict[str, Any]) -> tuple[np.ndarray, int]:
    """The written guide decoded: float32 ``[channels, samples]`` and its rate (Hz)."""
    return decode_audio(sink.read(guide["file"]), what=guide["file"])


def render_parts(
    generate: Generate,
    request: GenerationRequest,
    plan: GridPlan,
    stems: Sequence[Stem],
    *,
    task: str,
    context: np.ndarray,
    sample_rate: int,
    model_id: str,
) -> list[RenderedStem]:
    """``stems`` made by ``task`` ("lego" over an upload, "extract" from the guide) in one
    batch over ``context`` (``context_audio``), each fitted to ``plan`` and gain-staged."""
    if request.seed is None:
        raise ValueError("request.seed must be set before rendering (use with_seed())")
    text = caption(request)
    seeds = [stem_seed(request.seed, stem) for stem in stems]
    batch = ClipBatch(
        clips=tuple(
            ClipRequest(text, seed, stem=stem.value)
            for stem, seed in zip(stems, seeds, strict=True)
        ),
        duration_s=context.shape[-1] / sample_rate,
        task=task,
        bpm=plan.target_bpm,
        key=plan.key,
        beats_per_bar=plan.beats_per_bar,
        audio=context,
    )
    started = time.perf_counter()
    audio = generate(batch)
    elapsed = time.perf_counter() - started
    logger.info(
        "ACE-Step %s: %d stem(s) of %.1f s for %s in %.1f s",
        task,
        len(stems),
        batch.duration_s,
        request.generation_request_id,
        elapsed,
    )
    rendered = []
    for stem, seed, raw in zip(stems, seeds, audio, strict=True):
        finishing = time.perf_counter()
        finished = finish_part(raw, sample_rate, stem, plan)
        for warning in finished.warnings:
            logger.warning("%s %s: %s", request.generation_request_id, stem.value, warning)
        record = StemRecord(
            stem=stem.value,
            prompt=text,
            seed=seed,
            model_id=model_id,
            format=request.output_format.value,
            sample_rate=sample_rate,
            samples=int(finished.audio.shape[-1]),
            duration_seconds=round(finished.audio.shape[-1] / sample_rate, 6),
            generation_seconds=round(elapsed, 3),
            processing_seconds=round(time.perf_counter() - finishing, 3),
            loudness_lufs=finished.loudness_lufs,
            true_peak_dbtp=finished.true_peak_dbtp,
            in_key=finished.in_key,
            warnings=finished.warnings,
            engine=ENGINE,
            task=task,
        )
        rendered.append(RenderedStem(record, finished.audio))
    return rendered
