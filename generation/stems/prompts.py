"""Text prompts that ask MusicGen for one instrument alone (an isolated stem, not a mix)."""

from __future__ import annotations

from generation.errors import UnknownStemError
from generation.request import Stem

# What each stem sounds like, and what it must not contain. MusicGen was trained on full
# mixes, so the prompt names the instrument, says "solo"/"isolated" and excludes the
# instruments it most often drags in with it.
STEM_DESCRIPTIONS: dict[Stem, str] = {
    Stem.GUITAR: "solo electric guitar, isolated guitar track, no drums, no bass, no vocals",
    Stem.BASS: "solo bass guitar, isolated bassline, no drums, no guitar, no vocals",
    Stem.DRUMS: "solo drum kit, isolated drums and cymbals, no bass, no melody, no vocals",
    Stem.PIANO: "solo acoustic piano, isolated piano track, no drums, no bass, no vocals",
    Stem.KEYS: "solo electric piano and organ keys, isolated keyboard track, no drums, no vocals",
    Stem.SYNTH: "solo synthesizer lead and arpeggio, isolated synth track, no drums, no vocals",
    Stem.STRINGS: "solo string section, violins violas and cellos, isolated strings, no drums",
    Stem.BRASS: "solo brass section, trumpets trombones and horns, isolated brass, no drums",
    Stem.VOCALS: "wordless vocals, humming and choir, isolated voices, no instruments",
    Stem.PERCUSSION: "solo percussion, shakers congas and tambourine, isolated, no drum kit",
    Stem.PADS: "ambient synth pads, sustained atmospheric chords, isolated, no drums, no melody",
}


def known_stems() -> list[str]:
    """Names of every stem the prompt builder knows, in a stable order."""
    return [stem.value for stem in Stem]


def parse_stem(name: str | Stem) -> Stem:
    """``name`` as a ``Stem``; raises ``UnknownStemError`` naming the known ones."""
    try:
        return Stem(str(name).strip().lower())
    except ValueError:
        raise UnknownStemError(str(name), known_stems()) from None


def build_stem_prompt(
    stem: str | Stem,
    *,
    style: str = "",
    target_bpm: float | None = None,
    prompt: str = "",
    key: str | None = None,
    chords: str | None = None,
) -> str:
    """The text MusicGen gets for ``stem``: instrument, style, user words, key, chords, then
    tempo.

    >>> build_stem_prompt("bass", style="rock", target_bpm=120, prompt="energetic")
    'solo bass guitar, isolated bassline, no drums, no guitar, no vocals, rock, energetic, 120 bpm'
    >>> build_stem_prompt("pads", target_bpm=92.5, key="A minor").split(", ")[-2:]
    ['in A minor', '92.5 bpm']
    >>> build_stem_prompt("bass", key="A minor", chords="Am F C G").split(", ")[-2:]
    ['in A minor', 'chords Am F C G']
    """
    parts = [STEM_DESCRIPTIONS[parse_stem(stem)]]
    parts += [text for text in (style.strip(), prompt.strip()) if text]
    if key:
        parts.append(f"in {key}")
    if chords:
        parts.append(f"chords {chords}")
    if target_bpm is not None:
        parts.append(f"{target_bpm:g} bpm")
    return ", ".join(parts)
