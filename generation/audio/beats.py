"""Tempo, beat phase and downbeat of music, with a confidence and warnings instead of guesses.

Audio is float32 ``[channels, samples]`` (1-D is mono) at ``sr`` Hz; times in seconds from
the start of the audio; tempo in quarter notes per minute whatever the meter (a 6/8 bar at
90 BPM is three quarter notes, 2 s), as DAWs count it. numpy/scipy/librosa only.

How ``analyze_beats`` decides:

1. Evidence, frame by frame (5.8 ms): a low band onset envelope (30-180 Hz spectral flux:
   kick and bass), a full band one (everything), and a harmonic one (chroma of the
   harmonic part after harmonic/percussive separation, 130 Hz-4 kHz). Off-beat hi-hats,
   skanks and stabs are loud in the full band and absent from the low band and from the
   harmony.
2. Tempo, coarse: the onset envelopes' autocorrelation read at every metrical level the
   time signature implies (eighths, beats, half bars, bars; dotted quarters in 6/8), so a
   bar-long repetition votes for the right level; a log-normal prior on the tempo (around
   ``DEFAULT_TEMPO_BPM`` or the caller's target when given) breaks ties between levels.
   Without a target, a pulse whose off-beats carry more onsets than its beats, the bass
   playing there too, is taken twice as fast (fast rock and ska otherwise read at half).
3. Tempo and beat phase, fine: a comb of the meter's pulses (quarters, or eighths in x/8)
   slid over the low-band-weighted envelope at 0.02 BPM and one-frame steps; the beats it
   finds are moved to their local onset peaks and a straight line through them gives the
   tempo (to a few hundredths of a BPM on steady music).
4. Downbeat: every half pulse of the bar is scored by the bass-note onsets (the low
   band's harmonic part; kicks are too often on 1 and 3 or syncopated to tell) and the
   harmonic change (chords change on bar lines; read over a bar and over a pulse) of the
   half pulses that fall on it, over the whole excerpt, so a first bar without a kick or
   a pickup does not decide it; an odd half pulse moves the beats by half a pulse. The
   first downbeat is the first bar line at or after the music starts (a pickup comes
   before it), moved by the median, over every beat with an onset, of the time from the
   beat to where its attack starts (one attack alone is a noisy estimate).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import librosa
import numpy as np
from scipy.ndimage import gaussian_filter1d

logger = logging.getLogger(__name__)

ANALYSIS_SR = 22050  # Hz
HOP = 128  # samples at ANALYSIS_SR: 5.8 ms frames
FPS = ANALYSIS_SR / HOP
CHROMA_HOP = 512  # samples: 23 ms frames for harmony
LEAD_IN = 2048  # samples of silence put before the audio, so an onset at 0 is seen
DEFAULT_TEMPO_BPM = 110.0  # centre of the tempo prior without a target
PRIOR_WIDTH_OCTAVES = 0.9  # without a target; with one, TARGET_PRIOR_WIDTH_OCTAVES
TARGET_PRIOR_WIDTH_OCTAVES = 0.3
MIN_BPM, MAX_BPM = 50.0, 220.0  # quarter notes per minute considered
FINE_RANGE = 0.02  # the fine tempo search spans +- this fraction of the coarse tempo
FINE_STEP_BPM = 0.02
PEAK_WINDOW_S = 0.035  # a beat is moved to the onset peak within +- this
PEAK_RADIUS = max(1, int(PEAK_WINDOW_S * FPS))  # the same, in analysis frames
ONSET_FRACTION = 0.3  # a beat has an onset when its peak reaches this of the typical
# Weights of the evidence in the beat-phase envelope and in the downbeat score.
PHASE_WEIGHTS = {"low": 1.0, "full": 0.5}
# The bar line is told by bass notes and by chord changes, the latter read over a bar (the
# bar before against the bar after) and over one pulse (sharp where the chord changes).
# Kicks on 1 and 3, or syncopated ones, make the kick ambiguous between half bars, and
# off-beat hats and skanks mislead the full band, so neither is weighed: on the 58
# development pieces of benchmarks/musical_eval.py the first downbeat was right on 43 with
# these weights (44 with the tempo doubling below), 40 before (kick 0.3, bass 0.6, chord
# changes over a bar only, 1.2).
DOWNBEAT_WEIGHTS = {"bass": 0.6, "harmony_bar": 1.8, "harmony_pulse": 0.6}
HARMONY_BAND_HZ = (130.0, 4000.0)  # chord changes: above most bass notes (a walking bass
# changes pitch every beat without changing the chord), below most overtones
# Without a target, a pulse whose off-beats carry more onsets than its beats (full band,
# ratio above OFFBEAT_LEAD) while the low band plays there too (ratio above OFFBEAT_LOW) is
# a half note of fast music (rock or ska at 150-170 BPM heard at 80): the tempo is doubled.
# A slow beat with loud off-beat hi-hats keeps its kick and bass on the beat (low ratio
# about 0.2). On the 58 development pieces the faster music's half-tempo readings scored
# full 1.38-1.7 / low 0.48-0.86, every right reading below 1.1 or, with loud off-beat
# hi-hats, up to 1.3 with low under 0.25.
OFFBEAT_LEAD = 1.25
OFFBEAT_LOW = 0.35
LOW_CONFIDENCE = 0.35  # below this a decision is reported as a warning
MIN_BEATS_WITH_ONSET = 0.6  # fewer beats than this with an onset: a sparse pulse, said so
ATTACK_BEFORE_S = 0.025  # seconds before an onset peak where its attack may begin
# Seconds of the moving average that makes the amplitude envelope an attack is read from: a
# millisecond leaves the ripple of low notes, which a swelling attack crosses too early.
ATTACK_SMOOTH_S = 0.005
MIN_ATTACKS = 4  # beats with an onset needed to place the bar line by their median attack


@dataclass(frozen=True)
class BeatAnalysis:
    """``bpm`` quarter notes per minute; ``beat_times_s`` every pulse of the meter (quarters,
    eighths in x/8); ``downbeat_times_s`` every bar line found from ``first_downbeat_s``;
    confidences in [0, 1]; ``warnings`` what could not be decided confidently."""

    bpm: float
    beat_times_s: np.ndarray = field(repr=False)
    downbeat_times_s: np.ndarray = field(repr=False)
    first_downbeat_s: float
    tempo_confidence: float
    downbeat_confidence: float
    warnings: tuple[str, ...] = ()


def parse_meter(time_signature: str) -> tuple[int, int]:
    """``"6/8"`` -> ``(6, 8)``: pulses per bar and the pulse's note value."""
    try:
        beats, unit = (int(part) for part in time_signature.split("/"))
    except ValueError as error:
        raise ValueError(f"time signature must look like 4/4, got {time_signature!r}") from error
    if beats < 1 or unit not in (1, 2, 4, 8, 16):
        raise ValueError(f"unsupported time signature {time_signature!r}")
    return beats, unit


def metrical_levels(beats: int, unit: int) -> tuple[tuple[float, float], ...]:
    """(length in quarter notes, weight) of the levels a meter's autocorrelation is read at."""
    pulse = 4.0 / unit
    bar = beats * pulse
    if unit == 8 and beats % 3 == 0:  # compound: eighths, dotted quarters, bars
        levels = [(pulse, 1.0), (3 * pulse, 1.0), (bar, 1.0)]
    else:
        levels = [(pulse / 2, 0.5), (pulse, 1.0), (bar, 1.0)]
        if beats % 2 == 0:
            levels.append((bar / 2, 1.0))
    return tuple(levels)


def _mono(audio: np.ndarray, sr: int) -> np.ndarray:
    array = np.nan_to_num(np.asarray(audio, dtype=np.float32))
    if array.ndim == 2:
        array = array.mean(axis=0)
    if array.ndim != 1:
        raise ValueError(f"audio must be [channels, samples], got shape {np.shape(audio)}")
    if sr != ANALYSIS_SR:
        array = librosa.resample(array, orig_sr=sr, target_sr=ANALYSIS_SR, res_type="soxr_hq")
    return np.concatenate([np.zeros(LEAD_IN, np.float32), array.astype(np.float32)])


@dataclass(frozen=True)
class _Evidence:
    low: np.ndarray  # per frame (HOP), normalised to a robust maximum of 1
    bass: np.ndarray  # the low band's harmonic part (bass notes, not kick drums)
    full: np.ndarray
    rms: np.ndarray
    chroma: np.ndarray  # [12, chroma frames] (CHROMA_HOP), harmonic part in
    # HARMONY_BAND_HZ, each frame l1
    chroma_energy: np.ndarray  # per chroma frame


def _normalise(x: np.ndarray) -> np.ndarray:
    scale = float(np.percentile(x, 99)) if x.size else 0.0
    return x / scale if scale > 0 else x


def _flux(spectrum: np.ndarray, n_fft: int) -> np.ndarray:
    """Log spectral flux, delayed by half a window: a centred frame's log energy jumps as
    soon as an onset enters the window's edge, so undelayed it leads the onset."""
    log = np.log1p(100.0 * spectrum)
    flux = np.maximum(np.diff(log, axis=1), 0.0).sum(axis=0)
    delay = n_fft // (2 * HOP)
    return np.concatenate([np.zeros(1 + delay), flux])[: spectrum.shape[1]]


def _evidence(mono: np.ndarray) -> _Evidence:
    wide = np.abs(librosa.stft(mono, n_fft=2048, hop_length=HOP))
    freqs = librosa.fft_frequencies(sr=ANALYSIS_SR, n_fft=2048)
    band = wide[(freqs >= 30) & (freqs <= 180)]
    low = _flux(band, 2048)
    # Kick drums are short and broadband, bass notes sustained and narrow: a median-filter
    # split of the low band tells an off-beat bass line from a four-on-the-floor kick.
    low_harmonic, _ = librosa.decompose.hpss(band, kernel_size=(31, 5))
    bass = _flux(low_harmonic, 2048)
    narrow = np.abs(librosa.stft(mono, n_fft=1024, hop_length=HOP))
    full = _flux(narrow[1:], 1024)
    rms = librosa.feature.rms(S=narrow, frame_length=1024)[0]
    spec = np.abs(librosa.stft(mono, n_fft=4096, hop_length=CHROMA_HOP))
    # Separating only the bins of the harmony band is most of the cost saved.
    harmonic = np.zeros_like(spec)
    bottom, top = (int(hz * 4096 / ANALYSIS_SR) for hz in HARMONY_BAND_HZ)
    harmonic[:top], _ = librosa.decompose.hpss(spec[:top], kernel_size=(17, 17))
    harmonic[:bottom] = 0.0
    chroma = librosa.feature.chroma_stft(S=harmonic**2, sr=ANALYSIS_SR, norm=None)
    energy = chroma.sum(axis=0)
    chroma = chroma / np.maximum(energy, 1e-9)
    n = min(low.size, full.size, rms.size, bass.size)
    return _Evidence(
        low=_normalise(low[:n]),
        bass=_normalise(bass[:n]),
        full=_normalise(full[:n]),
        rms=rms[:n],
        chroma=chroma,
        chroma_energy=energy / max(float(energy.max()), 1e-9),
    )


def _autocorrelation(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean()
    size = 1 << math.ceil(math.log2(2 * centred.size))
    spectrum = np.fft.rfft(centred, size)
    ac = np.fft.irfft(spectrum * np.conj(spectrum))[: centred.size]
    return ac / ac[0] if ac[0] > 0 else ac


def _prior(bpm: np.ndarray, centre: float, width_octaves: float) -> np.ndarray:
    return np.exp(-0.5 * (np.log2(bpm / centre) / width_octaves) ** 2)


def _coarse_tempo(
    envelope: np.ndarray, beats: int, unit: int, target_bpm: float | None
) -> tuple[float, float, list[tuple[float, float]]]:
    """Best quarter-note tempo, its confidence, and (tempo, score) of the rivals."""
    ac = _autocorrelation(envelope)
    levels = metrical_levels(beats, unit)
    candidates = np.arange(MIN_BPM, MAX_BPM, 0.25)
    lags = np.arange(ac.size, dtype=np.float64)
    salience = np.zeros_like(candidates)
    smooth = gaussian_filter1d(ac, 1.0)  # a frame of tolerance around each lag
    for quarters, weight in levels:
        lag = quarters * 60.0 / candidates * FPS
        salience += weight * np.interp(lag, lags, smooth, right=0.0)
    salience = np.maximum(salience / sum(w for _, w in levels), 0.0)
    if target_bpm is not None:
        prior = _prior(candidates, target_bpm, TARGET_PRIOR_WIDTH_OCTAVES)
    else:
        prior = _prior(candidates, DEFAULT_TEMPO_BPM, PRIOR_WIDTH_OCTAVES)
    score = salience * prior
    best = int(np.argmax(score))
    rivals = []
    for factor in (0.5, 2.0, 2 / 3, 1.5, 1 / 3, 3.0):
        rival = candidates[best] * factor
        if MIN_BPM <= rival < MAX_BPM:
            near = np.abs(candidates / rival - 1.0) <= 0.03
            rivals.append((float(rival), float(score[near].max())))
    top_rival = max((s for _, s in rivals), default=0.0)
    confidence = 1.0 - top_rival / score[best] if score[best] > 0 else 0.0
    return float(candidates[best]), float(np.clip(confidence, 0.0, 1.0)), rivals


def _comb(envelope: np.ndarray, periods_frames: np.ndarray, start: int, stop: int) -> np.ndarray:
    """score[p, phase]: mean envelope at phase + k * period, k over the excerpt."""
    frames = np.arange(envelope.size, dtype=np.float64)
    max_phase = int(np.ceil(periods_frames.max()))
    phases = np.arange(max_phase, dtype=np.float64)
    scores = np.full((periods_frames.size, max_phase), -np.inf)
    for i, period in enumerate(periods_frames):
        count = int((stop - start) / period)
        if count < 2:
            continue
        grid = start + phases[: int(np.ceil(period)), None] + period * np.arange(count)[None, :]
        values = np.interp(grid, frames, envelope, right=0.0)
        scores[i, : grid.shape[0]] = values.mean(axis=1)
    return scores


def _peak_near(envelope: np.ndarray, frame: float, radius: int) -> tuple[float, float]:
    """(frame, height) of the envelope's maximum within +-radius of ``frame``, parabolic."""
    lo = max(round(float(frame)) - radius, 1)
    hi = min(round(float(frame)) + radius + 1, envelope.size - 1)
    if hi <= lo:
        return frame, 0.0
    i = lo + int(np.argmax(envelope[lo:hi]))
    a, b, c = envelope[i - 1], envelope[i], envelope[min(i + 1, envelope.size - 1)]
    denom = a - 2 * b + c
    offset = 0.5 * (a - c) / denom if denom < 0 else 0.0
    return i + float(np.clip(offset, -0.5, 0.5)), float(b)


def _harmonic_change(evidence: _Evidence, times_s: np.ndarray, span_s: float) -> np.ndarray:
    """At each time: 1 - cosine between the mean chroma of the ``span_s`` before and after."""
    chroma_times = librosa.frames_to_time(
        np.arange(evidence.chroma.shape[1]), sr=ANALYSIS_SR, hop_length=CHROMA_HOP
    )
    weighted = evidence.chroma * evidence.chroma_energy
    cumulative = np.concatenate([np.zeros((12, 1)), np.cumsum(weighted, axis=1)], axis=1)
    out = np.zeros(times_s.size)
    for i, t in enumerate(times_s):
        a = int(np.searchsorted(chroma_times, t - span_s))
        b = int(np.searchsorted(chroma_times, t))
        c = int(np.searchsorted(chroma_times, t + span_s))
        if b - a < 2 or c - b < 2:
            continue
        before = cumulative[:, b] - cumulative[:, a]
        after = cumulative[:, c] - cumulative[:, b]
        norm = np.linalg.norm(before) * np.linalg.norm(after)
        if norm > 0:
            out[i] = 1.0 - float(before @ after) / norm
    return out


def _attack_start(mono: np.ndarray, time_s: float) -> float:
    """Where the attack that peaks near ``time_s`` begins in the amplitude envelope
    (``ATTACK_SMOOTH_S`` moving average): the first point 20 % of the way up from the
    quietest point before the loudest one, looked for from ``ATTACK_BEFORE_S`` before to
    10 ms after."""
    lo = max(round((time_s - ATTACK_BEFORE_S) * ANALYSIS_SR), 0)
    hi = min(round((time_s + 0.01) * ANALYSIS_SR), mono.size)
    if hi - lo < 3:
        return time_s
    width = max(round(ATTACK_SMOOTH_S * ANALYSIS_SR), 1)
    envelope = np.convolve(np.abs(mono[lo:hi]), np.ones(width) / width, mode="same")
    peak = int(np.argmax(envelope))
    floor = int(np.argmin(envelope[: peak + 1]))
    threshold = envelope[floor] + 0.2 * (envelope[peak] - envelope[floor])
    rise = floor + int(np.argmax(envelope[floor : peak + 1] >= threshold))
    return (lo + rise) / ANALYSIS_SR


def _on_the_attacks(
    mono: np.ndarray, envelope: np.ndarray, beat_frames: np.ndarray, frame: float, typical: float
) -> float:
    """Seconds of the grid's beat at ``frame`` (analysis frames) moved to where attacks begin:
    by the median over the beats with an onset near them (``beat_frames``, at least
    ``MIN_ATTACKS``) of the time from the beat to its attack's start, else by its own
    attack, else not at all. One attack alone is a noisy estimate (a choir or strings
    rise over 50 ms and more); the median over every beat is not."""
    attacks = []  # (beat frame, onset frame) where the beat has an onset
    for beat in beat_frames:
        onset_frame, height = _peak_near(envelope, float(beat), PEAK_RADIUS)
        if typical > 0 and height >= ONSET_FRACTION * typical:
            attacks.append((float(beat), onset_frame))
    if len(attacks) >= MIN_ATTACKS:
        leads = [_attack_start(mono, onset / FPS) - beat / FPS for beat, onset in attacks]
        return frame / FPS + float(np.median(leads))
    onset_frame, height = _peak_near(envelope, frame, PEAK_RADIUS)
    if typical > 0 and height >= ONSET_FRACTION * typical:
        return _attack_start(mono, onset_frame / FPS)
    return frame / FPS


@dataclass(frozen=True)
class _Grid:
    """A steady pulse in analysis frames: ``phase`` (a beat) and ``period`` (frames per
    pulse); ``count`` pulses from ``phase`` reach the end of the music; ``heights`` the
    onset strength found at each; ``spread_s`` how far beats stray from the line."""

    phase: float
    period: float
    count: int
    heights: np.ndarray
    spread_s: float

    def typical_height(self) -> float:
        present = self.heights[self.heights > 0]
        return float(np.median(present)) if present.size else 0.0


def _fit_grid(
    envelope: np.ndarray, coarse_bpm: float, pulse_quarters: float, start: int, stop: int
) -> _Grid:
    """Fine tempo and beat phase: the comb of pulses that best fits ``envelope`` near
    ``coarse_bpm``, then a straight line through the beats moved to their onset peaks."""
    bpms = np.arange(coarse_bpm * (1 - FINE_RANGE), coarse_bpm * (1 + FINE_RANGE), FINE_STEP_BPM)
    periods = pulse_quarters * 60.0 / bpms * FPS
    scores = _comb(envelope, periods, start, stop)
    best_period, best_phase = np.unravel_index(int(np.argmax(scores)), scores.shape)
    period = float(periods[best_period])
    # The comb's phase is its first beat at or after `start`; one before may still be music.
    phase = float(start + best_phase)
    phase -= period * int(np.ceil((phase - start + PEAK_RADIUS) / period))
    count = int((stop - phase) / period) + 1
    refined = np.array(
        [_peak_near(envelope, f, PEAK_RADIUS) for f in phase + period * np.arange(count)]
    )
    heights = refined[:, 1]
    typical = float(np.median(heights[heights > 0])) if np.any(heights > 0) else 0.0
    strong = (
        np.flatnonzero(heights >= ONSET_FRACTION * typical) if typical > 0 else np.array([], int)
    )
    spread_s = 0.0
    if strong.size >= 4:
        slope, offset = np.polyfit(strong, refined[strong, 0], 1)
        residual = refined[strong, 0] - (slope * strong + offset)
        kept = strong[np.abs(residual) <= PEAK_RADIUS / 2]
        if kept.size >= 4:
            slope, offset = np.polyfit(kept, refined[kept, 0], 1)
            residual = refined[kept, 0] - (slope * kept + offset)
        spread_s = float(np.std(residual)) / FPS
        period, phase = float(slope), float(offset)
    return _Grid(phase=phase, period=period, count=count, heights=heights, spread_s=spread_s)


def _offbeats_lead(evidence: _Evidence, grid: _Grid, start: int, stop: int) -> bool:
    """Whether the half pulses between ``grid``'s beats carry more full-band onsets than
    the beats (by ``OFFBEAT_LEAD``) with the low band busy there too (``OFFBEAT_LOW``)."""
    beats = grid.phase + grid.period * np.arange(grid.count)
    beats = beats[(beats >= start) & (beats + grid.period < stop)]
    if beats.size < 4:
        return False

    def ratio(envelope: np.ndarray) -> float:
        on = np.mean([_peak_near(envelope, f, 2)[1] for f in beats])
        off = np.mean([_peak_near(envelope, f + grid.period / 2, 2)[1] for f in beats])
        return float(off / on) if on > 0 else 0.0

    return ratio(evidence.full) > OFFBEAT_LEAD and ratio(evidence.low) > OFFBEAT_LOW


def _bar_line(
    evidence: _Evidence, grid: _Grid, beats_per_bar: int, start: int, stop: int
) -> tuple[int, float, int]:
    """Which half pulse of the bar the bar line is on: (best, confidence, runner-up),
    half pulses counted from ``grid.phase``.

    Every half pulse of the bar is a candidate, scored by what falls on it bar after bar.
    Bass notes and chord changes mark bar lines; kicks, off-beat hi-hats and skanks are
    not weighed, so a loop whose loudest hits are off the beat still gets its "one" from
    the bass and the harmony."""
    half = grid.period / 2
    halves = grid.phase + half * np.arange(-2 * beats_per_bar, 2 * grid.count + 1)
    halves = halves[(halves >= start - PEAK_RADIUS) & (halves < stop)]
    position = np.round((halves - grid.phase) / half).astype(int) % (2 * beats_per_bar)
    bar_s = beats_per_bar * grid.period / FPS
    features = {
        "bass": np.array([_peak_near(evidence.bass, f, 2)[1] for f in halves]),
        "harmony_bar": _harmonic_change(evidence, halves / FPS, bar_s),
        "harmony_pulse": _harmonic_change(evidence, halves / FPS, grid.period / FPS),
    }
    combined = np.zeros(halves.size)  # the weighted evidence at every half pulse
    for name, raw in features.items():
        # Clipped at the 97th percentile: the first note after silence (often a pickup)
        # and a final crash are single huge onsets that must not outvote every bar.
        values = np.minimum(raw, np.percentile(raw, 97))
        spread = float(values.std())
        if spread <= 0:
            continue
        z = (values - values.mean()) / spread
        combined += DOWNBEAT_WEIGHTS[name] * z
        if logger.isEnabledFor(logging.DEBUG):
            means = [z[position == c].mean() for c in range(2 * beats_per_bar)]
            logger.debug("downbeat evidence %s: %s", name, np.round(means, 2))
    per_position = [combined[position == c] for c in range(2 * beats_per_bar)]
    scores = np.array([v.mean() if v.size else -np.inf for v in per_position])
    order = np.argsort(scores)[::-1]
    margin = float(scores[order[0]] - scores[order[1]])
    # The margin against what chance gives: the standard error of the difference between
    # the two best positions' means, from how much their evidence varies bar to bar.
    errors = [
        float(v.std(ddof=1)) / math.sqrt(v.size) if v.size > 1 else math.inf
        for v in (per_position[order[0]], per_position[order[1]])
    ]
    noise = math.hypot(*errors)
    if not margin > 0 or not math.isfinite(noise):
        return int(order[0]), 0.0, int(order[1])
    noise = max(noise, 1e-9)
    return int(order[0]), float(np.clip(margin / (2 * noise), 0.0, 1.0)), int(order[1])


def analyze_beats(
    audio: np.ndarray,
    sr: int,
    *,
    time_signature: str = "4/4",
    target_bpm: float | None = None,
) -> BeatAnalysis:
    """Tempo, beats and downbeats of ``audio`` (``[channels, samples]`` at ``sr`` Hz).

    ``target_bpm`` (quarter notes per minute), when the caller has one, picks the metrical
    level nearest to it. Raises ``ValueError`` for silence or audio without a steady pulse.
    """
    beats_per_bar, unit = parse_meter(time_signature)
    if target_bpm is not None and not target_bpm > 0:
        raise ValueError("target_bpm must be positive")
    mono = _mono(audio, sr)
    if not np.any(mono):
        raise ValueError("no steady beat in silence")
    return _decide(mono, _evidence(mono), beats_per_bar, unit, target_bpm)


def _decide(
    mono: np.ndarray,
    evidence: _Evidence,
    beats_per_bar: int,
    unit: int,
    target_bpm: float | None,
) -> BeatAnalysis:
    """``analyze_beats`` from the evidence of ``mono`` (analysis rate, with its lead-in)."""
    lead_in_s = LEAD_IN / ANALYSIS_SR
    warnings: list[str] = []

    # Where the music is: from the first to the last frame above -30 dB of the loudest.
    loud = np.flatnonzero(evidence.rms > 10 ** (-30 / 20) * evidence.rms.max())
    start, stop = int(loud[0]), int(loud[-1]) + 1
    if (stop - start) / FPS < 2.0:
        raise ValueError("too short to find a steady beat (under 2 s of sound)")

    coarse, tempo_confidence, rivals = _coarse_tempo(
        (evidence.low + evidence.full)[start:stop], beats_per_bar, unit, target_bpm
    )
    pulse_quarters = 4.0 / unit
    phase_envelope = gaussian_filter1d(
        PHASE_WEIGHTS["low"] * evidence.low + PHASE_WEIGHTS["full"] * evidence.full, 1.5
    )
    grid = _fit_grid(phase_envelope, coarse, pulse_quarters, start, stop)
    doubled = (
        target_bpm is None and 2 * coarse < MAX_BPM and _offbeats_lead(evidence, grid, start, stop)
    )
    if doubled:
        coarse *= 2
        tempo_confidence = min(tempo_confidence, LOW_CONFIDENCE)
        grid = _fit_grid(phase_envelope, coarse, pulse_quarters, start, stop)
    bpm = pulse_quarters * 60.0 * FPS / grid.period
    if grid.spread_s > 0.02:
        warnings.append(
            f"the beat wanders by about {1000 * grid.spread_s:.0f} ms around one steady "
            "tempo: the tempo is an average"
        )
    typical = grid.typical_height()
    with_onset = float(np.mean(grid.heights >= ONSET_FRACTION * typical)) if typical > 0 else 0.0
    if with_onset < MIN_BEATS_WITH_ONSET:
        warnings.append(
            f"only {100 * with_onset:.0f} % of the beats have an onset: the pulse is sparse "
            "and the tempo less certain"
        )
    if doubled:
        warnings.append(
            f"tempo {bpm:.2f} BPM could also be heard as {bpm / 2:.2f} BPM (its off-beats "
            "carry more onsets than its beats, so the faster pulse was taken)"
        )
    elif tempo_confidence < LOW_CONFIDENCE and rivals:
        rival = max(rivals, key=lambda r: r[1])[0] * bpm / coarse
        warnings.append(
            f"tempo {bpm:.2f} BPM could also be heard as {rival:.2f} BPM "
            f"(metrical level chosen with confidence {tempo_confidence:.2f})"
        )

    best, downbeat_confidence, second = _bar_line(evidence, grid, beats_per_bar, start, stop)
    # An odd half pulse: the bar line, and so the beats, sit half a pulse off the comb.
    phase = grid.phase + (grid.period / 2 if best % 2 else 0.0)
    bar_phase = best // 2
    if downbeat_confidence < LOW_CONFIDENCE:
        where = f"pulse {second // 2 + 1}" + (" and a half" if second % 2 != best % 2 else "")
        warnings.append(
            f"downbeat uncertain: pulse {bar_phase + 1} of the found beats, or {where} "
            f"(confidence {downbeat_confidence:.2f})"
        )
    pulses = np.arange(-1, grid.count + 1)
    beat_frames = phase + grid.period * pulses
    inside = (beat_frames >= start - PEAK_RADIUS) & (beat_frames < stop)
    beat_frames, pulses = beat_frames[inside], pulses[inside]

    # The first bar line at or after the music starts (50 ms early allowed: a played note),
    # moved from the onset peaks the grid runs through to where the attacks begin.
    downbeat_frames = beat_frames[
        (pulses % beats_per_bar == bar_phase) & (beat_frames >= start - 0.05 * FPS)
    ]
    if downbeat_frames.size == 0:
        raise ValueError("no whole bar found in the audio")
    first_frame = float(downbeat_frames[0])
    first = _on_the_attacks(mono, phase_envelope, beat_frames, first_frame, grid.typical_height())
    shift = first - first_frame / FPS
    return BeatAnalysis(
        bpm=float(bpm),
        beat_times_s=np.maximum(beat_frames / FPS - lead_in_s, 0.0),
        downbeat_times_s=np.maximum(downbeat_frames / FPS + shift - lead_in_s, 0.0),
        first_downbeat_s=float(max(first - lead_in_s, 0.0)),
        tempo_confidence=round(tempo_confidence, 3),
        downbeat_confidence=round(downbeat_confidence, 3),
        warnings=tuple(warnings),
    )
