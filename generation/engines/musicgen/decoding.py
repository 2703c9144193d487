"""The project's MusicGen decoding loop: delay pattern, guidance and sampling, per row.

Each row (one clip) has its own random generator, length and sampling parameters, so a
clip's codes depend only on its own conditioning, seed, length and sampling, never on what
else shares the batch. With one row and fp32 weights it reproduces transformers' ``generate``
token for token (same seed), which the tests check on the tiny checkpoints (text-only and
melody).

Token layout (MusicGen's delay pattern): position 0 holds the start token; codebook ``k``
holds frame ``t`` at position ``t + k + 1``; positions outside a codebook's frames are pad.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from generation.engines.musicgen.fast_decoder import FastDecoder
from generation.settings import (
    DEFAULT_GUIDANCE_SCALE,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_K,
    DEFAULT_TOP_P,
)


@dataclass(frozen=True)
class SamplingParams:
    """Sampling knobs of one row. ``top_k`` 0 and ``top_p`` outside (0, 1) disable those."""

    top_k: int = DEFAULT_TOP_K
    top_p: float = DEFAULT_TOP_P
    temperature: float = DEFAULT_TEMPERATURE
    guidance_scale: float = DEFAULT_GUIDANCE_SCALE


@dataclass(frozen=True)
class DecodeRow:
    """One clip to decode: ``frames`` new codec frames, after the batch's prompt frames."""

    frames: int
    sampling: SamplingParams


def sample_next(
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    rows: Sequence[DecodeRow],
    generators: Sequence[torch.Generator],
) -> torch.Tensor:
    """Next tokens ``[B, K]`` from logits ``[B, K, V]`` (float32), as transformers would:
    guidance, temperature, top-k, top-p, softmax, then one multinomial draw per row."""
    device = cond.device
    scales = torch.tensor([r.sampling.guidance_scale for r in rows], device=device)[:, None, None]
    scores = cond
    if uncond is not None:
        guided = uncond + (cond - uncond) * scales
        scores = torch.where(scales > 1, guided, cond)
    temps = [r.sampling.temperature for r in rows]
    if any(t != 1.0 for t in temps):
        scores = scores / torch.tensor(temps, device=device, dtype=scores.dtype)[:, None, None]
    ks = [min(r.sampling.top_k, scores.shape[-1]) for r in rows]
    if any(ks):
        top = torch.topk(scores, max(ks), dim=-1).values
        index = torch.tensor([max(k, 1) - 1 for k in ks], device=device)
        kth = top.gather(-1, index[:, None, None].expand(-1, top.shape[1], 1))
        active = torch.tensor([k > 0 for k in ks], device=device)[:, None, None]
        scores = scores.masked_fill(active & (scores < kth), -float("inf"))
    ps = [r.sampling.top_p if 0 < r.sampling.top_p < 1 else 1.0 for r in rows]
    if any(p < 1.0 for p in ps):
        sorted_scores, sorted_index = torch.sort(scores, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        p = torch.tensor(ps, device=device, dtype=cumulative.dtype)[:, None, None]
        remove = (cumulative <= (1 - p)) & (p < 1.0)
        remove[..., -1:] = False
        scores = scores.masked_fill(remove.scatter(-1, sorted_index, remove), -float("inf"))
    probs = scores.softmax(dim=-1)
    return torch.stack(
        [
            torch.multinomial(probs[i], 1, generator=generators[i]).squeeze(1)
            for i in range(len(rows))
        ]
    )


def melody_prefix(
    decoder: FastDecoder,
    text_states: torch.Tensor,
    text_mask: torch.Tensor,
    chroma: Sequence[torch.Tensor | None],
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """MusicGen-melody's conditioning prefix per row, and guidance's null condition.

    ``text_states`` ``[B, L, D]`` and ``text_mask`` ``[B, L]`` as for ``decode_codes``;
    ``chroma[b]`` ``[T, num_chroma]`` (one-hot frames) or None for no melody, which is
    transformers' default: every frame pitch class 0. Row ``b``'s prefix is its projected
    chroma (``chroma_length`` frames) then its own text states, left-padded to the longest
    prefix: ``(states [B, P, D], mask [B, P], (null_states, null_mask))``. The null
    condition is transformers' exactly: chroma frames all pitch class 0, zero text states,
    the same slots attended (zeros are attended, not masked).
    """
    cond, null = [], []
    for b, row_chroma in enumerate(chroma):
        text = text_states[b, text_mask[b].bool()]  # this row's own tokens, no batch padding
        # transformers' null chroma: as many frames as the melody's, all pitch class 0
        frames = 1 if row_chroma is None else len(row_chroma)
        silent = text.new_zeros(1, frames, decoder.num_chroma)
        silent[..., 0] = 1
        melody = silent if row_chroma is None else row_chroma.to(text)[None]
        cond.append(torch.cat([decoder.project_chroma(melody)[0], text]))
        null.append(torch.cat([decoder.project_chroma(silent)[0], torch.zeros_like(text)]))
    longest = max(len(c) for c in cond)
    mask = torch.zeros(len(cond), longest, dtype=text_mask.dtype, device=text_mask.device)
    for b, c in enumerate(cond):
        mask[b, longest - len(c) :] = 1

    def left_pad(rows: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack([F.pad(r, (0, 0, longest - len(r), 0)) for r in rows])

    return left_pad(cond), mask, (left_pad(null), mask)


def decode_codes(
    decoder: FastDecoder,
    states: torch.Tensor,
    mask: torch.Tensor,
    rows: Sequence[DecodeRow],
    generators: Sequence[torch.Generator],
    *,
    null: tuple[torch.Tensor, torch.Tensor] | None = None,
    prompt_codes: torch.Tensor | None = None,
    on_step: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Decode codec codes ``[B, K, P + max(frames)]`` for ``rows``.

    ``states`` ``[B, L, D]`` and ``mask`` ``[B, L]`` are the conditioning: the projected,
    masked text-encoder states and their mask, or MusicGen-melody's prefix (``melody_prefix``,
    which also gives ``null``, guidance's null condition; the default, zero states with
    nothing to attend to, is text-only MusicGen's). ``prompt_codes`` ``[B, K, P]`` continue
    earlier audio. A row's frames past its own length are pad and must be cut by the caller.
    """
    batch = len(rows)
    k_books = decoder.num_codebooks
    pad = decoder.pad_token
    device = states.device
    prompt = 0 if prompt_codes is None else int(prompt_codes.shape[-1])
    longest = prompt + max(r.frames for r in rows)
    total = longest + k_books  # positions: start token, frames, delay tail
    # forced[b, k, s] >= 0 fixes a position (pad, or a prompt code); -1 leaves it to sampling.
    forced = torch.full((batch, k_books, total), -1, dtype=torch.long, device=device)
    for b, row in enumerate(rows):
        for k in range(k_books):
            forced[b, k, : k + 1] = pad
            forced[b, k, prompt + row.frames + k + 1 :] = pad
            if prompt_codes is not None:
                forced[b, k, k + 1 : k + 1 + prompt] = prompt_codes[b, k]
    tokens = torch.where(forced >= 0, forced, torch.full_like(forced, pad))

    guided = any(r.sampling.guidance_scale > 1 for r in rows)
    if guided:
        null_states, null_mask = null or (torch.zeros_like(states), torch.zeros_like(mask))
        states = torch.cat([states, null_states])
        mask = torch.cat([mask, null_mask])
    decoder.start(states, mask, total)

    def run(columns: torch.Tensor, pos: int) -> torch.Tensor:
        return decoder.step(torch.cat([columns, columns]) if guided else columns, pos)

    first_free = prompt + 1
    try:
        logits = run(tokens[:, :, :first_free], 0)
        for pos in range(first_free, total):
            cond, uncond = (logits[:batch], logits[batch:]) if guided else (logits, None)
            chosen = sample_next(cond, uncond, rows, generators)
            fixed = forced[:, :, pos]
            tokens[:, :, pos] = torch.where(fixed >= 0, fixed, chosen)
            if on_step is not None:
                on_step()
            if pos + 1 < total:
                logits = run(tokens[:, :, pos : pos + 1], pos)
    finally:
        decoder.release()
    return torch.stack([tokens[:, k, k + 1 : k + 1 + longest] for k in range(k_books)], dim=1)


def decode_steps(frames: int, num_codebooks: int) -> int:
    """Sampling steps to decode ``frames`` new frames (the delay adds ``K - 1``)."""
    return frames + num_codebooks - 1
