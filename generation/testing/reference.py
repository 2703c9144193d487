"""Reference helpers for tests and benchmarks: drive transformers' own MusicGen
``generate`` so the project's decoding can be checked against it token for token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from generation.engines.musicgen.decoding import SamplingParams
from generation.engines.musicgen.loader import LoadedModel


class StepTracker(StoppingCriteria):
    """Never stops ``generate``; counts steps and keeps the latest token matrix.

    For driving transformers' own ``generate`` (the baseline and the equivalence tests):
    it does not stream MusicGen's steps, but calls stopping criteria after every step.
    """

    def __init__(self, on_step: Callable[[], None] | None = None) -> None:
        self.on_step = on_step
        self.tokens: torch.Tensor | None = None

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> torch.BoolTensor:
        self.tokens = input_ids
        if self.on_step is not None:
            self.on_step()
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        return cast(torch.BoolTensor, done)


def undelay(tokens: torch.Tensor, batch: int, num_codebooks: int) -> torch.Tensor:
    """Codec codes ``[batch, codebooks, frames]`` from ``generate``'s delayed token matrix
    ``[batch * codebooks, steps]`` (codebook ``k`` holds frame ``t`` at ``t + k + 1``)."""
    delayed = tokens.reshape(batch, num_codebooks, -1)
    frames = delayed.shape[-1] - num_codebooks
    return torch.stack([delayed[:, k, k + 1 : k + 1 + frames] for k in range(num_codebooks)], 1)


def reference_codes(
    loaded: LoadedModel,
    prompt: str,
    frames: int,
    seed: int,
    sampling: SamplingParams,
    *,
    prompt_codes: torch.Tensor | None = None,
    chroma: torch.Tensor | None = None,
) -> torch.Tensor:
    """transformers' generate, seeded the same way, returning codes [1, K, frames]; with
    ``chroma`` (a melody model) passed as ``input_features``."""
    text = loaded.processor(text=[prompt], padding=True, return_tensors="pt")
    tracker = StepTracker()
    extra: dict[str, Any] = {} if chroma is None else {"input_features": chroma[None]}
    if prompt_codes is not None:
        extra["decoder_input_ids"] = prompt_codes.reshape(4, -1)
    torch.manual_seed(seed)
    with torch.inference_mode():
        loaded.model.generate(
            **text,
            max_new_tokens=frames + 3,
            do_sample=True,
            guidance_scale=sampling.guidance_scale,
            top_k=sampling.top_k,
            top_p=sampling.top_p if 0 < sampling.top_p < 1 else 1.0,
            temperature=sampling.temperature,
            stopping_criteria=StoppingCriteriaList([tracker]),
            **extra,
        )
    assert tracker.tokens is not None
    codes = undelay(tracker.tokens, 1, 4)
    if prompt_codes is not None:
        # The tracker sees raw samples; generate's output (and its model inputs) replace the
        # prompt positions with the prompt through the delay pattern mask.
        codes[..., : prompt_codes.shape[-1]] = prompt_codes
    return codes
