"""Tenant isolation and the nurse's scope over HTTP, in-process on a real Redis.

Two municipalities (tests/tenancy.py) with one open alarm per home: every route must show
a user her own tenants only, and a nurse only the alarms paged to her or taken by her. What
is not hers does not exist for her: 404 (or an empty list), never 403, so ids and tenant
names cannot be probed. The WebSocket feed and MQTT are covered in test_tenancy_live.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from responsecentre.ingest.log import dead_letter_record
from responsecentre.store.keys import KEYS
from responsecentre.store.records import EventRecord
from responsecentre.web.app import create_app
from tests import tenancy
from tests.servers import Redis
from tests.service import PASSWORD

NOW_MS = 1_795_000_000_000


@dataclass
class World:
    a: str
    b: str
    alarms: dict[tuple[str, str], str]  # (tenant, home) -> alarm id
    client: httpx.AsyncClient
    redis: aioredis.Redis

    async def get(self, user: str, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params, auth=(user, PASSWORD))

    async def post(self, user: str, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post(path, json=body, auth=(user, PASSWORD))

    async def listed(self, user: str, state: str = "open") -> set[tuple[str, str]]:
        r = await self.get(user, "/api/alarms", state=state)
        assert r.status_code == 200, r.text
        return {(a["tenant"], a["home_id"]) for a in r.json()["alarms"]}


@pytest.fixture
async def world(redis_server: Redis) -> AsyncIterator[World]:
    seeded = await tenancy.seed(redis_server.url)
    transport = httpx.ASGITransport(app=create_app(seeded.ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://rc") as http:
        yield World(seeded.a, seeded.b, seeded.alarms, http, seeded.ctx.redis)
    await seeded.ctx.redis.aclose()


async def test_each_user_lists_only_her_tenants_alarms(world: World) -> None:
    a, b = world.a, world.b
    assert await world.listed("op-a") == {(a, "h1"), (a, "h2")}
    assert await world.listed("op-b") == {(b, "h1")}
    assert await world.listed("op-ab") == {(a, "h1"), (a, "h2"), (b, "h1")}
    assert await world.listed("admin-a") == {(a, "h1"), (a, "h2")}
    assert await world.listed("integrator-a") == {(a, "h1"), (a, "h2")}
    assert await world.listed("op-a", state="all") == {(a, "h1"), (a, "h2")}


async def test_another_tenants_alarm_does_not_exist_for_her(world: World) -> None:
    theirs = world.alarms[(world.b, "h1")]
    assert (await world.get("op-a", f"/api/alarms/{theirs}")).status_code == 404
    for action, body in (("ack", {}), ("note", {"text": "x"}), ("resolve", {"code": "assisted"})):
        r = await world.post("op-a", f"/api/alarms/{theirs}/{action}", body)
        assert r.status_code == 404, (action, r.text)
        assert r.json()["detail"] == (await world.post("op-a", f"/api/alarms/no-such-id/{action}", body)).json()[
            "detail"
        ].replace("no-such-id", theirs)
    # ... and it is untouched: still open and unacknowledged for its own tenant's operator.
    r = await world.get("op-b", f"/api/alarms/{theirs}")
    assert r.status_code == 200 and r.json()["state"] == "raised"
    assert all(e["by"] != "op-a" for e in r.json()["timeline"])


async def test_residents_and_devices_of_another_tenant_stay_hidden(world: World) -> None:
    a, b = world.a, world.b
    r = await world.get("op-a", f"/api/homes/{b}/h1")
    assert r.status_code == 404 and "9999" not in r.text
    assert (await world.get("op-a", f"/api/homes/{a}/h1")).json()["resident"]["key_safe"] == "1111"
    assert (await world.get("admin-a", f"/api/homes/{b}/h1")).status_code == 404
    devices = (await world.get("integrator-a", "/api/devices")).json()["devices"]
    assert {d["tenant"] for d in devices} == {a}
    assert (await world.get("integrator-a", "/api/devices", tenant=b)).json()["devices"] == []
    assert (await world.get("integrator-a", "/api/devices", tenant="nowhere")).json()["devices"] == []


async def test_a_nurse_sees_and_acts_on_only_the_alarms_paged_to_her(world: World) -> None:
    a, b = world.a, world.b
    north, south = world.alarms[(a, "h1")], world.alarms[(a, "h2")]
    assert await world.listed("nurse-north-a") == {(a, "h1")}
    assert await world.listed("nurse-south-a") == {(a, "h2")}
    # Same staff id in the other tenant: paged there, not here.
    assert await world.listed("nurse-north-b") == {(b, "h1")}
    for nurse in ("nurse-south-a", "nurse-north-b"):
        assert (await world.get(nurse, f"/api/alarms/{north}")).status_code == 404
        assert (await world.post(nurse, f"/api/alarms/{north}/ack", {})).status_code == 404
        assert (await world.post(nurse, f"/api/alarms/{north}/resolve", {"code": "assisted"})).status_code == 404
    r = await world.post("nurse-north-a", f"/api/alarms/{north}/ack", {"note": "on my way"})
    assert r.status_code == 200 and r.json()["acknowledged_by"] == "nurse-north-a"
    r = await world.post("nurse-north-a", f"/api/alarms/{north}/resolve", {"code": "assisted"})
    assert r.status_code == 200 and r.json()["state"] == "resolved"
    assert (await world.get("nurse-north-a", f"/api/alarms/{south}")).status_code == 404
    assert await world.listed("nurse-north-a", state="all") == {(a, "h1")}


async def test_a_nurse_keeps_the_alarm_she_took_even_if_never_paged(world: World) -> None:
    """An alarm a nurse took stays hers to finish, whatever the page index says later."""
    south = world.alarms[(world.a, "h2")]
    assert (await world.post("nurse-south-a", f"/api/alarms/{south}/ack", {})).status_code == 200
    await world.redis.delete(KEYS.staff_alarms(world.a, "s1"))  # as if the page had never been indexed
    assert await world.listed("nurse-south-a") == {(world.a, "h2")}
    r = await world.post("nurse-south-a", f"/api/alarms/{south}/resolve", {"code": "assisted"})
    assert r.status_code == 200


async def test_an_integrator_sees_events_and_dead_letters_of_her_tenants_only(world: World) -> None:
    a, b = world.a, world.b
    for tenant, device in ((a, "h1-btn"), (a, "h2-door"), (b, "h1-btn")):
        record = EventRecord(
            device=device, id=f"e-{tenant}-{device}", type="device.heartbeat", ts=NOW_MS, dts=NOW_MS, recv=NOW_MS
        )
        await world.redis.xadd(KEYS.events(tenant), dict(zip(*[iter(record.fields())] * 2, strict=True)))
    for topic in (f"rc/v1/{a}/devices/h1-btn/events", f"rc/v1/{b}/devices/h1-btn/events", "elsewhere/x"):
        await world.redis.xadd(KEYS.dead_letters(), dead_letter_record(topic, b"{not json", "bad_json", "x", NOW_MS))

    r = await world.get("integrator-a", f"/api/events/{a}")
    assert r.status_code == 200
    assert {e["device_id"] for e in r.json()["events"]} == {"h1-btn", "h2-door"}
    r = await world.get("integrator-a", f"/api/events/{a}", device="h2-door")
    assert [e["event_id"] for e in r.json()["events"]] == [f"e-{a}-h2-door"]
    assert (await world.get("integrator-a", f"/api/events/{b}")).status_code == 404
    assert (await world.get("nurse-north-a", f"/api/events/{a}")).status_code == 403

    letters = (await world.get("integrator-a", "/api/dead-letters")).json()["dead_letters"]
    assert [x["topic"] for x in letters] == [f"rc/v1/{a}/devices/h1-btn/events"]
    assert letters[0]["reason"] == "bad_json" and letters[0]["sample"] == "{not json"
    assert (await world.get("integrator-a", "/api/dead-letters", tenant=b)).json()["dead_letters"] == []
    assert (await world.get("op-a", "/api/dead-letters")).status_code == 403
