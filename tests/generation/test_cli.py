"""The CLI end to end, as a musician runs it: a real process on the tiny checkpoint."""

import json
import os
import subprocess
import sys

import soundfile as sf

from generation.audio.codecs import encode_audio
from generation.request import OutputFormat
from tests.synthetic_audio import SR, demo_track


def run_cli(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "generation", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_generate_writes_stems_and_manifest(tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "generate",
        "--stems",
        "guitar",
        "bass",
        "drums",
        "--duration",
        "2",
        "--bpm",
        "120",
        "--style",
        "rock",
        "--prompt",
        "energetic rock",
        "--seed",
        "7",
        "--out",
        str(out),
        "--model",
        str(tiny_checkpoint),
    )
    assert result.returncode == 0, result.stderr
    assert "decoding" in result.stderr  # the progress bar
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["stem"] for s in manifest["stems"]] == ["guitar", "bass", "drums"]
    assert [s["seed"] for s in manifest["stems"]] == [7, 8, 9]  # one seed per stem
    assert manifest["request"]["seed"] == 7
    for entry in manifest["stems"]:
        info = sf.info(str(out / entry["file"]))
        assert (info.frames, info.samplerate, info.subtype) == (64000, 32000, "PCM_16")
        assert entry["samples"] == 64000
        assert entry["model_id"] == str(tiny_checkpoint)
        assert "120 bpm" in entry["prompt"] and "rock" in entry["prompt"]
        assert entry["generation_seconds"] > 0
    assert manifest["request"]["parameters"]["duration_seconds"] == 2


def test_same_seed_gives_identical_files(tiny_checkpoint, tmp_path):
    args = [
        "generate",
        "--stems",
        "piano",
        "--duration",
        "1",
        "--seed",
        "3",
        "--quiet",
        "--model",
        str(tiny_checkpoint),
    ]
    assert run_cli(*args, "--out", str(tmp_path / "a")).returncode == 0
    assert run_cli(*args, "--out", str(tmp_path / "b")).returncode == 0
    assert (tmp_path / "a/piano.wav").read_bytes() == (tmp_path / "b/piano.wav").read_bytes()


def test_bad_input_exits_2_with_one_clear_line(tiny_checkpoint, tmp_path):
    result = run_cli(
        "generate", "--stems", "kazoo", "--out", str(tmp_path), "--model", str(tiny_checkpoint)
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "target_stems" in lines[0]


def test_unloadable_model_exits_1_naming_model_and_cause(tmp_path):
    missing = tmp_path / "no-such-model"
    result = run_cli(
        "generate", "--stems", "bass", "--out", str(tmp_path / "o"), "--model", str(missing)
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot load MusicGen model") and str(missing) in last
    assert not (tmp_path / "o").exists()


def test_bad_setting_exits_2_naming_the_key(tiny_checkpoint, tmp_path):
    result = run_cli(
        "generate",
        "--stems",
        "bass",
        "--out",
        str(tmp_path),
        "--model",
        str(tiny_checkpoint),
        env_extra={"DEFAULT_TOP_K": "-1"},
    )
    assert result.returncode == 2
    assert "DEFAULT_TOP_K" in result.stderr


def test_generate_follows_a_track_in_bars_and_writes_the_mix(tiny_checkpoint, tmp_path):
    track = tmp_path / "take.wav"
    track.write_bytes(encode_audio(demo_track(), SR, OutputFormat.WAV))
    out = tmp_path / "out"
    result = run_cli(
        "generate",
        "--stems",
        "bass",
        "pads",
        "--follow",
        str(track),
        "--bars",
        "2",
        "--time-signature",
        "4/4",
        "--loop",
        "--seed",
        "3",
        "--out",
        str(out),
        "--model",
        str(tiny_checkpoint),
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    musical = manifest["musical"]
    assert (musical["target_bpm"], musical["tempo_source"], musical["bars"]) == (112.0, "upload", 2)
    assert musical["key"] == "A minor" and musical["loop"] is True
    two_bars = round(2 * 4 * 60 / 112 * 32000)
    for entry in manifest["stems"]:
        assert sf.info(str(out / entry["file"])).frames == two_bars
        assert "in A minor" in entry["prompt"] and "112 bpm" in entry["prompt"]
    assert manifest["mix"]["file"] == "mix.wav" and manifest["mix"]["samples"] == two_bars
    assert sf.info(str(out / "mix.wav")).frames == two_bars


def test_generate_refuses_bars_without_a_tempo(tiny_checkpoint, tmp_path):
    result = run_cli(
        "generate",
        "--stems",
        "bass",
        "--bars",
        "4",
        "--out",
        str(tmp_path),
        "--model",
        str(tiny_checkpoint),
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: invalid request")
    assert "bars needs a tempo" in result.stderr
