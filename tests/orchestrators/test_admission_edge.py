"""Admission control at the edge: POST /generate and batch entries too large for a worker's
memory (``WORKER_MEMORY_BUDGET_MB``) are refused with the reason and what fits, and start
nothing."""

import asyncio
import json
from collections.abc import Iterator

import azure.functions as func
import pytest

from generation.settings import GenerationSettings
from generation.stems.admission import request_need_mb
from orchestrators import runtime
from orchestrators.batch_trigger import run_batch
from orchestrators.http_api import handle_generate
from tests.service_fixtures import FakeDurableClient

STEMS = ["guitar", "bass", "drums", "piano", "synth", "strings", "brass", "pads"]


def body(request_id: str, stems: int, seconds: float = 300) -> dict:
    return {
        "generation_request_id": request_id,
        "target_stems": STEMS[:stems],
        "parameters": {"duration_seconds": seconds, "target_bpm": 120},
    }


@pytest.fixture
def budget_for_three_long_stems(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """WORKER_MEMORY_BUDGET_MB set to what three 300 s tempo-locked stems need."""
    from generation.request import parse_request

    need = request_need_mb(parse_request(body("probe", 3)), GenerationSettings())
    budget = round(need) + 1
    monkeypatch.setenv("WORKER_MEMORY_BUDGET_MB", str(budget))
    runtime.reset_for_tests()
    yield budget
    runtime.reset_for_tests()


def post(data: dict) -> func.HttpRequest:
    return func.HttpRequest(
        "POST",
        "http://localhost/generate",
        body=json.dumps(data).encode(),
        headers={"Content-Type": "application/json"},
    )


def test_post_too_large_for_the_worker_is_400_with_what_fits(budget_for_three_long_stems):
    client = FakeDurableClient()
    response = asyncio.run(handle_generate(post(body("req-big", 8)), client))
    assert response.status_code == 400
    [error] = json.loads(response.get_body())["errors"]
    assert error["field"] == "target_stems" and error["type"] == "memory_budget"
    message = error["message"]
    assert f"WORKER_MEMORY_BUDGET_MB of {budget_for_three_long_stems:,} MB" in message
    assert "at most 3 stem(s) of this length" in message
    assert client.started == []


def test_post_that_fits_the_budget_starts(budget_for_three_long_stems):
    client = FakeDurableClient()
    response = asyncio.run(handle_generate(post(body("req-fits", 3)), client))
    assert response.status_code == 202
    assert [instance for _, instance, _ in client.started] == ["req-fits"]


def test_batch_entries_too_large_are_invalid_and_the_others_start(budget_for_three_long_stems):
    client = FakeDurableClient()
    lines = [body("b-ok", 2), body("b-big", 6), body("b-short", 8, seconds=20)]
    data = "\n".join(json.dumps(line) for line in lines).encode()
    report = asyncio.run(run_batch("mem.jsonl", data, client))
    assert report.counts == {"started": 2, "duplicate": 0, "conflict": 0, "invalid": 1, "error": 0}
    [refused] = [e for e in report.entries if e["outcome"] == "invalid"]
    assert refused["line"] == 2
    assert "WORKER_MEMORY_BUDGET_MB" in refused["errors"][0]["message"]
    assert sorted(instance for _, instance, _ in client.started) == ["b-ok", "b-short"]
