import json
from pathlib import Path

import pytest

from generation.errors import SettingsError
from generation.settings import DEFAULT_MODEL_ID, load_generation_settings
from orchestrators.settings import ServiceSettings, load_service_settings

SERVICE_KEYS = ["AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_URL"]
ALL_KEYS = [
    "MUSICGEN_MODEL",
    "MODEL_CACHE_DIR",
    "USE_GPU",
    "DEFAULT_TOP_K",
    "DEFAULT_TEMPERATURE",
    "WINDOW_SECONDS",
    "EXTEND_STRIDE_SECONDS",
    *SERVICE_KEYS,
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in ALL_KEYS:
        monkeypatch.delenv(key, raising=False)


def test_defaults_point_at_the_real_hub_checkpoint():
    settings = load_generation_settings()
    assert settings.musicgen_model == DEFAULT_MODEL_ID
    assert settings.model_cache_dir is None
    assert settings.use_gpu is False
    assert settings.default_top_k == 250 and settings.default_guidance_scale == 3.0


def test_values_are_read_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MUSICGEN_MODEL", str(tmp_path))
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("USE_GPU", "true")
    settings = load_generation_settings()
    assert settings.musicgen_model == str(tmp_path)
    assert settings.model_cache_dir == tmp_path / "cache"
    assert settings.use_gpu is True


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("USE_GPU", "maybe"),
        ("DEFAULT_TOP_K", "-3"),
        ("DEFAULT_TEMPERATURE", "0"),
        ("WINDOW_SECONDS", "ninety"),
    ],
)
def test_a_bad_value_fails_naming_the_key(monkeypatch, key, value):
    monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError, match=key):
        load_generation_settings()


def test_stride_must_fit_inside_the_window(monkeypatch):
    monkeypatch.setenv("WINDOW_SECONDS", "10")
    monkeypatch.setenv("EXTEND_STRIDE_SECONDS", "10")
    with pytest.raises(SettingsError, match="EXTEND_STRIDE_SECONDS"):
        load_generation_settings()


def test_service_requires_storage_and_names_the_keys():
    with pytest.raises(SettingsError, match="AZURE_STORAGE_CONNECTION_STRING"):
        load_service_settings()


def test_service_accepts_a_connection_string_and_keeps_it_secret(monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "AccountKey=sekrit")
    settings = load_service_settings()
    assert settings.blob_container_name == "audio-files"
    assert "sekrit" not in repr(settings)
    assert settings.azure_storage_connection_string.get_secret_value() == "AccountKey=sekrit"


def test_an_empty_value_counts_as_not_set(monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_URL", "https://acct.blob.core.windows.net")
    monkeypatch.setenv("MODEL_CACHE_DIR", "")
    settings = load_service_settings()
    assert settings.azure_storage_connection_string is None
    assert settings.model_cache_dir is None


def test_the_sample_settings_list_every_key():

    sample = Path(__file__).resolve().parents[2] / "local.settings.sample.json"
    values = json.loads(sample.read_text())["Values"]
    keys = {
        str(field.validation_alias or name).upper()
        for name, field in ServiceSettings.model_fields.items()
    }
    missing = keys - {key.upper() for key in values}
    assert not missing, f"local.settings.sample.json lacks {sorted(missing)}"


@pytest.mark.parametrize(
    "template",
    [
        "uploads/",
        "{audio_file_id}/{audio_file_id}",
        "/uploads/{audio_file_id}",
        "a/{x}/{audio_file_id}",
    ],
)
def test_the_upload_template_must_hold_the_id_once(template, monkeypatch):
    from generation.errors import SettingsError
    from orchestrators.settings import load_service_settings

    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true")
    monkeypatch.setenv("UPLOAD_BLOB_TEMPLATE", template)
    with pytest.raises(SettingsError, match="UPLOAD_BLOB_TEMPLATE"):
        load_service_settings()
