"""A chord progression as quiet guide audio, for MusicGen-melody checkpoints to follow.

``chord_guide`` renders a plan's chords (one symbol per bar, repeating over the bars) at its
tempo and time signature: one sine tone per beat, the bar's first beat on the chord's bass
note (the slash bass, else the root), the other beats walking the remaining chord tones in
turn; 10 ms raised-cosine ramps at each tone's ends, the first bar at 0 s, whole bars
covering ``GridPlan.generation_s``. In compound metres (6/8, 9/8, 12/8) a tone lasts a
dotted quarter, the beat a listener counts, so no tone is shorter than the chroma can see.

Why audio and not chroma: cog-musicgen-chord fine-tuned a model on multi-hot chord chroma;
this project serves the released facebook/musicgen-melody, which was trained on one-hot
chroma (the strongest pitch class of each frame of real music). A guide whose tones walk the
chord gives exactly such frames, one chord tone at a time, so the model's input stays in
distribution; and as audio it goes through the same melody path as an upload (windows,
looping, the feature extractor) unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from generation.audio.arrays import raised_cosine
from generation.audio.harmony import Chord, parse_chord
from generation.request import parse_time_signature
from generation.stems.grid import GridPlan

GUIDE_RATE_HZ = 32_000  # MusicGen-melody's feature extractor's rate: no resampling
GUIDE_PEAK = 0.25  # linear (-12 dBFS): quiet; the one-hot chroma sees only which class wins
RAMP_S = 0.01  # each tone's fade in and out, seconds
BASS_MIDI = 48  # C3: the bar's first tone sits in C3-B3
TONE_MIDI = 60  # C4: the other tones sit in C4-B4


def guide_pulse(time_signature: str) -> tuple[int, float]:
    """Tones per bar and quarter notes per tone for ``time_signature``: its beat, or in a
    compound metre (6/8, 9/8, 12/8, 15/8) the dotted quarter.

    >>> guide_pulse("4/4"), guide_pulse("3/4"), guide_pulse("6/8"), guide_pulse("7/8")
    ((4, 1.0), (3, 1.0), (2, 1.5), (7, 0.5))
    """
    beats, unit = parse_time_signature(time_signature)
    if unit == 8 and beats > 3 and beats % 3 == 0:
        return beats // 3, 1.5
    return beats, 4.0 / unit


def bar_tones(chord: Chord, count: int) -> list[int]:
    """The pitch classes (0 = C) of a bar's ``count`` tones over ``chord``: its bass note,
    then the other chord tones in turn.

    >>> bar_tones(parse_chord("Am"), 4), bar_tones(parse_chord("C/E"), 3)
    ([9, 0, 4, 0], [4, 0, 7])
    """
    others = [pc for pc in chord.pitch_classes if pc != chord.bass] or [chord.bass]
    return [chord.bass] + [others[i % len(others)] for i in range(count - 1)]


def _guide_bars(plan: GridPlan, cycle: int) -> int:
    """Bars covering ``plan.generation_s``, rounded up to whole progressions when that at
    most doubles them: where the melody path loops the guide (a window longer than the
    guide), the progression then goes on from its first chord as it would have."""
    assert plan.target_bpm is not None
    bars = max(1, math.ceil(plan.generation_s / plan.bar_s - 1e-9))
    whole = math.ceil(bars / cycle) * cycle
    return whole if whole <= 2 * bars else bars


def chord_guide(plan: GridPlan, sample_rate: int = GUIDE_RATE_HZ) -> np.ndarray:
    """The guide audio of ``plan``'s chords (see module docstring): float32 ``[1, samples]``
    at ``sample_rate`` Hz, a whole number of bars at ``plan.target_bpm``, at least
    ``plan.generation_s`` long.

    Raises ``ValueError`` when the plan has no tempo or no chords.
    """
    if plan.target_bpm is None or not plan.chords:
        raise ValueError("a chord guide needs a tempo-locked plan with chords")
    chords = [parse_chord(symbol) for symbol in plan.chords]
    per_bar, quarters = guide_pulse(plan.time_signature)
    tone_s = quarters * 60.0 / plan.target_bpm
    bars = _guide_bars(plan, len(chords))
    # Tone boundaries on one grid of samples: no gap and no drift between tones.
    edges = np.round(np.arange(bars * per_bar + 1) * tone_s * sample_rate).astype(np.int64)
    out = np.zeros(int(edges[-1]), dtype=np.float32)
    ramp_len = round(RAMP_S * sample_rate)
    for bar in range(bars):
        for beat, pitch_class in enumerate(bar_tones(chords[bar % len(chords)], per_bar)):
            index = bar * per_bar + beat
            start, end = int(edges[index]), int(edges[index + 1])
            midi = (BASS_MIDI if beat == 0 else TONE_MIDI) + pitch_class
            hz = 440.0 * 2.0 ** ((midi - 69) / 12)
            tone = np.sin(2.0 * np.pi * hz * np.arange(end - start) / sample_rate)
            ramp = raised_cosine(min(ramp_len, (end - start) // 2))
            tone[: len(ramp)] *= ramp
            tone[len(tone) - len(ramp) :] *= ramp[::-1]
            out[start:end] = GUIDE_PEAK * tone
    return out[np.newaxis, :]
