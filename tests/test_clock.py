"""The shell on a clock the test moves: a real Redis, the real desk, timer loop and API,
and no sleeping. The chain of tests/service.py gives step 1 two seconds."""

from __future__ import annotations

import httpx

from responsecentre.alarms.model import Trigger
from responsecentre.alarms.view import iso
from responsecentre.clock import ManualClock
from responsecentre.store.keys import KEYS
from responsecentre.timers import fire_due
from responsecentre.web.app import create_app
from tests.servers import Redis
from tests.service import PASSWORD
from tests.test_http_edges import TENANT, make_context, prepare

T0 = 1_800_000_000_000  # 2027-01-15, any fixed instant


async def test_timers_and_the_api_keep_the_injected_time(redis_server: Redis) -> None:
    await prepare(redis_server.url)
    clock = ManualClock(T0)
    ctx = make_context(redis_server.url)
    ctx.clock = clock
    try:
        trigger = Trigger("clock:1", "button", "assistance", "critical", "urgent", "h3", "north", "h3-btn", T0)
        alarm = await ctx.desk.apply_trigger(TENANT, trigger, clock())
        assert alarm is not None and alarm.escalation.step == 0

        clock.advance(1_999)  # one millisecond before step 1's ack_within runs out
        await fire_due(ctx.redis, ctx.desk, clock())
        assert (await ctx.desk.get(alarm.id)).escalation.step == 0
        clock.advance(1)
        await fire_due(ctx.redis, ctx.desk, clock())
        assert (await ctx.desk.get(alarm.id)).escalation.step == 1

        clock.advance(500)
        transport = httpx.ASGITransport(app=create_app(ctx))
        async with httpx.AsyncClient(transport=transport, base_url="http://rc", auth=("operator", PASSWORD)) as api:
            r = await api.post(f"/api/alarms/{alarm.id}/ack", json={})
            assert r.status_code == 200, r.text
            assert r.json()["acknowledged_at"] == iso(T0 + 2_500)
        (_, audit), *_ = await ctx.redis.xrevrange(KEYS.audit(), count=1)
        assert audit[b"action"] == b"ack" and int(audit[b"ts"]) == T0 + 2_500
    finally:
        await ctx.redis.aclose()
