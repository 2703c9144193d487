"""MusicGen-melody: the tiny melody checkpoint, chroma, the prefix decoder against
transformers, and melody clips through ``generate_clips`` and the batcher."""

import json
import shutil
import threading

import numpy as np
import pytest
import torch
from transformers import (
    GenerationConfig,
    MusicgenMelodyForConditionalGeneration,
)

from generation.engines.musicgen.batcher import BatchPolicy, ClipBatcher
from generation.engines.musicgen.decoding import (
    DecodeRow,
    SamplingParams,
    decode_codes,
    melody_prefix,
)
from generation.engines.musicgen.generate import (
    ClipSpec,
    MelodyCondition,
    generate_audio,
    generate_clips,
    plan_length,
    prefix_positions,
    window_melody,
)
from generation.engines.musicgen.loader import ChromaExtractor, load_model
from generation.errors import ModelLoadError
from generation.settings import GenerationSettings
from generation.testing.checkpoints import main as checkpoints_main
from generation.testing.reference import reference_codes
from tests.generation.engines.musicgen.test_decoding import SAMPLINGS

SR = 32000
C, D, E, F, G, A = 261.63, 293.66, 329.63, 349.23, 392.0, 440.0


def triads(roots: list[float], seconds_each: float = 0.4, rate: int = SR, channels: int = 1):
    """float32 ``[channels, samples]``: a major triad on each root in turn."""
    t = np.arange(round(seconds_each * rate)) / rate
    chords = [
        sum(np.sin(2 * np.pi * root * ratio * t) for ratio in (1.0, 1.26, 1.5)) / 3
        for root in roots
    ]
    mono = np.concatenate(chords).astype(np.float32)
    return np.stack([mono * (1.0 - 0.3 * c) for c in range(channels)])


def one_hot_chroma(frames: int, seed: int) -> torch.Tensor:
    classes = torch.randint(0, 12, (frames,), generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.one_hot(classes, 12).float()


MELODY = MelodyCondition(triads([A, C, D, E]), SR)  # 1.6 s, mono, at the model rate
OTHER_MELODY = MelodyCondition(triads([F, G, E, D, C], rate=44100, channels=2), 44100)  # stereo


# -- checkpoint and loading ------------------------------------------------------------


def test_tiny_melody_checkpoint_builds_and_loads(
    tiny_melody_checkpoint, tiny_melody_model, tiny_model, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = MusicgenMelodyForConditionalGeneration.from_pretrained(tiny_melody_checkpoint)
    assert model.config.model_type == "musicgen_melody"
    assert (model.config.num_chroma, model.config.chroma_length) == (12, 235)
    assert model.generation_config.decoder_start_token_id == 2048
    assert tiny_melody_model.supports_melody is True
    assert tiny_model.supports_melody is False
    assert isinstance(tiny_melody_model.model, MusicgenMelodyForConditionalGeneration)
    assert tiny_melody_model.decoder.prefix_conditioning
    assert not tiny_model.decoder.prefix_conditioning
    chroma = tiny_melody_model.chroma
    assert chroma is not None
    assert (chroma.sampling_rate, chroma.n_fft, chroma.hop_length) == (32000, 16384, 4096)
    assert tiny_melody_model.sample_rate == 32000 and tiny_melody_model.frame_rate == 50
    size_mb = sum(p.stat().st_size for p in tiny_melody_checkpoint.iterdir()) / 1e6
    assert size_mb < 20


def test_melody_checkpoint_without_its_feature_extractor_fails_loudly(
    tiny_melody_checkpoint, tmp_path
):
    broken = tmp_path / "no-extractor"
    shutil.copytree(tiny_melody_checkpoint, broken)
    (broken / "processor_config.json").unlink()
    with pytest.raises(ModelLoadError, match="feature extractor") as caught:
        load_model(GenerationSettings(musicgen_model=str(broken)))
    assert str(broken) in str(caught.value)


def test_checkpoint_cli_builds_tiny_melody(tmp_path):
    out = tmp_path / "melody"
    assert checkpoints_main(["tiny-melody", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["model_type"] == "musicgen_melody"
    processor = json.loads((out / "processor_config.json").read_text())
    assert processor["processor_class"] == "MusicgenMelodyProcessor"
    extractor = processor["feature_extractor"]
    assert extractor["feature_extractor_type"] == "MusicgenMelodyFeatureExtractor"
    assert (out / "tokenizer.json").is_file()


def test_chroma_marks_the_strongest_pitch_class_per_frame():
    """One-hot frames at the extractor's hop; A (class 9, counting from C) for an A tone;
    class 0 for silence; cut at ``chunk_length`` seconds. (Checked once bit for bit against
    transformers' torchaudio-based extractor, which this project cannot install.)"""
    extractor = ChromaExtractor()
    t = np.arange(3 * SR) / SR
    chroma = extractor(np.sin(2 * np.pi * A * t).astype(np.float32))
    assert chroma.shape == (3 * SR // 4096 + 1, 12)
    assert torch.equal(chroma.sum(-1), torch.ones(len(chroma)))
    assert (chroma.argmax(-1) == 9).all()
    assert (extractor(np.zeros(SR, np.float32)).argmax(-1) == 0).all()
    assert extractor(np.zeros(40 * SR, np.float32)).shape == (235, 12)  # 30 s at most


# -- the decoder against transformers --------------------------------------------------


def our_prefix(loaded, prompts, chroma):
    text = loaded.processor(text=prompts, padding=True, return_tensors="pt")
    encoded = loaded.model.text_encoder(**text).last_hidden_state
    states = loaded.decoder.project_text(encoded, text["attention_mask"])
    return melody_prefix(loaded.decoder, states, text["attention_mask"], chroma)


@torch.inference_mode()
def test_prefix_and_null_condition_are_transformers_own(tiny_melody_model_fp32):
    """Chroma frames then text, and guidance's null condition: chroma all pitch class 0,
    zero text states, every slot attended (transformers masks nothing in the prefix)."""
    loaded = tiny_melody_model_fp32
    text = loaded.processor(text=["solo bass, rock"], padding=True, return_tensors="pt")
    for chroma in (one_hot_chroma(40, 1), one_hot_chroma(300, 2), None):
        inputs = {"attention_mask": text["attention_mask"]}
        if chroma is not None:
            inputs["input_features"] = chroma[None]
        theirs = loaded.model._prepare_encoder_hidden_states_kwargs_for_generation(
            text["input_ids"], inputs, "input_ids", GenerationConfig(guidance_scale=3.0)
        )["encoder_hidden_states"]
        states, mask, (null_states, null_mask) = our_prefix(loaded, ["solo bass, rock"], [chroma])
        assert torch.equal(torch.cat([states, null_states]), theirs)
        assert mask.all() and null_mask.all()
        assert states.shape[1] == 235 + text["input_ids"].shape[1]


@torch.inference_mode()
def test_prefix_decoder_logits_match_the_model_and_padding_changes_nothing(
    tiny_melody_model_fp32,
):
    """Teacher-forced logits against transformers' forward pass, for two rows whose prefixes
    differ in length (one left-padded): each row matches the model run on it alone."""
    loaded = tiny_melody_model_fp32
    prompts = ["bass", "solo guitar, rock, energetic riff with a warm groove"]
    chroma = [one_hot_chroma(50, 3), None]
    tokens = torch.randint(0, 2048, (2, 4, 30), generator=torch.Generator().manual_seed(4))
    tokens[:, :, 0] = 2048
    states, mask, _ = our_prefix(loaded, prompts, chroma)
    assert not mask[0].all() and mask[1].all()  # the short prompt's prefix is padded
    loaded.decoder.start(states, mask, 30)
    ours = [loaded.decoder.step(tokens[:, :, :10], 0)]  # several positions at once
    ours += [loaded.decoder.step(tokens[:, :, pos : pos + 1], pos) for pos in range(10, 30)]
    loaded.decoder.release()
    for row in range(2):
        text = loaded.processor(text=[prompts[row]], return_tensors="pt")
        features = {} if chroma[row] is None else {"input_features": chroma[row][None]}
        theirs = loaded.model(
            **text, **features, decoder_input_ids=tokens[row].reshape(4, -1)
        ).logits[:, -30:]  # [K, 30, V]: the prefix positions come first
        for step, pos in enumerate([9, *range(10, 30)]):
            assert torch.allclose(ours[step][row], theirs[:, pos], atol=1e-5), (row, pos)


@torch.inference_mode()
def project_codes(loaded, prompt, frames, seed, sampling, *, chroma, prompt_codes=None):
    states, mask, null = our_prefix(loaded, [prompt], [chroma])
    return decode_codes(
        loaded.decoder,
        states,
        mask,
        [DecodeRow(frames, sampling)],
        [torch.Generator().manual_seed(seed)],
        null=null,
        prompt_codes=prompt_codes,
    )


@pytest.mark.parametrize("sampling", SAMPLINGS)
@pytest.mark.parametrize("melody", ["short", "long", "none"])
def test_one_row_matches_generate_token_for_token(tiny_melody_model_fp32, sampling, melody):
    """fp32, one row: the same tokens as transformers' generate with the same seed, with a
    melody shorter than chroma_length (repeated), longer (cut) or none (its default)."""
    chroma = {"short": one_hot_chroma(30, 5), "long": one_hot_chroma(270, 6), "none": None}
    args = (tiny_melody_model_fp32, "solo guitar, rock", 40, 5, sampling)
    ours = project_codes(*args, chroma=chroma[melody])
    theirs = reference_codes(*args, chroma=chroma[melody])
    assert ours.shape == theirs.shape == (1, 4, 40)
    assert torch.equal(ours, theirs)


def test_continuation_with_a_melody_matches_generate(tiny_melody_model_fp32):
    prompt = torch.randint(0, 2048, (1, 4, 12), generator=torch.Generator().manual_seed(7))
    args = (tiny_melody_model_fp32, "pads", 20, 9, SamplingParams())
    extra = {"chroma": one_hot_chroma(30, 8), "prompt_codes": prompt}
    ours = project_codes(*args, **extra)
    assert torch.equal(ours, reference_codes(*args, **extra))
    assert torch.equal(ours[..., :12], prompt)


# -- melody clips through the product path ---------------------------------------------


def test_melody_shapes_the_codes_and_the_same_melody_repeats_them(tiny_melody_model):
    same_audio = MelodyCondition(MELODY.audio.copy(), SR)  # equal audio, other object
    clips = [
        ClipSpec("solo piano", 1.0, seed=3, melody=MELODY),
        ClipSpec("solo piano", 1.0, seed=3, melody=same_audio),
        ClipSpec("solo piano", 1.0, seed=3, melody=OTHER_MELODY),
        ClipSpec("solo piano", 1.0, seed=3),
    ]
    first, again, other, plain = generate_clips(tiny_melody_model, clips)
    assert np.array_equal(first, again)
    assert not np.allclose(first, other, atol=1e-3)
    assert not np.allclose(first, plain, atol=1e-3)
    assert np.array_equal(first, generate_clips(tiny_melody_model, clips[:1])[0])


@pytest.mark.parametrize("fixture", ["tiny_melody_model_fp32", "tiny_melody_model"])
def test_a_melody_clip_is_the_same_alone_or_batched_with_others(request, fixture):
    """Each row's prefix is its own (left-padded, masked) and its generator its own: a clip
    does not depend on its batch-mates' prompts, melodies (or none), lengths or sampling.
    fp32 and int8: the same tokens; the audio equal up to float rounding of a bigger batch
    (atol 1e-5, as for text-only clips)."""
    loaded = request.getfixturevalue(fixture)
    mine = ClipSpec("solo piano, calm", 1.2, seed=11, melody=MELODY)
    text_only = ClipSpec("solo drums, funk, energetic groove with a long prompt", 2.0, seed=3)
    others = [
        text_only,
        ClipSpec("bass", 0.5, 11, SamplingParams(temperature=0.7, top_p=0.9), melody=OTHER_MELODY),
        ClipSpec("pads", 1.0, 5, SamplingParams(guidance_scale=1.0), melody=MELODY),
    ]
    batched = generate_clips(loaded, [others[0], mine, *others[1:]])
    assert [a.shape[-1] for a in batched] == [64000, 38400, 16000, 32000]
    for clip, got in [(mine, batched[1]), (text_only, batched[0])]:
        alone = generate_clips(loaded, [clip])[0]
        assert got.shape == alone.shape
        assert np.allclose(got, alone, atol=1e-5), clip.prompt


@pytest.mark.parametrize("duration", [1.0, 1.01, 2.5])
def test_melody_clips_have_the_exact_number_of_samples(tiny_melody_model, duration):
    audio = generate_audio(tiny_melody_model, ["guitar"], duration, seed=1, melody=OTHER_MELODY)
    assert audio.shape == (1, 1, round(duration * SR))
    assert audio.dtype == np.float32


def test_window_melody_is_the_matching_span_looped():
    mono = np.arange(48000, dtype=np.float32)  # 1.5 s at 32 kHz
    first = window_melody(mono, 0, sample_rate=SR, window_s=2.0, stride_s=1.2)
    assert np.array_equal(first, np.concatenate([mono, mono[:16000]]))
    third = window_melody(mono, 2, sample_rate=SR, window_s=2.0, stride_s=1.2)
    assert third[0] == 76800 % 48000 and len(third) == 64000
    assert np.array_equal(third, mono[(76800 + np.arange(64000)) % 48000])
    long = np.arange(10 * SR, dtype=np.float32)
    assert np.array_equal(
        window_melody(long, 1, sample_rate=SR, window_s=2.0, stride_s=1.2),
        long[38400 : 38400 + 64000],
    )


def test_continuation_beyond_one_window_with_a_melody(tiny_melody_model):
    seen = []
    kwargs = {"window_s": 2.0, "stride_s": 1.2}
    audio = generate_audio(
        tiny_melody_model,
        ["strings", "brass"],
        5.0,
        seed=3,
        melody=MELODY,  # 1.6 s: shorter than the clip, it loops
        progress=lambda d, t: seen.append(t),
        **kwargs,
    )
    assert audio.shape == (2, 1, 5 * SR)
    plan = plan_length(5.0, sample_rate=SR, frame_rate=50, num_codebooks=4, **kwargs)
    assert len(plan.windows) > 1 and seen[-1] == plan.steps
    again = generate_audio(
        tiny_melody_model, ["strings", "brass"], 5.0, seed=3, melody=MELODY, **kwargs
    )
    assert np.array_equal(audio, again)
    assert np.abs(audio[:, :, -SR:]).max() > 0  # the tail is real audio, not padding


def test_each_continuation_window_follows_its_own_span_of_the_melody(tiny_melody_model):
    """Two melodies equal for the first 2 s (window 0) and different after: the clips agree
    while only window 0 is heard, and part once later windows follow the melodies on."""
    opening = triads([A, C, D, E, A])  # 2.0 s
    melodies = [
        MelodyCondition(np.concatenate([opening, triads(roots)], axis=1), SR)
        for roots in ([F, G] * 4, [C, E, D, C] * 2)
    ]
    first, second = (
        generate_audio(
            tiny_melody_model, ["strings"], 5.0, seed=3, melody=m, window_s=2.0, stride_s=1.2
        )
        for m in melodies
    )
    assert np.array_equal(first[..., : round(1.5 * SR)], second[..., : round(1.5 * SR)])
    assert not np.allclose(first[..., 2 * SR :], second[..., 2 * SR :], atol=1e-3)


def test_text_only_checkpoint_refuses_a_melody(tiny_model):
    with pytest.raises(ValueError, match="text-only checkpoint"):
        generate_clips(tiny_model, [ClipSpec("guitar", 1.0, seed=0, melody=MELODY)])


def test_melody_condition_validates_and_compares_by_identity():
    with pytest.raises(ValueError, match="channels, samples"):
        MelodyCondition(np.zeros(SR, np.float32), SR)
    with pytest.raises(ValueError, match="sample rate"):
        MelodyCondition(np.zeros((1, SR), np.float32), 0)
    with pytest.raises(ValueError, match="finite"):
        MelodyCondition(np.full((1, SR), np.nan, np.float32), SR)
    twin = MelodyCondition(MELODY.audio.copy(), SR)
    clip = ClipSpec("guitar", 1.0, 0, melody=MELODY)
    assert clip == ClipSpec("guitar", 1.0, 0, melody=MELODY)
    assert clip != ClipSpec("guitar", 1.0, 0, melody=twin)  # no element-wise comparison
    assert len({clip, ClipSpec("guitar", 1.0, 0, melody=MELODY)}) == 1
    assert MelodyCondition(np.zeros((2, 10)), 8000).audio.dtype == np.float32


# -- the batcher -----------------------------------------------------------------------


def test_batcher_coalesces_melody_clips_and_counts_their_prefix(tiny_melody_model):
    clips = [
        ClipSpec("solo guitar, rock", 1.0, seed=1, melody=MELODY),
        ClipSpec("solo bass", 0.6, seed=2),
        ClipSpec("pads", 1.0, seed=3, melody=OTHER_MELODY),
    ]
    batcher = ClipBatcher(lambda: tiny_melody_model, BatchPolicy(window_s=1.0))
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        results[i] = batcher.generate([clips[i]])[0]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(clips))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sum(batcher.batches) == 3 and len(batcher.batches) < 3  # coalesced
    for i, clip in enumerate(clips):
        assert np.allclose(results[i], generate_clips(tiny_melody_model, [clip])[0], atol=1e-5)

    tokens = len(tiny_melody_model.processor(text=["solo bass"])["input_ids"][0])
    assert prefix_positions(tiny_melody_model, "solo bass") == 235 + tokens
    per_position = tiny_melody_model.decoder.kv_bytes_per_position
    positions = 30 + 4 + 235 + tokens  # 0.6 s of frames, margin, chroma and text prefix
    assert batcher._kv_bytes(tiny_melody_model, clips[1]) == positions * 2 * per_position
