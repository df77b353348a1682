"""The escalation timer loop: durable timers are due-time records in a Redis sorted set.

Nothing about a running chain lives in this process's memory, so a service killed
mid-chain and started again finds every timer where the transaction left it and fires it
on time (or at once, if it fell due while the service was down).
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from responsecentre.alarms.desk import AlarmDesk
from responsecentre.store.keys import KEYS, Keys

log = logging.getLogger(__name__)

BATCH = 500


async def fire_due(redis: aioredis.Redis, desk: AlarmDesk, now_ms: int, keys: Keys = KEYS) -> int:
    members = await redis.zrangebyscore(keys.timers(), "-inf", now_ms, start=0, num=BATCH)
    for member in members:
        await desk.fire_timer(member.decode() if isinstance(member, bytes) else member, now_ms)
    return len(members)


async def run_timers(redis: aioredis.Redis, desk: AlarmDesk, poll_ms: int, keys: Keys = KEYS) -> None:
    while True:
        try:
            fired = await fire_due(redis, desk, int(time.time() * 1000), keys)
        except (RedisError, OSError) as exc:
            log.warning("timer loop: redis unavailable (%s); retrying", exc)
            fired = 0
            await asyncio.sleep(1.0)
        if fired < BATCH:
            await asyncio.sleep(poll_ms / 1000)
