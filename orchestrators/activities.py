"""The activities: they do the I/O the orchestrator decides on.

Each runs at least once, so each is idempotent: stems, the mix and the manifest go to fixed
blob names with overwrite, and nothing is written to local disk (no temporary files to
leak). Inputs and outputs are plain JSON dicts holding blob names and URLs, never audio.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import azure.durable_functions as df
import numpy as np

from generation.adapters.callback import send_callback as post_callback
from generation.adapters.storage import BlobSink, generation_blob_name, upload_blob_name
from generation.audio.codecs import Excerpt, decode_audio, encode_audio
from generation.errors import BlobNotFoundError, UploadError
from generation.request import Engine, GenerationRequest, OutputFormat, Stem
from generation.stems.context import (
    context_audio,
    finish_guide,
    guide_batch,
    read_guide,
    render_parts,
    write_guide,
)
from generation.stems.grid import GridPlan, plan_grid
from generation.stems.manifest import musical_summary
from generation.stems.output import finish_set, write_stem
from generation.stems.prompts import parse_stem
from generation.stems.record import StemRecord
from generation.stems.render import render_stems, stem_melody
from generation.stems.track import (
    EXCERPT_NAME,
    TrackAnalysis,
    excerpt_for_stems,
    read_track,
)
from orchestrators import runtime

logger = logging.getLogger(__name__)

bp = df.Blueprint()


def _request(data: dict[str, Any]) -> GenerationRequest:
    return GenerationRequest.model_validate(data)


def _upload_and_plan(
    request: GenerationRequest, payload: dict[str, Any]
) -> tuple[TrackAnalysis | None, GridPlan]:
    """The upload's analysis the orchestrator passed on (None: no upload) and the grid it
    gives the request: the same plan in every activity of the request."""
    data = payload.get("upload")
    upload = TrackAnalysis.from_dict(data) if data else None
    return upload, plan_grid(request.parameters, upload, seed=request.seed)


def read_upload(request: GenerationRequest) -> tuple[TrackAnalysis, Excerpt]:
    """The request's uploaded track analysed, and the excerpt read for it (bounded memory:
    see ``generation.stems.track.read_track``).

    Raises ``UploadError`` (a caller problem, never retried into success) when the blob is
    missing, larger than ``MAX_UPLOAD_MB`` or not usable audio; other storage errors
    propagate as ``StorageError`` (transient: the activity is retried).
    """
    assert request.audio_file_id is not None
    settings = runtime.settings()
    store = runtime.upload_store()
    name = upload_blob_name(settings.upload_blob_template, request.audio_file_id)
    what = f"audio_file_id {request.audio_file_id!r} (blob {name!r} in {store.container!r})"
    try:
        data = store.download_bytes(name, max_bytes=int(settings.max_upload_mb * (1 << 20)))
    except BlobNotFoundError:
        raise UploadError(f"{what}: no such upload") from None
    except ValueError:
        limit = f"MAX_UPLOAD_MB ({settings.max_upload_mb:g} MB)"
        raise UploadError(f"{what}: larger than {limit}") from None
    try:
        return read_track(data, time_signature=request.parameters.time_signature, what=what)
    except ValueError as error:
        raise UploadError(str(error)) from None


@bp.activity_trigger(input_name="payload", activity="analyze_upload")
def analyze_upload(payload: dict[str, Any]) -> dict[str, Any]:
    """Analyse the request's uploaded track (tempo, first downbeat, key) and write the
    copy its stems read, ``generations/{id}/upload-excerpt.flac`` (mono, 32 kHz, at most
    180 s): the upload is decoded once per request, not once per stem.

    Input: ``{"request": <request dict>}``. Output: ``{"ok": true, "analysis":
    TrackAnalysis dict}``, or ``{"ok": false, "error": str}`` when the upload cannot be
    used (missing, too large, not usable audio, or its tempo makes the requested bars too
    long): a caller problem that retrying cannot fix, so it is returned, not raised.
    Transient storage errors raise (the orchestrator retries them).
    """
    request = _request(payload["request"])
    try:
        analysis, excerpt = read_upload(request)
        plan_grid(request.parameters, analysis)  # the upload's tempo must fit the request
    except (UploadError, ValueError) as error:
        logger.warning("%s: upload not usable: %s", request.generation_request_id, error)
        return {"ok": False, "error": str(error)}
    copy, rate = excerpt_for_stems(excerpt)
    del excerpt
    _sink(request).write(EXCERPT_NAME, encode_audio(copy, rate, OutputFormat.FLAC), "audio/flac")
    logger.info(
        "%s: upload %s analysed: %s BPM, %s",
        request.generation_request_id,
        request.audio_file_id,
        analysis.bpm,
        analysis.key,
    )
    return {"ok": True, "analysis": analysis.to_dict()}


def _musicgen_stem(
    request: GenerationRequest,
    stem: Stem,
    upload: TrackAnalysis | None,
    plan: GridPlan,
    payload: dict[str, Any],
) -> StemRecord:
    """MusicGen: the stem from its caption (and, with a melody checkpoint, the upload's or
    the request's chords: ``stem_melody``), through the cross-request batcher, locked to
    the grid and written."""
    del payload
    settings = runtime.settings()
    loaded = runtime.model().get()  # loaded once per worker; waits if still loading

    def upload_audio() -> tuple[np.ndarray, int]:
        # The analysis wrote this small copy; a stem never decodes the upload itself.
        name = generation_blob_name(request.generation_request_id, EXCERPT_NAME)
        return decode_audio(_sink(request).read(name), what=name)

    melody, melody_source = stem_melody(
        plan,
        supports_melody=loaded.supports_melody,
        upload_audio=None if upload is None else upload_audio,
    )
    # Stems of concurrent requests share one batched generation (runtime.batcher); the
    # lease holds the stem's share of the worker's memory budget until it is written.
    with runtime.batcher().lease() as generate:
        [rendered] = render_stems(
            loaded,
            request,
            settings,
            stems=[stem],
            plan=plan,
            melody=melody,
            melody_source=melody_source,
            generate=generate,
        )
        return write_stem(_sink(request), rendered, request)


def _ace_step_stem(
    request: GenerationRequest,
    stem: Stem,
    upload: TrackAnalysis | None,
    plan: GridPlan,
    payload: dict[str, Any],
) -> StemRecord:
    """ACE-Step: ``lego`` over the uploaded track (the copy the analysis wrote: its start,
    downmixed, at most 180 s), or ``extract`` from the request's guide; stems of the request
    running at the same time share one batch (runtime's gatherer)."""
    engine = runtime.ace_step()
    if upload is not None:
        name = generation_blob_name(request.generation_request_id, EXCERPT_NAME)
        audio, rate = decode_audio(_sink(request).read(name), what=name)
        task, context_id = "lego", name
    else:
        guide = payload.get("guide")
        if not guide:
            raise ValueError("an ace_step stem without an upload needs the request's guide")
        audio, rate = read_guide(_sink(request), guide)
        task, context_id = "extract", guide["file"]
    context = context_audio(audio, rate, plan, engine.sample_rate)
    [rendered] = render_parts(
        lambda batch: runtime.ace_step_gatherer().generate(batch, context_id),
        request,
        plan,
        [stem],
        task=task,
        context=context,
        sample_rate=engine.sample_rate,
        model_id=engine.checkpoint_for(task),
    )
    return write_stem(_sink(request), rendered, request)


_STEM_RENDERERS = {Engine.MUSICGEN: _musicgen_stem, Engine.ACE_STEP: _ace_step_stem}


@bp.activity_trigger(input_name="payload", activity="generate_guide")
def generate_guide(payload: dict[str, Any]) -> dict[str, Any]:
    """The request's guide performance (ACE-Step text2music with its tempo, key, metre,
    style and prompt), put on the grid and written as ``generations/{id}/guide.flac``
    (overwrite). Input: ``{"request"}``. Output: the guide's record (file, URL, model id,
    task, seed, samples, sample rate, warnings): the stems are extracted from it.
    """
    request = _request(payload["request"])
    plan = plan_grid(request.parameters, seed=request.seed)  # the set's key, as its stems'
    engine = runtime.ace_step()
    started = time.perf_counter()
    [raw] = engine.generate(guide_batch(request, plan))
    audio, warnings = finish_guide(raw, engine.sample_rate, plan)
    return write_guide(
        _sink(request),
        request,
        audio,
        engine.sample_rate,
        model_id=engine.checkpoint_for("text2music"),
        generation_seconds=time.perf_counter() - started,
        warnings=warnings,
    )


@bp.activity_trigger(input_name="payload", activity="generate_stem")
def generate_stem(payload: dict[str, Any]) -> dict[str, Any]:
    """Generate one stem, put it on the request's grid, gain-stage it and write it to
    ``generations/{id}/{stem}.{ext}`` (overwrite).

    Input: ``{"request": <request dict, seed set>, "stem": str, "stem_index": int,
    "upload": <TrackAnalysis dict> | None, "guide": <generate_guide output> (ACE-Step
    without an upload)}``. The request's engine makes it: MusicGen (with a melody
    checkpoint, conditioned on the upload or the request's chords), or ACE-Step (lego over
    the upload, or extract from the guide). Output: the stem's blob name and URL, prompt,
    seed, duration (s), samples, sample rate (Hz), model id, generation time (s),
    detected raw tempo, stretch ratio, loudness (LUFS), true peak (dBTP), warnings and the
    request's ``musical`` summary.
    """
    request = _request(payload["request"])
    stem = parse_stem(payload["stem"])
    upload, plan = _upload_and_plan(request, payload)
    render = _STEM_RENDERERS[request.parameters.engine]
    record = render(request, stem, upload, plan, payload)
    return {**record.to_dict(), "musical": musical_summary(plan, upload)}


def _sink(request: GenerationRequest) -> BlobSink:
    return BlobSink(runtime.blob_store(), request.generation_request_id)


@bp.activity_trigger(input_name="payload", activity="finalize_generation")
def finalize_generation(payload: dict[str, Any]) -> dict[str, Any]:
    """Write the preview mix ``generations/{id}/mix.{ext}`` of the stems that succeeded and
    ``generations/{id}/manifest.json`` beside them (both overwritten on a retry).

    Input: ``{"request", "stems": [generate_stem outputs], "failed_stems", "started_at",
    "upload": <TrackAnalysis dict> | None, "guide": <generate_guide output> | None,
    "warnings": [str]}``. Output: ``{"manifest_blob_name", "manifest_url", "mix_url",
    "musical", "warnings"}``. A mix that cannot be made is a warning in the manifest, not
    a lost manifest.
    """
    request = _request(payload["request"])
    records = [StemRecord.from_dict(_record_fields(s)) for s in payload["stems"]]
    upload, plan = _upload_and_plan(request, payload)
    delivery = finish_set(
        _sink(request),
        request,
        records,
        plan=plan,
        upload=upload,
        model_id=records[0].model_id if records else runtime.settings().musicgen_model,
        failed_stems=payload.get("failed_stems", []),
        warnings=payload.get("warnings", []),
        started_at=payload.get("started_at"),
        guide=payload.get("guide"),
    )
    return {
        "manifest_blob_name": delivery.manifest_file,
        "manifest_url": delivery.manifest_url,
        "mix_url": delivery.mix.blob_url if delivery.mix else None,
        "musical": delivery.manifest["musical"],
        "warnings": delivery.warnings,
    }


def _record_fields(result: dict[str, Any]) -> dict[str, Any]:
    """A ``generate_stem`` output without what is not part of the record (``musical``)."""
    return {k: v for k, v in result.items() if k != "musical"}


@bp.activity_trigger(input_name="payload", activity="send_callback")
def send_callback(payload: dict[str, Any]) -> dict[str, Any]:
    """POST the result to the request's ``callback_url`` or ``CALLBACK_URL``; never raises.

    The URL must pass the callback policy (``CALLBACK_ALLOW_HTTP``,
    ``CALLBACK_ALLOW_PRIVATE_NETWORKS``, ``CALLBACK_ALLOWED_HOSTS``); one that does not is
    not contacted and the outcome says why (``"unsafe callback URL: ..."``). Signed with
    ``CALLBACK_SECRET`` when set. Input: ``{"callback_url": str | None, "payload": dict}``.
    Output: the outcome (delivered, skipped, attempts, status code, error, target without
    query string, signed).
    """
    settings = runtime.settings()
    url = payload.get("callback_url") or settings.callback_url
    policy = settings.callback_policy()
    outcome = post_callback(
        url,
        payload["payload"],
        policy=policy,
        signing_secrets=settings.callback_secrets(),
        timeout_s=settings.callback_timeout_seconds,
        max_attempts=settings.callback_max_attempts,
        backoff_s=settings.callback_backoff_seconds,
        max_total_s=settings.callback_max_total_seconds,
    )
    return outcome.to_dict()
