"""Does the stem clash? The harmony check on parts rendered in the key and out of it.

    .venv/bin/python -m benchmarks.harmony_fit_eval [--set dev|held-out|...] [--verbose]

Every pitched part of the evaluation's keyed pieces (``benchmarks/musical_pieces.py``: the
arrangements and the Bach chorales, each part at least ``MIN_NOTES`` notes) is rendered
alone with FluidSynth, as written and transposed up by 1, 2, 6 and 7 semitones, so it is
known which parts are in the piece's key and chords and which clash with them: a semitone,
a whole tone and a tritone off clash outright; a fifth off moves one or two of the part's
pitch classes out of the key (one of a major scale; a minor key's raised leading tone adds
one). The same pieces' drum kits are rendered alone too, and white and brown noise made
(once, not per set): nothing there is pitched, so the project should give no number
(None) rather than a share. Renderings are cached under ``benchmarks/.cache/harmony`` by
the piece's rendering and the shift.
The parts are synthetic (General MIDI renders of written notes); a generated stem's
overtones and noise are rougher, so the rates are the check's on clean material.

Two measures side by side, each turned into a verdict by a threshold:

- ``project``: ``generation.audio.key.in_key_share`` (the share of the pitched sound
  whose strongest pitch class is in the key or its chords) against the product's
  ``IN_KEY_WARNING`` (``generation/stems/finish.py``).
- ``librosa``: the share of ``librosa.feature.chroma_cqt``'s energy on the same pitch
  classes, against the threshold that flags the same share of written parts on the set
  (so it is compared at the project's rate of false warnings, in its favour).

Printed: the project's reading of the two noises; then per set, for each shift, how many
parts each measure flags, and the median; how many drum kits the project gives no number;
then the written parts the project flags, by name (``--verbose``: every part).
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import pretty_midi
import soundfile as sf

from benchmarks.musical_pieces import SETS, build_set, render
from generation.audio.harmony import key_pitch_classes
from generation.audio.key import in_key_share
from generation.stems.finish import IN_KEY_WARNING, may_clash

logger = logging.getLogger("harmony_fit_eval")

ROOT = Path(__file__).resolve().parent / ".cache"
SHIFTS = (0, 1, 2, 6, 7)  # semitones up; 0 is the part as written
SHIFT_NAMES = {
    0: "as written",
    1: "a semitone up",
    2: "a tone up",
    6: "a tritone up",
    7: "a fifth up",
}
MIN_NOTES = 8  # a part of a note or two says nothing about its key


@dataclass(frozen=True)
class Part:
    """One rendered part: its piece, instrument, shift (semitones) and both measures."""

    set: str
    piece: str
    instrument: str
    shift: int
    project: float | None
    librosa: float


def chroma_share(audio: np.ndarray, sr: int, pitch_classes: frozenset[int]) -> float:
    """The baseline: the share of ``librosa.feature.chroma_cqt``'s energy, summed over
    time, on ``pitch_classes``."""
    chroma = librosa.feature.chroma_cqt(y=audio.mean(axis=0), sr=sr).sum(axis=1)
    return float(chroma[sorted(pitch_classes)].sum() / max(float(chroma.sum()), 1e-9))


def noises(seconds: float = 20.0, sr: int = 44100) -> dict[str, np.ndarray]:
    """White and brown noise (``[1, samples]``, peak 0.3): sound with no pitch at all."""
    rng = np.random.default_rng(0)
    white = rng.standard_normal(round(seconds * sr))
    brown = np.cumsum(rng.standard_normal(round(seconds * sr)))
    brown -= np.convolve(brown, np.ones(2000) / 2000, mode="same")  # no drift below ~20 Hz
    return {
        name: (0.3 * x / np.abs(x).max())[np.newaxis].astype(np.float32)
        for name, x in (("white noise", white), ("brown noise", brown))
    }


def render_alone(
    instrument: pretty_midi.Instrument, bpm: float, path: Path, shift: int = 0
) -> tuple[np.ndarray, int]:
    """``instrument`` alone, transposed up by ``shift`` semitones, rendered to ``path``
    once (a cache) and read: ``([samples, channels], sr)``."""
    if not path.exists():
        alone = pretty_midi.PrettyMIDI(initial_tempo=bpm)
        moved = copy.deepcopy(instrument)
        for note in moved.notes:
            note.pitch += shift
        alone.instruments.append(moved)
        render(alone, path)
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    return audio, int(sr)


def measure_set(
    which: str, musical_cache: Path, cache: Path
) -> tuple[list[Part], dict[str, float | None]]:
    """Render (once) and measure every pitched part of the ``which`` set's keyed pieces;
    and the project's reading of each drum kit alone, by piece name."""
    cache.mkdir(parents=True, exist_ok=True)
    parts = []
    kits: dict[str, float | None] = {}  # by "piece" or "piece part n"
    for piece, wav in build_set(which, musical_cache):
        if piece.key is None:
            continue
        allowed = key_pitch_classes(piece.key, piece.chords)
        midi = pretty_midi.PrettyMIDI(str(wav.with_suffix(".mid")))
        for index, instrument in enumerate(midi.instruments):
            if instrument.is_drum and instrument.notes:
                path = cache / f"{wav.stem}-{index}-drums.wav"
                audio, sr = render_alone(instrument, piece.bpm, path)
                name = piece.name if piece.name not in kits else f"{piece.name} part {index + 1}"
                kits[name] = in_key_share(audio.T, sr, allowed)
            if instrument.is_drum or len(instrument.notes) < MIN_NOTES:
                continue
            for shift in SHIFTS:
                path = cache / f"{wav.stem}-{index}-{shift}.wav"
                audio, sr = render_alone(instrument, piece.bpm, path, shift)
                parts.append(
                    Part(
                        set=which,
                        piece=piece.name,
                        instrument=instrument.name or f"part {index + 1}",
                        shift=shift,
                        project=in_key_share(audio.T, sr, allowed),
                        librosa=chroma_share(audio.T, sr, allowed),
                    )
                )
        logger.info("%s: %s measured", which, piece.name)
    return parts, kits


def report(which: str, parts: list[Part], kits: dict[str, float | None], verbose: bool) -> str:
    """The set's table (Markdown), the drum kits given a number, and the written parts the
    project flags."""
    written = [p for p in parts if p.shift == 0 and p.project is not None]
    flagged = sum(may_clash(p.project) for p in written)
    # librosa's threshold: the one that flags as many written parts as the project does.
    ranked = sorted(p.librosa for p in written)
    librosa_threshold = ranked[flagged] if flagged < len(ranked) else ranked[-1] + 1e-9
    lines = [
        f"| {which}: {len(written)} parts | project: flagged (median) | "
        f"librosa: flagged (median) |",
        "| --- | --- | --- |",
    ]
    for shift in SHIFTS:
        rows = [p for p in parts if p.shift == shift and p.project is not None]
        project = sum(may_clash(p.project) for p in rows)
        base = sum(p.librosa < librosa_threshold for p in rows)
        lines.append(
            f"| {SHIFT_NAMES[shift]} | {project} of {len(rows)} "
            f"({np.median([p.project for p in rows]):.2f}) | {base} of {len(rows)} "
            f"({np.median([p.librosa for p in rows]):.2f}) |"
        )
    read = {name: share for name, share in kits.items() if share is not None}
    lines.append(
        f"\ndrum kits alone: {len(kits) - len(read)} of {len(kits)} given no number"
        + "".join(f"; {name} {share:.2f}" for name, share in read.items())
    )
    lines.append(
        f"thresholds: project {IN_KEY_WARNING} (IN_KEY_WARNING); librosa "
        f"{librosa_threshold:.3f} (flags as many written parts)"
    )
    shown = parts if verbose else [p for p in written if may_clash(p.project)]
    for p in shown:
        project = "-" if p.project is None else f"{p.project:.2f}"
        lines.append(
            f"  {p.piece} {p.instrument} ({SHIFT_NAMES[p.shift]}): project {project}, "
            f"librosa {p.librosa:.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", default="dev", choices=[*SETS, "all"])
    parser.add_argument("--verbose", action="store_true", help="every part, not only the flagged")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name, noise in noises().items():
        share = in_key_share(noise, 44100, key_pitch_classes("C major", ()))
        sys.stdout.write(f"{name}, 20 s: project {'-' if share is None else f'{share:.2f}'}\n")
    sys.stdout.write("\n")
    for which in list(SETS) if args.set == "all" else [args.set]:
        parts, kits = measure_set(which, ROOT / "musical", ROOT / "harmony")
        sys.stdout.write(report(which, parts, kits, args.verbose) + "\n\n")


if __name__ == "__main__":
    main()
