"""The one clock of the shell.

The pure core never reads the time; the shell reads it only through a `Clock` handed
down from `service.py`, so a test can run the processor, the timers and the web layer
against a real Redis with a clock it moves by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]  # epoch milliseconds


def system_clock() -> int:
    return time.time_ns() // 1_000_000


class ManualClock:
    """A clock a test sets and advances; callable like `system_clock`."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms
