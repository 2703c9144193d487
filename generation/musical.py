"""Musical conforming of stems: tempo, downbeat, key, loudness. Arrays in, arrays out; no Azure.

Audio everywhere in this module is float32, shape ``[channels, samples]`` (a 1-D array is
taken as mono), at sample rate ``sr`` in Hz. Times are in seconds, tempi in beats per minute,
loudness in LUFS (ITU-R BS.1770 integrated loudness), peaks in dBTP (true peak, measured
4x oversampled).

- ``estimate_tempo``: librosa's dynamic-programming beat tracker finds the beats; the tempo
  is then the least-squares slope of beat time against beat index (far finer than the
  tracker's tempogram bins). The downbeat is the simplest honest guess: of the
  ``beats_per_bar`` possible bar phases, the one whose beats carry the strongest mean onset
  (accented downbeats, kick on one); its first beat is the first downbeat. Beat times are
  refined to the peak of a high-resolution onset envelope (about 3 ms steps), and the
  downbeat further back to where its attack starts in the amplitude envelope. Music whose
  "one" is not its loudest beat will fool it; callers who know better pass ``downbeat_s``.
- ``estimate_key``: chroma (constant-Q) summed over time, correlated with the 24 rotations
  of the Krumhansl-Schmuckler major and minor key profiles; the best correlation wins.
- ``conform``: Rubber Band (``pedalboard.time_stretch``) stretches to exactly the target
  tempo without changing pitch, the first downbeat is moved to ``align_to_s``, and the result
  is cut or zero-padded to exactly ``round(bars * beats_per_bar * 60 / target_bpm * sr)``
  samples. Where real audio is cut, a raised-cosine fade of ``FADE_IN_S`` (2 ms) at the start
  and ``FADE_OUT_S`` (10 ms) at the end stops the cut from clicking.
- Loudness: ``normalize_loudness`` is a pure gain to a target (it may exceed 0 dBFS; follow
  it with ``true_peak_limit``). ``mix`` sums stems and limits the sum to -1 dBTP.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import librosa
import numpy as np
import pedalboard
import pyloudnorm
from scipy.signal import resample_poly

from generation.request import Stem

logger = logging.getLogger(__name__)

ANALYSIS_SR = 22050  # Hz; beat tracking and chroma run at this rate
_HOP = 256  # samples at ANALYSIS_SR (11.6 ms) for beat tracking
_FINE_HOP = 64  # samples at ANALYSIS_SR (2.9 ms) for refining the downbeat
_FINE_NFFT = 512
_REFINE_WINDOW_S = 0.03  # search +- this around each tracked beat for its onset peak
_LEAD_IN = 2048  # samples of silence put before the analysed audio
FADE_IN_S = 0.002
FADE_OUT_S = 0.010
TRUE_PEAK_OVERSAMPLING = 4
MIN_LOUDNESS_SECONDS = 0.4  # one BS.1770 gating block

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Krumhansl & Kessler (1982) probe-tone ratings, tonic first.
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

# Integrated loudness per stem type, LUFS. Rhythm section forward (drums -14, bass -16),
# melodic parts a little behind (-18), sustained beds well behind (-20 to -22), so stems
# normalized to these targets and summed give a usable rough balance; the sum is then
# limited by ``mix``. Starting points for a session, not a mastering decision.
STEM_LOUDNESS_TARGETS: dict[Stem, float] = {
    Stem.DRUMS: -14.0,
    Stem.PERCUSSION: -18.0,
    Stem.BASS: -16.0,
    Stem.GUITAR: -18.0,
    Stem.PIANO: -18.0,
    Stem.KEYS: -19.0,
    Stem.SYNTH: -18.0,
    Stem.VOCALS: -17.0,
    Stem.BRASS: -19.0,
    Stem.STRINGS: -20.0,
    Stem.PADS: -22.0,
}


@dataclass(frozen=True)
class TempoEstimate:
    """``bpm`` in beats per minute; ``beat_times_s`` (1-D, seconds); ``first_downbeat_s``."""

    bpm: float
    beat_times_s: np.ndarray
    first_downbeat_s: float


@dataclass(frozen=True)
class Key:
    """``tonic`` one of ``PITCH_CLASSES`` (sharps), ``mode`` "major" or "minor"."""

    tonic: str
    mode: str

    def __str__(self) -> str:
        return f"{self.tonic} {self.mode}"


def _as_2d(audio: np.ndarray) -> np.ndarray:
    array = np.asarray(audio, dtype=np.float32)
    if array.ndim == 1:
        array = array[np.newaxis, :]
    if array.ndim != 2:
        raise ValueError(f"audio must be [channels, samples], got shape {array.shape}")
    return np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)


def _mono_for_analysis(audio: np.ndarray, sr: int) -> np.ndarray:
    mono = _as_2d(audio).mean(axis=0)
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


def estimate_tempo(audio: np.ndarray, sr: int, *, beats_per_bar: int = 4) -> TempoEstimate:
    """Tempo (BPM), beat times and first downbeat (seconds) of ``audio`` (``[channels, samples]``).

    Raises ``ValueError`` when fewer than two beats are found (silence, too short, no pulse).
    """
    if beats_per_bar < 1:
        raise ValueError(f"beats_per_bar must be >= 1, got {beats_per_bar}")
    mono = _with_lead_in(audio, sr)
    lead_in_s = _LEAD_IN / ANALYSIS_SR
    envelope = librosa.onset.onset_strength(y=mono, sr=ANALYSIS_SR, hop_length=_HOP)
    _, beat_frames = librosa.beat.beat_track(
        onset_envelope=envelope, sr=ANALYSIS_SR, hop_length=_HOP, trim=True
    )
    beat_frames = np.asarray(beat_frames, dtype=int)
    # No beats in the added lead-in, whatever the tracker extrapolated.
    beat_frames = beat_frames[beat_frames * _HOP >= _LEAD_IN - _REFINE_WINDOW_S * ANALYSIS_SR]
    if beat_frames.size < 2:
        raise ValueError("no steady beat found in the audio (fewer than two beats)")

    beat_times = librosa.frames_to_time(beat_frames, sr=ANALYSIS_SR, hop_length=_HOP)
    beat_times = _refine_onsets(mono, beat_times)
    beat_times = beat_times - lead_in_s

    # Tempo: slope of beat time against beat index, refitted once without beats more than
    # 20 ms off the line (a missed or doubled beat would otherwise tilt it).
    index = np.arange(beat_times.size)
    slope, offset = np.polyfit(index, beat_times, 1)
    keep = np.abs(beat_times - (slope * index + offset)) <= 0.02
    if keep.sum() >= 2:
        slope, _ = np.polyfit(index[keep], beat_times[keep], 1)
    bpm = 60.0 / float(slope)

    # Downbeat phase: the bar position whose beats have the strongest mean onset.
    strengths = envelope[beat_frames]
    phases = min(beats_per_bar, beat_frames.size)
    phase = int(np.argmax([strengths[p::beats_per_bar].mean() for p in range(phases)]))
    downbeat = max(_attack_start(mono, float(beat_times[phase]) + lead_in_s) - lead_in_s, 0.0)
    return TempoEstimate(bpm=bpm, beat_times_s=beat_times, first_downbeat_s=downbeat)


def estimate_key(audio: np.ndarray, sr: int) -> Key:
    """Key of ``audio`` (``[channels, samples]``) by Krumhansl-Schmuckler profile matching."""
    mono = _mono_for_analysis(audio, sr)
    if not np.any(mono):
        raise ValueError("cannot estimate the key of silence")
    chroma = librosa.feature.chroma_cqt(y=mono, sr=ANALYSIS_SR).sum(axis=1)
    best: tuple[float, int, str] = (-np.inf, 0, "major")
    for mode, profile in (("major", _MAJOR_PROFILE), ("minor", _MINOR_PROFILE)):
        for tonic in range(12):
            score = float(np.corrcoef(chroma, np.roll(profile, tonic))[0, 1])
            if score > best[0]:
                best = (score, tonic, mode)
    return Key(tonic=PITCH_CLASSES[best[1]], mode=best[2])


def bar_length_samples(target_bpm: float, bars: int, beats_per_bar: int, sr: int) -> int:
    """Exactly ``round(bars * beats_per_bar * 60 / target_bpm * sr)`` samples."""
    return round(bars * beats_per_bar * 60.0 / target_bpm * sr)


def _fade(length: int, rising: bool) -> np.ndarray:
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, length, dtype=np.float64))
    return (ramp if rising else ramp[::-1]).astype(np.float32)


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
    source = _as_2d(audio)
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
        lead_in_s = _LEAD_IN / ANALYSIS_SR
        mono = _with_lead_in(stretched, sr)
        found = _refine_onsets(mono, np.array([downbeat_stretched_s + lead_in_s]))
        attack = _attack_start(mono, float(found[0]))
        downbeat_stretched_s = max(attack - lead_in_s, 0.0)
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
        segment[:, :n] *= _fade(n, rising=True)
    if src_hi < stretched.shape[1]:  # cut into audio at the end
        n = min(round(FADE_OUT_S * sr), segment.shape[1])
        segment[:, segment.shape[1] - n :] *= _fade(n, rising=False)
    out[:, src_lo - start : src_hi - start] = segment
    return out


def _meter(sr: int) -> pyloudnorm.Meter:
    return pyloudnorm.Meter(sr)  # BS.1770-4, K-weighting, 400 ms gated blocks


def integrated_loudness(audio: np.ndarray, sr: int) -> float:
    """Integrated loudness of ``audio`` (``[channels, samples]``) in LUFS; -inf for silence.

    Raises ``ValueError`` for audio shorter than one 400 ms gating block.
    """
    array = _as_2d(audio)
    if array.shape[1] < MIN_LOUDNESS_SECONDS * sr:
        raise ValueError(f"need at least {MIN_LOUDNESS_SECONDS} s of audio to measure loudness")
    return float(_meter(sr).integrated_loudness(array.T.astype(np.float64)))


def normalize_loudness(audio: np.ndarray, sr: int, target_lufs: float) -> np.ndarray:
    """``audio`` with one gain applied so its integrated loudness is ``target_lufs`` LUFS.

    Silence is returned unchanged. The gain is not peak-safe: limit afterwards.
    """
    array = _as_2d(audio)
    loudness = integrated_loudness(array, sr)
    if not np.isfinite(loudness):
        return array
    return (array * np.float32(10 ** ((target_lufs - loudness) / 20))).astype(np.float32)


def true_peak_dbtp(audio: np.ndarray, sr: int) -> float:
    """True peak of ``audio`` in dBTP, measured ``TRUE_PEAK_OVERSAMPLING``x oversampled."""
    del sr  # oversampling ratio, not rate, is what matters
    array = _as_2d(audio).astype(np.float64)
    if not array.size:
        return -np.inf
    upsampled = resample_poly(array, TRUE_PEAK_OVERSAMPLING, 1, axis=1)
    peak = max(float(np.max(np.abs(upsampled))), float(np.max(np.abs(array))))
    return 20 * np.log10(peak) if peak > 0 else -np.inf


def true_peak_limit(audio: np.ndarray, sr: int, ceiling_dbtp: float = -1.0) -> np.ndarray:
    """``audio`` limited so its true peak is at most ``ceiling_dbtp`` dBTP.

    pedalboard's (JUCE) limiter with its threshold at the ceiling does the musical work;
    whatever inter-sample overshoot it leaves is then removed with one final gain, so the
    ceiling holds as measured by ``true_peak_dbtp``. Audio already under it is untouched.
    """
    array = _as_2d(audio)
    if true_peak_dbtp(array, sr) <= ceiling_dbtp:
        return array
    limiter = pedalboard.Limiter(threshold_db=ceiling_dbtp, release_ms=100.0)
    limited = np.asarray(limiter(array, float(sr)), dtype=np.float32).reshape(array.shape)
    peak = true_peak_dbtp(limited, sr)
    if peak > ceiling_dbtp:
        # A hair under the ceiling so float32 rounding cannot land on the wrong side.
        limited *= np.float32(10 ** ((ceiling_dbtp - peak - 0.01) / 20))
    return limited


def mix(stems: Sequence[np.ndarray], sr: int, ceiling_dbtp: float = -1.0) -> np.ndarray:
    """Sum of ``stems`` (each ``[channels, samples]``, mono broadcast to the widest), limited.

    Shorter stems are zero-padded to the longest. The result never exceeds ``ceiling_dbtp``.
    """
    if not stems:
        raise ValueError("nothing to mix")
    arrays = [_as_2d(s) for s in stems]
    channels = max(a.shape[0] for a in arrays)
    if any(a.shape[0] not in (1, channels) for a in arrays):
        raise ValueError("stems must be mono or share one channel count")
    total = np.zeros((channels, max(a.shape[1] for a in arrays)), dtype=np.float32)
    for array in arrays:
        total[:, : array.shape[1]] += array
    return true_peak_limit(total, sr, ceiling_dbtp)
