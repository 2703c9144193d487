import threading

import numpy as np
import pytest

import generation.engines.musicgen.batcher as batcher_module
from generation.engines.musicgen.batcher import BatchPolicy, ClipBatcher
from generation.engines.musicgen.generate import ClipSpec, SamplingParams, generate_clips
from generation.engines.musicgen.memory import MB, MemoryProfile, clip_work_bytes
from generation.errors import MemoryBudgetError

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


# The worker memory budget, with a profile whose numbers are easy to read: 1 MB for the
# decode, 10 MB per clip-second of audio and post-processing.
TEST_PROFILE = MemoryProfile(
    "test", decode_peak_mb=1, clip_fixed_mb=0, clip_mb_per_s=10, kv_bytes_per_position=0
)


def budget_for(loaded, clips, extra_mb=0.0) -> int:
    """Bytes that fit exactly ``clips`` in one batch (plus ``extra_mb``)."""
    probe = ClipBatcher(lambda: loaded, BatchPolicy(profile=TEST_PROFILE))
    kv = sum(probe._kv_bytes(loaded, c) for c in clips)
    work = sum(clip_work_bytes(TEST_PROFILE, c.duration_s) for c in clips)
    return kv + work + MB + round(extra_mb * MB)


def test_a_leased_clip_holds_its_memory_until_the_lease_ends(tiny_model):
    first, second = CLIPS[0], CLIPS[1]
    budget = budget_for(tiny_model, [first], extra_mb=5)  # never both at once
    batcher = ClipBatcher(
        lambda: tiny_model,
        BatchPolicy(window_s=0.2, memory_budget_bytes=budget, profile=TEST_PROFILE),
    )
    generated, release, second_done = threading.Event(), threading.Event(), threading.Event()

    def post_process_slowly() -> None:
        with batcher.lease() as generate:
            generate([first])
            generated.set()
            release.wait(60)  # finishing and writing the stem

    holder = threading.Thread(target=post_process_slowly)
    holder.start()
    assert generated.wait(60)
    assert batcher.held_bytes == clip_work_bytes(TEST_PROFILE, first.duration_s)
    waiter = threading.Thread(target=lambda: (batcher.generate([second]), second_done.set()))
    waiter.start()
    assert not second_done.wait(1.0)  # no room while the first stem is still held
    release.set()
    holder.join(60)
    assert second_done.wait(60)
    waiter.join(60)
    assert batcher.batches == [1, 1]
    assert 0 < batcher.peak_in_flight_bytes <= budget
    assert batcher.held_bytes == 0


def test_concurrent_clips_are_batched_only_as_far_as_the_budget_allows(tiny_model):
    clips = [ClipSpec(f"solo piano {i}", 1.0, seed=i) for i in range(4)]
    budget = budget_for(tiny_model, clips[:2], extra_mb=3)  # two 1 s clips, not three
    batcher = ClipBatcher(
        lambda: tiny_model,
        BatchPolicy(window_s=1.0, memory_budget_bytes=budget, profile=TEST_PROFILE),
    )
    results = run_concurrently(batcher, [[c] for c in clips])
    assert sum(batcher.batches) == 4 and max(batcher.batches) <= 2
    assert batcher.peak_in_flight_bytes <= budget
    assert all(r[0].shape == (1, 32000) for r in results)


def test_a_clip_that_cannot_fit_even_alone_fails_and_others_still_run(tiny_model):
    small, large = ClipSpec("solo bass", 0.5, seed=1), ClipSpec("solo pads", 2.0, seed=2)
    budget = budget_for(tiny_model, [small], extra_mb=1)  # 2 s need 20 MB of work
    batcher = ClipBatcher(
        lambda: tiny_model,
        BatchPolicy(window_s=0.2, memory_budget_bytes=budget, profile=TEST_PROFILE),
    )
    with pytest.raises(MemoryBudgetError, match="WORKER_MEMORY_BUDGET_MB"):
        batcher.generate([large, small])  # the small one still runs, and is released
    assert batcher.held_bytes == 0
    [audio] = batcher.generate([small])
    assert audio.shape == (1, 16000) and batcher.held_bytes == 0
    assert batcher.batches == [1, 1]
