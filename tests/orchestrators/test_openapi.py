"""``openapi.yaml`` kept true: a valid OpenAPI 3.1 document whose request schema is the
pydantic model's, whose examples the API accepts, and whose response schemas the real
handlers' responses satisfy."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import jsonschema
import pytest
import yaml
from openapi_spec_validator import validate as validate_spec

from generation.errors import InvalidRequestError
from generation.request import GenerationRequest, parse_request
from orchestrators import runtime
from orchestrators.http_api import handle_generate, handle_status, health_report
from tests.service_fixtures import FakeDurableClient

SPEC_PATH = Path(__file__).resolve().parents[2] / "openapi.yaml"
SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
SCHEMAS = SPEC["components"]["schemas"]


def _ecma_pattern(validator, pattern, instance, schema) -> Iterator[jsonschema.ValidationError]:
    # JSON Schema patterns are ECMA-262, where "$" ends the text; Python's "$" also matches
    # before a final newline, which would let "req\n" pass where the API refuses it.
    if not isinstance(instance, str):
        return
    python_pattern = pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern
    if not re.search(python_pattern, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _is_integer(checker, instance) -> bool:
    # JSON Schema counts 7.0 as an integer; the API wants an exact JSON integer.
    return isinstance(instance, int) and not isinstance(instance, bool)


SpecValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    validators={"pattern": _ecma_pattern},
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


def spec_validator(schema_name: str) -> jsonschema.protocols.Validator:
    """A validator for ``components.schemas[schema_name]``, its ``$ref``s resolved."""
    return SpecValidator({"$ref": f"#/components/schemas/{schema_name}", **SPEC})


def spec_errors(schema_name: str, instance: Any) -> list[str]:
    return [e.message for e in spec_validator(schema_name).iter_errors(instance)]


def test_the_spec_is_valid_openapi_3_1():
    validate_spec(SPEC)
    assert SPEC["openapi"].startswith("3.1")


def test_the_paths_methods_and_keys_are_the_apps():
    paths = SPEC["paths"]
    assert set(paths) == {"/generate", "/generate/{generation_request_id}", "/health"}
    assert set(paths["/generate"]) == {"post"}
    assert set(paths["/generate/{generation_request_id}"]) == {"get"}
    assert set(paths["/health"]) == {"get"}
    schemes = SPEC["components"]["securitySchemes"]
    assert schemes["functionKey"] == {"type": "apiKey", "in": "header", "name": "x-functions-key"}
    assert schemes["functionKeyQuery"] == {"type": "apiKey", "in": "query", "name": "code"}
    keyed = [{"functionKey": []}, {"functionKeyQuery": []}]
    assert paths["/generate"]["post"]["security"] == keyed
    assert paths["/generate/{generation_request_id}"]["get"]["security"] == keyed
    assert paths["/health"]["get"]["security"] == []
    assert set(paths["/generate"]["post"]["responses"]) >= {"200", "202", "400", "503"}
    assert set(paths["/generate/{generation_request_id}"]["get"]["responses"]) >= {
        "200",
        "400",
        "404",
        "503",
    }
    assert set(paths["/health"]["get"]["responses"]) == {"200", "503"}


# --- the request schema is the model's ------------------------------------------------------

_CONSTRAINTS = (
    "type",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "default",
)


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        target = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def facts(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """What a (sub)schema allows, independent of how it is spelt: ``$ref`` resolved,
    ``anyOf`` with ``null`` folded into one set of types, nested properties and items
    reduced the same way. Descriptions, titles and ``uniqueItems`` are left out."""
    schema = _resolve(schema, root)
    result: dict[str, Any] = {}
    types: set[str] = set()
    branches = schema.get("anyOf", [schema])
    for written in branches:
        branch = _resolve(written, root)
        branch_types = branch.get("type", [])
        types.update([branch_types] if isinstance(branch_types, str) else branch_types)
        for key in _CONSTRAINTS:
            if key in branch and key != "type":
                result[key] = branch[key]
        if "properties" in branch:
            result["properties"] = {
                name: facts(sub, root) for name, sub in branch["properties"].items()
            }
            result["required"] = sorted(branch.get("required", []))
            result["additionalProperties"] = branch.get("additionalProperties", True)
        if "items" in branch:
            result["items"] = facts(branch["items"], root)
    if "default" in schema:
        result["default"] = schema["default"]
    result["type"] = sorted(types)
    return result


def test_the_request_schema_is_the_pydantic_models():
    model = GenerationRequest.model_json_schema()
    from_model = facts(model, model)
    from_spec = facts(SCHEMAS["GenerationRequest"], SPEC)
    # Field by field first, for a readable failure.
    assert set(from_spec["properties"]) == set(from_model["properties"])
    for name, model_field in from_model["properties"].items():
        assert from_spec["properties"][name] == model_field, name
    assert from_spec == from_model
    assert from_spec["additionalProperties"] is False
    assert from_spec["properties"]["parameters"]["additionalProperties"] is False


def test_the_spec_knows_what_the_model_does_not_spell_in_json_schema():
    # Distinct stems: a model validator, ``uniqueItems`` in the spec.
    assert SCHEMAS["GenerationRequest"]["properties"]["target_stems"]["uniqueItems"] is True
    duplicate = {"generation_request_id": "r", "target_stems": ["bass", "bass"]}
    assert spec_errors("GenerationRequest", duplicate)
    with pytest.raises(InvalidRequestError):
        parse_request(duplicate)


VALID = {"generation_request_id": "r1", "target_stems": ["drums"]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**VALID, "parameters": {"bars": 4}}, "bars needs a tempo"),
        ({**VALID, "parameters": {"bars": 256, "target_bpm": 60}}, "at most 300 s"),
    ],
)
def test_cross_field_rules_the_schema_cannot_spell_are_documented(body, message):
    # Bars need a tempo and must fit 300 s: rules across fields, stated in the descriptions.
    assert spec_errors("GenerationRequest", body) == []
    with pytest.raises(InvalidRequestError, match=message):
        parse_request(body)
    described = SCHEMAS["GenerationParameters"]["properties"]["bars"]["description"]
    assert "Needs a tempo" in described and "300 s" in described


def _examples() -> list[tuple[str, Any]]:
    content = SPEC["paths"]["/generate"]["post"]["requestBody"]["content"]["application/json"]
    return sorted((name, example["value"]) for name, example in content["examples"].items())


@pytest.mark.parametrize(("name", "example"), _examples())
def test_every_example_is_accepted_by_the_api_and_the_schema(name, example):
    parse_request(example)
    assert spec_errors("GenerationRequest", example) == []
    response = asyncio.run(handle_generate(post(example), FakeDurableClient()))
    assert response.status_code == 202, response.get_body()


@pytest.mark.parametrize(
    "body",
    [
        {**VALID, "seed": 7.5},
        {**VALID, "seed": 7.0},
        {**VALID, "seed": True},
        {**VALID, "seed": "7"},
        {**VALID, "seed": 2**32},
        {**VALID, "parameters": {"duration_seconds": "10"}},
        {**VALID, "parameters": {"duration_seconds": 0}},
        {**VALID, "parameters": {"temperature": 0}},
        {**VALID, "parameters": {"top_p": 1.5}},
        {**VALID, "parameters": {"extra": 1}},
        {**VALID, "extra": 1},
        {**VALID, "target_stems": []},
        {**VALID, "target_stems": ["kazoo"]},
        {**VALID, "generation_request_id": "a..b"},
        {**VALID, "generation_request_id": "a."},
        {**VALID, "generation_request_id": "req\n"},
        {**VALID, "generation_request_id": "x" * 129},
        {**VALID, "audio_file_id": "../up"},
        {**VALID, "output_format": "ogg"},
        {**VALID, "parameters": {"bars": 0, "target_bpm": 120}},
        {**VALID, "parameters": {"bars": 4.0, "target_bpm": 120}},
        {**VALID, "parameters": {"time_signature": "4/3"}},
        {**VALID, "parameters": {"time_signature": "17/4"}},
        {**VALID, "parameters": {"time_signature": "4/4\n"}},
        {**VALID, "parameters": {"loop": "yes"}},
        {**VALID, "parameters": {"loop": 1}},
        {"target_stems": ["drums"]},
        [VALID],
    ],
)
def test_the_api_and_the_schema_refuse_the_same_bodies(body):
    assert spec_errors("GenerationRequest", body)
    with pytest.raises(InvalidRequestError):
        parse_request(body)


# --- real responses satisfy the response schemas --------------------------------------------


def post(body: Any, raw: bytes | None = None) -> func.HttpRequest:
    data = raw if raw is not None else json.dumps(body).encode()
    return func.HttpRequest(
        "POST", "http://localhost/generate", body=data, headers={"Content-Type": "application/json"}
    )


def response_schema(path: str, method: str, status: int) -> dict[str, Any]:
    response = SPEC["paths"][path][method]["responses"][str(status)]
    response = _resolve(response, SPEC)
    return response["content"]["application/json"]["schema"]


def assert_matches(path: str, method: str, response: func.HttpResponse) -> dict[str, Any]:
    body = json.loads(response.get_body())
    schema = response_schema(path, method, response.status_code)
    SpecValidator({**schema, **SPEC}).validate(body)
    return body


def test_generate_responses_match_the_spec():
    client = FakeDurableClient()
    body = {"generation_request_id": "req-9", "target_stems": ["bass"]}
    started = asyncio.run(handle_generate(post(body), client))
    assert started.status_code == 202
    assert assert_matches("/generate", "post", started)["duplicate"] is False
    repeat = asyncio.run(handle_generate(post(body), client))
    assert repeat.status_code == 202
    assert assert_matches("/generate", "post", repeat)["duplicate"] is True
    client.set("req-9", "Completed", input_=client.instances["req-9"].input_)
    done = asyncio.run(handle_generate(post(body), client))
    assert done.status_code == 200
    assert_matches("/generate", "post", done)
    conflict = asyncio.run(handle_generate(post({**body, "target_stems": ["drums"]}), client))
    assert conflict.status_code == 409
    assert_matches("/generate", "post", conflict)
    for bad in (post({**body, "seed": -1}), post(None, b"[" * 50), post(None, b"\xff")):
        invalid = asyncio.run(handle_generate(bad, client))
        assert invalid.status_code == 400
        assert_matches("/generate", "post", invalid)
    client.fail_next_start = ConnectionError("down")
    failed = asyncio.run(handle_generate(post({**body, "generation_request_id": "n"}), client))
    assert failed.status_code == 503
    assert_matches("/generate", "post", failed)


STATUS_PATH = "/generate/{generation_request_id}"


def test_status_responses_match_the_spec():
    client = FakeDurableClient()
    assert_matches(STATUS_PATH, "get", asyncio.run(handle_status("nope", client)))
    assert_matches(STATUS_PATH, "get", asyncio.run(handle_status("a..b", client)))
    client.set("pending", "Pending")
    assert_matches(STATUS_PATH, "get", asyncio.run(handle_status("pending", client)))
    client.set(
        "running",
        "Running",
        custom_status={
            "phase": "generating",
            "stems": {"guitar": "completed", "bass": "pending"},
            "completed": 1,
            "failed": 0,
            "total": 2,
        },
    )
    assert_matches(STATUS_PATH, "get", asyncio.run(handle_status("running", client)))
    stem = {"stem": "bass", "blob_url": "http://b/bass.wav", "duration_seconds": 1.5}
    client.set(
        "done",
        "Completed",
        output={
            "status": "completed",
            "stems": [{**stem, "sample_rate": 32000, "prompt": "p", "seed": 1}],
            "manifest_url": "http://b/m.json",
            "callback": {"delivered": True, "skipped": False, "attempts": 1},
        },
        custom_status={"phase": "done", "stems": {"bass": "completed"}},
    )
    done = assert_matches(STATUS_PATH, "get", asyncio.run(handle_status("done", client)))
    assert done["stems"] == [{**stem, "sample_rate": 32000}]
    client.set(
        "failed",
        "Failed",
        output="1 of 2 stems failed: bass (boom)",
        custom_status={
            "phase": "done",
            "stems": {"guitar": "completed", "bass": "failed"},
            "failed_stems": [{"stem": "bass", "error": "boom"}],
            "error": "1 of 2 stems failed: bass (boom)",
            "manifest_url": "http://b/m.json",
            "callback": {"delivered": False, "error": "HTTP 500"},
        },
    )
    failed = assert_matches(STATUS_PATH, "get", asyncio.run(handle_status("failed", client)))
    assert failed["status"] == "failed"


def test_health_responses_match_the_spec(service_env, monkeypatch, tmp_path):
    runtime.model().get()
    body, status = health_report()
    assert status == 200
    SpecValidator({**response_schema("/health", "get", 200), **SPEC}).validate(body)
    monkeypatch.setenv("MUSICGEN_MODEL", str(tmp_path / "not-yet"))
    runtime.reset_for_tests()
    body, status = health_report()
    assert status == 503
    SpecValidator({**response_schema("/health", "get", 503), **SPEC}).validate(body)
