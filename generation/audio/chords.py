"""Chord symbols: their grammar, their pitch classes, and one chord per bar of audio.

Grammar (what ``parameters.chords`` accepts and what ``estimate_chords`` writes):
``ROOT[ACCIDENTAL][QUALITY][/BASS]``: root A-G; accidental ``#`` or ``b``; quality one of
``QUALITIES`` ("" major, ``m``, ``7``, ``maj7``, ``m7``, ``dim``, ``aug``, ``sus2``,
``sus4``); an optional ``/`` and a bass note (root and accidental). E.g. ``Am``, ``F#m7``,
``Bbmaj7``, ``C/E``, ``Gsus4``.

``estimate_chords``: per bar (from its downbeat for one bar length), the mean chroma of the
harmonic part (``generation.audio.key.harmonic_chroma``) compared with every chord's
template by cosine; simpler chords win ties (a triad is preferred to its seventh unless the
seventh is clearly there), and a bass note other than the root is written as ``/bass``
when the bass register clearly holds it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from generation.audio.key import PITCH_CLASSES, harmonic_chroma

QUALITIES: dict[str, tuple[int, ...]] = {
    "": (0, 4, 7),
    "m": (0, 3, 7),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10),
    "dim": (0, 3, 6),
    "aug": (0, 4, 8),
    "sus2": (0, 2, 7),
    "sus4": (0, 5, 7),
}
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
_NOTE = r"[A-G][#b]?"
CHORD_PATTERN = re.compile(
    rf"^(?P<root>{_NOTE})(?P<quality>maj7|m7|sus2|sus4|dim|aug|m|7)?(?:/(?P<bass>{_NOTE}))?$"
)
_NATURALS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def note_pitch_class(note: str) -> int:
    """``"Bb"`` -> 10."""
    pc = _NATURALS[note[0]]
    if note[1:] == "#":
        pc += 1
    elif note[1:] == "b":
        pc -= 1
    return pc % 12


@dataclass(frozen=True)
class Chord:
    """A parsed chord symbol: ``root`` and ``bass`` pitch classes (0 = C), ``quality``."""

    symbol: str
    root: int
    quality: str
    bass: int

    @property
    def pitch_classes(self) -> tuple[int, ...]:
        tones = tuple((self.root + i) % 12 for i in QUALITIES[self.quality])
        return tones if self.bass in tones else (*tones, self.bass)


def parse_chord(symbol: str) -> Chord:
    """``symbol`` parsed by the grammar above. Raises ``ValueError`` naming it when invalid."""
    match = CHORD_PATTERN.match(symbol)
    if match is None:
        raise ValueError(
            f"invalid chord symbol {symbol!r}: expected a root A-G, an optional # or b, an "
            f"optional quality ({', '.join(q for q in QUALITIES if q)}) and an optional /bass"
        )
    root = note_pitch_class(match["root"])
    bass = note_pitch_class(match["bass"]) if match["bass"] else root
    return Chord(symbol=symbol, root=root, quality=match["quality"] or "", bass=bass)


def parse_progression(text: str) -> tuple[Chord, ...]:
    """Whitespace-separated symbols, one per bar. Raises ``ValueError`` naming every invalid one."""
    symbols = text.split()
    if not symbols:
        raise ValueError("a chord progression needs at least one chord")
    chords, bad = [], []
    for symbol in symbols:
        try:
            chords.append(parse_chord(symbol))
        except ValueError:
            bad.append(symbol)
    if bad:
        raise ValueError(
            f"invalid chord symbol{'s' if len(bad) > 1 else ''} {', '.join(map(repr, bad))}: "
            "each is a root A-G, an optional # or b, an optional quality "
            f"({', '.join(q for q in QUALITIES if q)}) and an optional /bass, e.g. Am F C G"
        )
    return tuple(chords)


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
    audio: np.ndarray, sr: int, downbeats_s: Sequence[float], bar_s: float
) -> list[str]:
    """One chord symbol per bar of ``audio`` (``[channels, samples]`` at ``sr`` Hz): the bar
    starting at each of ``downbeats_s`` (seconds) and lasting ``bar_s`` seconds. A bar
    without harmony repeats the chord before it (or the next one at the start)."""
    analysis = harmonic_chroma(audio, sr)
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
    result, previous = [], filled[0]
    for symbol in out:
        previous = symbol or previous
        result.append(previous)
    return result
