"""The stem generation orchestrator, replayed by azure-functions-durable over written histories.

Each test writes the history the Durable extension would hold at some point of a run and
checks what the real SDK replay answers: the actions scheduled so far, custom status,
output or error. Nothing in the durable library is mocked.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import azure.durable_functions as df
import pytest

from generation.request import GenerationRequest
from orchestrators.generation_orchestrator import (
    ANALYZE_UPLOAD,
    FINALIZE_GENERATION,
    GENERATE_GUIDE,
    GENERATE_STEM,
    RETRY,
    SEND_CALLBACK,
    StemGenerationFailed,
    bp,
    orchestrate,
)
from tests.orchestrators.durable_history import (
    START,
    History,
    Replay,
    replay,
    replay_registered,
)

CALL_ACTIVITY = 0
CALL_ACTIVITY_WITH_RETRY = 1
RETRY_JSON = {"firstRetryIntervalInMilliseconds": 5000, "maxNumberOfAttempts": 3}
STEMS = ["guitar", "bass", "drums"]
# How the Functions host reports an activity that raised: a reason line, then JSON details.
HOST_REASON = "Activity function 'generate_stem' failed: "
HOST_DETAILS = json.dumps(
    {"Message": "Exception: RuntimeError: CUDA out of memory\nStack:   File x.py", "StackTrace": ""}
)
HOST_ERROR = "Activity function 'generate_stem' failed: Exception: RuntimeError: CUDA out of memory"


def make_request(stems: list[str] = STEMS, **fields: Any) -> dict[str, Any]:
    """The orchestration input, as the HTTP starter builds it."""
    request = GenerationRequest.model_validate(
        {
            "generation_request_id": "req-1",
            "target_stems": stems,
            "parameters": {"target_bpm": 120, "duration_seconds": 10, "style": "rock"},
            "callback_url": "https://example.test/hook",
            "seed": 7,
            **fields,
        }
    )
    return request.with_seed().model_dump(mode="json")


def stem_result(stem: str, index: int = 0) -> dict[str, Any]:
    """What ``generate_stem`` returns."""
    return {
        "stem": stem,
        "blob_name": f"req-1/{stem}.wav",
        "blob_url": f"https://blobs.test/stems/req-1/{stem}.wav",
        "duration_seconds": 10.0,
        "sample_rate": 32000,
        "prompt": f"rock {stem}",
        "seed": 7 + index,
        "model_id": "facebook/musicgen-small",
        "generation_seconds": 1.5 + index,
        "processing_seconds": 0.4,
        "format": "wav",
        "samples": 320000,
        "detected_bpm": 118.5,
        "stretch_ratio": 1.01266,
        "loudness_lufs": -16.0,
        "true_peak_dbtp": -1.5,
        "in_key": 0.97,
        "melody_source": None,
        "melody_conditioned": False,
        "warnings": [],
        "engine": "musicgen",
        "task": "text2music",
        "musical": MUSICAL,
    }


MUSICAL = {"tempo_locked": True, "target_bpm": 120, "bars": 5, "upload": None}
MANIFEST = {
    "manifest_blob_name": "req-1/manifest.json",
    "manifest_url": "https://blobs.test/stems/req-1/manifest.json",
    "mix_url": "https://blobs.test/stems/req-1/mix.wav",
    "musical": MUSICAL,
    "warnings": [],
}
DELIVERED = {"delivered": True, "status_code": 200, "attempts": 1, "error": None}


class Run:
    """One orchestration, stepped episode by episode like the extension would."""

    def __init__(self, request: dict[str, Any], schema_version: int = 1) -> None:
        self.request = request
        self.history = History(
            request, name="stem_generation_orchestrator", schema_version=schema_version
        )
        self.last = self.replay()
        # The extension records what the first episode scheduled, in action order.
        self.stem_ids = [
            self.history.task_scheduled(GENERATE_STEM, action["input"])
            for action in self.last.scheduled(GENERATE_STEM)
        ]

    def replay(self) -> Replay:
        self.last = replay(orchestrate, self.history)
        return self.last

    def record_last_action(self, name: str) -> int:
        """Record the action the latest replay just scheduled (must be ``name``)."""
        action = self.last.actions[-1]
        assert action["functionName"] == name
        return self.history.task_scheduled(name, action["input"])

    def complete_stems(self, indexes: list[int] | None = None) -> Replay:
        """Complete the given stems (default all, in request order), one episode each."""
        for index in range(len(self.stem_ids)) if indexes is None else indexes:
            self.history.new_episode()
            self.history.task_completed(self.stem_ids[index], stem_result(STEMS[index], index))
        return self.replay()

    def fail_stem(
        self, index: int, reason: str = HOST_REASON, details: str = HOST_DETAILS
    ) -> Replay:
        """Fail every attempt of one stem (its retries included)."""
        self.history.new_episode()
        left = self.history.fail_attempts(
            self.stem_ids[index],
            name=GENERATE_STEM,
            retry=RETRY,
            failures=RETRY.max_number_of_attempts,
            reason=reason,
            details=details,
        )
        assert left is None
        return self.replay()

    def finish_activity(self, name: str, result: Any) -> Replay:
        task_id = self.record_last_action(name)
        self.history.new_episode()
        self.history.task_completed(task_id, result)
        return self.replay()

    def fail_activity_with_retries(self, name: str, reason: str, details: str = "") -> Replay:
        task_id = self.record_last_action(name)
        self.history.new_episode()
        self.history.fail_attempts(
            task_id,
            name=name,
            retry=RETRY,
            failures=RETRY.max_number_of_attempts,
            reason=reason,
            details=details,
        )
        return self.replay()


def status(phase: str, stems: dict[str, str], **extra: Any) -> dict[str, Any]:
    states = list(stems.values())
    return {
        "phase": phase,
        "stems": stems,
        "completed": states.count("completed"),
        "failed": states.count("failed"),
        "total": len(states),
        **extra,
    }


# -- wiring -------------------------------------------------------------------------------------


def test_blueprint_registers_the_orchestration_trigger() -> None:
    app = df.DFApp()
    app.register_functions(bp)

    functions = {f.get_function_name(): f for f in app.get_functions()}
    registered = functions["stem_generation_orchestrator"]
    bindings = registered.get_bindings()
    assert [(b.type, b.name) for b in bindings] == [("orchestrationTrigger", "context")]

    # The registered handle is the host's entry point; it runs the same orchestration.
    run = Run(make_request())
    run.complete_stems()
    via_host = replay_registered(registered.get_user_function(), run.history)
    assert via_host.state == run.last.state
    assert via_host.scheduled(FINALIZE_GENERATION)


# -- fan-out ------------------------------------------------------------------------------------


def test_first_replay_schedules_one_generate_stem_per_stem_with_retry() -> None:
    request = make_request()
    first = Run(request).last

    assert not first.is_done
    assert first.error is None
    assert first.function_names == [GENERATE_STEM] * 3
    for index, (action, stem) in enumerate(zip(first.actions, STEMS, strict=True)):
        assert action["actionType"] == CALL_ACTIVITY_WITH_RETRY
        assert action["retryOptions"] == RETRY_JSON
        assert action["input"] == {
            "request": request,
            "stem": stem,
            "stem_index": index,
            "upload": None,
        }
    assert first.custom_status == status("generating", dict.fromkeys(STEMS, "pending"))


def test_retry_options_are_the_documented_ones() -> None:
    assert RETRY.first_retry_interval_in_milliseconds == 5000
    assert RETRY.max_number_of_attempts == 3


def test_fan_out_is_the_same_for_eight_stems_and_payloads_stay_small() -> None:
    stems = ["guitar", "bass", "drums", "piano", "keys", "synth", "strings", "brass"]
    request = make_request(stems, parameters={"prompt": "x" * 1000, "style": "y" * 200})
    first = Run(request).last

    assert [a["input"]["stem"] for a in first.actions] == stems
    assert [a["input"]["stem_index"] for a in first.actions] == list(range(8))
    # Durable spills payloads over ~45 KB to blobs; these stay far below.
    assert all(len(json.dumps(a["input"])) < 4096 for a in first.actions)


# -- progress and fan-in ------------------------------------------------------------------------


def test_custom_status_counts_each_stem_as_it_finishes() -> None:
    run = Run(make_request())

    run.complete_stems([2])
    assert run.last.custom_status == status(
        "generating", {"guitar": "pending", "bass": "pending", "drums": "completed"}
    )
    run.fail_stem(0)
    assert run.last.custom_status == status(
        "generating", {"guitar": "failed", "bass": "pending", "drums": "completed"}
    )
    run.complete_stems([1])
    assert run.last.custom_status == status(
        "finalizing", {"guitar": "failed", "bass": "completed", "drums": "completed"}
    )
    assert run.last.function_names == [GENERATE_STEM] * 3 + [FINALIZE_GENERATION]


def test_no_finalize_until_every_stem_has_finished() -> None:
    run = Run(make_request())
    run.complete_stems([0, 2])

    assert run.last.function_names == [GENERATE_STEM] * 3
    assert run.last.custom_status["phase"] == "generating"


def test_finalize_gets_results_in_request_order_when_completions_arrive_out_of_order() -> None:
    request = make_request()
    run = Run(request)
    # drums first, then guitar and bass together in one episode, bass before guitar.
    run.history.new_episode()
    run.history.task_completed(run.stem_ids[2], stem_result("drums", 2))
    run.history.new_episode()
    run.history.task_completed(run.stem_ids[1], stem_result("bass", 1))
    run.history.task_completed(run.stem_ids[0], stem_result("guitar", 0))
    last = run.replay()

    finalize = last.actions[-1]
    assert finalize["functionName"] == FINALIZE_GENERATION
    assert finalize["actionType"] == CALL_ACTIVITY_WITH_RETRY
    assert finalize["retryOptions"] == RETRY_JSON
    assert finalize["input"] == {
        "request": request,
        "stems": [stem_result(stem, i) for i, stem in enumerate(STEMS)],
        "failed_stems": [],
        "started_at": START.isoformat(),
        "upload": None,
        "warnings": [],
    }
    assert not last.scheduled(SEND_CALLBACK)


# -- callback and output ------------------------------------------------------------------------


def test_callback_is_scheduled_last_and_only_after_finalize() -> None:
    run = Run(make_request())
    run.complete_stems()
    assert not run.last.scheduled(SEND_CALLBACK)

    last = run.finish_activity(FINALIZE_GENERATION, MANIFEST)

    assert last.function_names == [GENERATE_STEM] * 3 + [FINALIZE_GENERATION, SEND_CALLBACK]
    callback = last.actions[-1]
    assert callback["actionType"] == CALL_ACTIVITY  # no retry: the activity retries HTTP itself
    assert "retryOptions" not in callback
    assert callback["input"] == {
        "callback_url": "https://example.test/hook",
        "payload": {
            "generation_request_id": "req-1",
            "status": "completed",
            "seed": 7,
            "model_id": "facebook/musicgen-small",
            "musical": MUSICAL,
            "stems": [
                {
                    "stem": stem,
                    "engine": "musicgen",
                    "model_id": "facebook/musicgen-small",
                    "task": "text2music",
                    "blob_url": f"https://blobs.test/stems/req-1/{stem}.wav",
                    "duration_seconds": 10.0,
                    "samples": 320000,
                    "sample_rate": 32000,
                    "seed": 7 + index,
                    "detected_bpm": 118.5,
                    "stretch_ratio": 1.01266,
                    "loudness_lufs": -16.0,
                    "true_peak_dbtp": -1.5,
                    "in_key": 0.97,
                    "melody_conditioned": False,
                    "melody_source": None,
                }
                for index, stem in enumerate(STEMS)
            ],
            "mix_url": MANIFEST["mix_url"],
            "failed_stems": [],
            "warnings": [],
            "error": None,
            "manifest_url": MANIFEST["manifest_url"],
            "timings": {
                "started_at": START.isoformat(),
                "finished_at": run.history.now.isoformat(),
                "stems": {"guitar": 1.5, "bass": 2.5, "drums": 3.5},
            },
        },
    }
    assert last.custom_status["phase"] == "notifying"
    assert not last.is_done


@pytest.mark.parametrize("schema_version", [0, 1, 2], ids=["V1", "V2", "V3"])
def test_all_stems_succeed(schema_version: int) -> None:
    run = Run(make_request(), schema_version=schema_version)
    run.complete_stems()
    run.finish_activity(FINALIZE_GENERATION, MANIFEST)
    last = run.finish_activity(SEND_CALLBACK, DELIVERED)

    assert last.is_done
    assert last.error is None
    assert last.output == {
        "generation_request_id": "req-1",
        "status": "completed",
        "stems": [stem_result(stem, i) for i, stem in enumerate(STEMS)],
        "failed_stems": [],
        "manifest_url": MANIFEST["manifest_url"],
        "mix_url": MANIFEST["mix_url"],
        "callback": DELIVERED,
    }
    assert last.custom_status == status(
        "done",
        dict.fromkeys(STEMS, "completed"),
        failed_stems=[],
        manifest_url=MANIFEST["manifest_url"],
        mix_url=MANIFEST["mix_url"],
        musical=MUSICAL,
        warnings=[],
        callback=DELIVERED,
        error=None,
    )
    assert last.function_names == [GENERATE_STEM] * 3 + [FINALIZE_GENERATION, SEND_CALLBACK]


def test_a_stem_that_recovers_on_retry_is_delivered() -> None:
    run = Run(make_request())
    run.history.new_episode()
    retried = run.history.fail_attempts(
        run.stem_ids[1],
        name=GENERATE_STEM,
        retry=RETRY,
        failures=2,
        reason=HOST_REASON,
        details=HOST_DETAILS,
    )
    assert retried is not None
    in_retry = run.replay()
    assert in_retry.custom_status["stems"]["bass"] == "pending"
    # Retries are the extension's business: no new actions appear for them.
    assert in_retry.function_names == [GENERATE_STEM] * 3

    run.history.new_episode()
    run.history.task_completed(retried, stem_result("bass", 1))
    last = run.complete_stems([0, 2])

    assert last.actions[-1]["input"]["stems"] == [stem_result(s, i) for i, s in enumerate(STEMS)]
    assert last.actions[-1]["input"]["failed_stems"] == []


# -- partial failure ----------------------------------------------------------------------------


def test_a_failed_stem_still_gets_finalize_a_failure_callback_and_a_failed_orchestration() -> None:
    request = make_request()
    run = Run(request)
    run.complete_stems([0])
    run.fail_stem(1)
    last = run.complete_stems([2])

    failed = [{"stem": "bass", "error": HOST_ERROR}]
    good = [stem_result("guitar", 0), stem_result("drums", 2)]
    assert last.actions[-1]["input"] == {
        "request": request,
        "stems": good,
        "failed_stems": failed,
        "started_at": START.isoformat(),
        "upload": None,
        "warnings": [],
    }

    last = run.finish_activity(FINALIZE_GENERATION, MANIFEST)
    summary = f"1 of 3 stems failed: bass ({HOST_ERROR})"
    payload = last.actions[-1]["input"]["payload"]
    assert payload["status"] == "failed"
    assert payload["error"] == summary
    assert payload["failed_stems"] == failed
    assert [s["stem"] for s in payload["stems"]] == ["guitar", "drums"]
    assert payload["manifest_url"] == MANIFEST["manifest_url"]
    assert payload["timings"]["stems"] == {"guitar": 1.5, "drums": 3.5}

    last = run.finish_activity(SEND_CALLBACK, DELIVERED)
    assert last.error == summary
    assert isinstance(last.exception, StemGenerationFailed)
    assert "\n" not in last.error
    assert last.output is None
    assert last.custom_status == status(
        "done",
        {"guitar": "completed", "bass": "failed", "drums": "completed"},
        failed_stems=failed,
        manifest_url=MANIFEST["manifest_url"],
        mix_url=MANIFEST["mix_url"],
        musical=MUSICAL,
        warnings=[],
        callback=DELIVERED,
        error=summary,
    )


def test_a_stem_failure_surfaces_only_after_the_last_retry_timer() -> None:
    run = Run(make_request())
    run.history.new_episode()
    # All three attempts fail, but the last back-off timer has not fired yet.
    task_id = run.stem_ids[0]
    for attempt in range(3):
        if attempt:
            run.history.new_episode()
            task_id = run.history.task_scheduled(GENERATE_STEM)
        run.history.task_failed(task_id, HOST_REASON, HOST_DETAILS)
        timer = run.history.timer_created(run.history.now + timedelta(seconds=5))
        if attempt < 2:
            run.history.new_episode(after=timedelta(seconds=5))
            run.history.timer_fired(timer, run.history.now)

    assert run.replay().custom_status["stems"]["guitar"] == "pending"

    run.history.new_episode(after=timedelta(seconds=5))
    run.history.timer_fired(timer, run.history.now)
    assert run.replay().custom_status["stems"]["guitar"] == "failed"


def test_every_stem_failing_still_finalizes_and_calls_back() -> None:
    run = Run(make_request(["guitar", "bass"]))
    traceback = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad bpm\n'
    run.fail_stem(1, reason="boom", details=traceback)
    run.fail_stem(0, reason="bang", details="")
    failed = [
        {"stem": "guitar", "error": "bang"},
        {"stem": "bass", "error": "boom: ValueError: bad bpm"},
    ]
    assert run.last.actions[-1]["input"]["stems"] == []
    assert run.last.actions[-1]["input"]["failed_stems"] == failed

    run.finish_activity(FINALIZE_GENERATION, MANIFEST)
    payload = run.last.actions[-1]["input"]["payload"]
    assert payload["status"] == "failed"
    assert payload["stems"] == []
    last = run.finish_activity(SEND_CALLBACK, DELIVERED)
    assert last.error == ("2 of 2 stems failed: guitar (bang); bass (boom: ValueError: bad bpm)")


def test_long_errors_are_cut_to_one_short_line() -> None:
    run = Run(make_request(["guitar"]))
    run.fail_stem(0, reason="x" * 1000, details="second\nthird")

    error = run.last.actions[-1]["input"]["failed_stems"][0]["error"]
    assert len(error) == 300
    assert error.endswith("...")
    assert "\n" not in error


def test_finalize_failing_after_retries_still_sends_the_failure_callback() -> None:
    run = Run(make_request())
    run.complete_stems()
    last = run.fail_activity_with_retries(FINALIZE_GENERATION, "blob storage unavailable")

    assert last.function_names == [GENERATE_STEM] * 3 + [FINALIZE_GENERATION, SEND_CALLBACK]
    summary = "the manifest could not be written: blob storage unavailable"
    payload = last.actions[-1]["input"]["payload"]
    assert payload["status"] == "failed"
    assert payload["error"] == summary
    assert payload["manifest_url"] is None
    assert len(payload["stems"]) == 3

    last = run.finish_activity(SEND_CALLBACK, DELIVERED)
    assert last.error == summary
    assert isinstance(last.exception, StemGenerationFailed)
    assert last.custom_status["phase"] == "done"
    assert last.custom_status["manifest_url"] is None
    assert last.custom_status["callback"] == DELIVERED


def test_a_crashed_callback_activity_is_recorded_not_fatal() -> None:
    run = Run(make_request())
    run.complete_stems()
    run.finish_activity(FINALIZE_GENERATION, MANIFEST)
    task_id = run.record_last_action(SEND_CALLBACK)
    run.history.new_episode()
    run.history.task_failed(task_id, "worker crashed")
    last = run.replay()

    assert last.is_done
    assert last.output["callback"] == {"delivered": False, "error": "worker crashed"}


# -- determinism --------------------------------------------------------------------------------


def test_replaying_the_same_history_gives_the_same_answer() -> None:
    run = Run(make_request())
    run.complete_stems([2, 0])
    run.fail_stem(1)
    run.finish_activity(FINALIZE_GENERATION, MANIFEST)
    run.history.new_episode()

    first = replay(orchestrate, run.history)
    second = replay(orchestrate, run.history)
    assert first.state == second.state
    assert first.actions == second.actions

    # Later episodes replay the earlier decisions unchanged: the actions only grow.
    earlier = Run(make_request())
    earlier.complete_stems([2, 0])
    assert first.actions[: len(earlier.last.actions)] == earlier.last.actions


# -- the uploaded track ---------------------------------------------------------------------

ANALYSIS = {
    "bpm": 96.0,
    "first_downbeat_s": 0.31,
    "key": "A minor",
    "duration_s": 30.0,
    "sample_rate": 44100,
    "channels": 2,
    "warnings": [],
}


def upload_request(**parameters: Any) -> dict[str, Any]:
    return make_request(audio_file_id="my-track.wav", parameters=parameters)


def analyzed(request: dict[str, Any], analysis: dict[str, Any]) -> tuple[History, Replay]:
    """A run whose first episode scheduled analyze_upload, which then returned ``analysis``."""
    history = History(request, name="stem_generation_orchestrator")
    first = replay(orchestrate, history)
    assert first.function_names == [ANALYZE_UPLOAD]
    assert first.actions[0]["actionType"] == CALL_ACTIVITY_WITH_RETRY
    assert first.actions[0]["input"] == {"request": request}
    assert first.custom_status == status("analyzing", dict.fromkeys(STEMS, "pending"))
    task = history.task_scheduled(ANALYZE_UPLOAD, first.actions[0]["input"])
    history.new_episode()
    history.task_completed(task, analysis)
    return history, replay(orchestrate, history)


def test_an_upload_is_analysed_first_and_every_stem_follows_it() -> None:
    request = upload_request(duration_seconds=10)
    analysis = {**ANALYSIS, "warnings": ["key not detected: silence"]}
    history, last = analyzed(request, {"ok": True, "analysis": analysis})

    assert last.function_names == [ANALYZE_UPLOAD] + [GENERATE_STEM] * 3
    assert [a["input"]["upload"] for a in last.scheduled(GENERATE_STEM)] == [analysis] * 3
    # A poller sees the upload's tempo and key, and the warnings, while stems are made.
    assert last.custom_status == {
        **status("generating", dict.fromkeys(STEMS, "pending")),
        "musical": {"upload": analysis},
        "warnings": ["upload: key not detected: silence"],
    }
    ids = [history.task_scheduled(GENERATE_STEM, a["input"]) for a in last.scheduled(GENERATE_STEM)]
    history.new_episode()
    for index, task in enumerate(ids):
        history.task_completed(task, stem_result(STEMS[index], index))
    last = replay(orchestrate, history)
    finalize = last.actions[-1]["input"]
    assert finalize["upload"] == analysis
    assert finalize["warnings"] == ["upload: key not detected: silence"]


def test_an_unusable_upload_that_the_request_needs_ends_it_before_any_stem() -> None:
    request = upload_request(bars=8)  # no target_bpm: the tempo must come from the upload
    error = "audio_file_id 'my-track.wav' (blob 'uploads/my-track.wav' in 'a'): no such upload"
    history, last = analyzed(request, {"ok": False, "error": error})

    assert last.function_names == [ANALYZE_UPLOAD, SEND_CALLBACK]
    payload = last.actions[-1]["input"]["payload"]
    summary = f"the uploaded track cannot be used: {error}"
    assert (payload["status"], payload["error"], payload["stems"]) == ("failed", summary, [])
    task = history.task_scheduled(SEND_CALLBACK, last.actions[-1]["input"])
    history.new_episode()
    history.task_completed(task, DELIVERED)
    last = replay(orchestrate, history)
    assert last.error == summary
    assert isinstance(last.exception, StemGenerationFailed)
    assert last.custom_status["stems"] == dict.fromkeys(STEMS, "skipped")
    assert last.custom_status["error"] == summary


def test_an_unusable_upload_the_request_does_not_need_is_a_warning() -> None:
    request = upload_request(target_bpm=120)
    history, last = analyzed(request, {"ok": False, "error": "not a readable audio file"})

    assert last.function_names == [ANALYZE_UPLOAD] + [GENERATE_STEM] * 3
    assert all(a["input"]["upload"] is None for a in last.scheduled(GENERATE_STEM))
    assert last.custom_status["warnings"] == ["upload not used: not a readable audio file"]
    assert "musical" not in last.custom_status
    ids = [history.task_scheduled(GENERATE_STEM, a["input"]) for a in last.scheduled(GENERATE_STEM)]
    history.new_episode()
    for index, task in enumerate(ids):
        history.task_completed(task, stem_result(STEMS[index], index))
    last = replay(orchestrate, history)
    assert last.actions[-1]["input"]["warnings"] == ["upload not used: not a readable audio file"]


def test_an_analysis_that_keeps_failing_is_reported_like_an_unusable_upload() -> None:
    request = upload_request(duration_seconds=10)
    history = History(request, name="stem_generation_orchestrator")
    first = replay(orchestrate, history)
    task = history.task_scheduled(ANALYZE_UPLOAD, first.actions[0]["input"])
    history.new_episode()
    history.fail_attempts(
        task,
        name=ANALYZE_UPLOAD,
        retry=RETRY,
        failures=RETRY.max_number_of_attempts,
        reason="Activity function 'analyze_upload' failed: ",
        details="StorageError: storage download failed: cannot reach the storage endpoint",
    )
    last = replay(orchestrate, history)
    assert last.function_names[-1] == SEND_CALLBACK
    error = last.actions[-1]["input"]["payload"]["error"]
    assert error.startswith("the uploaded track cannot be used: Activity function")
    assert "cannot reach the storage endpoint" in error


# -- ACE-Step: a guide without an upload, lego over one ------------------------------------------

GUIDE = {
    "file": "generations/req-1/guide.flac",
    "blob_url": "https://blobs.test/stems/generations/req-1/guide.flac",
    "engine": "ace_step",
    "model_id": "ACE-Step/acestep-v15-xl-base-diffusers",
    "task": "text2music",
    "seed": 7,
    "samples": 480000,
    "sample_rate": 48000,
    "warnings": [],
}


def ace_step_request(**fields: Any) -> dict[str, Any]:
    parameters = {"target_bpm": 120, "duration_seconds": 10, "style": "rock", "engine": "ace_step"}
    return make_request(parameters=parameters, **fields)


def test_ace_step_without_an_upload_makes_the_guide_before_the_fan_out() -> None:
    request = ace_step_request()
    history = History(request, name="stem_generation_orchestrator")
    first = replay(orchestrate, history)
    assert first.function_names == [GENERATE_GUIDE]
    assert first.actions[0]["actionType"] == CALL_ACTIVITY_WITH_RETRY
    assert first.actions[0]["input"] == {"request": request}
    assert first.custom_status == status("generating", dict.fromkeys(STEMS, "pending"))

    task = history.task_scheduled(GENERATE_GUIDE, first.actions[0]["input"])
    history.new_episode()
    history.task_completed(task, GUIDE)
    fanned = replay(orchestrate, history)
    assert fanned.function_names == [GENERATE_GUIDE] + [GENERATE_STEM] * 3
    for index, action in enumerate(fanned.scheduled(GENERATE_STEM)):
        assert action["input"] == {
            "request": request,
            "upload": None,
            "guide": GUIDE,
            "stem": STEMS[index],
            "stem_index": index,
        }

    ids = [
        history.task_scheduled(GENERATE_STEM, a["input"]) for a in fanned.scheduled(GENERATE_STEM)
    ]
    history.new_episode()
    for index, stem_task in enumerate(ids):
        result = {**stem_result(STEMS[index], index), "engine": "ace_step", "task": "extract"}
        history.task_completed(stem_task, result)
    finalizing = replay(orchestrate, history)
    finalize = finalizing.actions[-1]
    assert finalize["functionName"] == FINALIZE_GENERATION
    assert finalize["input"]["guide"] == GUIDE
    finalize_task = history.task_scheduled(FINALIZE_GENERATION, finalize["input"])
    history.new_episode()
    history.task_completed(finalize_task, MANIFEST)
    last = replay(orchestrate, history)
    callback = last.actions[-1]["input"]["payload"]
    assert {(s["engine"], s["task"]) for s in callback["stems"]} == {("ace_step", "extract")}


def test_a_guide_that_keeps_failing_fails_every_stem_and_still_reports() -> None:
    request = ace_step_request()
    history = History(request, name="stem_generation_orchestrator")
    first = replay(orchestrate, history)
    task = history.task_scheduled(GENERATE_GUIDE, first.actions[0]["input"])
    history.new_episode()
    history.fail_attempts(
        task,
        name=GENERATE_GUIDE,
        retry=RETRY,
        failures=RETRY.max_number_of_attempts,
        reason="Activity function 'generate_guide' failed: ",
        details=json.dumps(
            {"Message": "Exception: AceStepLoadError: no weights", "StackTrace": ""}
        ),
    )
    last = replay(orchestrate, history)
    assert last.function_names == [GENERATE_GUIDE, FINALIZE_GENERATION]
    finalize = last.actions[-1]["input"]
    assert "guide" not in finalize and finalize["stems"] == []
    assert [f["stem"] for f in finalize["failed_stems"]] == STEMS
    assert all(f["error"].startswith("guide: ") for f in finalize["failed_stems"])
    assert last.custom_status["stems"] == dict.fromkeys(STEMS, "failed")


def test_ace_step_with_an_upload_fans_out_over_it_without_a_guide() -> None:
    request = make_request(
        audio_file_id="my-track.wav", parameters={"engine": "ace_step", "duration_seconds": 10}
    )
    _, last = analyzed(request, {"ok": True, "analysis": ANALYSIS})
    assert last.function_names == [ANALYZE_UPLOAD] + [GENERATE_STEM] * 3
    assert all("guide" not in a["input"] for a in last.scheduled(GENERATE_STEM))
    assert [a["input"]["upload"] for a in last.scheduled(GENERATE_STEM)] == [ANALYSIS] * 3
