"""The CLI end to end, as a musician runs it: a real process on the tiny checkpoint."""

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request

import pytest
import soundfile as sf

from generation.audio.codecs import encode_audio
from generation.audio.key import LOW_CONFIDENCE
from generation.request import OutputFormat
from generation.stems.output import LocalFolder
from tests.studio_sets import write_set
from tests.synthetic_audio import POWER_CHORDS, SR, chord_pad, demo_track


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


def test_generate_reports_what_the_followed_track_could_not_decide(tiny_checkpoint, tmp_path):
    # Power chords in turn, a chord a second: no third, so C major or C minor.
    track = tmp_path / "pad.wav"
    pad = chord_pad(POWER_CHORDS * 4, 1.0)
    track.write_bytes(encode_audio(pad, SR, OutputFormat.WAV))
    out = tmp_path / "out"
    result = run_cli(
        "generate",
        "--stems",
        "bass",
        "--follow",
        str(track),
        "--duration",
        "1",
        "--out",
        str(out),
        "--model",
        str(tiny_checkpoint),
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    assert "key uncertain" in result.stderr  # logged while it runs
    manifest = json.loads((out / "manifest.json").read_text())
    upload = manifest["musical"]["upload"]
    assert upload["key_confidence"] < LOW_CONFIDENCE
    assert [w for w in manifest["warnings"] if w.startswith("upload: key uncertain")]
    assert {f"upload: {w}" for w in upload["warnings"]} <= set(manifest["warnings"])


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


def generate_in_a_key(model, out, *extra):
    return run_cli(
        "generate",
        "--stems",
        "bass",
        "keys",
        "--bpm",
        "120",
        "--bars",
        "2",
        "--key",
        "A minor",
        "--chords",
        "Am F C G",
        "--seed",
        "4",
        "--out",
        str(out),
        "--model",
        str(model),
        "--quiet",
        *extra,
    )


def test_generate_in_the_requested_key_and_chords(tiny_checkpoint, tmp_path):
    result = generate_in_a_key(tiny_checkpoint, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    musical = manifest["musical"]
    assert (musical["key"], musical["key_source"]) == ("A minor", "request")
    assert (musical["chords"], musical["chords_source"]) == (["Am", "F", "C", "G"], "request")
    for entry in manifest["stems"]:  # a text-only checkpoint hears them in its prompt only
        assert "in A minor" in entry["prompt"] and "chords Am F C G" in entry["prompt"]
        assert entry["melody_source"] is None and entry["melody_conditioned"] is False


def test_a_melody_checkpoint_follows_the_requested_chords(tiny_melody_checkpoint, tmp_path):
    result = generate_in_a_key(tiny_melody_checkpoint, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["musical"]["chords_source"] == "request"
    two_bars = round(2 * 4 * 60 / 120 * 32000)
    for entry in manifest["stems"]:
        assert entry["melody_source"] == "chords" and entry["melody_conditioned"] is True
        assert sf.info(str(tmp_path / "out" / entry["file"])).frames == two_bars


@pytest.mark.parametrize(
    ("flag", "value", "named"),
    [("--chords", "Am Fx C G", "'Fx'"), ("--key", "H minor", "'H minor'")],
)
def test_an_invalid_chord_or_key_exits_2_naming_it(tiny_checkpoint, tmp_path, flag, value, named):
    result = run_cli(
        "generate",
        "--stems",
        "bass",
        flag,
        value,
        "--out",
        str(tmp_path / "out"),
        "--model",
        str(tiny_checkpoint),
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: invalid request")
    assert f"parameters.{flag[2:]}" in lines[0] and named in lines[0]
    assert not (tmp_path / "out").exists()


def test_studio_serves_a_generated_folder_until_interrupted(tmp_path):
    write_set(LocalFolder(tmp_path), "cli-studio-test")
    process = subprocess.Popen(
        [sys.executable, "-m", "generation", "studio", str(tmp_path), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = None
        for line in process.stderr:
            found = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
            if found:
                url = found.group(1)
                break
        assert url is not None, "the studio never said where it listens"
        with urllib.request.urlopen(f"{url}studio/config.json", timeout=10) as response:
            config = json.loads(response.read())
        assert config["generation_request_id"] == "cli-studio-test" and config["read_only"]
        with urllib.request.urlopen(f"{url}generate/cli-studio-test/files/bass.wav") as response:
            assert response.read() == (tmp_path / "bass.wav").read_bytes()
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0


def test_studio_without_a_manifest_exits_2_with_one_clear_line(tmp_path):
    result = run_cli("studio", str(tmp_path))
    assert result.returncode == 2
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "no readable manifest" in line


def test_engine_ace_step_extracts_stems_from_a_guide(ace_tiny_checkpoint, tmp_path):
    out = tmp_path / "ace"
    result = run_cli(
        "generate",
        "--engine",
        "ace_step",
        "--ace-step-model",
        str(ace_tiny_checkpoint),
        "--stems",
        "bass",
        "drums",
        "--bpm",
        "100",
        "--bars",
        "1",
        "--style",
        "funk",
        "--seed",
        "4",
        "--out",
        str(out),
        env_extra={"ACE_STEP_STEPS": "2", "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    one_bar = round(4 * 60 / 100 * 48_000)
    for name in ("guide.flac", "bass.wav", "drums.wav", "mix.wav"):
        info = sf.info(out / name)
        assert (info.samplerate, info.channels, info.frames) == (48_000, 2, one_bar)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(s["engine"], s["task"]) for s in manifest["stems"]] == [("ace_step", "extract")] * 2
    assert manifest["guide"]["file"] == "guide.flac"
    assert manifest["model_id"] == str(ace_tiny_checkpoint)


def test_engine_ace_step_without_a_model_exits_2_naming_the_setting(tmp_path):
    result = run_cli(
        "generate", "--engine", "ace_step", "--stems", "bass", "--out", str(tmp_path / "x")
    )
    assert result.returncode == 2
    assert "ACE_STEP_MODEL" in result.stderr
