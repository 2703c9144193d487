"""Audio files in and out: the output formats, encoding to bytes or files, decoding
uploads. Arrays in, bytes or files out; no Azure.

Clip guard: ``encode_audio`` scales audio whose sample peak exceeds ``PEAK_CEILING_DBTP``
(as dBFS) down as a whole so its peak sits there; quieter audio is written untouched (the
product's stems and mix are already true-peak limited below it, so for them this is a
no-op). Nothing written by this module clips.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from generation.audio.arrays import db_to_gain
from generation.audio.loudness import PEAK_CEILING_DBTP
from generation.request import OutputFormat


@dataclass(frozen=True)
class Encoding:
    """How an ``OutputFormat`` is written: container, sample type, extension and MIME type."""

    container: str
    subtype: str
    extension: str
    content_type: str


ENCODINGS: dict[OutputFormat, Encoding] = {
    OutputFormat.WAV: Encoding("WAV", "PCM_16", "wav", "audio/wav"),
    OutputFormat.WAV_24: Encoding("WAV", "PCM_24", "wav", "audio/wav"),
    OutputFormat.WAV_FLOAT: Encoding("WAV", "FLOAT", "wav", "audio/wav"),
    OutputFormat.FLAC: Encoding("FLAC", "PCM_24", "flac", "audio/flac"),
    OutputFormat.MP3: Encoding("MP3", "MPEG_LAYER_III", "mp3", "audio/mpeg"),
}


def protect_from_clipping(audio: np.ndarray, ceiling_dbfs: float = PEAK_CEILING_DBTP) -> np.ndarray:
    """``audio`` (any shape, float) scaled down so its peak is at most ``ceiling_dbfs``.

    Non-finite samples (never expected from the codec) become silence rather than noise.
    """
    clean = np.nan_to_num(np.asarray(audio, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    ceiling = db_to_gain(ceiling_dbfs)
    peak = float(np.max(np.abs(clean))) if clean.size else 0.0
    if peak > ceiling:
        clean = clean * (ceiling / peak)
    return clean


def encode_audio(audio: np.ndarray, sample_rate: int, output_format: OutputFormat) -> bytes:
    """Encode ``audio`` (float, shape ``[channels, samples]``) as a file in memory, through
    the clip guard (``protect_from_clipping``)."""
    encoding = ENCODINGS[output_format]
    buffer = io.BytesIO()
    frames = np.ascontiguousarray(
        np.atleast_2d(protect_from_clipping(audio)).T
    )  # soundfile wants [samples, channels]
    sf.write(buffer, frames, sample_rate, format=encoding.container, subtype=encoding.subtype)
    return buffer.getvalue()


def decode_audio(data: bytes, *, what: str = "audio") -> tuple[np.ndarray, int]:
    """Decode a WAV, FLAC, OGG or MP3 file held in ``data``: float32 ``[channels, samples]``
    and its sample rate in Hz. Raises ``ValueError`` naming ``what`` when it cannot."""
    if not data:
        raise ValueError(f"{what} is empty")
    try:
        frames, sample_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        reason = getattr(error, "error_string", None) or str(error)
        raise ValueError(
            f"{what} is not a readable audio file (WAV, FLAC, MP3 or OGG expected): {reason}"
        ) from None
    if frames.shape[0] == 0:
        raise ValueError(f"{what} holds no audio samples")
    return np.ascontiguousarray(frames.T), int(sample_rate)


# What an uploaded track may be. Rates outside this range are not music files a producer
# sends; more channels than this are not a stereo or surround mix.
MIN_UPLOAD_RATE_HZ = 8_000
MAX_UPLOAD_RATE_HZ = 192_000
MAX_UPLOAD_CHANNELS = 32
_BLOCK_FRAMES = 1 << 16  # frames read at a time: at most 8 MB with 32 channels


@dataclass(frozen=True)
class Excerpt:
    """The start of an audio file, downmixed: ``mono`` float32 ``[1, samples]`` at
    ``sample_rate`` Hz, the file's ``channels``, and its length in seconds as its header
    gives it (``None`` when the header does not say)."""

    mono: np.ndarray
    sample_rate: int
    channels: int
    duration_s: float | None


def decode_excerpt(data: bytes, *, max_seconds: float, what: str = "audio") -> Excerpt:
    """Decode at most the first ``max_seconds`` of the file in ``data`` (WAV, FLAC, OGG,
    MP3), block by block, averaging the channels as it reads: memory is bounded by
    ``max_seconds`` at the highest accepted rate (180 s at 192 kHz: 138 MB), whatever the
    file claims. Raises ``ValueError`` naming ``what`` for anything not usable: not audio,
    a rate outside 8..192 kHz, more than 32 channels, no samples, NaN or infinite samples,
    or a file too large to decode (``MemoryError``)."""
    if not data:
        raise ValueError(f"{what} is empty")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate, channels = int(f.samplerate), int(f.channels)
            if not MIN_UPLOAD_RATE_HZ <= rate <= MAX_UPLOAD_RATE_HZ:
                raise ValueError(
                    f"{what} is not usable: sample rate {rate} Hz is outside "
                    f"{MIN_UPLOAD_RATE_HZ}..{MAX_UPLOAD_RATE_HZ} Hz"
                )
            if not 1 <= channels <= MAX_UPLOAD_CHANNELS:
                raise ValueError(
                    f"{what} is not usable: {channels} channels (at most {MAX_UPLOAD_CHANNELS})"
                )
            limit = int(max_seconds * rate)
            mono = np.empty(limit, dtype=np.float32)
            filled = 0
            while filled < limit:
                block = f.read(min(_BLOCK_FRAMES, limit - filled), dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    break
                if not np.isfinite(block).all():
                    raise ValueError(f"{what} is not usable: it holds NaN or infinite samples")
                mono[filled : filled + block.shape[0]] = block.mean(axis=1)
                filled += block.shape[0]
            frames = int(f.frames) if 0 < f.frames < 2**62 else None
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        reason = getattr(error, "error_string", None) or str(error)
        raise ValueError(
            f"{what} is not a readable audio file (WAV, FLAC, MP3 or OGG expected): {reason}"
        ) from None
    except MemoryError:
        raise ValueError(f"{what} is not usable: too large to decode") from None
    if filled == 0:
        raise ValueError(f"{what} holds no audio samples")
    return Excerpt(
        mono=mono[np.newaxis, :filled],
        sample_rate=rate,
        channels=channels,
        duration_s=None if frames is None else round(frames / rate, 4),
    )
