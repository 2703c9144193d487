"""The studio over a folder: ``python -m generation studio OUT_DIR [--port P]``.

Serves the same page as the Functions app, read-only, over a folder written by
``python -m generation generate``: the page reads the folder's ``manifest.json`` and files
through the same URL shapes it uses against the service (see ``generation.studio.site``),
so nothing in the page knows where the set came from. Bound to 127.0.0.1 unless told
otherwise; only GET is answered; only files the manifest lists are served, and only from
the folder itself (no path leaves it, symbolic links included).
"""

from __future__ import annotations

import json
import logging
import shutil
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from generation.studio import site

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
_CHUNK_BYTES = 1 << 16


class FolderError(Exception):
    """The folder cannot be shown (no readable manifest)."""


class StudioFolder:
    """A folder written by ``python -m generation generate``: its manifest and files.

    The manifest is read on every request, so a set generated again into the same folder
    is shown as it is now.
    """

    def __init__(self, out_dir: Path) -> None:
        self.root = Path(out_dir).resolve()

    def manifest(self) -> dict[str, Any]:
        """The folder's manifest; ``FolderError`` when missing or not a manifest."""
        path = self.root / site.MANIFEST
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise FolderError(f"{path}: no readable manifest ({error})") from None
        if not isinstance(manifest, dict) or not isinstance(
            manifest.get("generation_request_id"), str
        ):
            raise FolderError(f"{path}: not a manifest written by 'python -m generation'")
        return manifest

    def request_id(self) -> str:
        return str(self.manifest()["generation_request_id"])

    def file(self, name: str) -> Path | None:
        """The path of ``name`` when the manifest lists it and it lies in the folder."""
        if not site.valid_file_name(name):
            return None
        location = site.manifest_files(self.manifest()).get(name)
        if location is None:
            return None
        path = (self.root / Path(location).name).resolve()
        if path.parent != self.root or not path.is_file():
            return None
        return path


class _Handler(BaseHTTPRequestHandler):
    """GET only: the page, its files, the set's status and its files."""

    server: _Server
    server_version = "generation-studio"

    def version_string(self) -> str:
        return self.server_version  # no Python version in the Server header

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        all_headers = {**site.security_headers(), "Content-Type": content_type, **(headers or {})}
        for key, value in all_headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, site.json_body(value), "application/json", {"Cache-Control": "no-store"})

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        parts = [p for p in path.split("/") if p]
        try:
            self._route(parts)
        except FolderError as error:
            self._error(HTTPStatus.NOT_FOUND, str(error))

    do_HEAD = do_GET

    def _refuse(self) -> None:
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, "this studio is read-only: it shows one folder")

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def _route(self, parts: list[str]) -> None:
        folder = self.server.folder
        match parts:
            case []:
                self._asset(site.INDEX)
            case ["studio", "config.json"]:
                config = site.studio_config(
                    "local", read_only=True, generation_request_id=folder.request_id()
                )
                self._json(HTTPStatus.OK, config)
            case ["studio", name] if name != site.INDEX:
                self._asset(name)
            case ["generate", request_id] if request_id == folder.request_id():
                self._json(HTTPStatus.OK, site.folder_status(folder.manifest()))
            case ["generate", request_id, "files", name] if request_id == folder.request_id():
                self._file(name)
            case ["generate", *_]:
                self._error(HTTPStatus.NOT_FOUND, "this folder holds another generation")
            case _:
                self._error(HTTPStatus.NOT_FOUND, "not found")

    def _asset(self, name: str) -> None:
        item = site.asset(name)
        if item is None:
            self._error(HTTPStatus.NOT_FOUND, "no such studio file")
            return
        headers = site.asset_headers(item)
        if item.etag in (self.headers.get("If-None-Match") or ""):
            self._send(HTTPStatus.NOT_MODIFIED, b"", item.content_type, headers)
            return
        self._send(HTTPStatus.OK, item.body, item.content_type, headers)

    def _file(self, name: str) -> None:
        path = self.server.folder.file(name)
        if path is None:
            self._error(HTTPStatus.NOT_FOUND, f"{name!r} is not a file of this set")
            return
        size = path.stat().st_size
        self.send_response(HTTPStatus.OK)
        headers = {
            **site.security_headers(),
            "Content-Type": site.content_type_for(name),
            "Content-Length": str(size),
            "Cache-Control": "no-cache",
            "Content-Disposition": f'attachment; filename="{name}"',
        }
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        with path.open("rb") as stream:
            shutil.copyfileobj(stream, self.wfile, _CHUNK_BYTES)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], folder: StudioFolder) -> None:
        self.folder = folder
        super().__init__(address, _Handler)


def make_server(out_dir: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> _Server:
    """A studio server over ``out_dir`` (not yet serving; ``port=0`` picks a free port).

    Raises ``FolderError`` when ``out_dir`` has no manifest written by the CLI.
    """
    folder = StudioFolder(out_dir)
    folder.manifest()
    return _Server((host, port), folder)


def url_of(server: _Server) -> str:
    """The page's address for ``server``."""
    host, port = server.server_address[:2]
    name = host.decode() if isinstance(host, bytes) else host
    return f"http://{name}:{port}/"


def serve(out_dir: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve the studio over ``out_dir`` until interrupted."""
    server = make_server(out_dir, host, port)
    if host not in {"127.0.0.1", "localhost", "::1"}:
        logger.warning("studio bound to %s: anyone who reaches it can hear the set", host)
    logger.info("studio for %s at %s (Ctrl-C stops)", out_dir, url_of(server))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("studio stopped")
    finally:
        server.server_close()
