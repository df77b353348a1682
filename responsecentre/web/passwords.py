"""argon2 off the event loop, with a bounded queue.

A password check costs about 100 ms of CPU by design. The centre is one asyncio process
(ingest, rules, escalation timers and HTTP share its loop), so a check on the loop stalls
alarms for its whole duration, and 32 clients sending wrong passwords stalled them for
seconds. Here every hash and verify runs on one worker thread (argon2-cffi releases the
GIL), which leaves the other core of a two-core machine to the centre; new hashes use
parallelism 1 so that one check is one thread (libargon2 runs a thread per lane).

The queue in front of the worker is bounded: at most `max_pending` checks wait or run, and
one more is refused at once (`PasswordChecksBusy`, answered 503 with Retry-After) instead
of queueing without bound, where every waiting sign-in would time out anyway. The bound is
a count checked and taken without an await in between, i.e. an asyncio semaphore that
never waits (and so binds to no event loop; the tests run apps on several).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

T = TypeVar("T")

MAX_PENDING = 16
BUSY_RETRY_AFTER_S = 2

# RFC 9106's memory-hard choice (64 MiB) with one lane: ~0.12 s on one core here.
# Hashes made with other parameters still verify; a successful sign-in re-hashes them.
DEFAULT_HASHER = PasswordHasher(time_cost=2, memory_cost=64 * 1024, parallelism=1)

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def executor() -> ThreadPoolExecutor:
    """The process's one argon2 thread, shared by every app in it (tests build several)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="argon2")
        return _executor


class PasswordChecksBusy(Exception):
    """`max_pending` checks are already waiting or running; try again after `retry_after_s`."""

    def __init__(self, retry_after_s: int = BUSY_RETRY_AFTER_S) -> None:
        super().__init__("too many sign-ins in progress")
        self.retry_after_s = retry_after_s


class Passwords:
    def __init__(self, hasher: PasswordHasher = DEFAULT_HASHER, max_pending: int = MAX_PENDING) -> None:
        self._hasher = hasher
        self.max_pending = max_pending
        self.pending = 0
        self._dummy: str | None = None

    @property
    def hasher(self) -> PasswordHasher:
        return self._hasher

    @hasher.setter
    def hasher(self, hasher: PasswordHasher) -> None:
        self._hasher = hasher
        self._dummy = None  # the stand-in for unknown users must cost what a real check costs

    async def _run(self, fn: Callable[[], T]) -> T:
        if self.pending >= self.max_pending:
            raise PasswordChecksBusy()
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(executor(), fn)
        finally:
            self.pending -= 1

    async def hash(self, password: str) -> str:
        hasher = self._hasher
        return await self._run(lambda: hasher.hash(password))

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True if `password` matches. With no hash (unknown user) the check runs anyway,
        against a hash of a random password, so the answer takes as long either way and
        timing does not tell which usernames exist."""
        hasher = self._hasher
        if password_hash is None:
            if self._dummy is None:
                self._dummy = await self._run(lambda: hasher.hash(secrets.token_urlsafe(16)))
            password_hash = self._dummy

        def check() -> bool:
            try:
                return hasher.verify(password_hash, password)
            except (VerificationError, InvalidHashError):
                return False

        return await self._run(check)

    def needs_rehash(self, password_hash: str) -> bool:
        """Made with other parameters than ours (cheap: parses the hash, no hashing)."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except (InvalidHashError, ValueError):
            return True
