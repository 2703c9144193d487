"""A tiny stand-in for the Durable host: replay, run the scheduled activities, repeat.

The Functions host (and so the Durable extension) cannot run in the test environment. This
driver plays its part for activity-only orchestrators: it replays the orchestrator through
azure-functions-durable's real replay (``durable_history.replay``) over the history written
so far, records each newly scheduled activity as ``TaskScheduled``, calls the activity's
Python function for real with the decoded input, records the outcome (``TaskCompleted``,
or ``TaskFailed`` shaped as the host reports it, plus the retry timers the extension would
create), and replays again until the orchestration completes or fails.

Simplifications, each one deliberate:

- One activity runs at a time, in the order the orchestrator scheduled them, and each runs
  through all its attempts before the next starts. Fan-out still happens in the
  orchestrator (it schedules every stem at once); only the execution is sequential, so the
  completion order is the scheduling order.
- Every outcome lands in a new episode, and the orchestrator is replayed after each one, as
  the host does. The orchestration clock starts at the real start time and advances by each
  attempt's real run time; a retry's back-off passes on that clock only (nobody sleeps).
- Retries follow the action's ``retryOptions`` as ``History.fail_attempts`` models them: a
  failure, the back-off timer created and fired, the next attempt scheduled; after the last
  attempt one more timer fires before the SDK reports the task failed.
- ``deliveries`` runs an activity attempt more than once in a row, to simulate the
  at-least-once delivery of the real host; only the last delivery's outcome is recorded
  (the extension drops a duplicate completion for a task it has already seen completed).
- Only activity calls (with or without retry) are supported; timers, sub-orchestrations,
  external events and entities raise ``NotImplementedError``.
- Activities are called in-process with the decoded JSON input, and their result must
  round-trip through JSON as it would over the host's wire.
"""

from __future__ import annotations

import json
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.durable_functions.models.actions.ActionType import ActionType

from tests.orchestrators.durable_history import History, Replay, replay

Activity = Callable[[Any], Any]

_SUPPORTED = {ActionType.CALL_ACTIVITY, ActionType.CALL_ACTIVITY_WITH_RETRY}


@dataclass(frozen=True)
class Execution:
    """One delivery of one attempt of one activity call, as the driver ran it."""

    name: str
    input: Any
    attempt: int  # 1-based, per scheduled call
    delivery: int  # 1-based, per attempt (more than one only with ``deliveries``)
    result: Any = None
    error: Exception | None = None

    @property
    def succeeded(self) -> bool:
        return self.error is None


def host_failure(name: str, error: BaseException) -> tuple[str, str]:
    """``TaskFailed``'s ``Reason`` and ``Details`` for an activity that raised ``error``.

    The shape the Functions host reports for a Python activity: a reason naming the
    function, and JSON details whose ``Message`` starts with ``Exception: Type: text``.
    """
    stack = "".join(traceback.format_tb(error.__traceback__))
    message = f"Exception: {type(error).__name__}: {error}\nStack: {stack}"
    return f"Activity function '{name}' failed: ", json.dumps(
        {"Message": message, "StackTrace": stack}
    )


@dataclass
class DurableDriver:
    """Run ``orchestrator`` to its end with ``activities`` (name -> function) doing the work.

    ``run()`` returns the final ``Replay``: ``is_done`` with ``output`` when it completed,
    ``error`` (and ``exception``) when it failed. ``executions`` logs every activity run in
    order; ``history`` is the history written, ready to replay again.
    """

    orchestrator: Callable[..., Any]
    input: Any
    activities: Mapping[str, Activity]
    name: str = "orchestrator"
    instance_id: str = "test-instance"
    deliveries: Mapping[str, int] = field(default_factory=dict)
    max_replays: int = 200
    executions: list[Execution] = field(default_factory=list, init=False)
    history: History = field(init=False)

    def __post_init__(self) -> None:
        self.history = History(
            self.input, name=self.name, instance_id=self.instance_id, start=datetime.now(UTC)
        )

    def run(self) -> Replay:
        queue: deque[tuple[int, dict[str, Any]]] = deque()
        recorded = 0  # replays list every action scheduled so far, completed ones included
        for _ in range(self.max_replays):
            last = replay(self.orchestrator, self.history)
            if last.is_done or last.error is not None:
                return last
            for action in last.actions[recorded:]:
                action_type = ActionType(action["actionType"])
                if action_type not in _SUPPORTED:
                    raise NotImplementedError(f"the driver cannot run a {action_type.name} action")
                task_id = self.history.task_scheduled(action["functionName"], action["input"])
                queue.append((task_id, action))
            recorded = len(last.actions)
            if not queue:
                raise RuntimeError("the orchestration waits, but on nothing the driver runs")
            self._run_call(*queue.popleft())
        raise RuntimeError(f"the orchestration did not finish within {self.max_replays} replays")

    def _run_call(self, task_id: int, action: dict[str, Any]) -> None:
        """Run one scheduled call through its attempts, recording each outcome."""
        name, input_ = action["functionName"], action["input"]
        retry = action.get("retryOptions")
        max_attempts = retry["maxNumberOfAttempts"] if retry else 1
        for attempt in range(1, max_attempts + 1):
            started = time.perf_counter()
            execution = self._attempt(name, input_, attempt)
            self.history.new_episode(after=timedelta(seconds=time.perf_counter() - started))
            if execution.error is None:
                self.history.task_completed(task_id, execution.result)
                return
            self.history.task_failed(task_id, *host_failure(name, execution.error))
            if retry is None:
                return
            back_off = timedelta(milliseconds=retry["firstRetryIntervalInMilliseconds"])
            fire_at = self.history.now + back_off
            timer_id = self.history.timer_created(fire_at)
            self.history.new_episode(after=back_off)
            self.history.timer_fired(timer_id, fire_at)
            if attempt < max_attempts:
                task_id = self.history.task_scheduled(name, input_)

    def _attempt(self, name: str, input_: Any, attempt: int) -> Execution:
        function = self.activities[name]
        execution = None
        for delivery in range(1, self.deliveries.get(name, 1) + 1):
            try:
                # Through JSON both ways, as over the host's wire.
                result = json.loads(json.dumps(function(json.loads(json.dumps(input_)))))
            except Exception as error:  # noqa: BLE001 - the host records any failure
                execution = Execution(name, input_, attempt, delivery, error=error)
            else:
                execution = Execution(name, input_, attempt, delivery, result=result)
            self.executions.append(execution)
        assert execution is not None
        return execution
