"""What an uploaded track is: its tempo, first downbeat, key and chords (``analyze_track``).

Arrays in, a ``TrackAnalysis`` out; the analysis itself is ``generation.audio.analysis``
(tempo, downbeat, key) and ``generation.audio.chords`` (one chord per bar), the key and the
chords reading one harmonic chroma (``generation.audio.key.harmonic_chroma``).
Tempo follows DAWs: BPM counts quarter notes whatever the time signature.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from generation.audio import analysis
from generation.audio.arrays import resample
from generation.audio.chords import estimate_chords
from generation.audio.codecs import Excerpt, decode_excerpt
from generation.audio.key import HarmonicChroma, harmonic_chroma
from generation.request import MAX_BPM, MIN_BPM, parse_time_signature, quarter_notes_per_beat

MAX_ANALYSIS_SECONDS = 180.0  # of an upload, from its start: enough for tempo and key
SNAP_BPM = 0.05  # a detected tempo this close to a whole number is that number
# The upload's copy that every stem of a request reads (melody conditioning), written once
# by the analysis: mono at MusicGen's rate, so no stem decodes or resamples the upload.
EXCERPT_RATE_HZ = 32_000
EXCERPT_NAME = "upload-excerpt.flac"
MAX_CHORD_BARS = 64  # chords reported for at most this many bars from the first downbeat


@dataclass(frozen=True)
class TrackAnalysis:
    """What an uploaded track is: ``bpm`` (quarter notes per minute) and
    ``first_downbeat_s`` (seconds) or None without a steady beat, ``key`` ("A minor") or
    None, its length in seconds, sample rate (Hz), channel count and what went wrong;
    ``chords`` one symbol per bar from the first downbeat (``generation.audio.chords``
    grammar); the analysis' confidences in [0, 1] (None where nothing was found). Each
    has its own scale and warns below its own threshold: tempo and downbeat below
    ``generation.audio.beats.LOW_CONFIDENCE`` (0.35), the key below
    ``generation.audio.key.LOW_CONFIDENCE`` (0.5), naming the runner-up."""

    bpm: float | None
    first_downbeat_s: float | None
    key: str | None
    duration_s: float
    sample_rate: int
    channels: int
    warnings: tuple[str, ...] = ()
    chords: tuple[str, ...] = ()
    tempo_confidence: float | None = None
    downbeat_confidence: float | None = None
    key_confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["warnings"] = list(self.warnings)
        data["chords"] = list(self.chords)
        return data

    def with_source(self, *, duration_s: float, channels: int) -> TrackAnalysis:
        """This analysis reporting the whole file's length (s) and channel count."""
        return replace(self, duration_s=round(duration_s, 4), channels=int(channels))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrackAnalysis:
        """The analysis ``to_dict`` wrote; fields it does not know (written by a newer
        worker during a rolling deploy) are left out."""
        known = {f.name for f in fields(cls)}
        return cls(
            **{
                **{k: v for k, v in data.items() if k in known},
                "warnings": tuple(data.get("warnings", ())),
                "chords": tuple(data.get("chords", ())),
            }
        )


def as_set_warnings(warnings: Iterable[str]) -> list[str]:
    """An upload analysis' ``warnings`` as a set reports them (manifest, status, CLI)."""
    return [f"upload: {w}" for w in warnings]


def snap_bpm(bpm: float) -> float:
    """A detected tempo as a DAW would want it: a whole number when within ``SNAP_BPM``,
    else rounded to 0.01 BPM."""
    nearest = round(bpm)
    return float(nearest) if abs(bpm - nearest) <= SNAP_BPM else round(bpm, 2)


def fold_bpm(bpm: float) -> tuple[float, str | None]:
    """``bpm`` doubled or halved into the range a request may ask for (``MIN_BPM`` to
    ``MAX_BPM``): a tempo outside it is a metrical-level reading (half or double time) and
    would plan bars no request could have asked for. Returns the tempo and, when it moved,
    a warning saying so."""
    folded = bpm
    while folded < MIN_BPM:
        folded *= 2.0
    while folded > MAX_BPM:
        folded /= 2.0
    if folded == bpm:
        return bpm, None
    folded = snap_bpm(folded)
    return folded, (
        f"detected tempo {bpm:g} BPM is outside {MIN_BPM:g}-{MAX_BPM:g}: read as {folded:g} "
        "BPM (the same pulse at another metrical level); give parameters.target_bpm to choose"
    )


def analyze_track(audio: np.ndarray, sr: int, *, time_signature: str = "4/4") -> TrackAnalysis:
    """Tempo, first downbeat and key of ``audio`` (its first ``MAX_ANALYSIS_SECONDS``).

    Never raises for musical reasons: a track with no steady beat or no pitch gets None
    there and a warning saying so.
    """
    array = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    return _analyze(array[:, : int(MAX_ANALYSIS_SECONDS * sr)], sr, time_signature).with_source(
        duration_s=array.shape[1] / sr, channels=array.shape[0]
    )


def read_track(data: bytes, *, time_signature: str, what: str) -> tuple[TrackAnalysis, Excerpt]:
    """Analyse the audio file in ``data`` reading only what the analysis uses (its first
    ``MAX_ANALYSIS_SECONDS``, downmixed: bounded memory whatever the file claims); the
    analysis and that excerpt. Raises ``ValueError`` naming ``what`` when the file is not
    usable (see ``generation.audio.codecs.decode_excerpt``)."""
    excerpt = decode_excerpt(data, max_seconds=MAX_ANALYSIS_SECONDS, what=what)
    analysed = _analyze(excerpt.mono, excerpt.sample_rate, time_signature)
    duration = excerpt.duration_s or excerpt.mono.shape[1] / excerpt.sample_rate
    return analysed.with_source(duration_s=duration, channels=excerpt.channels), excerpt


def excerpt_for_stems(excerpt: Excerpt) -> tuple[np.ndarray, int]:
    """The copy of an upload the stems read (melody conditioning): mono float32
    ``[1, samples]`` at ``EXCERPT_RATE_HZ``, at most ``MAX_ANALYSIS_SECONDS`` long."""
    return resample(excerpt.mono, excerpt.sample_rate, EXCERPT_RATE_HZ), EXCERPT_RATE_HZ


def _analyze(excerpt: np.ndarray, sr: int, time_signature: str) -> TrackAnalysis:
    beats, unit = parse_time_signature(time_signature)
    warnings: list[str] = []
    bpm: float | None = None
    downbeat: float | None = None
    estimate: analysis.TempoEstimate | None = None
    try:
        estimate = analysis.estimate_tempo(excerpt, sr, beats_per_bar=beats, beat_unit=unit)
        bpm, folded = fold_bpm(snap_bpm(estimate.bpm * quarter_notes_per_beat(time_signature)))
        downbeat = round(estimate.first_downbeat_s, 4)
        warnings.extend(estimate.warnings)
        if folded:
            warnings.append(folded)
    except ValueError as error:
        warnings.append(f"tempo not detected: {error}")
    key: str | None = None
    key_confidence: float | None = None
    harmony: HarmonicChroma | None = None
    try:
        harmony = harmonic_chroma(excerpt, sr)  # computed once: the key and chords share it
        found = analysis.estimate_key(excerpt, sr, chroma=harmony)
        key, key_confidence = str(found), found.confidence
        warnings.extend(found.warnings)
    except ValueError as error:
        warnings.append(f"key not detected: {error}")
    chords: list[str] = []
    if estimate is not None and key is not None:
        bar_s = beats * 60.0 / estimate.bpm
        duration = excerpt.shape[1] / sr
        count = min(int((duration - estimate.first_downbeat_s) / bar_s), MAX_CHORD_BARS)
        starts = [estimate.first_downbeat_s + i * bar_s for i in range(max(count, 0))]
        chords = estimate_chords(excerpt, sr, starts, bar_s, chroma=harmony) if starts else []
    return TrackAnalysis(
        bpm=bpm,
        first_downbeat_s=downbeat,
        key=key,
        duration_s=round(excerpt.shape[1] / sr, 4),
        sample_rate=sr,
        channels=int(excerpt.shape[0]),
        warnings=tuple(warnings),
        chords=tuple(chords),
        tempo_confidence=None if estimate is None else estimate.tempo_confidence,
        downbeat_confidence=None if estimate is None else estimate.downbeat_confidence,
        key_confidence=key_confidence,
    )
