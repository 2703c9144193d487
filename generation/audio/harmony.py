"""Keys and chord symbols: their grammar and their pitch classes. Pure Python: the request
model validates with it, so it imports nothing heavy.

Keys: the 24 major and minor keys, written ``TONIC MODE``: tonic A-G with an optional
``#`` or ``b``, mode ``major`` or ``minor`` (``"A minor"``, ``"Bb major"``, ``"F# minor"``).

Chord symbols: ``ROOT[ACCIDENTAL][QUALITY][/BASS]``: root A-G; accidental ``#`` or ``b``;
quality one of ``QUALITIES`` ("" major, ``m``, ``7``, ``maj7``, ``m7``, ``dim``, ``aug``,
``sus2``, ``sus4``); an optional ``/`` and a bass note (root and accidental). E.g. ``Am``,
``F#m7``, ``Bbmaj7``, ``C/E``, ``Gsus4``. A progression is symbols separated by spaces, one
per bar, repeating over the bars.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MODES = ("major", "minor")
KEYS = tuple(f"{tonic} {mode}" for mode in MODES for tonic in PITCH_CLASSES)
_NOTE = r"[A-G][#b]?"
KEY_PATTERN = re.compile(rf"^(?P<tonic>{_NOTE}) (?P<mode>major|minor)$")

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


def parse_key(text: str) -> str:
    """``text`` as one of the 24 keys, spelled as given (``"Bb minor"``). Raises
    ``ValueError`` naming it when it is not one."""
    match = KEY_PATTERN.match(text.strip())
    if match is None:
        raise ValueError(
            f"invalid key {text!r}: expected a tonic A-G, an optional # or b, a space and "
            "major or minor, e.g. 'A minor' or 'Bb major'"
        )
    return f"{match['tonic']} {match['mode']}"


def same_key(a: str, b: str) -> bool:
    """Whether two key names are the same key (``"A# minor"`` is ``"Bb minor"``)."""
    ka, kb = KEY_PATTERN.match(a), KEY_PATTERN.match(b)
    if ka is None or kb is None:
        return False
    tonic_a, tonic_b = note_pitch_class(ka["tonic"]), note_pitch_class(kb["tonic"])
    return tonic_a == tonic_b and ka["mode"] == kb["mode"]


# Scale degrees from the tonic, semitones: the major scale; the natural minor with its
# raised seventh (the leading tone of the minor key's dominant chord).
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10, 11)}


def key_pitch_classes(key: str, chords: tuple[str, ...] = ()) -> frozenset[int]:
    """The pitch classes (0 = C) that belong to ``key`` ("A minor", see ``parse_key``):
    its scale (``SCALES``), and every tone of ``chords`` (symbols; a borrowed chord's tones
    belong too). Raises ``ValueError`` for an invalid key or chord."""
    match = KEY_PATTERN.match(parse_key(key))
    assert match is not None  # parse_key accepted it
    tonic = note_pitch_class(match["tonic"])
    tones = {(tonic + step) % 12 for step in SCALES[match["mode"]]}
    for symbol in chords:
        tones.update(parse_chord(symbol).pitch_classes)
    return frozenset(tones)


def key_from_seed(seed: int) -> str:
    """One of the 24 keys, chosen by ``seed`` (the same seed, the same key)."""
    return KEYS[seed % len(KEYS)]
