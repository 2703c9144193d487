"""Synthetic orchestration histories, replayed through azure-functions-durable's real executor.

The Durable extension wakes a Python orchestrator with its whole history (a JSON list of
DTFx events); the SDK re-runs the generator from the top, feeding it the recorded results,
and answers with the actions scheduled so far plus output, error and custom status. This
module writes such histories by hand and runs an orchestrator over them exactly as the host
would (``Orchestrator.handle`` on a ``DurableOrchestrationContext`` parsed from JSON), so no
part of the durable library is mocked.

Event ids: the SDK numbers tasks itself, in the order it meets them during replay (a task
when the orchestrator first yields it; a retry timer when the attempt's ``TaskFailed`` is
replayed; a re-scheduled attempt when that timer's ``TimerFired`` is replayed), and matches
completions by ``TaskScheduledId``/``TimerId``. ``History`` hands out ids from one counter in
call order, so write events in the order the orchestrator would schedule them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.durable_functions.constants import DATETIME_STRING_FORMAT
from azure.durable_functions.models import DurableOrchestrationContext, RetryOptions
from azure.durable_functions.models.history.HistoryEventType import HistoryEventType
from azure.durable_functions.orchestrator import Orchestrator

START = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)

# The executor raises ``Exception(f"{error}{marker}{state_json}")`` when the orchestrator
# raises; the state after the marker still carries the actions and custom status.
_OUT_OF_PROC_MARKER = "\n\n$OutOfProcData$:"


@dataclass(frozen=True)
class Replay:
    """What one replay answered to the extension.

    ``actions`` are the atomic actions scheduled so far (completed ones included), in
    scheduling order, with ``WhenAll``/``WhenAny`` wrappers flattened and each ``input``
    decoded from its JSON string.
    """

    is_done: bool
    output: Any
    error: str | None
    custom_status: Any
    actions: list[dict[str, Any]]
    state: dict[str, Any]
    exception: BaseException | None = None

    def scheduled(self, function_name: str) -> list[dict[str, Any]]:
        """The actions calling ``function_name``, in scheduling order."""
        return [a for a in self.actions if a.get("functionName") == function_name]

    @property
    def function_names(self) -> list[str]:
        return [a.get("functionName", "") for a in self.actions]


@dataclass
class History:
    """A hand-written orchestration history, one episode after another.

    It opens with ``OrchestratorStarted`` + ``ExecutionStarted`` (the first episode) at
    ``start``. ``new_episode`` closes the current episode and opens the next one later on
    the clock; the last episode is the one being "woken up" by the replay.
    """

    input: Any
    name: str = "orchestrator"
    instance_id: str = "test-instance"
    start: datetime = START
    # 1 is ReplaySchema.V2: actions come back as one flat list with WhenAll/WhenAny
    # compound actions, as current Durable extensions ask for. 0 is the legacy V1 shape.
    schema_version: int = 1
    events: list[dict[str, Any]] = field(default_factory=list)
    _clock: datetime = field(init=False)
    _next_id: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._clock = self.start
        self._append(HistoryEventType.ORCHESTRATOR_STARTED)
        self._append(
            HistoryEventType.EXECUTION_STARTED,
            Name=self.name,
            Version="",  # the SDK reads it; the host always sends one
            Input=json.dumps(self.input),
            OrchestrationInstance={"InstanceId": self.instance_id, "ExecutionId": "exec-1"},
        )

    @property
    def now(self) -> datetime:
        """The current episode's clock (what ``context.current_utc_datetime`` will say)."""
        return self._clock

    # -- episodes ---------------------------------------------------------------------------

    def new_episode(self, after: timedelta = timedelta(seconds=1)) -> History:
        """Close the current episode and start the next one ``after`` later."""
        self._append(HistoryEventType.ORCHESTRATOR_COMPLETED)
        self._clock += after
        self._append(HistoryEventType.ORCHESTRATOR_STARTED)
        return self

    # -- what the orchestrator scheduled ----------------------------------------------------

    def task_scheduled(self, name: str, input_: Any = None) -> int:
        """Record an activity the orchestrator scheduled; returns its event id."""
        event_id = self._take_id()
        self._append(HistoryEventType.TASK_SCHEDULED, event_id, Name=name, Input=json.dumps(input_))
        return event_id

    def timer_created(self, fire_at: datetime) -> int:
        """Record a durable timer (retry back-off timers included); returns its event id."""
        event_id = self._take_id()
        self._append(HistoryEventType.TIMER_CREATED, event_id, FireAt=_stamp(fire_at))
        return event_id

    # -- what came back ---------------------------------------------------------------------

    def task_completed(self, task_id: int, result: Any) -> History:
        self._append(
            HistoryEventType.TASK_COMPLETED, TaskScheduledId=task_id, Result=json.dumps(result)
        )
        return self

    def task_failed(self, task_id: int, reason: str, details: str = "") -> History:
        self._append(
            HistoryEventType.TASK_FAILED, TaskScheduledId=task_id, Reason=reason, Details=details
        )
        return self

    def timer_fired(self, timer_id: int, fire_at: datetime) -> History:
        self._append(HistoryEventType.TIMER_FIRED, TimerId=timer_id, FireAt=_stamp(fire_at))
        return self

    def fail_attempts(
        self,
        task_id: int,
        *,
        name: str,
        retry: RetryOptions,
        failures: int,
        reason: str,
        details: str = "",
        input_: Any = None,
    ) -> int | None:
        """Record ``failures`` failed attempts of a ``call_activity_with_retry`` task.

        Each failure is followed by the retry back-off timer and its firing (a new episode),
        then by the next attempt's ``TaskScheduled`` while attempts remain. Returns the
        running attempt's event id, or ``None`` once ``retry.max_number_of_attempts`` have
        failed: then the task has failed for good, which the SDK reports only after one
        more back-off timer fires (DTFx semantics, mirrored by ``RetryAbleTask``). The first
        failure lands in the current episode, later ones each in their own.
        """
        if not 1 <= failures <= retry.max_number_of_attempts:
            raise ValueError(f"failures must be 1..{retry.max_number_of_attempts}")
        back_off = timedelta(milliseconds=retry.first_retry_interval_in_milliseconds)
        for attempt in range(1, failures + 1):
            if attempt > 1:
                self.new_episode()
            self.task_failed(task_id, reason, details)
            fire_at = self._clock + back_off
            timer_id = self.timer_created(fire_at)
            self.new_episode(after=back_off)
            self.timer_fired(timer_id, fire_at)
            if attempt == retry.max_number_of_attempts:
                return None
            task_id = self.task_scheduled(name, input_)
        return task_id

    # -- output -----------------------------------------------------------------------------

    def to_json(self) -> str:
        """The orchestration trigger's payload, as the host hands it to the worker."""
        last_started = max(
            i
            for i, e in enumerate(self.events)
            if e["EventType"] == HistoryEventType.ORCHESTRATOR_STARTED
        )
        # Events of finished episodes are marked played, as the extension does.
        history = [{**e, "IsPlayed": i < last_started} for i, e in enumerate(self.events)]
        return json.dumps(
            {
                "history": history,
                "instanceId": self.instance_id,
                "isReplaying": last_started > 0,
                "parentInstanceId": None,
                "input": json.dumps(self.input),
                "upperSchemaVersion": self.schema_version,
            }
        )

    def context(self) -> DurableOrchestrationContext:
        return DurableOrchestrationContext.from_json(self.to_json())

    # -- internals --------------------------------------------------------------------------

    def _take_id(self) -> int:
        event_id = self._next_id
        self._next_id += 1
        return event_id

    def _append(self, event_type: HistoryEventType, event_id: int = -1, **fields: Any) -> None:
        self.events.append(
            {
                "EventType": int(event_type),
                "EventId": event_id,
                "IsPlayed": False,
                "Timestamp": _stamp(self._clock),
                **fields,
            }
        )


def replay(orchestrator_function: Any, history: History) -> Replay:
    """Run a generator orchestrator over ``history`` through ``Orchestrator.handle``."""
    return _run(lambda: Orchestrator(orchestrator_function).handle(history.context()))


def replay_registered(handle: Any, history: History) -> Replay:
    """Run the callable a blueprint registered with the host (it takes the raw JSON body)."""
    return _run(lambda: handle(history.to_json()))


def _run(invoke: Any) -> Replay:
    exception: BaseException | None = None
    try:
        state_json = invoke()
    except Exception as error:
        message = str(error)
        if _OUT_OF_PROC_MARKER not in message:
            raise
        state_json = message.split(_OUT_OF_PROC_MARKER, 1)[1]
        exception = error.__cause__
    state = json.loads(state_json)
    return Replay(
        is_done=state["isDone"],
        output=state.get("output"),
        error=state.get("error"),
        custom_status=state.get("customStatus"),
        actions=_flatten(state["actions"]),
        state=state,
        exception=exception,
    )


def _flatten(actions: Any) -> list[dict[str, Any]]:
    flat: list[dict[str, Any]] = []
    if isinstance(actions, list):
        for item in actions:
            flat.extend(_flatten(item))
    elif "compoundActions" in actions:
        flat.extend(_flatten(actions["compoundActions"]))
    else:
        action = dict(actions)
        if isinstance(action.get("input"), str):
            action["input"] = json.loads(action["input"])
        flat.append(action)
    return flat


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(DATETIME_STRING_FORMAT)
