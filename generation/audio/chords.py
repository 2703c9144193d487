"""One chord symbol per bar of audio.

The grammar (what ``parameters.chords`` accepts and what ``estimate_chords`` writes) is
``generation.audio.harmony``.

``estimate_chords``: per bar (from its downbeat for one bar length), the mean chroma of the
harmonic part (``generation.audio.key.harmonic_chroma``) compared with every chord's
template by cosine; simpler chords win ties (a triad is preferred to its seventh unless the
seventh is clearly there), and a bass note other than the root is written as ``/bass``
when the bass register clearly holds it.
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

__all__ = ["Chord", "estimate_chords", "note_pitch_class", "parse_chord", "parse_progression"]


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
        chroma = analysis.chroma[:, frames].mean(axis=1)
        chroma = chroma - chroma.min()  # the floor every pitch class shares is not harmony
        norm = float(np.linalg.norm(chroma))
        if norm < 1e-6:
            out.append(None)
            continue
        match = templates @ (chroma / norm) - penalty
        root, quality = names[int(np.argmax(match))]
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
