"""Handing back the memory of checkpoint weights that are no longer used."""

from __future__ import annotations

import ctypes
import mmap
import sys

import torch

_MADV_DONTNEED = 4
_PAGE = mmap.PAGESIZE


def _checkpoint_mappings() -> list[tuple[int, int]]:
    """Address ranges of this process's memory-mapped ``.safetensors`` files."""
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and fields[-1].endswith(".safetensors"):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                ranges.append((start, end))
    return ranges


def release_file_pages(module: torch.nn.Module) -> int:
    """Drop the resident pages of ``module``'s weights that transformers left memory-mapped
    from the checkpoint file; returns the bytes released.

    transformers maps fp32 checkpoints without copying, so every weight read stays resident
    (and counts in RSS) for as long as any tensor of the file lives. Once the decoder is
    packed its fp32 pages are dead; ``madvise(MADV_DONTNEED)`` hands them back. Only whole
    pages inside these tensors and inside a checkpoint mapping are touched, so neighbouring
    weights are never affected (and would re-read from the file if they were). Linux only;
    elsewhere, or on any error, nothing is released.
    """
    if not sys.platform.startswith("linux"):
        return 0
    try:
        mappings = _checkpoint_mappings()
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return 0
    released = 0
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.device.type != "cpu" or tensor.numel() == 0:
            continue
        start = tensor.data_ptr()
        end = start + tensor.numel() * tensor.element_size()
        if not any(lo <= start and end <= hi for lo, hi in mappings):
            continue
        first = -(-start // _PAGE) * _PAGE  # round up
        last = end // _PAGE * _PAGE  # round down
        if (
            last > first
            and libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), _MADV_DONTNEED)
            == 0
        ):
            released += last - first
    return released
