import errno
import shutil
import threading

import pytest
import torch

from generation.engines.loading import describe_load_failure, resolve_device
from generation.engines.musicgen.loader import ModelHolder, ModelState, load_model, model_holder
from generation.errors import ModelLoadError, ModelNotReadyError
from generation.settings import GenerationSettings


def test_tiny_checkpoint_loads_through_the_product_path(tiny_model):
    assert tiny_model.sample_rate == 32000
    assert tiny_model.frame_rate == 50
    assert tiny_model.num_codebooks == 4
    assert tiny_model.device == torch.device("cpu")
    assert not tiny_model.model.training


def test_holder_loads_once_even_when_asked_from_many_threads(tiny_settings, monkeypatch):
    from generation.engines.musicgen import loader

    calls = []
    real = loader.load_model

    def counting(settings):
        calls.append(1)
        return real(settings)

    monkeypatch.setattr(loader, "load_model", counting)
    holder = ModelHolder(tiny_settings)
    assert holder.state is ModelState.NOT_LOADED
    results = []
    threads = [threading.Thread(target=lambda: results.append(holder.get())) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert all(r is results[0] for r in results)
    assert holder.state is ModelState.AVAILABLE


def test_warm_up_in_background_turns_available(tiny_settings, caplog):
    holder = ModelHolder(tiny_settings)
    with pytest.raises(ModelNotReadyError):
        holder.get_if_ready()
    with caplog.at_level("INFO"):
        holder.warm_up_in_background().join(timeout=60)
    assert holder.state is ModelState.AVAILABLE
    assert holder.get_if_ready() is holder.get()
    assert any("MusicGen loaded successfully" in r.getMessage() for r in caplog.records)


def test_process_holder_is_shared_per_model_variant(tiny_settings):
    assert model_holder(tiny_settings) is model_holder(tiny_settings.model_copy())
    other = tiny_settings.model_copy(update={"musicgen_model": "/elsewhere"})
    assert model_holder(other) is not model_holder(tiny_settings)


def test_missing_directory_fails_loudly_and_stays_failed(tmp_path):
    settings = GenerationSettings(musicgen_model=str(tmp_path / "nope"), model_cache_dir=tmp_path)
    holder = ModelHolder(settings)
    with pytest.raises(ModelLoadError) as caught:
        holder.get()
    message = str(caught.value)
    assert "nope" in message and str(tmp_path) in message and "does not exist" in message
    assert holder.state is ModelState.FAILED
    with pytest.raises(ModelLoadError):
        holder.get_if_ready()


def test_corrupt_weights_are_named(tiny_checkpoint, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match="corrupt or incomplete"):
        load_model(GenerationSettings(musicgen_model=str(broken)))


def test_hub_model_without_network_or_cache_names_model_cache_and_cause(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "cache"
    settings = GenerationSettings(musicgen_model="facebook/musicgen-small", model_cache_dir=cache)
    with pytest.raises(ModelLoadError) as caught:
        load_model(settings)
    message = str(caught.value)
    assert "facebook/musicgen-small" in message
    assert str(cache) in message
    assert "network" in message
    assert cache.is_dir()  # the cache directory is created for the download


def test_disk_full_is_named():
    error = OSError(errno.ENOSPC, "No space left on device")
    assert describe_load_failure(error, "MUSICGEN_MODEL").startswith("no disk space")
    wrapped = RuntimeError("download failed")
    wrapped.__cause__ = error
    assert describe_load_failure(wrapped, "MUSICGEN_MODEL").startswith("no disk space")


def test_gpu_requested_without_cuda_warns_and_uses_cpu(caplog):
    if torch.cuda.is_available():
        pytest.fail("this test expects a machine without CUDA")
    with caplog.at_level("WARNING"):
        assert resolve_device(True) == torch.device("cpu")
    assert "USE_GPU" in caplog.text


def test_reduced_precision_load_releases_the_replaced_decoder(tiny_settings):
    """int8/bf16: transformers' decoder goes to meta and its mapped pages are handed back."""
    from generation.engines.musicgen.fast_decoder import WeightFormat

    loaded = load_model(tiny_settings.model_copy(update={"model_precision": "int8"}))
    assert loaded.decoder.weights is WeightFormat.INT8
    assert all(p.device.type == "meta" for p in loaded.model.decoder.parameters())
    assert loaded.model.text_encoder.device.type == "cpu"  # still needed, still there


def test_release_file_pages_leaves_unmapped_tensors_alone():
    from generation.engines.musicgen.loader import release_file_pages

    module = torch.nn.Linear(4096, 256)
    before = module.weight.detach().clone()
    assert release_file_pages(module) == 0  # plain heap memory: nothing to release
    assert torch.equal(module.weight, before)
