import numpy as np
import pytest

from generation.engines.musicgen.generate import (
    ClipSpec,
    SamplingParams,
    generate_audio,
    generate_clips,
    plan_length,
)

GREEDY = SamplingParams(top_k=1, guidance_scale=3.0)


@pytest.mark.parametrize("duration", [1.0, 1.01, 2.5, 3.333])
def test_duration_maps_to_the_exact_number_of_samples(tiny_model, duration):
    audio = generate_audio(tiny_model, ["guitar"], duration, seed=1)
    assert audio.shape == (1, 1, round(duration * tiny_model.sample_rate))
    assert audio.dtype == np.float32


def test_same_seed_same_samples_other_seed_other_samples(tiny_model):
    prompts = ["solo guitar, rock", "solo bass, rock"]
    first = generate_audio(tiny_model, prompts, 1.5, seed=[42, 43])
    again = generate_audio(tiny_model, prompts, 1.5, seed=[42, 43])
    other = generate_audio(tiny_model, prompts, 1.5, seed=[44, 45])
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_batch_returns_one_clip_per_prompt_in_order(tiny_model):
    # Greedy decoding: each row's tokens follow from its own prompt only.
    a, b, c = "solo guitar, rock", "solo bass, jazz", "solo drums kit, funk"
    batched = generate_audio(tiny_model, [a, b, c], 1.0, seed=0, sampling=GREEDY)
    assert batched.shape[0] == 3
    for row, prompt in enumerate([a, b, c]):
        solo = generate_audio(tiny_model, [prompt], 1.0, seed=0, sampling=GREEDY)
        assert np.allclose(batched[row], solo[0], atol=1e-5), f"row {row} is not {prompt!r}"
    assert not np.allclose(batched[0], batched[1], atol=1e-4)


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_a_clip_is_the_same_alone_or_batched_with_others(tiny_settings, precision):
    """Per-row generators: a clip depends on its own prompt, seed, duration and sampling,
    never on what shares its batch (other prompts, seeds, lengths or sampling)."""
    from generation.engines.musicgen.loader import load_model

    loaded = load_model(tiny_settings.model_copy(update={"model_precision": precision}))
    mine = ClipSpec("solo piano, calm", 1.2, seed=11)
    alone = generate_clips(loaded, [mine])[0]
    others = [
        ClipSpec("solo drums, funk", 2.0, seed=3, sampling=SamplingParams(top_k=50)),
        ClipSpec("solo bass", 0.5, seed=11, sampling=SamplingParams(temperature=0.7, top_p=0.9)),
    ]
    batched = generate_clips(loaded, [others[0], mine, others[1]])
    assert batched[1].shape == alone.shape == (1, round(1.2 * 32000))
    # Bit-for-bit equal tokens; the float maths of a bigger batch may differ in the last bits.
    assert np.allclose(batched[1], alone, atol=1e-5)
    assert [a.shape[-1] for a in batched] == [64000, 38400, 16000]


def test_progress_reports_every_decoding_step(tiny_model):
    seen = []
    generate_audio(tiny_model, ["pads"], 1.0, seed=0, progress=lambda d, t: seen.append((d, t)))
    plan = plan_length(1.0, sample_rate=32000, frame_rate=50, num_codebooks=4)
    assert seen[-1] == (plan.steps, plan.steps)
    assert [d for d, _ in seen] == list(range(1, plan.steps + 1))


def test_plan_covers_long_durations_with_continuation_windows():
    plan = plan_length(
        70, sample_rate=32000, frame_rate=50, num_codebooks=4, window_s=30, stride_s=18
    )
    assert plan.frames == 3500
    assert plan.windows == (1500, 900, 900, 200)
    assert plan.prompt_frames == 600
    assert plan.steps == sum(w + 3 for w in plan.windows)
    short = plan_length(10, sample_rate=32000, frame_rate=50, num_codebooks=4)
    assert short.windows == (500,) and short.steps == 503


def test_beyond_the_window_is_produced_by_continuation_not_refused(tiny_model):
    seen = []
    audio = generate_audio(
        tiny_model,
        ["strings", "brass"],
        5.0,
        seed=3,
        window_s=2.0,
        stride_s=1.2,
        progress=lambda d, t: seen.append(t),
    )
    assert audio.shape == (2, 1, 5 * 32000)
    assert (
        seen[-1]
        == plan_length(
            5.0, sample_rate=32000, frame_rate=50, num_codebooks=4, window_s=2.0, stride_s=1.2
        ).steps
    )
    again = generate_audio(
        tiny_model, ["strings", "brass"], 5.0, seed=3, window_s=2.0, stride_s=1.2
    )
    assert np.array_equal(audio, again)
    assert np.abs(audio[:, :, -32000:]).max() > 0  # the tail is real audio, not padding
