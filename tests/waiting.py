"""Waiting on a signal, not on a clock: poll a check until it holds, bounded in time.

The one place the tests poll. A test says what it waits for (an alarm, a metric, a
dead letter, a process gone) and how long that may take at most on a loaded machine;
it never sleeps a fixed time and then asserts that something did or did not happen.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

POLL_S = 0.05


async def until(check: Callable[[], T | Awaitable[T]], timeout: float, what: str, every: float = POLL_S) -> T:
    """Call `check` (sync or async) until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s (last: {value!r})"[:2000])
        await asyncio.sleep(every)


def until_sync(check: Callable[[], T], timeout: float, what: str, every: float = POLL_S) -> T:
    """`until` for threads and sync tests."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s (last: {value!r})"[:2000])
        time.sleep(every)
