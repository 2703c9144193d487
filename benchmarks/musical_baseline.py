"""The project's tempo, downbeat and key analysis before issue 12, kept verbatim as the
baseline column of ``benchmarks/musical_eval.py``. Not used by the product.

Tempo, beats, first downbeat and key of audio. Arrays in, facts out; no model, no Azure.

Audio is float32 ``[channels, samples]`` (a 1-D array is taken as mono) at ``sr`` Hz; times
in seconds, tempi in beats per minute of the beat unit the caller counts in.

- ``estimate_tempo``: librosa's dynamic-programming beat tracker finds the beats; the tempo
  is then the least-squares slope of beat time against beat index (far finer than the
  tracker's tempogram bins). The downbeat is the simplest honest guess: of the
  ``beats_per_bar`` possible bar phases, the one whose beats carry the strongest mean onset
  (accented downbeats, kick on one); its first beat is the first downbeat. Beat times are
  refined to the peak of a high-resolution onset envelope (about 3 ms steps), and the
  downbeat further back to where its attack starts in the amplitude envelope. Music whose
  "one" is not its loudest beat will fool it; callers who know better pass the downbeat.
- ``locate_downbeat``: the same refinement around a known approximate downbeat (used after
  a time stretch has moved it).
- ``estimate_key``: chroma (constant-Q) summed over time, correlated with the 24 rotations
  of the Krumhansl-Schmuckler major and minor key profiles; the best correlation wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np

from generation.audio.arrays import as_2d

ANALYSIS_SR = 22050  # Hz; beat tracking and chroma run at this rate
_HOP = 256  # samples at ANALYSIS_SR (11.6 ms) for beat tracking
_FINE_HOP = 64  # samples at ANALYSIS_SR (2.9 ms) for refining the downbeat
_FINE_NFFT = 512
_REFINE_WINDOW_S = 0.03  # search +- this around each tracked beat for its onset peak
_LEAD_IN = 2048  # samples of silence put before the analysed audio

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Krumhansl & Kessler (1982) probe-tone ratings, tonic first.
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


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


def locate_downbeat(audio: np.ndarray, sr: int, near_s: float) -> float:
    """Where the downbeat near ``near_s`` (seconds into ``audio``) really starts: the
    strongest fine onset within +-30 ms, moved back to the start of its attack."""
    lead_in_s = _LEAD_IN / ANALYSIS_SR
    mono = _with_lead_in(audio, sr)
    found = _refine_onsets(mono, np.array([near_s + lead_in_s]))
    attack = _attack_start(mono, float(found[0]))
    return max(attack - lead_in_s, 0.0)


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
