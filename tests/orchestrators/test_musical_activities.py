"""The upload, tempo-lock, gain-staging and mix side of the activities: real Azurite, the
tiny checkpoints (text-only and melody), synthetic tracks with known tempo and key."""

import io
import json

import numpy as np
import pytest
import soundfile as sf

from generation.audio.codecs import decode_audio, encode_audio
from generation.audio.loudness import true_peak_dbtp
from generation.request import OutputFormat, parse_request
from orchestrators import activities, runtime
from tests.synthetic_audio import SR, chord_pad, demo_track

TRACK_ID = "demo-take.wav"


def request(**fields):
    body = {
        "generation_request_id": "req-mus-1",
        "target_stems": ["bass", "drums"],
        "parameters": {"bars": 1, "style": "funk"},
        "seed": 5,
        "audio_file_id": TRACK_ID,
        **fields,
    }
    return parse_request(body).model_dump(mode="json")


def track_wav() -> bytes:
    """The demo track (112 BPM, A minor) as a stereo WAV upload."""
    mono = demo_track()
    return encode_audio(np.concatenate([mono, mono]), SR, OutputFormat.WAV)


@pytest.fixture
def upload(service_env):
    name = f"uploads/{TRACK_ID}"
    runtime.blob_store().upload_bytes(name, track_wav(), "audio/wav")
    return name


def test_analyze_upload_reads_tempo_downbeat_and_key(upload):
    result = activities.analyze_upload({"request": request()})
    assert result["ok"] is True
    analysis = result["analysis"]
    assert analysis["bpm"] == 112.0
    assert analysis["key"] == "A minor"
    assert (analysis["sample_rate"], analysis["channels"]) == (SR, 2)
    assert analysis["first_downbeat_s"] == pytest.approx(0.3 + 2 * 60 / 112, abs=0.01)


def test_a_missing_upload_is_a_clear_error_naming_the_blob(service_env):
    result = activities.analyze_upload({"request": request(audio_file_id="nope.wav")})
    assert result["ok"] is False
    assert "audio_file_id 'nope.wav'" in result["error"]
    assert "'uploads/nope.wav'" in result["error"] and "no such upload" in result["error"]


def test_an_upload_that_is_not_audio_is_a_clear_error(service_env):
    runtime.blob_store().upload_bytes(f"uploads/{TRACK_ID}", b"<html>oops</html>", "text/html")
    result = activities.analyze_upload({"request": request()})
    assert result["ok"] is False
    assert "not a readable audio file (WAV, FLAC, MP3 or OGG expected)" in result["error"]


def test_an_upload_over_the_size_limit_is_refused_before_download(upload, monkeypatch):
    monkeypatch.setenv("MAX_UPLOAD_MB", "0.01")
    runtime.reset_for_tests()
    result = activities.analyze_upload({"request": request()})
    assert result["ok"] is False and "larger than MAX_UPLOAD_MB (0.01 MB)" in result["error"]


def test_bars_too_long_at_the_uploads_tempo_are_refused(upload):
    result = activities.analyze_upload({"request": request(parameters={"bars": 256})})
    assert result["ok"] is False and "at most 300 s" in result["error"]


def test_uploads_can_live_in_their_own_container_under_their_own_names(service_env, monkeypatch):
    monkeypatch.setenv("UPLOAD_CONTAINER_NAME", "user-uploads")
    monkeypatch.setenv("UPLOAD_BLOB_TEMPLATE", "tracks/{audio_file_id}/original")
    runtime.reset_for_tests()
    uploads = runtime.upload_store()
    uploads.ensure_container()
    uploads.upload_bytes(f"tracks/{TRACK_ID}/original", track_wav(), "audio/wav")
    try:
        result = activities.analyze_upload({"request": request()})
    finally:
        uploads.delete_container()
    assert result["ok"] is True and result["analysis"]["bpm"] == 112.0


def stems_following_the_upload(body):
    analysis = activities.analyze_upload({"request": body})["analysis"]
    return analysis, [
        activities.generate_stem(
            {"request": body, "stem": stem, "stem_index": i, "upload": analysis}
        )
        for i, stem in enumerate(body["target_stems"])
    ]


def test_stems_follow_the_uploads_tempo_and_key_and_share_one_length(upload):
    body = request(parameters={"bars": 2, "style": "funk"})
    analysis, stems = stems_following_the_upload(body)
    two_bars = round(2 * 4 * 60 / 112 * 32000)  # exactly 2 bars at the upload's tempo
    for stem in stems:
        assert stem["samples"] == two_bars
        assert "in A minor" in stem["prompt"] and "112 bpm" in stem["prompt"]
        assert stem["melody_source"] is None  # the tiny checkpoint is text-only
        assert stem["melody_conditioned"] is False
        assert stem["true_peak_dbtp"] is None or stem["true_peak_dbtp"] <= -1.0
        assert stem["musical"]["target_bpm"] == 112.0
        assert stem["musical"]["tempo_source"] == "upload"
        assert stem["musical"]["upload"] == analysis
        audio, rate = decode_audio(runtime.blob_store().download_bytes(stem["file"]))
        assert (audio.shape[1], rate) == (two_bars, 32000)


def test_finalize_writes_the_mix_and_the_musical_manifest(upload):
    body = request(parameters={"bars": 1}, output_format="wav_24")
    analysis, stems = stems_following_the_upload(body)
    result = activities.finalize_generation(
        {
            "request": body,
            "stems": stems,
            "failed_stems": [],
            "started_at": "2026-01-01T00:00:00+00:00",
            "upload": analysis,
            "warnings": ["upload: something to say"],
        }
    )
    assert result["mix_url"].endswith("/generations/req-mus-1/mix.wav")
    data = runtime.blob_store().download_bytes("generations/req-mus-1/mix.wav")
    info = sf.info(io.BytesIO(data))
    assert (info.frames, info.subtype) == (stems[0]["samples"], "PCM_24")
    mixed, _ = decode_audio(data)
    assert true_peak_dbtp(mixed, 32000) <= -1.0 + 1e-3

    manifest = json.loads(runtime.blob_store().download_bytes(result["manifest_blob_name"]))
    musical = manifest["musical"]
    assert (musical["target_bpm"], musical["bars"], musical["time_signature"]) == (112.0, 1, "4/4")
    assert musical["key"] == "A minor" and musical["upload"]["bpm"] == 112.0
    assert manifest["seed"] == 5 and manifest["mix"]["stems"] == ["bass", "drums"]
    for entry in manifest["stems"]:
        measured = {"detected_bpm", "stretch_ratio", "loudness_lufs", "true_peak_dbtp", "in_key"}
        assert measured <= set(entry)
    assert manifest["warnings"][0] == "upload: something to say"
    assert result["musical"] == musical and result["warnings"] == manifest["warnings"]


def test_without_a_tempo_the_stems_keep_the_requested_duration(service_env):
    body = parse_request(
        {
            "generation_request_id": "req-mus-2",
            "target_stems": ["pads"],
            "parameters": {"duration_seconds": 1.25},
            "seed": 1,
        }
    ).model_dump(mode="json")
    stem = activities.generate_stem({"request": body, "stem": "pads", "stem_index": 0})
    assert stem["samples"] == 40000
    assert stem["musical"]["tempo_locked"] is False and stem["stretch_ratio"] == 1.0


def test_a_melody_checkpoint_follows_the_uploaded_track(
    upload, monkeypatch, tiny_melody_checkpoint
):
    monkeypatch.setenv("MUSICGEN_MODEL", str(tiny_melody_checkpoint))
    runtime.reset_for_tests()
    body = request(parameters={"bars": 1})
    analysis, [bass, drums] = stems_following_the_upload(body)
    assert bass["melody_source"] == drums["melody_source"] == "upload"
    assert bass["melody_conditioned"] is True and drums["melody_conditioned"] is True
    assert bass["samples"] == drums["samples"] == round(4 * 60 / 112 * 32000)
    # The stems read the analysis's copy, never the upload: it may be gone by now.
    first_audio = runtime.blob_store().download_bytes(bass["file"])
    runtime.blob_store().delete(f"uploads/{TRACK_ID}")
    same = activities.generate_stem(
        {"request": body, "stem": "bass", "stem_index": 0, "upload": analysis}
    )
    assert runtime.blob_store().download_bytes(same["file"]) == first_audio
    # Another track, same request and seed: the melody changes the stem.
    other = chord_pad([(48, 52, 55, 60), (53, 57, 60, 65)] * 6, 1.0)
    runtime.blob_store().upload_bytes(
        f"uploads/{TRACK_ID}", encode_audio(other, SR, OutputFormat.WAV), "audio/wav"
    )
    analysis = activities.analyze_upload({"request": body})["analysis"]
    again = activities.generate_stem(
        {"request": body, "stem": "bass", "stem_index": 0, "upload": analysis}
    )
    assert again["file"] == bass["file"]
    assert runtime.blob_store().download_bytes(again["file"]) != first_audio


def chord_request(**parameters):
    return parse_request(
        {
            "generation_request_id": "req-mus-chords",
            "target_stems": ["bass", "keys"],
            "parameters": {"bars": 2, "target_bpm": 120, "chords": "Am F C G", **parameters},
            "seed": 3,
        }
    ).model_dump(mode="json")


def generate_all(body):
    return [
        activities.generate_stem({"request": body, "stem": stem, "stem_index": i})
        for i, stem in enumerate(body["target_stems"])
    ]


def test_a_melody_checkpoint_without_an_upload_follows_the_requests_chords(
    service_env, monkeypatch, tiny_melody_checkpoint
):
    monkeypatch.setenv("MUSICGEN_MODEL", str(tiny_melody_checkpoint))
    runtime.reset_for_tests()
    body = chord_request()
    bass, keys = generate_all(body)
    assert bass["melody_source"] == keys["melody_source"] == "chords"
    assert bass["melody_conditioned"] is True
    assert bass["samples"] == keys["samples"] == round(2 * 4 * 60 / 120 * 32000)
    assert bass["musical"]["chords"] == ["Am", "F", "C", "G"]
    assert bass["musical"]["chords_source"] == "request"
    audio, rate = decode_audio(runtime.blob_store().download_bytes(bass["file"]))
    assert (audio.shape[1], rate) == (bass["samples"], 32000)


def test_a_text_only_checkpoint_hears_the_requests_chords_in_its_prompt_only(service_env):
    [bass, keys] = generate_all(chord_request(key="A minor"))
    for stem in (bass, keys):
        assert stem["melody_source"] is None and stem["melody_conditioned"] is False
        assert "in A minor" in stem["prompt"] and "chords Am F C G" in stem["prompt"]


def test_a_mix_that_cannot_be_made_is_a_warning_not_a_lost_manifest(upload):
    body = request(parameters={"bars": 1})
    analysis, stems = stems_following_the_upload(body)
    runtime.blob_store().delete(stems[1]["file"])  # gone before the mix
    result = activities.finalize_generation(
        {"request": body, "stems": stems, "failed_stems": [], "upload": analysis}
    )
    assert result["mix_url"] is None
    manifest = json.loads(runtime.blob_store().download_bytes(result["manifest_blob_name"]))
    assert manifest["mix"] is None
    assert manifest["warnings"][-1].startswith("mix not written: storage download failed")
    assert len(manifest["stems"]) == 2


def test_bars_following_an_upload_without_a_beat_are_refused(service_env):
    silence = encode_audio(np.zeros((1, SR * 3), np.float32), SR, OutputFormat.WAV)
    runtime.blob_store().upload_bytes(f"uploads/{TRACK_ID}", silence, "audio/wav")
    result = activities.analyze_upload({"request": request(parameters={"bars": 4})})
    assert result["ok"] is False and "none was detected in the uploaded track" in result["error"]
    unlocked = activities.analyze_upload({"request": request(parameters={"duration_seconds": 2})})
    assert unlocked["ok"] is True and unlocked["analysis"]["bpm"] is None


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: _wav(np.zeros(1000, np.float32), 1_000_003), "sample rate 1000003 Hz"),
        (lambda: _wav(np.zeros((100, 40), np.float32), 8000), "40 channels"),
        (lambda: _wav(np.full(8000, np.nan, np.float32), 8000, "FLOAT"), "NaN or infinite"),
    ],
)
def test_an_unusable_upload_is_a_caller_error_not_a_crash(upload, make, reason):
    runtime.blob_store().upload_bytes(f"uploads/{TRACK_ID}", make(), "audio/wav")
    result = activities.analyze_upload({"request": request()})
    assert result["ok"] is False
    assert "not usable" in result["error"] and reason in result["error"]


def _wav(audio: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()
