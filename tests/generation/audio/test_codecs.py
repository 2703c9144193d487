import io
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from generation.audio.arrays import db_to_gain
from generation.audio.codecs import ENCODINGS, decode_excerpt, encode_audio, protect_from_clipping
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


# --- uploads: bounded memory whatever the file claims -------------------------------------


def silent_flac(channels: int, seconds: float, rate: int = 44_100) -> bytes:
    buffer = io.BytesIO()
    with sf.SoundFile(
        buffer, "w", samplerate=rate, channels=channels, format="FLAC", subtype="PCM_16"
    ) as f:
        block = np.zeros((rate * 10, channels), dtype=np.float32)
        for _ in range(int(seconds // 10)):
            f.write(block)
    return buffer.getvalue()


def peak_traced_mb(function, *args, **kwargs) -> float:
    tracemalloc.start()
    try:
        function(*args, **kwargs)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_a_long_multichannel_upload_costs_only_the_excerpt():
    ten, twenty = silent_flac(8, 600), silent_flac(8, 1200)
    assert len(twenty) < 2_000_000  # a small file that decodes to gigabytes in full
    excerpt = decode_excerpt(twenty, max_seconds=180.0)
    assert excerpt.mono.shape == (1, 180 * 44_100) and excerpt.channels == 8
    assert excerpt.duration_s == pytest.approx(1200.0)
    peaks = [peak_traced_mb(decode_excerpt, data, max_seconds=180.0) for data in (ten, twenty)]
    # 180 s mono float32 at 44.1 kHz is 30 MB; one block of 8 channels adds 2 MB.
    assert max(peaks) < 45 and abs(peaks[0] - peaks[1]) < 5


@pytest.mark.parametrize("rate", [4_000, 1_000_003, 9_999_991])
def test_rates_outside_the_accepted_range_are_refused(rate):
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(1000, np.float32), rate, format="WAV", subtype="PCM_16")
    with pytest.raises(ValueError, match=r"not usable: sample rate .* outside 8000\.\.192000"):
        decode_excerpt(buffer.getvalue(), max_seconds=180.0, what="upload")


def test_too_many_channels_are_refused():
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((100, 33), np.float32), 8000, format="WAV", subtype="PCM_16")
    with pytest.raises(ValueError, match="33 channels"):
        decode_excerpt(buffer.getvalue(), max_seconds=180.0)


def test_non_finite_samples_are_a_caller_error():
    audio = np.zeros(8000, np.float32)
    audio[100] = np.nan
    buffer = io.BytesIO()
    sf.write(buffer, audio, 8000, format="WAV", subtype="FLOAT")
    with pytest.raises(ValueError, match="NaN or infinite"):
        decode_excerpt(buffer.getvalue(), max_seconds=180.0)


def test_a_header_claiming_an_absurd_length_reads_only_what_is_there():
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(16_000, np.float32), 16_000, format="WAV", subtype="PCM_16")
    data = bytearray(buffer.getvalue())
    riff, chunk = data.find(b"RIFF"), data.find(b"data")
    data[riff + 4 : riff + 8] = (0xFFFFFFF0).to_bytes(4, "little")
    data[chunk + 4 : chunk + 8] = (0xFFFFFFE0).to_bytes(4, "little")  # claims ~18 hours
    peak = peak_traced_mb(decode_excerpt, bytes(data), max_seconds=180.0)
    excerpt = decode_excerpt(bytes(data), max_seconds=180.0)
    assert excerpt.mono.shape[1] <= 16_000 and peak < 20


def test_running_out_of_memory_is_a_caller_error(monkeypatch):
    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(np, "empty", no_memory)
    with pytest.raises(ValueError, match="too large to decode"):
        decode_excerpt(silent_flac(1, 10), max_seconds=180.0)


def test_an_excerpt_is_the_downmixed_start_of_the_file():
    rate = 8000
    stereo = np.stack([np.linspace(-1, 1, rate * 4), np.zeros(rate * 4)], axis=1)
    buffer = io.BytesIO()
    sf.write(buffer, stereo.astype(np.float32), rate, format="WAV", subtype="FLOAT")
    excerpt = decode_excerpt(buffer.getvalue(), max_seconds=1.5)
    assert excerpt.mono.shape == (1, int(1.5 * rate))
    np.testing.assert_allclose(excerpt.mono[0], stereo[: int(1.5 * rate), 0] / 2, atol=1e-6)
