"""POST /generate fuzzed: thousands of generated bodies, not one 500.

Four generators feed ``handle_generate`` (with the fake durable client): arbitrary JSON
values, valid bodies with one field mutated (wrong types, out-of-range and non-finite
numbers, huge strings, deep nesting, unknown keys, bad ids), raw bytes, and valid bodies
under odd Content-Types. For every input: no exception escapes, the status is 200, 202 or
400, a 400 lists its field errors, and an orchestration starts exactly when the body is a
valid request. "Valid" is decided twice, independently: by ``openapi.yaml``'s request
schema (jsonschema) and by ``parse_request``; the two must agree.

Each test prints how many inputs it tried (``-s`` not needed).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import azure.functions as func
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generation.errors import InvalidRequestError
from generation.request import MAX_SEED, Stem, parse_request
from orchestrators.body import decode_json
from orchestrators.http_api import handle_generate
from orchestrators.starter import ORCHESTRATOR
from tests.orchestrators.test_openapi import spec_validator
from tests.service_fixtures import FakeDurableClient

FUZZ = settings(
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
REQUEST_SCHEMA = spec_validator("GenerationRequest")
STEMS = [s.value for s in Stem]

tally: Counter[str] = Counter()


def request(body: bytes, content_type: str | None = "application/json") -> func.HttpRequest:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    return func.HttpRequest("POST", "http://localhost/generate", body=body, headers=headers)


def expected_valid(body: bytes, content_type: str | None) -> bool:
    """Whether the body is a valid request, by the spec and (it must agree) the model."""
    media = (content_type or "").split(";")[0].strip().lower()
    try:
        value = decode_json(body)
    except InvalidRequestError:
        return False
    by_spec = REQUEST_SCHEMA.is_valid(value)
    try:
        parse_request(value)
        by_model = True
    except InvalidRequestError as error:
        by_model = False
        # Beyond what the schema can say: a callback URL's safety (scheme, credentials), and
        # lone surrogates ("\ud800"), which JSON lets through but are not Unicode text.
        beyond_schema = all(
            e["field"] == "callback_url" or e["type"] == "string_unicode" for e in error.errors
        )
        if by_spec and beyond_schema:
            by_spec = False
    assert by_spec == by_model, f"spec says {by_spec}, model says {by_model} for {value!r}"
    charset_ok = "charset" not in (content_type or "").lower() or "utf-8" in content_type.lower()
    return by_model and media == "application/json" and charset_ok


def check(kind: str, body: bytes, content_type: str | None = "application/json") -> None:
    """Post ``body``; the response must be a 200, 202 or 400 that starts what it should."""
    client = FakeDurableClient()
    tally[kind] += 1
    tally["inputs"] += 1
    try:
        response = asyncio.run(handle_generate(request(body, content_type), client))
    except Exception as error:  # an escaping exception is the host's 500
        tally["500"] += 1
        raise AssertionError(f"{kind}: exception escaped for {body[:200]!r}") from error
    if response.status_code not in {200, 202, 400}:
        tally["500"] += 1
    assert response.status_code in {200, 202, 400}, response.get_body()
    valid = expected_valid(body, content_type)
    if response.status_code == 400:
        reply = json.loads(response.get_body())
        assert reply["errors"] and all(
            set(e) == {"field", "message", "type"} for e in reply["errors"]
        )
        tally["400"] += 1
    if not valid and client.started:
        tally["started by invalid"] += 1
    assert valid == (response.status_code == 202), (valid, response.get_body(), body[:300])
    assert len(client.started) == (1 if valid else 0)
    if valid:
        [(name, instance_id, _)] = client.started
        assert name == ORCHESTRATOR and instance_id == json.loads(body)["generation_request_id"]


# --- generators -------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)

valid_bodies = st.fixed_dictionaries(
    {
        "generation_request_id": st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,20}\Z"),
        "target_stems": st.lists(st.sampled_from(STEMS), min_size=1, max_size=8, unique=True),
    },
    optional={
        "audio_file_id": st.from_regex(r"\A[A-Za-z0-9](?:[A-Za-z0-9_-]|\.[A-Za-z0-9_-]){0,10}\Z"),
        "seed": st.integers(min_value=0, max_value=MAX_SEED),
        "output_format": st.sampled_from(["wav", "wav_24", "wav_float"]),
        "callback_url": st.just("https://example.com/hook"),
        "parameters": st.fixed_dictionaries(
            {},
            optional={
                "target_bpm": st.floats(min_value=40, max_value=240) | st.integers(40, 240),
                "duration_seconds": st.floats(min_value=1, max_value=300),
                "style": st.text(max_size=200),
                "prompt": st.text(max_size=300),
                "top_k": st.integers(0, 2048),
                "top_p": st.floats(0, 1),
                "temperature": st.floats(min_value=0, max_value=10, exclude_min=True),
                "guidance_scale": st.floats(0, 20),
            },
        ),
    },
)

bad_ids = st.sampled_from(
    [
        *["", ".", "..", "a..b", ".x", "x.", "a/b", "/", "a\\b", "\\", "a#b", "a?b", "@e", "a b"],
        *["x\n", "\x00", "\x7f", "é", "𝄞", "a" * 129, "../../etc/passwd", "%2e%2e", "a\u2028b"],
    ]
) | st.text(max_size=150)
nasty_values = (
    json_values
    | bad_ids
    | st.sampled_from([7.5, 7.0, -1, 0, 2**32, 2**63, 1e308, -0.0, 1e-300, True, False, "10"])
    | st.integers()
    | st.floats()
    | st.text(min_size=1000, max_size=5000)
    | st.integers(min_value=1, max_value=30).map(lambda n: json.loads("[" * n + "]" * n))
    | st.lists(st.sampled_from([*STEMS, "kazoo", "", "GUITAR"]), max_size=12)
)
top_fields = [
    "generation_request_id",
    "audio_file_id",
    "target_stems",
    "parameters",
    "callback_url",
    "seed",
    "output_format",
]
param_fields = [
    "target_bpm",
    "duration_seconds",
    "style",
    "prompt",
    "top_k",
    "top_p",
    "temperature",
    "guidance_scale",
]


@st.composite
def mutated_bodies(draw) -> dict[str, Any]:
    body = draw(valid_bodies)
    how = draw(st.sampled_from(["set", "set param", "unknown", "unknown param", "drop", "id"]))
    if how == "set":
        body[draw(st.sampled_from(top_fields))] = draw(nasty_values)
    elif how == "set param":
        params = body.setdefault("parameters", {})
        if isinstance(params, dict):
            params[draw(st.sampled_from(param_fields))] = draw(nasty_values)
    elif how == "unknown":
        body[draw(st.text(min_size=1, max_size=20))] = draw(json_values)
    elif how == "unknown param":
        body["parameters"] = {**body.get("parameters", {}), draw(st.text(max_size=20)): 1}
    elif how == "drop":
        body.pop(draw(st.sampled_from(top_fields)), None)
    else:
        body[draw(st.sampled_from(["generation_request_id", "audio_file_id"]))] = draw(bad_ids)
    return body


def encode(value: Any) -> bytes:
    # allow_nan: NaN and Infinity reach the API as the bare tokens a client could send.
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


raw_bodies = (
    st.binary(max_size=300)
    | valid_bodies.map(lambda b: json.dumps(b).encode("utf-16"))
    | valid_bodies.map(lambda b: b"\xef\xbb\xbf" + json.dumps(b).encode())
    | st.tuples(valid_bodies, st.integers(0, 200)).map(lambda t: json.dumps(t[0]).encode()[: t[1]])
    | st.integers(1, 200_000).map(lambda n: b"[" * n)
    | st.integers(1, 5_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n)
    | st.integers(60_000, 70_000).map(lambda n: b'{"generation_request_id": "' + b"a" * n + b'"}')
    | st.sampled_from([b"", b"null", b"[]", b"{}", b"NaN", b"-Infinity", b"1e999", b'"x"'])
)
content_types = st.sampled_from(
    [
        None,
        "",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json",
        "APPLICATION/JSON",
        "application/json; charset=utf-8",
        "application/json; charset=iso-8859-1",
        "application/json-patch+json",
        "application/json;;;",
        "; charset=utf-8",
    ]
)

# --- the tests ---------------------------------------------------------------------------------


@settings(FUZZ, max_examples=800)
@given(value=json_values)
def fuzz_arbitrary_json(value):
    check("arbitrary JSON", encode(value))


@settings(FUZZ, max_examples=1000)
@given(body=mutated_bodies())
def fuzz_mutated_bodies(body):
    check("mutated body", encode(body))


@settings(FUZZ, max_examples=600)
@given(body=raw_bodies)
def fuzz_raw_bytes(body):
    check("raw bytes", body)


@settings(FUZZ, max_examples=300)
@given(body=valid_bodies, content_type=content_types)
def fuzz_content_types(body, content_type):
    check("content types", encode(body), content_type)


@settings(FUZZ, max_examples=300)
@given(body=valid_bodies)
def fuzz_valid_bodies(body):
    check("valid body", encode(body))


@pytest.mark.parametrize(
    ("kind", "fuzz"),
    [
        ("arbitrary JSON", fuzz_arbitrary_json),
        ("mutated body", fuzz_mutated_bodies),
        ("raw bytes", fuzz_raw_bytes),
        ("content types", fuzz_content_types),
        ("valid body", fuzz_valid_bodies),
    ],
)
def test_no_input_gets_a_500_or_starts_what_it_should_not(kind, fuzz, capsys, record_property):
    fuzz()
    assert tally[kind] > 0
    record_property("fuzz_inputs", tally[kind])
    with capsys.disabled():
        print(
            f"\n[http fuzz] {kind}: {tally[kind]} inputs tried; in this session "
            f"{tally['inputs']} inputs, {tally['400']} answered 400, {tally['500']} server "
            f"errors, {tally['started by invalid']} orchestrations started by invalid bodies"
        )
    assert tally["500"] == 0 and tally["started by invalid"] == 0
