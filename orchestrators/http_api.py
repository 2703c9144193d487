"""The HTTP API at the old worker's paths (host.json sets ``routePrefix`` to "").

    POST /generate                           validate, start (idempotent by id) -> 202
    GET  /generate/{generation_request_id}   status in plain terms, 404 when unknown
    GET  /health                             the old worker's health JSON, 200 or 503

The two generation endpoints need a function key (``x-functions-key`` header or ``?code=``);
/health is anonymous. ``openapi.yaml`` describes all three. Every invalid input is a 400
with a JSON list of field errors, and starts nothing.

The decorated functions only adapt; ``handle_*`` hold the behaviour and take any object
with the durable client's methods, so tests call them with a fake client.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import azure.durable_functions as df
import azure.functions as func
import torch

from generation.engines.musicgen.loader import ModelState
from generation.errors import InvalidRequestError
from generation.request import check_id, parse_request
from orchestrators import admission, runtime
from orchestrators.body import MAX_BODY_BYTES, decode_json
from orchestrators.starter import (
    DurableClient,
    clear_outputs,
    read_runtime_status,
    start_once,
)

logger = logging.getLogger(__name__)

bp = df.Blueprint()

RETRY_AFTER_S = 5


def _json(body: Any, status: int, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body), status_code=status, mimetype="application/json", headers=headers
    )


def _bad_request(errors: list[dict[str, Any]]) -> func.HttpResponse:
    return _json({"error": "invalid request", "errors": errors}, 400)


def _unavailable(what: str) -> func.HttpResponse:
    return _json({"error": f"{what}; try again shortly"}, 503, {"Retry-After": str(RETRY_AFTER_S)})


def _check_content_type(req: func.HttpRequest) -> None:
    """Refuse a body not declared as ``application/json`` (UTF-8, the only charset allowed).

    Browsers send form and ``text/plain`` posts cross-site without asking first; requiring
    the JSON type keeps such a post from starting anything.
    """
    header = req.headers.get("content-type") or ""
    media_type, *params = (part.strip() for part in header.split(";"))
    if media_type.lower() != "application/json":
        shown = f"{media_type[:100]!r}" if media_type else "none"
        raise InvalidRequestError(f"Content-Type must be application/json, got {shown}")
    for param in params:
        name, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in {"utf-8", "utf8"}:
            raise InvalidRequestError(f"charset must be utf-8, got {charset[:40]!r}")


def decode_json_body(req: func.HttpRequest) -> Any:
    """The request body as JSON; raises ``InvalidRequestError`` with a field-error list.

    Refused: a Content-Type other than ``application/json``, and whatever ``decode_json``
    refuses (over 64 KiB, not UTF-8, nested too deep, NaN, repeated keys, not JSON).
    """
    _check_content_type(req)
    return decode_json(req.get_body() or b"", max_bytes=MAX_BODY_BYTES)


def status_url(req: func.HttpRequest, instance_id: str) -> str:
    """This service's own status URL for ``instance_id`` (``GET /generate/{id}``), on the
    scheme and host the caller used. No Durable management URL is ever returned: those
    carry the Durable system key, which lets its holder read, terminate or purge any
    instance."""
    parts = urlsplit(req.url)
    return f"{parts.scheme}://{parts.netloc}/generate/{quote(instance_id, safe='')}"


async def handle_generate(req: func.HttpRequest, client: DurableClient) -> func.HttpResponse:
    """Validate the body and start (or find) the orchestration named by its id.

    400: invalid (nothing started). 202: started, or a duplicate still pending/running.
    200: a duplicate of a completed run. 409: the id holds a different request.
    503: the durable client failed. Bodies and ``Location`` carry only this service's own
    status URL.
    """
    try:
        request = parse_request(decode_json_body(req))
    except InvalidRequestError as error:
        return _bad_request(error.errors)
    refused = admission.refusal(request)
    if refused is not None:
        return _bad_request(refused.errors)
    instance_id = request.generation_request_id
    try:
        outcome = await start_once(client, request, before_restart=clear_outputs)
    except Exception:
        logger.exception("could not start %s", instance_id)
        return _unavailable(f"could not start generation {instance_id!r} now")
    url = status_url(req, instance_id)
    body: dict[str, Any] = {"id": instance_id, "status_url": url}
    if outcome.conflict:
        logger.info("request %s repeated with a different body: refused", instance_id)
        message = (
            f"generation_request_id {instance_id!r} is already in use by a different request "
            f"({outcome.runtime_status}); use a new id, or repeat the same body"
        )
        return _json({**body, "error": message, "runtimeStatus": outcome.runtime_status}, 409)
    if not outcome.started:
        logger.info(
            "request %s repeated while %s: nothing started", instance_id, outcome.runtime_status
        )
        body |= {"runtimeStatus": outcome.runtime_status, "duplicate": True}
        return _json(body, 200 if outcome.runtime_status == "Completed" else 202, {"Location": url})
    assert outcome.request is not None and outcome.request.seed is not None
    logger.info(
        "started %s: %s, %.1f s, seed %d%s",
        instance_id,
        ",".join(s.value for s in request.target_stems),
        request.parameters.duration_seconds,
        outcome.request.seed,
        f" (previous run {outcome.runtime_status})" if outcome.runtime_status else "",
    )
    return _json({**body, "duplicate": False}, 202, {"Location": url})


async def handle_status(instance_id: str, client: DurableClient) -> func.HttpResponse:
    """The orchestration's state in plain terms; 404 when the id is unknown, 400 when it
    could not be one, 503 when the durable client fails."""
    try:
        check_id(instance_id)
    except InvalidRequestError as error:
        return _bad_request(error.errors)
    try:
        status = await client.get_status(instance_id)
    except Exception:
        logger.exception("could not read the status of %s", instance_id)
        return _unavailable(f"could not read the status of {instance_id!r} now")
    runtime_status = read_runtime_status(status)
    if runtime_status is None:
        return _json({"error": f"no generation with id {instance_id!r}"}, 404)
    custom = status.custom_status or {}
    if isinstance(custom, str):
        custom = json.loads(custom)
    output = status.output
    body: dict[str, Any] = {
        "generation_request_id": instance_id,
        "status": runtime_status.lower(),
        "created_at": _iso(status.created_time),
        "last_updated_at": _iso(status.last_updated_time),
        "progress": {
            key: custom.get(key) for key in ("phase", "stems", "completed", "failed", "total")
        },
        "stems": [],
        "failed_stems": custom.get("failed_stems", []),
        "manifest_url": custom.get("manifest_url"),
        "mix_url": custom.get("mix_url"),
        "musical": custom.get("musical"),
        "warnings": custom.get("warnings", []),
        "callback": custom.get("callback"),
        "error": None,
    }
    if runtime_status == "Completed" and isinstance(output, dict):
        body["stems"] = [
            {k: s.get(k) for k in ("stem", "blob_url", "duration_seconds", "sample_rate")}
            for s in output.get("stems", [])
        ]
        body["manifest_url"] = output.get("manifest_url")
        body["mix_url"] = output.get("mix_url")
        body["callback"] = output.get("callback")
    elif runtime_status in {"Failed", "Terminated", "Canceled"}:
        body["error"] = custom.get("error") or (output if isinstance(output, str) else None)
    return _json(body, 200)


def health_report() -> tuple[dict[str, Any], int]:
    """The old worker's health JSON and its HTTP status (200 healthy, 503 otherwise)."""
    holder = runtime.model()
    state = holder.state
    musicgen = state.value if state is not ModelState.FAILED else ModelState.NOT_LOADED.value
    storage_ok = runtime.blob_store_reachable()
    gpu_available = torch.cuda.is_available()
    healthy = state is ModelState.AVAILABLE and storage_ok
    body = {
        "status": "healthy" if healthy else "unhealthy",
        "timestamp": datetime.now(UTC).isoformat(),
        "services": {
            "stable_audio": "not_loaded",
            "musicgen": musicgen,
            "storage": "connected" if storage_ok else "disconnected",
            "device": "gpu" if holder.device.type == "cuda" else "cpu",
        },
        "gpu_available": gpu_available,
    }
    return body, 200 if healthy else 503


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@bp.route(route="generate", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def start_generation(req: func.HttpRequest, client) -> func.HttpResponse:
    """POST /generate."""
    return await handle_generate(req, client)


@bp.route(
    route="generate/{generation_request_id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION
)
@bp.durable_client_input(client_name="client")
async def generation_status(req: func.HttpRequest, client) -> func.HttpResponse:
    """GET /generate/{generation_request_id}."""
    return await handle_status(req.route_params["generation_request_id"], client)


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """GET /health."""
    body, status = health_report()
    return _json(body, status)
