"""One key and one chord progression per set: from the request, the upload or the seed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from generation.audio.harmony import KEYS, key_from_seed, key_pitch_classes, parse_key, same_key
from generation.errors import InvalidRequestError
from generation.request import GenerationParameters, Stem, parse_request
from generation.stems.grid import plan_grid
from generation.stems.render import prompt_for
from generation.stems.track import TrackAnalysis


def upload(key="A minor", chords=("Am", "F", "C", "G")):
    return TrackAnalysis(96.0, 0.25, key, 30.0, 44100, 2, chords=tuple(chords))


def request(seed=7, **parameters):
    return parse_request(
        {
            "generation_request_id": "harmony-1",
            "target_stems": ["guitar", "bass", "keys"],
            "parameters": parameters,
            "seed": seed,
        }
    )


def test_there_are_24_keys_and_a_seed_always_picks_one_of_them() -> None:
    assert len(set(KEYS)) == 24
    assert {key_from_seed(s) for s in range(48)} == set(KEYS)
    assert key_from_seed(7) == key_from_seed(7 + 24)


@pytest.mark.parametrize("text", ["A minor", "Bb major", "F# minor", " C major "])
def test_valid_keys(text: str) -> None:
    assert parse_key(text) == text.strip()
    assert GenerationParameters(key=text).key == text.strip()


@pytest.mark.parametrize("text", ["H minor", "A Minor", "Am", "A dorian", "A  minor"])
def test_invalid_keys_are_a_400_naming_the_key(text: str) -> None:
    with pytest.raises(ValidationError, match="invalid key"):
        GenerationParameters(key=text)
    with pytest.raises(InvalidRequestError) as caught:
        request(key=text)
    assert repr(text) in str(caught.value.errors)


def test_invalid_chords_are_a_400_naming_the_symbol() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        request(chords="Am F Cx G")
    assert "'Cx'" in str(caught.value.errors)
    assert GenerationParameters(chords="Am  F\tC G7").chords == "Am F C G7"


def test_enharmonic_keys_are_the_same_key() -> None:
    assert same_key("A# minor", "Bb minor")
    assert not same_key("A minor", "A major")


def test_without_key_or_upload_every_stem_gets_the_seeds_key() -> None:
    req = request(seed=11, target_bpm=100)
    plan = plan_grid(req.parameters, seed=req.seed)
    assert (plan.key, plan.key_source) == (key_from_seed(11), "seed")
    prompts = [prompt_for(req, stem) for stem in (Stem.GUITAR, Stem.BASS, Stem.KEYS)]
    assert all(f"in {key_from_seed(11)}" in p for p in prompts)


def test_the_upload_gives_key_and_chords_unless_the_request_sets_them() -> None:
    plan = plan_grid(GenerationParameters(), upload(), seed=3)
    assert (plan.key, plan.key_source) == ("A minor", "upload")
    assert (plan.chords, plan.chords_source) == (("Am", "F", "C", "G"), "upload")
    assert plan.notes == ()
    mine = plan_grid(GenerationParameters(key="C major", chords="C G Am F"), upload(), seed=3)
    assert (mine.key, mine.key_source) == ("C major", "request")
    assert (mine.chords, mine.chords_source) == (("C", "G", "Am", "F"), "request")
    assert any("differs from the upload's detected A minor" in n for n in mine.notes)
    assert any("chords differ" in n for n in mine.notes)
    agreeing = plan_grid(GenerationParameters(key="A minor"), upload(), seed=3)
    assert agreeing.notes == ()


def test_prompts_carry_key_and_chords() -> None:
    req = request(key="D minor", chords="Dm Bb F C", target_bpm=90)
    prompt = prompt_for(req, Stem.BASS, plan_grid(req.parameters, seed=req.seed))
    assert prompt.endswith("in D minor, chords Dm Bb F C, 90 bpm")


def test_summary_reports_key_chords_and_their_sources() -> None:
    summary = plan_grid(GenerationParameters(chords="Am G"), upload(), seed=1).summary()
    assert summary["key"] == "A minor" and summary["key_source"] == "upload"
    assert summary["chords"] == ["Am", "G"] and summary["chords_source"] == "request"


def test_a_keys_pitch_classes_are_its_scale_and_its_chords_tones() -> None:
    assert key_pitch_classes("C major") == {0, 2, 4, 5, 7, 9, 11}
    # A minor: the natural minor and its leading tone G#.
    assert key_pitch_classes("A minor") == {9, 11, 0, 2, 4, 5, 7, 8}
    assert key_pitch_classes("Bb major") == key_pitch_classes("A# major")
    # A borrowed chord's tones belong too (D7 in A minor brings F#), a slash bass as well.
    assert key_pitch_classes("A minor", ("Am", "D7", "F/Eb")) == {9, 11, 0, 2, 4, 5, 7, 8, 6, 3}
    with pytest.raises(ValueError, match="H major"):
        key_pitch_classes("H major")
    with pytest.raises(ValueError, match="Xm"):
        key_pitch_classes("A minor", ("Xm",))
