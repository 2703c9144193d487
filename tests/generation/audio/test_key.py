"""Key estimation on synthetic chords (with a detuned copy) and rendered music."""

from __future__ import annotations

import numpy as np
import pytest

from generation.audio.key import estimate_key, harmonic_chroma
from tests.synthetic_audio import SR, chord_pad

A_MINOR = [(45, 57, 60, 64), (50, 57, 62, 65), (52, 56, 59, 64), (45, 57, 60, 64)]  # Am Dm E Am
E_FLAT_MAJOR = [
    (39, 55, 58, 63),
    (44, 56, 60, 63),
    (46, 55, 58, 62),
    (39, 55, 58, 63),
]  # Eb Ab Bb Eb


def _detuned(chords: list[tuple[int, ...]], cents: float) -> np.ndarray:
    """``chord_pad`` resampled so every pitch moves by ``cents``."""
    audio = chord_pad(chords * 2, 1.0)[0]
    ratio = 2 ** (cents / 1200)
    positions = np.arange(0, audio.size - 1, ratio)
    return np.interp(positions, np.arange(audio.size), audio).astype(np.float32)[np.newaxis]


@pytest.mark.parametrize(("chords", "expected"), [(A_MINOR, "A minor"), (E_FLAT_MAJOR, "D# major")])
def test_synthetic_progressions(chords, expected: str) -> None:
    key = estimate_key(chord_pad(chords * 2, 1.0), SR)
    assert str(key) == expected
    assert 0.0 <= key.confidence <= 1.0


def test_tuning_is_measured_and_corrected() -> None:
    audio = _detuned(A_MINOR, 45.0)
    assert 30.0 <= harmonic_chroma(audio, SR).tuning_cents <= 55.0
    assert str(estimate_key(audio, SR)) == "A minor"


def test_silence_raises() -> None:
    with pytest.raises(ValueError, match="silence"):
        estimate_key(np.zeros((2, SR), np.float32), SR)


@pytest.mark.parametrize(("style", "seed"), [("pop", 1), ("halftime", 6), ("waltz", 11)])
def test_rendered_music(render_piece, style: str, seed: int) -> None:
    audio, sr, piece = render_piece(style, seed)
    assert str(estimate_key(audio, sr)) == piece.key


@pytest.mark.parametrize(("style", "seed"), [("ska", 10), ("funk", 204)])
def test_rendered_busy_drums_and_short_stabs_keep_the_major_key(
    render_piece, style: str, seed: int
) -> None:
    """Skanks or clav stabs a sixteenth long over a drum hit on every beat: without taking
    the broadband floor away the chroma is nearly flat and the relative minor wins."""
    audio, sr, piece = render_piece(style, seed, 22.0)
    assert str(estimate_key(audio, sr)) == piece.key


def test_middle_register_excludes_bass_and_top_octave() -> None:
    t = np.arange(3 * SR) / SR
    low_c = np.sin(2 * np.pi * 65.41 * t)  # C2: bass register only
    a4 = np.sin(2 * np.pi * 440.0 * t)  # A4: middle register
    top_e = np.sin(2 * np.pi * 2637.0 * t)  # E7: above the middle register
    analysis = harmonic_chroma((0.3 * (low_c + a4 + top_e)).astype(np.float32)[np.newaxis], SR)
    middle = analysis.middle.sum(axis=1)
    bass = analysis.bass.sum(axis=1)
    full = analysis.chroma.sum(axis=1)
    assert int(np.argmax(middle)) == 9  # A
    assert middle[0] < 0.2 * middle[9] and middle[4] < 0.2 * middle[9]
    assert int(np.argmax(bass)) == 0  # C
    assert full[4] > 0.5 * full[9]  # the full chroma still sees E7
