"""A raw stem finished: on the request's grid, then gain-staged to its instrument's
loudness target and true-peak limited (``finish_stem``), and its harmony checked against
the set's key and chords (``harmony_check``). Arrays in, arrays out; no Azure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from generation.audio.harmony import key_pitch_classes
from generation.audio.key import in_key_share
from generation.audio.loudness import (
    PEAK_CEILING_DBTP,
    integrated_loudness,
    normalize_loudness,
    true_peak_dbtp,
    true_peak_limit,
)
from generation.request import Stem
from generation.stems.grid import GridPlan, LockedStem, lock_to_grid

# Integrated loudness per stem type, LUFS. Rhythm section forward (drums -14, bass -16),
# melodic parts a little behind (-18), sustained beds well behind (-20 to -22), so stems
# normalized to these targets and summed give a usable rough balance; the sum is then
# limited by ``generation.audio.loudness.mix``. Starting points for a session, not a
# mastering decision.
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
# Stems without a pitch to check against the key.
UNPITCHED: frozenset[Stem] = frozenset({Stem.DRUMS, Stem.PERCUSSION})
# Below this share of its pitched sound in the set's key and chords (``in_key_share``), a
# stem is reported as likely to clash. Chosen on the development set of
# benchmarks/harmony_fit_eval.py (benchmarks/RESULTS.md, seventh round): over 274 parts
# as written, 1 reads under it (a chorale voice that modulates, 0.79); the same parts a
# semitone or a tritone off read a median of about 0.27 and 0.21 (every one flagged), a
# whole tone off about 0.74, a fifth off (one or two pitch classes moved) about 0.91.
IN_KEY_WARNING = 0.8


@dataclass(frozen=True)
class FinishedStem:
    """A stem on the grid and gain-staged: ``audio`` float32 ``[channels, samples]``;
    ``detected_bpm`` of the raw stem (None: no steady beat), the stretch applied
    (target / source tempo, 1.0 = none), integrated loudness (LUFS) and true peak (dBTP);
    ``in_key`` the share of its pitched sound in the set's key and chords (None: not
    checked, see ``harmony_check``)."""

    audio: np.ndarray = field(repr=False)
    detected_bpm: float | None
    stretch_ratio: float
    loudness_lufs: float | None
    true_peak_dbtp: float | None
    warnings: tuple[str, ...] = ()
    in_key: float | None = None


def gain_stage(audio: np.ndarray, sr: int, stem: Stem) -> np.ndarray:
    """``audio`` at its stem type's loudness target (``STEM_LOUDNESS_TARGETS``),
    true-peak limited to ``PEAK_CEILING_DBTP``. Audio too short to measure is only limited.
    The ceiling wins over the target: very spiky audio (a click track) ends up quieter
    than its target rather than clipped; the manifest reports the loudness reached."""
    try:
        leveled = normalize_loudness(audio, sr, STEM_LOUDNESS_TARGETS[stem])
    except ValueError:
        leveled = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    return true_peak_limit(leveled, sr, PEAK_CEILING_DBTP)


def measure(audio: np.ndarray, sr: int) -> tuple[float | None, float | None]:
    """Integrated loudness (LUFS) and true peak (dBTP), each None when not finite."""
    try:
        loudness: float | None = integrated_loudness(audio, sr)
    except ValueError:
        loudness = None
    peak: float | None = true_peak_dbtp(audio, sr)
    return (
        round(loudness, 2) if loudness is not None and math.isfinite(loudness) else None,
        round(peak, 2) if peak is not None and math.isfinite(peak) else None,
    )


def may_clash(share: float) -> bool:
    """Whether an ``in_key_share`` reads as a clash: under ``IN_KEY_WARNING`` once rounded
    to the 0.01 that is reported (so a reported 0.80 never carries the warning)."""
    return round(share, 2) < IN_KEY_WARNING


def harmony_check(
    audio: np.ndarray, sr: int, stem: Stem, plan: GridPlan
) -> tuple[float | None, tuple[str, ...]]:
    """How much of a finished ``stem`` sounds in ``plan``'s key and chords
    (``in_key_share``, rounded to 0.01) and a warning below ``IN_KEY_WARNING``: a stem
    the model took out of the key clashes with the others, and the producer hears it
    only in the session. None (no warning) for drums and percussion, a plan without a
    key, and a stem with nothing clearly pitched (silence, noise)."""
    if stem in UNPITCHED or plan.key is None:
        return None, ()
    share = in_key_share(audio, sr, key_pitch_classes(plan.key, plan.chords))
    if share is None:
        return None, ()
    share = round(share, 2)
    if not may_clash(share):
        return share, ()
    harmony = f"{plan.key} and its chords" if plan.chords else plan.key
    return share, (
        f"may clash: only {share:.0%} of its pitched sound is in {harmony} "
        "(regenerate it with another seed)",
    )


def finish_stem(audio: np.ndarray, sr: int, stem: Stem, plan: GridPlan) -> FinishedStem:
    """A raw generated ``stem`` put on ``plan``'s grid and gain-staged (see module doc).

    The result is exactly ``plan.output_samples(sr)`` samples.
    """
    raw = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    if plan.tempo_locked:
        locked = lock_to_grid(raw, sr, plan)
    else:
        locked = LockedStem(raw[:, : plan.output_samples(sr)], None, 1.0)
    staged = gain_stage(locked.audio, sr, stem)
    loudness, peak = measure(staged, sr)
    in_key, clash = harmony_check(staged, sr, stem, plan)
    return FinishedStem(
        audio=staged,
        detected_bpm=locked.detected_bpm,
        stretch_ratio=locked.stretch_ratio,
        loudness_lufs=loudness,
        true_peak_dbtp=peak,
        warnings=locked.warnings + clash,
        in_key=in_key,
    )
