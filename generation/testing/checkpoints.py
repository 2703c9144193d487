"""Build MusicGen checkpoints with random weights, for tests and benchmarks.

No weights can be downloaded where this project is tested, so the real loading code is
exercised on checkpoints built here from configs. They are saved with ``save_pretrained``
and load offline through the same ``from_pretrained`` path users take with the hub model.
They are test fixtures, never a product fallback: their audio is noise.

Usage::

    python -m generation.testing.checkpoints tiny DIR
    python -m generation.testing.checkpoints tiny-melody DIR
    python -m generation.testing.checkpoints musicgen-small-random DIR

``tiny-melody`` is a ``MusicgenMelodyForConditionalGeneration`` (facebook/musicgen-melody's
layout: chroma and text as a prefix of the decoder's input, no cross-attention).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    EncodecConfig,
    EncodecFeatureExtractor,
    MusicgenConfig,
    MusicgenDecoderConfig,
    MusicgenForConditionalGeneration,
    MusicgenMelodyConfig,
    MusicgenMelodyDecoderConfig,
    MusicgenMelodyForConditionalGeneration,
    MusicgenProcessor,
    T5Config,
    T5Tokenizer,
)

logger = logging.getLogger(__name__)

SAMPLING_RATE_HZ = 32_000
T5_EXTRA_IDS = 100
T5_BASE_VOCAB = 32_128

_CORPUS_WORDS = (
    "isolated solo stem of a single instrument only no other instruments "
    "electric acoustic guitar bass drums drum kit piano keys keyboard synth synthesizer "
    "strings violin cello brass trumpet trombone horn vocals humming choir voice "
    "percussion shaker congas tambourine pads pad ambient atmospheric "
    "rock pop jazz funk blues metal electronic techno house hip hop lofi ambient cinematic "
    "orchestral folk country reggae soul disco punk indie classical "
    "energetic calm dark bright happy sad mellow aggressive groovy warm "
    "tempo bpm beats per minute in key major minor of the with and a an at "
    "riff chords melody rhythm groove loop fill bassline arpeggio sustained "
    "0 1 2 3 4 5 6 7 8 9 10 60 70 80 90 100 110 120 128 140 160 174 , . - ' ( )"
)


@dataclass(frozen=True)
class CheckpointSpec:
    """Architecture of one buildable checkpoint."""

    name: str
    decoder: dict
    text_encoder: dict
    audio_encoder: dict
    tokenizer_vocab_size: int
    # None: text-only MusicGen. Otherwise a melody checkpoint: ``num_chroma`` and
    # ``chroma_length`` of its config (chroma frames the decoder's prefix holds).
    melody: dict | None = None


_ENCODEC_32K = {
    "sampling_rate": SAMPLING_RATE_HZ,
    "audio_channels": 1,
    "upsampling_ratios": [8, 5, 4, 4],
    "target_bandwidths": [2.2],
    "codebook_size": 2048,
    "num_residual_layers": 1,
    "num_lstm_layers": 2,
    "use_causal_conv": False,
    "normalize": False,
    "pad_mode": "reflect",
    "compress": 2,
    "kernel_size": 7,
    "last_kernel_size": 7,
    "residual_kernel_size": 3,
    "dilation_growth_rate": 2,
    "use_conv_shortcut": False,
    "norm_type": "weight_norm",
    "chunk_length_s": None,
    "overlap": None,
}

_TINY_DECODER = {
    "vocab_size": 2048,
    "num_codebooks": 4,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "ffn_dim": 128,
    "max_position_embeddings": 2048,
}
_TINY_TEXT_ENCODER = {
    "vocab_size": 512,
    "d_model": 32,
    "d_ff": 64,
    "d_kv": 8,
    "num_heads": 4,
    "num_layers": 2,
}

# musicgen-melody's chroma: 12 pitch classes, 235 frames (30 s at 32 kHz, hop 4096).
_MELODY_CHROMA = {"num_chroma": 12, "chroma_length": 235}
# MusicgenMelodyFeatureExtractor's settings, as its ``to_dict`` saves them (it needs
# torchaudio, which this project does not install: see
# ``generation.engines.musicgen.chroma.ChromaExtractor``).
MELODY_FEATURE_EXTRACTOR = {
    "feature_extractor_type": "MusicgenMelodyFeatureExtractor",
    "feature_size": 12,
    "num_chroma": 12,
    "sampling_rate": SAMPLING_RATE_HZ,
    "hop_length": 4096,
    "n_fft": 16384,
    "chunk_length": 30,
    "n_samples": 30 * SAMPLING_RATE_HZ,
    "padding_side": "left",
    "padding_value": 0.0,
    "return_attention_mask": True,
    "stem_indices": [3, 2],
}

SPECS: dict[str, CheckpointSpec] = {
    "tiny": CheckpointSpec(
        name="tiny",
        decoder=_TINY_DECODER,
        text_encoder=_TINY_TEXT_ENCODER,
        audio_encoder={**_ENCODEC_32K, "num_filters": 2, "hidden_size": 16},
        tokenizer_vocab_size=400,
    ),
    "tiny-melody": CheckpointSpec(
        name="tiny-melody",
        decoder=_TINY_DECODER,
        text_encoder=_TINY_TEXT_ENCODER,
        audio_encoder={**_ENCODEC_32K, "num_filters": 2, "hidden_size": 16},
        tokenizer_vocab_size=400,
        melody=_MELODY_CHROMA,
    ),
    "musicgen-small-random": CheckpointSpec(
        name="musicgen-small-random",
        decoder={
            "vocab_size": 2048,
            "num_codebooks": 4,
            "hidden_size": 1024,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "ffn_dim": 4096,
            "max_position_embeddings": 2048,
        },
        text_encoder={
            "vocab_size": T5_BASE_VOCAB,
            "d_model": 768,
            "d_ff": 3072,
            "d_kv": 64,
            "num_heads": 12,
            "num_layers": 12,
            "feed_forward_proj": "relu",
        },
        audio_encoder={**_ENCODEC_32K, "num_filters": 64, "hidden_size": 128},
        tokenizer_vocab_size=2_000,
    ),
}


def _corpus(lines: int = 400) -> Iterable[str]:
    """Deterministic text for training the tokenizer: permutations of the music vocabulary."""
    words = _CORPUS_WORDS.split()
    for i in range(lines):
        step = 1 + i % 7
        yield " ".join(words[(i + j * step) % len(words)] for j in range(24))


def train_t5_tokenizer(vocab_size: int) -> T5Tokenizer:
    """Train a Unigram tokenizer locally and wrap it in T5's layout.

    T5's layout: ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2, the trained pieces, then
    ``<extra_id_N>`` sentinels at the top in reverse order.
    """
    raw = Tokenizer(models.Unigram())
    raw.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        shrinking_factor=0.75,
    )
    raw.train_from_iterator(_corpus(), trainer=trainer)
    trained = json.loads(raw.to_str())["model"]["vocab"]
    pieces = [
        (piece, float(score)) for piece, score in trained if piece not in {"<pad>", "</s>", "<unk>"}
    ]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *pieces]
    vocab += [(f"<extra_id_{i}>", 0.0) for i in range(T5_EXTRA_IDS - 1, -1, -1)]
    return T5Tokenizer(vocab=vocab, extra_ids=T5_EXTRA_IDS)


def build_config(name: str, *, min_text_vocab: int = 0) -> MusicgenConfig | MusicgenMelodyConfig:
    """The config of checkpoint ``name`` (text vocab at least ``min_text_vocab``):
    ``MusicgenMelodyConfig`` for a melody checkpoint, else ``MusicgenConfig``."""
    if name not in SPECS:
        raise ValueError(f"unknown checkpoint {name!r}; choose one of {sorted(SPECS)}")
    spec = SPECS[name]
    text_cfg = dict(spec.text_encoder)
    text_cfg["vocab_size"] = max(text_cfg["vocab_size"], min_text_vocab)
    if spec.melody is not None:
        return MusicgenMelodyConfig(
            text_encoder=T5Config(**text_cfg),
            audio_encoder=EncodecConfig(**spec.audio_encoder),
            decoder=MusicgenMelodyDecoderConfig(**spec.decoder),
            **spec.melody,
        )
    return MusicgenConfig(
        text_encoder=T5Config(**text_cfg),
        audio_encoder=EncodecConfig(**spec.audio_encoder),
        decoder=MusicgenDecoderConfig(**spec.decoder),
    )


def _randomize_codebooks(
    model: MusicgenForConditionalGeneration | MusicgenMelodyForConditionalGeneration,
) -> None:
    """Give EnCodec's codebooks random vectors: transformers initialises them to zeros,
    which would make the decoded audio independent of the generated tokens."""
    with torch.no_grad():
        quantizer: Any = model.audio_encoder.quantizer
        for layer in quantizer.layers:
            layer.codebook.embed.normal_()
            layer.codebook.embed_avg.copy_(layer.codebook.embed)
            layer.codebook.cluster_size.fill_(1.0)


def _amplify_chroma_projection(model: MusicgenMelodyForConditionalGeneration) -> None:
    """Give the chroma projection unit-scale weights: transformers initialises it like every
    linear layer (std 0.02), and against the prefix's sinusoidal positions (unit scale) the
    chroma then barely moved the logits, so tests could hardly tell two melodies apart."""
    with torch.no_grad():
        model.audio_enc_to_dec_proj.weight.normal_()


def build_checkpoint(name: str, out_dir: Path, seed: int = 0) -> Path:
    """Build checkpoint ``name`` with random weights into ``out_dir``; returns ``out_dir``.

    The directory loads offline with ``MusicgenForConditionalGeneration.from_pretrained``
    and ``MusicgenProcessor.from_pretrained``; a melody checkpoint with
    ``MusicgenMelodyForConditionalGeneration.from_pretrained`` and (where torchaudio is
    installed) ``MusicgenMelodyProcessor.from_pretrained``, as facebook/musicgen-melody.
    """
    if name not in SPECS:
        raise ValueError(f"unknown checkpoint {name!r}; choose one of {sorted(SPECS)}")
    spec = SPECS[name]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)

    tokenizer = train_t5_tokenizer(spec.tokenizer_vocab_size)
    config = build_config(name, min_text_vocab=len(tokenizer))
    model: MusicgenForConditionalGeneration | MusicgenMelodyForConditionalGeneration
    if isinstance(config, MusicgenMelodyConfig):
        melody_model = MusicgenMelodyForConditionalGeneration(config).eval()
        _amplify_chroma_projection(melody_model)
        model = melody_model
    else:
        model = MusicgenForConditionalGeneration(config).eval()
    _randomize_codebooks(model)
    gen = model.generation_config
    gen.decoder_start_token_id = spec.decoder["vocab_size"]
    gen.pad_token_id = spec.decoder["vocab_size"]
    gen.bos_token_id = spec.decoder["vocab_size"]
    gen.do_sample = True
    gen.top_k = 250
    gen.guidance_scale = 3.0
    gen.max_length = 1500
    model.save_pretrained(out_dir)

    if spec.melody is not None:
        _save_melody_processor(tokenizer, out_dir)
    else:
        feature_extractor = EncodecFeatureExtractor(
            feature_size=1, sampling_rate=SAMPLING_RATE_HZ, padding_side="left"
        )
        MusicgenProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(
            out_dir
        )
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    logger.info("built %s checkpoint (%.1fM parameters) in %s", name, params_m, out_dir)
    return out_dir


def _save_melody_processor(tokenizer: T5Tokenizer, out_dir: Path) -> None:
    """Save what ``MusicgenMelodyProcessor.save_pretrained`` would: the tokenizer and a
    ``processor_config.json`` holding the feature extractor's settings. Written by hand
    because ``MusicgenMelodyFeatureExtractor`` cannot be built without torchaudio."""
    tokenizer.save_pretrained(out_dir)
    processor = {
        "feature_extractor": MELODY_FEATURE_EXTRACTOR,
        "processor_class": "MusicgenMelodyProcessor",
    }
    (out_dir / "processor_config.json").write_text(json.dumps(processor, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m generation.testing.checkpoints",
        description="Build a random-weight MusicGen checkpoint for tests or benchmarks.",
    )
    parser.add_argument("name", choices=sorted(SPECS))
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    build_checkpoint(args.name, args.out_dir, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
