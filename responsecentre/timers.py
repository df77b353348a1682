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

import redis.asyncio as aioredis

from responsecentre.alarms.desk import AlarmDesk
from responsecentre.clock import Clock, system_clock
from responsecentre.faults import Faults, describe, is_outage, reraise_if_stopping
from responsecentre.metrics import Metrics
from responsecentre.store.keys import KEYS, Keys

log = logging.getLogger(__name__)

BATCH = 500
RETRY_MS = 10_000
STAGE = "timers"


async def fire_due(
    redis: aioredis.Redis,
    desk: AlarmDesk,
    now_ms: int,
    keys: Keys = KEYS,
    faults: Faults | None = None,
    metrics: Metrics | None = None,
) -> int:
    members = await redis.zrangebyscore(keys.timers(), "-inf", now_ms, start=0, num=BATCH)
    for raw in members:
        member = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        try:
            await desk.fire_timer(member, now_ms)
        except Exception as exc:
            reraise_if_stopping()
            if is_outage(exc):
                raise
            log.error("timer %s failed (%s); retrying it in %d s", member[:120], describe(exc), RETRY_MS // 1000)
            if metrics is not None:
                metrics.internal_errors.labels(STAGE).inc()
            if faults is not None:
                faults.fault(STAGE, exc, now_ms)
            await redis.zadd(keys.timers(), {raw: now_ms + RETRY_MS})
            continue
        if faults is not None:
            faults.ok(STAGE, now_ms)
    return len(members)


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
            fired = await fire_due(redis, desk, now_ms, keys, faults, metrics)
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
            await asyncio.sleep(poll_ms / 1000)
