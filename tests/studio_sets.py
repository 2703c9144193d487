"""A finished set written through the product's own writer (``generation.stems.output``),
with tones for audio, for the studio tests: no model needed, the same files and manifest
the CLI writes into a folder and the service into blobs."""

from __future__ import annotations

from typing import Any

import numpy as np

from generation.request import OutputFormat, parse_request
from generation.stems.grid import plan_grid
from generation.stems.output import Sink, finish_set, write_stem
from generation.stems.record import RenderedStem, StemRecord

SR = 32000


def tone(seconds: float, hz: float = 220.0, sr: int = SR) -> np.ndarray:
    """A 0.2-amplitude sine, float32 ``[1, samples]``."""
    t = np.arange(round(seconds * sr)) / sr
    return (0.2 * np.sin(2 * np.pi * hz * t))[np.newaxis, :].astype(np.float32)


def write_set(
    sink: Sink,
    request_id: str,
    stems: tuple[str, ...] = ("guitar", "bass"),
    output_format: OutputFormat = OutputFormat.WAV,
) -> dict[str, Any]:
    """Two bars of 4/4 at 120 BPM (4 s) per stem, the mix and the manifest, written to
    ``sink``; the manifest."""
    request = parse_request(
        {
            "generation_request_id": request_id,
            "target_stems": list(stems),
            "parameters": {"target_bpm": 120, "bars": 2},
            "seed": 1,
            "output_format": output_format.value,
        }
    )
    records, arrays = [], []
    for index, stem in enumerate(stems):
        audio = tone(4.0, 110.0 * (index + 1))
        record = StemRecord(
            stem=stem,
            prompt=f"{stem} prompt",
            seed=1 + index,
            model_id="tones",
            format=output_format.value,
            sample_rate=SR,
            samples=audio.shape[1],
            duration_seconds=4.0,
            generation_seconds=0.0,
            loudness_lufs=-20.0,
            true_peak_dbtp=-14.0,
        )
        records.append(write_stem(sink, RenderedStem(record, audio), request))
        arrays.append(audio)
    delivery = finish_set(
        sink,
        request,
        records,
        plan=plan_grid(request.parameters),
        upload=None,
        audio=arrays,
        model_id="tones",
    )
    return delivery.manifest
