"""Load an ACE-Step 1.5 pipeline (diffusers' ``AceStepPipeline``) for this process.

The model is a hub id of a diffusers-format repository (downloaded once into the cache
directory, then read from there without the network) or a local directory in diffusers'
``from_pretrained`` layout. There is no fallback: a failure raises ``AceStepLoadError``
naming the model, the cache directory and the cause.

Precision: on CPU the DiT, the condition encoder and the text encoder run in bf16 (the
matrix products are where the time goes, and this CPU has AVX512-BF16); the VAE stays in
fp32 (its convolutions are cheap next to the DiT, and the waveform is what the caller
hears). ``float32`` loads everything in fp32: the reference the bf16 path is measured
against.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from threading import Lock
from typing import Any, Literal

import torch
from diffusers import AceStepPipeline
from huggingface_hub import snapshot_download

from generation.engines.ace_step import speed
from generation.engines.loading import describe_load_failure, is_local_source
from generation.errors import ModelLoadError

logger = logging.getLogger(__name__)

Precision = Literal["auto", "float32", "bfloat16"]

# Weight memory of the 2 B variants (parameters, counted on the exact-architecture random
# checkpoint: DiT 1.58 B, condition encoder 0.61 B, Qwen3-Embedding-0.6B text encoder
# 0.60 B, VAE 0.17 B; 2.95 B in all), GB: bf16 networks with an fp32 VAE, and all fp32.
WEIGHT_GB = {"auto": 6.2, "bfloat16": 6.2, "float32": 11.8}


class AceStepLoadError(ModelLoadError):
    """ACE-Step could not be loaded. Names the model, the cache directory and the cause."""

    def __init__(self, model_id: str, cache_dir: Path | None, cause: str) -> None:
        super().__init__(model_id, cache_dir, cause, engine="ACE-Step")


@dataclass(frozen=True)
class LoadedAceStep:
    """A loaded pipeline and the facts generation needs about it."""

    pipeline: Any  # diffusers.AceStepPipeline (kept untyped: diffusers ships no stubs)
    model_id: str
    device: torch.device
    sample_rate: int  # Hz (48 000 for the released VAE)
    channels: int  # 2: stereo
    is_turbo: bool  # guidance-distilled: text2music/cover/repaint only, no CFG
    load_seconds: float
    # One generation at a time: the scheduler is stateful and one call saturates the cores.
    lock: Lock = field(default_factory=Lock, compare=False, repr=False)


def resolve_dtypes(precision: Precision, device: torch.device) -> dict[str, torch.dtype]:
    """``from_pretrained``'s per-component ``dtype`` for ``precision`` on ``device``.

    ``auto``: bf16 for every network but the VAE (fp32), on CPU and CUDA alike.
    """
    if precision == "float32":
        return {"default": torch.float32}
    del device  # bf16 is the right call on both; kept for a future fp16-only accelerator
    return {"default": torch.bfloat16, "vae": torch.float32}


def _describe(error: BaseException) -> str:
    """A one-line cause, with the ACE-Step-specific one first: not a diffusers layout."""
    current: BaseException | None = error
    for _ in range(10):
        if current is None:
            break
        if "model_index.json" in str(current):
            return (
                "not a diffusers-format ACE-Step pipeline (no model_index.json): convert the "
                "original release with diffusers' scripts/convert_ace_step_to_diffusers.py"
            )
        current = current.__cause__ or current.__context__
    return describe_load_failure(error, "ACE_STEP_MODEL")


def _snapshot(source: str, cache_dir: Path | None, offline: bool) -> str:
    """A local directory holding ``source``: read from the cache first, download only when
    the cache lacks it and ``offline`` (``HF_HUB_OFFLINE``) is false."""
    if is_local_source(source):
        return str(Path(source).expanduser())
    cache = str(cache_dir) if cache_dir else None
    try:
        return str(snapshot_download(source, cache_dir=cache, local_files_only=True))
    except Exception:  # huggingface_hub raises several kinds for "not cached"
        if offline:
            raise
        logger.info("ACE-Step %s not in cache %s: downloading it once", source, cache_dir)
    return str(snapshot_download(source, cache_dir=cache))


def load_ace_step(
    source: str,
    cache_dir: Path | None,
    *,
    device: torch.device | None = None,
    precision: Precision = "auto",
    share_with: LoadedAceStep | None = None,
    offline: bool = False,
    compile_dit: bool = False,
) -> LoadedAceStep:
    """Load the pipeline at ``source`` (hub id or directory) now; raises ``AceStepLoadError``.

    ``share_with``: an already loaded variant whose VAE, text encoder and tokenizer this one
    reuses instead of loading its own (every ACE-Step 1.5 variant ships the same files), e.g.
    a turbo checkpoint for the guide beside the base checkpoint for the stems.
    ``compile_dit``: compile the DiT's blocks and warm them up now (``ACE_STEP_COMPILE``;
    see ``generation.engines.ace_step.speed``). The VAE is always made faster (exactly).
    """
    started = time.perf_counter()
    device = device or torch.device("cpu")
    if is_local_source(source) and not Path(source).expanduser().is_dir():
        raise AceStepLoadError(source, cache_dir, "local model directory does not exist")
    if cache_dir is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise AceStepLoadError(source, cache_dir, _describe(error)) from error
    try:
        local = _snapshot(source, cache_dir, offline)
        shared = {}
        if share_with is not None:
            base = share_with.pipeline
            shared = {
                "vae": base.vae,
                "text_encoder": base.text_encoder,
                "tokenizer": base.tokenizer,
            }
        pipeline = AceStepPipeline.from_pretrained(
            local, dtype=resolve_dtypes(precision, device), **shared
        )
        pipeline.to(device)
        pipeline.set_progress_bar_config(disable=True)
        speed.prepare_vae(pipeline.vae)
    except Exception as error:
        raise AceStepLoadError(source, cache_dir, _describe(error)) from error
    if compile_dit and speed.compile_dit(pipeline.transformer):
        seconds = speed.warm_up_dit(pipeline.transformer)
        logger.info("ACE-Step DiT compiled and warmed up in %.1f s", seconds)
    return LoadedAceStep(
        pipeline=pipeline,
        model_id=source,
        device=device,
        sample_rate=int(pipeline.sample_rate),
        channels=int(pipeline.vae.config.audio_channels),
        is_turbo=bool(pipeline.is_turbo),
        load_seconds=time.perf_counter() - started,
    )
