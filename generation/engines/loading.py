"""What both engines' loaders share: telling a local directory from a hub id, and naming
the cause of a load failure in one line."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


def is_local_source(source: str) -> bool:
    """Whether ``source`` names a local directory rather than a hub id."""
    return Path(source).exists() or source.startswith(("/", "./", "../", "~"))


def describe_load_failure(error: BaseException, setting: str) -> str:
    """A one-line cause for a load failure: no network, no disk space, corrupt files, ...;
    ``setting`` names the environment key that chose the model (``MUSICGEN_MODEL``)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for item in chain:
        if isinstance(item, OSError) and item.errno == errno.ENOSPC:
            return f"no disk space left to store the model ({item})"
    names = " ".join(type(item).__name__ for item in chain)
    text = " ".join(str(item) for item in chain)
    if "RepositoryNotFound" in names:
        return f"no such model on the Hugging Face hub (check {setting})"
    if any(
        marker in names or marker in text
        for marker in (
            "LocalEntryNotFound",
            "ConnectionError",
            "ConnectError",
            "offline mode",
            "Max retries exceeded",
            "Temporary failure in name resolution",
        )
    ):
        return (
            "the model is not in the cache and the Hugging Face hub cannot be reached "
            "(no network access?); download it once into the cache or point "
            f"{setting} at a local directory"
        )
    if isinstance(error, json.JSONDecodeError) or any(
        marker in names or marker in text
        for marker in (
            "SafetensorError",
            "deserializ",
            "JSONDecodeError",
            "invalid load key",
            "unexpected EOF",
            "incomplete metadata",
            "HeaderTooLarge",
        )
    ):
        return f"corrupt or incomplete model files ({type(error).__name__}: {error})"
    return f"{type(error).__name__}: {error}"


def has_cxx_compiler() -> bool:
    """Whether a C++ compiler (``$CXX``, else ``c++``) is on the PATH: PyTorch's extension
    builder and ``torch.compile``'s CPU code generation both need one."""
    return shutil.which(os.environ.get("CXX", "c++")) is not None


def resolve_device(use_gpu: bool) -> torch.device:
    """CUDA when asked for and present; otherwise CPU (with a warning if CUDA was asked for)."""
    if use_gpu:
        if torch.cuda.is_available():
            return torch.device("cuda")
        logger.warning("USE_GPU is true but no CUDA device is available: running on CPU")
    return torch.device("cpu")
