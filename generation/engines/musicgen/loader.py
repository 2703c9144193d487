"""Load MusicGen once per process, lazily and thread-safely, from a cache directory.

The checkpoint is a hub id (downloaded into ``MODEL_CACHE_DIR`` on first use, then read
from there without the network) or a local directory. There is no fallback: a failure
raises ``ModelLoadError`` naming the model, the cache directory and the cause, and the
holder reports ``failed``.

A MusicGen-melody checkpoint (config ``model_type`` ``musicgen_melody``, e.g.
facebook/musicgen-melody) loads as ``MusicgenMelodyForConditionalGeneration``, with its
tokenizer and a ``ChromaExtractor`` built from its feature-extractor settings; its clips can
follow a melody (``LoadedModel.supports_melody``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoTokenizer,
    MusicgenForConditionalGeneration,
    MusicgenMelodyForConditionalGeneration,
    MusicgenProcessor,
    PreTrainedTokenizerBase,
)
from transformers.feature_extraction_utils import FeatureExtractionMixin

from generation.engines.base import EngineHolder, EngineState
from generation.engines.loading import describe_load_failure, is_local_source, resolve_device
from generation.engines.musicgen.chroma import ChromaExtractor
from generation.engines.musicgen.fast_decoder import FastDecoder, WeightFormat
from generation.engines.musicgen.pages import release_file_pages
from generation.errors import ModelLoadError
from generation.settings import GenerationSettings

logger = logging.getLogger(__name__)


# Where the model of this process stands (the health endpoint reports it): the states
# every engine has.
ModelState = EngineState


@dataclass(frozen=True)
class LoadedModel:
    """A loaded checkpoint and the facts generation needs about it."""

    model: MusicgenForConditionalGeneration | MusicgenMelodyForConditionalGeneration
    # Turns prompts into token ids (``processor(text=..., padding=True, ...)``): the
    # MusicgenProcessor, or a melody checkpoint's tokenizer (its processor needs torchaudio).
    processor: MusicgenProcessor | PreTrainedTokenizerBase
    model_id: str
    device: torch.device
    sample_rate: int  # Hz
    frame_rate: float  # decoder steps (codec frames) per second of audio
    num_codebooks: int
    load_seconds: float
    decoder: FastDecoder  # the project's decoding path (static cache, packed weights)
    # A melody checkpoint's chroma (what its clips' melodies become); None: text-only.
    chroma: ChromaExtractor | None = field(default=None, compare=False, repr=False)
    # One generation at a time per model: torch's seeded RNG is process-global, and
    # the cores are saturated by a single generate call anyway.
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    @property
    def supports_melody(self) -> bool:
        """Whether clips can follow a melody (a MusicGen-melody checkpoint)."""
        return self.chroma is not None


def resolve_precision(precision: str, device: torch.device) -> WeightFormat:
    """The decoder weight format for ``MODEL_PRECISION`` on ``device``.

    ``auto``: int8 on CPU (decoding reads every weight each step: 1 byte beats 4), bf16 on
    CUDA. Logit error against fp32 is measured by ``benchmarks/bench_generation.py``.
    """
    if precision == "auto":
        return WeightFormat.BFLOAT16 if device.type == "cuda" else WeightFormat.INT8
    return WeightFormat(precision)


def load_model(settings: GenerationSettings) -> LoadedModel:
    """Load the checkpoint named by ``settings`` now; raises ``ModelLoadError``."""
    source = settings.musicgen_model
    cache_dir = settings.model_cache_dir
    started = time.perf_counter()
    if is_local_source(source) and not Path(source).expanduser().is_dir():
        raise ModelLoadError(source, cache_dir, "local model directory does not exist")
    if cache_dir is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ModelLoadError(
                source, cache_dir, describe_load_failure(error, "MUSICGEN_MODEL")
            ) from error
    device = resolve_device(settings.use_gpu)
    weights = resolve_precision(settings.model_precision, device)
    try:
        model, processor, chroma = _from_pretrained(source, cache_dir, settings.hf_hub_offline)
        model.to(device)  # type: ignore[arg-type]  # transformers wraps nn.Module.to
        model.eval()
        kernel = settings.fast_attention_kernel
        if weights is WeightFormat.FLOAT32:
            decoder = FastDecoder(model, weights, attention_kernel=kernel)
        else:
            # The packed copy replaces transformers' decoder: free its weights as we go.
            decoder = FastDecoder(
                model, weights, on_packed=release_file_pages, attention_kernel=kernel
            )
            release_file_pages(model.decoder)
            model.decoder.to("meta")  # type: ignore[arg-type]  # see model.to above
    except ModelLoadError:
        raise
    except Exception as error:
        raise ModelLoadError(
            source, cache_dir, describe_load_failure(error, "MUSICGEN_MODEL")
        ) from error
    audio_config: Any = model.config.audio_encoder
    sample_rate = int(audio_config.sampling_rate)
    hop = 1
    for ratio in audio_config.upsampling_ratios:
        hop *= int(ratio)
    return LoadedModel(
        model=model,
        processor=processor,
        model_id=source,
        device=device,
        sample_rate=sample_rate,
        frame_rate=sample_rate / hop,
        num_codebooks=int(model.decoder.num_codebooks),
        load_seconds=time.perf_counter() - started,
        decoder=decoder,
        chroma=chroma,
    )


_Loaded = tuple[
    MusicgenForConditionalGeneration | MusicgenMelodyForConditionalGeneration,
    MusicgenProcessor | PreTrainedTokenizerBase,
    ChromaExtractor | None,
]


def _from_pretrained(source: str, cache_dir: Path | None, offline: bool) -> _Loaded:
    """Read from the cache first; go to the network only when the cache lacks the model
    and ``offline`` (``HF_HUB_OFFLINE``) is false."""
    kwargs: dict = {"cache_dir": str(cache_dir) if cache_dir else None}
    if is_local_source(source):
        return _load_files(str(Path(source).expanduser()))
    try:
        return _load_files(source, local_files_only=True, **kwargs)
    except OSError:
        if offline:
            raise
        logger.info("model %s not in cache %s: downloading it once", source, cache_dir)
    return _load_files(source, **kwargs)


def _load_files(source: str, **kwargs: Any) -> _Loaded:
    """Model, tokenizing processor and (melody checkpoints) chroma extractor of ``source``;
    the config's ``model_type`` picks the classes."""
    config = AutoConfig.from_pretrained(source, **kwargs)
    if config.model_type == "musicgen_melody":
        settings, _ = FeatureExtractionMixin.get_feature_extractor_dict(source, **kwargs)
        return (
            MusicgenMelodyForConditionalGeneration.from_pretrained(source, config=config, **kwargs),
            AutoTokenizer.from_pretrained(source, **kwargs),
            ChromaExtractor.from_config(settings),
        )
    return (
        MusicgenForConditionalGeneration.from_pretrained(source, config=config, **kwargs),
        MusicgenProcessor.from_pretrained(source, **kwargs),
        None,
    )


class ModelHolder(EngineHolder[LoadedModel]):
    """Holds this process's MusicGen: loads it once, on first use or by
    ``warm_up_in_background``; states, errors and retries as every engine's holder."""

    def __init__(self, settings: GenerationSettings) -> None:
        super().__init__("MusicGen", self._load_model, _describe_loaded)
        self._settings = settings
        self._device: torch.device | None = None

    def _load_model(self) -> LoadedModel:
        logger.info(
            "loading MusicGen %s (cache: %s)",
            self._settings.musicgen_model,
            self._settings.model_cache_dir or "default Hugging Face cache",
        )
        return load_model(self._settings)

    @property
    def model_id(self) -> str:
        """The checkpoint this holder loads (``MUSICGEN_MODEL``)."""
        return self._settings.musicgen_model

    @property
    def device(self) -> torch.device:
        """The device the model runs (or will run) on."""
        if self._loaded is not None:
            return self._loaded.device
        if self._device is None:  # resolved once: /health asks often, the warning once is enough
            self._device = resolve_device(self._settings.use_gpu)
        return self._device


def _describe_loaded(loaded: LoadedModel) -> str:
    return f"{loaded.model_id} on {loaded.device}"


_holders: dict[tuple, ModelHolder] = {}
_holders_lock = threading.Lock()


def model_holder(settings: GenerationSettings) -> ModelHolder:
    """The process-wide holder for the model named by ``settings`` (one per model variant)."""
    # Everything that changes what is loaded: two precisions never share one model.
    key = (
        settings.musicgen_model,
        settings.model_cache_dir,
        settings.use_gpu,
        settings.model_precision,
        settings.fast_attention_kernel,
    )
    with _holders_lock:
        if key not in _holders:
            _holders[key] = ModelHolder(settings)
        return _holders[key]
