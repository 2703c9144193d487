"""The one record of a finished stem (and of the preview mix), shared by the CLI and the
service: rendering fills in what was made, writing fills in where it went (``placed``).

The manifest lists these records as they are; the callback and the status carry the subset
in ``StemRecord.CALLBACK_FIELDS``. A CLI manifest and a service manifest of the same request
differ only in ``file`` (a name in the output folder, or the blob name) and ``blob_url``
(the blob's URL; None locally).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StemRecord:
    """One finished stem: what it is, how it was made and measured, and where it went."""

    stem: str
    prompt: str
    seed: int
    model_id: str
    format: str  # the request's output format, e.g. "wav"
    sample_rate: int  # Hz
    samples: int  # per channel, of the finished audio
    duration_seconds: float  # of the finished audio
    generation_seconds: float  # wall time of the batched call this stem was part of
    processing_seconds: float = 0.0  # tempo lock and gain staging of this stem
    detected_bpm: float | None = None  # of the raw stem; None: no tempo lock or no beat
    stretch_ratio: float = 1.0  # target tempo / raw tempo
    loudness_lufs: float | None = None  # integrated, after gain staging
    true_peak_dbtp: float | None = None
    # Share of its pitched sound in the set's key and chords, 0-1 (``harmony_check``);
    # None: drums, percussion, no key, or nothing clearly pitched (silence, noise).
    in_key: float | None = None
    # What a melody checkpoint followed: "upload" (the uploaded track), "chords" (the
    # request's chords as a guide, ``generation.stems.chord_guide``) or None (nothing).
    melody_source: str | None = None
    warnings: tuple[str, ...] = ()
    engine: str = "musicgen"  # which engine made it ("musicgen", "ace_step")
    task: str = "text2music"  # the engine's task: text2music; ACE-Step lego, extract
    file: str | None = None  # set by ``placed``: output-folder file name or blob name
    blob_url: str | None = None  # set by ``placed`` in the service

    # What the callback says about each stem (the manifest has everything).
    CALLBACK_FIELDS: ClassVar[tuple[str, ...]] = (
        "stem",
        "engine",
        "model_id",
        "task",
        "blob_url",
        "duration_seconds",
        "samples",
        "sample_rate",
        "seed",
        "detected_bpm",
        "stretch_ratio",
        "loudness_lufs",
        "true_peak_dbtp",
        "in_key",
        "melody_conditioned",
        "melody_source",
    )

    @property
    def melody_conditioned(self) -> bool:
        """Whether a melody conditioned the stem (kept for readers of earlier records)."""
        return self.melody_source is not None

    def placed(self, file: str, blob_url: str | None = None) -> StemRecord:
        """This record with where its file was written."""
        return dataclasses.replace(self, file=file, blob_url=blob_url)

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data (the manifest entry, the activity's output)."""
        data = dataclasses.asdict(self)
        data["warnings"] = list(self.warnings)
        data["melody_conditioned"] = self.melody_conditioned
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StemRecord:
        """The record ``to_dict`` made; one from before ``melody_source`` (only an upload
        could condition a stem then) says ``melody_conditioned`` instead. Fields this
        version does not know (a record from a newer worker, mid-deploy) are left out."""
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k in known}
        unknown = sorted(set(data) - known - {"melody_conditioned"})
        if unknown:
            logger.debug("stem record: fields left out (from a newer version?): %s", unknown)
        if "melody_source" not in fields and data.get("melody_conditioned"):
            fields["melody_source"] = "upload"
        return cls(**{**fields, "warnings": tuple(data.get("warnings", ()))})

    def for_callback(self) -> dict[str, Any]:
        """The subset the callback carries."""
        return {name: getattr(self, name) for name in self.CALLBACK_FIELDS}


@dataclass(frozen=True)
class RenderedStem:
    """A finished stem's audio, float32 ``[channels, samples]`` at ``record.sample_rate``
    Hz, with its record (not yet placed)."""

    record: StemRecord
    audio: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class MixRecord:
    """The preview mix as the manifest describes it."""

    file: str
    stems: list[str]
    samples: int
    sample_rate: int  # Hz
    loudness_lufs: float | None
    true_peak_dbtp: float | None
    format: str
    blob_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
