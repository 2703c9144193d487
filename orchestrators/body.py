"""Strict decoding of JSON bodies at the edge: size, nesting depth, encoding, repeated
keys and non-finite numbers are refused before the request model sees anything."""

from __future__ import annotations

import json
import re
from typing import Any

from generation.errors import InvalidRequestError
from generation.request import MAX_FIELD_CHARS

MAX_BODY_BYTES = 64 * 1024
# A request nests two deep ({"parameters": {...}}, {"target_stems": [...]}); anything far
# deeper is refused before it is parsed, so no input can exhaust the parser's recursion.
MAX_JSON_DEPTH = 8


# Brackets, quotes and backslashes: all the nesting scanner needs to look at.
_STRUCTURE = re.compile(r'[\\"\[\]{}]')


def json_nesting_exceeds(text: str, limit: int) -> bool:
    """Whether the JSON text ``text`` nests arrays/objects more than ``limit`` deep.

    A linear scan that skips brackets inside strings; it never parses, so it is safe on any
    input (invalid JSON included) and cheap: text with at most ``limit`` brackets in all is
    answered without scanning.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    in_string = False
    escaped_until = -1  # a backslash in a string escapes the character after it
    for match in _STRUCTURE.finditer(text):
        position = match.start()
        if position < escaped_until:
            continue
        char = match.group()
        if in_string:
            if char == "\\":
                escaped_until = position + 2
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def json_depth(value: Any, limit: int) -> int:
    """How deep the decoded JSON ``value`` nests (a scalar is 0), counting no further than
    ``limit + 1``."""
    if limit < 0 or not isinstance(value, dict | list):
        return 0
    children = value.values() if isinstance(value, dict) else value
    return 1 + max((json_depth(child, limit - 1) for child in children), default=0)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A repeated key means two readers could see two different requests: refuse it.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key[:MAX_FIELD_CHARS]!r} appears twice in one object")
        result[key] = value
    return result


def decode_json(
    data: bytes | str,
    *,
    what: str = "body",
    max_bytes: int = MAX_BODY_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """Strictly decode one JSON document; raises ``InvalidRequestError`` naming ``what``.

    Refused: more than ``max_bytes`` bytes, bytes that are not UTF-8 (no BOM), nesting
    deeper than ``max_depth``, ``NaN``/``Infinity``, a key repeated within an object, and
    anything that is not JSON. Numbers too large for a float (``1e400``) decode to infinity
    and are refused by the model.
    """
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise InvalidRequestError(f"{what} is larger than {max_bytes} bytes")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidRequestError(
                f"{what} is not UTF-8 (invalid byte at position {error.start})"
            ) from None
    else:
        text = data
    if json_nesting_exceeds(text, max_depth):
        raise InvalidRequestError(f"{what} nests arrays/objects deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as error:
        raise InvalidRequestError(f"{what} is not valid JSON: {error}") from None
