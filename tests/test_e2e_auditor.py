"""The escalation auditor end to end: a step timer deleted from Redis behind the centre's
back is put back, counted, and reported as a technical alarm of the centre itself; the
alarm still escalates on time."""

from __future__ import annotations

import time

import pytest
import redis.asyncio as aioredis

from responsecentre.alarms.desk import timer_member
from tests.service import Api, Publisher, ServiceProcess


@pytest.fixture
def service_env() -> dict[str, str]:
    return {"RC_AUDIT_MS": "200", "RC_ESCALATION_GRACE_MS": "500"}


async def test_a_lost_timer_is_repaired_counted_and_reported(
    service: ServiceProcess, api: Api, publisher: Publisher, tenant: str, redis_url: str
) -> None:
    publisher.event(tenant, "h1-btn", "b-1", "alarm.button")
    (alarm,) = [
        a
        for a in await api.wait_for(lambda al: [a for a in al if a["kind"] == "assistance"], 10)
        if a["kind"] == "assistance"
    ]
    member = timer_member(tenant, alarm["id"], 0, 0)
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert await client.zscore("rc:timers", member) is not None
        removed_at = time.time()
        assert await client.zrem("rc:timers", member) == 1
        await api.metric_reaches('responsecentre_escalation_repairs_total{reason="missing"}', 1, timeout=5)
        assert await client.zscore("rc:timers", member) is not None or (await api.alarm(alarm["id"]))["step"] == 2
    finally:
        await client.aclose()
    assert time.time() - removed_at < 2.0  # within a few audit periods

    # The centre's own technical alarm names the alarm whose timer was lost.
    def repairs(alarms: list[dict]) -> list[dict]:
        return [a for a in alarms if a["kind"] == "escalation_repair"]

    (technical,) = repairs(await api.wait_for(repairs, 5))
    assert technical["home_id"] == "_centre"
    detail = await api.alarm(technical["id"])
    assert detail["timeline"][0]["detail"]["event"] == alarm["id"]

    # ... and the repaired alarm still moves on to step 2 when its 2 s are up.
    await api.wait_for(lambda al: [a for a in al if a["id"] == alarm["id"] and a["step"] == 2], 6)
