"""The one typed request model, validated at the edge (HTTP, batch file, CLI).

Its JSON shape is the old worker's POST body::

    {"generation_request_id": "req-1", "audio_file_id": "file-1",
     "target_stems": ["guitar", "bass", "drums"],
     "parameters": {"target_bpm": 120, "duration_seconds": 10, "style": "rock",
                    "prompt": "energetic"},
     "callback_url": "https://...", "seed": 7, "output_format": "wav"}
"""

from __future__ import annotations

import re
import secrets
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from generation.audio.harmony import parse_key, parse_progression
from generation.errors import InvalidRequestError

MAX_SEED = 2**32 - 1
MAX_DURATION_SECONDS = 300.0
MAX_BARS = 256
MIN_BPM, MAX_BPM = 40.0, 240.0  # tempos a request may ask for, quarter notes per minute
# Numerator 1-16, denominator 2, 4 or 8 (the beat unit).
TIME_SIGNATURE_PATTERN = r"^(?:[1-9]|1[0-6])/(?:2|4|8)$"
MAX_STEMS = 8
MAX_ID_LENGTH = 128
# A letter or digit, then letters, digits, '_', '-' and dots, a dot never doubled nor last:
# no "..", no leading or trailing dot, no slash, backslash or control character. So an id is
# one safe blob-name segment and a valid Durable instance id (the extension refuses '/',
# backslash, '#', '?', control characters, a leading '@' and more than 256 characters).
SAFE_ID_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9_-]|\.[A-Za-z0-9_-])*$"

# At most this many field errors are listed (a body with 10,000 unknown keys gets a summary).
MAX_ERRORS = 50
MAX_FIELD_CHARS = 200


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


class Engine(StrEnum):
    """Which model family makes the stems: MusicGen (default, text-conditioned) or ACE-Step
    1.5 (parts made from their musical context: lego over an upload, extract from a guide)."""

    MUSICGEN = "musicgen"
    ACE_STEP = "ace_step"


class OutputFormat(StrEnum):
    """Audio file encodings: ``wav`` is 16-bit PCM; ``flac`` is lossless 24-bit; ``mp3`` is
    MPEG-1 Layer III (lossy, for previews)."""

    WAV = "wav"
    WAV_24 = "wav_24"
    WAV_FLOAT = "wav_float"
    FLAC = "flac"
    MP3 = "mp3"


SafeId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=SAFE_ID_PATTERN,
        description="1-128 letters, digits, '_', '-' and '.'; starts with a letter or digit; "
        "no '..', no trailing '.'.",
    ),
]
# JSON numbers only: no strings ("10"), no booleans; ints are exact (7.5 is not a seed).
StrictInt = Annotated[int, Field(strict=True)]
StrictNumber = Annotated[float, Field(strict=True)]
StrictBool = Annotated[bool, Field(strict=True)]


class GenerationParameters(BaseModel):
    """Musical and sampling parameters. Sampling fields left out take the settings' defaults."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    target_bpm: StrictNumber | None = Field(
        None,
        ge=MIN_BPM,
        le=MAX_BPM,
        description="Tempo the stems are locked to, quarter notes per minute (as in a DAW); "
        "left out: the uploaded track's detected tempo, or no tempo lock without an upload.",
    )
    duration_seconds: StrictNumber = Field(
        10.0,
        ge=1,
        le=MAX_DURATION_SECONDS,
        description="Length of each stem, seconds; with a tempo, rounded to the nearest "
        "whole number of bars unless 'bars' is given.",
    )
    bars: StrictInt | None = Field(
        None,
        ge=1,
        le=MAX_BARS,
        description="Length in bars (needs a tempo: target_bpm or an upload); overrides "
        "duration_seconds.",
    )
    time_signature: str = Field(
        "4/4",
        pattern=TIME_SIGNATURE_PATTERN,
        description="Beats per bar / beat unit (2, 4 or 8), e.g. '4/4', '3/4', '6/8'.",
    )
    loop: StrictBool = Field(
        False, description="Make each stem a seamless loop (the seam is crossfaded)."
    )
    key: str | None = Field(
        None,
        max_length=20,
        description="Key every stem is in: one of the 24 major and minor keys, tonic A-G "
        "with an optional # or b, then major or minor, e.g. 'A minor', 'Bb major'; left "
        "out: the uploaded track's key, else one chosen from the seed.",
    )
    chords: str | None = Field(
        None,
        max_length=500,
        description="Chord progression every stem follows, one symbol per bar separated by "
        "spaces, repeating over the bars, e.g. 'Am F C G'. A symbol is a root A-G, an "
        "optional # or b, an optional quality (m, 7, maj7, m7, dim, aug, sus2, sus4) and an "
        "optional /bass note; left out: the uploaded track's chords, else none.",
    )
    style: str = Field("", max_length=200)
    prompt: str = Field("", max_length=1000)
    engine: Engine = Field(
        Engine.MUSICGEN,
        description="musicgen (default) or ace_step (needs a worker configured with it).",
    )
    top_k: StrictInt | None = Field(None, ge=0, le=2048)
    top_p: StrictNumber | None = Field(None, ge=0, le=1)
    temperature: StrictNumber | None = Field(None, gt=0, le=10)
    guidance_scale: StrictNumber | None = Field(None, ge=0, le=20)

    @field_validator("key")
    @classmethod
    def _one_of_24_keys(cls, value: str | None) -> str | None:
        return None if value is None else parse_key(value)

    @field_validator("chords")
    @classmethod
    def _chord_symbols(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return " ".join(chord.symbol for chord in parse_progression(value))

    @model_validator(mode="after")
    def _bars_fit(self) -> GenerationParameters:
        if self.bars is not None and self.target_bpm is not None:
            seconds = bar_seconds(self.target_bpm, self.time_signature) * self.bars
            if seconds > MAX_DURATION_SECONDS:
                raise ValueError(
                    f"{self.bars} bars of {self.time_signature} at {self.target_bpm:g} BPM last "
                    f"{seconds:.1f} s; at most {MAX_DURATION_SECONDS:g} s can be generated"
                )
        return self


class GenerationRequest(BaseModel):
    """A request for a set of stems. ``generation_request_id`` is the orchestration id."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    generation_request_id: SafeId
    audio_file_id: SafeId | None = Field(
        None,
        description="An uploaded track to follow (blob UPLOAD_BLOB_TEMPLATE, default "
        "'uploads/{audio_file_id}'; WAV, FLAC, MP3 or OGG): its tempo, downbeat and key "
        "(and, with a melody checkpoint, its chords) shape every stem.",
    )
    target_stems: list[Stem] = Field(min_length=1, max_length=MAX_STEMS)
    parameters: GenerationParameters = Field(default_factory=GenerationParameters)
    callback_url: str | None = Field(None, max_length=2048)
    seed: StrictInt | None = Field(None, ge=0, le=MAX_SEED)
    output_format: OutputFormat = OutputFormat.WAV

    @model_validator(mode="after")
    def _bars_need_a_tempo(self) -> GenerationRequest:
        p = self.parameters
        if p.bars is not None and p.target_bpm is None and self.audio_file_id is None:
            raise ValueError(
                "parameters.bars needs a tempo to count bars in: give parameters.target_bpm "
                "or an audio_file_id whose tempo is detected"
            )
        return self

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
        # Cheap syntax only: the full policy (https, public addresses) needs settings and
        # DNS, so the send_callback activity applies it (generation/adapters/url_safety.py).
        if url is not None and "@" in urlsplit(url).netloc:
            raise ValueError("callback_url must not carry credentials (user:password@)")
        return url

    def with_seed(self) -> GenerationRequest:
        """This request with a seed: its own or a fresh random one (recorded: retries repeat)."""
        if self.seed is not None:
            return self
        return self.model_copy(update={"seed": secrets.randbelow(MAX_SEED + 1)})


def parse_time_signature(text: str) -> tuple[int, int]:
    """``"6/8"`` -> ``(6, 8)``: beats per bar and beat unit; ``ValueError`` when invalid."""
    if not re.fullmatch(TIME_SIGNATURE_PATTERN, text):
        raise ValueError(f"time signature must look like 4/4, 3/4 or 6/8, got {text!r}")
    beats, unit = text.split("/")
    return int(beats), int(unit)


def quarter_notes_per_beat(time_signature: str) -> float:
    """Quarter notes in one beat of ``time_signature`` (4/4: 1, 6/8: 0.5, 2/2: 2). BPM
    counts quarter notes, as in a DAW; multiply a tempo in beats by this to get it."""
    return 4.0 / parse_time_signature(time_signature)[1]


def quarter_notes_per_bar(time_signature: str) -> float:
    """Quarter notes in one bar of ``time_signature`` (4/4: 4, 6/8: 3, 3/4: 3)."""
    return parse_time_signature(time_signature)[0] * quarter_notes_per_beat(time_signature)


def bar_seconds(bpm: float, time_signature: str) -> float:
    """Seconds one bar of ``time_signature`` lasts at ``bpm`` quarter notes per minute."""
    return quarter_notes_per_bar(time_signature) * 60.0 / bpm


def _field_name(loc: tuple[int | str, ...]) -> str:
    # An unknown key is echoed back: keep it short.
    name = ".".join(str(part) for part in loc) or "body"
    return name if len(name) <= MAX_FIELD_CHARS else name[: MAX_FIELD_CHARS - 3] + "..."


def field_errors(error: ValidationError) -> list[dict[str, Any]]:
    """A JSON-ready list of ``{"field", "message", "type"}`` for a validation error.

    At most ``MAX_ERRORS`` are listed; beyond that a last entry says how many were left out.
    """
    items = error.errors(include_url=False, include_input=False, include_context=False)
    errors = [
        {"field": _field_name(item["loc"]), "message": item["msg"], "type": item["type"]}
        for item in items[:MAX_ERRORS]
    ]
    if len(items) > MAX_ERRORS:
        more = len(items) - MAX_ERRORS
        errors.append(
            {
                "field": "body",
                "message": f"{more} more errors not listed",
                "type": "too_many_errors",
            }
        )
    return errors


def parse_request(data: Any) -> GenerationRequest:
    """Validate a decoded JSON value into a request; raises ``InvalidRequestError``.

    The error's ``errors`` holds the field-error list (see ``field_errors``).
    """
    if not isinstance(data, dict):
        raise InvalidRequestError(
            f"the request must be a JSON object, not {_json_type(data)}",
            [{"field": "body", "message": "must be a JSON object", "type": "model_type"}],
        )
    try:
        return GenerationRequest.model_validate(data)
    except ValidationError as error:
        errors = field_errors(error)
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise InvalidRequestError(f"invalid request: {summary}", errors) from None


_SAFE_ID = TypeAdapter(SafeId)


def check_id(value: str, field: str = "generation_request_id") -> str:
    """``value`` when it is a valid request id (see ``SAFE_ID_PATTERN``); else
    ``InvalidRequestError`` naming ``field``."""
    try:
        return _SAFE_ID.validate_python(value)
    except ValidationError as error:
        errors = [{**e, "field": field} for e in field_errors(error)]
        raise InvalidRequestError(f"invalid {field}: {errors[0]['message']}", errors) from None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
