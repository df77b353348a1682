"""The escalation timer loop: durable timers are due-time records in a Redis sorted set.

Nothing about a running chain lives in this process's memory, so a service killed
mid-chain and started again finds every timer where the transaction left it and fires it
on time (or at once, if it fell due while the service was down).

A timer that fails on a bug of ours is not dropped (that would silently end the alarm's
escalation) and does not block the timers behind it: it is moved RETRY_MS later, counted
and reported, and the loop goes on with the others.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis

from responsecentre.alarms.desk import AlarmDesk
from responsecentre.clock import Clock, system_clock
from responsecentre.faults import Faults, describe, is_outage, reraise_if_stopping
from responsecentre.metrics import Metrics
from responsecentre.store.keys import KEYS, Keys

log = logging.getLogger(__name__)

BATCH = 2000  # timers read per sweep
CHUNK = 100  # timers per transaction (AlarmDesk.fire_timers)
PARALLEL = 4  # transactions in flight: one chunk's Python work overlaps another's round trip and fsync
RETRY_MS = 10_000
STAGE = "timers"


async def fire_due(
    redis: aioredis.Redis,
    desk: AlarmDesk,
    now_ms: int,
    keys: Keys = KEYS,
    faults: Faults | None = None,
    metrics: Metrics | None = None,
    clock: Clock | None = None,
) -> int:
    """Fire the timers due by `now_ms` (at most BATCH), CHUNK to a transaction, PARALLEL
    transactions at a time. Returns how many were due. With a `clock`, each transaction
    fires at the time it starts (never before `now_ms`), so the timeline and the lateness
    histogram show when a chunk really fired, not when the sweep began."""
    members = await redis.zrangebyscore(keys.timers(), "-inf", now_ms, start=0, num=BATCH)
    if not members:
        return 0
    names = [raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw for raw in members]
    chunks = [list(range(i, min(i + CHUNK, len(names)))) for i in range(0, len(names), CHUNK)]
    gate = asyncio.Semaphore(PARALLEL)

    async def fire(chunk: list[int]) -> None:
        async with gate:
            at = now_ms if clock is None else max(now_ms, clock())
            results = await desk.fire_timers([names[i] for i in chunk], at)
        for i, result in zip(chunk, results, strict=True):
            if isinstance(result, Exception):
                await _failed(redis, members[i], names[i], result, at, keys, faults, metrics)
            elif faults is not None:
                faults.ok(STAGE, at)

    await _gather(*(fire(chunk) for chunk in chunks))
    return len(members)


async def _gather(*jobs: Any) -> None:
    """Run every job to its end, then raise the first failure (an outage, say): a chunk
    that failed must not cancel the others half-way through their transactions."""
    outcomes = await asyncio.gather(*jobs, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


async def _failed(
    redis: aioredis.Redis,
    raw: bytes | str,
    member: str,
    exc: Exception,
    now_ms: int,
    keys: Keys,
    faults: Faults | None,
    metrics: Metrics | None,
) -> None:
    """A timer the desk failed on (a bug of ours or a record it cannot read): moved later,
    not dropped, so the alarm's escalation is not silently ended."""
    log.error("timer %s failed (%s); retrying it in %d s", member[:120], describe(exc), RETRY_MS // 1000)
    if metrics is not None:
        metrics.internal_errors.labels(STAGE).inc()
    if faults is not None:
        faults.fault(STAGE, exc, now_ms)
    await redis.zadd(keys.timers(), {raw: now_ms + RETRY_MS})


async def next_due(redis: aioredis.Redis, keys: Keys = KEYS) -> int | None:
    first = await redis.zrange(keys.timers(), 0, 0, withscores=True)
    return int(first[0][1]) if first else None


async def run_timers(
    redis: aioredis.Redis,
    desk: AlarmDesk,
    poll_ms: int,
    keys: Keys = KEYS,
    clock: Clock = system_clock,
    faults: Faults | None = None,
    metrics: Metrics | None = None,
) -> None:
    while True:
        reraise_if_stopping()  # a stop that a wait_for inside redis-py swallowed (Python 3.11; see notifier.py)
        try:
            now_ms = clock()
            fired = await fire_due(redis, desk, now_ms, keys, faults, metrics, clock)
            if fired < BATCH and metrics is not None:  # everything due by now_ms is done
                metrics.timers_swept_until.set(now_ms / 1000)
        except Exception as exc:
            reraise_if_stopping()
            if not is_outage(exc):
                log.exception("timer loop failed; retrying")
                if faults is not None:
                    faults.fault(STAGE, exc, clock())
            else:
                log.warning("timer loop: redis unavailable (%s); retrying", exc)
            fired = 0
            await asyncio.sleep(1.0)
        if fired < BATCH:
            await asyncio.sleep(await _pause(redis, poll_ms, keys, clock))


async def _pause(redis: aioredis.Redis, poll_ms: int, keys: Keys, clock: Clock) -> float:
    """Seconds to sleep: until the next timer is due, at most `poll_ms` (a timer added by
    another process meanwhile waits at most that long)."""
    try:
        due = await next_due(redis, keys)
    except Exception as exc:
        reraise_if_stopping()
        if not is_outage(exc):
            raise
        return poll_ms / 1000
    if due is None:
        return poll_ms / 1000
    return min(poll_ms, max(0, due - clock())) / 1000
