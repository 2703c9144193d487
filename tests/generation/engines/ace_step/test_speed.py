"""The CPU speed-ups of ``generation.engines.ace_step.speed`` against the unmodified model."""

import numpy as np
import torch
from diffusers import AutoencoderOobleck
from diffusers.models.autoencoders.autoencoder_oobleck import Snake1d

from generation.engines.ace_step import Clip, Musical, Sampling, Task, generate_clips, load_ace_step
from generation.engines.ace_step.speed import InPlaceSnake1d, prepare_vae

MUSICAL = Musical(duration_s=2.0, bpm=120, keyscale="A minor", timesignature="4")
# Compiled bf16 blocks against eager bf16 blocks: the same operations in another rounding
# order. The bound is the bf16 path's own tolerance against fp32.
COMPILED_REL_L2 = 1e-2


def _vae(checkpoint) -> AutoencoderOobleck:
    return AutoencoderOobleck.from_pretrained(checkpoint / "vae", torch_dtype=torch.float32).eval()


def test_prepared_vae_is_bit_identical(ace_tiny_checkpoint):
    original, prepared = _vae(ace_tiny_checkpoint), _vae(ace_tiny_checkpoint)
    prepare_vae(prepared)
    snakes = [m for m in prepared.modules() if isinstance(m, Snake1d)]
    assert snakes
    assert all(isinstance(m, InPlaceSnake1d) for m in snakes)
    assert not any(hasattr(m, "weight_g") for m in prepared.modules())
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, original.config.decoder_input_channels, 40, generator=generator)
    audio = torch.randn(1, 2, 9600, generator=generator)
    with torch.no_grad():
        assert torch.equal(original.decode(latents).sample, prepared.decode(latents).sample)
        assert torch.equal(
            original.encode(audio).latent_dist.mean, prepared.encode(audio).latent_dist.mean
        )


def test_compiled_dit_matches_eager(ace_tiny_checkpoint, ace_tiny_bf16):
    compiled = load_ace_step(str(ace_tiny_checkpoint), None, compile_dit=True)
    assert all(
        block._compiled_call_impl is not None for block in compiled.pipeline.transformer.layers
    )
    source = np.random.default_rng(0).uniform(-0.3, 0.3, (2, 96_000)).astype(np.float32)
    # Captions of different lengths: the padded cross-attention mask path.
    clips = [
        Clip(Task.LEGO, "funk band", seed=1, track="bass"),
        Clip(
            Task.LEGO,
            "a much longer caption about a funk band in a small room",
            seed=2,
            track="drums",
        ),
    ]
    sampling = Sampling(steps=3, guidance_scale=7.0)
    fast = generate_clips(compiled.pipeline, clips, MUSICAL, source=source, sampling=sampling)
    eager = generate_clips(ace_tiny_bf16.pipeline, clips, MUSICAL, source=source, sampling=sampling)
    for ours, reference in zip(fast, eager, strict=True):
        assert np.linalg.norm(ours - reference) / np.linalg.norm(reference) < COMPILED_REL_L2
    # Another batch size and length reuse the compiled blocks (no error, same shapes out).
    [one] = generate_clips(
        compiled.pipeline, clips[:1], MUSICAL, source=source[:, :48_000], sampling=sampling
    )
    assert one.shape == (2, 48_000)
