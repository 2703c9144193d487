"""The chord guide a melody checkpoint follows: what MusicGen-melody's own chroma sees in it,
and which requests get it (the upload, the guide or nothing)."""

from __future__ import annotations

import numpy as np
import pytest

from generation.audio.harmony import note_pitch_class
from generation.engines.musicgen.chroma import ChromaExtractor
from generation.stems.chord_guide import GUIDE_RATE_HZ, chord_guide
from generation.stems.grid import GridPlan
from generation.stems.render import stem_melody

EXTRACTOR = ChromaExtractor()  # facebook/musicgen-melody's settings: 32 kHz, hop 4096


def plan(time_signature="4/4", bpm=120.0, bars=4, chords="Am F C G", source="request"):
    beats, unit = (int(x) for x in time_signature.split("/"))
    return GridPlan(
        time_signature=time_signature,
        duration_s=bars * beats * (4 / unit) * 60 / bpm,
        target_bpm=bpm,
        tempo_source="request",
        bars=bars,
        chords=tuple(chords.split()),
        chords_source=source,
    )


def classes_at(audio: np.ndarray, times_s: np.ndarray) -> list[int]:
    """The one-hot chroma's pitch class at the frame nearest each of ``times_s``."""
    chroma = EXTRACTOR(audio[0]).argmax(dim=1).numpy()
    frames = np.round(times_s * GUIDE_RATE_HZ / EXTRACTOR.hop_length).astype(int)
    return [int(chroma[f]) for f in frames]


def notes(text: str) -> list[int]:
    return [note_pitch_class(n) for n in text.split()]


@pytest.mark.parametrize(
    ("time_signature", "beat_s", "expected"),
    [
        # A bar: the chord's bass note, then its other tones in turn.
        ("4/4", 0.5, "A C E C  F A C A  C E G E  G B D B"),
        ("3/4", 0.5, "A C E  F A C  C E G  G B D"),
        ("6/8", 0.75, "A C  F A  C E  G B"),  # a dotted quarter per tone
    ],
)
def test_the_melody_models_chroma_walks_each_bars_chord(time_signature, beat_s, expected):
    guide = chord_guide(plan(time_signature))
    beats = notes(expected)
    centres = (np.arange(2 * len(beats)) + 0.5) * beat_s  # two rounds of the progression
    assert classes_at(guide, centres) == beats + beats


def test_the_guide_is_whole_progressions_covering_what_the_model_generates():
    grid = plan("4/4", bpm=120.0, bars=4)  # generation_s 11.2 s: 6 bars, 8 with the cycle
    guide = chord_guide(grid)
    assert guide.dtype == np.float32 and guide.shape == (1, 8 * 2 * GUIDE_RATE_HZ)
    assert guide.shape[1] >= grid.generation_s * GUIDE_RATE_HZ
    assert guide[0, 0] == 0.0 and np.abs(guide).max() <= 0.25  # ramps in, quiet
    # A progression far longer than the stem is not rendered whole.
    long = plan("4/4", bpm=120.0, bars=2, chords=" ".join(["Am", "F", "C", "G"] * 8))
    assert chord_guide(long).shape[1] == 4 * 2 * GUIDE_RATE_HZ  # ceil(6.72 / 2) bars


def test_a_slash_chord_puts_its_bass_on_the_one():
    guide = chord_guide(plan("4/4", chords="C/E G/B"))
    assert classes_at(guide, np.array([0.25, 2.25])) == notes("E B")


def test_a_plan_without_tempo_or_chords_has_no_guide():
    with pytest.raises(ValueError, match="tempo-locked plan with chords"):
        chord_guide(GridPlan(time_signature="4/4", duration_s=4.0, chords=("Am",)))
    with pytest.raises(ValueError, match="tempo-locked plan with chords"):
        chord_guide(plan(chords=""))


def upload_audio() -> tuple[np.ndarray, int]:
    return np.full((1, 32000), 0.1, np.float32), 32000


def test_what_a_melody_checkpoints_stems_follow():
    # The request's chords at a tempo: the guide.
    melody, source = stem_melody(plan(), supports_melody=True, upload_audio=upload_audio)
    assert source == "chords" and melody is not None
    np.testing.assert_array_equal(melody.audio, chord_guide(plan()))
    # The upload's chords (or none set by the request): the upload's audio.
    melody, source = stem_melody(
        plan(source="upload"), supports_melody=True, upload_audio=upload_audio
    )
    assert source == "upload" and melody is not None
    np.testing.assert_array_equal(melody.audio, upload_audio()[0])
    no_chords = GridPlan(time_signature="4/4", duration_s=4.0)
    assert stem_melody(no_chords, supports_melody=True, upload_audio=upload_audio)[1] == "upload"
    # The request's chords without a tempo: nothing (the upload would contradict them).
    unlocked = GridPlan(
        time_signature="4/4", duration_s=4.0, chords=("Am",), chords_source="request"
    )
    assert stem_melody(unlocked, supports_melody=True, upload_audio=upload_audio) == (None, None)
    # Nothing to follow, or a text-only checkpoint: nothing.
    assert stem_melody(no_chords, supports_melody=True, upload_audio=None) == (None, None)
    assert stem_melody(plan(), supports_melody=False, upload_audio=upload_audio) == (None, None)
