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


class Faults:
    """Per stage (ingest, rules, timers, notifier, ...): the last success and the last
    fault. A stage is *failing* when its latest attempt was a fault and that was recent."""

    def __init__(self) -> None:
        self._stages: dict[str, _Stage] = {}

    def ok(self, stage: str, now_ms: int) -> None:
        self._stages.setdefault(stage, _Stage()).last_ok_ms = now_ms

    def fault(self, stage: str, exc: BaseException, now_ms: int) -> None:
        s = self._stages.setdefault(stage, _Stage())
        s.last_fault_ms, s.last_fault = now_ms, describe(exc)
        s.faults += 1

    def failing(self, now_ms: int) -> dict[str, str]:
        """Stage -> its last fault, for the stages that are failing now."""
        return {
            name: f"{s.faults} faults, the last: {s.last_fault}"
            for name, s in self._stages.items()
            if s.last_fault_ms > s.last_ok_ms and now_ms - s.last_fault_ms < FAILING_WINDOW_MS
        }
