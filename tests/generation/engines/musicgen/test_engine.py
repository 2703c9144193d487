import numpy as np
import pytest

from generation.engines.base import ClipBatch, ClipRequest, Conditioning, EngineState
from generation.engines.musicgen.decoding import SamplingParams
from generation.engines.musicgen.engine import MusicGenEngine
from generation.engines.musicgen.generate import ClipSpec, generate_clips
from generation.engines.musicgen.loader import ModelHolder


def test_musicgen_behind_the_engine_interface(tiny_settings, tiny_model):
    holder = ModelHolder(tiny_settings)
    engine = MusicGenEngine(holder, lambda clips: generate_clips(holder.get(), clips))
    assert engine.name == "musicgen"
    assert engine.state is EngineState.NOT_LOADED
    assert engine.model_id == tiny_settings.musicgen_model
    assert (engine.sample_rate, engine.channels) == (tiny_model.sample_rate, 1)
    assert engine.state is EngineState.AVAILABLE
    assert engine.conditioning == frozenset({Conditioning.TEXT})  # a text-only checkpoint

    batch = ClipBatch(
        clips=(ClipRequest("rock guitar", 3, stem="guitar"), ClipRequest("rock bass", 4)),
        duration_s=0.5,
    )
    ours = engine.generate(batch)
    direct = generate_clips(
        holder.get(),
        [ClipSpec("rock guitar", 0.5, 3, SamplingParams()), ClipSpec("rock bass", 0.5, 4)],
    )
    for a, b in zip(ours, direct, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="only makes text2music"):
        engine.generate(ClipBatch(clips=batch.clips, duration_s=0.5, task="lego"))
