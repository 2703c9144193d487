"""Chord symbol grammar and per-bar chord estimation."""

from __future__ import annotations

import pytest

from benchmarks.musical_eval import chord_score
from generation.audio.chords import estimate_chords, parse_chord, parse_progression
from generation.audio.key import estimate_key, harmonic_chroma
from tests.synthetic_audio import SR, chord_pad


@pytest.mark.parametrize(
    ("symbol", "root", "quality", "bass", "tones"),
    [
        ("Am", 9, "m", 9, (9, 0, 4)),
        ("F#m7", 6, "m7", 6, (6, 9, 1, 4)),
        ("Bbmaj7", 10, "maj7", 10, (10, 2, 5, 9)),
        ("C/E", 0, "", 4, (0, 4, 7)),
        ("Gsus4", 7, "sus4", 7, (7, 0, 2)),
        ("Ebdim", 3, "dim", 3, (3, 6, 9)),
        ("Caug/D", 0, "aug", 2, (0, 4, 8, 2)),
    ],
)
def test_grammar(symbol: str, root: int, quality: str, bass: int, tones: tuple[int, ...]) -> None:
    chord = parse_chord(symbol)
    assert (chord.root, chord.quality, chord.bass) == (root, quality, bass)
    assert chord.pitch_classes == tones


@pytest.mark.parametrize("bad", ["H", "Amin", "C##", "c", "Am/", "Am7b5", "Fmaj9"])
def test_invalid_symbols_are_named(bad: str) -> None:
    with pytest.raises(ValueError, match=repr(bad).replace("[", r"\[")):
        parse_chord(bad)
    with pytest.raises(ValueError, match=f"invalid chord symbols 'Xy', 'Q', {bad!r}:"):
        parse_progression(f"Am Xy Q {bad}")


def test_progression_is_one_symbol_per_bar() -> None:
    assert [c.symbol for c in parse_progression("Am  F C\tG")] == ["Am", "F", "C", "G"]
    with pytest.raises(ValueError, match="at least one"):
        parse_progression("  ")


def test_estimate_one_chord_per_bar() -> None:
    # Am, F, C, G7 and Dm, one per 2-second bar, voiced with the root in the bass
    voicings = [
        (45, 57, 60, 64),
        (41, 57, 60, 65),
        (48, 55, 60, 64),
        (43, 55, 59, 62, 65),
        (38, 57, 62, 65),
    ]
    audio = chord_pad(voicings, 2.0)
    chords = estimate_chords(audio, SR, downbeats_s=[2.0 * i for i in range(5)], bar_s=2.0)
    assert chords == ["Am", "F", "C", "G7", "Dm"]


def test_a_precomputed_chroma_gives_the_same_key_and_chords() -> None:
    audio = chord_pad([(45, 57, 60, 64), (41, 57, 60, 65), (48, 55, 60, 64), (43, 55, 59, 62)], 1.5)
    starts, bar_s = [1.5 * i for i in range(4)], 1.5
    chroma = harmonic_chroma(audio, SR)
    assert estimate_key(audio, SR, chroma=chroma) == estimate_key(audio, SR)
    with_chroma = estimate_chords(audio, SR, starts, bar_s, chroma=chroma)
    assert with_chroma == estimate_chords(audio, SR, starts, bar_s) == ["Am", "F", "C", "G"]


@pytest.mark.parametrize(
    ("style", "seed", "at_least"),
    [
        # Minor chords over a bass line: by the full chroma, whose top octaves hold the
        # notes' overtones (fifths and major thirds), Gm Cm were G C (3 bars of 11 right).
        ("offbeat_hats", 210, 0.7),
        # Em heard as Cmaj7 twice by the full chroma (7 of 11 right).
        ("bossa", 19, 1.0),
    ],
)
def test_rendered_chords_are_read_from_the_middle_register_and_bass(
    render_piece, style: str, seed: int, at_least: float
) -> None:
    audio, sr, piece = render_piece(style, seed, 22.0)  # as in the evaluation's sets
    found = estimate_chords(audio, sr, piece.downbeats_s, piece.bar_s)
    assert chord_score(piece, found) >= at_least, (piece.chords, found)


def test_rendered_sevenths_are_read_from_the_middle_register(render_piece) -> None:
    """house-209: G Em Am D7. With the bass counted again the root outweighs the seventh's
    absence and presence alike (G read as Gmaj7, D7 as Dmaj7); the middle register alone
    tells a triad from a seventh chord."""
    audio, sr, piece = render_piece("house", 209, 22.0)  # as in the dev2 set
    found = estimate_chords(audio, sr, piece.downbeats_s, piece.bar_s)
    assert "D7" in piece.chords
    assert chord_score(piece, found, exact=True) >= 0.9, (piece.chords, found)
