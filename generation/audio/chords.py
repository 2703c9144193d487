"""One chord symbol per bar of audio.

The grammar (what ``parameters.chords`` accepts and what ``estimate_chords`` writes) is
``generation.audio.harmony``.

``estimate_chords``, per bar (from its downbeat for one bar length), from the chroma of the
notes of the harmonic part (``generation.audio.key.harmonic_chroma``, overtones given back
to the notes that sound them), each step compared with chord templates by cosine, simpler
chords winning near-ties:

1. The chord, among every root and quality, from ``HarmonicChroma.profile`` (what the
   key's correlation reads too): the middle register, where chords sit, plus the bass
   register counted again (the root is most often in the bass), and not the octaves
   above, whose overtones (fifths and major thirds of the notes played) pull minor chords
   towards major. Its root and third are kept.
2. Whether it has a seventh (C, C7 or Cmaj7; Cm or Cm7) from the middle register alone:
   there the seventh is as loud as the other tones, while the bass counted again has
   made the root outweigh it.
3. A bass note other than the root is written as ``/bass`` when the bass register clearly
   holds it.

Measured on the rendered arrangements of ``benchmarks/musical_eval.py`` (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from generation.audio.harmony import (
    PITCH_CLASSES,
    QUALITIES,
    Chord,
    note_pitch_class,
    parse_chord,
    parse_progression,
)
from generation.audio.key import HarmonicChroma, harmonic_chroma

# Subtracted from a quality's match so plainer chords win near-ties.
_COMPLEXITY = {
    "": 0.0,
    "m": 0.0,
    "7": 0.03,
    "maj7": 0.03,
    "m7": 0.03,
    "dim": 0.05,
    "aug": 0.06,
    "sus2": 0.05,
    "sus4": 0.05,
}

# Qualities that differ only by a seventh: step 2 chooses within the family step 1 found.
_SEVENTHS = (("", "7", "maj7"), ("m", "m7"))

__all__ = ["Chord", "estimate_chords", "note_pitch_class", "parse_chord", "parse_progression"]


def _unit(chroma: np.ndarray) -> np.ndarray | None:
    """``chroma`` less the floor every pitch class shares (not harmony), at unit length;
    None when nothing is left."""
    chroma = chroma - chroma.min()
    norm = float(np.linalg.norm(chroma))
    return chroma / norm if norm >= 1e-6 else None


def _templates() -> tuple[list[tuple[int, str]], np.ndarray]:
    names, rows = [], []
    for quality, intervals in QUALITIES.items():
        for root in range(12):
            row = np.zeros(12)
            for i in intervals:
                row[(root + i) % 12] = 1.0
            row[root] += 0.25  # the root is usually doubled
            names.append((root, quality))
            rows.append(row / np.linalg.norm(row))
    return names, np.array(rows)


def estimate_chords(
    audio: np.ndarray,
    sr: int,
    downbeats_s: Sequence[float],
    bar_s: float,
    *,
    chroma: HarmonicChroma | None = None,
) -> list[str]:
    """One chord symbol per bar of ``audio`` (``[channels, samples]`` at ``sr`` Hz): the bar
    starting at each of ``downbeats_s`` (seconds) and lasting ``bar_s`` seconds. A bar
    without harmony repeats the chord before it (or the next one at the start).
    ``chroma``: ``audio``'s ``harmonic_chroma`` when already computed (the key uses it too).
    Raises ``ValueError`` for silence."""
    analysis = chroma if chroma is not None else harmonic_chroma(audio, sr)
    names, templates = _templates()
    penalty = np.array([_COMPLEXITY[q] for _, q in names])
    out: list[str | None] = []
    for start in downbeats_s:
        frames = (analysis.times_s >= start) & (analysis.times_s < start + bar_s)
        if not frames.any():
            out.append(None)
            continue
        profile = _unit(analysis.profile(frames))
        if profile is None:
            out.append(None)
            continue
        root, quality = names[int(np.argmax(templates @ profile - penalty))]
        family = next((f for f in _SEVENTHS if quality in f), ())
        middle = _unit(analysis.middle[:, frames].sum(axis=1)) if family else None
        if middle is not None:
            match = templates @ middle - penalty
            options = [i for i, (r, q) in enumerate(names) if r == root and q in family]
            quality = names[max(options, key=lambda i: match[i])][1]
        symbol = PITCH_CLASSES[root] + quality
        bass = analysis.bass[:, frames].mean(axis=1)
        low = int(np.argmax(bass))
        tones = {(root + i) % 12 for i in QUALITIES[quality]}
        if low != root and low in tones and bass[low] > 1.3 * bass[root]:
            symbol += "/" + PITCH_CLASSES[low]
        out.append(symbol)
    filled = [s for s in out if s is not None]
    if not filled:
        return []
    result: list[str] = []
    previous: str = filled[0]
    for found in out:
        if found is not None:
            previous = found
        result.append(previous)
    return result
