"""Settings of the Functions app: the generation settings plus storage, uploads and
callbacks, read once per process (``service_settings``)."""

from __future__ import annotations

import functools
import logging

from pydantic import Field, SecretStr, field_validator, model_validator

from generation.adapters.url_safety import CallbackPolicy, parse_allowed_hosts
from generation.settings import GenerationSettings, load_settings

MIN_CALLBACK_SECRET_CHARS = 16

logger = logging.getLogger(__name__)


class ServiceSettings(GenerationSettings):
    """Settings of the Functions app: the generation ones plus storage and callbacks."""

    azure_storage_connection_string: SecretStr | None = Field(
        None, description="Storage connection string (the old worker's setting)."
    )
    azure_storage_account_url: str | None = Field(
        None,
        description="https://<account>.blob.core.windows.net, used with DefaultAzureCredential.",
    )
    azure_web_jobs_storage: SecretStr | None = Field(
        None,
        validation_alias="AzureWebJobsStorage",
        description="The Functions host's storage: Durable state and the batch container.",
    )
    azure_web_jobs_storage_blob_uri: str | None = Field(
        None,
        validation_alias="AzureWebJobsStorage__blobServiceUri",
        description="Identity-based form of AzureWebJobsStorage (blob endpoint).",
    )
    azure_web_jobs_storage_account_name: str | None = Field(
        None,
        validation_alias="AzureWebJobsStorage__accountName",
        description="Identity-based form of AzureWebJobsStorage (account name).",
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

    def callback_policy(self) -> CallbackPolicy:
        """The callback URL policy these settings describe."""
        return CallbackPolicy(
            allow_http=self.callback_allow_http,
            allow_private_networks=self.callback_allow_private_networks,
            allowed_hosts=parse_allowed_hosts(self.callback_allowed_hosts),
        )

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


def load_service_settings() -> ServiceSettings:
    """Read ``ServiceSettings`` from the environment now (no caching)."""
    return load_settings(ServiceSettings)


@functools.cache
def service_settings() -> ServiceSettings:
    """The service's settings, read once per process."""
    return load_service_settings()
