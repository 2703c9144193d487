"""The musical evaluation on a set of your own (``--pieces``): read, validated and scored
like the built-in sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf

from benchmarks import musical_eval
from benchmarks.musical_eval import load_pieces, main, run_peers
from tests.synthetic_audio import DEMO_BPM, SR, click_track, demo_track


@pytest.fixture
def yours(tmp_path: Path) -> Path:
    """A one-piece set: the demo track (112 BPM, A minor) with its true first downbeat."""
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "demo.wav", demo_track()[0], SR)
    _, downbeat = click_track(bpm=DEMO_BPM)
    spec = tmp_path / "set.json"
    truth = {
        "audio": "audio/demo.wav",
        "bpm": DEMO_BPM,
        "meter": "4/4",
        "first_downbeat_s": downbeat,
        "key": "A minor",
    }
    spec.write_text(json.dumps([truth]))
    return spec


def test_a_set_of_your_own_is_scored_like_the_built_in_ones(yours: Path, tmp_path: Path):
    out = tmp_path / "scores.json"
    main(["--pieces", str(yours), "--analysers", "project", "--json", str(out)])
    (report,) = json.loads(out.read_text())
    assert report["which"] == "set" and report["count"] == 1 and report["keyed"] == 1
    (row,) = report["rows"]["project"]
    assert row["tempo"] == 1.0 and row["key"] == 1.0
    assert row["uncertain_right"] == 0.0  # a clear key is not reported uncertain
    assert report["rows"]["truth"][0]["downbeat"] == 1.0
    assert report["conform"]["truth"] == [True]


def test_a_six_eight_piece_counts_its_bars_in_quarter_notes(yours: Path):
    entries = json.loads(yours.read_text())
    entries[0] |= {"meter": "6/8", "bpm": 90.0, "key": None}
    yours.write_text(json.dumps(entries))
    ((piece, _),) = load_pieces(yours)
    assert piece.bar_s == pytest.approx(2.0)  # 6 eighths = 3 quarters at 90 a minute
    assert piece.downbeats_s[1] - piece.downbeats_s[0] == pytest.approx(2.0)
    assert piece.key is None


def test_peer_results_for_your_audio_are_cached_by_content(yours, tmp_path, monkeypatch):
    calls = []

    def peers(python, jobs):
        calls.append([piece.name for piece, _ in jobs])
        return [{"madmom": {"bpm": 112.0}} for _ in jobs]

    monkeypatch.setattr(musical_eval, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(musical_eval, "_run_peers", peers)
    pieces = load_pieces(yours)
    assert run_peers("peers-python", pieces) == [{"madmom": {"bpm": 112.0}}]
    assert run_peers("peers-python", pieces) == [{"madmom": {"bpm": 112.0}}]
    assert calls == [["demo"]]  # the second run read the cache
    (cached,) = (tmp_path / "cache" / "external").glob("*.peers.json")
    assert json.loads(cached.read_text()) == {"madmom": {"bpm": 112.0}}


def test_the_truth_is_read_with_its_bar_lines_and_spelling(yours: Path):
    entries = json.loads(yours.read_text())
    entries[0] |= {"key": "Eb major", "chords": ["Am", "Dm", "E7"], "name": "mine"}
    yours.write_text(json.dumps(entries))
    ((piece, wav),) = load_pieces(yours)
    assert wav == (yours.parent / "audio" / "demo.wav").resolve()
    assert (piece.name, piece.key, piece.chords) == ("mine", "D# major", ("Am", "Dm", "E7"))
    bar_s = 4 * 60.0 / DEMO_BPM
    duration = sf.info(str(wav)).duration
    assert piece.downbeats_s[0] == pytest.approx(entries[0]["first_downbeat_s"])
    gaps = [b - a for a, b in zip(piece.downbeats_s, piece.downbeats_s[1:], strict=False)]
    assert gaps == pytest.approx([bar_s] * len(gaps))
    assert piece.downbeats_s[-1] + bar_s <= duration < piece.downbeats_s[-1] + 2 * bar_s


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"key": "H minor"}, "key 'H minor'"),
        ({"key": "A dorian"}, "key 'A dorian'"),
        ({"chords": ["Am", "Xq"]}, "Xq"),
        ({"audio": "audio/missing.wav"}, "missing.wav"),
        ({"bpm": None}, "TypeError"),
        ({"bpm": 0}, "bpm must be a positive"),
        ({"meter": "4/0"}, "time signature"),
        ({"first_downbeat_s": -0.5}, "not within the audio"),
        ({"first_downbeat_s": 1000.0}, "not within the audio"),
        ({"bpm": 30.0}, "whole bars"),  # 8 s bars in 22 s of audio
        ({"chords": "Am F C G"}, "must be a list"),
    ],
)
def test_an_unusable_entry_is_named(yours: Path, change: dict, message: str):
    entries = json.loads(yours.read_text())
    entries[0] |= change
    yours.write_text(json.dumps(entries))
    with pytest.raises(ValueError, match="piece 0") as error:
        load_pieces(yours)
    assert message in str(error.value)


@pytest.mark.parametrize("text", ["{}", "[]"])
def test_a_file_that_is_not_a_list_of_pieces_is_refused(tmp_path: Path, text: str):
    spec = tmp_path / "set.json"
    spec.write_text(text)
    with pytest.raises(ValueError, match="non-empty JSON list"):
        load_pieces(spec)
