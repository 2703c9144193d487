import math

import pytest

from generation.errors import InvalidRequestError
from generation.request import MAX_SEED, OutputFormat, Stem, parse_request


def body(**overrides):
    data = {
        "generation_request_id": "req-1",
        "audio_file_id": "file-1",
        "target_stems": ["guitar", "bass", "drums"],
        "parameters": {
            "target_bpm": 120,
            "duration_seconds": 10,
            "style": "rock",
            "prompt": "energetic",
        },
    }
    data.update(overrides)
    return data


def fields_of(error: InvalidRequestError) -> set[str]:
    return {item["field"] for item in error.errors}


def test_the_old_workers_body_is_valid_and_gets_defaults():
    request = parse_request(body())
    assert request.target_stems == [Stem.GUITAR, Stem.BASS, Stem.DRUMS]
    assert request.output_format is OutputFormat.WAV
    assert request.seed is None and request.callback_url is None
    assert request.parameters.top_k is None  # settings decide


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"target_stems": []}, "target_stems"),
        ({"target_stems": ["guitar", "guitar"]}, "target_stems"),
        ({"target_stems": ["kazoo"]}, "target_stems.0"),
        ({"generation_request_id": "../etc/passwd"}, "generation_request_id"),
        ({"generation_request_id": ""}, "generation_request_id"),
        ({"seed": -1}, "seed"),
        ({"seed": MAX_SEED + 1}, "seed"),
        ({"output_format": "ogg"}, "output_format"),
        ({"callback_url": "ftp://x"}, "callback_url"),
        ({"surprise": 1}, "surprise"),
        ({"parameters": {"duration_seconds": 0.5}}, "parameters.duration_seconds"),
        ({"parameters": {"duration_seconds": 301}}, "parameters.duration_seconds"),
        ({"parameters": {"target_bpm": 20}}, "parameters.target_bpm"),
        ({"parameters": {"duration_seconds": math.nan}}, "parameters.duration_seconds"),
        ({"parameters": {"temperature": 0}}, "parameters.temperature"),
    ],
)
def test_invalid_fields_are_named(overrides, field):
    with pytest.raises(InvalidRequestError) as caught:
        parse_request(body(**overrides))
    assert field in fields_of(caught.value)


def test_every_error_is_listed_at_once():
    with pytest.raises(InvalidRequestError) as caught:
        parse_request({"target_stems": "guitar", "seed": "x"})
    assert {"generation_request_id", "target_stems", "seed"} <= fields_of(caught.value)


def test_with_seed_keeps_a_given_seed_and_draws_a_missing_one():
    assert parse_request(body(seed=7)).with_seed().seed == 7
    drawn = parse_request(body()).with_seed().seed
    assert drawn is not None and 0 <= drawn <= MAX_SEED
