import json

import pytest
import torch
from diffusers import AceStepPipeline, AutoencoderOobleck
from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
from diffusers.pipelines.ace_step import AceStepConditionEncoder
from transformers import Qwen3Config, Qwen3Model

from generation.testing.ace_step_checkpoints import SPECS, train_qwen3_tokenizer


def test_tiny_checkpoint_loads_offline_with_from_pretrained(ace_tiny_checkpoint, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = AceStepPipeline.from_pretrained(ace_tiny_checkpoint)
    assert pipe.sample_rate == 48_000
    assert pipe.latents_per_second == 25.0
    assert pipe.vae.config.audio_channels == 2
    assert not pipe.is_turbo  # a base variant: lego and extract need one
    # The latent sizes line up: VAE latents = DiT acoustic channels = timbre input, and the
    # DiT's input is noise + source latents + chunk mask.
    acoustic = pipe.transformer.config.audio_acoustic_hidden_dim
    assert pipe.vae.config.decoder_input_channels == acoustic
    assert pipe.vae.config.encoder_hidden_size == 2 * acoustic
    assert pipe.condition_encoder.config.timbre_hidden_dim == acoustic
    assert pipe.transformer.config.in_channels == 3 * acoustic
    # Random silence latent, as the released checkpoints carry encoded silence (not zeros).
    assert pipe.condition_encoder.silence_latent.std() > 0.5
    size_mb = sum(p.stat().st_size for p in ace_tiny_checkpoint.rglob("*") if p.is_file()) / 1e6
    assert size_mb < 5
    index = json.loads((ace_tiny_checkpoint / "model_index.json").read_text())
    assert index["tokenizer"] == ["transformers", "Qwen2Tokenizer"]


def test_tokenizer_is_byte_level_bpe_in_qwen3_layout():
    tokenizer = train_qwen3_tokenizer(400)
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.padding_side == "right"
    # ACE-Step's template ends text with a literal <|endoftext|>: one special token.
    ids = tokenizer("# Metas\n- bpm: 120<|endoftext|>\n").input_ids
    assert tokenizer.convert_tokens_to_ids("<|endoftext|>") in ids
    # Byte level: any text round-trips, nothing is unknown.
    text = "Bässe & Schlagzeug — 120 BPM, Ré mineur 🎸\n\n# Lyric\n"
    assert tokenizer.decode(tokenizer(text).input_ids) == text
    raw = json.loads(tokenizer.backend_tokenizer.to_str())
    assert raw["model"]["type"] == "BPE"
    assert raw["normalizer"]["type"] == "NFC"
    assert [p["type"] for p in raw["pre_tokenizer"]["pretokenizers"]] == ["Split", "ByteLevel"]


def test_random_checkpoint_has_the_released_2b_architecture():
    spec = SPECS["ace-step-random"]
    with torch.device("meta"):
        dit = AceStepTransformer1DModel(**spec.transformer)
        condition = AceStepConditionEncoder(**spec.condition_encoder)
        text = Qwen3Model(Qwen3Config(vocab_size=spec.text_vocab_size, **spec.text_encoder))
        vae = AutoencoderOobleck(**spec.vae)
    c = dit.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads) == (
        2048,
        24,
        16,
        8,
    )
    assert (c.head_dim, c.intermediate_size, c.in_channels, c.patch_size) == (128, 6144, 192, 2)
    assert dit.layer_types == ["sliding_attention", "full_attention"] * 12
    e = condition.config
    assert (e.text_hidden_dim, e.timbre_hidden_dim) == (1024, 64)
    assert (e.num_lyric_encoder_hidden_layers, e.num_timbre_encoder_hidden_layers) == (8, 4)
    assert (text.config.hidden_size, text.config.num_hidden_layers) == (1024, 28)
    assert text.config.vocab_size == 151_669
    assert vae.config.downsampling_ratios == [2, 4, 4, 6, 10]  # 1920 samples: 25 Hz at 48 kHz
    assert (vae.config.encoder_hidden_size, vae.config.decoder_channels) == (128, 128)

    def billions(module: torch.nn.Module) -> float:
        return round(sum(p.numel() for p in module.parameters()) / 1e9, 2)

    # The released VAE file is 337 MB of 16-bit weights: 0.17 B parameters.
    assert [billions(m) for m in (dit, condition, text, vae)] == [1.58, 0.61, 0.6, 0.17]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_specs_keep_the_latent_geometry(name):
    spec = SPECS[name]
    with torch.device("meta"):
        dit = AceStepTransformer1DModel(**spec.transformer)
        condition = AceStepConditionEncoder(**spec.condition_encoder)
    acoustic = dit.config.audio_acoustic_hidden_dim
    assert spec.vae["decoder_input_channels"] == acoustic
    assert spec.vae["encoder_hidden_size"] == 2 * acoustic
    assert condition.config.timbre_hidden_dim == acoustic
    assert condition.config.text_hidden_dim == spec.text_encoder["hidden_size"]
