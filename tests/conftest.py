"""Shared fixtures: the tiny random-weight MusicGen checkpoints, built once per session.

``.ci/run`` builds the text-only one beforehand and points ``MUSICGEN_TEST_CHECKPOINT`` at
it; without that variable the session builds its own (a few seconds). The tiny melody
checkpoint (``MusicgenMelodyForConditionalGeneration``) is always built in the session.
The tiny ACE-Step checkpoints (base and turbo) are built in the session too (seconds);
``ACE_STEP_TEST_CHECKPOINT`` may point at a prebuilt base one (``python -m
generation.checkpoints ace-step-tiny DIR``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from generation.engines.ace_step import LoadedAceStep, load_ace_step
from generation.engines.musicgen.loader import LoadedModel, load_model
from generation.settings import GenerationSettings
from generation.testing import ace_step_checkpoints
from generation.testing.checkpoints import build_checkpoint

pytest_plugins = ["tests.azurite", "tests.service_fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    # The tiny model gains nothing from threads, and on a busy 2-core machine OpenMP's
    # spinning workers made a 1.5 s stem take from 0.1 s to 37 s.
    torch.set_num_threads(1)
    # Compiling the DiT costs about a minute per process; the tests check behaviour, and
    # the compiled path has its own test (tests/generation/engines/ace_step/test_speed.py).
    os.environ.setdefault("ACE_STEP_COMPILE", "false")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of the tiny checkpoint (loadable with ``from_pretrained``, offline)."""
    prebuilt = os.environ.get("MUSICGEN_TEST_CHECKPOINT")
    if prebuilt and (Path(prebuilt) / "config.json").is_file():
        return Path(prebuilt)
    return build_checkpoint("tiny", tmp_path_factory.mktemp("tiny-musicgen"))


@pytest.fixture(scope="session")
def tiny_settings(tiny_checkpoint: Path) -> GenerationSettings:
    return GenerationSettings(musicgen_model=str(tiny_checkpoint))


@pytest.fixture(scope="session")
def tiny_model(tiny_settings: GenerationSettings) -> LoadedModel:
    """The tiny checkpoint loaded through the product's own loading code (CPU default: int8)."""
    return load_model(tiny_settings)


@pytest.fixture(scope="session")
def tiny_model_fp32(tiny_settings: GenerationSettings) -> LoadedModel:
    """The tiny checkpoint with fp32 decoder weights: exact, and keeps transformers' decoder
    for comparisons with ``generate``."""
    return load_model(tiny_settings.model_copy(update={"model_precision": "float32"}))


@pytest.fixture(scope="session")
def tiny_melody_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of the tiny MusicGen-melody checkpoint (``tiny-melody``), offline-loadable."""
    return build_checkpoint("tiny-melody", tmp_path_factory.mktemp("tiny-musicgen-melody"))


@pytest.fixture(scope="session")
def tiny_melody_settings(tiny_melody_checkpoint: Path) -> GenerationSettings:
    return GenerationSettings(musicgen_model=str(tiny_melody_checkpoint))


@pytest.fixture(scope="session")
def tiny_melody_model(tiny_melody_settings: GenerationSettings) -> LoadedModel:
    """The tiny melody checkpoint through the product's loading code (CPU default: int8)."""
    return load_model(tiny_melody_settings)


@pytest.fixture(scope="session")
def tiny_melody_model_fp32(tiny_melody_settings: GenerationSettings) -> LoadedModel:
    """The tiny melody checkpoint with fp32 decoder weights, keeping transformers' decoder for
    comparisons with ``generate``."""
    return load_model(tiny_melody_settings.model_copy(update={"model_precision": "float32"}))


@pytest.fixture(scope="session")
def ace_tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    prebuilt = os.environ.get("ACE_STEP_TEST_CHECKPOINT")
    if prebuilt and (Path(prebuilt) / "model_index.json").is_file():
        return Path(prebuilt)
    return ace_step_checkpoints.build_checkpoint(
        "ace-step-tiny", tmp_path_factory.mktemp("ace-step-tiny")
    )


@pytest.fixture(scope="session")
def ace_tiny_fp32(ace_tiny_checkpoint: Path) -> LoadedAceStep:
    """Everything fp32: the exact path, compared with the pipeline called directly."""
    return load_ace_step(str(ace_tiny_checkpoint), None, precision="float32")


@pytest.fixture(scope="session")
def ace_tiny_bf16(ace_tiny_checkpoint: Path) -> LoadedAceStep:
    """The product's default on CPU: bf16 networks, fp32 VAE."""
    return load_ace_step(str(ace_tiny_checkpoint), None, precision="auto")


@pytest.fixture(scope="session")
def ace_tiny_turbo_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ace_step_checkpoints.build_checkpoint(
        "ace-step-tiny-turbo", tmp_path_factory.mktemp("ace-step-tiny-turbo")
    )
