import threading

import numpy as np
import pytest

from generation.engines.ace_step import Sampling
from generation.engines.ace_step.batcher import AceStepGatherer
from generation.engines.ace_step.engine import AceStepEngine
from generation.engines.base import ClipBatch, ClipRequest


class Recorder:
    """The engine's generate, counting the calls and the clips of each."""

    def __init__(self, engine: AceStepEngine) -> None:
        self.engine = engine
        self.calls: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, batch: ClipBatch) -> list[np.ndarray]:
        with self._lock:
            self.calls.append(len(batch.clips))
        return self.engine.generate(batch)


@pytest.fixture(scope="module")
def engine(ace_tiny_checkpoint) -> AceStepEngine:
    return AceStepEngine(
        str(ace_tiny_checkpoint), None, precision="float32", base_sampling=Sampling(steps=3)
    )


def _stem_batch(track: np.ndarray, stem: str, seed: int) -> ClipBatch:
    return ClipBatch(
        clips=(ClipRequest("funk", seed, stem=stem),),
        duration_s=1.0,
        task="extract",
        bpm=120,
        key="C major",
        beats_per_bar=4,
        audio=track,
    )


def test_concurrent_stems_of_one_context_share_a_batch_and_keep_their_audio(engine):
    track = np.random.default_rng(1).uniform(-0.5, 0.5, (2, 48_000)).astype(np.float32)
    stems = ["bass", "drums", "guitar"]
    alone = [engine.generate(_stem_batch(track, s, i))[0] for i, s in enumerate(stems)]
    recorder = Recorder(engine)
    gatherer = AceStepGatherer(recorder, window_s=2.0)
    results: dict[str, np.ndarray] = {}

    def run(index: int, stem: str) -> None:
        (results[stem],) = gatherer.generate(_stem_batch(track, stem, index), "upload/track.wav")

    threads = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate(stems)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert recorder.calls == [3]
    for index, stem in enumerate(stems):
        np.testing.assert_allclose(results[stem], alone[index], rtol=0, atol=1e-5)


def test_different_contexts_are_not_merged_and_errors_reach_their_caller(engine):
    track = np.zeros((2, 48_000), dtype=np.float32)
    recorder = Recorder(engine)
    gatherer = AceStepGatherer(recorder, window_s=0.3)
    outputs = []
    threads = [
        threading.Thread(
            target=lambda c=context: outputs.append(
                gatherer.generate(_stem_batch(track, "bass", 1), c)
            )
        )
        for context in ("a.wav", "b.wav")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert recorder.calls == [1, 1] and len(outputs) == 2
    with pytest.raises(ValueError, match="no track for stem"):
        gatherer.generate(_stem_batch(track, "kazoo", 1), "a.wav")
