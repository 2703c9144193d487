"""The project's ACE-Step path against diffusers' ``AceStepPipeline`` called directly."""

import numpy as np
import pytest
import torch

from generation.engines.ace_step import (
    STEM_TRACKS,
    TRACK_NAMES,
    Clip,
    Musical,
    PhaseTimes,
    Sampling,
    Task,
    generate_clips,
    track_for_stem,
)
from generation.engines.ace_step.generate import SOURCE_SEED_OFFSET, dit_forward, validate_clips
from generation.request import Stem

MUSICAL = Musical(duration_s=2.0, bpm=120, keyscale="A minor", timesignature="4")
SAMPLING = Sampling(steps=6, guidance_scale=7.0)
# bf16 networks (fp32 VAE), all stems batched, against fp32 one stem per call: measured
# 1.3e-3 max and 3e-4 relative L2 on the tiny checkpoint; the bounds leave room for
# other CPUs' bf16 kernels.
BF16_MAX_ABS = 1e-2
BF16_REL_L2 = 1e-2


def _pipeline_call(pipe, clip: Clip, source: np.ndarray | None) -> np.ndarray:
    """The documented way: one ``AceStepPipeline`` call for one clip."""
    kwargs = {}
    duration = MUSICAL.duration_s
    if source is not None:
        kwargs = {"src_audio": torch.from_numpy(source), "track_name": clip.track}
        duration = source.shape[-1] / pipe.sample_rate
        # The pipeline samples the source's VAE posterior from the global generator.
        torch.manual_seed(clip.seed + SOURCE_SEED_OFFSET)
    out = pipe(
        prompt=clip.prompt,
        task_type=clip.task.value,
        audio_duration=duration,
        num_inference_steps=SAMPLING.steps,
        guidance_scale=SAMPLING.guidance_scale,
        shift=SAMPLING.shift,
        bpm=MUSICAL.bpm,
        keyscale=MUSICAL.keyscale,
        timesignature=MUSICAL.timesignature,
        generator=torch.Generator().manual_seed(clip.seed),
        **kwargs,
    )
    return out.audios[0].numpy()


@pytest.fixture(scope="module")
def guide(ace_tiny_fp32) -> np.ndarray:
    clip = Clip(Task.TEXT2MUSIC, "funk band, slap bass, tight drums", seed=3)
    return generate_clips(ace_tiny_fp32.pipeline, [clip], MUSICAL, sampling=SAMPLING)[0]


def test_text2music_equals_the_pipeline(ace_tiny_fp32, guide):
    pipe = ace_tiny_fp32.pipeline
    expected = _pipeline_call(
        pipe, Clip(Task.TEXT2MUSIC, "funk band, slap bass, tight drums", 3), None
    )
    assert guide.shape == (2, 2 * 48_000) and guide.dtype == np.float32
    np.testing.assert_allclose(guide, expected, rtol=0, atol=1e-6)
    assert np.abs(guide).max() == pytest.approx(10 ** (-1 / 20), rel=1e-5)  # -1 dBFS peak


@pytest.mark.parametrize("task", [Task.LEGO, Task.EXTRACT])
def test_source_tasks_equal_the_pipeline(ace_tiny_fp32, guide, task):
    pipe = ace_tiny_fp32.pipeline
    clip = Clip(task, "funk band", seed=11, track="bass")
    ours = generate_clips(pipe, [clip], MUSICAL, source=guide, sampling=SAMPLING)[0]
    np.testing.assert_allclose(ours, _pipeline_call(pipe, clip, guide), rtol=0, atol=1e-6)
    assert ours.shape == guide.shape  # as long as the track it works over


def test_batched_stems_equal_one_call_per_stem(ace_tiny_fp32, guide):
    pipe = ace_tiny_fp32.pipeline
    # Track names of different token lengths: the batch pads the conditions and masks them.
    clips = [
        Clip(Task.LEGO, "funk band", seed=20 + i, track=track)
        for i, track in enumerate(["bass", "drums", "backing_vocals"])
    ]
    times = PhaseTimes()
    batched = generate_clips(pipe, clips, MUSICAL, source=guide, sampling=SAMPLING, times=times)
    for clip, ours in zip(clips, batched, strict=True):
        np.testing.assert_allclose(ours, _pipeline_call(pipe, clip, guide), rtol=0, atol=1e-5)
    assert not np.allclose(batched[0], batched[1])  # different stems, different audio
    assert len(times.dit_step_s) == SAMPLING.steps
    assert times.condition_s > 0 and times.decode_s > 0


def test_bf16_batched_is_close_to_the_fp32_pipeline(ace_tiny_fp32, ace_tiny_bf16, guide):
    assert ace_tiny_bf16.pipeline.transformer.dtype == torch.bfloat16
    assert ace_tiny_bf16.pipeline.vae.dtype == torch.float32
    clips = [
        Clip(Task.LEGO, "funk band", seed=30 + i, track=track)
        for i, track in enumerate(["bass", "drums", "guitar"])
    ]
    fast = generate_clips(ace_tiny_bf16.pipeline, clips, MUSICAL, source=guide, sampling=SAMPLING)
    for clip, ours in zip(clips, fast, strict=True):
        reference = _pipeline_call(ace_tiny_fp32.pipeline, clip, guide)
        assert np.abs(ours - reference).max() < BF16_MAX_ABS
        assert np.linalg.norm(ours - reference) / np.linalg.norm(reference) < BF16_REL_L2


def test_cross_attention_mask_makes_padding_invisible(ace_tiny_fp32):
    dit = ace_tiny_fp32.pipeline.transformer
    torch.manual_seed(0)
    c = dit.config.audio_acoustic_hidden_dim
    hidden, context = torch.randn(1, 10, c), torch.randn(1, 10, 2 * c)
    conditions = torch.randn(1, 7, dit.config.hidden_size)
    t = torch.full((1,), 0.5)
    common = {"timestep": t, "context_latents": context}
    with torch.no_grad():
        library = dit(hidden, t, t, conditions, context, return_dict=False)[0]
        ours = dit_forward(dit, hidden, **common, encoder_hidden_states=conditions)
        padded = torch.nn.functional.pad(conditions, (0, 0, 0, 5), value=3.0)
        mask = torch.tensor([[True] * 7 + [False] * 5])
        masked = dit_forward(dit, hidden, **common, encoder_hidden_states=padded, encoder_mask=mask)
        unmasked = dit_forward(dit, hidden, **common, encoder_hidden_states=padded)
    torch.testing.assert_close(ours, library, rtol=0, atol=0)
    torch.testing.assert_close(masked, library, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(unmasked, library, atol=1e-3)


def test_tasks_are_checked_before_generating():
    lego = Clip(Task.LEGO, "x", seed=0, track="bass")
    with pytest.raises(ValueError, match="needs source audio"):
        validate_clips([lego], has_source=False, is_turbo=False)
    with pytest.raises(ValueError, match="needs an ACE-Step base checkpoint"):
        validate_clips([lego], has_source=True, is_turbo=True)
    with pytest.raises(ValueError, match="unknown ACE-Step track"):
        validate_clips([Clip(Task.EXTRACT, "x", 0, "kazoo")], has_source=True, is_turbo=False)
    with pytest.raises(ValueError, match="takes no source"):
        validate_clips([Clip(Task.TEXT2MUSIC, "x", 0)], has_source=True, is_turbo=False)
    validate_clips([Clip(Task.TEXT2MUSIC, "x", 0)], has_source=False, is_turbo=True)


def test_every_stem_has_an_ace_step_track():
    assert {track_for_stem(stem.value) for stem in Stem} <= set(TRACK_NAMES)
    assert set(STEM_TRACKS) == {stem.value for stem in Stem}
    with pytest.raises(ValueError, match="no track"):
        track_for_stem("kazoo")


def test_turbo_guide_shares_the_base_components_and_equals_the_pipeline(
    ace_tiny_fp32, ace_tiny_turbo_checkpoint
):
    from diffusers import AceStepPipeline

    from generation.engines.ace_step import load_ace_step

    guide = load_ace_step(
        str(ace_tiny_turbo_checkpoint), None, precision="float32", share_with=ace_tiny_fp32
    )
    pipe = guide.pipeline
    assert guide.is_turbo
    assert pipe.vae is ace_tiny_fp32.pipeline.vae
    assert pipe.text_encoder is ace_tiny_fp32.pipeline.text_encoder
    assert pipe.transformer is not ace_tiny_fp32.pipeline.transformer
    clip = Clip(Task.TEXT2MUSIC, "funk band", seed=4)
    ours = generate_clips(pipe, [clip], MUSICAL, sampling=Sampling(steps=8))[0]
    direct = AceStepPipeline.from_pretrained(ace_tiny_turbo_checkpoint)
    direct.set_progress_bar_config(disable=True)
    expected = direct(
        prompt=clip.prompt,
        audio_duration=MUSICAL.duration_s,
        num_inference_steps=8,
        bpm=MUSICAL.bpm,
        keyscale=MUSICAL.keyscale,
        timesignature=MUSICAL.timesignature,
        generator=torch.Generator().manual_seed(clip.seed),
    ).audios[0]
    # Same weights (the shared VAE and text encoder are byte-identical files in the
    # checkpoints built from the same seed), guidance ignored by a turbo DiT.
    np.testing.assert_allclose(ours, expected.numpy(), rtol=0, atol=1e-6)
