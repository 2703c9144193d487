"""The ``manifest.json`` document of a request: the request, its musical grid, every stem's
record, the mix, failures, warnings and timings. The same document for the CLI and the
service."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from generation.request import GenerationRequest
from generation.stems.grid import GridPlan, plan_grid
from generation.stems.record import MixRecord, StemRecord
from generation.stems.track import TrackAnalysis


def build_manifest(
    request: GenerationRequest,
    records: Sequence[StemRecord],
    *,
    model_id: str,
    failed_stems: Sequence[dict[str, Any]] = (),
    timings: dict[str, Any] | None = None,
    plan: GridPlan | None = None,
    upload: TrackAnalysis | None = None,
    mix: MixRecord | None = None,
    warnings: Sequence[str] = (),
    guide: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``manifest.json`` document: the request, the musical grid (``musical``: target
    tempo, bars, time signature, key, the upload's analysis), each stem, the mix, failures,
    warnings and timings; ``guide``: the guide performance the stems were extracted from
    (ACE-Step without an upload), else None."""
    plan = plan or plan_grid(request.parameters, upload, seed=request.seed)
    return {
        "generation_request_id": request.generation_request_id,
        "created_at": datetime.now(UTC).isoformat(),
        "model_id": model_id,
        "seed": request.seed,
        "request": request.model_dump(mode="json", exclude={"callback_url"}),
        "musical": musical_summary(plan, upload),
        "stems": [r.to_dict() for r in records],
        "mix": mix.to_dict() if mix is not None else None,
        "guide": guide,
        "failed_stems": list(failed_stems),
        "warnings": list(warnings),
        "timings": timings or {},
    }


def musical_summary(plan: GridPlan, upload: TrackAnalysis | None) -> dict[str, Any]:
    """The grid and the upload's analysis, as the manifest and the callback carry them."""
    return {**plan.summary(), "upload": upload.to_dict() if upload is not None else None}
