"""Tempo, downbeat and key analysis on synthetic audio with known answers."""

import pytest

from generation.audio.analysis import estimate_key, estimate_tempo
from tests.synthetic_audio import FIRST_HIT_S, SOURCE_BPM, SR, chord_pad


def test_estimate_tempo_finds_the_source_tempo_and_downbeat(clicks):
    audio, downbeat = clicks
    estimate = estimate_tempo(audio, SR)
    assert abs(estimate.bpm - SOURCE_BPM) < 0.1
    assert abs(estimate.first_downbeat_s - downbeat) < 0.005
    assert estimate.beat_times_s[0] == pytest.approx(FIRST_HIT_S, abs=0.02)


@pytest.mark.parametrize(
    ("chords", "expected"),
    [
        # C - F - G - C
        (
            [(48, 52, 55, 60), (53, 57, 60, 65), (55, 59, 62, 67), (48, 52, 55, 60)],
            "C major",
        ),
        # Am - Dm - E - Am
        (
            [(45, 57, 60, 64), (50, 57, 62, 65), (52, 56, 59, 64), (45, 57, 60, 64)],
            "A minor",
        ),
        # D - G - A - D
        (
            [(50, 54, 57, 62), (55, 59, 62, 67), (57, 61, 64, 69), (50, 54, 57, 62)],
            "D major",
        ),
    ],
)
def test_estimate_key_on_chord_progressions(chords, expected):
    assert str(estimate_key(chord_pad(chords), SR)) == expected
