"""The timer loop fires due timers in batches (one transaction per chunk), against a real
Redis: every timer of a large wave moves its alarm on exactly once; a change under the
transaction or a record the desk cannot read costs the batch its speed, never its effect;
and the loop wakes when the next timer is due, not at the next poll.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from responsecentre.alarms.desk import AlarmDesk, timer_member
from responsecentre.alarms.model import Alarm, Trigger
from responsecentre.clock import system_clock
from responsecentre.directory import build_directory
from responsecentre.escalation.chains import parse_book
from responsecentre.escalation.runner import People
from responsecentre.metrics import Metrics
from responsecentre.store.keys import KEYS
from responsecentre.timers import CHUNK, RETRY_MS, fire_due, run_timers

BOOK = """
timezone: Europe/Oslo
chains:
  urgent:
    steps:
      - targets: [console, {role: nurse}]
        channels: [console, handset]
        ack_within: 30s
      - targets: [console, {role: team_lead}]
        channels: [console, handset]
        ack_within: 30s
  quick:
    steps:
      - targets: [console]
        ack_within: 300ms
      - targets: [console]
        ack_within: 60s
"""

NOON = int(datetime.fromisoformat("2027-06-02T12:00:00+02:00").timestamp() * 1000)
HOMES = 2 * CHUNK + 50  # three chunks, the last one short


def documents(tenant: str) -> tuple[dict[str, Any], dict[str, Any]]:
    homes = [
        {
            "id": f"h{i}",
            "zone": "north",
            "resident": {"name": f"Resident {i}", "address": f"Street {i}", "key_safe": "1234"},
            "devices": [{"id": f"h{i}-btn", "kind": "safety_alarm"}],
        }
        for i in range(HOMES)
    ]
    staff = [
        {"id": "n1", "name": "Nurse One", "role": "nurse", "zone": "north", "on_duty": True},
        {"id": "tl1", "name": "Lead", "role": "team_lead", "zone": "all", "on_duty": True},
    ]
    return {"tenants": {tenant: {"homes": homes}}}, {"tenants": {tenant: {"staff": staff}}}


def trigger(i: int, chain: str = "urgent") -> Trigger:
    home = f"h{i}"
    return Trigger(f"c{i}", "button", "assistance", "critical", chain, home, "north", f"{home}-btn", NOON, f"e{i}", "x")


@pytest.fixture
async def desk(redis_url: str, tenant: str) -> AsyncIterator[AlarmDesk]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield AlarmDesk(client, build_directory(*documents(tenant)), parse_book(BOOK), Metrics())
    finally:
        await client.aclose()


async def raise_many(desk: AlarmDesk, tenant: str, n: int = HOMES) -> list[Alarm]:
    alarms = []
    for i in range(n):
        alarm = await desk.apply_trigger(tenant, trigger(i), NOON)
        assert alarm is not None
        alarms.append(alarm)
    return alarms


async def escalations(desk: AlarmDesk, alarms: list[Alarm]) -> Counter[str]:
    """How many `escalated` lines each alarm's timeline has, by alarm id."""
    counts: Counter[str] = Counter()
    for alarm in alarms:
        counts[alarm.id] = sum(e.what == "escalated" for e in await desk.timeline(alarm))
    return counts


async def pages_to(desk: AlarmDesk, who: str) -> int:
    return sum(
        1
        for _, fields in await desk.redis.xrange(KEYS.outbox())
        if fields[b"channel"] == b"delivery" and f'"recipient":"{who}"'.encode() in fields[b"body"]
    )


def lateness_count(metrics: Metrics) -> float:
    return sum(s.value for m in metrics.timer_lateness.collect() for s in m.samples if s.name.endswith("_count"))


async def test_a_wave_of_timers_moves_every_alarm_on_once(desk: AlarmDesk, tenant: str) -> None:
    alarms = await raise_many(desk, tenant)
    assert await desk.redis.zcard(KEYS.timers()) == HOMES

    assert await fire_due(desk.redis, desk, NOON + 30_000) == HOMES

    stored = await desk.alarms_by_id(tenant, [a.id for a in alarms])
    assert {a.escalation.step for a in stored} == {1}
    assert set((await escalations(desk, alarms)).values()) == {1}
    # Only the step-2 timers are left, one per alarm, due 30 s after the firing.
    left = await desk.redis.zrange(KEYS.timers(), 0, -1, withscores=True)
    assert {m.decode() for m, _ in left} == {timer_member(tenant, a.id, 1, 0) for a in alarms}
    assert {int(s) for _, s in left} == {NOON + 60_000}
    assert await pages_to(desk, "tl1") == HOMES  # step 2's team lead, once per alarm
    assert lateness_count(desk.metrics) == HOMES
    assert await fire_due(desk.redis, desk, NOON + 30_000) == 0  # nothing due twice


async def test_a_change_under_the_batch_leaves_no_alarm_behind_and_none_twice(
    desk: AlarmDesk, tenant: str, redis_url: str
) -> None:
    alarms = await raise_many(desk, tenant)
    acked = await desk.acknowledge(alarms[5].id, "op1", NOON + 10_000)  # its timer is gone with the ack
    # While a batch computes, another process writes the very alarm being computed (so
    # surely one the batch watches): that batch's transaction must fail and its timers be
    # fired one by one.
    other = redis.Redis.from_url(redis_url)
    touched: list[str] = []
    compute = desk._people

    def people(alarm: Alarm, now_ms: int, chain: Any = None) -> People:
        if not touched:
            key = KEYS.alarm(tenant, alarm.id)
            other.set(key, other.get(key) or b"")
            touched.append(alarm.id)
        return compute(alarm, now_ms, chain)

    one_by_one = desk._fire_one_by_one
    fallbacks: list[int] = []

    async def fallback(members: list[str], now_ms: int) -> list[Alarm | Exception | None]:
        fallbacks.append(len(members))
        return await one_by_one(members, now_ms)

    desk._people = people  # type: ignore[method-assign]
    desk._fire_one_by_one = fallback  # type: ignore[method-assign]
    try:
        await fire_due(desk.redis, desk, NOON + 30_000)
    finally:
        other.close()
    assert touched
    assert fallbacks, "the write under the transaction must have failed a chunk"

    counts = await escalations(desk, alarms)
    assert counts[acked.id] == 0
    assert all(counts[a.id] == 1 for a in alarms if a.id != acked.id)
    assert await pages_to(desk, "tl1") == HOMES - 1
    assert await desk.redis.zcard(KEYS.timers()) == HOMES - 1


async def test_a_record_the_desk_cannot_read_is_retried_later_and_the_rest_fire(desk: AlarmDesk, tenant: str) -> None:
    alarms = await raise_many(desk, tenant, 30)
    broken = alarms[3]
    await desk.redis.set(KEYS.alarm(tenant, broken.id), b"{not json")
    await desk.redis.zadd(KEYS.timers(), {"not|a|timer": NOON})

    await fire_due(desk.redis, desk, NOON + 30_000, metrics=desk.metrics)

    counts = await escalations(desk, [a for a in alarms if a is not broken])
    assert set(counts.values()) == {1}
    retry = NOON + 30_000 + RETRY_MS
    assert await desk.redis.zscore(KEYS.timers(), timer_member(tenant, broken.id, 0, 0)) == retry
    assert await desk.redis.zscore(KEYS.timers(), "not|a|timer") == retry
    errors = desk.metrics.internal_errors.labels("timers")._value.get()
    assert errors == 2


async def test_the_loop_wakes_when_the_next_timer_is_due_not_at_the_next_poll(desk: AlarmDesk, tenant: str) -> None:
    now = system_clock()
    alarm = await desk.apply_trigger(tenant, trigger(1, "quick"), now)
    assert alarm is not None and alarm.escalation.due_ms == now + 300
    # Started after the sweep it would have woken for: only "sleep until due" fires it in time.
    loop = asyncio.create_task(run_timers(desk.redis, desk, poll_ms=5_000))
    try:
        for _ in range(800):  # bounded: 8 s, beyond the 5 s poll, so a late firing is seen as late
            if (await desk.get(alarm.id)).escalation.step == 1:
                break
            await asyncio.sleep(0.01)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
    (fired,) = [e for e in await desk.timeline(alarm) if e.what == "escalated"]
    assert 0 <= fired.ts_ms - (now + 300) < 1_500  # the poll would have made it ~5 s
