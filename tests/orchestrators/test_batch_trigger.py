"""The batch trigger with real blobs in Azurite and a fake durable client."""

import asyncio
import json

import azure.functions as func
import pytest

from generation.errors import SettingsError
from orchestrators import runtime
from orchestrators.batch_trigger import handle_batch_blob, split_entries
from tests.azurite import AZURITE_ACCOUNT_KEY


def body(request_id: str, stems=("bass",)) -> dict:
    return {
        "generation_request_id": request_id,
        "target_stems": list(stems),
        "parameters": {"duration_seconds": 5},
    }


def drop_and_trigger(name: str, data: bytes, client) -> dict:
    """Upload the batch file, read it back as the host would, run the trigger, read the report."""
    batches = runtime.batch_store()
    batches.ensure_container()
    batches.delete(f"{name}.report.json")  # a report an older version left beside the file
    batches.upload_bytes(name, data, "application/json")
    stream = func.blob.InputStream(
        data=batches.download_bytes(name), name=f"{runtime.BATCH_CONTAINER}/{name}"
    )
    report_name = asyncio.run(handle_batch_blob(stream.name, stream.read(), client))
    assert report_name == f"{name}.report.json"
    assert not batches.exists(report_name)  # never beside the batch files
    return json.loads(runtime.batch_report_store().download_bytes(report_name))


def test_json_array_starts_one_orchestration_per_request(service_env, durable_client):
    data = json.dumps([body("b-1"), body("b-2", ("drums", "guitar"))]).encode()
    report = drop_and_trigger("array.json", data, durable_client)
    assert [s[1] for s in durable_client.started] == ["b-1", "b-2"]
    assert all(isinstance(s[2]["seed"], int) for s in durable_client.started)
    assert [e["instance_id"] for e in report["entries"]] == ["b-1", "b-2"]
    assert report["counts"] == {
        "started": 2,
        "duplicate": 0,
        "conflict": 0,
        "invalid": 0,
        "error": 0,
    }


def test_json_lines_with_bad_lines_runs_the_good_ones(service_env, durable_client):
    lines = [
        json.dumps(body("l-1")),
        "{broken",
        "",
        json.dumps({**body("l-3"), "seed": -5}),
        json.dumps(body("l-4")),
    ]
    report = drop_and_trigger("lines.jsonl", "\n".join(lines).encode(), durable_client)
    assert [s[1] for s in durable_client.started] == ["l-1", "l-4"]
    by_line = {e["line"]: e for e in report["entries"]}
    assert by_line[1]["outcome"] == "started" and by_line[5]["outcome"] == "started"
    assert by_line[2]["outcome"] == "invalid" and "JSON" in by_line[2]["errors"][0]["message"]
    assert by_line[4]["outcome"] == "invalid" and by_line[4]["errors"][0]["field"] == "seed"
    assert 3 not in by_line  # blank lines are not entries
    assert report["counts"]["invalid"] == 2


def test_a_batch_run_twice_starts_nothing_new(service_env, durable_client):
    data = json.dumps([body("d-1")]).encode()
    drop_and_trigger("again.json", data, durable_client)
    durable_client.set("d-1", "Running", input_=durable_client.instances["d-1"].input_)
    report = drop_and_trigger("again.json", data, durable_client)
    assert len(durable_client.started) == 1
    assert report["entries"][0]["outcome"] == "duplicate"
    changed = json.dumps([body("d-1", ("piano",))]).encode()
    report = drop_and_trigger("changed.json", changed, durable_client)
    assert report["entries"][0]["outcome"] == "conflict" and report["counts"]["conflict"] == 1
    assert len(durable_client.started) == 1


def test_a_file_that_is_not_json_gets_a_report_and_starts_nothing(service_env, durable_client):
    report = drop_and_trigger("poison.json", b'[{"generation_request_id": ', durable_client)
    assert durable_client.started == []
    assert "not a valid JSON array" in report["error"]


def test_a_batch_named_like_a_report_is_run_and_never_overwritten(service_env, durable_client):
    name = "y.json.report.json"  # a user's file, not a report: it runs like any other
    report = drop_and_trigger(name, json.dumps([body("named-1")]).encode(), durable_client)
    assert report["counts"]["started"] == 1
    data = json.dumps([body("named-2")]).encode()
    runtime.batch_store().upload_bytes("y.json", data, "application/json")
    asyncio.run(handle_batch_blob("generation-batches/y.json", data, durable_client))
    # y.json's report went to the reports container: the user's file is untouched.
    assert json.loads(runtime.batch_store().download_bytes(name)) == [body("named-1")]
    assert runtime.batch_report_store().exists("y.json.report.json")


def test_an_unsafe_callback_in_a_batch_entry_is_that_entrys_error(service_env, durable_client):
    entries = [
        {**body("cb-1"), "callback_url": "https://169.254.169.254/latest"},
        body("cb-2"),
    ]
    report = drop_and_trigger("callbacks.json", json.dumps(entries).encode(), durable_client)
    first, second = report["entries"]
    assert first["outcome"] == "invalid" and "cloud metadata" in first["errors"][0]["message"]
    assert second["outcome"] == "started"


def test_split_entries_numbers_array_items_and_lines():
    assert [n for n, _ in split_entries(b'[{"a":1},{"b":2}]')] == [1, 2]
    assert [n for n, _ in split_entries(b'{"a":1}\n\n{"b":2}\n')] == [1, 3]


def test_the_report_lands_in_the_batch_files_account_when_outputs_go_to_another(
    service_env, durable_client, monkeypatch
):
    # The outputs' account is unreachable: the report must not depend on it.
    elsewhere = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={AZURITE_ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", elsewhere)
    runtime.reset_for_tests()
    report = drop_and_trigger(
        "other-account.json", json.dumps([body("x-1")]).encode(), durable_client
    )
    assert report["counts"]["started"] == 1


def test_without_the_batch_connection_the_app_refuses_to_start(service_env, monkeypatch):
    monkeypatch.delenv("AzureWebJobsStorage")
    runtime.reset_for_tests()
    with pytest.raises(SettingsError, match="AzureWebJobsStorage"):
        runtime.check_configuration()
