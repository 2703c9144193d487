import numpy as np

from generation.request import Stem, parse_request
from generation.stems.render import render_stems, stem_seed


def request(stems, seed=7):
    return parse_request(
        {
            "generation_request_id": "r",
            "target_stems": stems,
            "seed": seed,
            "parameters": {"duration_seconds": 1},
        }
    )


def test_each_stem_has_its_own_seed_from_the_request_seed():
    assert [stem_seed(7, s) for s in (Stem.GUITAR, Stem.BASS, Stem.DRUMS)] == [7, 8, 9]
    assert stem_seed(2**32 - 1, Stem.BASS) == 0  # wraps inside the seed range


def test_a_stem_sounds_the_same_whatever_else_was_requested(tiny_model, tiny_settings):
    trio = render_stems(tiny_model, request(["guitar", "bass", "drums"]), tiny_settings)
    [bass_alone] = render_stems(tiny_model, request(["bass"]), tiny_settings)
    assert trio[1].record.stem == Stem.BASS and trio[1].record.seed == bass_alone.record.seed == 8
    assert np.allclose(trio[1].audio, bass_alone.audio, atol=1e-5)
