"""The tiny ACE-Step checkpoint, built once per session (seconds), loaded fp32 and bf16.

``ACE_STEP_TEST_CHECKPOINT`` may point at a prebuilt one (``python -m
generation.testing.ace_step_checkpoints ace-step-tiny DIR``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from generation.engines.ace_step import LoadedAceStep, load_ace_step
from generation.testing.ace_step_checkpoints import build_checkpoint


@pytest.fixture(scope="session")
def ace_tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    prebuilt = os.environ.get("ACE_STEP_TEST_CHECKPOINT")
    if prebuilt and (Path(prebuilt) / "model_index.json").is_file():
        return Path(prebuilt)
    return build_checkpoint("ace-step-tiny", tmp_path_factory.mktemp("ace-step-tiny"))


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
    return build_checkpoint("ace-step-tiny-turbo", tmp_path_factory.mktemp("ace-step-tiny-turbo"))
