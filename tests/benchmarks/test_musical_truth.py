"""The musical evaluation's truth: which pieces carry a key, how chords are scored and how
keys reported uncertain are counted."""

from __future__ import annotations

import pretty_midi
import pytest

from benchmarks.musical_eval import _flagged, chord_score, score
from benchmarks.musical_pieces import Piece, _mode_is_heard, write_piece

D = 2  # pitch class of D


def _midi(*pitches: int, drum: int | None = None) -> pretty_midi.PrettyMIDI:
    midi = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=29)
    inst.notes = [pretty_midi.Note(90, p, i * 0.5, i * 0.5 + 0.4) for i, p in enumerate(pitches)]
    midi.instruments.append(inst)
    if drum is not None:
        kit = pretty_midi.Instrument(program=0, is_drum=True)
        kit.notes = [pretty_midi.Note(100, drum, 0.0, 0.1)]
        midi.instruments.append(kit)
    return midi


def test_power_chords_on_i_iv_v_do_not_tell_major_from_minor() -> None:
    power = _midi(50, 57, 55, 62, 57, 64, drum=42)  # D5 G5 A5, hi-hat note 42 ignored
    assert not _mode_is_heard(power, D, minor=True)
    assert not _mode_is_heard(power, D, minor=False)


@pytest.mark.parametrize(("third", "minor"), [(53, True), (54, False)])  # F or F#
def test_a_third_tells_the_mode(third: int, minor: bool) -> None:
    assert _mode_is_heard(_midi(50, 57, third), D, minor=minor)


def test_written_pieces_keep_their_key_when_it_is_heard() -> None:
    _, pop = write_piece("pop", 1)  # a melody over the scale
    assert pop.key == "A minor"
    _, rock = write_piece("rock", 215)  # power chords on I, IV, V, no pickup
    assert rock.key is None


def _piece(chords: tuple[str, ...]) -> Piece:
    return Piece("p", "pop", 120.0, "4/4", "A minor", 0.0, (0.0, 2.0), 0.0, 0.0, chords)


def test_chords_are_scored_by_root_and_third() -> None:
    piece = _piece(("Am", "F", "C", "G7"))
    assert chord_score(piece, ["Am7", "F/A", "Cmaj7", "G"]) == 1.0  # sevenths, inversions
    assert chord_score(piece, ["Am7", "F/A", "Cmaj7", "G7"], exact=True) == 0.5  # Am7, Cmaj7
    assert chord_score(piece, ["A", "F", "Cm", "E"]) == 0.25  # wrong third twice, wrong root
    assert chord_score(piece, ["Am", "F"]) == 0.5  # bars not found count as wrong
    assert chord_score(_piece(()), ["Am"]) is None
    assert chord_score(piece, None) is None


def test_keys_reported_uncertain_are_counted_among_the_wrong_and_the_right() -> None:
    piece = _piece(("Am",))
    results = [
        {"key": "C major", "key_uncertain": True},  # relative: wrong, flagged
        {"key": "E minor", "key_uncertain": False},  # wrong, not flagged
        {"key": "A minor", "key_uncertain": True},  # right, flagged
        {"key": "A minor", "key_uncertain": False},
        {"key": "A minor", "key_uncertain": False},
    ]
    rows = [score(piece, r) for r in results]
    assert _flagged(rows) == "1 of 2, 1 of 3"
    assert _flagged([score(piece, {"key": "A minor"})]) == "-"  # a peer: does not report it
    unkeyed = Piece("p", "rock", 120.0, "4/4", None, 0.0, (0.0, 2.0), 0.0, 0.0)
    scored = score(unkeyed, {"key": "D major", "key_uncertain": True})
    assert scored["key"] is scored["uncertain_wrong"] is scored["uncertain_right"] is None
