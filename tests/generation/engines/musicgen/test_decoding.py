"""The project's decoding loop against transformers' own ``generate`` and decoder."""

import pytest
import torch

from generation.engines.musicgen.decoding import DecodeRow, SamplingParams, decode_codes
from generation.engines.musicgen.fast_decoder import FastDecoder, WeightFormat
from generation.testing.reference import reference_codes

# Default sampling, nucleus with temperature, and top-k without guidance.
SAMPLINGS = [
    SamplingParams(),
    SamplingParams(top_k=0, top_p=0.8, temperature=0.8),
    SamplingParams(top_k=20, guidance_scale=1.0),
]


def project_codes(loaded, prompt, frames, seed, sampling, *, prompt_codes=None):
    text = loaded.processor(text=[prompt], padding=True, return_tensors="pt")
    with torch.inference_mode():
        encoded = loaded.model.text_encoder(**text).last_hidden_state
        states = loaded.decoder.project_text(encoded, text["attention_mask"])
        return decode_codes(
            loaded.decoder,
            states,
            text["attention_mask"],
            [DecodeRow(frames, sampling)],
            [torch.Generator().manual_seed(seed)],
            prompt_codes=prompt_codes,
        )


@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_one_row_matches_generate_token_for_token(tiny_model_fp32, sampling):
    ours = project_codes(tiny_model_fp32, "solo guitar, rock", 40, 5, sampling)
    theirs = reference_codes(tiny_model_fp32, "solo guitar, rock", 40, 5, sampling)
    assert ours.shape == theirs.shape == (1, 4, 40)
    assert torch.equal(ours, theirs)


def test_continuation_from_prompt_codes_matches_generate(tiny_model_fp32):
    prompt = torch.randint(0, 2048, (1, 4, 12))
    ours = project_codes(tiny_model_fp32, "pads", 20, 9, SamplingParams(), prompt_codes=prompt)
    theirs = reference_codes(tiny_model_fp32, "pads", 20, 9, SamplingParams(), prompt_codes=prompt)
    assert torch.equal(ours, theirs)
    assert torch.equal(ours[..., :12], prompt)


@torch.inference_mode()
def test_teacher_forced_logits_match_the_model(tiny_model_fp32):
    loaded = tiny_model_fp32
    text = loaded.processor(text=["solo bass"], padding=True, return_tensors="pt")
    tokens = torch.randint(0, 2048, (1, 4, 30))
    tokens[:, :, 0] = 2048
    theirs = loaded.model(**text, decoder_input_ids=tokens.reshape(4, -1)).logits  # [K, S, V]
    states = loaded.decoder.project_text(
        loaded.model.text_encoder(**text).last_hidden_state, text["attention_mask"]
    )
    loaded.decoder.start(states, text["attention_mask"], 30)
    prefill = loaded.decoder.step(tokens[:, :, :10], 0)  # several positions at once
    assert torch.allclose(prefill[0], theirs[:, 9], atol=1e-5)
    for pos in range(10, 30):
        ours = loaded.decoder.step(tokens[:, :, pos : pos + 1], pos)
        assert torch.allclose(ours[0], theirs[:, pos], atol=1e-5)


@pytest.mark.parametrize("fmt", [WeightFormat.BFLOAT16, WeightFormat.INT8])
@torch.inference_mode()
def test_reduced_precision_logits_stay_close(tiny_model_fp32, fmt):
    """Relative logit error against fp32 on the same teacher-forced tokens, at most 3e-2."""
    loaded = tiny_model_fp32
    packed = FastDecoder(loaded.model, fmt)
    text = loaded.processor(text=["solo drums"], padding=True, return_tensors="pt")
    states = loaded.decoder.project_text(
        loaded.model.text_encoder(**text).last_hidden_state, text["attention_mask"]
    )
    tokens = torch.randint(0, 2048, (1, 4, 25))
    errors = []
    for decoder in (loaded.decoder, packed):
        decoder.start(states, text["attention_mask"], 25)
    for pos in range(25):
        exact = loaded.decoder.step(tokens[:, :, pos : pos + 1], pos)
        approx = packed.step(tokens[:, :, pos : pos + 1], pos)
        errors.append(((approx - exact).norm() / exact.norm()).item())
    assert max(errors) <= 3e-2
    assert packed.weight_bytes < loaded.decoder.weight_bytes / (3.9 if fmt == "int8" else 1.9)
