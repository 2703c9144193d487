"""The product's small error vocabulary.

Caller mistakes derive from ``ValueError`` (they become HTTP 400 / CLI exit 2); capability
problems are named errors; adapters translate SDK errors into these at their boundary.
"""

from __future__ import annotations

from pathlib import Path


class GenerationError(Exception):
    """Base of every error this product raises on purpose."""


class InvalidRequestError(GenerationError, ValueError):
    """The caller asked for something invalid; the message says what.

    ``errors`` holds the JSON-ready field errors (``{"field", "message", "type"}``).
    """

    def __init__(self, message: str, errors: list[dict] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or [{"field": "body", "message": message, "type": "value_error"}]


class UnknownStemError(InvalidRequestError):
    """A stem name that the prompt builder does not know."""

    def __init__(self, stem: str, known: list[str]) -> None:
        message = f"unknown stem {stem!r}; known stems: {', '.join(known)}"
        super().__init__(message, [{"field": "stem", "message": message, "type": "enum"}])
        self.stem = stem


class SettingsError(GenerationError):
    """A setting is missing or invalid; the message names the environment key."""


class ModelLoadError(GenerationError):
    """MusicGen could not be loaded. Names the model, the cache directory and the cause."""

    def __init__(self, model_id: str, cache_dir: Path | None, cause: str) -> None:
        where = str(cache_dir) if cache_dir else "the default Hugging Face cache"
        super().__init__(f"cannot load MusicGen model {model_id!r} (cache: {where}): {cause}")
        self.model_id = model_id
        self.cache_dir = cache_dir
        self.cause = cause


class ModelNotReadyError(GenerationError):
    """The model is still loading or failed to load; generation cannot run now."""


class StorageError(GenerationError):
    """Blob storage refused or failed an operation (SDK errors are translated into this)."""


class BlobNotFoundError(StorageError):
    """The blob (or its container) does not exist."""


class UploadError(InvalidRequestError):
    """The request's ``audio_file_id`` names an upload that is missing, too large or not
    audio; the message names the id and the blob, and says which."""


class CallbackError(GenerationError):
    """A callback could not be delivered."""


class UnsafeCallbackUrl(InvalidRequestError):
    """A callback URL that the callback policy refuses (``generation/adapters/url_safety.py``).

    The message starts ``unsafe callback URL:`` and names the scheme or host and the
    reason, never the path, query string, credentials or the address the host resolved to.
    """

    def __init__(self, reason: str) -> None:
        message = f"unsafe callback URL: {reason}"
        super().__init__(
            message, [{"field": "callback_url", "message": message, "type": "value_error"}]
        )
        self.reason = reason
