"""What both faces of the studio share: the page's files and headers, its configuration,
and which files of a set the page may read.

No Azure and no file system beyond the page's own static folder: the Functions app
(``orchestrators/studio_api.py``) reads sets from blob storage, ``generation.studio.local``
from a folder, and both answer with what this module decides.

URL shapes the page uses (relative to the page, identical on both faces)::

    GET  studio/config.json                     this module's ``studio_config``
    GET  studio/{studio.css,studio.js}          the page's files
    POST generate                               the API (service only)
    GET  generate/{id}                          the API's status (a folder: ``folder_status``)
    GET  generate/{id}/files/{name}             a file the set's manifest lists
    POST uploads                                a track to follow (service only)
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from generation.request import GenerationRequest

STATIC_DIR = Path(__file__).resolve().parent / "static"
INDEX = "index.html"

# Everything from this origin's files only: no inline script or style, no eval, no other
# origin, no plugins, no framing, forms only to the page's own origin. ``blob:`` lets the
# download links hand over bytes the page already holds; ``media-src`` is not needed
# because audio is decoded and played through the Web Audio API.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'; object-src 'none'"
)

_ASSET_TYPES = {
    INDEX: "text/html; charset=utf-8",
    "studio.css": "text/css; charset=utf-8",
    "studio.js": "text/javascript; charset=utf-8",
}

# The file types a set holds, by extension.
CONTENT_TYPES = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "json": "application/json",
}
MANIFEST = "manifest.json"
# One path segment: a letter or digit first, then letters, digits, '_', '-', '.', no "..".
FILE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]|\.[A-Za-z0-9_-]){0,127}$")


@dataclass(frozen=True)
class Asset:
    """One of the page's files: its bytes, Content-Type and a strong ETag."""

    body: bytes
    content_type: str
    etag: str


def security_headers() -> dict[str, str]:
    """Headers every studio response carries (page, assets, files and JSON alike)."""
    return {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
    }


@functools.cache
def asset(name: str) -> Asset | None:
    """The page file ``name`` (``index.html``, ``studio.css``, ``studio.js``); ``None`` for
    any other name, so no request can reach another file."""
    content_type = _ASSET_TYPES.get(name)
    if content_type is None:
        return None
    body = (STATIC_DIR / name).read_bytes()
    return Asset(body, content_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def asset_headers(item: Asset) -> dict[str, str]:
    """Headers for a page file: the security headers, its type, ETag and revalidation."""
    return {
        **security_headers(),
        "Content-Type": item.content_type,
        "ETag": item.etag,
        "Cache-Control": "no-cache",
    }


def studio_config(
    mode: str,
    *,
    read_only: bool,
    max_upload_mb: float | None = None,
    generation_request_id: str | None = None,
) -> dict[str, Any]:
    """What the page needs to know before it draws the form: ``mode`` ("service" or
    "local"), whether it may ask for anything, the upload limit (MB) and the request's
    JSON schema, so the form's choices and bounds are the API's own. A folder's page gets
    the id of the set it shows."""
    return {
        "mode": mode,
        "read_only": read_only,
        "max_upload_mb": max_upload_mb,
        "generation_request_id": generation_request_id,
        "request_schema": request_schema(),
    }


@functools.cache
def request_schema() -> dict[str, Any]:
    """The JSON schema of a generation request, as pydantic validates it."""
    return GenerationRequest.model_json_schema()


def json_body(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def valid_file_name(name: str) -> bool:
    """Whether ``name`` can be a file of a set: one safe path segment."""
    return bool(FILE_NAME_PATTERN.fullmatch(name))


def content_type_for(name: str) -> str:
    """The Content-Type of a set's file, from its extension."""
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return CONTENT_TYPES.get(extension, "application/octet-stream")


def manifest_files(manifest: dict[str, Any]) -> dict[str, str]:
    """The files a manifest lists, by the name the page asks for (the last path segment),
    to where each is stored (the blob name, or the file name in a folder). The manifest
    itself is always listed, under ``manifest.json``.

    Entries whose name is not one safe segment are left out, never served.
    """
    entries = [*manifest.get("stems", []), manifest.get("mix")]
    files: dict[str, str] = {MANIFEST: MANIFEST}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        location = entry.get("blob_name") or entry.get("file")
        if not isinstance(location, str) or not location:
            continue
        name = PurePosixPath(location).name
        if valid_file_name(name) and name != MANIFEST:
            files[name] = location
    return files


def folder_status(manifest: dict[str, Any]) -> dict[str, Any]:
    """A finished set's manifest as ``GET /generate/{id}`` reports a completed request,
    so the page reads a folder as it reads the service."""
    stems = [s.get("stem") for s in manifest.get("stems", []) if isinstance(s, dict)]
    failed = [f for f in manifest.get("failed_stems", []) if isinstance(f, dict)]
    states = {str(stem): "completed" for stem in stems}
    states.update({str(f.get("stem")): "failed" for f in failed})
    return {
        "generation_request_id": manifest.get("generation_request_id"),
        "status": "failed" if failed else "completed",
        "created_at": manifest.get("created_at"),
        "last_updated_at": manifest.get("created_at"),
        "progress": {
            "phase": "done",
            "stems": states,
            "completed": len(stems),
            "failed": len(failed),
            "total": len(states),
        },
        "stems": [],
        "failed_stems": failed,
        "manifest_url": None,
        "mix_url": None,
        "musical": manifest.get("musical"),
        "warnings": manifest.get("warnings", []),
        "callback": None,
        "error": None,
    }
