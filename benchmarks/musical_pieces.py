"""Multi-instrument pieces with known tempo, first downbeat, meter and key, for
``benchmarks/musical_eval.py`` and the analysis tests.

Two sources, both rendered to audio with FluidSynth and Debian's FluidR3 General MIDI
soundfont (``apt-get install fluidsynth fluid-soundfont-gm``):

- arrangements written here (``pretty_midi``): pop, syncopated funk, half-time hip-hop,
  house with off-beat open hi-hats, ska with off-beat skanks, a drum loop with hi-hats on the
  off-beats only, 3/4 waltz, 6/8, a slow ballad whose drums enter late, fast rock, bossa;
  each with a random key, tempo, lead-in silence and pickup, humanised (a few ms of timing
  jitter, velocity variation);
- Bach chorales from music21's corpus (BSD), many with a pickup, in 4/4 and 3/4, played by
  four different instruments. Their key is the key signature's major or relative minor,
  whichever the final bass note is the tonic of (chorales ending elsewhere have no key truth).

An arrangement has no key truth when its notes cannot tell the key from its parallel key
(rock on power chords over i, iv and V). Renderings are cached by truth and notes.

Truth is the MIDI grid: ``first_downbeat_s`` is the first bar line at or after the first
note (a pickup comes before it). Tempo is in quarter notes per minute, whatever the meter
(a 6/8 bar at 90 BPM lasts 3 quarter notes, 2 s), as DAWs and this service count it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pretty_midi

logger = logging.getLogger(__name__)

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
RENDER_SR = 44100
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

# General MIDI drum notes.
KICK, SNARE, RIM, CLAP, HAT, PEDAL_HAT, OPEN_HAT, RIDE, CRASH, SHAKER = (
    36,
    38,
    37,
    39,
    42,
    44,
    46,
    51,
    49,
    70,
)

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 11)  # harmonic minor: the V chord has its leading tone
# (degree, quality) per bar; every progression starts on the tonic and the piece ends on it.
MAJOR_PROGRESSIONS = (
    ((0, ""), (4, ""), (5, "m"), (3, "")),
    ((0, ""), (3, ""), (4, ""), (0, "")),
    ((0, ""), (5, "m"), (1, "m"), (4, "7")),
    ((0, "maj7"), (3, "maj7"), (1, "m7"), (4, "7")),
)
MINOR_PROGRESSIONS = (
    ((0, "m"), (3, "m"), (4, ""), (0, "m")),
    ((0, "m"), (5, ""), (3, "m"), (4, "7")),
    ((0, "m7"), (3, "m7"), (0, "m7"), (4, "7")),
    ((0, "m"), (5, ""), (2, ""), (4, "")),
)
QUALITIES = {
    "": (0, 4, 7),
    "m": (0, 3, 7),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10),
}


@dataclass(frozen=True)
class Piece:
    """One rendering's truth. ``bpm`` quarter notes per minute; ``meter`` "4/4", "3/4" or
    "6/8"; ``first_downbeat_s`` seconds into the audio; ``key`` e.g. "A minor" or None;
    ``downbeats_s`` every bar line from the first downbeat on."""

    name: str
    style: str
    bpm: float
    meter: str
    key: str | None
    first_downbeat_s: float
    downbeats_s: tuple[float, ...]
    lead_in_s: float
    pickup_beats: float
    chords: tuple[str, ...] = field(default=())

    @property
    def beats_per_bar(self) -> int:
        return int(self.meter.split("/")[0])

    @property
    def beat_unit(self) -> int:
        return int(self.meter.split("/")[1])

    @property
    def bar_s(self) -> float:
        return self.beats_per_bar * (4.0 / self.beat_unit) * 60.0 / self.bpm


@dataclass
class _Score:
    """A piece being written: instruments by name, a humanising random generator."""

    rng: np.random.Generator
    bpm: float
    meter: tuple[int, int]
    first_downbeat_s: float
    tracks: dict[str, pretty_midi.Instrument] = field(default_factory=dict)
    jitter_s: float = 0.004

    @property
    def unit_s(self) -> float:
        """One beat of the meter's unit (a quarter in 4/4, an eighth in 6/8), seconds."""
        return 60.0 / self.bpm * 4.0 / self.meter[1]

    @property
    def bar_s(self) -> float:
        return self.meter[0] * self.unit_s

    def time(self, bar: float, unit: float = 0.0) -> float:
        return self.first_downbeat_s + bar * self.bar_s + unit * self.unit_s

    def track(self, name: str, program: int = 0, drum: bool = False) -> pretty_midi.Instrument:
        if name not in self.tracks:
            self.tracks[name] = pretty_midi.Instrument(program=program, is_drum=drum, name=name)
        return self.tracks[name]

    def note(
        self, track: pretty_midi.Instrument, pitch: int, start: float, dur: float, vel: int
    ) -> None:
        jitter = float(
            np.clip(self.rng.normal(0, self.jitter_s), -2 * self.jitter_s, 2 * self.jitter_s)
        )
        start = max(start + jitter, 0.0)
        velocity = int(np.clip(vel + self.rng.integers(-8, 9), 1, 127))
        track.notes.append(pretty_midi.Note(velocity, int(pitch), start, start + max(dur, 0.03)))


def _chord_pitches(key_pc: int, minor: bool, degree: int, quality: str) -> tuple[int, list[int]]:
    scale = MINOR_SCALE if minor else MAJOR_SCALE
    root = (key_pc + scale[degree]) % 12
    return root, [root + i for i in QUALITIES[quality]]


def _symbol(root: int, quality: str) -> str:
    return PITCH_CLASSES[root] + quality


def _voicing(pitches: list[int], low: int = 55) -> list[int]:
    """Chord tones moved into one octave starting at MIDI note ``low``."""
    return sorted(low + (p - low) % 12 for p in pitches)


def _melody(  # noqa: PLR0917 (a private helper of the piece writers)
    score: _Score,
    key_pc: int,
    minor: bool,
    bars: int,
    chords: list[list[int]],
    program: int,
    units_per_note: float,
    vel: int = 80,
    start_bar: int = 0,
) -> None:
    """A random walk over the scale, landing on a chord tone at each bar line."""
    scale = MINOR_SCALE if minor else MAJOR_SCALE
    lead = score.track("lead", program)
    degree = 7 * 5 + 2  # index into an extended scale, around the fifth octave
    per_bar = round(score.meter[0] / units_per_note)
    for bar in range(start_bar, bars):
        tones = sorted({p % 12 for p in chords[bar]})
        for step in range(per_bar):
            if step == 0:
                pitch = 60 + min(tones, key=lambda pc: (pc - (scale[degree % 7] + key_pc)) % 12)
                pitch = 60 + (pitch - 60) % 12 + 12 * (degree // 7 - 5)
            else:
                degree += int(score.rng.choice([-2, -1, -1, 1, 1, 2]))
                degree = int(np.clip(degree, 7 * 5 - 3, 7 * 6 + 4))
                pitch = 12 * (degree // 7) + key_pc + scale[degree % 7]
            if score.rng.random() < 0.15 and step:
                continue  # a rest now and then
            start = score.time(bar, step * units_per_note)
            # Into C4-E6 by octaves: clipping made a C or an E of a note of any pitch class.
            pitch = 60 + (pitch - 60) % 12 if pitch < 60 else pitch
            pitch = pitch - 12 * ((pitch - 77) // 12) if pitch > 88 else pitch
            score.note(lead, int(pitch), start, units_per_note * score.unit_s * 0.9, vel)


def _pickup_phrase(
    score: _Score, key_pc: int, minor: bool, pickup_units: float, program: int
) -> None:
    """Lead notes (scale steps up to the tonic's neighbourhood) in the pickup before bar 0."""
    if pickup_units <= 0:
        return
    scale = MINOR_SCALE if minor else MAJOR_SCALE
    lead = score.track("lead", program)
    step = 0.5 if pickup_units < 1 else 1.0
    count = round(pickup_units / step)
    for i in range(count):
        unit = -pickup_units + i * step
        pitch = 72 + key_pc % 12 + scale[(7 - count + i) % 7] - 12
        score.note(lead, pitch, score.time(0, unit), step * score.unit_s * 0.9, 85)


def _progression(
    rng: np.random.Generator, key_pc: int, minor: bool, bars: int, change_every: int = 1
) -> tuple[list[list[int]], list[str], list[int]]:
    options = MINOR_PROGRESSIONS if minor else MAJOR_PROGRESSIONS
    prog = options[int(rng.integers(len(options)))]
    pitches, symbols, roots = [], [], []
    for bar in range(bars):
        degree, quality = prog[(bar // change_every) % len(prog)]
        if bar == bars - 1:
            degree, quality = 0, "m" if minor else ""
        root, notes = _chord_pitches(key_pc, minor, degree, quality)
        pitches.append(notes)
        symbols.append(_symbol(root, quality))
        roots.append(root)
    return pitches, symbols, roots


# Each style writes its bars into the score; `first` is True for bars whose drums play.
Style = Callable[[_Score, int, bool, int, dict], list[str]]


def _style_pop(s: _Score, key: int, minor: bool, bars: int, opt: dict) -> list[str]:
    chords, symbols, roots = _progression(s.rng, key, minor, bars)
    drums, bass, keys = s.track("drums", 0, True), s.track("bass", 33), s.track("keys", 0)
    for bar in range(bars):
        for beat in range(4):
            t = s.time(bar, beat)
            if beat in (0, 2) or (beat == 2.5):
                s.note(drums, KICK, t, 0.1, 110)
            if beat in (1, 3):
                s.note(drums, SNARE, t, 0.1, 105)
            s.note(drums, HAT, t, 0.05, 80)
            s.note(drums, HAT, s.time(bar, beat + 0.5), 0.05, 60)
            s.note(bass, 36 + roots[bar], t, s.unit_s * 0.45, 100)
            s.note(bass, 36 + roots[bar], s.time(bar, beat + 0.5), s.unit_s * 0.4, 85)
        for p in _voicing(chords[bar]):
            s.note(keys, p, s.time(bar), s.bar_s * 0.48, 75)
            s.note(keys, p, s.time(bar, 2), s.bar_s * 0.45, 70)
    _melody(s, key, minor, bars, chords, 73, 1.0, 85)
    return symbols


def _style_funk(s: _Score, key: int, minor: bool, bars: int, opt: dict) -> list[str]:
    chords, symbols, roots = _progression(s.rng, key, minor, bars, change_every=2)
    drums, bass, clav = s.track("drums", 0, True), s.track("bass", 36), s.track("clav", 7)
    kick = (0.0, 0.75, 2.5, 3.25)
    snare = (1.0, 3.0)
    ghosts = (1.75, 2.25, 3.75)
    bass_line = ((0.0, 0), (0.75, 12), (1.5, 0), (2.5, 7), (2.75, 0), (3.5, 10))
    stabs = (0.5, 1.25, 2.75, 3.5)
    for bar in range(bars):
        for k in kick:
            s.note(drums, KICK, s.time(bar, k), 0.1, 112)
        for k in snare:
            s.note(drums, SNARE, s.time(bar, k), 0.1, 110)
        for k in ghosts:
            s.note(drums, SNARE, s.time(bar, k), 0.05, 40)
        for i in range(16):
            s.note(drums, HAT, s.time(bar, i / 4), 0.04, 90 if i % 2 else 65)
        for k, interval in bass_line:
            s.note(bass, 36 + roots[bar] + interval, s.time(bar, k), s.unit_s * 0.3, 105)
        for k in stabs:
            for p in _voicing(chords[bar], 60):
                s.note(clav, p, s.time(bar, k), s.unit_s * 0.2, 90)
    return symbols


def _style_halftime(s: _Score, key: int, minor: bool, bars: int, opt: dict) -> list[str]:
    chords, symbols, roots = _progression(s.rng, key, minor, bars)
    drums, bass, keys = s.track("drums", 0, True), s.track("bass", 38), s.track("keys", 4)
    swing = 0.08
    for bar in range(bars):
        for k in (0.0, 1.75, 2.5):
            s.note(drums, KICK, s.time(bar, k), 0.1, 115)
        s.note(drums, SNARE, s.time(bar, 2), 0.12, 115)
        s.note(drums, CLAP, s.time(bar, 2), 0.12, 90)
        for i in range(16):
            off = swing if i % 2 else 0.0
            s.note(drums, HAT, s.time(bar, i / 4 + off / 4), 0.04, 75 if i % 2 else 55)
        s.note(bass, 36 + roots[bar], s.time(bar), s.unit_s * 1.5, 110)
        s.note(bass, 36 + roots[bar], s.time(bar, 2.5), s.unit_s * 1.2, 100)
        for p in _voicing(chords[bar], 57):
            s.note(keys, p, s.time(bar), s.bar_s * 0.95, 70)
    _melody(s, key, minor, bars, chords, 11, 1.0, 70)
    return symbols


def _style_house(s: _Score, key: int, minor: bool, bars: int, opt: dict) -> list[str]:
    chords, symbols, roots = _progression(s.rng, key, minor, bars, change_every=2)
    drums, bass, keys = s.track("drums", 0, True), s.track("bass", 38), s.track("keys", 89)
    for bar in range(bars):
        for beat in range(4):
            s.note(drums, KICK, s.time(bar, beat), 0.1, 110)
            s.note(drums, OPEN_HAT, s.time(bar, beat + 0.5), 0.15, 120)
            if beat in (1, 3):
                s.note(drums, CLAP, s.time(bar, beat), 0.1, 95)
            s.note(bass, 36 + roots[bar], s.time(bar, beat + 0.5), s.unit_s * 0.4, 105)
        for p in _voicing(chords[bar], 60):
            s.note(keys, p, s.time(bar), s.bar_s * 0.95, 70)
    return symbols


def _style_offbeat_hats(s: _Score, key: int, minor: bool, bars: int, opt: dict) -> list[str]:
    """A loop whose loudest hits are open hi-hats on the off-beats; kick 1 and 3, snare 2
    and 4, a bass that plays on the beat."""
    chords, symbols, roots = _progression(s.rng, key, minor, bars)
    drums, bass, gtr = s.track("drums", 0, True), s.track("bass", 34), s.track("gtr", 27)
    for bar in range(bars):
        for beat in range(4):
            s.note(drums, OPEN_HAT, s.time(bar, beat + 0.5), 0.2, 127)
            s.note(drums, CLAP if beat % 2 else KICK, s.time(bar, beat), 0.1, 80)
        s.note(bass, 36 + roots[bar], s.time(bar), s.unit_s * 1.8, 90)
        s.note(bass, 36 + roots[bar], s.time(bar, 2), s.unit_s * 1.8, 80)
        for p in _voicing(chords[bar], 55):
            s.note(gtr, p, s.time(bar), s.bar_s * 0.9, 60)
    return symbols


def _style_ska(s: _Score, key: int, minor: bool, bars: int, opt: dict) -> list[str]:
    chords, symbols, roots = _progression(s.rng, key, minor, bars)
    drums, bass, gtr = s.track("drums", 0, True), s.track("bass", 32), s.track("gtr", 28)
    for bar in range(bars):
        # The bass walks up the bar's own chord (root, third, fifth, octave), so a minor
        # chord gets its minor third and the walk never clashes with the skanks.
        third, fifth = (p - chords[bar][0] for p in chords[bar][1:3])
        walk = (0, third, fifth, 12)
        for beat in range(4):
            t = s.time(bar, beat)
            s.note(drums, KICK if beat in (0, 2) else SNARE, t, 0.1, 100)
            s.note(drums, HAT, s.time(bar, beat + 0.5), 0.05, 95)
            s.note(bass, 36 + roots[bar] + walk[beat], t, s.unit_s * 0.8, 100)
            for p in _voicing(chords[bar], 60):
                s.note(gtr, p, s.time(bar, beat + 0.5), s.unit_s * 0.2, 105)
    return symbols


def _style_waltz(s: _Score, key: int, minor: bool, bars: int, opt: dict) -> list[str]:
    chords, symbols, roots = _progression(s.rng, key, minor, bars)
    bass, piano, strings = s.track("bass", 32), s.track("piano", 0), s.track("strings", 48)
    for bar in range(bars):
        s.note(bass, 36 + roots[bar], s.time(bar), s.unit_s * 0.9, 100)
        for beat in (1, 2):
            for p in _voicing(chords[bar], 60):
                s.note(piano, p, s.time(bar, beat), s.unit_s * 0.5, 65)
        for p in _voicing(chords[bar], 48):
            s.note(strings, p, s.time(bar), s.bar_s * 0.95, 50)
    _melody(s, key, minor, bars, chords, 73, 1.0, 90)
    return symbols


def _style_six_eight(s: _Score, key: int, minor: bool, bars: int, opt: dict) -> list[str]:
    chords, symbols, roots = _progression(s.rng, key, minor, bars)
    drums, bass, harp = s.track("drums", 0, True), s.track("bass", 33), s.track("harp", 24)
    for bar in range(bars):
        s.note(drums, KICK, s.time(bar, 0), 0.1, 105)
        s.note(drums, SNARE if opt.get("snare", True) else RIM, s.time(bar, 3), 0.1, 95)
        for e in range(6):
            s.note(drums, HAT, s.time(bar, e), 0.04, 70 if e % 3 else 85)
        s.note(bass, 36 + roots[bar], s.time(bar, 0), s.unit_s * 2.5, 105)
        s.note(bass, 43 + roots[bar], s.time(bar, 3), s.unit_s * 2.5, 90)
        tones = _voicing(chords[bar], 55)
        pattern = [
            tones[0],
            tones[1],
            tones[2],
            tones[1] + 12 if len(tones) < 4 else tones[3],
            tones[2],
            tones[1],
        ]
        for e, p in enumerate(pattern):
            s.note(harp, p, s.time(bar, e), s.unit_s * 0.9, 75)
    _melody(s, key, minor, bars, chords, 71, 3.0, 85)
    return symbols


def _style_ballad(s: _Score, key: int, minor: bool, bars: int, opt: dict) -> list[str]:
    """Slow piano ballad; drums (no kick on 1 in the first bar) come in later."""
    chords, symbols, roots = _progression(s.rng, key, minor, bars)
    piano, bass, pad = s.track("piano", 0), s.track("bass", 32), s.track("pad", 49)
    drums = s.track("drums", 0, True)
    for bar in range(bars):
        tones = _voicing(chords[bar], 60)
        for e in range(8):
            s.note(
                piano,
                tones[e % len(tones)] + (12 if e in (3, 7) else 0),
                s.time(bar, e / 2),
                s.unit_s * 0.6,
                70,
            )
        s.note(piano, 48 + roots[bar], s.time(bar), s.bar_s * 0.9, 80)
        s.note(bass, 36 + roots[bar], s.time(bar), s.bar_s * 0.9, 90)
        for p in _voicing(chords[bar], 55):
            s.note(pad, p, s.time(bar), s.bar_s * 0.95, 45)
        if bar >= opt.get("drums_from", 2):
            s.note(drums, KICK, s.time(bar, 0), 0.1, 90)
            s.note(drums, KICK, s.time(bar, 2.5), 0.1, 80)
            s.note(drums, SNARE, s.time(bar, 1), 0.1, 85)
            s.note(drums, SNARE, s.time(bar, 3), 0.1, 85)
            for e in range(8):
                s.note(drums, HAT, s.time(bar, e / 2), 0.04, 55)
    _melody(s, key, minor, bars, chords, 40, 2.0, 80, start_bar=1)
    return symbols


def _style_rock(s: _Score, key: int, minor: bool, bars: int, opt: dict) -> list[str]:
    _, symbols, roots = _progression(s.rng, key, minor, bars)
    drums, bass, gtr = s.track("drums", 0, True), s.track("bass", 34), s.track("gtr", 29)
    for bar in range(bars):
        if bar % 4 == 0:
            s.note(drums, CRASH, s.time(bar), 0.5, 100)
        for e in range(8):
            t = s.time(bar, e / 2)
            if e in (0, 3, 4):
                s.note(drums, KICK, t, 0.1, 110)
            if e in (2, 6):
                s.note(drums, SNARE, t, 0.1, 115)
            s.note(drums, HAT, t, 0.04, 75)
            s.note(bass, 36 + roots[bar], t, s.unit_s * 0.4, 100)
            for p in (48 + roots[bar], 55 + roots[bar]):
                s.note(gtr, p, t, s.unit_s * 0.4, 90)
    return symbols


def _style_bossa(s: _Score, key: int, minor: bool, bars: int, opt: dict) -> list[str]:
    chords, symbols, roots = _progression(s.rng, key, minor, bars)
    drums, bass, gtr = s.track("drums", 0, True), s.track("bass", 32), s.track("gtr", 24)
    clave = (0.0, 0.75, 1.5, 2.5, 3.25) if True else ()
    comp = (0.0, 0.75, 1.5, 2.0, 2.75, 3.5)
    for bar in range(bars):
        for k in clave:
            s.note(drums, RIM, s.time(bar, k + (0 if bar % 2 == 0 else 0.0)), 0.05, 85)
        for e in range(8):
            s.note(drums, SHAKER, s.time(bar, e / 2), 0.04, 60)
        for k, interval in ((0.0, 0), (1.5, 7), (2.0, 7), (3.5, 0)):
            s.note(bass, 36 + roots[bar] + interval, s.time(bar, k), s.unit_s * 0.9, 95)
        for k in comp:
            for p in _voicing(chords[bar], 55):
                s.note(gtr, p, s.time(bar, k), s.unit_s * 0.4, 70)
    _melody(s, key, minor, bars, chords, 65, 1.0, 75)
    return symbols


STYLES: dict[str, tuple[Style, str, tuple[float, float]]] = {
    # name: (writer, meter, quarter-note BPM range)
    "pop": (_style_pop, "4/4", (90, 130)),
    "funk": (_style_funk, "4/4", (92, 115)),
    "halftime": (_style_halftime, "4/4", (70, 90)),
    "house": (_style_house, "4/4", (118, 128)),
    "offbeat_hats": (_style_offbeat_hats, "4/4", (95, 125)),
    "ska": (_style_ska, "4/4", (140, 170)),
    "waltz": (_style_waltz, "3/4", (100, 160)),
    "six_eight": (_style_six_eight, "6/8", (70, 100)),
    "ballad": (_style_ballad, "4/4", (70, 80)),
    "rock": (_style_rock, "4/4", (145, 170)),
    "bossa": (_style_bossa, "4/4", (110, 140)),
}


def _mode_is_heard(midi: pretty_midi.PrettyMIDI, key_pc: int, minor: bool) -> bool:
    """Whether the pitched notes of ``midi`` tell its key from the parallel key: some note
    lies outside the parallel key's scale (a third or sixth). Power chords and a bass on the
    roots of i, iv and V play the same notes in D minor as in D major, so such a piece has
    no key truth."""
    played = {
        (note.pitch - key_pc) % 12
        for inst in midi.instruments
        if not inst.is_drum
        for note in inst.notes
    }
    # The parallel key's pitch classes from the tonic: major, or natural and harmonic minor.
    parallel = set(MAJOR_SCALE) if minor else {*MINOR_SCALE, 10}
    return not played <= parallel


def write_piece(
    style: str, seed: int, *, target_s: float = 22.0
) -> tuple[pretty_midi.PrettyMIDI, Piece]:
    """One arrangement of ``style`` with a seeded key, tempo, lead-in and pickup."""
    writer, meter, (lo, hi) = STYLES[style]
    rng = np.random.default_rng(seed)
    bpm = float(round(rng.uniform(lo, hi), 1))
    num, den = (int(x) for x in meter.split("/"))
    key_pc, minor = int(rng.integers(12)), bool(rng.random() < 0.5)
    lead_in = float(round(rng.choice([0.0, 0.0, rng.uniform(0.05, 2.0)]), 3))
    pickup_options = {
        "4/4": (0.0, 1.0, 2.0, 0.5, 3.0),
        "3/4": (0.0, 1.0, 2.0),
        "6/8": (0.0, 1.0, 2.0),
    }
    pickup = float(rng.choice(pickup_options[meter]))
    unit_s = 60.0 / bpm * 4.0 / den
    first_downbeat = lead_in + pickup * unit_s
    score = _Score(rng=rng, bpm=bpm, meter=(num, den), first_downbeat_s=first_downbeat)
    bar_s = num * unit_s
    bars = max(4, round(target_s / bar_s))
    opt = {"drums_from": int(rng.integers(1, 3))}
    symbols = writer(score, key_pc, minor, bars, opt)
    _pickup_phrase(score, key_pc, minor, pickup, 73 if style not in ("ballad",) else 40)
    midi = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    midi.instruments.extend(score.tracks.values())
    key = f"{PITCH_CLASSES[key_pc]} {'minor' if minor else 'major'}"
    piece = Piece(
        name=f"{style}-{seed}",
        style=style,
        bpm=bpm,
        meter=meter,
        key=key if _mode_is_heard(midi, key_pc, minor) else None,
        first_downbeat_s=round(first_downbeat, 6),
        downbeats_s=tuple(round(first_downbeat + b * bar_s, 6) for b in range(bars)),
        lead_in_s=lead_in,
        pickup_beats=pickup,
        chords=tuple(symbols),
    )
    return midi, piece


CHORALE_PROGRAMS = (
    (52, 48, 42, 32),
    (19, 19, 19, 19),
    (68, 71, 70, 58),
    (0, 0, 0, 0),
    (40, 41, 42, 43),
)


def chorale_piece(
    path: str, seed: int, *, max_bars: int = 10
) -> tuple[pretty_midi.PrettyMIDI, Piece] | None:
    """A Bach chorale from music21's corpus (first ``max_bars`` bars), or None when it is
    not in 4/4 or 3/4 or has no clear key truth."""
    import music21  # benchmark-only dependency (BSD)

    score = music21.corpus.parse(path)
    ts = score.recurse().getElementsByClass(music21.meter.TimeSignature).first()
    ks = score.recurse().getElementsByClass(music21.key.KeySignature).first()
    if ts is None or ks is None or ts.ratioString not in ("4/4", "3/4") or len(score.parts) != 4:
        return None
    rng = np.random.default_rng(seed)
    bpm = float(round(rng.uniform(66, 96), 1))
    lead_in = float(round(rng.choice([0.0, rng.uniform(0.1, 1.5)]), 3))
    beat_s = 60.0 / bpm
    parts = list(score.parts)
    first_measure = parts[0].getElementsByClass(music21.stream.Measure).first()
    pickup_q = float(ts.barDuration.quarterLength - first_measure.duration.quarterLength)
    if first_measure.paddingLeft:
        pickup_q = float(first_measure.duration.quarterLength)
    if pickup_q < 0 or pickup_q >= ts.barDuration.quarterLength:
        return None
    bar_q = float(ts.barDuration.quarterLength)
    limit_q = pickup_q + max_bars * bar_q
    # Key truth: the last bass note names the tonic.
    bass_notes = list(parts[3].flatten().notes)
    last_bass = bass_notes[-1].pitches[0].pitchClass
    major_pc = ks.asKey("major").tonic.pitchClass
    minor_pc = ks.asKey("minor").tonic.pitchClass
    if last_bass == major_pc:
        key = f"{PITCH_CLASSES[major_pc]} major"
    elif last_bass == minor_pc:
        key = f"{PITCH_CLASSES[minor_pc]} minor"
    else:
        return None
    # ...but only the first max_bars are rendered: keep the key only when the excerpt also
    # starts on its tonic in the bass, so the truth holds for the audio.
    first_bass = bass_notes[0].pitches[0].pitchClass
    tonic_pc = major_pc if key.endswith("major") else minor_pc
    if first_bass != tonic_pc:
        key = None
    programs = CHORALE_PROGRAMS[seed % len(CHORALE_PROGRAMS)]
    midi = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    for part, program in zip(parts, programs, strict=True):
        inst = pretty_midi.Instrument(program=program)
        for n in part.flatten().notes:
            offset = float(n.getOffsetInHierarchy(part))
            if offset >= limit_q:
                continue
            if n.duration.quarterLength <= 0:
                continue
            start = lead_in + offset * beat_s + float(np.clip(rng.normal(0, 0.004), -0.008, 0.008))
            end = lead_in + min(offset + float(n.duration.quarterLength), limit_q) * beat_s
            for p in n.pitches:
                inst.notes.append(
                    pretty_midi.Note(
                        int(78 + rng.integers(-8, 9)), int(p.midi), max(start, 0.0), end
                    )
                )
        midi.instruments.append(inst)
    first_downbeat = lead_in + pickup_q * beat_s
    bars = int((limit_q - pickup_q) // bar_q)
    name = Path(str(path)).name  # "bwv244.10": the number after the dot tells movements apart
    piece = Piece(
        name=f"chorale-{name}",
        style="chorale",
        bpm=bpm,
        meter=ts.ratioString,
        key=key,
        first_downbeat_s=round(first_downbeat, 6),
        downbeats_s=tuple(round(first_downbeat + b * bar_q * beat_s, 6) for b in range(bars)),
        lead_in_s=lead_in,
        pickup_beats=pickup_q,
    )
    return midi, piece


def render(midi: pretty_midi.PrettyMIDI, path: Path) -> None:
    """``midi`` rendered by FluidSynth to a 44.1 kHz stereo WAV at ``path``."""
    if not SOUNDFONT.exists():
        raise FileNotFoundError(
            f"{SOUNDFONT} is missing: apt-get install fluidsynth fluid-soundfont-gm"
        )
    mid = path.with_suffix(".mid")
    midi.write(str(mid))
    subprocess.run(
        [
            "fluidsynth",
            "-ni",
            "-q",
            "-g",
            "0.6",
            "-r",
            str(RENDER_SR),
            "-F",
            str(path),
            str(SOUNDFONT),
            str(mid),
        ],
        check=True,
        capture_output=True,
    )


# The set. Dev pieces are what the analysis may be tuned on; held-out pieces are only ever
# reported. Different seeds (so keys, tempi, lead-ins and pickups) and different chorales.
DEV_SYNTH = (
    ("pop", 1),
    ("pop", 2),
    ("funk", 3),
    ("funk", 4),
    ("halftime", 5),
    ("halftime", 6),
    ("house", 7),
    ("offbeat_hats", 8),
    ("offbeat_hats", 9),
    ("ska", 10),
    ("waltz", 11),
    ("waltz", 12),
    ("six_eight", 13),
    ("six_eight", 14),
    ("ballad", 15),
    ("ballad", 16),
    ("rock", 17),
    ("rock", 18),
    ("bossa", 19),
    ("pop", 20),
)
DEV_CHORALES = ("bach/bwv269", "bach/bwv347", "bach/bwv153.1", "bach/bwv86.6")
HELD_OUT_SYNTH = (
    ("pop", 101),
    ("funk", 102),
    ("halftime", 103),
    ("house", 104),
    ("offbeat_hats", 105),
    ("ska", 106),
    ("waltz", 107),
    ("six_eight", 108),
    ("ballad", 109),
    ("rock", 110),
    ("bossa", 111),
    ("funk", 112),
)
HELD_OUT_CHORALES = ("bach/bwv66.6", "bach/bwv438", "bach/bwv40.3", "bach/bwv367")


def _two_seeds_of_every_style(first: int) -> tuple[tuple[str, int], ...]:
    """(style, seed) for every style, seeds ``first``, ``first + 1``, ... in style order."""
    return tuple(
        (style, first + 2 * i + j) for i, style in enumerate(sorted(STYLES)) for j in range(2)
    )


# A second development set, so tuning decisions rest on ~60 pieces rather than 24: two more
# seeds of every style, and chorales taken every 7th from music21's sorted Bach list (those
# not in the sets above that pass ``chorale_piece`` with a key truth).
DEV2_SYNTH = _two_seeds_of_every_style(200)
DEV2_CHORALES = (
    "bach/bwv11.6",
    "bach/bwv115.6",
    "bach/bwv139.6",
    "bach/bwv146.8",
    "bach/bwv154.8",
    "bach/bwv17.7",
    "bach/bwv194.12",
    "bach/bwv20.11",
    "bach/bwv229.2",
    "bach/bwv244.3",
    "bach/bwv245.28",
    "bach/bwv248.42-s",
)
# A third development set (fourth round), for the same reason: two more seeds of every style
# and twelve chorales taken every 7th from the same list, three places further on.
DEV3_SYNTH = _two_seeds_of_every_style(300)
DEV3_CHORALES = (
    "bach/bwv133.6",
    "bach/bwv144.3",
    "bach/bwv151.5",
    "bach/bwv156.6",
    "bach/bwv164.6",
    "bach/bwv179.6",
    "bach/bwv187.7",
    "bach/bwv226.2",
    "bach/bwv244.10",
    "bach/bwv244.37",
    "bach/bwv25.6",
    "bach/bwv256",
)
SETS = {
    "dev": (DEV_SYNTH, DEV_CHORALES, 0),
    "dev2": (DEV2_SYNTH, DEV2_CHORALES, 1000),
    "dev3": (DEV3_SYNTH, DEV3_CHORALES, 1500),
    "held-out": (HELD_OUT_SYNTH, HELD_OUT_CHORALES, 500),
}


def _digest(midi: pretty_midi.PrettyMIDI, piece: Piece) -> str:
    """What a rendering is cached by: its truth and its notes, so a change to either (a
    piece writer mended) renders it again and its peers' cached results go with the name."""
    notes = io.BytesIO()
    midi.write(notes)
    truth = json.dumps(asdict(piece), sort_keys=True).encode()
    return hashlib.sha1(truth + notes.getvalue()).hexdigest()[:10]


def build_set(which: str, cache: Path) -> list[tuple[Piece, Path]]:
    """Render (once; cached by content) the ``which`` (a key of ``SETS``) set."""
    synth, chorales, seed_offset = SETS[which]
    cache.mkdir(parents=True, exist_ok=True)
    made: list[tuple[pretty_midi.PrettyMIDI, Piece]] = [
        write_piece(style, seed) for style, seed in synth
    ]
    for i, path in enumerate(chorales):
        result = chorale_piece(path, seed=1000 + i + seed_offset)
        if result is None:
            logger.warning("chorale %s skipped (meter or key truth)", path)
            continue
        made.append(result)
    out = []
    for midi, piece in made:
        wav = cache / f"{piece.name}-{_digest(midi, piece)}.wav"
        if not wav.exists():
            render(midi, wav)
        out.append((piece, wav))
    return out
