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

import contextlib
import errno
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
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

from generation.engines.musicgen.chroma import ChromaExtractor
from generation.engines.musicgen.fast_decoder import FastDecoder, WeightFormat
from generation.engines.musicgen.pages import release_file_pages
from generation.errors import ModelLoadError, ModelNotReadyError
from generation.settings import GenerationSettings

logger = logging.getLogger(__name__)


class ModelState(StrEnum):
    """Where the model of this process stands (the health endpoint reports it)."""

    NOT_LOADED = "not_loaded"
    LOADING = "loading"
    AVAILABLE = "available"
    FAILED = "failed"


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


def resolve_device(use_gpu: bool) -> torch.device:
    """CUDA when asked for and present; otherwise CPU (with a warning if CUDA was asked for)."""
    if use_gpu:
        if torch.cuda.is_available():
            return torch.device("cuda")
        logger.warning("USE_GPU is true but no CUDA device is available: running on CPU")
    return torch.device("cpu")


def resolve_precision(precision: str, device: torch.device) -> WeightFormat:
    """The decoder weight format for ``MODEL_PRECISION`` on ``device``.

    ``auto``: int8 on CPU (decoding reads every weight each step: 1 byte beats 4), bf16 on
    CUDA. Logit error against fp32 is measured by ``benchmarks/bench_generation.py``.
    """
    if precision == "auto":
        return WeightFormat.BFLOAT16 if device.type == "cuda" else WeightFormat.INT8
    return WeightFormat(precision)


def _is_local_source(source: str) -> bool:
    return Path(source).exists() or source.startswith(("/", "./", "../", "~"))


def describe_load_failure(error: BaseException) -> str:
    """A one-line cause for a load failure: no network, no disk space, corrupt files, ..."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for item in chain:
        if isinstance(item, OSError) and item.errno == errno.ENOSPC:
            return f"no disk space left to store the model ({item})"
    names = " ".join(type(item).__name__ for item in chain)
    text = " ".join(str(item) for item in chain)
    if "RepositoryNotFound" in names:
        return "no such model on the Hugging Face hub (check MUSICGEN_MODEL)"
    if any(
        marker in names or marker in text
        for marker in (
            "LocalEntryNotFound",
            "ConnectionError",
            "ConnectError",
            "offline mode",
            "Max retries exceeded",
            "Temporary failure in name resolution",
        )
    ):
        return (
            "the model is not in the cache and the Hugging Face hub cannot be reached "
            "(no network access?); download it once into the cache or point MUSICGEN_MODEL "
            "at a local directory"
        )
    if isinstance(error, json.JSONDecodeError) or any(
        marker in names or marker in text
        for marker in (
            "SafetensorError",
            "deserializ",
            "JSONDecodeError",
            "invalid load key",
            "unexpected EOF",
            "incomplete metadata",
            "HeaderTooLarge",
        )
    ):
        return f"corrupt or incomplete model files ({type(error).__name__}: {error})"
    return f"{type(error).__name__}: {error}"


def load_model(settings: GenerationSettings) -> LoadedModel:
    """Load the checkpoint named by ``settings`` now; raises ``ModelLoadError``."""
    source = settings.musicgen_model
    cache_dir = settings.model_cache_dir
    started = time.perf_counter()
    if _is_local_source(source) and not Path(source).expanduser().is_dir():
        raise ModelLoadError(source, cache_dir, "local model directory does not exist")
    if cache_dir is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ModelLoadError(source, cache_dir, describe_load_failure(error)) from error
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
        raise ModelLoadError(source, cache_dir, describe_load_failure(error)) from error
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
    if _is_local_source(source):
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


class ModelHolder:
    """Holds this process's model: loads it once, on first use or by ``warm_up_in_background``."""

    def __init__(self, settings: GenerationSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._state = ModelState.NOT_LOADED
        self._loaded: LoadedModel | None = None
        self._error: ModelLoadError | None = None
        self._device: torch.device | None = None

    @property
    def state(self) -> ModelState:
        return self._state

    @property
    def error(self) -> ModelLoadError | None:
        """The load failure, when ``state`` is ``failed``."""
        return self._error

    @property
    def device(self) -> torch.device:
        """The device the model runs (or will run) on."""
        if self._loaded is not None:
            return self._loaded.device
        if self._device is None:  # resolved once: /health asks often, the warning once is enough
            self._device = resolve_device(self._settings.use_gpu)
        return self._device

    def get(self) -> LoadedModel:
        """The loaded model, loading it now if needed (blocks); raises ``ModelLoadError``."""
        if self._loaded is not None:
            return self._loaded
        with self._lock:
            if self._loaded is not None:
                return self._loaded
            if self._error is not None:
                raise self._error
            self._state = ModelState.LOADING
            logger.info(
                "loading MusicGen %s (cache: %s)",
                self._settings.musicgen_model,
                self._settings.model_cache_dir or "default Hugging Face cache",
            )
            try:
                loaded = load_model(self._settings)
            except ModelLoadError as error:
                self._error = error
                self._state = ModelState.FAILED
                logger.error("MusicGen failed to load: %s", error)  # noqa: TRY400 - cause is in the text
                raise
            self._loaded = loaded
            self._state = ModelState.AVAILABLE
            logger.info(
                "MusicGen loaded successfully in %.1f s (%s on %s)",
                loaded.load_seconds,
                loaded.model_id,
                loaded.device,
            )
            return loaded

    def get_if_ready(self) -> LoadedModel:
        """The model if already loaded; raises ``ModelNotReadyError`` or the load error."""
        if self._loaded is not None:
            return self._loaded
        if self._error is not None:
            raise self._error
        raise ModelNotReadyError(f"MusicGen is {self._state.value}; try again shortly")

    def warm_up_in_background(self) -> threading.Thread:
        """Start loading in a daemon thread, so start-up is not blocked; returns the thread."""

        def _load() -> None:
            # A failure is already logged and recorded in ``state``/``error``.
            with contextlib.suppress(ModelLoadError):
                self.get()

        thread = threading.Thread(target=_load, name="musicgen-warmup", daemon=True)
        thread.start()
        return thread


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
