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
