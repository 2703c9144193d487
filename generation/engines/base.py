"""What every engine offers the rest of the product: load once, say its state, make clips.

An engine is one model family (MusicGen, ACE-Step). Each process loads each configured
engine once, lazily and thread-safely (``EngineHolder``), and reports where it stands with
the same four states the health endpoint shows. Generation takes an engine-neutral
``ClipBatch`` and returns one float32 ``[channels, samples]`` array per clip at the
engine's sample rate; what an engine can hear is declared in ``conditioning``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

import numpy as np

from generation.errors import ModelLoadError, ModelNotReadyError

logger = logging.getLogger(__name__)


class EngineState(StrEnum):
    """Where an engine of this process stands (the health endpoint reports it)."""

    NOT_LOADED = "not_loaded"
    LOADING = "loading"
    AVAILABLE = "available"
    FAILED = "failed"


class Conditioning(StrEnum):
    """What an engine can take into account besides its caption."""

    TEXT = "text"  # a caption (every engine)
    TEMPO = "tempo"  # BPM as a native input (not words in the caption)
    KEY = "key"  # key and scale as a native input
    TIME_SIGNATURE = "time_signature"  # beats per bar as a native input
    MELODY = "melody"  # the chroma of an audio file (MusicGen-melody checkpoints)
    AUDIO_CONTEXT = "audio_context"  # a whole track to play along with or extract from


@dataclass(frozen=True)
class ClipRequest:
    """One clip of a batch."""

    prompt: str  # the caption
    seed: int
    stem: str | None = None  # the service's stem name ("bass", ...), when the clip is one


@dataclass(frozen=True)
class ClipBatch:
    """Clips generated together; what they share is on the batch."""

    clips: tuple[ClipRequest, ...]
    duration_s: float  # seconds per clip (with ``audio``, the audio's length)
    task: str = "text2music"  # engine task: text2music; ACE-Step also lego, extract
    bpm: float | None = None  # quarter notes per minute
    key: str | None = None  # e.g. "A minor"
    beats_per_bar: int | None = None
    # The context, float32 [channels, samples] at the engine's sample rate (lego/extract).
    audio: np.ndarray | None = None


class Engine(Protocol):
    """One model family, loaded once per process."""

    name: str  # "musicgen", "ace_step": the request's ``parameters.engine``

    @property
    def conditioning(self) -> frozenset[Conditioning]:
        """What the engine can hear besides its caption."""
        ...

    @property
    def state(self) -> EngineState: ...

    @property
    def error(self) -> ModelLoadError | None: ...

    @property
    def model_id(self) -> str: ...

    @property
    def sample_rate(self) -> int:
        """Hz of the audio ``generate`` returns (loads the engine if needed)."""
        ...

    @property
    def channels(self) -> int: ...

    def warm_up_in_background(self) -> threading.Thread: ...

    def generate(self, batch: ClipBatch) -> list[np.ndarray]:
        """One float32 ``[channels, samples]`` array per clip; raises ``ValueError`` for a
        batch this engine cannot make, ``ModelLoadError`` if it cannot load."""
        ...


T = TypeVar("T")


class EngineHolder(Generic[T]):
    """Loads one engine's model once per process (first use or in the background), holds it,
    and reports ``EngineState``. A failed load is remembered and raised again: no retries
    behind the caller's back, no fallback."""

    def __init__(
        self, label: str, load: Callable[[], T], describe: Callable[[T], str] | None = None
    ) -> None:
        self._label = label  # for messages: "ACE-Step", "MusicGen"
        self._load = load
        self._describe = describe  # what the success log adds about the loaded model
        self._lock = threading.Lock()
        self._state = EngineState.NOT_LOADED
        self._loaded: T | None = None
        self._error: ModelLoadError | None = None

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def error(self) -> ModelLoadError | None:
        """The load failure, when ``state`` is ``failed``."""
        return self._error

    def get(self) -> T:
        """The loaded model, loading it now if needed (blocks); raises ``ModelLoadError``."""
        if self._loaded is not None:
            return self._loaded
        with self._lock:
            if self._loaded is not None:
                return self._loaded
            if self._error is not None:
                raise self._error
            self._state = EngineState.LOADING
            started = time.perf_counter()
            try:
                loaded = self._load()
            except ModelLoadError as error:
                self._error = error
                self._state = EngineState.FAILED
                logger.error("%s failed to load: %s", self._label, error)  # noqa: TRY400 - cause is in the text
                raise
            self._loaded = loaded
            self._state = EngineState.AVAILABLE
            logger.info(
                "%s loaded successfully in %.1f s%s",
                self._label,
                time.perf_counter() - started,
                f" ({self._describe(loaded)})" if self._describe else "",
            )
            return loaded

    def get_if_ready(self) -> T:
        """The model if already loaded; raises ``ModelNotReadyError`` or the load error."""
        if self._loaded is not None:
            return self._loaded
        if self._error is not None:
            raise self._error
        raise ModelNotReadyError(f"{self._label} is {self._state.value}; try again shortly")

    def warm_up_in_background(self) -> threading.Thread:
        """Start loading in a daemon thread, so start-up is not blocked; returns the thread."""

        def _load() -> None:
            with contextlib.suppress(ModelLoadError):  # recorded in ``state``/``error``
                self.get()

        thread = threading.Thread(target=_load, name=f"{self._label.lower()}-warmup", daemon=True)
        thread.start()
        return thread
