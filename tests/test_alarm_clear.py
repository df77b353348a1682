"""The desk's clear and resident's cancel against a real Redis: what is closed, what is
kept, what is written with it, and that a replayed decision is applied once.

The chain is tests/service.py's `urgent` (two steps of 2 s); time is passed in, so
nothing sleeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from responsecentre.alarms.desk import AlarmDesk, timer_member
from responsecentre.alarms.model import AlarmState, Trigger
from responsecentre.directory import build_directory
from responsecentre.escalation.chains import parse_chains
from responsecentre.metrics import Metrics
from responsecentre.store.keys import KEYS
from responsecentre.timers import fire_due
from tests.service import TEST_CHAINS, homes_doc, staff_doc

T0 = 1_800_000_000_000


def decision(action: str, cause: str, kind: str = "low_battery", rule: str = "low-battery") -> Trigger:
    return Trigger(cause, rule, kind, "low", "urgent", "h1", "north", "h1-btn", T0, f"e-{cause}", "x", action)


@pytest.fixture
async def desk(redis_url: str, tenant: str) -> AsyncIterator[AlarmDesk]:
    client = aioredis.Redis.from_url(redis_url)
    directory = build_directory(homes_doc(tenant), staff_doc(tenant))
    try:
        yield AlarmDesk(client, directory, parse_chains(TEST_CHAINS), Metrics())
    finally:
        await client.aclose()


def clears(desk: AlarmDesk, action: str, outcome: str) -> float:
    return desk.metrics.clears.labels(action, outcome)._value.get()


async def test_clear_closes_a_raised_alarm_once_and_stops_its_chain(desk: AlarmDesk, tenant: str) -> None:
    raised = await desk.apply_trigger(tenant, decision("raise", "r1"), T0)
    assert raised is not None
    assert await desk.redis.zscore(KEYS.timers(), timer_member(tenant, raised.id, 0, 0)) is not None

    closed = await desk.apply_clear(tenant, decision("clear", "c1"), T0 + 500)
    assert closed is not None and closed.id == raised.id
    assert (closed.state, closed.closing_code, closed.closed_by) == (
        AlarmState.CANCELLED,
        "auto_cleared",
        "low-battery",
    )
    assert await desk.redis.hget(KEYS.open_alarms(tenant), "h1|low_battery") is None
    assert await desk.redis.zscore(KEYS.timers(), timer_member(tenant, raised.id, 0, 0)) is None
    stored = await desk.get(raised.id)
    assert stored.state == AlarmState.CANCELLED
    whats = [e.what for e in await desk.timeline(stored)]
    assert whats[0] == "raised" and whats[-1] == "cleared"
    (cleared,) = [e for e in await desk.timeline(stored) if e.what == "cleared"]
    assert cleared.by == "low-battery" and cleared.detail["event"] == "e-c1"
    # Integrations and the console got the change.
    outbox = await desk.redis.xrange(KEYS.outbox())
    assert any(b'"state":"cancelled"' in fields.get(b"body", b"") for _, fields in outbox)

    # A replay of the same decision (after a crash) changes nothing and counts nothing.
    assert await desk.apply_clear(tenant, decision("clear", "c1"), T0 + 600) is None
    assert clears(desk, "clear", "closed") == 1
    assert len(await desk.timeline(stored)) == len(whats)
    # No further escalation: the step's time passes and nothing is notified.
    await fire_due(desk.redis, desk, T0 + 10_000)
    assert [e.what for e in await desk.timeline(stored)] == whats


async def test_resident_cancel_closes_as_cancelled_by_resident(desk: AlarmDesk, tenant: str) -> None:
    raised = await desk.apply_trigger(tenant, decision("raise", "b1", "assistance", "button"), T0)
    assert raised is not None
    closed = await desk.apply_clear(tenant, decision("cancel", "x1", "assistance", "button"), T0 + 30_000)
    assert closed is not None and closed.closing_code == "cancelled_by_resident"
    whats = [e.what for e in await desk.timeline(closed)]
    assert whats[0] == "raised" and whats[-1] == "cancelled"
    assert clears(desk, "cancel", "closed") == 1


async def test_an_acknowledged_alarm_is_kept_and_the_clear_noted(desk: AlarmDesk, tenant: str) -> None:
    raised = await desk.apply_trigger(tenant, decision("raise", "r1"), T0)
    assert raised is not None
    await desk.acknowledge(raised.id, "op-kari", T0 + 100)
    kept = await desk.apply_clear(tenant, decision("clear", "c1"), T0 + 200)
    assert kept is not None and kept.state == AlarmState.ACKNOWLEDGED and kept.is_open
    assert await desk.redis.hget(KEYS.open_alarms(tenant), "h1|low_battery") is not None
    last = (await desk.timeline(kept))[-1]
    assert last.what == "clear_ignored" and "acknowledged by op-kari; left open" in last.detail["reason"]
    assert clears(desk, "clear", "kept_acknowledged") == 1
    assert await desk.apply_clear(tenant, decision("clear", "c1"), T0 + 300) is None  # replay
    assert [e.what for e in await desk.timeline(kept)].count("clear_ignored") == 1


async def test_no_open_alarm_is_counted_and_its_replay_closes_nothing_later(desk: AlarmDesk, tenant: str) -> None:
    """The clear came first; an alarm is raised after it. Replaying the log (the clear's
    cause again) must not close that newer alarm."""
    assert await desk.apply_clear(tenant, decision("clear", "c1"), T0) is None
    assert clears(desk, "clear", "no_open_alarm") == 1
    raised = await desk.apply_trigger(tenant, decision("raise", "r2"), T0 + 1000)
    assert raised is not None
    assert await desk.apply_clear(tenant, decision("clear", "c1"), T0 + 2000) is None
    assert (await desk.get(raised.id)).state == AlarmState.RAISED
    assert clears(desk, "clear", "no_open_alarm") == 1
