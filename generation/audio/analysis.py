"""Tempo, beats, first downbeat and key of audio. Arrays in, facts out; no model, no Azure.

Audio is float32 ``[channels, samples]`` (a 1-D array is taken as mono) at ``sr`` Hz; times
in seconds, tempi in beats per minute of the beat unit the caller counts in.

- ``estimate_tempo``: ``generation.audio.beats.analyze_beats`` (low-band, full-band and
  harmonic-change evidence; the metrical level from the meter and, given one, the caller's
  target tempo; the downbeat from what falls on each bar position over the whole excerpt),
  with its confidences and warnings.
- ``locate_downbeat``: the attack of a known approximate downbeat (used after a time
  stretch has moved it): the strongest fine onset within 30 ms, back to where it starts.
- ``estimate_key``: ``generation.audio.key.estimate_key`` (the notes of the harmonic part,
  transcribed from its tuning-corrected constant-Q spectrum; which pitch classes sound
  second by second under Temperley's Bayesian key model, plus the bass-weighted chroma's
  correlation with the Albrecht-Shanahan profiles).
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np

from generation.audio import beats
from generation.audio import key as key_analysis
from generation.audio.arrays import as_2d

ANALYSIS_SR = 22050  # Hz; beat tracking and chroma run at this rate
_FINE_HOP = 64  # samples at ANALYSIS_SR (2.9 ms) for refining the downbeat
_FINE_NFFT = 512
_REFINE_WINDOW_S = 0.03  # search +- this around each tracked beat for its onset peak
_LEAD_IN = 2048  # samples of silence put before the analysed audio

PITCH_CLASSES = key_analysis.PITCH_CLASSES


@dataclass(frozen=True)
class TempoEstimate:
    """``bpm`` in beats per minute of the caller's beat unit; ``beat_times_s`` (1-D,
    seconds); ``first_downbeat_s``; confidences in [0, 1] and what could not be decided."""

    bpm: float
    beat_times_s: np.ndarray
    first_downbeat_s: float
    tempo_confidence: float = 1.0
    downbeat_confidence: float = 1.0
    warnings: tuple[str, ...] = ()


def _mono_for_analysis(audio: np.ndarray, sr: int) -> np.ndarray:
    mono = as_2d(audio).mean(axis=0)
    if sr != ANALYSIS_SR:
        mono = librosa.resample(mono, orig_sr=sr, target_sr=ANALYSIS_SR, res_type="soxr_hq")
    return mono.astype(np.float32)


def _refine_onsets(mono: np.ndarray, times_s: np.ndarray) -> np.ndarray:
    """Each of ``times_s`` moved to the strongest fine onset within +-``_REFINE_WINDOW_S``."""
    fine = librosa.onset.onset_strength(
        y=mono, sr=ANALYSIS_SR, hop_length=_FINE_HOP, n_fft=_FINE_NFFT
    )
    fine_times = librosa.frames_to_time(np.arange(fine.size), sr=ANALYSIS_SR, hop_length=_FINE_HOP)
    refined = np.array(times_s, dtype=np.float64)
    for i, tracked in enumerate(refined):
        near = np.flatnonzero(np.abs(fine_times - tracked) <= _REFINE_WINDOW_S)
        if near.size:
            refined[i] = fine_times[near[np.argmax(fine[near])]]
    return refined


def _attack_start(mono: np.ndarray, time_s: float) -> float:
    """Where the attack near ``time_s`` begins: onset-strength peaks trail the audible start
    of a hit by a few ms, so look in the smoothed amplitude envelope from 20 ms before to
    10 ms after, and take the first point 20% of the way up from the quietest point before
    the loudest one to that loudest one."""
    lo = max(round((time_s - 0.02) * ANALYSIS_SR), 0)
    hi = min(round((time_s + 0.01) * ANALYSIS_SR), mono.size)
    if hi - lo < 3:
        return time_s
    width = max(round(0.001 * ANALYSIS_SR), 1)  # 1 ms moving average
    envelope = np.convolve(np.abs(mono[lo:hi]), np.ones(width) / width, mode="same")
    peak = int(np.argmax(envelope))
    floor = int(np.argmin(envelope[: peak + 1]))
    threshold = envelope[floor] + 0.2 * (envelope[peak] - envelope[floor])
    rise = floor + int(np.argmax(envelope[floor : peak + 1] >= threshold))
    return (lo + rise) / ANALYSIS_SR


def _with_lead_in(audio: np.ndarray, sr: int) -> np.ndarray:
    # Leading silence, so an onset at sample 0 is seen as one (the centred STFT's reflection
    # padding would otherwise hide it); callers shift times back by _LEAD_IN samples.
    return np.concatenate([np.zeros(_LEAD_IN, np.float32), _mono_for_analysis(audio, sr)])


def estimate_tempo(
    audio: np.ndarray,
    sr: int,
    *,
    beats_per_bar: int = 4,
    beat_unit: int = 4,
    target_bpm: float | None = None,
) -> TempoEstimate:
    """Tempo, beat times and first downbeat (seconds) of ``audio`` (``[channels, samples]``)
    in a ``beats_per_bar``/``beat_unit`` meter; ``bpm`` and ``target_bpm`` count beat units
    per minute (eighths in 6/8).

    Raises ``ValueError`` for silence, audio under 2 s or without a steady pulse.
    """
    if beats_per_bar < 1:
        raise ValueError(f"beats_per_bar must be >= 1, got {beats_per_bar}")
    to_quarters = 4.0 / beat_unit
    result = beats.analyze_beats(
        audio,
        sr,
        time_signature=f"{beats_per_bar}/{beat_unit}",
        target_bpm=None if target_bpm is None else target_bpm * to_quarters,
    )
    return TempoEstimate(
        bpm=result.bpm / to_quarters,
        beat_times_s=result.beat_times_s,
        first_downbeat_s=result.first_downbeat_s,
        tempo_confidence=result.tempo_confidence,
        downbeat_confidence=result.downbeat_confidence,
        warnings=result.warnings,
    )


def locate_downbeat(audio: np.ndarray, sr: int, near_s: float) -> float:
    """Where the downbeat near ``near_s`` (seconds into ``audio``) really starts: the
    strongest fine onset within +-30 ms, moved back to the start of its attack."""
    lead_in_s = _LEAD_IN / ANALYSIS_SR
    mono = _with_lead_in(audio, sr)
    found = _refine_onsets(mono, np.array([near_s + lead_in_s]))
    attack = _attack_start(mono, float(found[0]))
    return max(attack - lead_in_s, 0.0)


def estimate_key(
    audio: np.ndarray, sr: int, *, chroma: key_analysis.HarmonicChroma | None = None
) -> key_analysis.KeyEstimate:
    """Key of ``audio`` (``[channels, samples]``) with its confidence, runner-up and
    warnings; ``chroma``: its ``key_analysis.harmonic_chroma`` when already computed.
    Raises ``ValueError`` for silence."""
    return key_analysis.estimate_key(audio, sr, chroma=chroma)
