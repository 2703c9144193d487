"""Admission control at the edge: a request is accepted only when its stems, all in flight
at once, fit the worker's memory budget (``WORKER_MEMORY_BUDGET_MB``).

The need is the engine's memory model (``generation.engines.musicgen.memory``) for the
request's stem count and the seconds the model generates per stem. With a tempo lock that
is more than the output (room to stretch and align); when the tempo will come from the
upload, it is not known yet at the edge, so the bound assumes the longest bar the request's
time signature has at the slowest tempo the API accepts (``SLOWEST_BPM``). A request that
does not fit gets ``InvalidRequestError`` (HTTP 400) saying what it needs, the budget, and
what would fit: the most stems of its length, and the longest duration (or most bars) for
its stems. The batcher enforces the same budget again on the worker, with the real lengths.
"""

from __future__ import annotations

import logging
import math

from generation.engines.musicgen.memory import MUSICGEN_SMALL, MemoryProfile, request_memory_mb
from generation.errors import InvalidRequestError
from generation.request import (
    MAX_DURATION_SECONDS,
    GenerationParameters,
    GenerationRequest,
    bar_seconds,
)
from generation.settings import GenerationSettings
from generation.stems.grid import STRETCH_MARGIN, plan_grid

logger = logging.getLogger(__name__)

SLOWEST_BPM = 40.0  # the lowest target_bpm a request may give


def generation_seconds_bound(params: GenerationParameters, *, upload: bool) -> float:
    """Seconds the model generates per stem for ``params``, at most: exact when the tempo
    is known now (``target_bpm`` given, or no upload), else the bound described in the
    module docstring (``upload``: the request names an uploaded track)."""
    if params.target_bpm is not None or not upload:
        return plan_grid(params).generation_s
    longest_bar = bar_seconds(SLOWEST_BPM, params.time_signature)
    if params.bars is not None:
        output = min(MAX_DURATION_SECONDS, params.bars * longest_bar)
    else:
        output = min(MAX_DURATION_SECONDS, params.duration_seconds + longest_bar / 2)
    room = (1 + int(params.loop)) * longest_bar
    return max(params.duration_seconds, (output + room) * STRETCH_MARGIN)


def _need_mb(
    stems: int,
    params: GenerationParameters,
    upload: bool,
    settings: GenerationSettings,
    profile: MemoryProfile,
) -> float:
    guidance = params.guidance_scale
    if guidance is None:
        guidance = settings.default_guidance_scale
    return request_memory_mb(
        stems,
        generation_seconds_bound(params, upload=upload),
        guided=guidance > 1,
        kv_budget_mb=settings.batch_kv_budget_mb,
        profile=profile,
        window_s=settings.window_seconds,
        stride_s=settings.extend_stride_seconds,
    )


def request_need_mb(
    request: GenerationRequest,
    settings: GenerationSettings,
    profile: MemoryProfile = MUSICGEN_SMALL,
) -> float:
    """Worker memory beyond the loaded model ``request`` needs with all its stems in
    flight, MB (``generation.engines.musicgen.memory.request_memory_mb``)."""
    upload = request.audio_file_id is not None
    return _need_mb(len(request.target_stems), request.parameters, upload, settings, profile)


def _what_fits(
    request: GenerationRequest, settings: GenerationSettings, profile: MemoryProfile
) -> str:
    params = request.parameters
    upload = request.audio_file_id is not None
    budget = settings.worker_memory_budget_mb
    stems = len(request.target_stems)
    most = max(
        (n for n in range(1, stems) if _need_mb(n, params, upload, settings, profile) <= budget),
        default=0,
    )
    options = []
    if most:
        options.append(f"at most {most} stem(s) of this length")
    if params.bars is not None:
        bars = max(
            (
                b
                for b in range(1, params.bars)
                if _need_mb(stems, params.model_copy(update={"bars": b}), upload, settings, profile)
                <= budget
            ),
            default=0,
        )
        if bars:
            options.append(f"these {stems} stem(s) with at most {bars} bars")
    else:
        lo, hi = 0, math.floor(params.duration_seconds) - 1  # whole seconds that may fit
        while lo < hi:
            mid = (lo + hi + 1) // 2
            shorter = params.model_copy(update={"duration_seconds": float(mid)})
            if _need_mb(stems, shorter, upload, settings, profile) <= budget:
                lo = mid
            else:
                hi = mid - 1
        if lo >= 1:
            options.append(f"these {stems} stem(s) at most {lo} s long (duration_seconds)")
    if not options:
        one = params.model_copy(update={"duration_seconds": 1.0, "bars": None})
        need = _need_mb(1, one, upload, settings, profile)
        return f"even one stem of 1 s needs about {need:,.0f} MB: raise the budget"
    return "what fits: " + ", or ".join(options)


def check_fits(
    request: GenerationRequest,
    settings: GenerationSettings,
    profile: MemoryProfile = MUSICGEN_SMALL,
) -> None:
    """Refuse ``request`` with ``InvalidRequestError`` (HTTP 400, field ``target_stems``)
    when it needs more than ``WORKER_MEMORY_BUDGET_MB``; the message says what would fit."""
    need = request_need_mb(request, settings, profile)
    budget = settings.worker_memory_budget_mb
    if need <= budget:
        return
    params = request.parameters
    seconds = generation_seconds_bound(params, upload=request.audio_file_id is not None)
    room = " (output plus room for the tempo lock)" if seconds > params.duration_seconds else ""
    message = (
        f"request too large for a worker: {len(request.target_stems)} stem(s) of "
        f"{seconds:.0f} s generated each{room} need about "
        f"{need:,.0f} MB of memory on one worker, more than its WORKER_MEMORY_BUDGET_MB of "
        f"{budget:,} MB; {_what_fits(request, settings, profile)}"
    )
    logger.info("%s refused: %s", request.generation_request_id, message)
    raise InvalidRequestError(
        message, [{"field": "target_stems", "message": message, "type": "memory_budget"}]
    )
