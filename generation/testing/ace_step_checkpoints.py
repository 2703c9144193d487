"""Build ACE-Step 1.5 checkpoints with random weights, for tests and benchmarks.

Nothing can be downloaded where this project is tested, so the real ACE-Step loading path
(``AceStepPipeline.from_pretrained`` on a directory) is exercised on pipelines built here.
Both are written in diffusers' ``from_pretrained`` layout (``model_index.json`` plus one
folder per component) and load offline exactly as a converted hub checkpoint does. Their
audio is noise: they are fixtures, never a product fallback.

``ace-step-tiny``
    Every component a few thousand parameters wide (DiT hidden 32, two layers; an Oobleck
    VAE with 4 channels but the real 48 kHz / 1920-sample hop, so latents run at 25 Hz and
    ``src_audio`` tasks line up with the DiT). Builds in seconds.

``ace-step-tiny-turbo``
    The same with a turbo (guidance-distilled) DiT: the guide's checkpoint in tests.

``ace-step-random``
    The exact architecture of ACE-Step 1.5's 2 B variants (``acestep-v15-base``, and the
    turbo/sft variants, which share it): DiT hidden 2048, 24 layers, 16 query / 8 key-value
    heads of 128, MLP 6144, patch 2, in_channels 192; condition encoder with 8 lyric and 4
    timbre layers; Qwen3-Embedding-0.6B as text encoder (hidden 1024, 28 layers, vocabulary
    151669); the Oobleck VAE (128 channels, multiples 1-2-4-8-16, hops 2-4-4-6-10, 64 latent
    channels, 48 kHz stereo). Written in bf16, one component at a time, so the build peaks
    near the largest component (~3 GB) rather than the whole pipeline. For speed and memory
    measurements only.

The tokenizer is a byte-level BPE trained here with the ``tokenizers`` library and saved in
Qwen3's layout (Qwen's pre-tokenizer split pattern, byte-level alphabet, NFC normaliser,
``<|endoftext|>`` as padding, ``<|im_start|>``/``<|im_end|>`` added as special tokens), since
Qwen's own tokenizer cannot be downloaded here. Its vocabulary is smaller than Qwen's; every
id it produces is inside the text encoder's embedding table.

Usage::

    python -m generation.checkpoints ace-step-tiny DIR
    python -m generation.checkpoints ace-step-random DIR
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderOobleck, FlowMatchEulerDiscreteScheduler
from diffusers import __version__ as diffusers_version
from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
from diffusers.pipelines.ace_step import AceStepConditionEncoder
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import Qwen2Tokenizer, Qwen3Config, Qwen3Model

logger = logging.getLogger(__name__)

SAMPLING_RATE_HZ = 48_000

# Qwen2/Qwen3's pre-tokenizer split (contractions, letters, single digits, punctuation runs,
# newlines, spaces), applied before the byte-level mapping.
_QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# Text the tokenizer is trained on: the words of the prompts this service builds and of
# ACE-Step's prompt template (instruction, caption, metas, lyrics header).
_CORPUS_WORDS = (
    "# Instruction Caption Metas Languages Lyric Fill the audio semantic mask based on given "
    "conditions Generate track context Extract from Complete input with Repaint area "
    "bpm timesignature keyscale duration seconds N/A en instrumental "
    "GUITAR BASS DRUMS KEYBOARD SYNTH STRINGS BRASS VOCALS PERCUSSION WOODWINDS FX "
    "isolated solo stem of a single instrument only no other instruments electric acoustic "
    "guitar bass drums drum kit piano keys synth strings brass vocals percussion pads "
    "rock pop jazz funk blues metal electronic techno house hip hop lofi ambient cinematic "
    "C D E F G A B major minor sharp flat 4 3 6 120 90 100 128 140 10 30 60 "
    "energetic calm dark bright happy sad mellow groovy warm riff chords melody rhythm loop"
)


def _corpus(lines: int = 600) -> Iterable[str]:
    """Deterministic training text: permutations of the vocabulary, with newlines."""
    words = _CORPUS_WORDS.split()
    for i in range(lines):
        step = 1 + i % 11
        yield "\n".join(
            " ".join(words[(i + j * step + k) % len(words)] for k in range(6)) for j in range(4)
        )


def train_qwen3_tokenizer(vocab_size: int) -> Qwen2Tokenizer:
    """Train a byte-level BPE on the corpus and wrap it in Qwen3's tokenizer layout.

    ``vocab_size`` counts the trained pieces (the 256 byte symbols included); the three
    special tokens are added after them.
    """
    raw = Tokenizer(models.BPE())
    raw.normalizer = normalizers.NFC()
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer = Qwen2Tokenizer(
        tokenizer_object=raw,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(_SPECIAL_TOKENS),
        model_max_length=131_072,
        padding_side="right",
    )
    return tokenizer


@dataclass(frozen=True)
class AceStepSpec:
    """Component configs of one checkpoint (constructor keyword arguments)."""

    text_encoder: dict[str, Any]
    condition_encoder: dict[str, Any]
    transformer: dict[str, Any]
    vae: dict[str, Any]
    tokenizer_vocab_size: int
    dtype: torch.dtype
    text_vocab_size: int | None = None  # None: the tokenizer's length
    extra: dict[str, Any] = field(default_factory=dict)


_TINY_VAE = {
    "encoder_hidden_size": 16,  # twice the latent channels: mean and scale
    "downsampling_ratios": [2, 4, 4, 6, 10],
    "channel_multiples": [1, 1, 1, 1, 1],
    "decoder_channels": 4,
    "decoder_input_channels": 8,
    "audio_channels": 2,
    "sampling_rate": SAMPLING_RATE_HZ,
}

SPECS: dict[str, AceStepSpec] = {
    "ace-step-tiny": AceStepSpec(
        text_encoder={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 8,
            "max_position_embeddings": 4096,
            "rope_theta": 1_000_000.0,
            "tie_word_embeddings": True,
        },
        condition_encoder={
            "hidden_size": 32,
            "intermediate_size": 64,
            "text_hidden_dim": 32,
            "timbre_hidden_dim": 8,
            "num_lyric_encoder_hidden_layers": 2,
            "num_timbre_encoder_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 8,
            "sliding_window": 16,
        },
        transformer={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 8,
            "in_channels": 24,
            "audio_acoustic_hidden_dim": 8,
            "patch_size": 2,
            "sliding_window": 16,
            "is_turbo": False,
            "model_version": "base",
        },
        vae=_TINY_VAE,
        tokenizer_vocab_size=600,
        dtype=torch.float32,
    ),
    # ACE-Step 1.5 (2 B) as released: the constructors' defaults are the official turbo/base
    # DiT and condition-encoder configs; the text encoder is Qwen3-Embedding-0.6B's config.
    "ace-step-random": AceStepSpec(
        text_encoder={
            "hidden_size": 1024,
            "intermediate_size": 3072,
            "num_hidden_layers": 28,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "max_position_embeddings": 32_768,
            "rope_theta": 1_000_000.0,
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": True,
        },
        condition_encoder={},
        transformer={"is_turbo": False, "model_version": "base"},
        vae={
            "encoder_hidden_size": 128,
            "downsampling_ratios": [2, 4, 4, 6, 10],
            "channel_multiples": [1, 2, 4, 8, 16],
            "decoder_channels": 128,
            "decoder_input_channels": 64,
            "audio_channels": 2,
            "sampling_rate": SAMPLING_RATE_HZ,
        },
        tokenizer_vocab_size=2_000,
        dtype=torch.bfloat16,
        text_vocab_size=151_669,
    ),
}


# ace-step-tiny as a guidance-distilled turbo variant (text2music only, no CFG): the guide's
# model beside a base one, sharing its VAE, text encoder and tokenizer.
SPECS["ace-step-tiny-turbo"] = dataclasses.replace(
    SPECS["ace-step-tiny"],
    transformer={**SPECS["ace-step-tiny"].transformer, "is_turbo": True, "model_version": "turbo"},
)


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Allocate new parameters directly in ``dtype`` (no fp32 copy of a big module)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _save_component(
    build: Callable[[], Any], out_dir: Path, name: str, dtype: torch.dtype
) -> tuple[str, str, int]:
    """Build one component in ``dtype``, save it under ``out_dir/name`` and free it.

    Returns its ``model_index.json`` entry (library, class) and its parameter count.
    """
    with _default_dtype(dtype), torch.no_grad():
        module = build().eval()
    module.save_pretrained(out_dir / name, max_shard_size="1GB")
    entry = (
        "transformers" if type(module).__module__.startswith("transformers") else "diffusers",
        type(module).__name__,
        sum(p.numel() for p in module.parameters()),
    )
    del module
    gc.collect()
    return entry


def build_checkpoint(name: str, out_dir: Path, seed: int = 0) -> Path:
    """Build checkpoint ``name`` with random weights into ``out_dir``; returns ``out_dir``.

    The directory loads offline with ``AceStepPipeline.from_pretrained(out_dir)``.
    """
    if name not in SPECS:
        raise ValueError(f"unknown checkpoint {name!r}; choose one of {sorted(SPECS)}")
    spec = SPECS[name]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)

    tokenizer = train_qwen3_tokenizer(spec.tokenizer_vocab_size)
    tokenizer.save_pretrained(out_dir / "tokenizer")
    vocab = spec.text_vocab_size or len(tokenizer)
    if vocab < len(tokenizer):
        raise ValueError(
            f"text vocabulary {vocab} is smaller than the tokenizer ({len(tokenizer)})"
        )

    def text_encoder() -> Any:
        return Qwen3Model(Qwen3Config(vocab_size=vocab, **spec.text_encoder))

    def condition_encoder() -> Any:
        module: Any = AceStepConditionEncoder(**spec.condition_encoder)
        # The released checkpoints carry the VAE-encoded silence here; zeros would make the
        # timbre path degenerate, so give it noise of the latents' scale.
        module.silence_latent.normal_()
        return module

    def transformer() -> Any:
        return AceStepTransformer1DModel(**spec.transformer)

    def vae() -> Any:
        return AutoencoderOobleck(**spec.vae)

    index: dict[str, Any] = {
        "_class_name": "AceStepPipeline",
        "_diffusers_version": diffusers_version,
    }
    total = 0
    for component, build in (
        ("text_encoder", text_encoder),
        ("condition_encoder", condition_encoder),
        ("transformer", transformer),
        ("vae", vae),
    ):
        library, class_name, count = _save_component(build, out_dir, component, spec.dtype)
        index[component] = [library, class_name]
        total += count
        logger.info("%s: %s, %.1fM parameters", component, class_name, count / 1e6)

    scheduler: Any = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0)
    scheduler.save_pretrained(out_dir / "scheduler")
    index["scheduler"] = ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    index["tokenizer"] = ["transformers", type(tokenizer).__name__]
    index["audio_tokenizer"] = [None, None]
    index["audio_token_detokenizer"] = [None, None]
    (out_dir / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    logger.info("built %s checkpoint (%.1fM parameters) in %s", name, total / 1e6, out_dir)
    return out_dir
