"""Blob Storage adapter: the only module that talks to azure-storage-blob.

Blobs are written to fixed names with overwrite, so a retried activity repeats its upload
instead of duplicating it. Every SDK or network error is translated into ``StorageError``
here, with a message naming the operation, account, container and blob and never a
credential (no connection string, account key or SAS token).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity import DefaultAzureCredential
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings, LinearRetry

from generation.errors import BlobNotFoundError, InvalidRequestError, SettingsError, StorageError

logger = logging.getLogger(__name__)

GENERATIONS_PREFIX = "generations"

# A dead endpoint must fail in seconds, not minutes (the SDK defaults: 20 s to connect,
# 3 retries 15 s + 3**n s apart). Ours: 3 tries about 1 s apart (uniform 0-2 s), so a refused
# connection fails within 4 s and a silent (black-holed) endpoint within about 20 s.
DEFAULT_RETRY_TOTAL = 2
DEFAULT_CONNECTION_TIMEOUT_S = 5.0
DEFAULT_READ_TIMEOUT_S = 60.0
_RETRY_BACKOFF_S = 1
_RETRY_JITTER_S = 1


def _path_segment(value: str, what: str) -> str:
    text = str(value)
    if not text or "/" in text or text in {".", ".."}:
        raise InvalidRequestError(f"{what} must be a non-empty name without '/', got {text!r}")
    return text


def generation_prefix(generation_request_id: str) -> str:
    """``generations/{generation_request_id}/``: where one request's results live."""
    request_id = _path_segment(generation_request_id, "generation_request_id")
    return f"{GENERATIONS_PREFIX}/{request_id}/"


def generation_blob_name(generation_request_id: str, name: str) -> str:
    """``generations/{generation_request_id}/{name}``: a file of one request's results."""
    return generation_prefix(generation_request_id) + _path_segment(name, "file name")


def stem_blob_name(generation_request_id: str, stem: str, extension: str) -> str:
    """``generations/{generation_request_id}/{stem}.{extension}`` (a leading dot is dropped)."""
    stem_name = _path_segment(stem, "stem")
    ext = _path_segment(str(extension).lstrip("."), "extension")
    return generation_blob_name(generation_request_id, f"{stem_name}.{ext}")


def mix_blob_name(generation_request_id: str, extension: str) -> str:
    """``generations/{generation_request_id}/mix.{extension}``: the preview mix."""
    return stem_blob_name(generation_request_id, "mix", extension)


def upload_blob_name(template: str, audio_file_id: str) -> str:
    """The blob an upload lives in: ``template`` (``UPLOAD_BLOB_TEMPLATE``, e.g.
    ``uploads/{audio_file_id}``) with the id put in."""
    return template.replace("{audio_file_id}", _path_segment(audio_file_id, "audio_file_id"))


def manifest_blob_name(generation_request_id: str) -> str:
    """``generations/{generation_request_id}/manifest.json``."""
    return generation_blob_name(generation_request_id, "manifest.json")


def _client_options(
    retry_total: int, connection_timeout_s: float, read_timeout_s: float
) -> dict[str, Any]:
    return {
        "retry_policy": LinearRetry(
            backoff=_RETRY_BACKOFF_S, retry_total=retry_total, random_jitter_range=_RETRY_JITTER_S
        ),
        "connection_timeout": connection_timeout_s,
        "read_timeout": read_timeout_s,
    }


def _network_cause(error: BaseException) -> str | None:
    """The OS-level reason inside an SDK network error ("Connection refused"), URL-free."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TimeoutError):
            return "timed out"
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        inner = getattr(current, "inner_exception", None)
        if not isinstance(inner, BaseException):
            inner = None
        current = inner or current.__cause__ or current.__context__
    return None


def _reason(error: BaseException, blob: str | None) -> str:
    """A short, credential-free description of an SDK error (SDK messages can hold URLs)."""
    error_code = getattr(error, "error_code", None)
    error_code = getattr(error_code, "value", error_code)  # StorageErrorCode -> "ServerBusy"
    if isinstance(error, ResourceNotFoundError):
        blob_missing = blob is not None and error_code != "ContainerNotFound"
        return "blob not found" if blob_missing else "container not found"
    if isinstance(error, ResourceExistsError) and error_code == "BlobAlreadyExists":
        return "blob already exists"
    if isinstance(error, HttpResponseError) and error.status_code is not None:
        return f"HTTP {error.status_code} {error_code or error.reason or ''}".rstrip()
    if isinstance(error, ServiceRequestError):
        what = "cannot reach the storage endpoint"
    elif isinstance(error, ServiceResponseError):
        what = "no valid response from the storage endpoint"
    else:
        what = type(error).__name__
    cause = _network_cause(error)
    return f"{what} ({cause})" if cause else what


class BlobStore:
    """One container of one storage account, with uploads that return the blob URL.

    Built with modest retries (``DEFAULT_RETRY_TOTAL`` retries, 0-2 s apart) and timeouts
    (5 s to connect, 60 s between bytes read) so that a dead endpoint fails in seconds; longer
    outages are the caller's to retry (activities are retried by the orchestrator). Returned
    URLs carry no SAS token or other query string.
    """

    def __init__(self, service: BlobServiceClient, container: str) -> None:
        self._service = service
        self._container_name = container
        self._container: ContainerClient = service.get_container_client(container)

    @classmethod
    def from_connection_string(
        cls,
        connection_string: str,
        container: str,
        *,
        retry_total: int = DEFAULT_RETRY_TOTAL,
        connection_timeout_s: float = DEFAULT_CONNECTION_TIMEOUT_S,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    ) -> BlobStore:
        """A store authenticated by a connection string (account key or SAS)."""
        options = _client_options(retry_total, connection_timeout_s, read_timeout_s)
        try:
            service = BlobServiceClient.from_connection_string(connection_string, **options)
        except (ValueError, AzureError):
            # The SDK's message may quote the string; name the key instead.
            raise SettingsError(
                "AZURE_STORAGE_CONNECTION_STRING: not a valid storage connection string"
            ) from None
        return cls(service, container)

    @classmethod
    def from_account_url(
        cls,
        account_url: str,
        container: str,
        *,
        credential: Any = None,
        retry_total: int = DEFAULT_RETRY_TOTAL,
        connection_timeout_s: float = DEFAULT_CONNECTION_TIMEOUT_S,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    ) -> BlobStore:
        """A store on ``https://<account>.blob.core.windows.net``; default credential:
        ``DefaultAzureCredential`` (managed identity in Azure, developer login locally)."""
        if credential is None:
            credential = DefaultAzureCredential()
        options = _client_options(retry_total, connection_timeout_s, read_timeout_s)
        try:
            service = BlobServiceClient(account_url, credential=credential, **options)
        except (ValueError, AzureError):
            raise SettingsError("AZURE_STORAGE_ACCOUNT_URL: not a valid blob account URL") from None
        return cls(service, container)

    @property
    def container(self) -> str:
        """The container's name."""
        return self._container_name

    def for_container(self, name: str) -> BlobStore:
        """A store on another container of the same account, sharing the client."""
        return BlobStore(self._service, name)

    @contextmanager
    def _translated(self, operation: str, blob: str | None = None) -> Iterator[None]:
        try:
            yield
        except (AzureError, OSError) as error:
            where = f"container {self._container_name!r}"
            if blob is not None:
                where += f", blob {blob!r}"
            account = self._service.account_name
            kind = BlobNotFoundError if isinstance(error, ResourceNotFoundError) else StorageError
            # `from None`: the SDK's own messages may hold request URLs with SAS tokens.
            raise kind(
                f"storage {operation} failed (account {account!r}, {where}): {_reason(error, blob)}"
            ) from None

    def ensure_container(self) -> bool:
        """Create the container when missing; True when this call created it.

        Another process creating it at the same moment is not an error.
        """
        with self._translated("create container"):
            try:
                self._container.create_container()
            except ResourceExistsError as error:
                if getattr(error, "error_code", None) not in (None, "ContainerAlreadyExists"):
                    raise  # e.g. ContainerBeingDeleted: a real conflict
                return False
        logger.info("created blob container %r", self._container_name)
        return True

    def delete_container(self) -> None:
        """Delete the container and every blob in it; a missing container is fine."""
        with self._translated("delete container"):
            try:
                self._container.delete_container()
            except ResourceNotFoundError:
                logger.debug("blob container %r already absent", self._container_name)

    def url(self, name: str) -> str:
        """The blob's URL, without any query string (so no SAS token)."""
        return self._container.get_blob_client(name).url.split("?", 1)[0]

    def upload_bytes(
        self, name: str, data: bytes, content_type: str, *, overwrite: bool = True
    ) -> str:
        """Write ``data`` to blob ``name`` and return its URL.

        With ``overwrite=False`` an existing blob is a ``StorageError`` ("blob already exists").
        """
        with self._translated("upload", name):
            self._container.upload_blob(
                name,
                data,
                length=len(data),
                overwrite=overwrite,
                content_settings=ContentSettings(content_type=content_type),
            )
        logger.info("uploaded %d bytes to %s/%s", len(data), self._container_name, name)
        return self.url(name)

    def upload_file(
        self, name: str, path: str | os.PathLike[str], content_type: str, *, overwrite: bool = True
    ) -> str:
        """Stream the file at ``path`` to blob ``name`` (never whole in memory); return its URL.

        A missing local file raises ``FileNotFoundError``, not ``StorageError``.
        """
        file_path = Path(path)
        size = file_path.stat().st_size
        with file_path.open("rb") as stream, self._translated("upload", name):
            self._container.upload_blob(
                name,
                stream,
                length=size,
                overwrite=overwrite,
                content_settings=ContentSettings(content_type=content_type),
            )
        logger.info("uploaded %s (%d bytes) to %s/%s", file_path, size, self._container_name, name)
        return self.url(name)

    def upload_json(self, name: str, obj: Any) -> str:
        """Write ``obj`` as UTF-8 JSON (``application/json``), overwriting; return the URL."""
        data = json.dumps(obj, ensure_ascii=False, indent=2).encode("utf-8")
        return self.upload_bytes(name, data, "application/json")

    def download_bytes(self, name: str, *, max_bytes: int | None = None) -> bytes:
        """The blob's whole content; a missing blob is a ``BlobNotFoundError``.

        With ``max_bytes``, a larger blob raises ``ValueError`` before anything is read, and
        the download is pinned to the version whose size was checked (its ETag): a blob
        replaced in between is a ``StorageError`` (transient: a retry checks again), never
        a read of unchecked size.
        """
        with self._translated("download", name):
            blob = self._container.get_blob_client(name)
            if max_bytes is None:
                return blob.download_blob().readall()
            properties = blob.get_blob_properties()
            size = int(properties.size)
            if size > max_bytes:
                raise ValueError(f"blob {name!r} is {size} bytes, more than {max_bytes}")
            data = blob.download_blob(
                etag=properties.etag, match_condition=MatchConditions.IfNotModified
            ).readall()
        if len(data) > max_bytes:  # never expected with the ETag pinned; a last guard
            raise ValueError(f"blob {name!r} grew beyond {max_bytes} bytes while read")
        return data

    def exists(self, name: str) -> bool:
        """Whether blob ``name`` exists (False too when the container is missing)."""
        with self._translated("exists", name):
            return bool(self._container.get_blob_client(name).exists())

    def delete(self, name: str) -> None:
        """Delete blob ``name`` and its snapshots; a missing blob is fine."""
        with self._translated("delete", name):
            try:
                self._container.delete_blob(name, delete_snapshots="include")
            except ResourceNotFoundError:
                logger.debug("blob %s/%s already absent", self._container_name, name)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose name starts with ``prefix`` (non-empty, ending in "/");
        returns how many were deleted."""
        if not prefix.endswith("/") or prefix == "/":
            raise ValueError(f"refusing to delete under {prefix!r}: not a folder prefix")
        deleted = 0
        with self._translated("list", prefix):
            names = [b.name for b in self._container.list_blobs(name_starts_with=prefix)]
        for name in names:
            self.delete(name)
            deleted += 1
        return deleted

    def is_reachable(self, timeout_s: float = 3.0) -> bool:
        """True when the account answers an authenticated request within about ``timeout_s``
        seconds (one try, no retry). Never raises; a missing container still counts as reachable.

        With ``DefaultAzureCredential`` the first call may also wait for a token.
        """
        try:
            self._container.exists(
                retry_total=0, connection_timeout=timeout_s, read_timeout=timeout_s
            )
        except Exception as error:  # noqa: BLE001 - a health check must never raise
            logger.warning(
                "blob storage not reachable (container %r): %s",
                self._container_name,
                _reason(error, None),
            )
            return False
        return True


class BlobSink:
    """The results of one request in the blob store: ``write("bass.wav", ...)`` goes to
    ``generations/{generation_request_id}/bass.wav`` (overwrite). A ``Sink`` for
    ``generation.stems.output``."""

    def __init__(self, store: BlobStore, generation_request_id: str) -> None:
        self.store = store
        self.generation_request_id = generation_request_id

    def write(self, name: str, data: bytes, content_type: str) -> tuple[str, str | None]:
        blob = generation_blob_name(self.generation_request_id, name)
        return blob, self.store.upload_bytes(blob, data, content_type, overwrite=True)

    def read(self, file: str) -> bytes:
        return self.store.download_bytes(file)
