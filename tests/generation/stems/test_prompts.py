import pytest

from generation.errors import InvalidRequestError, UnknownStemError
from generation.request import Stem
from generation.stems.prompts import STEM_DESCRIPTIONS, build_stem_prompt, known_stems, parse_stem

REQUIRED_STEMS = [
    "guitar",
    "bass",
    "drums",
    "piano",
    "keys",
    "synth",
    "strings",
    "brass",
    "vocals",
    "percussion",
    "pads",
]


def test_every_required_stem_is_known_and_described():
    assert set(REQUIRED_STEMS) <= set(known_stems())
    assert set(STEM_DESCRIPTIONS) == set(Stem)


@pytest.mark.parametrize("stem", REQUIRED_STEMS)
def test_prompt_asks_for_the_instrument_alone(stem):
    text = build_stem_prompt(stem)
    assert "isolated" in text
    assert "no " in text  # excludes other instruments


def test_prompt_carries_style_user_words_and_tempo_in_order():
    text = build_stem_prompt("drums", style="rock", target_bpm=120, prompt="energetic")
    assert text.startswith(STEM_DESCRIPTIONS[Stem.DRUMS])
    assert text.endswith(", rock, energetic, 120 bpm")


def test_prompt_formats_fractional_tempo_and_skips_empty_parts():
    assert build_stem_prompt("bass", target_bpm=92.5) == STEM_DESCRIPTIONS[Stem.BASS] + ", 92.5 bpm"
    assert build_stem_prompt("bass", style="  ", prompt="") == STEM_DESCRIPTIONS[Stem.BASS]


def test_stem_names_are_case_and_space_insensitive():
    assert parse_stem(" Guitar ") is Stem.GUITAR


def test_unknown_stem_is_a_clear_caller_error():
    with pytest.raises(UnknownStemError) as caught:
        build_stem_prompt("kazoo")
    assert isinstance(caught.value, InvalidRequestError)
    assert "kazoo" in str(caught.value) and "guitar" in str(caught.value)
