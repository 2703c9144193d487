"""The studio's HTTP face in the Functions app (host.json sets ``routePrefix`` to "").

    GET  /                                      the page (anonymous, strict CSP)
    GET  /studio/{name}                         its script, style and config (anonymous)
    POST /uploads                               store a track to follow -> its audio_file_id
    GET  /generate/{id}/files/{name}            a file the request's manifest lists

The last two need a function key, like the generation API. Files are read through the
service's own storage, so the page works against Azurite and Azure alike without a public
container, a SAS token or an account key ever reaching the browser.

The decorated functions only adapt; ``handle_*`` hold the behaviour.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from typing import Any

import azure.functions as func

from generation.adapters.storage import (
    GENERATIONS_PREFIX,
    manifest_blob_name,
    upload_blob_name,
)
from generation.audio.codecs import UploadedAudio, probe_audio
from generation.errors import BlobNotFoundError, InvalidRequestError, StorageError
from generation.request import check_id
from generation.studio import site
from orchestrators import runtime

logger = logging.getLogger(__name__)

bp = func.Blueprint()

# A manifest lists at most a few dozen files; anything far larger is not one.
MAX_MANIFEST_BYTES = 4 << 20


def _respond(
    body: bytes, status: int, content_type: str, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    all_headers = {**site.security_headers(), "Content-Type": content_type, **(headers or {})}
    return func.HttpResponse(body, status_code=status, headers=all_headers)


def _json(value: Any, status: int, headers: dict[str, str] | None = None) -> func.HttpResponse:
    no_store = {"Cache-Control": "no-store", **(headers or {})}
    return _respond(site.json_body(value), status, "application/json", no_store)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return _json({"error": message}, status, headers)


def _field_error(field: str, message: str, kind: str) -> func.HttpResponse:
    errors = [{"field": field, "message": message, "type": kind}]
    return _json({"error": "invalid request", "errors": errors}, 400)


def _not_modified(req: func.HttpRequest, etag: str) -> bool:
    wanted = req.headers.get("if-none-match") or ""
    return etag in {tag.strip() for tag in wanted.split(",")}


def _unavailable(what: str) -> func.HttpResponse:
    return _error(503, f"{what}; try again shortly", {"Retry-After": "5"})


def handle_page(req: func.HttpRequest, name: str = site.INDEX) -> func.HttpResponse:
    """The page or one of its files, with the security headers; 404 for any other name,
    304 when the browser already holds this version."""
    item = site.asset(name)
    if item is None:
        return _error(404, "no such studio file")
    headers = site.asset_headers(item)
    if _not_modified(req, item.etag):
        return func.HttpResponse(status_code=304, headers=headers)
    return func.HttpResponse(item.body, status_code=200, headers=headers)


def handle_config() -> func.HttpResponse:
    """The page's configuration for this app: it may ask, the upload limit, the schema."""
    config = site.studio_config(
        "service", read_only=False, max_upload_mb=runtime.settings().max_upload_mb
    )
    return _json(config, 200)


def _upload_id(req: func.HttpRequest, extension: str) -> str:
    """The caller's ``audio_file_id`` query parameter (checked), or a fresh one."""
    wanted = req.params.get("audio_file_id")
    if wanted is not None:
        return check_id(wanted, "audio_file_id")
    return f"upload-{secrets.token_hex(8)}.{extension}"


class _Answer(Exception):
    """Stop handling and answer with ``response`` (a refusal found deep in a check)."""

    def __init__(self, response: func.HttpResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


def _checked_upload(req: func.HttpRequest) -> tuple[bytes, UploadedAudio, str]:
    """The upload's bytes, what they are and the id to store them under; ``_Answer`` when
    the upload is refused (empty, too large, not audio, bad id)."""
    settings = runtime.settings()
    limit = int(settings.max_upload_mb * (1 << 20))
    too_large = f"the upload is larger than MAX_UPLOAD_MB ({settings.max_upload_mb:g} MB)"
    declared = (req.headers.get("content-length") or "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise _Answer(_error(413, too_large))
    data = req.get_body() or b""
    if len(data) > limit:
        raise _Answer(_error(413, too_large))
    if not data:
        empty = "the upload is empty: send the audio file as the body"
        raise _Answer(_field_error("body", empty, "empty"))
    try:
        audio = probe_audio(data)
    except ValueError as error:
        raise _Answer(_field_error("body", str(error), "not_audio")) from None
    try:
        audio_file_id = _upload_id(req, audio.extension)
    except InvalidRequestError as error:
        raise _Answer(_json({"error": "invalid request", "errors": error.errors}, 400)) from None
    return data, audio, audio_file_id


def handle_upload(req: func.HttpRequest) -> func.HttpResponse:
    """Store the request body, an audio file, where the service reads uploads.

    201 with ``{"audio_file_id", "bytes", "format", "sample_rate", "channels",
    "duration_seconds"}``. 400: empty, not audio, or a bad ``audio_file_id``. 409: that id
    is taken (uploads are never overwritten: a running request may be reading one). 413:
    larger than ``MAX_UPLOAD_MB``. 503: storage failed.
    """
    try:
        data, audio, audio_file_id = _checked_upload(req)
    except _Answer as answer:
        return answer.response
    name = upload_blob_name(runtime.settings().upload_blob_template, audio_file_id)
    try:
        store = runtime.upload_store()
        store.ensure_container()
        if store.exists(name):
            return _error(409, f"audio_file_id {audio_file_id!r} is already taken")
        store.upload_bytes(name, data, audio.content_type, overwrite=False)
    except StorageError:
        logger.exception("could not store upload %s", audio_file_id)
        return _unavailable("could not store the upload now")
    logger.info("stored upload %s (%d bytes, %s)", audio_file_id, len(data), audio.extension)
    body = {
        "audio_file_id": audio_file_id,
        "bytes": len(data),
        "format": audio.extension,
        "sample_rate": audio.sample_rate,
        "channels": audio.channels,
        "duration_seconds": round(audio.duration_seconds, 3),
    }
    return _json(body, 201)


def _read_listed_file(instance_id: str, name: str) -> bytes:
    """The bytes of ``name`` when the request's manifest lists it; ``_Answer`` otherwise.

    Storage errors other than a missing blob propagate."""
    store = runtime.blob_store()
    try:
        manifest_bytes = store.download_bytes(
            manifest_blob_name(instance_id), max_bytes=MAX_MANIFEST_BYTES
        )
    except BlobNotFoundError:
        raise _Answer(_error(404, f"generation {instance_id!r} has no manifest (yet)")) from None
    if name == site.MANIFEST:
        return manifest_bytes
    location = site.manifest_files(json.loads(manifest_bytes)).get(name)
    # A request's files all live under its own prefix; anything else is not served.
    if location is None or not location.startswith(f"{GENERATIONS_PREFIX}/{instance_id}/"):
        raise _Answer(_error(404, f"{name!r} is not a file of generation {instance_id!r}"))
    try:
        return store.download_bytes(location)
    except BlobNotFoundError:
        raise _Answer(_error(404, f"{name!r} of generation {instance_id!r} is gone")) from None


def handle_file(instance_id: str, name: str, req: func.HttpRequest) -> func.HttpResponse:
    """A file of a finished request: ``manifest.json`` or one its manifest lists, with its
    Content-Type. 400: a bad id or name. 404: no manifest yet, or a name the manifest does
    not list. 304: the browser holds this version. 503: storage failed."""
    try:
        check_id(instance_id)
    except InvalidRequestError as error:
        return _json({"error": "invalid request", "errors": error.errors}, 400)
    if not site.valid_file_name(name):
        return _field_error("name", "must be one file name of the request's manifest", "name")
    try:
        data = _read_listed_file(instance_id, name)
    except _Answer as answer:
        return answer.response
    except (ValueError, StorageError):
        logger.exception("could not read %s of %s", name, instance_id)
        return _unavailable(f"could not read {name!r} now")
    etag = f'"{hashlib.sha256(data).hexdigest()[:32]}"'
    headers = {
        "ETag": etag,
        "Cache-Control": "private, no-cache",
        "Content-Disposition": f'attachment; filename="{name}"',
    }
    if _not_modified(req, etag):
        return func.HttpResponse(status_code=304, headers={**site.security_headers(), **headers})
    return _respond(data, 200, site.content_type_for(name), headers)


@bp.route(route="{page:maxlength(0)?}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def studio_page(req: func.HttpRequest) -> func.HttpResponse:
    """GET / (an empty optional segment: the host has no other way to route the root)."""
    return handle_page(req)


@bp.route(route="studio/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def studio_asset(req: func.HttpRequest) -> func.HttpResponse:
    """GET /studio/{name}: studio.js, studio.css, config.json."""
    name = req.route_params.get("name", "")
    if name == "config.json":
        return handle_config()
    if name == site.INDEX:
        return _error(404, "no such studio file")
    return handle_page(req, name)


@bp.route(route="uploads", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def upload_track(req: func.HttpRequest) -> func.HttpResponse:
    """POST /uploads."""
    return handle_upload(req)


@bp.route(
    route="generate/{generation_request_id}/files/{name}",
    methods=["GET"],
    auth_level=func.AuthLevel.FUNCTION,
)
def generation_file(req: func.HttpRequest) -> func.HttpResponse:
    """GET /generate/{generation_request_id}/files/{name}."""
    return handle_file(req.route_params["generation_request_id"], req.route_params["name"], req)
