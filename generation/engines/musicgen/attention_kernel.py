"""The fp16-cache attention kernel for CPU decoding (``csrc/attend_f16.cpp``), built on
first use.

A decoding step on CPU is bound by memory: besides the weights it reads every cached key
and value. With the cache in fp16 it reads half the bytes; PyTorch's own batched matmul is
slower on fp16/bf16 than on fp32 here, so this small AVX-512 kernel widens to fp32 in
registers instead. It is compiled once per machine with PyTorch's extension builder (a C++
compiler is needed; the build is cached in ``TORCH_EXTENSIONS_DIR``). Where the CPU lacks
AVX-512 or nothing can be compiled, ``load()`` returns None and the decoder keeps its fp32
cache and PyTorch's attention: slower, never wrong. ``FAST_ATTENTION_KERNEL=0`` (settings)
makes the decoder not ask for it at all.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import torch

from generation.engines.loading import has_cxx_compiler

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "attend_f16.cpp"
_NO_MASK = torch.empty(0)  # the kernel's "no mask", made once: it is called every layer


def cpu_supports_kernel() -> bool:
    """Whether this CPU has the instructions the kernel uses (AVX-512 F/BW/VL and F16C)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split()
    except (OSError, IndexError):
        return False
    return {"avx512f", "avx512bw", "avx512vl", "f16c"} <= set(flags)


@functools.cache
def load() -> Any | None:
    """The compiled kernel module (``attend(q, k_t, v, mask, length, scale)``), or None
    when it cannot be used here (reason logged once)."""
    if not cpu_supports_kernel():
        logger.info("this CPU lacks AVX-512/F16C: decoding uses an fp32 attention cache")
        return None
    if not has_cxx_compiler():
        logger.warning("no C++ compiler: the fp16 attention kernel is not built (slower decoding)")
        return None
    from torch.utils.cpp_extension import load as build  # noqa: PLC0415 - slow import

    try:
        return build(
            name="stem_attend_f16",
            sources=[str(SOURCE)],
            # The exact instruction sets checked above, not -march=native: a build cached on
            # a shared volume must run on every machine that passes the check.
            extra_cflags=[
                "-O3",
                "-mavx512f",
                "-mavx512bw",
                "-mavx512vl",
                "-mf16c",
                "-mfma",
                "-fopenmp",
            ],
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except Exception:  # any build failure means: use the fallback
        logger.warning(
            "the fp16 attention kernel could not be built: slower decoding", exc_info=True
        )
        return None


def attend(
    kernel: Any,
    q: torch.Tensor,
    k_t: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None,
    length: int,
    scale: float,
) -> torch.Tensor:
    """softmax(q k^T * scale + mask) v for one query per head: ``q`` ``[B, H, D]`` fp32,
    ``k_t`` ``[B, H, D, S]`` and ``v`` ``[B, H, S, D]`` fp16 (first ``length`` slots
    used), ``mask`` ``[B, S]`` fp32 additive or None. Returns ``[B, H, D]`` fp32."""
    return kernel.attend(q, k_t, v, _NO_MASK if mask is None else mask, length, scale)
