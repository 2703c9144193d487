"""The key of music: tuning-corrected chroma of the harmonic part, weighed by two key models.

Audio is float32 ``[channels, samples]`` (1-D is mono) at ``sr`` Hz. numpy/scipy/librosa only.

``harmonic_chroma``: the harmonic part (median-filter harmonic/percussive separation, so
drums do not smear the pitch classes), its tuning (deviation from A440 in cents, so a track
a quarter tone off still maps onto the right pitch classes), a constant-Q spectrum at three
bins per semitone, log-compressed and whitened (the running median over frequency, the
broadband floor that drums, noise and reverb leave, is taken away, so only notes standing
above it count: short stabs and busy drums otherwise flatten the chroma), then read as
notes: each frame is the non-negative mix of 84 note shapes (C1-B7, each a fundamental and
its harmonics, the k-th at ``NOTE_DECAY`` ** (k - 1)) that fits it best (non-negative least
squares, as Mauch & Dixon's NNLS chroma). A note's overtones are thereby given back to it
instead of sounding as pitch classes of their own: the fifth and major third two octaves
up that turned minor chords major and pulled keys towards their dominant.

``estimate_key`` adds two kinds of evidence, each scored for all 24 keys:

- How much each pitch class sounds: the chroma summed over time in the middle register
  (C3-B6: the octaves below hold mostly bass, which is counted on its own, and those above
  mostly overtones, whose fifths and major thirds pull minor keys towards major), with the
  bass register (C2-B3) counted again (the tonic sits in the bass at cadences), correlated
  with a major and a minor profile (Albrecht & Shanahan).
- Which pitch classes sound at all, second by second (Temperley's Bayesian key finder):
  in each one-second segment a pitch class is present when it reaches ``PRESENT`` of the
  segment's strongest, and each key gives every pitch class a probability of being present
  (the Kostka-Payne profiles). The mean log-likelihood per segment is the score. Counting
  presence rather than energy keeps a long stretch in the dominant, or a held overtone,
  from outweighing the rest: a chorale excerpt that moves to the dominant keeps its key.

The score is the log-likelihood plus ``PROFILE_WEIGHT`` times the correlation; the best key
wins, and the confidence is its margin over the runner-up (``CONFIDENT_MARGIN``). Below
``LOW_CONFIDENCE`` the estimate carries a warning naming that runner-up, which is most often
the right key when the winner is wrong (a key and its dominant, or its relative).

``in_key_share`` asks the converse for one finished stem: how much of its pitched sound
sits on a given set of pitch classes (a key and its chords), so a stem that clashes with
the rest of the set is told apart from one that fits.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import warnings
from dataclasses import dataclass

import librosa
import numpy as np
from scipy.ndimage import median_filter
from scipy.optimize import nnls

from generation.audio.harmony import MODES, PITCH_CLASSES

logger = logging.getLogger(__name__)

ANALYSIS_SR = 22050  # Hz
HOP = 1024  # samples at ANALYSIS_SR (46 ms): keys change slowly
NOTES = 84  # C1-B7, the constant-Q spectrum's range
SPECTRUM_BINS = 3 * NOTES  # three bins per semitone

# Key profiles, tonic first. Albrecht & Shanahan (2013) measured pitch-class distributions
# of major and minor pieces; Temperley (1999) and Krumhansl & Kessler (1982) are the
# classics. Which one is used is measured in benchmarks/musical_eval.py.
PROFILES: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "albrecht": (
        np.array(
            [0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081]
        ),
        np.array(
            [0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052]
        ),
    ),
    "temperley": (
        np.array([5.0, 2.0, 3.5, 2.0, 4.5, 4.0, 2.0, 4.5, 2.0, 3.5, 1.5, 4.0]),
        np.array([5.0, 2.0, 3.5, 4.5, 2.0, 4.0, 2.0, 4.5, 3.5, 2.0, 1.5, 4.0]),
    ),
    "krumhansl": (
        np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]),
        np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17]),
    ),
}
DEFAULT_PROFILE = "albrecht"
# The bass register's chroma counted again with this weight, by the key's correlation and
# by the chords (measured for both in benchmarks/RESULTS.md: 1 is best for each).
BASS_WEIGHT = 1.0
QUIET_BASS = 0.05  # a bass register under this fraction of the middle's energy is silent
WHITEN_BINS = 11  # constant-Q bins (a third of a semitone each): the floor's median window
# The note shapes of the transcription: the k-th harmonic of a note at NOTE_DECAY ** (k - 1)
# of its fundamental, up to NOTE_HARMONICS (Mauch & Dixon's default shape). Measured in
# benchmarks/RESULTS.md (eighth round): 0.6-0.8 read the chords alike, 0.7 the keys best.
NOTE_DECAY = 0.7
NOTE_HARMONICS = 20

# Probability that each pitch class (tonic first) sounds in a segment of a major or minor
# piece: Temperley (2007, "Music and Probability"), counted on the Kostka-Payne corpus.
PRESENCE_PROFILES = (
    np.array([0.748, 0.060, 0.488, 0.082, 0.670, 0.460, 0.096, 0.715, 0.104, 0.366, 0.057, 0.400]),
    np.array([0.712, 0.084, 0.474, 0.618, 0.049, 0.460, 0.105, 0.747, 0.404, 0.067, 0.133, 0.330]),
)
SEGMENT_S = 1.0  # seconds: the presence model's segment
# A pitch class is present at this fraction of its segment's strongest. Read from the
# transcribed notes (overtones given back to their notes), 0.25-0.4 read the development
# sets' keys at 0.950-0.972 (0.35 and 0.4 tie at the best); 0.5, right for the spectrum's
# own chroma, reads 0.932 (benchmarks/RESULTS.md, eighth round).
PRESENT = 0.35
QUIET = 0.05  # segments below this fraction of the loudest segment's peak are left out
# Weight of the profile correlation (range -1..1) against the mean log-likelihood per
# segment. Measured (benchmarks/RESULTS.md, fourth round): 1 to 4 give the same keys on
# the evaluation's MIDI notes and within one piece on its audio.
PROFILE_WEIGHT = 2.0
# The winner's margin over the runner-up (in score units: mean log-likelihood per segment
# plus PROFILE_WEIGHT x correlation) that counts as full confidence: the median margin on
# the evaluation set (benchmarks/musical_eval.py) is about 1 (1.2 on the development sets).
CONFIDENT_MARGIN = 1.0
# Below this confidence the key is reported as uncertain. Chosen for the spectrum's chroma
# (seventh round: 7 of the 9 wrong keys flagged) and kept: on the transcribed notes
# (eighth round) it flags 15 of the 99 right keys and none of the three wrong ones,
# whose margins (0.8-2.1) no threshold could flag without flagging most right keys.
LOW_CONFIDENCE = 0.5
# ``in_key_share`` reads this many seconds at a time, so its memory stays bounded (a 300 s
# stem); each block weighs by its RMS, so a quiet stretch counts less than a loud one.
IN_KEY_BLOCK_S = 60.0
# Frames whose pitched energy is under this share of the loudest frame's are left out
# (reverb tails, the breath between notes).
PITCHED_FLOOR = 0.05
# A frame is pitched when its strongest pitch class holds at least this many times the
# mean of the twelve. Measured on the evaluation's parts rendered alone (benchmarks/RESULTS.md,
# seventh round): no part as written loses its reading, white and brown noise read None,
# and 59 of 65 drum kits alone.
PEAK_OVER_MEAN = 2.5
# Audio whose pitched frames hold less than this share of its energy is not read (noise,
# drums, a stem the model filled with hiss): its strongest pitch classes are chance.
PITCHED_SHARE_MIN = 0.5
IN_KEY_MIN_S = 0.5  # shorter audio is not read: too few frames to tell
# Audio under this is read zero-padded to it: the constant-Q's lowest octave is read at
# 1/64 of the rate through a 1024-point window (silence adds no pitched frame).
SHORTEST_READ_S = 3.0


@dataclass(frozen=True)
class KeyEstimate:
    """``tonic`` one of ``PITCH_CLASSES`` (sharps), ``mode`` "major" or "minor";
    ``confidence`` in [0, 1]; ``runner_up`` the second-best key ("C major") or None;
    ``tuning_cents`` the measured deviation from A440."""

    tonic: str
    mode: str
    confidence: float = 0.0
    tuning_cents: float = 0.0
    runner_up: str | None = None

    def __str__(self) -> str:
        return f"{self.tonic} {self.mode}"

    @property
    def warnings(self) -> tuple[str, ...]:
        """What could not be decided: a key below ``LOW_CONFIDENCE``, with its runner-up."""
        if self.confidence >= LOW_CONFIDENCE or self.runner_up is None:
            return ()
        return (f"key uncertain: {self}, or {self.runner_up} (confidence {self.confidence:g})",)


def _mono(audio: np.ndarray, sr: int) -> np.ndarray:
    array = np.nan_to_num(np.asarray(audio, dtype=np.float32))
    if array.ndim == 2:
        array = array.mean(axis=0)
    if sr != ANALYSIS_SR:
        array = librosa.resample(array, orig_sr=sr, target_sr=ANALYSIS_SR, res_type="soxr_hq")
    return array


@dataclass(frozen=True)
class HarmonicChroma:
    """Chroma of the harmonic part, C first: ``bass`` ``[12, frames]`` over C2-B3,
    ``middle`` ``[12, frames]`` over C3-B6 (chords and melody, above the bass and below
    most overtones) and ``notes`` ``[12, frames]`` over C2-B6 (bass and middle, each octave
    once): the loudness of the notes ``transcribe`` finds in the log-compressed, whitened
    spectrum, summed by pitch class; ``times_s`` each frame's centre (seconds);
    ``tuning_cents`` the deviation from A440 the bins were shifted by."""

    times_s: np.ndarray
    bass: np.ndarray
    tuning_cents: float
    middle: np.ndarray
    notes: np.ndarray

    def profile(self, frames: np.ndarray | slice = slice(None)) -> np.ndarray:
        """What the key's correlation and the chords weigh (12, C first): the middle
        register over ``frames``, plus the bass register counted again (``BASS_WEIGHT``),
        each summed and normalised to 1. A bass register under ``QUIET_BASS`` of the
        middle's sum adds nothing: a bar where the bass rests keeps its reverb tail out."""
        middle, bass = self.middle[:, frames].sum(axis=1), self.bass[:, frames].sum(axis=1)
        low = float(bass.sum())
        if low <= QUIET_BASS * float(middle.sum()):
            low, bass = 0.0, np.zeros(12)
        return middle / max(float(middle.sum()), 1e-9) + BASS_WEIGHT * bass / max(low, 1e-9)


def _whitened_spectrum(audio: np.ndarray, sr: int) -> tuple[np.ndarray, float]:
    """The tuning-corrected constant-Q spectrum of ``audio``'s harmonic part, ``[252 bins,
    frames]`` (C1-B7 at three bins per semitone, the middle one on the note; log-compressed
    and whitened), and the tuning in semitones. Raises ``ValueError`` for silence."""
    mono = _mono(audio, sr)
    if not np.any(mono):
        raise ValueError("cannot estimate the harmony of silence")
    harmonic = librosa.effects.harmonic(mono, margin=2.0)
    with warnings.catch_warnings():  # no pitched peaks at all (drums only): tuning 0
        warnings.simplefilter("ignore", UserWarning)
        tuning = float(librosa.estimate_tuning(y=harmonic, sr=ANALYSIS_SR))  # semitones
    cqt = np.abs(
        librosa.cqt(
            harmonic,
            sr=ANALYSIS_SR,
            hop_length=HOP,
            fmin=librosa.note_to_hz("C1") * 2 ** (-1 / 36),  # bins -1/3, 0, +1/3 semitone
            n_bins=SPECTRUM_BINS,
            bins_per_octave=36,
            tuning=3 * tuning,  # in bins of a third of a semitone
        )
    )
    cqt = np.log1p(100.0 * cqt / max(float(cqt.max()), 1e-9))
    # Only what stands above its neighbourhood is a note: the running median over frequency
    # is the broadband floor (drums, noise, reverb), taken away.
    cqt = np.maximum(cqt - median_filter(cqt, size=(WHITEN_BINS, 1), mode="nearest"), 0.0)
    return cqt, tuning


@functools.cache
def note_shapes() -> np.ndarray:
    """What each of the 84 notes C1-B7 looks like in ``_whitened_spectrum``'s bins:
    ``[252 bins, 84 notes]``, unit columns; the k-th harmonic (``NOTE_HARMONICS``) at
    ``NOTE_DECAY`` ** (k - 1), shared between the two bins it falls between."""
    shapes = np.zeros((SPECTRUM_BINS, NOTES))
    for note in range(NOTES):
        for k in range(1, NOTE_HARMONICS + 1):
            position = 3 * note + 1 + 36 * math.log2(k)  # bin 3n + 1 is note n itself
            low = math.floor(position)
            if low >= SPECTRUM_BINS:
                break
            share = position - low
            shapes[low, note] += NOTE_DECAY ** (k - 1) * (1.0 - share)
            if low + 1 < SPECTRUM_BINS:
                shapes[low + 1, note] += NOTE_DECAY ** (k - 1) * share
    shapes /= np.linalg.norm(shapes, axis=0)
    shapes.setflags(write=False)  # shared by every caller (cached)
    return shapes


def transcribe(spectrum: np.ndarray) -> np.ndarray:
    """How loud each note C1-B7 sounds in each frame of ``spectrum`` (``_whitened_spectrum``):
    ``[84 notes, frames]``, the non-negative mix of ``note_shapes`` closest to the frame
    (least squares). A frame the solver cannot settle (none on the evaluation) is read as
    silence and logged."""
    shapes = note_shapes()
    spectrum = np.asarray(spectrum, dtype=np.float64)  # the solver's precision, cast once
    notes = np.zeros((NOTES, spectrum.shape[1]))
    unsettled = 0
    sounding = np.flatnonzero(spectrum.any(axis=0))
    for frame in sounding:
        try:
            notes[:, frame] = nnls(shapes, spectrum[:, frame], maxiter=10 * NOTES)[0]
        except RuntimeError:  # the iteration limit: leave the frame silent
            unsettled += 1
    if unsettled:
        logger.warning(
            "transcription: %d of %d sounding frames unsettled, read as silence",
            unsettled,
            sounding.size,
        )
    return notes


def _strongest_bin(spectrum: np.ndarray) -> np.ndarray:
    """``[84 semitones, frames]``: the strongest of each semitone's three bins."""
    return spectrum.reshape(NOTES, 3, -1).max(axis=1)


def _octaves(semitones: np.ndarray, first: int, count: int) -> np.ndarray:
    """``[12, frames]``: ``count`` octaves of ``semitones`` (C1 first) from octave
    ``first`` (0 is C1), summed."""
    return semitones[12 * first : 12 * (first + count)].reshape(count, 12, -1).sum(axis=0)


def harmonic_chroma(audio: np.ndarray, sr: int) -> HarmonicChroma:
    """Tuning-corrected chroma of the notes of ``audio``'s harmonic part (``transcribe``).
    Raises ``ValueError`` for silence."""
    spectrum, tuning = _whitened_spectrum(audio, sr)
    notes = transcribe(spectrum)
    return HarmonicChroma(
        times_s=librosa.frames_to_time(np.arange(notes.shape[1]), sr=ANALYSIS_SR, hop_length=HOP),
        bass=_octaves(notes, 1, 2),  # C2-B3
        tuning_cents=tuning * 100.0,
        middle=_octaves(notes, 2, 4),  # C3-B6
        notes=_octaves(notes, 1, 5),  # C2-B6
    )


def in_key_share(
    audio: np.ndarray, sr: int, pitch_classes: frozenset[int] | set[int]
) -> float | None:
    """The share (0-1) of ``audio``'s pitched sound (``[channels, samples]`` at ``sr`` Hz)
    whose strongest pitch class (0 = C) is one of ``pitch_classes``: frame by frame
    (``HOP``) over C2-B6, each frame weighted by its pitched energy and its block's RMS.
    None when the audio is under ``IN_KEY_MIN_S``, silent, or not clearly pitched: its
    pitched frames (strongest pitch class at least ``PEAK_OVER_MEAN`` times the mean)
    hold under ``PITCHED_SHARE_MIN`` of the energy of its frames above ``PITCHED_FLOOR``
    (noise, drums; also a cluster of five or more equally loud pitch classes held
    throughout, which no part of the evaluation is).

    Only the strongest pitch class of each frame counts: a note's overtones (its fifth and
    major third, two octaves up) are out of the key for some notes of every key, but they
    are seldom a frame's strongest, so a part in the key reads near 1 and one a semitone
    off near 0.3 (measured in ``benchmarks/harmony_fit_eval.py``). It reads the spectrum
    (each semitone's strongest bin), not ``transcribe``: the transcription explains white
    noise by a few sparse notes, so half of noise's frames would read as pitched (against
    none from the spectrum).

    Raises ``ValueError`` when ``pitch_classes`` is empty or not within 0-11.
    """
    wanted = sorted(pitch_classes)
    if not wanted or wanted[0] < 0 or wanted[-1] > 11:
        raise ValueError(f"pitch classes must be some of 0-11, not {wanted}")
    array = np.nan_to_num(np.atleast_2d(np.asarray(audio, dtype=np.float32)))
    if array.shape[-1] < IN_KEY_MIN_S * sr:
        return None
    if array.shape[-1] < SHORTEST_READ_S * sr:
        array = np.pad(array, ((0, 0), (0, math.ceil(SHORTEST_READ_S * sr) - array.shape[-1])))
    allowed = np.zeros(12, dtype=bool)
    allowed[wanted] = True
    # Equal blocks of at most IN_KEY_BLOCK_S (no short last one); per frame: its energy,
    # whether it is pitched, whether its strongest is allowed. Each block's chroma is
    # log-compressed against its own loudest, so the block is scaled by the RMS of its
    # mono mix (what is analysed) against the loudest block's, compressed the same way:
    # one block or several read about alike.
    count = max(int(np.ceil(array.shape[-1] / max(IN_KEY_BLOCK_S * sr, 1.0))), 1)
    edges = list(itertools.pairwise(np.linspace(0, array.shape[-1], count + 1).astype(int)))
    rms = [
        float(np.sqrt(np.mean(np.square(array[:, b:e].mean(axis=0, dtype=np.float64)))))
        for b, e in edges
    ]
    loudest = max(rms)
    if not loudest > 0:
        return None
    energy, pitched, inside = [], [], []
    for (begin, end), level in zip(edges, rms, strict=True):
        try:
            spectrum, _ = _whitened_spectrum(array[:, begin:end], sr)
        except ValueError:  # a silent block
            continue
        notes = _octaves(_strongest_bin(spectrum), 1, 5)  # C2-B6
        frame = notes.sum(axis=0)
        energy.append(frame * np.log1p(100.0 * level / loudest) / np.log1p(100.0))
        pitched.append(notes.max(axis=0) >= PEAK_OVER_MEAN * frame / 12.0)
        inside.append(allowed[np.argmax(notes, axis=0)])
    if not energy:
        return None
    weight = np.concatenate(energy)
    loud = weight >= PITCHED_FLOOR * float(weight.max())
    counted = loud & np.concatenate(pitched)
    total = float(weight[counted].sum())
    if total <= 0 or total < PITCHED_SHARE_MIN * float(weight[loud].sum()):
        return None
    return float(weight[counted & np.concatenate(inside)].sum()) / total


def key_scores(chroma: np.ndarray, profile: str = DEFAULT_PROFILE) -> np.ndarray:
    """Correlation of ``chroma`` (12, C first) with each key: ``[2 modes, 12 tonics]``."""
    major, minor = PROFILES[profile]
    scores = np.zeros((2, 12))
    for m, template in enumerate((major, minor)):
        for tonic in range(12):
            scores[m, tonic] = np.corrcoef(chroma, np.roll(template, tonic))[0, 1]
    return np.nan_to_num(scores)


def presence(notes: np.ndarray) -> np.ndarray:
    """Which pitch classes sound in each ``SEGMENT_S`` segment of ``notes`` (``[12,
    frames]`` chroma at ``HOP``): ``[12, segments]`` of 0/1, quiet segments left out, and
    so is the last part segment (under ``SEGMENT_S``)."""
    if notes.shape[1] == 0:
        return np.zeros((12, 0))
    # Audio shorter than a segment is one segment of all of it.
    per_segment = min(round(SEGMENT_S * ANALYSIS_SR / HOP), notes.shape[1])
    count = notes.shape[1] // per_segment
    summed = notes[:, : count * per_segment].reshape(12, count, per_segment).sum(axis=2)
    peak = summed.max(axis=0)
    loud = peak > QUIET * max(float(peak.max()), 1e-9)
    present = summed[:, loud] >= PRESENT * peak[loud]
    return present.astype(float)


def presence_scores(present: np.ndarray) -> np.ndarray:
    """Mean log-likelihood per segment of ``present`` (``presence``) under each key:
    ``[2 modes, 12 tonics]``; zeros when there is no segment."""
    scores = np.zeros((2, 12))
    if present.shape[1] == 0:
        return scores
    for m, profile in enumerate(PRESENCE_PROFILES):
        for tonic in range(12):
            p = np.roll(profile, tonic)[:, np.newaxis]
            scores[m, tonic] = np.mean(
                np.sum(present * np.log(p) + (1.0 - present) * np.log(1.0 - p), axis=0)
            )
    return scores


def estimate_key(
    audio: np.ndarray,
    sr: int,
    *,
    profile: str = DEFAULT_PROFILE,
    chroma: HarmonicChroma | None = None,
) -> KeyEstimate:
    """Key of ``audio`` (``[channels, samples]`` at ``sr`` Hz); ``chroma``: its
    ``harmonic_chroma`` when already computed (the chords use it too).

    Raises ``ValueError`` for silence.
    """
    analysis = chroma if chroma is not None else harmonic_chroma(audio, sr)
    scores = presence_scores(presence(analysis.notes)) + PROFILE_WEIGHT * key_scores(
        analysis.profile(), profile
    )
    # Ranked best first; the flat index is mode * 12 + tonic.
    best, second = np.argsort(-scores.ravel(), kind="stable")[:2]
    margin = float(scores.flat[best] - scores.flat[second])
    return KeyEstimate(
        tonic=PITCH_CLASSES[int(best) % 12],
        mode=MODES[int(best) // 12],
        confidence=round(float(np.clip(margin / CONFIDENT_MARGIN, 0.0, 1.0)), 3),
        tuning_cents=round(analysis.tuning_cents, 1),
        runner_up=f"{PITCH_CLASSES[int(second) % 12]} {MODES[int(second) // 12]}",
    )
