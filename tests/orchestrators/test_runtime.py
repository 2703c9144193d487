"""The process-wide stores the Functions app builds from its settings."""

from __future__ import annotations

from pydantic import SecretStr

from orchestrators import runtime
from orchestrators.settings import ServiceSettings


def test_from_settings_uses_the_connection_string_and_default_container(
    azurite_connection_string: str,
) -> None:
    settings = ServiceSettings(
        azure_storage_connection_string=SecretStr(azurite_connection_string),
        blob_container_name="stems-out",
    )
    assert runtime.store_from_settings(settings).container == "stems-out"
    store = runtime.store_from_settings(settings, container="other")
    assert store.container == "other"
    assert store.is_reachable()


def test_from_settings_with_an_account_url_builds_without_network() -> None:
    settings = ServiceSettings(
        azure_storage_account_url="https://acct.blob.core.windows.net",
        blob_container_name="audio-files",
    )
    store = runtime.store_from_settings(settings)
    assert store.url("a.wav") == "https://acct.blob.core.windows.net/audio-files/a.wav"


def test_the_batch_store_uses_the_functions_host_storage(azurite_connection_string, monkeypatch):
    monkeypatch.setenv("AzureWebJobsStorage", azurite_connection_string)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_URL", "https://outputs.blob.core.windows.net")
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    runtime.reset_for_tests()
    try:
        store = runtime.batch_store()
        assert store.container == runtime.BATCH_CONTAINER
        assert store.url("b.json").startswith("http://127.0.0.1:10000/devstoreaccount1/")
    finally:
        runtime.reset_for_tests()


def test_the_batch_store_accepts_the_identity_based_form(monkeypatch):
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    monkeypatch.setenv("AzureWebJobsStorage__accountName", "hostacct")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_URL", "https://outputs.blob.core.windows.net")
    runtime.reset_for_tests()
    try:
        url = runtime.batch_store().url("b.json")
        assert url == "https://hostacct.blob.core.windows.net/generation-batches/b.json"
    finally:
        runtime.reset_for_tests()
