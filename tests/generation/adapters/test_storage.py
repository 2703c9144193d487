"""BlobStore against a real Azurite (see ``tests/azurite.py``)."""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from generation.adapters.storage import BlobStore, manifest_blob_name, stem_blob_name
from generation.errors import InvalidRequestError, SettingsError, StorageError
from generation.request import Stem
from tests.azurite import AZURITE_ACCOUNT_KEY

WAV = "audio/wav"


def closed_port() -> int:
    """A local TCP port with nothing listening on it (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def connection_string(key: str, port: int = 10000) -> str:
    return (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={key};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )


def unique_container() -> str:
    return f"test-{uuid.uuid4().hex[:24]}"


def sdk_container(conn: str, store: BlobStore) -> ContainerClient:
    """The SDK's own view of the store's container, to check what really landed."""
    return BlobServiceClient.from_connection_string(conn).get_container_client(store.container)


def assert_no_secret(text: str, key: str) -> None:
    assert key not in text
    assert key[:16] not in text  # no partial key either
    assert "AccountKey" not in text


def test_blob_names() -> None:
    assert stem_blob_name("req-1", "bass", "wav") == "generations/req-1/bass.wav"
    assert stem_blob_name("req-1", Stem.DRUMS, ".flac") == "generations/req-1/drums.flac"
    assert manifest_blob_name("req-1") == "generations/req-1/manifest.json"
    with pytest.raises(InvalidRequestError):
        stem_blob_name("a/b", "bass", "wav")
    with pytest.raises(InvalidRequestError):
        stem_blob_name("req-1", "..", "wav")
    with pytest.raises(InvalidRequestError):
        manifest_blob_name("")


def test_ensure_container_is_idempotent_and_tolerates_a_concurrent_creator(
    azurite_connection_string: str,
) -> None:
    store = BlobStore.from_connection_string(azurite_connection_string, unique_container())
    other_process = BlobStore.from_connection_string(azurite_connection_string, store.container)
    try:
        assert store.ensure_container() is True
        assert store.ensure_container() is False
        assert other_process.ensure_container() is False
    finally:
        store.delete_container()
    store.delete_container()  # already gone: fine


def test_a_malformed_connection_string_is_a_settings_error_without_its_text() -> None:
    secret = "AccountKey=not-really;nonsense"
    with pytest.raises(SettingsError) as caught:
        BlobStore.from_connection_string(secret, "c")
    assert "AZURE_STORAGE_CONNECTION_STRING" in str(caught.value)
    assert "not-really" not in str(caught.value)


def test_upload_and_download_round_trip(
    blob_store: BlobStore, azurite_connection_string: str
) -> None:
    data = os.urandom(70_000)
    name = stem_blob_name("req-1", "bass", "wav")
    url = blob_store.upload_bytes(name, data, WAV)
    assert url == blob_store.url(name)
    assert blob_store.download_bytes(name) == data
    props = sdk_container(azurite_connection_string, blob_store).get_blob_client(name)
    assert props.get_blob_properties().content_settings.content_type == WAV


def test_upload_file_streams_from_disk(blob_store: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "drums.wav"
    path.write_bytes(data)
    name = stem_blob_name("req-2", "drums", "wav")
    assert blob_store.upload_file(name, path, WAV) == blob_store.url(name)
    assert blob_store.download_bytes(name) == data
    with pytest.raises(FileNotFoundError):
        blob_store.upload_file("x.wav", tmp_path / "missing.wav", WAV)


def test_overwrite_keeps_one_blob_with_the_second_content(
    blob_store: BlobStore, azurite_connection_string: str
) -> None:
    name = stem_blob_name("req-3", "piano", "wav")
    blob_store.upload_bytes(name, b"first", WAV)
    blob_store.upload_bytes(name, b"second take", WAV)
    assert blob_store.download_bytes(name) == b"second take"
    names = [b.name for b in sdk_container(azurite_connection_string, blob_store).list_blobs()]
    assert names == [name]


def test_overwrite_false_refuses_an_existing_blob(blob_store: BlobStore) -> None:
    blob_store.upload_bytes("once.bin", b"1", "application/octet-stream")
    with pytest.raises(StorageError, match="blob already exists"):
        blob_store.upload_bytes("once.bin", b"2", "application/octet-stream", overwrite=False)
    assert blob_store.download_bytes("once.bin") == b"1"


def test_upload_json(blob_store: BlobStore, azurite_connection_string: str) -> None:
    manifest = {"generation_request_id": "req-4", "stems": {"bass": "b.wav"}, "note": "é"}
    name = manifest_blob_name("req-4")
    blob_store.upload_json(name, manifest)
    assert json.loads(blob_store.download_bytes(name)) == manifest
    blob = sdk_container(azurite_connection_string, blob_store).get_blob_client(name)
    assert blob.get_blob_properties().content_settings.content_type == "application/json"


def test_url_format(blob_store: BlobStore) -> None:
    name = stem_blob_name("req-5", "keys", "wav")
    expected = (
        f"http://127.0.0.1:10000/devstoreaccount1/{blob_store.container}/generations/req-5/keys.wav"
    )
    assert blob_store.url(name) == expected
    assert blob_store.upload_bytes(name, b"x", WAV) == expected


def test_exists_and_delete(blob_store: BlobStore) -> None:
    name = stem_blob_name("req-6", "synth", "wav")
    assert not blob_store.exists(name)
    blob_store.upload_bytes(name, b"x", WAV)
    assert blob_store.exists(name)
    blob_store.delete(name)
    assert not blob_store.exists(name)
    blob_store.delete(name)  # missing is fine


def test_download_of_a_missing_blob_names_container_and_blob(blob_store: BlobStore) -> None:
    with pytest.raises(StorageError) as caught:
        blob_store.download_bytes("generations/nope/bass.wav")
    message = str(caught.value)
    assert "download" in message
    assert "blob not found" in message
    assert blob_store.container in message
    assert "generations/nope/bass.wav" in message


def test_for_container_shares_the_account(blob_store: BlobStore) -> None:
    other = blob_store.for_container(unique_container())
    try:
        assert other.ensure_container()
        other.upload_bytes("a.txt", b"other", "text/plain")
        assert other.download_bytes("a.txt") == b"other"
        assert not blob_store.exists("a.txt")
        assert other.url("a.txt").startswith("http://127.0.0.1:10000/devstoreaccount1/")
    finally:
        other.delete_container()


def test_is_reachable_for_azurite(blob_store: BlobStore) -> None:
    assert blob_store.is_reachable()
    assert blob_store.for_container("no-such-container").is_reachable()


def test_is_reachable_is_false_quickly_for_a_closed_port() -> None:
    store = BlobStore.from_connection_string(
        connection_string(AZURITE_ACCOUNT_KEY, closed_port()), "audio-files"
    )
    started = time.monotonic()
    assert store.is_reachable(timeout_s=1.0) is False
    assert time.monotonic() - started < 10


def test_is_reachable_is_false_with_a_wrong_key(azurite_connection_string: str) -> None:
    wrong_key = base64.b64encode(os.urandom(64)).decode()
    store = BlobStore.from_connection_string(connection_string(wrong_key), "audio-files")
    assert store.is_reachable() is False


def test_a_wrong_key_becomes_a_storage_error_without_the_key(
    azurite_connection_string: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_key = base64.b64encode(os.urandom(64)).decode()
    store = BlobStore.from_connection_string(connection_string(wrong_key), unique_container())
    with pytest.raises(StorageError) as caught:
        store.upload_bytes("generations/req-7/bass.wav", b"x", WAV)
    message = str(caught.value)
    assert "upload" in message
    assert store.container in message
    assert "generations/req-7/bass.wav" in message
    assert "403" in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    assert_no_secret(message, wrong_key)
    assert_no_secret(caplog.text, wrong_key)


def test_an_unreachable_endpoint_fails_in_seconds_without_the_key() -> None:
    store = BlobStore.from_connection_string(
        connection_string(AZURITE_ACCOUNT_KEY, closed_port()), "audio-files"
    )
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        store.download_bytes("generations/req-8/bass.wav")
    assert time.monotonic() - started < 10  # default retries and timeouts
    message = str(caught.value)
    assert "cannot reach the storage endpoint" in message
    assert "'audio-files'" in message
    assert "generations/req-8/bass.wav" in message
    assert_no_secret(message, AZURITE_ACCOUNT_KEY)


def test_a_blob_replaced_after_its_size_check_is_never_read(
    blob_store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.storage.blob import BlobClient

    blob_store.upload_bytes("up.wav", b"small", "audio/wav")
    real = BlobClient.get_blob_properties

    def swap_after_check(self, **kwargs):
        properties = real(self, **kwargs)
        blob_store.upload_bytes("up.wav", b"x" * 10_000, "audio/wav")  # replaced in between
        return properties

    monkeypatch.setattr(BlobClient, "get_blob_properties", swap_after_check)
    with pytest.raises(StorageError, match="412"):
        blob_store.download_bytes("up.wav", max_bytes=100)
    monkeypatch.setattr(BlobClient, "get_blob_properties", real)
    with pytest.raises(ValueError, match="more than 100"):  # the retry sees the new size
        blob_store.download_bytes("up.wav", max_bytes=100)
