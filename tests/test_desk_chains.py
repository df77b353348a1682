"""The desk running chains v2 against a real Redis, time passed in: the chain chosen by
priority and local time, the priority jump, round robin with a decline, the operator's
dispatch pausing and resuming the chain, and what reaches the outbox (planned
deliveries, never two pages for one position).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from responsecentre.alarms.desk import AlarmDesk, DispatchRefused, parse_timer_member, timer_member
from responsecentre.alarms.model import Alarm, AlarmState, Answer, ReplyRejected, Trigger
from responsecentre.directory import build_directory
from responsecentre.escalation.chains import parse_book
from responsecentre.escalation.delivery import Channel, Delivery
from responsecentre.metrics import Metrics
from responsecentre.store.keys import KEYS
from responsecentre.timers import fire_due
from tests.service import homes_doc

BOOK = """
timezone: Europe/Oslo
chains:
  day:
    steps:
      - notify: round_robin
        targets: [console, {role: nurse, ack_within: 30s}]
        channels: [console, handset]
        ack_within: 60s
      - targets: [console, {role: team_lead}]
        channels: [console, handset]
        ack_within: 60s
  night:
    steps:
      - targets: [console, {role: nurse}]
        channels: [console, handset]
        ack_within: 45s
  gentle:
    steps:
      - targets: [console]
        ack_within: 5m
select:
  - {use: night, chain: urgent, during: {from: "22:00", to: "07:00"}}
  - {use: day, chain: urgent}
  - {use: day, chain: standard, priority: [critical, high]}
  - {use: gentle, chain: standard}
"""

NOON = int(datetime.fromisoformat("2027-06-02T12:00:00+02:00").timestamp() * 1000)
NIGHT = int(datetime.fromisoformat("2027-06-02T23:30:00+02:00").timestamp() * 1000)


def staff(tenant: str) -> dict[str, Any]:
    nurse = {"role": "nurse", "zone": "north", "on_duty": True}
    return {
        "tenants": {
            tenant: {
                "staff": [
                    {"id": "n1", "name": "Nurse One", **nurse},
                    {"id": "n2", "name": "Nurse Two", **nurse},
                    {"id": "tl1", "name": "Lead", "role": "team_lead", "zone": "all", "on_duty": True},
                    {"id": "op1", "name": "Operator", "role": "operator", "zone": "all", "on_duty": True},
                ]
            }
        }
    }


def trigger(cause: str, priority: str = "critical", chain: str = "urgent", kind: str = "assistance") -> Trigger:
    return Trigger(cause, "button", kind, priority, chain, "h1", "north", "h1-btn", NOON, f"e-{cause}", "alarm.button")


@pytest.fixture
async def desk(redis_url: str, tenant: str) -> AsyncIterator[AlarmDesk]:
    client = aioredis.Redis.from_url(redis_url)
    directory = build_directory(homes_doc(tenant), staff(tenant))
    try:
        yield AlarmDesk(client, directory, parse_book(BOOK), Metrics())
    finally:
        await client.aclose()


async def deliveries(desk: AlarmDesk) -> list[Delivery]:
    out = []
    for _, fields in await desk.redis.xrange(KEYS.outbox()):
        if fields[b"channel"] == b"delivery":
            out.append(msgspec.json.decode(fields[b"body"], type=Delivery))
    return out


async def timers(desk: AlarmDesk, alarm: Alarm) -> dict[str, int]:
    raw = await desk.redis.zrange(KEYS.timers(), 0, -1, withscores=True)
    return {m.decode(): int(s) for m, s in raw if m.decode().split("|")[1] == alarm.id}


async def whats(desk: AlarmDesk, alarm: Alarm) -> list[str]:
    return [e.what for e in await desk.timeline(alarm)]


async def test_the_chain_is_chosen_by_local_time_and_priority(desk: AlarmDesk, tenant: str) -> None:
    day = await desk.apply_trigger(tenant, trigger("c1"), NOON)
    night = await desk.apply_trigger(tenant, trigger("c2", kind="fall"), NIGHT)
    low = await desk.apply_trigger(tenant, trigger("c3", "medium", "standard", "door_open"), NOON)
    high = await desk.apply_trigger(tenant, trigger("c4", "high", "standard", "wandering"), NOON)
    assert day and night and low and high
    assert (day.escalation.chain.name, night.escalation.chain.name) == ("day", "night")
    assert (low.escalation.chain.name, high.escalation.chain.name) == ("gentle", "day")
    assert (await desk.timeline(day))[0].detail["chain"] == "day"


async def test_round_robin_pages_one_at_a_time_and_a_decline_moves_on_at_once(desk: AlarmDesk, tenant: str) -> None:
    alarm = await desk.apply_trigger(tenant, trigger("c1"), NOON)
    assert alarm is not None
    (first,) = await deliveries(desk)
    assert (first.recipient, first.channel, first.address) == ("n1", Channel.HANDSET, "n1")
    assert [t.recipient for t in alarm.escalation.people] == ["n1", "n2"]
    assert list((await timers(desk, alarm)).values()) == [NOON + 30_000]  # the target's own ack_within

    declined = await desk.answer(alarm.id, "n1", "staff:n1", Answer.DECLINE, NOON + 1_000, page_id=first.page_id)
    assert declined.escalation.turn == 1 and declined.escalation.step == 0
    second = (await deliveries(desk))[-1]
    assert second.recipient == "n2" and second.page_id != first.page_id
    members = await timers(desk, alarm)
    assert list(members) == [timer_member(tenant, alarm.id, 0, 0, 1, 0)]
    assert list(members.values()) == [NOON + 31_000]

    # n1 cannot answer her old page any more; n2's turn times out: the team lead's step.
    with pytest.raises(ReplyRejected) as late:
        await desk.answer(alarm.id, "n1", "staff:n1", Answer.ACCEPT, NOON + 2_000, page_id=first.page_id)
    assert late.value.code == "already_answered"
    await fire_due(desk.redis, desk, NOON + 31_000)
    moved = await desk.get(alarm.id)
    assert (moved.escalation.step, moved.escalation.turn) == (1, 0)
    assert (await deliveries(desk))[-1].recipient == "tl1"
    # A duplicate of the fired timer (a restart between the two) changes nothing.
    await desk.fire_timer(timer_member(tenant, alarm.id, 0, 0, 1, 0), NOON + 31_500)
    assert (await desk.get(alarm.id)).escalation == moved.escalation
    assert len(await deliveries(desk)) == 3


async def test_a_higher_priority_moves_the_alarm_to_its_chain_from_the_first_step(desk: AlarmDesk, tenant: str) -> None:
    alarm = await desk.apply_trigger(tenant, trigger("c1", "medium", "standard", "door_open"), NOON)
    assert alarm is not None and alarm.escalation.chain.name == "gentle"
    old_timer = list(await timers(desk, alarm))
    same = await desk.apply_trigger(tenant, trigger("c2", "medium", "standard", "door_open"), NOON + 1_000)
    assert same is not None and same.escalation.chain.name == "gentle" and same.triggers == 2

    jumped = await desk.apply_trigger(tenant, trigger("c3", "critical", "standard", "door_open"), NOON + 2_000)
    assert jumped is not None
    assert (jumped.priority, jumped.escalation.chain.name, jumped.escalation.step) == ("critical", "day", 0)
    assert jumped.escalation.epoch == 1
    entries = await desk.timeline(jumped)
    (moved,) = [e for e in entries if e.what == "rechained"]
    assert moved.detail == {"from_chain": "gentle", "to_chain": "day", "from_step": 1, "priority": "critical"}
    members = await timers(desk, jumped)
    assert old_timer[0] not in members and len(members) == 1
    assert parse_timer_member(next(iter(members)))[5] == 1  # the new epoch
    assert (await deliveries(desk))[-1].recipient == "n1"


async def test_dispatch_pauses_the_chain_while_accepted_and_resumes_when_handed_back(
    desk: AlarmDesk, tenant: str
) -> None:
    alarm = await desk.apply_trigger(tenant, trigger("c1"), NOON)
    assert alarm is not None
    assert [m.staff_id for m, _ in desk.dispatchable(alarm, NOON)] == ["n1", "n2", "tl1"]
    with pytest.raises(DispatchRefused):
        await desk.dispatch(alarm.id, "nobody", "operator", NOON + 500)

    sent = await desk.dispatch(alarm.id, "n2", "operator", NOON + 1_000)
    (page,) = [p for p in sent.pages if p.dispatched]
    assert page.staff_id == "n2" and page.page_id.endswith(":d1:n2")
    delivery = (await deliveries(desk))[-1]
    assert delivery.body.dispatched and delivery.recipient == "n2"

    taken = await desk.answer(alarm.id, "n2", "staff:n2", Answer.ACCEPT, NOON + 2_000, page_id=page.page_id)
    assert taken.state == AlarmState.ACKNOWLEDGED and taken.accepted_by == "n2" and taken.escalation.paused
    assert await timers(desk, taken) == {}, "no step runs while she has it"
    assert "chain_paused" in await whats(desk, taken)
    # The chain's own page to n1 is no longer live.
    with pytest.raises(ReplyRejected):
        await desk.answer(alarm.id, "n1", "staff:n1", Answer.ACCEPT, NOON + 2_500)

    back = await desk.answer(alarm.id, "n2", "staff:n2", Answer.DECLINE, NOON + 3_000)
    assert back.state == AlarmState.RAISED and back.accepted_by is None and not back.escalation.paused
    assert back.escalation.epoch == 1 and back.escalation.step == 0
    assert {"released", "chain_resumed"} <= set(await whats(desk, back))
    assert list((await timers(desk, back)).values()) == [NOON + 33_000]
    assert (await deliveries(desk))[-1].recipient == "n1"


async def test_an_ack_queues_a_recheck_of_the_alarms_deliveries(desk: AlarmDesk, tenant: str) -> None:
    alarm = await desk.apply_trigger(tenant, trigger("c1"), NOON)
    assert alarm is not None
    await desk.acknowledge(alarm.id, "operator", NOON + 1_000)
    channels = [f[b"channel"] for _, f in await desk.redis.xrange(KEYS.outbox())]
    assert b"recheck" in channels and channels.index(b"recheck") > channels.index(b"delivery")
