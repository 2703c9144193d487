"""Chunked EnCodec decoding (``decode_frames``) against the one-call decode, on the tiny
checkpoint's codec."""

import pytest
import torch

from generation.engines.musicgen.generate import (
    DECODE_CHUNK_FRAMES,
    DECODE_LEFT_CONTEXT_FRAMES,
    DECODE_RIGHT_CONTEXT_FRAMES,
    decode_frames,
)

# The tolerance decode_frames' docstring promises.
MAX_ABS_ERROR = 1e-6
MIN_SNR_DB = 100.0


def random_codes(frames: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2048, (1, 4, frames), generator=generator)


def one_call(codec, codes: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return codec.decode(codes[None], audio_scales=[None]).audio_values


def errors(got: torch.Tensor, want: torch.Tensor) -> tuple[float, float]:
    """Max abs error and SNR (dB) of ``got`` against ``want``."""
    noise = ((got - want) ** 2).sum().clamp_min(1e-30)
    return (got - want).abs().max().item(), 10 * torch.log10((want**2).sum() / noise).item()


@pytest.fixture(scope="module")
def codec(tiny_model):
    return tiny_model.model.audio_encoder


def decoder_calls(codec) -> tuple[list[int], torch.utils.hooks.RemovableHandle]:
    """Frame counts the SEANet decoder is run on, recorded by a forward pre-hook."""
    seen: list[int] = []
    handle = codec.decoder.register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].shape[-1])
    )
    return seen, handle


def test_a_long_clip_decodes_in_bounded_chunks_within_the_tolerance(codec):
    frames = 3 * DECODE_CHUNK_FRAMES + 37  # 31 s: four chunks, the last one short
    codes = random_codes(frames)
    want = one_call(codec, codes)
    seen, handle = decoder_calls(codec)
    try:
        with torch.inference_mode():
            got = decode_frames(codec, codes)
    finally:
        handle.remove()
    assert got.shape == want.shape == (1, 1, frames * 640)
    assert len(seen) == 4
    longest = DECODE_LEFT_CONTEXT_FRAMES + DECODE_CHUNK_FRAMES + DECODE_RIGHT_CONTEXT_FRAMES
    assert max(seen) <= longest  # peak memory follows the chunk, not the clip
    max_abs, snr = errors(got, want)
    assert max_abs <= MAX_ABS_ERROR and snr >= MIN_SNR_DB, (max_abs, snr)


def test_many_small_chunks_stay_within_the_tolerance(codec):
    codes = random_codes(400, seed=1)
    want = one_call(codec, codes)
    with torch.inference_mode():
        got = decode_frames(codec, codes, chunk_frames=30, left_frames=25, right_frames=10)
    max_abs, snr = errors(got, want)
    assert max_abs <= MAX_ABS_ERROR and snr >= MIN_SNR_DB, (max_abs, snr)


def test_without_right_context_the_chunk_edges_are_wrong(codec):
    """The convolutions see past a chunk's end: cutting without right context is not the
    one-call decode (what the context frames are for)."""
    codes = random_codes(400, seed=2)
    want = one_call(codec, codes)
    with torch.inference_mode():
        got = decode_frames(codec, codes, chunk_frames=30, left_frames=25, right_frames=0)
    max_abs, _ = errors(got, want)
    assert max_abs > 100 * MAX_ABS_ERROR


def test_a_clip_up_to_one_chunk_and_its_context_is_the_exact_one_call_decode(codec):
    codes = random_codes(DECODE_CHUNK_FRAMES + DECODE_LEFT_CONTEXT_FRAMES, seed=3)
    seen, handle = decoder_calls(codec)
    try:
        with torch.inference_mode():
            got = decode_frames(codec, codes)
    finally:
        handle.remove()
    assert seen == [codes.shape[-1]]
    assert torch.equal(got, one_call(codec, codes))
