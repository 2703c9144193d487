"""The fp16-cache attention kernel: built on this machine, right, row-independent, and a
decoder that falls back to PyTorch's attention when it is off."""

import pytest
import torch

from generation.engines.musicgen import attention_kernel
from generation.engines.musicgen.fast_decoder import FastDecoder, WeightFormat


def reference(q, k_t, v, *, mask, length, scale):
    """The same maths in PyTorch, on the fp16-rounded cache, in float64."""
    keys = k_t[..., :length].double()
    scores = torch.einsum("bhd,bhdt->bht", q.double(), keys) * scale
    if mask is not None:
        scores = scores + mask[:, None, :length].double()
    return torch.einsum("bht,bhtd->bhd", scores.softmax(-1), v[:, :, :length].double()).float()


@pytest.fixture(scope="module")
def kernel():
    if not attention_kernel.cpu_supports_kernel():
        assert attention_kernel.load() is None  # no AVX-512: the fallback, by design
        pytest.fail("this machine lacks AVX-512/F16C: the kernel cannot be tested here")
    built = attention_kernel.load()
    assert built is not None, "the kernel did not build (see the log for the compiler error)"
    return built


def cache(batch, heads, dim, slots, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, dim, generator=g)
    k_t = torch.randn(batch, heads, dim, slots, generator=g).half()
    v = torch.randn(batch, heads, slots, dim, generator=g).half()
    return q, k_t, v


@pytest.mark.parametrize("dim", [64, 16, 40])
@pytest.mark.parametrize("length", [1, 15, 16, 17, 250, 300])
def test_kernel_matches_the_maths(kernel, dim, length):
    q, k_t, v = cache(3, 4, dim, 300)
    out = attention_kernel.attend(kernel, q, k_t, v, mask=None, length=length, scale=dim**-0.5)
    expected = reference(q, k_t, v, mask=None, length=length, scale=dim**-0.5)
    assert out.shape == (3, 4, dim)
    assert torch.allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_kernel_applies_the_key_mask(kernel):
    q, k_t, v = cache(2, 4, 64, 64)
    mask = torch.zeros(2, 64)
    mask[1, :5] = torch.finfo(torch.float16).min  # row 1's first five slots are padding
    out = attention_kernel.attend(kernel, q, k_t, v, mask=mask, length=40, scale=0.125)
    assert torch.allclose(
        out, reference(q, k_t, v, mask=mask, length=40, scale=0.125), rtol=1e-5, atol=1e-6
    )
    unmasked = attention_kernel.attend(kernel, q, k_t, v, mask=None, length=40, scale=0.125)
    assert torch.equal(out[0], unmasked[0]) and not torch.allclose(out[1], unmasked[1])


def test_a_rows_result_does_not_depend_on_its_batch(kernel):
    q, k_t, v = cache(6, 16, 64, 128)
    together = attention_kernel.attend(kernel, q, k_t, v, mask=None, length=100, scale=0.125)
    for row in range(6):
        alone = attention_kernel.attend(
            kernel,
            q[row : row + 1].contiguous(),
            k_t[row : row + 1].contiguous(),
            v[row : row + 1].contiguous(),
            mask=None,
            length=100,
            scale=0.125,
        )
        assert torch.equal(alone[0], together[row])


def test_the_kernel_refuses_what_it_cannot_read(kernel):
    q, k_t, v = cache(1, 2, 64, 32)
    with pytest.raises(RuntimeError, match="fp16"):
        attention_kernel.attend(kernel, q, k_t.float(), v, mask=None, length=8, scale=1.0)
    with pytest.raises(RuntimeError, match="length"):
        attention_kernel.attend(kernel, q, k_t, v, mask=None, length=33, scale=1.0)


def test_the_int8_decoder_uses_an_fp16_cache_and_stays_close_to_the_fp32_one(
    kernel, tiny_model_fp32
):
    model = tiny_model_fp32.model
    with_kernel = FastDecoder(model, WeightFormat.INT8)
    without = FastDecoder(model, WeightFormat.INT8, attention_kernel=False)
    assert (with_kernel.kv_dtype, without.kv_dtype) == (torch.float16, torch.float32)
    assert without._kernel is None
    text = tiny_model_fp32.processor(text=["solo bass", "pads"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        encoded = model.text_encoder(**text).last_hidden_state
        states = tiny_model_fp32.decoder.project_text(encoded, text["attention_mask"])
        tokens = torch.randint(0, 2048, (2, 4, 30), generator=torch.Generator().manual_seed(1))
        for decoder in (with_kernel, without):
            decoder.start(states, text["attention_mask"], 30)
        for pos in range(30):
            a = with_kernel.step(tokens[:, :, pos : pos + 1], pos)
            b = without.step(tokens[:, :, pos : pos + 1], pos)
            assert ((a - b).norm() / b.norm()).item() < 2e-3, pos
