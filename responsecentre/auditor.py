"""The escalation auditor: a loop that makes sure no escalating alarm is forgotten.

Every AUDIT period it reads the open alarms and the score of each one's step timer (one
pipelined round trip per tenant) and asks the pure `escalation.audit.check` whether the
timer is there and on time; and it checks every open incident for a hand-over a crash cut
short (`AlarmDesk.repair_incidents`). A repair puts the timer back (or fires an overdue one at
once, through the same fenced transaction the timer loop uses), is counted in
`responsecentre_escalation_repairs_total{reason}` and raises a technical alarm of the
centre itself (`escalation_repair`, home `_centre`): something of ours lost a timer, and
a person should find out why.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from responsecentre.alarms.desk import AlarmDesk
from responsecentre.alarms.model import Alarm, Trigger
from responsecentre.clock import Clock, system_clock
from responsecentre.escalation.audit import Repair, check
from responsecentre.faults import Faults, describe, is_outage, reraise_if_stopping
from responsecentre.metrics import Metrics
from responsecentre.store.keys import KEYS, Keys

log = logging.getLogger(__name__)

STAGE = "auditor"
CENTRE_HOME = "_centre"  # the home id of the centre's own technical alarms
REPAIR_KIND = "escalation_repair"


async def audit_once(
    redis: aioredis.Redis,
    desk: AlarmDesk,
    now_ms: int,
    grace_ms: int,
    metrics: Metrics,
    keys: Keys = KEYS,
) -> list[tuple[Alarm, Repair]]:
    """One pass over every open incident and every open alarm; returns the repairs made
    (alarm as found, repair)."""
    alarms = await desk.open_alarms()
    repairs = await _audit_incidents(desk, now_ms, grace_ms, metrics, alarms)
    if not alarms:
        return repairs
    members = [desk.timer_for(alarm) for alarm in alarms]
    async with redis.pipeline(transaction=False) as pipe:
        for member in members:
            pipe.zscore(keys.timers(), member)
        scores = await pipe.execute()
    for alarm, score in zip(alarms, scores, strict=True):
        if check(alarm.escalation, score, now_ms, grace_ms) is None:
            continue
        # Checked again inside a transaction on the alarm: the timer loop may have moved
        # it on since the read above, and a timer it just replaced is not missing.
        found = await desk.repair_timer(alarm.tenant, alarm.id, now_ms, grace_ms)
        if found is None:
            continue
        alarm, repair = found
        log.error(
            "alarm %s step %d: escalation timer %s (%d ms overdue); repaired",
            alarm.id,
            alarm.escalation.step + 1,
            repair.reason,
            repair.overdue_ms,
        )
        repairs.append(await _reported(desk, alarm, repair, now_ms, metrics))
    return repairs


async def _audit_incidents(
    desk: AlarmDesk, now_ms: int, grace_ms: int, metrics: Metrics, open_alarms: list[Alarm]
) -> list[tuple[Alarm, Repair]]:
    """An incident whose hand-over was cut by a crash: a closed member still listed, or
    members waiting with nobody carrying the incident's escalation (`repair_incidents`)."""
    repairs: list[tuple[Alarm, Repair]] = []
    for alarm, reason in await desk.repair_incidents(now_ms, grace_ms, open_alarms):
        log.error("incident %s: %s (alarm %s); repaired", alarm.incident_id, reason, alarm.id)
        repairs.append(await _reported(desk, alarm, Repair(reason, now_ms, 0), now_ms, metrics))
    return repairs


async def _reported(
    desk: AlarmDesk, alarm: Alarm, repair: Repair, now_ms: int, metrics: Metrics
) -> tuple[Alarm, Repair]:
    """Count a repair and raise the centre's own alarm about it: a person finds out why."""
    metrics.escalation_repairs.labels(str(repair.reason)).inc()
    await desk.apply_trigger(alarm.tenant, _technical_alarm(alarm, repair, now_ms), now_ms)
    return alarm, repair


def _technical_alarm(alarm: Alarm, repair: Repair, now_ms: int) -> Trigger:
    """The centre's own alarm about a repaired timer; one open per tenant, repairs join it."""
    esc = alarm.escalation
    return Trigger(
        cause=f"auditor:{alarm.id}:{esc.step}:{esc.round}:{getattr(esc, 'epoch', 0)}:{repair.reason}",
        rule="escalation-auditor",
        kind=REPAIR_KIND,
        priority="high",
        chain="technical",
        home_id=CENTRE_HOME,
        zone="all",
        device_id=None,
        ts_ms=now_ms,
        event_id=alarm.id,  # which alarm's timer was repaired
        event_type=str(repair.reason),
    )


async def run_auditor(
    redis: aioredis.Redis,
    desk: AlarmDesk,
    every_ms: int,
    grace_ms: int,
    metrics: Metrics,
    clock: Clock = system_clock,
    faults: Faults | None = None,
    keys: Keys = KEYS,
) -> None:
    while True:
        reraise_if_stopping()
        try:
            await audit_once(redis, desk, clock(), grace_ms, metrics, keys)
            if faults is not None:
                faults.ok(STAGE, clock())
        except Exception as exc:
            reraise_if_stopping()
            if is_outage(exc):
                log.warning("auditor: redis unavailable (%s); retrying", describe(exc))
            else:
                log.exception("auditor: a pass failed; retrying")
                metrics.internal_errors.labels(STAGE).inc()
                if faults is not None:
                    faults.fault(STAGE, exc, clock())
        await asyncio.sleep(every_ms / 1000)
