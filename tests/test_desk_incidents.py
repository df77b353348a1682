"""Incidents at the desk against a real Redis, time passed in: the Nth alarm of a kind
opens an incident with one escalation (the oldest member still waiting keeps its chain,
the others' stop), later ones join without pages of their own, the escalation passes on
when its member clears, and resolving the incident closes every member.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from responsecentre.alarms.desk import AlarmDesk
from responsecentre.alarms.model import Alarm, AlarmState, Trigger
from responsecentre.auditor import audit_once
from responsecentre.directory import build_directory
from responsecentre.escalation.audit import RepairReason
from responsecentre.escalation.chains import parse_chains
from responsecentre.escalation.incidents import IncidentConfig, IncidentRule, close_member
from responsecentre.metrics import Metrics
from responsecentre.store.keys import KEYS
from tests.service import TEST_CHAINS, staff_doc

T0 = 1_800_000_000_000
HOMES = 6


def homes(tenant: str) -> dict[str, Any]:
    return {
        "tenants": {
            tenant: {
                "homes": [
                    {
                        "id": f"h{i}",
                        "zone": "north",
                        "resident": {"name": "R"},
                        "devices": [{"id": f"d{i}", "kind": "x"}],
                    }
                    for i in range(1, HOMES + 1)
                ]
            }
        }
    }


def offline(home: int, action: str = "raise", cause: str = "") -> Trigger:
    return Trigger(
        cause or f"{action}-{home}",
        "supervise",
        "device_offline",
        "medium",
        "urgent",
        f"h{home}",
        "north",
        f"d{home}",
        T0,
        None,
        "device.status",
        action,
    )


@pytest.fixture
async def desk(redis_url: str, tenant: str) -> AsyncIterator[AlarmDesk]:
    client = aioredis.Redis.from_url(redis_url)
    directory = build_directory(homes(tenant), staff_doc(tenant))
    config = IncidentConfig({"device_offline": IncidentRule("device_offline", 3, 60_000, 120_000)})
    try:
        yield AlarmDesk(client, directory, parse_chains(TEST_CHAINS), Metrics(), incidents=config)
    finally:
        await client.aclose()


async def timers_of(desk: AlarmDesk, alarm: Alarm) -> list[str]:
    return [m.decode() for m in await desk.redis.zrange(KEYS.timers(), 0, -1) if m.decode().split("|")[1] == alarm.id]


async def deliveries_to(desk: AlarmDesk, alarm: Alarm) -> int:
    entries = await desk.redis.xrange(KEYS.outbox())
    return sum(1 for _, f in entries if f[b"channel"] == b"delivery" and f[b"alarm"] == alarm.id.encode())


async def test_an_incident_opens_escalates_once_hands_over_and_resolves_as_a_whole(
    desk: AlarmDesk, tenant: str
) -> None:
    first = await desk.apply_trigger(tenant, offline(1), T0)
    second = await desk.apply_trigger(tenant, offline(2), T0 + 1_000)
    assert first and second and not first.incident_id and not second.incident_id
    assert await timers_of(desk, first) and await timers_of(desk, second)  # alone so far: each escalates

    third = await desk.apply_trigger(tenant, offline(3), T0 + 2_000)
    assert third is not None and third.incident_id
    incident = third.incident_id
    first, second = await desk.get(first.id), await desk.get(second.id)
    assert first.incident_id == second.incident_id == incident
    assert first.incident_lead and not second.incident_lead and not third.incident_lead
    assert await timers_of(desk, first), "the lead's chain goes on: the incident's one escalation"
    assert not await timers_of(desk, second) and second.escalation.stopped
    assert not await timers_of(desk, third) and await deliveries_to(desk, third) == 0
    assert "joined_incident" in [e.what for e in await desk.timeline(second)]

    later = [await desk.apply_trigger(tenant, offline(h), T0 + 3_000 + h) for h in (4, 5)]
    assert all(a is not None and a.incident_id == incident for a in later)
    assert [await deliveries_to(desk, a) for a in later if a is not None] == [0, 0]
    (group,) = await desk.open_incidents([tenant])
    assert group.incident is not None and len(group.incident.members) == 5

    # The lead's device comes back: it closes, and the oldest member still waiting
    # carries the escalation from step 1, paging as it goes.
    cleared = await desk.apply_clear(tenant, offline(1, "clear"), T0 + 10_000)
    assert cleared is not None and cleared.state == AlarmState.CANCELLED
    second = await desk.get(second.id)
    assert second.incident_lead and not second.escalation.stopped and second.escalation.step == 0
    assert await timers_of(desk, second) and await deliveries_to(desk, second) >= 1
    assert "incident_lead" in [e.what for e in await desk.timeline(second)]

    resolved = await desk.resolve_incident(tenant, incident, "operator", "technical_fixed", "power back", T0 + 20_000)
    assert sorted(resolved) == sorted([second.id, third.id, *(a.id for a in later if a is not None)])
    for alarm_id in resolved:
        alarm = await desk.get(alarm_id)
        assert alarm.state == AlarmState.RESOLVED and alarm.closing_code == "technical_fixed"
        assert not await timers_of(desk, alarm)
    assert await desk.open_incidents([tenant]) == []

    # The incident is over: the next alarm of the kind stands alone again.
    alone = await desk.apply_trigger(tenant, offline(6), T0 + 30_000)
    assert alone is not None and not alone.incident_id and await timers_of(desk, alone)


async def test_kinds_without_an_incident_rule_never_group(desk: AlarmDesk, tenant: str) -> None:
    raised = []
    for home in range(1, 5):
        other = msgspec.structs.replace(offline(home), kind="low_battery")
        raised.append(await desk.apply_trigger(tenant, other, T0 + home))
    assert all(a is not None and not a.incident_id for a in raised)
    assert all([await timers_of(desk, a) for a in raised if a is not None])


async def _open_incident(desk: AlarmDesk, tenant: str) -> list[Alarm]:
    raised = [await desk.apply_trigger(tenant, offline(h), T0 + h * 1_000) for h in (1, 2, 3)]
    alarms = [await desk.get(a.id) for a in raised if a is not None]
    assert len(alarms) == 3 and all(a.incident_id for a in alarms)
    return alarms


async def _close_without_hand_over(desk: AlarmDesk, tenant: str, alarm: Alarm, now_ms: int) -> None:
    """The lead's device comes back and the service dies before `member_closed` runs."""

    async def crashed(alarm: Alarm, now_ms: int) -> None:
        return None

    desk.member_closed = crashed  # type: ignore[method-assign]
    try:
        await desk.apply_clear(tenant, offline(int(alarm.home_id[1:]), "clear"), now_ms)
    finally:
        del desk.member_closed


async def test_the_auditor_finishes_a_hand_over_a_crash_cut_before_it_began(desk: AlarmDesk, tenant: str) -> None:
    lead, second, _ = await _open_incident(desk, tenant)
    assert lead.incident_lead and not second.incident_lead
    await _close_without_hand_over(desk, tenant, lead, T0 + 10_000)
    (group,) = await desk.open_incidents([tenant])
    assert group.incident is not None and lead.id in group.incident.open  # still listed: the crash
    assert not (await desk.get(second.id)).incident_lead

    assert await desk.repair_incidents(T0 + 12_000, grace_ms=5_000) == []  # within the grace: maybe under way

    metrics_before = desk.metrics.escalation_repairs.labels("incident_member")._value.get()
    repairs = await audit_once(desk.redis, desk, T0 + 16_000, 5_000, desk.metrics)
    assert [(a.id, r.reason) for a, r in repairs] == [(lead.id, RepairReason.INCIDENT_MEMBER)]
    assert desk.metrics.escalation_repairs.labels("incident_member")._value.get() == metrics_before + 1
    second = await desk.get(second.id)
    assert second.incident_lead and not second.escalation.stopped and await timers_of(desk, second)
    assert await deliveries_to(desk, second) >= 1
    (group,) = await desk.open_incidents([tenant])
    assert group.incident is not None and lead.id not in group.incident.open
    technical = [a for a in await desk.open_alarms([tenant]) if a.kind == "escalation_repair"]
    assert len(technical) == 1  # the centre's own alarm: a person should find out why

    # The next pass finds nothing more to do, and finishing the hand-over twice is harmless.
    assert await desk.repair_incidents(T0 + 30_000, grace_ms=5_000) == []
    await desk.member_closed(await desk.get(lead.id), T0 + 31_000)
    again = await desk.get(second.id)
    assert again.escalation.epoch == second.escalation.epoch and again.escalation == second.escalation


async def test_the_auditor_gives_a_leaderless_incident_its_escalation_back(desk: AlarmDesk, tenant: str) -> None:
    lead, second, third = await _open_incident(desk, tenant)
    await _close_without_hand_over(desk, tenant, lead, T0 + 10_000)
    # The crash fell between taking the lead off the incident and handing its escalation over.
    await desk._change_group(tenant, "device_offline", lambda g: close_member(g, lead.id, T0 + 10_000)[0])
    assert not any(a.incident_lead for a in await desk.alarms_by_id(tenant, [second.id, third.id]))

    assert await desk.repair_incidents(T0 + 11_000, grace_ms=5_000) == []  # the lead closed 1 s ago
    repairs = await desk.repair_incidents(T0 + 20_000, grace_ms=5_000)
    assert [(a.id, r) for a, r in repairs] == [(second.id, RepairReason.INCIDENT_LEAD)]
    second = await desk.get(second.id)
    assert second.incident_lead and await timers_of(desk, second)
    assert "lead lost" in [e.detail.get("reason") for e in await desk.timeline(second)]
    assert await desk.repair_incidents(T0 + 30_000, grace_ms=5_000) == []
