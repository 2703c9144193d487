import queue
import threading
import time

from generation.engines.gathering import get_before


def test_an_item_waiting_or_arriving_in_the_window_is_taken() -> None:
    waiting: queue.Queue[str] = queue.Queue()
    waiting.put("first")
    assert get_before(waiting, time.monotonic() + 1.0) == "first"
    threading.Timer(0.05, waiting.put, args=("late",)).start()
    assert get_before(waiting, time.monotonic() + 5.0) == "late"


def test_none_once_the_window_has_passed() -> None:
    waiting: queue.Queue[str] = queue.Queue()
    started = time.monotonic()
    assert get_before(waiting, started + 0.05) is None
    assert time.monotonic() - started >= 0.05
    waiting.put("kept")
    assert get_before(waiting, started) is None  # a past deadline does not take it
    assert waiting.qsize() == 1
