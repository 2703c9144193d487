"""What the engines' batchers share: taking requests off a queue within a gathering window."""

from __future__ import annotations

import queue
import time
from typing import TypeVar

T = TypeVar("T")


def get_before(waiting: queue.Queue[T], deadline: float) -> T | None:
    """The next item of ``waiting``, or None once ``deadline`` (``time.monotonic()``
    seconds) has passed without one."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return None
    try:
        return waiting.get(timeout=remaining)
    except queue.Empty:
        return None
