"""Small helpers every audio module shares: the array shape, the one fade ramp, dB.

Audio in this package is float32 ``[channels, samples]`` (a 1-D array is taken as mono).
"""

from __future__ import annotations

import numpy as np
import soxr


def as_2d(audio: np.ndarray) -> np.ndarray:
    """``audio`` as float32 ``[channels, samples]``, non-finite samples made silent.

    Raises ``ValueError`` for arrays of more than two dimensions.
    """
    array = np.asarray(audio, dtype=np.float32)
    if array.ndim == 1:
        array = array[np.newaxis, :]
    if array.ndim != 2:
        raise ValueError(f"audio must be [channels, samples], got shape {array.shape}")
    return np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)


def raised_cosine(length: int) -> np.ndarray:
    """A raised-cosine ramp of ``length`` samples rising from 0 to 1, float64: the one fade
    shape used wherever audio is cut (reverse it to fade out) or crossfaded (``1 - ramp``
    is its complement)."""
    return 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, length, dtype=np.float64))


def db_to_gain(db: float) -> float:
    """Linear gain of ``db`` decibels."""
    return float(10 ** (db / 20))


def resample(audio: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """``audio`` (float32 ``[channels, samples]``) at ``to_hz``: soxr's high quality, whose
    cost is bounded by the lengths whatever the rates' ratio."""
    array = as_2d(audio)
    if from_hz == to_hz:
        return array
    out = soxr.resample(array.T, from_hz, to_hz, quality="HQ")
    return np.ascontiguousarray(np.asarray(out, dtype=np.float32).reshape(-1, array.shape[0]).T)
