"""Loudness and peaks: BS.1770 integrated loudness, true peak, a true-peak limiter and the
preview mix. Arrays in, arrays out; no model, no Azure.

Audio is float32 ``[channels, samples]`` at ``sr`` Hz; loudness in LUFS (ITU-R BS.1770
integrated loudness), peaks in dBTP (true peak, measured 4x oversampled).
``normalize_loudness`` is a pure gain to a target (it may exceed 0 dBFS; follow it with
``true_peak_limit``). ``mix`` sums stems and limits the sum to ``PEAK_CEILING_DBTP``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pedalboard
import pyloudnorm
from scipy.signal import resample_poly

from generation.audio.arrays import as_2d

# The ceiling every delivered file respects: -1 dBTP leaves room for lossy encoders'
# overshoot and for inter-sample peaks a DAW's meter shows.
PEAK_CEILING_DBTP = -1.0
TRUE_PEAK_OVERSAMPLING = 4
MIN_LOUDNESS_SECONDS = 0.4  # one BS.1770 gating block


def _meter(sr: int) -> pyloudnorm.Meter:
    return pyloudnorm.Meter(sr)  # BS.1770-4, K-weighting, 400 ms gated blocks


def integrated_loudness(audio: np.ndarray, sr: int) -> float:
    """Integrated loudness of ``audio`` (``[channels, samples]``) in LUFS; -inf for silence.

    Raises ``ValueError`` for audio shorter than one 400 ms gating block.
    """
    array = as_2d(audio)
    if array.shape[1] < MIN_LOUDNESS_SECONDS * sr:
        raise ValueError(f"need at least {MIN_LOUDNESS_SECONDS} s of audio to measure loudness")
    return float(_meter(sr).integrated_loudness(array.T.astype(np.float64)))


def normalize_loudness(audio: np.ndarray, sr: int, target_lufs: float) -> np.ndarray:
    """``audio`` with one gain applied so its integrated loudness is ``target_lufs`` LUFS.

    Silence is returned unchanged. The gain is not peak-safe: limit afterwards.
    """
    array = as_2d(audio)
    loudness = integrated_loudness(array, sr)
    if not np.isfinite(loudness):
        return array
    return (array * np.float32(10 ** ((target_lufs - loudness) / 20))).astype(np.float32)


def true_peak_dbtp(audio: np.ndarray, sr: int) -> float:
    """True peak of ``audio`` in dBTP, measured ``TRUE_PEAK_OVERSAMPLING``x oversampled."""
    del sr  # oversampling ratio, not rate, is what matters
    array = as_2d(audio).astype(np.float64)
    if not array.size:
        return -np.inf
    upsampled = resample_poly(array, TRUE_PEAK_OVERSAMPLING, 1, axis=1)
    peak = max(float(np.max(np.abs(upsampled))), float(np.max(np.abs(array))))
    return 20 * np.log10(peak) if peak > 0 else -np.inf


def true_peak_limit(
    audio: np.ndarray, sr: int, ceiling_dbtp: float = PEAK_CEILING_DBTP
) -> np.ndarray:
    """``audio`` limited so its true peak is at most ``ceiling_dbtp`` dBTP.

    pedalboard's (JUCE) limiter with its threshold at the ceiling does the musical work;
    whatever inter-sample overshoot it leaves is then removed with one final gain, so the
    ceiling holds as measured by ``true_peak_dbtp``. Audio already under it is untouched.
    """
    array = as_2d(audio)
    if true_peak_dbtp(array, sr) <= ceiling_dbtp:
        return array
    limiter = pedalboard.Limiter(threshold_db=ceiling_dbtp, release_ms=100.0)
    limited = np.asarray(limiter(array, float(sr)), dtype=np.float32).reshape(array.shape)
    peak = true_peak_dbtp(limited, sr)
    if peak > ceiling_dbtp:
        # A hair under the ceiling so float32 rounding cannot land on the wrong side.
        limited *= np.float32(10 ** ((ceiling_dbtp - peak - 0.01) / 20))
    return limited


def mix(
    stems: Sequence[np.ndarray], sr: int, ceiling_dbtp: float = PEAK_CEILING_DBTP
) -> np.ndarray:
    """Sum of ``stems`` (each ``[channels, samples]``, mono broadcast to the widest), limited.

    Shorter stems are zero-padded to the longest. The result never exceeds ``ceiling_dbtp``.
    """
    if not stems:
        raise ValueError("nothing to mix")
    arrays = [as_2d(s) for s in stems]
    channels = max(a.shape[0] for a in arrays)
    if any(a.shape[0] not in (1, channels) for a in arrays):
        raise ValueError("stems must be mono or share one channel count")
    total = np.zeros((channels, max(a.shape[1] for a in arrays)), dtype=np.float32)
    for array in arrays:
        total[:, : array.shape[1]] += array
    return true_peak_limit(total, sr, ceiling_dbtp)
