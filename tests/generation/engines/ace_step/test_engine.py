import numpy as np
import pytest

from generation.engines.ace_step import Clip, Musical, Sampling, Task, generate_clips
from generation.engines.ace_step.engine import AceStepEngine
from generation.engines.base import ClipBatch, ClipRequest, Conditioning, EngineState
from generation.errors import ModelLoadError, ModelNotReadyError

FAST = Sampling(steps=3, guidance_scale=7.0)
FAST_TURBO = Sampling(steps=3, guidance_scale=1.0)


def _engine(checkpoint, **kwargs) -> AceStepEngine:
    return AceStepEngine(
        str(checkpoint),
        None,
        precision="float32",
        base_sampling=FAST,
        turbo_sampling=FAST_TURBO,
        **kwargs,
    )


def test_engine_loads_once_and_makes_lego_stems_over_a_track(ace_tiny_checkpoint, ace_tiny_fp32):
    engine = _engine(ace_tiny_checkpoint)
    assert engine.state is EngineState.NOT_LOADED
    assert Conditioning.AUDIO_CONTEXT in engine.conditioning
    engine.warm_up_in_background().join()
    assert engine.state is EngineState.AVAILABLE
    assert (engine.sample_rate, engine.channels) == (48_000, 2)

    track = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 48_000)).astype(np.float32)
    batch = ClipBatch(
        clips=(ClipRequest("funk", 1, stem="bass"), ClipRequest("funk", 2, stem="piano")),
        duration_s=1.0,
        task="lego",
        bpm=118.6,
        key="D major",
        beats_per_bar=4,
        audio=track,
    )
    stems = engine.generate(batch)
    assert [s.shape for s in stems] == [(2, 48_000)] * 2
    # The engine maps stems to ACE-Step tracks (piano -> KEYBOARD) and rounds the tempo.
    expected = generate_clips(
        ace_tiny_fp32.pipeline,
        [Clip(Task.LEGO, "funk", 1, "bass"), Clip(Task.LEGO, "funk", 2, "keyboard")],
        Musical(1.0, 119, "D major", "4"),
        source=track,
        sampling=FAST,
    )
    for ours, theirs in zip(stems, expected, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    assert engine.checkpoint_for("lego") == str(ace_tiny_checkpoint)


def test_guide_comes_from_the_turbo_checkpoint_when_configured(
    ace_tiny_checkpoint, ace_tiny_turbo_checkpoint
):
    engine = _engine(ace_tiny_checkpoint, guide_model=str(ace_tiny_turbo_checkpoint))
    batch = ClipBatch(clips=(ClipRequest("funk", 5),), duration_s=1.0, bpm=100, key="E minor")
    (guide,) = engine.generate(batch)
    assert guide.shape == (2, 48_000)
    assert engine.checkpoint_for("text2music") == str(ace_tiny_turbo_checkpoint)
    assert engine.checkpoint_for("extract") == str(ace_tiny_checkpoint)
    with pytest.raises(ValueError, match="no task"):
        engine.generate(ClipBatch(clips=batch.clips, duration_s=1.0, task="cover"))
    with pytest.raises(ValueError, match="needs source audio"):
        engine.generate(
            ClipBatch(clips=(ClipRequest("x", 1, "bass"),), duration_s=1.0, task="extract")
        )


def test_a_failed_load_is_reported_and_remembered(tmp_path):
    engine = _engine(tmp_path / "missing")
    with pytest.raises(ModelNotReadyError):
        engine._holder.get_if_ready()
    with pytest.raises(ModelLoadError, match="cannot load ACE-Step model"):
        engine.generate(ClipBatch(clips=(ClipRequest("x", 1),), duration_s=1.0))
    assert engine.state is EngineState.FAILED
    assert "does not exist" in str(engine.error)
    with pytest.raises(ModelLoadError):  # no second attempt behind the caller's back
        engine._holder.get_if_ready()
