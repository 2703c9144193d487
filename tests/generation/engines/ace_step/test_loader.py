import shutil

import pytest
import torch

from generation.engines.ace_step import AceStepLoadError, load_ace_step
from generation.errors import ModelLoadError

REVISION = "0123456789abcdef0123456789abcdef01234567"


def _as_hub_cache(checkpoint, cache_dir, repo_id: str) -> None:
    """Lay ``checkpoint`` out as huggingface_hub caches a downloaded repository."""
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(checkpoint, repo / "snapshots" / REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)


def test_hub_id_loads_from_the_cache_without_the_network(
    ace_tiny_checkpoint, tmp_path, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _as_hub_cache(ace_tiny_checkpoint, tmp_path, "acme/ace-step-tiny")
    loaded = load_ace_step("acme/ace-step-tiny", tmp_path, offline=True)
    assert loaded.model_id == "acme/ace-step-tiny"
    assert (loaded.sample_rate, loaded.channels, loaded.is_turbo) == (48_000, 2, False)
    assert loaded.pipeline.transformer.dtype == torch.bfloat16  # the CPU default
    assert loaded.pipeline.vae.dtype == torch.float32


def test_local_directory_loads_in_fp32_when_asked(ace_tiny_checkpoint):
    loaded = load_ace_step(str(ace_tiny_checkpoint), None, precision="float32")
    assert {p.dtype for p in loaded.pipeline.transformer.parameters()} == {torch.float32}
    assert loaded.device == torch.device("cpu")


def test_missing_hub_model_names_model_cache_and_cause(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AceStepLoadError) as caught:
        load_ace_step("ACE-Step/acestep-v15-base-diffusers", tmp_path / "cache", offline=True)
    message = str(caught.value)
    assert "ACE-Step/acestep-v15-base-diffusers" in message
    assert str(tmp_path / "cache") in message
    assert "not in the cache" in message
    assert isinstance(caught.value, ModelLoadError)


def test_missing_local_directory_is_a_load_error(tmp_path):
    with pytest.raises(AceStepLoadError, match="local model directory does not exist"):
        load_ace_step(str(tmp_path / "nowhere"), None)


def test_original_release_layout_is_named_as_needing_conversion(tmp_path):
    (tmp_path / "acestep-v15-base").mkdir()  # the original release: no model_index.json
    with pytest.raises(AceStepLoadError, match="not a diffusers-format"):
        load_ace_step(str(tmp_path), None)


def test_corrupt_weights_are_named(ace_tiny_checkpoint, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(ace_tiny_checkpoint, broken)
    (broken / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"\0" * 64)
    with pytest.raises(AceStepLoadError, match=r"cannot load ACE-Step model .*broken"):
        load_ace_step(str(broken), None)
