"""The HTTP API at the old worker's paths (host.json sets ``routePrefix`` to "").

    POST /generate                           validate, start (idempotent by id) -> 202
    GET  /generate/{generation_request_id}   status in plain terms, 404 when unknown
    GET  /health                             the old worker's health JSON, 200 or 503

The decorated functions only adapt; ``handle_*`` hold the behaviour and take any object
with the durable client's methods, so tests call them with a fake client.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Protocol

import azure.durable_functions as df
import azure.functions as func
import torch

from generation.errors import InvalidRequestError
from generation.model_loader import ModelState
from generation.request import parse_request
from orchestrators import runtime

logger = logging.getLogger(__name__)

bp = df.Blueprint()

ORCHESTRATOR = "stem_generation_orchestrator"
MAX_BODY_BYTES = 64 * 1024
# Still running or done well: a repeat returns this instance and starts nothing.
_KEEP = {"Pending", "Running", "Completed", "ContinuedAsNew", "Suspended"}


class DurableClient(Protocol):
    """The part of ``DurableOrchestrationClient`` the API uses."""

    async def start_new(
        self, orchestration_function_name: str, instance_id: str | None, client_input: Any
    ) -> str: ...

    async def get_status(self, instance_id: str) -> Any: ...

    def create_http_management_payload(self, instance_id: str) -> dict[str, str]: ...


def _json(body: Any, status: int, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body), status_code=status, mimetype="application/json", headers=headers
    )


def _bad_request(errors: list[dict[str, Any]]) -> func.HttpResponse:
    return _json({"error": "invalid request", "errors": errors}, 400)


def _runtime_status(status: Any) -> str | None:
    """The instance's runtime status name, or ``None`` when the instance is unknown."""
    value = getattr(status, "runtime_status", None)
    return None if value is None else getattr(value, "value", str(value))


def decode_json_body(req: func.HttpRequest) -> Any:
    """The request body as JSON; raises ``InvalidRequestError`` with a field-error list."""
    body = req.get_body() or b""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidRequestError(f"body is larger than {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        raise InvalidRequestError(f"body is not valid JSON: {error}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


async def handle_generate(req: func.HttpRequest, client: DurableClient) -> func.HttpResponse:
    """Validate the body and start (or find) the orchestration named by its id."""
    try:
        request = parse_request(decode_json_body(req)).with_seed()
    except InvalidRequestError as error:
        return _bad_request(error.errors)
    instance_id = request.generation_request_id
    existing = _runtime_status(await client.get_status(instance_id))
    if existing in _KEEP:
        logger.info("request %s repeated while %s: nothing started", instance_id, existing)
        body: dict[str, Any] = {
            **client.create_http_management_payload(instance_id),
            "runtimeStatus": existing,
            "duplicate": True,
        }
        return _json(body, 200 if existing == "Completed" else 202)
    await client.start_new(ORCHESTRATOR, instance_id, request.model_dump(mode="json"))
    logger.info(
        "started %s: %s, %.1f s, seed %d%s",
        instance_id,
        ",".join(s.value for s in request.target_stems),
        request.parameters.duration_seconds,
        request.seed,
        f" (previous run {existing})" if existing else "",
    )
    started: dict[str, Any] = {
        **client.create_http_management_payload(instance_id),
        "duplicate": False,
    }
    location = started.get("statusQueryGetUri", "")
    return _json(started, 202, {"Location": location} if location else None)


async def handle_status(instance_id: str, client: DurableClient) -> func.HttpResponse:
    """The orchestration's state in plain terms; 404 when the id is unknown."""
    status = await client.get_status(instance_id)
    runtime_status = _runtime_status(status)
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
        "callback": custom.get("callback"),
        "error": None,
    }
    if runtime_status == "Completed" and isinstance(output, dict):
        body["stems"] = [
            {k: s.get(k) for k in ("stem", "blob_url", "duration_seconds", "sample_rate")}
            for s in output.get("stems", [])
        ]
        body["manifest_url"] = output.get("manifest_url")
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


@bp.route(route="generate", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def start_generation(req: func.HttpRequest, client) -> func.HttpResponse:
    """POST /generate."""
    return await handle_generate(req, client)


@bp.route(
    route="generate/{generation_request_id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS
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
