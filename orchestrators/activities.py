"""The activities: they do the I/O the orchestrator decides on.

Each runs at least once, so each is idempotent: stems and the manifest go to fixed blob
names with overwrite, and nothing is written to local disk (no temporary files to leak).
Inputs and outputs are plain JSON dicts holding blob names and URLs, never audio.
"""

from __future__ import annotations

import logging
from typing import Any

import azure.durable_functions as df

from generation.audio import ENCODINGS, encode_audio
from generation.callback import send_callback as post_callback
from generation.prompts import parse_stem
from generation.request import GenerationRequest
from generation.stems import build_manifest, render_stems
from generation.storage import manifest_blob_name, stem_blob_name
from generation.url_safety import CallbackPolicy, parse_allowed_hosts
from orchestrators import runtime

logger = logging.getLogger(__name__)

bp = df.Blueprint()


def _request(data: dict[str, Any]) -> GenerationRequest:
    return GenerationRequest.model_validate(data)


@bp.activity_trigger(input_name="payload", activity="generate_stem")
def generate_stem(payload: dict[str, Any]) -> dict[str, Any]:
    """Generate one stem and write it to ``generations/{id}/{stem}.{ext}`` (overwrite).

    Input: ``{"request": <request dict, seed set>, "stem": str, "stem_index": int}``.
    Output: the stem's blob name and URL, prompt, seed, duration (s), sample rate (Hz),
    model id and generation time (s).
    """
    request = _request(payload["request"])
    stem = parse_stem(payload["stem"])
    settings = runtime.settings()
    loaded = runtime.model().get()  # loaded once per worker; waits if still loading
    # Stems of concurrent requests share one batched generation (runtime.batcher).
    [rendered] = render_stems(
        loaded, request, settings, stems=[stem], generate=runtime.batcher().generate
    )
    encoding = ENCODINGS[request.output_format]
    name = stem_blob_name(request.generation_request_id, stem.value, encoding.extension)
    data = encode_audio(rendered.audio, rendered.sample_rate, request.output_format)
    url = runtime.blob_store().upload_bytes(name, data, encoding.content_type, overwrite=True)
    logger.info("stored %s (%d bytes) for %s", name, len(data), request.generation_request_id)
    return {
        "stem": stem.value,
        "blob_name": name,
        "blob_url": url,
        "duration_seconds": rendered.duration_seconds,
        "samples": int(rendered.audio.shape[-1]),
        "sample_rate": rendered.sample_rate,
        "prompt": rendered.prompt,
        "seed": rendered.seed,
        "model_id": loaded.model_id,
        "generation_seconds": rendered.generation_seconds,
        "format": request.output_format.value,
    }


@bp.activity_trigger(input_name="payload", activity="finalize_generation")
def finalize_generation(payload: dict[str, Any]) -> dict[str, Any]:
    """Write ``generations/{id}/manifest.json`` beside the stems (overwrite).

    Input: ``{"request", "stems": [generate_stem outputs], "failed_stems", "started_at"}``.
    Output: ``{"manifest_blob_name", "manifest_url"}``.
    """
    request = _request(payload["request"])
    stems = payload["stems"]
    model_id = stems[0]["model_id"] if stems else runtime.settings().musicgen_model
    manifest = build_manifest(
        request,
        stems,
        model_id=model_id,
        failed_stems=payload.get("failed_stems", []),
        timings={
            "started_at": payload.get("started_at"),
            "stems": {s["stem"]: s["generation_seconds"] for s in stems},
        },
    )
    name = manifest_blob_name(request.generation_request_id)
    url = runtime.blob_store().upload_json(name, manifest)
    return {"manifest_blob_name": name, "manifest_url": url}


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
    policy = CallbackPolicy(
        allow_http=settings.callback_allow_http,
        allow_private_networks=settings.callback_allow_private_networks,
        allowed_hosts=parse_allowed_hosts(settings.callback_allowed_hosts),
    )
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
