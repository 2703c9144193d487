"""Conform: stretch to a tempo, downbeat on the grid, cut to whole bars; and the CLI verb."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from generation.audio.analysis import estimate_tempo
from generation.audio.conform import bar_length_samples, conform
from tests.synthetic_audio import SR


def first_loud_onset_s(audio, sr=SR, fraction=0.5):
    """First sample at least ``fraction`` of the peak: the accented downbeat's attack."""
    envelope = np.abs(audio).max(axis=0)
    return int(np.argmax(envelope >= fraction * envelope.max())) / sr


@pytest.fixture(scope="module")
def conformed(clicks):
    audio, _ = clicks
    return conform(audio, SR, target_bpm=120.0, bars=8)


def test_conform_locks_the_tempo(conformed):
    assert abs(estimate_tempo(conformed, SR).bpm - 120.0) < 0.5


def test_conform_cuts_to_exactly_the_bars(conformed):
    assert conformed.shape == (1, bar_length_samples(120.0, 8, 4, SR))
    assert conformed.shape[1] == round(8 * 4 * 60 / 120.0 * SR)
    assert conformed.dtype == np.float32


def test_conform_puts_the_first_downbeat_on_zero(conformed):
    assert abs(first_loud_onset_s(conformed)) < 0.010


def test_conform_puts_the_first_downbeat_where_asked(clicks):
    audio, _ = clicks
    out = conform(audio, SR, target_bpm=120.0, bars=2, align_to_s=0.25)
    assert out.shape[1] == SR * 4
    assert abs(first_loud_onset_s(out) - 0.25) < 0.010


def test_conform_with_known_tempo_and_downbeat_pads_short_audio(clicks):
    audio, downbeat = clicks
    out = conform(
        audio, SR, target_bpm=120.0, bars=16, beats_per_bar=3, source_bpm=112.0, downbeat_s=downbeat
    )
    assert out.shape == (1, round(16 * 3 * 0.5 * SR))  # longer than the source: zero tail
    assert not np.any(out[:, -SR:])
    assert abs(first_loud_onset_s(out)) < 0.010


def test_conform_fades_where_it_cuts(clicks):
    audio, _ = clicks
    noise = np.random.default_rng(1).uniform(-0.5, 0.5, audio.shape).astype(np.float32)
    out = conform(noise, SR, target_bpm=120.0, bars=1, source_bpm=112.0, downbeat_s=1.0)
    assert abs(out[0, 0]) < 1e-6
    assert abs(out[0, -1]) < 1e-3


def test_conform_keeps_channels(clicks):
    audio, downbeat = clicks
    stereo = np.vstack([audio, 0.5 * audio])
    out = conform(stereo, SR, target_bpm=100.0, bars=2, source_bpm=112.0, downbeat_s=downbeat)
    assert out.shape == (2, round(2 * 4 * 0.6 * SR))


@pytest.mark.parametrize(
    "kwargs", [{"target_bpm": 0.0, "bars": 4}, {"target_bpm": 120.0, "bars": 0}]
)
def test_conform_rejects_bad_arguments(clicks, kwargs):
    with pytest.raises(ValueError):
        conform(clicks[0], SR, **kwargs)


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "generation", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_conform_end_to_end(clicks, tmp_path):
    audio, _ = clicks
    source = tmp_path / "loop.wav"
    sf.write(source, audio.T, SR, subtype="PCM_24")
    out = tmp_path / "loop-120.flac"
    result = run_cli(
        "conform",
        str(source),
        "--bpm",
        "120",
        "--bars",
        "4",
        "--time-signature",
        "4/4",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    written, rate = sf.read(out, always_2d=True)
    assert rate == SR
    assert written.shape == (round(4 * 4 * 0.5 * SR), 1)
    assert abs(first_loud_onset_s(written.T)) < 0.010


@pytest.mark.parametrize(
    "args",
    [
        ("--bpm", "120", "--bars", "4"),  # input is not audio
        ("--bpm", "120", "--bars", "4", "--time-signature", "four"),
        ("--bpm", "-1", "--bars", "4"),
    ],
)
def test_cli_conform_bad_input_is_one_error_line(tmp_path, args):
    bogus = tmp_path / "not-audio.wav"
    bogus.write_text("hello")
    result = run_cli("conform", str(bogus), *args, "--out", str(tmp_path / "x.wav"))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error:")
    assert len(result.stderr.strip().splitlines()) == 1
