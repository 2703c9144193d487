"""The durable orchestrator: one stem generation request, fanned out and delivered.

It only decides: every side effect is an activity, and the code reads nothing but its
input, the task results replayed from history and ``context.current_utc_datetime`` (no
I/O, clocks, random numbers or environment), so each replay makes the same decisions.
Payloads are JSON dicts holding blob names and URLs, never audio: large payloads spill
into blobs and slow every replay.

Flow::

    [analyze_upload (with an audio_file_id; retried)]
        -> [generate_guide (engine ace_step without a usable upload; retried)]
        -> generate_stem x N (in parallel, each retried)
        -> finalize_generation (mix + manifest; retried)
        -> send_callback (last; retries HTTP itself and never raises)

An upload that cannot be used (missing, not audio, ...) ends the request before any stem
is generated when the request needs it for its tempo (no ``target_bpm``); otherwise the
stems are generated without it and a warning says why.

Input: ``GenerationRequest.model_dump(mode="json")`` with ``seed`` filled. A stem that
still fails after its retries does not stop the others: the good stems, the manifest and a
``"failed"`` callback are delivered, then the orchestration ends Failed with
``StemGenerationFailed`` naming what failed. Custom status, updated as each stem finishes::

    {"phase": "analyzing" | "generating" | "finalizing" | "notifying" | "done",
     "stems": {"guitar": "pending" | "completed" | "failed" | "skipped", ...},
     "completed": n, "failed": n, "total": n}

plus, with an upload, ``musical: {"upload": <its analysis>}`` and the ``warnings`` so far
while the stems are made; once ``"done"``: ``failed_stems``, ``manifest_url``,
``mix_url``, ``musical``, ``warnings``, ``callback`` and ``error``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskBase, TaskState

from generation.stems.record import StemRecord
from generation.stems.track import as_set_warnings

logger = logging.getLogger(__name__)

bp = df.Blueprint()

ANALYZE_UPLOAD = "analyze_upload"
GENERATE_GUIDE = "generate_guide"
GENERATE_STEM = "generate_stem"
FINALIZE_GENERATION = "finalize_generation"
SEND_CALLBACK = "send_callback"

# Three attempts, the first retry 5 s after a failure: enough to ride out a transient
# blob-storage error or a worker recycled mid-generation (activities are idempotent, so a
# retry rewrites the same blob), few enough that a stem which fails deterministically
# (bad parameters, model load error) reports back within a minute instead of holding the
# callback hostage. The Python SDK has no backoff coefficient: retries are evenly spaced.
RETRY_FIRST_INTERVAL_MS = 5000
RETRY_MAX_ATTEMPTS = 3
RETRY = df.RetryOptions(
    first_retry_interval_in_milliseconds=RETRY_FIRST_INTERVAL_MS,
    max_number_of_attempts=RETRY_MAX_ATTEMPTS,
)

# Error strings go into custom status, the callback and the failure message: keep them
# one line and short (task failure details can carry a whole stack trace).
MAX_ERROR_CHARS = 300

OrchestrationGenerator = Generator[TaskBase, Any, dict[str, Any]]


class StemGenerationFailed(Exception):
    """The request was not fully delivered: a stem failed after retries or no manifest.

    Raised last, after the good stems, the manifest and the failure callback went out, so
    the orchestration ends Failed with this one-line summary as its error.
    """


def orchestrate(context: df.DurableOrchestrationContext) -> OrchestrationGenerator:
    """Generate every requested stem, write the manifest, then call back.

    Returns the output for a fully successful request; raises ``StemGenerationFailed``
    otherwise (after delivering what succeeded).
    """
    request: dict[str, Any] = context.get_input()
    started_at = context.current_utc_datetime.isoformat()
    stems: list[str] = list(request["target_stems"])
    progress = {stem: "pending" for stem in stems}
    warnings: list[str] = []

    upload: dict[str, Any] | None = None
    if request.get("audio_file_id"):
        context.set_custom_status(_status("analyzing", progress))
        analysis = yield from _analyze_upload(context, request)
        if analysis["ok"]:
            upload = analysis["analysis"]
            warnings += as_set_warnings(upload.get("warnings", []))
        elif request["parameters"].get("target_bpm") is None:
            # The request's tempo (and bars) come from the upload: nothing can be generated.
            return (yield from _refuse(context, request, stems, started_at, analysis["error"]))
        else:
            warnings.append(f"upload not used: {analysis['error']}")
    # What is known before the stems: a poller shows the upload's tempo and key, and the
    # warnings, while the stems are made (the final status repeats them in full).
    known: dict[str, Any] = {}
    if upload is not None:
        known["musical"] = {"upload": upload}
    if warnings:
        known["warnings"] = list(warnings)
    context.set_custom_status(_status("generating", progress, known))
    guide: dict[str, Any] | None = None
    if request["parameters"].get("engine") == "ace_step" and upload is None:
        # Without a track to play along with, the stems come out of one guide performance.
        guide = yield from _generate_guide(context, request)
    if guide is not None and not guide["ok"]:
        results: dict[int, dict[str, Any]] = {}
        errors = {i: f"guide: {guide['error']}" for i in range(len(stems))}
        progress.update({stem: "failed" for stem in stems})
    else:
        results, errors = yield from _fan_out(
            context, request, upload, progress, known=known, guide=guide
        )

    # Fan-in in request order, whatever order the stems finished in.
    succeeded = [results[i] for i in range(len(stems)) if i in results]
    failed_stems = [
        {"stem": stems[i], "error": errors[i]} for i in range(len(stems)) if i in errors
    ]

    context.set_custom_status(_status("finalizing", progress, known))
    manifest_url: str | None = None
    mix_url: str | None = None
    manifest_error: str | None = None
    musical: dict[str, Any] | None = succeeded[0].get("musical") if succeeded else None
    try:
        finalize: dict[str, Any] = {
            "request": request,
            "stems": succeeded,
            "failed_stems": failed_stems,
            "started_at": started_at,
            "upload": upload,
            "warnings": warnings,
        }
        if guide is not None and guide["ok"]:
            finalize["guide"] = guide["guide"]
        manifest = yield context.call_activity_with_retry(FINALIZE_GENERATION, RETRY, finalize)
        manifest_url = manifest["manifest_url"]
        mix_url = manifest["mix_url"]
        musical = manifest["musical"]
        warnings = manifest["warnings"]
    except Exception as error:  # noqa: BLE001 - the SDK raises a bare Exception for a failed task
        manifest_error = _one_line(error)

    callback = yield from _deliver(
        context,
        request,
        progress,
        started_at=started_at,
        succeeded=succeeded,
        failed_stems=failed_stems,
        error_summary=_summary(stems, failed_stems, manifest_error),
        musical=musical,
        mix_url=mix_url,
        manifest_url=manifest_url,
        warnings=warnings,
    )
    return {
        "generation_request_id": request["generation_request_id"],
        "status": "completed",
        "stems": succeeded,
        "failed_stems": [],
        "manifest_url": manifest_url,
        "mix_url": mix_url,
        "callback": callback,
    }


def _analyze_upload(
    context: df.DurableOrchestrationContext, request: dict[str, Any]
) -> Generator[TaskBase, Any, dict[str, Any]]:
    """The upload's analysis: ``{"ok": True, "analysis"}`` or ``{"ok": False, "error"}``."""
    try:
        analysis: dict[str, Any] = yield context.call_activity_with_retry(
            ANALYZE_UPLOAD, RETRY, {"request": request}
        )
    except Exception as error:  # noqa: BLE001 - the SDK raises a bare Exception for a failed task
        analysis = {"ok": False, "error": _one_line(error)}
    return analysis


def _generate_guide(
    context: df.DurableOrchestrationContext, request: dict[str, Any]
) -> Generator[TaskBase, Any, dict[str, Any]]:
    """The guide performance: ``{"ok": True, "guide": <its record>}`` or ``{"ok": False,
    "error"}`` once its retries are spent."""
    try:
        record: dict[str, Any] = yield context.call_activity_with_retry(
            GENERATE_GUIDE, RETRY, {"request": request}
        )
    except Exception as error:  # noqa: BLE001 - the SDK raises a bare Exception for a failed task
        return {"ok": False, "error": _one_line(error)}
    return {"ok": True, "guide": record}


def _fan_out(
    context: df.DurableOrchestrationContext,
    request: dict[str, Any],
    upload: dict[str, Any] | None,
    progress: dict[str, str],
    *,
    known: dict[str, Any],
    guide: dict[str, Any] | None = None,
) -> Generator[TaskBase, Any, tuple[dict[int, dict[str, Any]], dict[int, str]]]:
    """One ``generate_stem`` per stem, in parallel; results and one-line errors by index.
    ``progress`` and the custom status (with ``known``) follow each stem as it finishes."""
    stems: list[str] = list(request["target_stems"])
    payload: dict[str, Any] = {"request": request, "upload": upload}
    if guide is not None:
        payload["guide"] = guide["guide"]
    tasks = [
        context.call_activity_with_retry(
            GENERATE_STEM, RETRY, {**payload, "stem": stem, "stem_index": index}
        )
        for index, stem in enumerate(stems)
    ]
    results: dict[int, dict[str, Any]] = {}
    errors: dict[int, str] = {}
    pending = dict(enumerate(tasks))
    while pending:
        # task_any hands back the child task that finished first, failed or not: it never
        # raises, so a failure is read off the child's state (its result is the exception).
        finished: TaskBase = yield context.task_any(list(pending.values()))
        index = next(i for i, task in pending.items() if task is finished)
        del pending[index]
        if finished.state is TaskState.FAILED:
            errors[index] = _one_line(finished.result)
            progress[stems[index]] = "failed"
            if not context.is_replaying:
                logger.warning("stem %s failed after retries: %s", stems[index], errors[index])
        else:
            results[index] = finished.result
            progress[stems[index]] = "completed"
        context.set_custom_status(_status("generating", progress, known))
    return results, errors


def _notify(
    context: df.DurableOrchestrationContext,
    request: dict[str, Any],
    payload: dict[str, Any],
    progress: dict[str, str],
) -> Generator[TaskBase, Any, dict[str, Any]]:
    """Send the callback (last); its outcome, never an exception."""
    context.set_custom_status(_status("notifying", progress))
    try:
        callback: dict[str, Any] = yield context.call_activity(
            SEND_CALLBACK, {"callback_url": request["callback_url"], "payload": payload}
        )
    except Exception as error:  # noqa: BLE001 - by contract it never raises; a crashed worker can
        callback = {"delivered": False, "error": _one_line(error)}
    return callback


def _deliver(
    context: df.DurableOrchestrationContext,
    request: dict[str, Any],
    progress: dict[str, str],
    *,
    started_at: str,
    succeeded: list[dict[str, Any]],
    failed_stems: list[dict[str, str]],
    error_summary: str | None,
    musical: dict[str, Any] | None,
    mix_url: str | None,
    manifest_url: str | None,
    warnings: list[str],
) -> Generator[TaskBase, Any, dict[str, Any]]:
    """Call back with the outcome, then set the final custom status; raises
    ``StemGenerationFailed`` when ``error_summary`` says something went wrong. Returns the
    callback's outcome."""
    payload = {
        "generation_request_id": request["generation_request_id"],
        "status": "failed" if error_summary else "completed",
        "seed": request.get("seed"),
        "model_id": succeeded[0]["model_id"] if succeeded else None,
        "musical": musical,
        "stems": [
            {key: result.get(key) for key in StemRecord.CALLBACK_FIELDS} for result in succeeded
        ],
        "mix_url": mix_url,
        "failed_stems": failed_stems,
        "warnings": warnings,
        "error": error_summary,
        "manifest_url": manifest_url,
        "timings": {
            "started_at": started_at,
            "finished_at": context.current_utc_datetime.isoformat(),
            "stems": {result["stem"]: result["generation_seconds"] for result in succeeded},
        },
    }
    callback = yield from _notify(context, request, payload, progress)
    context.set_custom_status(
        {
            **_status("done", progress),
            "failed_stems": failed_stems,
            "manifest_url": manifest_url,
            "mix_url": mix_url,
            "musical": musical,
            "warnings": warnings,
            "callback": callback,
            "error": error_summary,
        }
    )
    if error_summary:
        if not context.is_replaying:
            logger.error(
                "generation %s failed: %s", request["generation_request_id"], error_summary
            )
        raise StemGenerationFailed(error_summary)
    return callback


def _refuse(
    context: df.DurableOrchestrationContext,
    request: dict[str, Any],
    stems: list[str],
    started_at: str,
    upload_error: str,
) -> OrchestrationGenerator:
    """End a request whose upload it needs cannot be used: no stem is generated; the
    caller hears why (callback, status) and the orchestration fails with that reason
    (``_deliver`` raises ``StemGenerationFailed``)."""
    return (
        yield from _deliver(
            context,
            request,
            {stem: "skipped" for stem in stems},
            started_at=started_at,
            succeeded=[],
            failed_stems=[],
            error_summary=f"the uploaded track cannot be used: {upload_error}",
            musical=None,
            mix_url=None,
            manifest_url=None,
            warnings=[],
        )
    )


@bp.orchestration_trigger(context_name="context")
def stem_generation_orchestrator(context: df.DurableOrchestrationContext) -> OrchestrationGenerator:
    """The registered orchestrator; the logic lives in ``orchestrate`` so tests can replay it."""
    return (yield from orchestrate(context))


def _status(
    phase: str, progress: dict[str, str], known: dict[str, Any] | None = None
) -> dict[str, Any]:
    states = list(progress.values())
    return {
        "phase": phase,
        "stems": dict(progress),
        "completed": states.count("completed"),
        "failed": states.count("failed"),
        "total": len(states),
        **(known or {}),
    }


def _summary(
    stems: list[str], failed_stems: list[dict[str, str]], manifest_error: str | None
) -> str | None:
    """One line saying what went wrong, or ``None`` when nothing did."""
    parts = []
    if failed_stems:
        listed = "; ".join(f"{f['stem']} ({f['error']})" for f in failed_stems)
        parts.append(f"{len(failed_stems)} of {len(stems)} stems failed: {listed}")
    if manifest_error:
        parts.append(f"the manifest could not be written: {manifest_error}")
    return "; ".join(parts) or None


def _one_line(error: Any) -> str:
    """A task failure as one short line.

    The SDK builds a failed task's exception as ``f"{Reason} \\n {Details}"``. From the
    Functions host the reason reads "Activity function 'generate_stem' failed:" and the
    details are a JSON object whose ``Message`` holds the activity's exception (then its
    stack); plain-text details give their first line (a traceback its last). One line each.
    """
    reason, _, details = str(error).partition(" \n ")
    details = details.strip()
    try:
        decoded = json.loads(details)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and isinstance(decoded.get("Message"), str):
        details = decoded["Message"]
    lines = [line.strip() for line in details.splitlines() if line.strip()]
    # A Python traceback names the error on its last line.
    detail_line = "" if not lines else lines[-1] if lines[0].startswith("Traceback") else lines[0]
    reason_line = " ".join(reason.split()).rstrip(":").strip()
    text = ": ".join(part for part in (reason_line, detail_line) if part)
    text = text or type(error).__name__
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 3] + "..."
    return text
