"""Settings of the generation core, read from the environment into one typed object.

``GenerationSettings`` is all the core and the CLI need; the Functions app extends it with
storage and callbacks (``orchestrators.settings.ServiceSettings``). Every environment
variable the product reads goes through one of the two; every key is listed in
``local.settings.sample.json`` and in the README. A bad value fails at start with a message
naming the environment key. The CLI overrides values with ``model_copy(update=...)``, never
by writing the environment.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from generation.errors import SettingsError

DEFAULT_MODEL_ID = "facebook/musicgen-small"
ENGINE_NAMES = ("musicgen", "ace_step")
# MusicGen's own sampling defaults and audiocraft's continuation window: the one place these
# numbers live (the engine's signatures default to them too).
DEFAULT_TOP_K = 250
DEFAULT_TOP_P = 0.0
DEFAULT_TEMPERATURE = 1.0
DEFAULT_GUIDANCE_SCALE = 3.0
DEFAULT_WINDOW_SECONDS = 30.0
DEFAULT_EXTEND_STRIDE_SECONDS = 18.0

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
    default_top_k: int = Field(DEFAULT_TOP_K, ge=0, le=2048, description="0 disables top-k.")
    default_top_p: float = Field(
        DEFAULT_TOP_P, ge=0, le=1, description="0 disables nucleus sampling."
    )
    default_temperature: float = Field(DEFAULT_TEMPERATURE, gt=0, le=10)
    default_guidance_scale: float = Field(
        DEFAULT_GUIDANCE_SCALE, ge=0, le=20, description="Classifier-free guidance."
    )
    window_seconds: float = Field(
        DEFAULT_WINDOW_SECONDS,
        ge=2,
        le=40,
        description="Longest stretch generated in one pass (model window).",
    )
    batch_window_ms: float = Field(
        200.0, ge=0, le=10_000, description="How long the worker gathers stems into one batch."
    )
    max_batch_size: int = Field(12, ge=1, le=64, description="Most stems in one batch.")
    batch_kv_budget_mb: int = Field(
        3072, ge=64, description="Attention-cache memory one batch may use, MB."
    )
    worker_memory_budget_mb: int = Field(
        10240,
        ge=256,
        description="Memory a worker may spend on requests in flight beyond the loaded model, "
        "MB: larger requests are refused with 400, the batcher never exceeds it.",
    )
    extend_stride_seconds: float = Field(
        DEFAULT_EXTEND_STRIDE_SECONDS,
        gt=0,
        description="New audio added per continuation window beyond the first.",
    )
    fast_attention_kernel: bool = Field(
        True,
        description="int8 on CPU: fp16 attention cache read by the project's AVX-512 kernel.",
    )
    hf_hub_offline: bool = Field(
        False, description="Never download: a model missing from the cache fails to load."
    )
    engines: str = Field(
        "musicgen",
        description="Comma-separated engines this worker loads: musicgen (always), ace_step.",
    )
    ace_step_model: str | None = Field(
        None,
        description="ACE-Step base checkpoint (hub id or local directory, diffusers layout); "
        "required when ENGINES has ace_step.",
    )
    ace_step_guide_model: str | None = Field(
        None,
        description="Optional ACE-Step turbo checkpoint for the guide (shares the base's VAE "
        "and text encoder); without it the base model makes the guide.",
    )
    ace_step_precision: Literal["auto", "float32"] = Field(
        "auto", description="auto = bf16 networks with an fp32 VAE; float32 = exact."
    )
    ace_step_steps: int = Field(
        50, ge=1, le=200, description="Denoising steps of the base checkpoint."
    )
    ace_step_compile: bool = Field(
        True,
        description="Compile ACE-Step's DiT blocks with torch.compile at load (about 1.7x "
        "faster per step on CPU; about a minute once per process on a 2-core CPU, cached "
        "on disk).",
    )

    @property
    def engine_names(self) -> tuple[str, ...]:
        """The engines this worker loads, MusicGen first (it is always loaded)."""
        names = [n.strip() for n in self.engines.split(",") if n.strip()]
        return ("musicgen", *(n for n in dict.fromkeys(names) if n != "musicgen"))

    @model_validator(mode="after")
    def _engines_known_and_configured(self) -> GenerationSettings:
        unknown = [n for n in self.engine_names if n not in ENGINE_NAMES]
        if unknown:
            raise ValueError(
                f"ENGINES: unknown engine(s) {', '.join(unknown)}; known: {', '.join(ENGINE_NAMES)}"
            )
        if "ace_step" in self.engine_names and not self.ace_step_model:
            raise ValueError("ACE_STEP_MODEL must name a checkpoint when ENGINES has ace_step")
        return self

    @model_validator(mode="after")
    def _stride_inside_window(self) -> GenerationSettings:
        if self.extend_stride_seconds >= self.window_seconds:
            raise ValueError("EXTEND_STRIDE_SECONDS must be smaller than WINDOW_SECONDS")
        return self


S = TypeVar("S", bound=GenerationSettings)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        key = "_".join(str(p) for p in item["loc"]).upper() or "settings"
        parts.append(f"{key}: {item['msg']}")
    return "invalid settings: " + "; ".join(parts)


def load_settings(cls: type[S]) -> S:
    """Read ``cls`` from the environment now (no caching); ``SettingsError`` names the key."""
    try:
        return cls()
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None


def load_generation_settings() -> GenerationSettings:
    """Read ``GenerationSettings`` from the environment now (no caching)."""
    return load_settings(GenerationSettings)
