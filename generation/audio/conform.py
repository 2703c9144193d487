"""Make audio drop into a session: stretch it to a tempo, put its first downbeat on the
grid and cut it to whole bars. Arrays in, arrays out; no model, no Azure.

Rubber Band (``pedalboard.time_stretch``) stretches to exactly the target tempo without
changing pitch, the first downbeat is moved to ``align_to_s``, and the result is cut or
zero-padded to exactly ``round(bars * beats_per_bar * 60 / target_bpm * sr)`` samples. Where
real audio is cut, a raised-cosine fade of ``FADE_IN_S`` (2 ms) at the start and
``FADE_OUT_S`` (10 ms) at the end stops the cut from clicking. Tempi here count the time
signature's beat unit (eighths in 6/8); ``generation.request.quarter_notes_per_beat``
converts from the quarter-note BPM a DAW shows.
"""

from __future__ import annotations

import logging

import numpy as np
import pedalboard

from generation.audio.analysis import estimate_tempo, locate_downbeat
from generation.audio.arrays import as_2d, raised_cosine

logger = logging.getLogger(__name__)

FADE_IN_S = 0.002
FADE_OUT_S = 0.010


def bar_length_samples(target_bpm: float, bars: int, beats_per_bar: int, sr: int) -> int:
    """Exactly ``round(bars * beats_per_bar * 60 / target_bpm * sr)`` samples."""
    return round(bars * beats_per_bar * 60.0 / target_bpm * sr)


def conform(
    audio: np.ndarray,
    sr: int,
    *,
    target_bpm: float,
    bars: int,
    beats_per_bar: int = 4,
    source_bpm: float | None = None,
    downbeat_s: float | None = None,
    align_to_s: float = 0.0,
    refine_downbeat: bool | None = None,
) -> np.ndarray:
    """``audio`` (``[channels, samples]`` at ``sr``) locked to ``target_bpm`` and cut to bars.

    ``source_bpm`` and ``downbeat_s`` (seconds into ``audio``) are estimated when not given.
    An estimated downbeat is found again in the stretched audio (``refine_downbeat``,
    default: when ``downbeat_s`` is not given); pass an estimate you already made with
    ``refine_downbeat=True`` to get the same result without beat-tracking twice.
    The first downbeat lands ``align_to_s`` seconds into the result, which is exactly
    ``bar_length_samples(target_bpm, bars, beats_per_bar, sr)`` samples long, float32,
    same channel count. Raises ``ValueError`` on non-positive tempo, bars or beats.
    """
    if not target_bpm > 0 or (source_bpm is not None and not source_bpm > 0):
        raise ValueError("tempo must be a positive number of beats per minute")
    if bars < 1 or beats_per_bar < 1:
        raise ValueError("bars and beats_per_bar must be >= 1")
    if align_to_s < 0:
        raise ValueError("align_to_s must be >= 0 seconds")
    source = as_2d(audio)
    refine = downbeat_s is None if refine_downbeat is None else refine_downbeat
    if source_bpm is None or downbeat_s is None:
        estimate = estimate_tempo(source, sr, beats_per_bar=beats_per_bar)
        source_bpm = estimate.bpm if source_bpm is None else source_bpm
        downbeat_s = estimate.first_downbeat_s if downbeat_s is None else downbeat_s
        logger.info("estimated %.2f BPM, first downbeat at %.3f s", source_bpm, downbeat_s)

    factor = target_bpm / source_bpm  # > 1 speeds up
    if abs(factor - 1.0) > 1e-9:
        # Rubber Band's R2 engine: measured here it holds the average tempo exactly (beats
        # within ~10 ms), where the R3 "finer" engine drifted up to 30 ms over 16 s.
        stretched = pedalboard.time_stretch(
            source, float(sr), stretch_factor=float(factor), high_quality=False
        )
        stretched = np.asarray(stretched, dtype=np.float32).reshape(source.shape[0], -1)
    else:
        stretched = source
    downbeat_stretched_s = downbeat_s / factor
    if refine:  # an estimated downbeat is found again where the stretch actually put it
        downbeat_stretched_s = locate_downbeat(stretched, sr, downbeat_stretched_s)
    downbeat = round(downbeat_stretched_s * sr)  # the downbeat's sample in the stretched audio
    length = bar_length_samples(target_bpm, bars, beats_per_bar, sr)
    start = downbeat - round(align_to_s * sr)  # stretched sample that becomes output sample 0

    out = np.zeros((source.shape[0], length), dtype=np.float32)
    src_lo, src_hi = max(start, 0), min(start + length, stretched.shape[1])
    if src_hi <= src_lo:
        return out
    segment = stretched[:, src_lo:src_hi].copy()
    if src_lo > 0:  # cut into audio at the start
        n = min(round(FADE_IN_S * sr), segment.shape[1])
        segment[:, :n] *= raised_cosine(n).astype(np.float32)
    if src_hi < stretched.shape[1]:  # cut into audio at the end
        n = min(round(FADE_OUT_S * sr), segment.shape[1])
        segment[:, segment.shape[1] - n :] *= raised_cosine(n)[::-1].astype(np.float32)
    out[:, src_lo - start : src_hi - start] = segment
    return out
