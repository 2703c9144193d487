"""No secret ever shows: a whole run with every secret set, and a failing one, scanned.

The storage account key (inside the connection string), the callback signing secret and a
token in the callback URL's query string must not appear in any log record (all loggers, at
DEBUG), in an error, in the status output or in the manifest.
"""

from __future__ import annotations

import json
import logging

from pytest_httpserver import HTTPServer

from orchestrators import runtime
from tests.azurite import AZURITE_ACCOUNT_KEY
from tests.test_end_to_end import blob_names, body, download, drive, start, status

CALLBACK_SECRET = "cb-secret-0123456789abcdef"
URL_TOKEN = "url-token-s3cr3t"


def test_no_secret_in_logs_status_output_or_manifest(
    service_env, durable_client, httpserver: HTTPServer, monkeypatch, caplog
):
    monkeypatch.setenv("CALLBACK_SECRET", CALLBACK_SECRET)
    runtime.reset_for_tests()
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    callback = httpserver.url_for("/hook") + f"?token={URL_TOKEN}"
    with caplog.at_level(logging.DEBUG):
        instance_id, client_input = start(durable_client, body("secret-run", callback))
        _, final = drive(instance_id, client_input)
        report = status(durable_client, instance_id, final)
    assert final.is_done
    manifest = download("generations/secret-run/manifest.json").decode()
    assert "generations/secret-run/manifest.json" in blob_names("generations/secret-run/")
    texts = {
        # The service's records; the test receiver's own access log (werkzeug) is not ours.
        "logs": "\n".join(r.getMessage() for r in caplog.records if r.name != "werkzeug"),
        "status": json.dumps(report),
        "output": json.dumps(final.output),
        "manifest": manifest,
    }
    for where, text in texts.items():
        for secret in (AZURITE_ACCOUNT_KEY, CALLBACK_SECRET, URL_TOKEN):
            assert secret not in text, f"a secret leaked into the {where}"
    assert report["callback"]["delivered"] is True  # it did run, with the secret


def test_no_secret_in_a_storage_failure(service_env, monkeypatch, caplog):
    broken = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={AZURITE_ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", broken)
    runtime.reset_for_tests()
    with caplog.at_level(logging.DEBUG):
        try:
            runtime.blob_store().upload_bytes("x.wav", b"data", "audio/wav")
        except Exception as error:  # noqa: BLE001 - the message is what is checked
            message = f"{type(error).__name__}: {error}"
        else:
            raise AssertionError("the upload to a closed port should have failed")
    assert AZURITE_ACCOUNT_KEY not in message
    assert AZURITE_ACCOUNT_KEY not in "\n".join(r.getMessage() for r in caplog.records)
