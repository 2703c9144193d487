import torch
from transformers import MusicgenForConditionalGeneration, MusicgenProcessor

from generation.testing.checkpoints import build_config, train_t5_tokenizer


def test_tiny_checkpoint_loads_offline_with_from_pretrained(tiny_checkpoint, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = MusicgenForConditionalGeneration.from_pretrained(tiny_checkpoint)
    processor = MusicgenProcessor.from_pretrained(tiny_checkpoint)
    assert model.config.audio_encoder.sampling_rate == 32000
    assert processor.feature_extractor.sampling_rate == 32000
    assert model.generation_config.decoder_start_token_id == 2048
    size_mb = sum(p.stat().st_size for p in tiny_checkpoint.iterdir()) / 1e6
    assert size_mb < 20


def test_codebooks_are_random_so_tokens_shape_the_audio(tiny_model):
    codes = torch.randint(0, 2048, (1, 2, 4, 25))
    with torch.inference_mode():
        audio = tiny_model.model.audio_encoder.decode(codes, audio_scales=[None, None]).audio_values
    assert not torch.allclose(audio[0], audio[1])


def test_tokenizer_has_t5_layout():
    tokenizer = train_t5_tokenizer(300)
    assert tokenizer.convert_ids_to_tokens([0, 1, 2]) == ["<pad>", "</s>", "<unk>"]
    assert tokenizer.convert_tokens_to_ids("<extra_id_0>") == len(tokenizer) - 1
    ids = tokenizer("solo bass guitar, rock, 120 bpm")["input_ids"]
    assert ids[-1] == 1 and 2 not in ids  # ends with </s>, no unknown pieces


def test_benchmark_checkpoint_has_the_musicgen_small_architecture():
    config = build_config("musicgen-small-random")
    d, t, a = config.decoder, config.text_encoder, config.audio_encoder
    assert (d.vocab_size, d.num_codebooks, d.hidden_size, d.num_hidden_layers) == (
        2048,
        4,
        1024,
        24,
    )
    assert (d.num_attention_heads, d.ffn_dim, d.max_position_embeddings) == (16, 4096, 2048)
    assert (d.pad_token_id, d.bos_token_id, d.tie_word_embeddings) == (2048, 2048, False)
    assert (t.d_model, t.d_ff, t.d_kv, t.num_heads, t.num_layers, t.vocab_size) == (
        768,
        3072,
        64,
        12,
        12,
        32128,
    )
    assert t.feed_forward_proj == "relu"
    assert (a.sampling_rate, list(a.upsampling_ratios), list(a.target_bandwidths)) == (
        32000,
        [8, 5, 4, 4],
        [2.2],
    )
    assert (a.num_filters, a.hidden_size, a.codebook_size, a.num_lstm_layers) == (64, 128, 2048, 2)
    with torch.device("meta"):
        model = MusicgenForConditionalGeneration(config)
    decoder_m = sum(p.numel() for p in model.decoder.parameters()) / 1e6
    text_m = sum(p.numel() for p in model.text_encoder.parameters()) / 1e6
    audio_m = sum(p.numel() for p in model.audio_encoder.parameters()) / 1e6
    assert 400 < decoder_m < 440 and 100 < text_m < 120 and 50 < audio_m < 65
