import threading

import numpy as np
import pytest

import generation.engines.musicgen.batcher as batcher_module
from generation.engines.musicgen.batcher import BatchPolicy, ClipBatcher
from generation.engines.musicgen.generate import ClipSpec, SamplingParams, generate_clips

CLIPS = [
    ClipSpec("solo guitar, rock", 1.0, seed=1),
    ClipSpec("solo bass, rock", 1.0, seed=2),
    ClipSpec("solo drums, rock", 1.5, seed=3, sampling=SamplingParams(top_k=20)),
    ClipSpec("pads, ambient", 0.6, seed=4, sampling=SamplingParams(guidance_scale=1.0)),
]


def run_concurrently(batcher: ClipBatcher, groups: list[list[ClipSpec]]) -> list[list[np.ndarray]]:
    results: list[list[np.ndarray] | None] = [None] * len(groups)
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            results[i] = batcher.generate(groups[i])
        except BaseException as error:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(groups))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return results  # type: ignore[return-value]


def test_concurrent_requests_share_batches_and_get_their_own_clips(tiny_model):
    batcher = ClipBatcher(lambda: tiny_model, BatchPolicy(window_s=1.0, max_clips=12))
    groups = [CLIPS[:2], CLIPS[2:3], CLIPS[3:]]
    results = run_concurrently(batcher, groups)
    assert sum(batcher.batches) == 4 and len(batcher.batches) < 3  # coalesced
    alone = [generate_clips(tiny_model, [clip])[0] for clip in CLIPS]
    flat = [audio for group in results for audio in group]
    for got, want in zip(flat, alone, strict=True):
        assert got.shape == want.shape
        assert np.allclose(got, want, atol=1e-5)


def test_max_batch_size_and_memory_budget_split_batches(tiny_model):
    small = ClipBatcher(lambda: tiny_model, BatchPolicy(window_s=1.0, max_clips=2))
    run_concurrently(small, [[c] for c in CLIPS])
    assert max(small.batches) <= 2 and sum(small.batches) == 4
    per_clip = small._kv_bytes(tiny_model, CLIPS[0])
    tight = ClipBatcher(
        lambda: tiny_model, BatchPolicy(window_s=1.0, max_clips=12, kv_budget_bytes=per_clip)
    )
    run_concurrently(tight, [[c] for c in CLIPS[:2]])
    assert tight.batches == [1, 1]


def test_a_failing_clip_does_not_take_its_batch_down(tiny_model, monkeypatch):
    real = batcher_module.generate_clips

    def fragile(loaded, clips, **kwargs):
        if any(c.prompt == "boom" for c in clips):
            raise RuntimeError("boom")
        return real(loaded, clips, **kwargs)

    monkeypatch.setattr(batcher_module, "generate_clips", fragile)
    batcher = ClipBatcher(lambda: tiny_model, BatchPolicy(window_s=1.0))
    outcomes: dict[str, object] = {}

    def call(name: str, clip: ClipSpec) -> None:
        try:
            outcomes[name] = batcher.generate([clip])[0]
        except RuntimeError as error:
            outcomes[name] = error

    threads = [
        threading.Thread(target=call, args=("good", CLIPS[0])),
        threading.Thread(target=call, args=("bad", ClipSpec("boom", 1.0, seed=0))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert isinstance(outcomes["bad"], RuntimeError)
    assert isinstance(outcomes["good"], np.ndarray) and outcomes["good"].shape == (1, 32000)


def test_a_model_that_cannot_load_fails_the_caller_with_its_error():
    def broken():
        raise RuntimeError("no model")

    with pytest.raises(RuntimeError, match="no model"):
        ClipBatcher(broken).generate(CLIPS[:1])
