"""Settings, read once from the environment into typed objects.

``GenerationSettings`` is all the core and the CLI need; ``ServiceSettings`` adds what the
Azure Functions app needs (storage, callbacks). Every key is listed in
``local.settings.sample.json`` and in the README. A bad value fails at start with a message
naming the environment key.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from generation.errors import SettingsError

DEFAULT_MODEL_ID = "facebook/musicgen-small"
MIN_CALLBACK_SECRET_CHARS = 16

logger = logging.getLogger(__name__)


class GenerationSettings(BaseSettings):
    """What model to load, where to cache it, on which device, and generation defaults."""

    model_config = SettingsConfigDict(
        case_sensitive=False,
        extra="ignore",
        protected_namespaces=(),
        validate_default=True,
        env_ignore_empty=True,  # an empty value means "not set", never "set to empty"
    )

    musicgen_model: str = Field(
        DEFAULT_MODEL_ID, min_length=1, description="Hub id or local directory of the checkpoint."
    )
    model_cache_dir: Path | None = Field(
        None, description="Where downloads go and are reused (a mounted volume in the container)."
    )
    use_gpu: bool = Field(
        False, description="Run on CUDA when present; otherwise warn and use CPU."
    )
    model_precision: Literal["auto", "float32", "bfloat16", "float16", "int8"] = Field(
        "auto",
        description="Decoder weights: auto = int8 on CPU, bfloat16 on GPU; float32 = exact.",
    )
    default_duration_seconds: float = Field(10.0, gt=0, le=300)
    default_top_k: int = Field(250, ge=0, le=2048, description="0 disables top-k.")
    default_top_p: float = Field(0.0, ge=0, le=1, description="0 disables nucleus sampling.")
    default_temperature: float = Field(1.0, gt=0, le=10)
    default_guidance_scale: float = Field(3.0, ge=0, le=20, description="Classifier-free guidance.")
    window_seconds: float = Field(
        30.0, ge=2, le=40, description="Longest stretch generated in one pass (model window)."
    )
    batch_window_ms: float = Field(
        200.0, ge=0, le=10_000, description="How long the worker gathers stems into one batch."
    )
    max_batch_size: int = Field(12, ge=1, le=64, description="Most stems in one batch.")
    batch_kv_budget_mb: int = Field(
        3072, ge=64, description="Attention-cache memory one batch may use, MB."
    )
    extend_stride_seconds: float = Field(
        18.0, gt=0, description="New audio added per continuation window beyond the first."
    )

    @model_validator(mode="after")
    def _stride_inside_window(self) -> GenerationSettings:
        if self.extend_stride_seconds >= self.window_seconds:
            raise ValueError("EXTEND_STRIDE_SECONDS must be smaller than WINDOW_SECONDS")
        return self


class ServiceSettings(GenerationSettings):
    """Settings of the Functions app: the generation ones plus storage and callbacks."""

    azure_storage_connection_string: SecretStr | None = Field(
        None, description="Storage connection string (the old worker's setting)."
    )
    azure_storage_account_url: str | None = Field(
        None,
        description="https://<account>.blob.core.windows.net, used with DefaultAzureCredential.",
    )
    blob_container_name: str = Field("audio-files", min_length=3, max_length=63)
    upload_container_name: str | None = Field(
        None,
        min_length=3,
        max_length=63,
        description="Container of uploaded tracks; default BLOB_CONTAINER_NAME.",
    )
    upload_blob_template: str = Field(
        "uploads/{audio_file_id}",
        description="Blob name of an upload, with {audio_file_id} where the request's id goes.",
    )
    max_upload_mb: float = Field(
        100.0, gt=0, le=2048, description="Largest uploaded track analysed, MB."
    )
    callback_url: str | None = Field(
        None, description="Default callback when a request names none."
    )
    callback_timeout_seconds: float = Field(10.0, gt=0, le=120)
    callback_max_attempts: int = Field(5, ge=1, le=20)
    callback_backoff_seconds: float = Field(1.0, ge=0, le=60)
    model_warmup_on_start: bool = Field(
        True, description="Load MusicGen in the background at start."
    )
    callback_secret: SecretStr | None = Field(
        None,
        description="HMAC key(s) signing callbacks: 'new' or 'new,old' while rotating.",
    )
    callback_allow_http: bool = Field(
        False, description="Allow plain http:// callback URLs (local development only)."
    )
    callback_allow_private_networks: bool = Field(
        False,
        description="Allow callbacks to loopback/private/link-local addresses (local dev only).",
    )
    callback_allowed_hosts: str = Field(
        "", description="Comma-separated host names callbacks may go to; empty: any host."
    )
    callback_max_total_seconds: float = Field(
        120.0, gt=0, le=3600, description="Time budget of one callback, all retries included."
    )

    @field_validator("upload_blob_template")
    @classmethod
    def _one_id_placeholder(cls, value: str) -> str:
        if value.count("{audio_file_id}") != 1:
            raise ValueError("must contain {audio_file_id} exactly once")
        rest = value.replace("{audio_file_id}", "")
        if "{" in rest or "}" in rest or value.startswith("/") or "//" in value:
            raise ValueError("must be a blob path like uploads/{audio_file_id}")
        return value

    @field_validator("callback_secret")
    @classmethod
    def _one_or_two_secrets(cls, value: SecretStr | None) -> SecretStr | None:
        # Messages never quote the value: it is a secret.
        if value is None:
            return None
        parts = [part.strip() for part in value.get_secret_value().split(",")]
        if not 1 <= len(parts) <= 2 or not all(parts):
            raise ValueError("must be one secret, or two comma-separated (new,old)")
        if any(len(part) < MIN_CALLBACK_SECRET_CHARS for part in parts):
            raise ValueError(f"each secret needs at least {MIN_CALLBACK_SECRET_CHARS} characters")
        return value

    @model_validator(mode="after")
    def _warn_unsigned_callbacks(self) -> ServiceSettings:
        # Settings are read once per process, at start: this warns once.
        if self.callback_secret is None:
            logger.warning("CALLBACK_SECRET is not set: callbacks are sent unsigned")
        return self

    def callback_secrets(self) -> list[str]:
        """The callback signing secrets, newest first (empty without ``CALLBACK_SECRET``)."""
        if self.callback_secret is None:
            return []
        return [part.strip() for part in self.callback_secret.get_secret_value().split(",")]

    @model_validator(mode="after")
    def _storage_configured(self) -> ServiceSettings:
        if self.azure_storage_connection_string is None and not self.azure_storage_account_url:
            raise ValueError(
                "AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_URL must be set"
            )
        return self


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        key = "_".join(str(p) for p in item["loc"]).upper() or "settings"
        parts.append(f"{key}: {item['msg']}")
    return "invalid settings: " + "; ".join(parts)


def _load(cls: type[GenerationSettings]) -> GenerationSettings:
    try:
        return cls()
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None


def load_generation_settings() -> GenerationSettings:
    """Read ``GenerationSettings`` from the environment now (no caching)."""
    return _load(GenerationSettings)


def load_service_settings() -> ServiceSettings:
    """Read ``ServiceSettings`` from the environment now (no caching)."""
    settings = _load(ServiceSettings)
    assert isinstance(settings, ServiceSettings)
    return settings


@functools.cache
def service_settings() -> ServiceSettings:
    """The service's settings, read once per process."""
    return load_service_settings()
