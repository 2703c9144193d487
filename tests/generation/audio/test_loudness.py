"""Loudness, true peak, limiter and mix."""

import numpy as np
import pytest

from generation.audio.loudness import (
    integrated_loudness,
    mix,
    normalize_loudness,
    true_peak_dbtp,
    true_peak_limit,
)
from generation.request import Stem
from generation.stems.finish import STEM_LOUDNESS_TARGETS
from tests.synthetic_audio import SR, chord_pad


def test_normalize_loudness_hits_the_target(clicks):
    audio, _ = clicks
    pad = chord_pad([(48, 52, 55, 60)] * 4)
    for source, stem in ((audio, Stem.DRUMS), (pad, Stem.PADS)):
        target = STEM_LOUDNESS_TARGETS[stem]
        normalized = normalize_loudness(source, SR, target)
        assert abs(integrated_loudness(normalized, SR) - target) < 0.5


def test_mix_never_exceeds_the_ceiling(clicks):
    audio, _ = clicks
    drums = normalize_loudness(audio, SR, -8.0)  # deliberately hot: peaks well over 0 dBFS
    pad = chord_pad([(48, 52, 55, 60)] * 20)
    bass = normalize_loudness(chord_pad([(36,)] * 20), SR, -10.0)
    mixed = mix([drums, pad, bass], SR)
    assert mixed.shape == (1, max(drums.shape[1], pad.shape[1]))
    assert true_peak_dbtp(mixed, SR) <= -1.0
    assert np.max(np.abs(mixed)) <= 10 ** (-1.0 / 20)


def test_true_peak_limit_leaves_quiet_audio_alone():
    quiet = chord_pad([(60, 64, 67)])
    assert np.array_equal(true_peak_limit(quiet, SR), quiet)


def test_loudness_needs_a_gating_block():
    with pytest.raises(ValueError):
        integrated_loudness(np.zeros((1, SR // 10), np.float32), SR)
