"""Writing a request's results: stems, the preview mix and the manifest, through a small
``Sink`` (a local folder for the CLI, the blob store for the service), so both entry points
write the same files with the same records.

File names are fixed per request (``<stem>.<ext>``, ``mix.<ext>``, ``manifest.json``) and
written with overwrite, so a retry repeats a write and never duplicates it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from generation.audio.codecs import ENCODINGS, decode_audio, encode_audio
from generation.audio.loudness import mix
from generation.errors import BlobNotFoundError
from generation.request import GenerationRequest
from generation.stems.finish import measure
from generation.stems.grid import GridPlan
from generation.stems.manifest import build_manifest
from generation.stems.record import MixRecord, RenderedStem, StemRecord
from generation.stems.track import TrackAnalysis

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"


class Sink(Protocol):
    """Where one request's files go."""

    def write(self, name: str, data: bytes, content_type: str) -> tuple[str, str | None]:
        """Write ``data`` as the request's file ``name`` (overwrite); returns the file's
        location (a name in the folder, or the blob name) and its URL (None locally)."""
        ...

    def read(self, file: str) -> bytes:
        """The bytes of a file this sink wrote (``file`` as ``write`` returned it); a
        missing one raises ``BlobNotFoundError``."""
        ...


class LocalFolder:
    """A ``Sink`` writing into a local folder (created), each file atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def write(self, name: str, data: bytes, content_type: str) -> tuple[str, str | None]:
        del content_type  # a file's extension says it
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        partial = path.with_name(path.name + ".partial")
        try:
            partial.write_bytes(data)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
        return name, None

    def read(self, file: str) -> bytes:
        try:
            return (self.folder / file).read_bytes()
        except FileNotFoundError:
            raise BlobNotFoundError(f"{self.folder / file} does not exist") from None


def write_stem(sink: Sink, rendered: RenderedStem, request: GenerationRequest) -> StemRecord:
    """Encode ``rendered`` in the request's format, write it as ``<stem>.<ext>``; its record
    with where it went."""
    encoding = ENCODINGS[request.output_format]
    data = encode_audio(rendered.audio, rendered.record.sample_rate, request.output_format)
    file, url = sink.write(
        f"{rendered.record.stem}.{encoding.extension}", data, encoding.content_type
    )
    logger.info("wrote %s (%d bytes) for %s", file, len(data), request.generation_request_id)
    return rendered.record.placed(file, url)


def read_stems(sink: Sink, records: Sequence[StemRecord]) -> list[np.ndarray]:
    """The written stems decoded back, float32 ``[channels, samples]`` each, at the length
    their records give (a lossy codec may return a few samples more or less)."""
    arrays = []
    for record in records:
        assert record.file is not None, "read_stems needs placed records"
        audio, _ = decode_audio(sink.read(record.file), what=record.file)
        fitted = np.zeros((audio.shape[0], record.samples), dtype=np.float32)
        fitted[:, : min(record.samples, audio.shape[1])] = audio[:, : record.samples]
        arrays.append(fitted)
    return arrays


def write_mix(
    sink: Sink,
    request: GenerationRequest,
    records: Sequence[StemRecord],
    audio: Sequence[np.ndarray],
) -> MixRecord:
    """Mix ``audio`` (the stems of ``records``, float32 ``[channels, samples]`` each),
    limited to -1 dBTP, and write it as ``mix.<ext>``; its record."""
    sample_rate = records[0].sample_rate
    mixed = mix(list(audio), sample_rate)
    encoding = ENCODINGS[request.output_format]
    data = encode_audio(mixed, sample_rate, request.output_format)
    file, url = sink.write(f"mix.{encoding.extension}", data, encoding.content_type)
    loudness, peak = measure(mixed, sample_rate)
    return MixRecord(
        file=file,
        stems=[r.stem for r in records],
        samples=int(mixed.shape[-1]),
        sample_rate=sample_rate,
        loudness_lufs=loudness,
        true_peak_dbtp=peak,
        format=request.output_format.value,
        blob_url=url,
    )


@dataclass(frozen=True)
class Delivery:
    """What ``finish_set`` wrote: the manifest document and where it went, the mix (None
    when it could not be made) and every warning of the set."""

    manifest: dict[str, Any]
    manifest_file: str
    manifest_url: str | None
    mix: MixRecord | None
    warnings: list[str] = field(default_factory=list)


def finish_set(
    sink: Sink,
    request: GenerationRequest,
    records: Sequence[StemRecord],
    *,
    plan: GridPlan,
    upload: TrackAnalysis | None,
    audio: Sequence[np.ndarray] | None = None,
    model_id: str,
    failed_stems: Sequence[dict[str, Any]] = (),
    warnings: Sequence[str] = (),
    started_at: str | None = None,
) -> Delivery:
    """Write the preview mix of the placed stems ``records`` and ``manifest.json``.

    ``audio``: the stems' audio in memory (the CLI); without it the written stems are read
    back (the service, whose stems were written by other activities). A mix that cannot be
    made (a stem gone or undecodable) is a warning in the manifest, not a lost manifest;
    other storage errors propagate (transient: the caller retries).
    """
    all_warnings = list(warnings) + [f"{r.stem}: {w}" for r in records for w in r.warnings]
    mix_record: MixRecord | None = None
    if records:
        try:
            arrays = audio if audio is not None else read_stems(sink, records)
            mix_record = write_mix(sink, request, records, arrays)
        except (ValueError, BlobNotFoundError) as error:
            logger.exception("%s: mix not written", request.generation_request_id)
            all_warnings.append(f"mix not written: {error}")
    manifest = build_manifest(
        request,
        records,
        model_id=model_id,
        failed_stems=failed_stems,
        timings={
            "started_at": started_at,
            "stems": {r.stem: r.generation_seconds for r in records},
        },
        plan=plan,
        upload=upload,
        mix=mix_record,
        warnings=all_warnings,
    )
    data = (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    file, url = sink.write(MANIFEST_NAME, data, "application/json")
    return Delivery(manifest, file, url, mix_record, all_warnings)
