"""What a failure means, and how often each loop is failing.

Every loop of the centre meets two kinds of failure. An *outage* (Redis unreachable,
out of memory, its disk full, the broker gone) is about the world, not the message:
the loop keeps the message, acks nothing and retries, because the message will be fine
once storage is back. Anything else on one message is a *fault*: a bug or an input we
did not foresee. A fault must never end the loop or be retried forever (that is a crash
loop by another name), so the message is dead-lettered or parked with the exception's
class, counted, and the loop goes on. `Faults` keeps the last fault per stage so that a
stage failing on every message is visible on /readyz, not only in the log.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from redis.exceptions import (
    BusyLoadingError,
    ConnectionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TimeoutError,
)

# Server replies that say "not now" about the server, not "never" about the command.
_TRANSIENT_REPLIES = ("OOM", "MISCONF", "READONLY", "LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "NOREPLICAS")

# A stage that failed on its last attempt within this long is reported on /readyz.
FAILING_WINDOW_MS = 60_000


def is_outage(exc: BaseException) -> bool:
    """True when `exc` says storage (or the network) is unavailable: retry, don't drop."""
    if isinstance(exc, (ConnectionError, TimeoutError, BusyLoadingError, OutOfMemoryError, ReadOnlyError, OSError)):
        return True
    if isinstance(exc, ResponseError):
        return str(exc).lstrip("-").upper().startswith(_TRANSIENT_REPLIES)
    return isinstance(exc, RedisError) and not isinstance(exc, ResponseError)


def stopping() -> bool:
    """True when the current task is being cancelled. redis-py turns a cancellation that
    lands inside a read into a ConnectionError, so a loop that retries on outages must ask
    this first, or it swallows the stop and never ends (the 'zombie' after SIGTERM)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def reraise_if_stopping() -> None:
    if stopping():
        raise asyncio.CancelledError


def outage_reason(exc: BaseException) -> str:
    """What an operator should read on /readyz: the cause in words, not a Redis reply."""
    text = str(exc)
    if isinstance(exc, OutOfMemoryError) or "OOM" in text:
        return "Redis is out of memory (maxmemory reached, writes refused)"
    if "MISCONF" in text:
        return "Redis cannot persist (disk full or not writable), writes refused"
    if isinstance(exc, ReadOnlyError) or "READONLY" in text:
        return "Redis is a read-only replica"
    if isinstance(exc, BusyLoadingError) or "LOADING" in text:
        return "Redis is loading its data"
    if isinstance(exc, (ConnectionError, OSError)):
        return "Redis is unreachable"
    if isinstance(exc, TimeoutError):
        return "Redis does not answer in time"
    return describe(exc)


def describe(exc: BaseException) -> str:
    """The exception's class and a bounded message: enough for a developer, never a payload."""
    text = str(exc).replace("\n", " ")
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


@dataclass(slots=True)
class _Stage:
    last_ok_ms: int = 0
    last_fault_ms: int = 0
    last_fault: str = ""
    faults: int = 0
    outage: str = ""  # storage refused the stage's last write; cleared by the next success


class Faults:
    """Per stage (ingest, rules, timers, notifier, ...): the last success and the last
    fault. A stage is *failing* when its latest attempt was a fault and that was recent."""

    def __init__(self) -> None:
        self._stages: dict[str, _Stage] = {}

    def ok(self, stage: str, now_ms: int) -> None:
        s = self._stages.setdefault(stage, _Stage())
        s.last_ok_ms, s.outage = now_ms, ""

    def recovered(self, stage: str) -> None:
        """Storage took the stage's write again."""
        self._stages.setdefault(stage, _Stage()).outage = ""

    def outage(self, stage: str, exc: BaseException) -> None:
        """The stage is waiting on storage (Redis out of memory, its disk full, gone):
        not ready, though Redis may still answer PING."""
        self._stages.setdefault(stage, _Stage()).outage = outage_reason(exc)

    def fault(self, stage: str, exc: BaseException, now_ms: int) -> None:
        s = self._stages.setdefault(stage, _Stage())
        s.last_fault_ms, s.last_fault = now_ms, describe(exc)
        s.faults += 1

    def failing(self, now_ms: int) -> dict[str, str]:
        """Stage -> why, for the stages that are failing or waiting on storage now."""
        failing = {name: f"waiting on storage ({s.outage})" for name, s in self._stages.items() if s.outage}
        for name, s in self._stages.items():
            if name not in failing and s.last_fault_ms > s.last_ok_ms and now_ms - s.last_fault_ms < FAILING_WINDOW_MS:
                failing[name] = f"failing ({s.faults} faults, the last: {s.last_fault})"
        return failing
