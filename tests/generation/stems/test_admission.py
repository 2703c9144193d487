"""Admission control: the memory model per request and the 400 that says what fits."""

import re

import pytest

from generation.engines.musicgen.memory import MB, MUSICGEN_SMALL, clip_kv_bytes, request_memory_mb
from generation.errors import InvalidRequestError
from generation.request import Stem, parse_request
from generation.settings import GenerationSettings
from generation.stems.admission import check_fits, generation_seconds_bound, request_need_mb
from generation.stems.grid import plan_grid
from generation.stems.track import TrackAnalysis

ALL_STEMS = [s.value for s in Stem][:8]


def request(stems=3, **parameters):
    body = {
        "generation_request_id": "req-mem",
        "target_stems": ALL_STEMS[:stems],
        "parameters": {"duration_seconds": 10, **parameters},
    }
    if parameters.pop("upload", False):
        body["audio_file_id"] = "file-1"
        body["parameters"] = {"duration_seconds": 10, **parameters}
    return parse_request(body)


def with_budget(mb: int) -> GenerationSettings:
    return GenerationSettings(worker_memory_budget_mb=mb)


def refusal(req, settings) -> str:
    with pytest.raises(InvalidRequestError) as caught:
        check_fits(req, settings)
    [error] = caught.value.errors
    assert error["field"] == "target_stems" and error["type"] == "memory_budget"
    return error["message"]


def fits(req, settings) -> bool:
    try:
        check_fits(req, settings)
    except InvalidRequestError:
        return False
    return True


def test_the_need_grows_with_stems_and_seconds():
    settings = GenerationSettings()
    one = request_need_mb(request(1), settings)
    assert request_need_mb(request(2), settings) > one
    assert request_need_mb(request(1, duration_seconds=60), settings) > one
    # Each stem adds its audio and post-processing, and its attention cache.
    one, two = (request_need_mb(request(n, duration_seconds=60), settings) for n in (1, 2))
    kv = clip_kv_bytes(MUSICGEN_SMALL, 60, guided=True) / MB  # below the batch KV budget
    clip = MUSICGEN_SMALL.clip_fixed_mb + MUSICGEN_SMALL.clip_mb_per_s * 60
    assert two - one == pytest.approx(clip + kv, rel=1e-6)


def test_the_attention_cache_counts_at_most_the_batch_budget_but_one_clip_at_least():
    kv = clip_kv_bytes(MUSICGEN_SMALL, 300, guided=True) / MB
    no_cache = request_memory_mb(8, 300, guided=True, kv_budget_mb=0) - kv
    assert request_memory_mb(8, 300, guided=True, kv_budget_mb=1e9) == pytest.approx(
        no_cache + 8 * kv
    )
    assert request_memory_mb(8, 300, guided=True, kv_budget_mb=3 * kv) == pytest.approx(
        no_cache + 3 * kv
    )
    assert request_memory_mb(8, 300, guided=True, kv_budget_mb=kv / 2) == pytest.approx(
        no_cache + kv
    )


def test_a_request_that_fits_passes_and_the_default_takes_the_usual_request():
    check_fits(request(3, target_bpm=120), GenerationSettings())
    check_fits(request(8, duration_seconds=300), with_budget(1_000_000))


def test_too_many_stems_get_a_400_saying_how_many_fit():
    req = request(8, duration_seconds=300, target_bpm=120)
    settings = with_budget(
        round(
            request_need_mb(request(3, duration_seconds=300, target_bpm=120), GenerationSettings())
            + 1
        )
    )
    message = refusal(req, settings)
    assert "8 stem(s)" in message and "WORKER_MEMORY_BUDGET_MB" in message
    assert f"{settings.worker_memory_budget_mb:,} MB" in message
    most = int(re.search(r"at most (\d+) stem\(s\) of this length", message).group(1))
    assert most == 3
    assert fits(request(most, duration_seconds=300, target_bpm=120), settings)
    assert not fits(request(most + 1, duration_seconds=300, target_bpm=120), settings)
    longest = int(re.search(r"at most (\d+) s long", message).group(1))
    assert fits(request(8, duration_seconds=longest, target_bpm=120), settings)
    assert not fits(request(8, duration_seconds=longest + 1, target_bpm=120), settings)


def test_bars_get_a_400_saying_how_many_bars_fit():
    req = request(4, bars=120, target_bpm=100)
    settings = with_budget(
        round(request_need_mb(request(4, bars=40, target_bpm=100), GenerationSettings()) + 1)
    )
    message = refusal(req, settings)
    bars = int(re.search(r"at most (\d+) bars", message).group(1))
    assert fits(request(4, bars=bars, target_bpm=100), settings)
    assert not fits(request(4, bars=bars + 1, target_bpm=100), settings)


def test_a_budget_too_small_for_anything_says_so():
    message = refusal(request(1, duration_seconds=5), with_budget(256))
    assert "even one stem of 1 s needs about" in message


@pytest.mark.parametrize("time_signature", ["4/4", "3/4", "6/8", "7/8", "2/2"])
@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("seconds", [10, 75, 300])
def test_the_bound_for_an_upload_tempo_covers_every_tempo_the_api_accepts(
    time_signature, loop, seconds
):
    params = request(1, duration_seconds=seconds, time_signature=time_signature, loop=loop)
    bound = generation_seconds_bound(params.parameters, upload=True)
    for bpm in range(40, 241, 3):
        upload = TrackAnalysis(
            bpm=float(bpm),
            first_downbeat_s=0.1,
            key=None,
            duration_s=60,
            sample_rate=32000,
            channels=1,
        )
        plan = plan_grid(params.parameters, upload)
        assert plan.generation_s <= bound + 1e-6, (bpm, plan.generation_s, bound)


def test_with_a_known_tempo_the_bound_is_the_plan_itself():
    params = request(1, duration_seconds=60, target_bpm=90).parameters
    assert generation_seconds_bound(params, upload=True) == plan_grid(params).generation_s
    untimed = request(1, duration_seconds=60).parameters
    assert generation_seconds_bound(untimed, upload=False) == 60
