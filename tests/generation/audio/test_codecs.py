import io

import numpy as np
import pytest
import soundfile as sf

from generation.audio.arrays import db_to_gain
from generation.audio.codecs import ENCODINGS, encode_audio, protect_from_clipping
from generation.request import OutputFormat


def test_loud_audio_is_scaled_to_the_ceiling():
    loud = np.array([[0.0, 2.0, -4.0]], dtype=np.float32)
    out = protect_from_clipping(loud)
    assert np.max(np.abs(out)) == pytest.approx(db_to_gain(-1.0))
    assert out[0, 1] / out[0, 2] == pytest.approx(-0.5)  # shape kept


def test_quiet_audio_is_untouched_and_nan_becomes_silence():
    quiet = np.array([[0.1, -0.2, np.nan]], dtype=np.float32)
    out = protect_from_clipping(quiet)
    assert out.tolist()[0][:2] == pytest.approx([0.1, -0.2])
    assert out[0, 2] == 0.0


@pytest.mark.parametrize(
    ("fmt", "subtype"),
    [
        (OutputFormat.WAV, "PCM_16"),
        (OutputFormat.WAV_24, "PCM_24"),
        (OutputFormat.WAV_FLOAT, "FLOAT"),
    ],
)
def test_formats_round_trip_with_their_sample_type(fmt, subtype):
    audio = (0.5 * np.sin(np.linspace(0, 100, 3200))).astype(np.float32)[None, :]
    data = encode_audio(audio, 32000, fmt)
    info = sf.info(io.BytesIO(data))
    assert (info.samplerate, info.frames, info.channels, info.subtype) == (32000, 3200, 1, subtype)
    decoded, _ = sf.read(io.BytesIO(data), dtype="float32")
    assert np.allclose(decoded, audio[0], atol=1e-4)
    assert ENCODINGS[fmt].content_type == "audio/wav"


@pytest.mark.parametrize(
    ("fmt", "container", "content_type"),
    [(OutputFormat.FLAC, "FLAC", "audio/flac"), (OutputFormat.MP3, "MP3", "audio/mpeg")],
)
def test_flac_and_mp3_keep_length_and_sound(fmt, container, content_type):
    audio = (0.5 * np.sin(2 * np.pi * 440 * np.arange(32000) / 32000)).astype(np.float32)
    data = encode_audio(audio[None, :], 32000, fmt)
    info = sf.info(io.BytesIO(data))
    assert (info.format, info.samplerate, info.channels) == (container, 32000, 1)
    decoded, _ = sf.read(io.BytesIO(data), dtype="float32")
    assert decoded.shape == (32000,)
    correlation = np.corrcoef(decoded, audio)[0, 1]
    assert correlation > (0.9999 if fmt is OutputFormat.FLAC else 0.99)
    assert ENCODINGS[fmt].content_type == content_type
    assert ENCODINGS[fmt].extension == fmt.value


def test_encoding_goes_through_the_clip_guard():
    hot = np.full((1, 100), 1.5, np.float32)  # would clip as PCM
    for fmt in (OutputFormat.WAV_FLOAT, OutputFormat.WAV_24):
        decoded, _ = sf.read(io.BytesIO(encode_audio(hot, 32000, fmt)), dtype="float32")
        assert np.max(np.abs(decoded)) == pytest.approx(10 ** (-1 / 20), abs=1e-4)
