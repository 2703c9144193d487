"""Where a request's stems sit on the musical grid, and how a raw stem is made to fit it.

Arrays in, arrays out; no Azure. Audio is float32 ``[channels, samples]`` at ``sr`` Hz.

- ``plan_grid``: from the request (and the upload's ``TrackAnalysis``) to one ``GridPlan``:
  target tempo, bars, time signature, where the first downbeat goes, the key, and how many
  seconds the model must generate so the stem can be stretched and cut to whole bars. Every
  stem of a request gets the same plan, so every stem has the same length in samples.
- ``lock_to_grid``: beat-track the raw stem, Rubber Band to exactly the target tempo, first
  downbeat aligned, cut to whole bars, optional crossfaded loop seam.

Tempo follows DAWs: BPM counts quarter notes whatever the time signature (a 6/8 bar at
120 BPM is three quarter notes, 1.5 s). The first downbeat goes to ``align_to_s``: 0, or
with an upload the upload's first downbeat modulo one bar, so stems dropped at the start
of the uploaded track's timeline sit on its bar grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from generation.audio.analysis import estimate_tempo
from generation.audio.arrays import raised_cosine
from generation.audio.conform import bar_length_samples, conform
from generation.audio.harmony import key_from_seed, same_key
from generation.request import (
    MAX_DURATION_SECONDS,
    GenerationParameters,
    bar_seconds,
    parse_time_signature,
    quarter_notes_per_beat,
)
from generation.stems.track import TrackAnalysis

# MusicGen follows "120 bpm" to about +-5 BPM; a raw stem measured further than this from
# the target is a mis-detection (or a stem with no pulse), and is not stretched.
MAX_TEMPO_CORRECTION = 0.12
# Extra generated audio so a stem can be stretched (up to MAX_TEMPO_CORRECTION) and its
# first downbeat (within its first bar) moved to the grid without running out of audio.
STRETCH_MARGIN = 1.0 + MAX_TEMPO_CORRECTION
LOOP_CROSSFADE_S = 0.05  # at most; never more than a quarter of a beat


@dataclass(frozen=True)
class GridPlan:
    """One request's grid. Without a tempo (``target_bpm`` None) there is no tempo lock:
    stems are ``duration_s`` long as generated. With one, stems are exactly ``bars`` bars.
    """

    time_signature: str
    duration_s: float  # the output's exact length in seconds (before rounding to samples)
    target_bpm: float | None = None  # quarter notes per minute
    tempo_source: str | None = None  # "request" or "upload"
    bars: int | None = None
    align_to_s: float = 0.0  # where the first downbeat lands, seconds
    key: str | None = None  # the one key every stem is in, for the prompts
    key_source: str | None = None  # "request", "upload" or "seed"
    chords: tuple[str, ...] = ()  # one symbol per bar, repeating over the bars
    chords_source: str | None = None  # "request" or "upload"
    loop: bool = False
    notes: tuple[str, ...] = field(default=())  # what the plan had to decide for the caller

    @property
    def tempo_locked(self) -> bool:
        return self.target_bpm is not None

    @property
    def beats_per_bar(self) -> int:
        return parse_time_signature(self.time_signature)[0]

    @property
    def pulse_bpm(self) -> float:
        """The target tempo counted in the time signature's beat unit (eighths in 6/8)."""
        assert self.target_bpm is not None
        return self.target_bpm / quarter_notes_per_beat(self.time_signature)

    @property
    def bar_s(self) -> float:
        assert self.target_bpm is not None
        return bar_seconds(self.target_bpm, self.time_signature)

    def output_samples(self, sr: int) -> int:
        """Exactly how many samples every stem of the request has at ``sr`` Hz."""
        if self.bars is None:
            return round(self.duration_s * sr)
        return bar_length_samples(self.pulse_bpm, self.bars, self.beats_per_bar, sr)

    @property
    def generation_s(self) -> float:
        """Seconds the model generates: the output plus, with a tempo lock, room to
        stretch, to move the first downbeat into place and for a loop's seam."""
        if self.bars is None:
            return self.duration_s
        bars = self.bars + 1 + (1 if self.loop else 0)
        return round(bars * self.bar_s * STRETCH_MARGIN, 3)

    def summary(self) -> dict[str, Any]:
        """The plan as the manifest and the callback report it."""
        return {
            "tempo_locked": self.tempo_locked,
            "target_bpm": self.target_bpm,
            "tempo_source": self.tempo_source,
            "bars": self.bars,
            "time_signature": self.time_signature,
            "first_downbeat_s": round(self.align_to_s, 4) if self.tempo_locked else None,
            "duration_seconds": round(self.duration_s, 6),
            "key": self.key,
            "key_source": self.key_source,
            "chords": list(self.chords),
            "chords_source": self.chords_source,
            "loop": self.loop,
            "notes": list(self.notes),
        }


def _harmony(
    params: GenerationParameters, upload: TrackAnalysis | None, seed: int | None
) -> tuple[dict[str, Any], list[str]]:
    """The set's one key and progression: the request's, else the upload's, else (the key
    only) one chosen from ``seed``; and notes where the request and the upload disagree."""
    notes: list[str] = []
    found_key = upload.key if upload is not None else None
    found_chords = tuple(upload.chords) if upload is not None else ()
    if params.key is not None:
        key, key_source = params.key, "request"
        if found_key is not None and not same_key(found_key, params.key):
            notes.append(
                f"the request's key {params.key} differs from the upload's detected {found_key}: "
                "the stems are in the request's key"
            )
    elif found_key is not None:
        key, key_source = found_key, "upload"
    elif seed is not None:
        key, key_source = key_from_seed(seed), "seed"
    else:
        key, key_source = None, None
    if params.chords is not None:
        chords, chords_source = tuple(params.chords.split()), "request"
        if found_chords and found_chords[: len(chords)] != chords:
            notes.append(
                f"the request's chords differ from the upload's detected "
                f"{' '.join(found_chords[:8])}: the stems follow the request's"
            )
    elif found_chords:
        chords, chords_source = found_chords, "upload"
    else:
        chords, chords_source = (), None
    return {
        "key": key,
        "key_source": key_source,
        "chords": chords,
        "chords_source": chords_source,
    }, notes


def plan_grid(
    params: GenerationParameters,
    upload: TrackAnalysis | None = None,
    *,
    seed: int | None = None,
) -> GridPlan:
    """The grid for ``params``, following ``upload`` where it has what the request lacks;
    the key, when neither has one, chosen from ``seed``.

    Raises ``ValueError`` when the tempo comes from the upload and makes the requested
    bars longer than the longest stem this service generates, or when bars are asked for
    and the upload's tempo could not be detected.
    """
    bpm, source = params.target_bpm, "request"
    if bpm is None and upload is not None and upload.bpm is not None:
        bpm, source = upload.bpm, "upload"
    harmony, notes = _harmony(params, upload, seed)
    if bpm is None:
        if params.bars is not None:
            raise ValueError(
                "parameters.bars needs a tempo and none was detected in the uploaded track: "
                "give parameters.target_bpm"
            )
        if upload is not None:
            notes.append("no tempo detected in the upload: the stems are not tempo-locked")
        if params.loop:
            notes.append("loop needs a tempo: the stems are not looped")
        return GridPlan(
            time_signature=params.time_signature,
            duration_s=params.duration_seconds,
            notes=tuple(notes),
            **harmony,
        )
    bar = bar_seconds(bpm, params.time_signature)
    if params.bars is not None:
        bars = params.bars
    else:
        bars = max(1, round(params.duration_seconds / bar))
        if bars * bar > MAX_DURATION_SECONDS:
            bars -= 1
    if bars * bar > MAX_DURATION_SECONDS + 1e-9:
        raise ValueError(
            f"{bars} bars of {params.time_signature} at the upload's {bpm:g} BPM last "
            f"{bars * bar:.1f} s; at most {MAX_DURATION_SECONDS:g} s can be generated"
        )
    align = 0.0
    if upload is not None and upload.first_downbeat_s is not None:
        align = math.fmod(upload.first_downbeat_s, bar)
    return GridPlan(
        time_signature=params.time_signature,
        duration_s=bars * bar,
        target_bpm=bpm,
        tempo_source=source,
        bars=bars,
        align_to_s=align,
        loop=params.loop,
        notes=tuple(notes),
        **harmony,
    )


def _nearest_octave(detected: float, target: float) -> float:
    """``detected`` times 1/2, 2/3, 1, 3/2 or 2, whichever is nearest ``target``: beat
    trackers often lock to half, double or dotted multiples of the pulse."""
    candidates = [detected * f for f in (0.5, 2 / 3, 1.0, 1.5, 2.0)]
    return min(candidates, key=lambda c: abs(math.log(c / target)))


def _loop_seam(audio: np.ndarray, preroll: np.ndarray) -> np.ndarray:
    """``audio`` whose last ``len(preroll)`` samples crossfade into ``preroll`` (the audio
    that came just before its first sample), so playing it in a loop has no seam."""
    n = preroll.shape[1]
    if n == 0:
        return audio
    ramp = raised_cosine(n)
    out = audio.copy()
    out[:, -n:] = audio[:, -n:] * (1 - ramp).astype(np.float32) + preroll * ramp.astype(np.float32)
    return out


@dataclass(frozen=True)
class LockedStem:
    """A raw stem on the grid: ``audio`` float32 ``[channels, samples]``, the raw stem's
    ``detected_bpm`` (quarter notes; None: no steady beat) and the stretch applied."""

    audio: np.ndarray = field(repr=False)
    detected_bpm: float | None
    stretch_ratio: float
    warnings: tuple[str, ...] = ()


def lock_to_grid(audio: np.ndarray, sr: int, plan: GridPlan) -> LockedStem:
    """``audio`` stretched to ``plan``'s tempo (unless its own tempo cannot be trusted),
    first downbeat at ``plan.align_to_s``, exactly ``plan.output_samples(sr)`` samples
    (with a crossfaded loop seam when ``plan.loop``). Needs a tempo-locked plan."""
    if not plan.tempo_locked:
        raise ValueError("the plan has no tempo to lock to")
    target = plan.pulse_bpm
    warnings: list[str] = []
    detected: float | None = None
    source = target
    downbeat: float | None = None
    try:
        estimate = estimate_tempo(
            audio,
            sr,
            beats_per_bar=plan.beats_per_bar,
            beat_unit=parse_time_signature(plan.time_signature)[1],
            target_bpm=target,  # the metrical level nearest the request's tempo
        )
        detected = estimate.bpm
        downbeat = estimate.first_downbeat_s  # refined again after the stretch, below
        corrected = _nearest_octave(estimate.bpm, target)
        if abs(corrected / target - 1.0) <= MAX_TEMPO_CORRECTION:
            source = corrected
        else:
            warnings.append(
                f"raw stem measured at {estimate.bpm:.1f} BPM, too far from the target "
                f"{target:g}: not stretched"
            )
    except ValueError as error:
        warnings.append(f"raw stem not stretched: {error}")
        downbeat = 0.0  # nothing to align: keep the start
    length = plan.output_samples(sr)
    bars = plan.bars or 1
    preroll = 0
    if plan.loop:
        beat_s = 60.0 / target
        preroll = round(min(LOOP_CROSSFADE_S, beat_s / 4) * sr)
    conformed = conform(
        audio,
        sr,
        target_bpm=target,
        bars=bars + (1 if plan.loop else 0),
        beats_per_bar=plan.beats_per_bar,
        source_bpm=source,
        downbeat_s=downbeat,
        align_to_s=plan.align_to_s + preroll / sr,
        refine_downbeat=detected is not None,
    )
    out = conformed[:, preroll : preroll + length]
    if plan.loop:
        out = _loop_seam(out, conformed[:, :preroll])
    pulse_to_quarter = quarter_notes_per_beat(plan.time_signature)
    return LockedStem(
        audio=out,
        detected_bpm=None if detected is None else round(detected * pulse_to_quarter, 2),
        stretch_ratio=round(target / source, 5),
        warnings=tuple(warnings),
    )
