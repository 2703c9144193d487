"""Fixtures shared by the audio tests.

Rendered test music: short multi-instrument pieces with known tempo, downbeat and key,
written by ``benchmarks/musical_pieces.py`` and rendered by FluidSynth with Debian's GM
soundfont (``scripts/test.sh`` installs both). Missing, the tests fail; they never skip.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from benchmarks.musical_pieces import SOUNDFONT, Piece, chorale_piece, render, write_piece
from tests.synthetic_audio import click_track


@pytest.fixture(scope="module")
def clicks():
    return click_track()


def _require_renderer() -> None:
    assert shutil.which("fluidsynth"), "fluidsynth is missing: apt-get install fluidsynth"
    assert SOUNDFONT.exists(), f"{SOUNDFONT} is missing: apt-get install fluid-soundfont-gm"


@pytest.fixture(scope="session")
def render_piece(tmp_path_factory: pytest.TempPathFactory):
    """``render_piece(style, seed, seconds)`` -> ``(audio [channels, samples], sr, Piece)``."""
    _require_renderer()
    folder = tmp_path_factory.mktemp("rendered")
    made: dict[tuple[str, int, float], tuple[np.ndarray, int, Piece]] = {}

    def make(style: str, seed: int, seconds: float = 10.0) -> tuple[np.ndarray, int, Piece]:
        if (style, seed, seconds) not in made:
            midi, piece = write_piece(style, seed, target_s=seconds)
            wav = Path(folder) / f"{style}-{seed}.wav"
            render(midi, wav)
            audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
            made[(style, seed, seconds)] = (audio.T, int(sr), piece)
        return made[(style, seed, seconds)]

    return make


@pytest.fixture(scope="session")
def render_part(tmp_path_factory: pytest.TempPathFactory):
    """``render_part(style, seed, instrument, shift=0, seconds=10)`` -> ``(audio
    [channels, samples], sr, Piece)``: one instrument of the piece ``write_piece`` writes,
    rendered alone, transposed up by ``shift`` semitones (the piece's truth is unshifted)."""
    _require_renderer()
    folder = tmp_path_factory.mktemp("parts")

    def make(
        style: str, seed: int, instrument: str, shift: int = 0, seconds: float = 10.0
    ) -> tuple[np.ndarray, int, Piece]:
        midi, piece = write_piece(style, seed, target_s=seconds)
        (part,) = [copy.deepcopy(i) for i in midi.instruments if i.name == instrument]
        for note in part.notes:
            note.pitch += shift
        alone = pretty_midi.PrettyMIDI(initial_tempo=piece.bpm)
        alone.instruments.append(part)
        wav = Path(folder) / f"{style}-{seed}-{instrument}-{shift}.wav"
        render(alone, wav)
        audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
        return audio.T, int(sr), piece

    return make


@pytest.fixture(scope="session")
def render_chorale(tmp_path_factory: pytest.TempPathFactory):
    """``render_chorale(path, seed)`` -> ``(audio [channels, samples], sr, Piece)``: a Bach
    chorale excerpt from music21's corpus, as ``chorale_piece`` writes it for that seed."""
    _require_renderer()
    folder = tmp_path_factory.mktemp("chorales")

    def make(path: str, seed: int) -> tuple[np.ndarray, int, Piece]:
        made = chorale_piece(path, seed=seed)
        assert made is not None, f"{path} has no usable meter or key truth"
        midi, piece = made
        wav = Path(folder) / f"{piece.name}-{seed}.wav"
        render(midi, wav)
        audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
        return audio.T, int(sr), piece

    return make
