"""The one typed request model, validated at the edge (HTTP, batch file, CLI).

Its JSON shape is the old worker's POST body::

    {"generation_request_id": "req-1", "audio_file_id": "file-1",
     "target_stems": ["guitar", "bass", "drums"],
     "parameters": {"target_bpm": 120, "duration_seconds": 10, "style": "rock",
                    "prompt": "energetic"},
     "callback_url": "https://...", "seed": 7, "output_format": "wav"}
"""

from __future__ import annotations

import secrets
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from generation.errors import InvalidRequestError

MAX_SEED = 2**32 - 1
SAFE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


class Stem(StrEnum):
    """The instruments MusicGen is asked for, one isolated stem each."""

    GUITAR = "guitar"
    BASS = "bass"
    DRUMS = "drums"
    PIANO = "piano"
    KEYS = "keys"
    SYNTH = "synth"
    STRINGS = "strings"
    BRASS = "brass"
    VOCALS = "vocals"
    PERCUSSION = "percussion"
    PADS = "pads"


class OutputFormat(StrEnum):
    """Audio file encodings: ``wav`` is 16-bit PCM."""

    WAV = "wav"
    WAV_24 = "wav_24"
    WAV_FLOAT = "wav_float"


SafeId = Annotated[
    str, Field(pattern=SAFE_ID_PATTERN, description="Letters, digits, '_', '.', '-'.")
]


class GenerationParameters(BaseModel):
    """Musical and sampling parameters. Sampling fields left out take the settings' defaults."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    target_bpm: float | None = Field(
        None, ge=40, le=240, description="Tempo asked of the model, BPM."
    )
    duration_seconds: float = Field(10.0, ge=1, le=300, description="Length of each stem, seconds.")
    style: str = Field("", max_length=200)
    prompt: str = Field("", max_length=1000)
    top_k: int | None = Field(None, ge=0, le=2048)
    top_p: float | None = Field(None, ge=0, le=1)
    temperature: float | None = Field(None, gt=0, le=10)
    guidance_scale: float | None = Field(None, ge=0, le=20)


class GenerationRequest(BaseModel):
    """A request for a set of stems. ``generation_request_id`` is the orchestration id."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    generation_request_id: SafeId
    audio_file_id: SafeId | None = None
    target_stems: list[Stem] = Field(min_length=1, max_length=8)
    parameters: GenerationParameters = Field(default_factory=GenerationParameters)
    callback_url: str | None = Field(None, max_length=2048)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    output_format: OutputFormat = OutputFormat.WAV

    @field_validator("target_stems")
    @classmethod
    def _no_duplicate_stems(cls, stems: list[Stem]) -> list[Stem]:
        seen: set[Stem] = set()
        for stem in stems:
            if stem in seen:
                raise ValueError(f"stem {stem.value!r} is listed twice")
            seen.add(stem)
        return stems

    @field_validator("callback_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("https://", "http://")):
            raise ValueError("callback_url must be an http(s) URL")
        return url

    def with_seed(self) -> GenerationRequest:
        """This request with a seed: its own or a fresh random one (recorded: retries repeat)."""
        if self.seed is not None:
            return self
        return self.model_copy(update={"seed": secrets.randbelow(MAX_SEED + 1)})


def field_errors(error: ValidationError) -> list[dict[str, Any]]:
    """A JSON-ready list of ``{"field", "message", "type"}`` for a validation error."""
    return [
        {
            "field": ".".join(str(p) for p in item["loc"]) or "body",
            "message": item["msg"],
            "type": item["type"],
        }
        for item in error.errors(include_url=False, include_input=False)
    ]


def parse_request(data: Any) -> GenerationRequest:
    """Validate a decoded JSON value into a request; raises ``InvalidRequestError``.

    The error's ``errors`` holds the field-error list (see ``field_errors``).
    """
    try:
        return GenerationRequest.model_validate(data)
    except ValidationError as error:
        errors = field_errors(error)
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise InvalidRequestError(f"invalid request: {summary}", errors) from None
