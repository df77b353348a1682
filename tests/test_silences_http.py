"""Silences, home status and device maintenance over HTTP, in-process on a real Redis.

Two tenants (tests/tenancy.py, the second reuses the first one's ids) and a clock the test
moves: who may set what (operators and admins), that each change is audited, that another
tenant's home, device or silence is a 404 and never listed, that the times are checked,
and that what the routes write is what the rule processor's index then answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from responsecentre.alarms.view import iso
from responsecentre.clock import ManualClock
from responsecentre.directory import Directory
from responsecentre.store.keys import KEYS
from responsecentre.store.suppressions import SuppressionStore
from responsecentre.suppression import DAY_MS
from responsecentre.web.app import create_app
from tests import tenancy
from tests.servers import Redis
from tests.service import PASSWORD

NOW_MS = tenancy.NOW_MS
MIN_MS = 60_000


def at(ms: int) -> str:
    """RFC 3339 as the API writes it (and takes it)."""
    text = iso(ms)
    assert text is not None
    return text


@dataclass
class World:
    a: str
    b: str
    client: httpx.AsyncClient
    redis: aioredis.Redis
    clock: ManualClock
    directory: Directory

    async def call(
        self, method: str, user: str, path: str, body: dict[str, Any] | None = None, **params: Any
    ) -> httpx.Response:
        return await self.client.request(method, path, json=body, params=params, auth=(user, PASSWORD))

    async def silence(
        self, user: str, tenant: str, scope: str, target: str, start: int | None, end: int
    ) -> httpx.Response:
        body = {"tenant": tenant, "scope": scope, "target": target, "end": at(end), "reason": "planned work"}
        if start is not None:
            body["start"] = at(start)
        return await self.call("POST", user, "/api/silences", body)

    async def audited(self, action: str) -> list[dict[str, str]]:
        entries = await self.redis.xrange(KEYS.audit())
        records = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]
        return [r for r in records if r["action"] == action]

    async def index_reason(self, tenant: str, home: str, device: str | None, kind: str, at_ms: int) -> str | None:
        index = await SuppressionStore(self.redis, self.directory).load(now_ms=self.clock())
        return index.reason(tenant, home, device, kind, at_ms)


@pytest.fixture
async def world(redis_server: Redis) -> AsyncIterator[World]:
    seeded = await tenancy.seed(redis_server.url)
    clock = ManualClock(NOW_MS)
    seeded.ctx.clock = clock
    transport = httpx.ASGITransport(app=create_app(seeded.ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://rc") as http:
        yield World(seeded.a, seeded.b, http, seeded.ctx.redis, clock, seeded.ctx.directory)
    await seeded.ctx.redis.aclose()


async def test_an_operator_plans_a_silence_that_is_audited_listed_and_ended(world: World) -> None:
    a = world.a
    version = int(await world.redis.get(KEYS.suppression_version()) or 0)
    r = await world.silence("op-a", a, "home", "h1", NOW_MS + 10 * MIN_MS, NOW_MS + 70 * MIN_MS)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["active"] is False and made["created_by"] == "op-a" and made["source"] == "api"
    assert int(await world.redis.get(KEYS.suppression_version())) == version + 1, "the processor is told"
    (entry,) = await world.audited("silence_create")
    assert entry["user"] == "op-a" and entry["silence"] == made["id"] and entry["target"] == "h1"
    assert entry["tenant"] == a and entry["start"] == made["start"]

    listed = (await world.call("GET", "op-a", "/api/silences")).json()["silences"]
    assert [s["id"] for s in listed] == [made["id"]]
    assert (await world.call("GET", "op-b", "/api/silences")).json()["silences"] == []
    assert (await world.call("GET", "op-a", "/api/silences", tenant=world.b)).json()["silences"] == []

    assert await world.index_reason(a, "h1", "h1-door", "door_open", NOW_MS + 10 * MIN_MS) == "silence"
    assert await world.index_reason(a, "h2", "h2-door", "door_open", NOW_MS + 10 * MIN_MS) is None

    world.clock.advance(20 * MIN_MS)
    assert (await world.call("GET", "admin-a", "/api/silences")).json()["silences"][0]["active"] is True
    r = await world.call("DELETE", "admin-a", f"/api/silences/{made['id']}")
    assert r.status_code == 200 and r.json()["active"] is False and r.json()["end"] == at(world.clock())
    assert (await world.audited("silence_end"))[0]["user"] == "admin-a"
    assert (await world.call("GET", "op-a", "/api/silences")).json()["silences"] == []
    # The ended interval stays: what arrived during it is still recognised as silenced.
    assert await world.index_reason(a, "h1", "h1-door", "door_open", NOW_MS + 15 * MIN_MS) == "silence"
    assert await world.index_reason(a, "h1", "h1-door", "door_open", world.clock()) is None
    # Ending it again changes nothing.
    assert (await world.call("DELETE", "op-a", f"/api/silences/{made['id']}")).json()["end"] == r.json()["end"]


async def test_a_planned_silence_cancelled_before_it_begins_is_gone(world: World) -> None:
    made = (await world.silence("op-a", world.a, "tenant", "", NOW_MS + DAY_MS, NOW_MS + 2 * DAY_MS)).json()
    r = await world.call("DELETE", "op-a", f"/api/silences/{made['id']}")
    assert r.status_code == 200 and r.json()["end"] == r.json()["start"]
    assert (await world.call("GET", "op-a", "/api/silences")).json()["silences"] == []
    assert await world.index_reason(world.a, "h1", None, "x", NOW_MS + DAY_MS + 1) is None


async def test_another_tenants_homes_devices_and_silences_do_not_exist_for_her(world: World) -> None:
    a, b = world.a, world.b
    theirs = (await world.silence("op-b", b, "home", "h1", None, NOW_MS + MIN_MS)).json()["id"]
    assert (await world.call("DELETE", "op-a", f"/api/silences/{theirs}")).status_code == 404
    assert (await world.call("DELETE", "op-a", "/api/silences/no-such")).status_code == 404
    assert (await world.silence("op-a", b, "home", "h1", None, NOW_MS + MIN_MS)).status_code == 404
    assert (await world.silence("op-a", a, "home", "h9", None, NOW_MS + MIN_MS)).status_code == 404
    assert (await world.silence("op-a", a, "device", "h9-btn", None, NOW_MS + MIN_MS)).status_code == 404
    r = await world.call("PUT", "op-a", f"/api/homes/{b}/h1/status", {"status": "away"})
    assert r.status_code == 404 and "9999" not in r.text
    assert (
        await world.call("PUT", "admin-a", f"/api/devices/{b}/h1-btn/maintenance", {"maintenance": True})
    ).status_code == 404
    assert (await world.call("PUT", "op-a", f"/api/homes/{a}/h9/status", {"status": "away"})).status_code == 404
    # Tenant B's own silence is untouched and still active for B.
    assert await world.index_reason(b, "h1", None, "x", NOW_MS) == "silence"
    assert await world.index_reason(a, "h1", None, "x", NOW_MS) is None
    assert [s["id"] for s in (await world.call("GET", "op-ab", "/api/silences")).json()["silences"]] == [theirs]


@pytest.mark.parametrize("user", ["nurse-north-a", "integrator-a"])
async def test_only_operators_and_admins_set_or_see_suppression(world: World, user: str) -> None:
    a = world.a
    assert (await world.call("GET", user, "/api/silences")).status_code == 403
    assert (await world.silence(user, a, "home", "h1", None, NOW_MS + MIN_MS)).status_code == 403
    assert (await world.call("PUT", user, f"/api/homes/{a}/h1/status", {"status": "away"})).status_code == 403
    assert (
        await world.call("PUT", user, f"/api/devices/{a}/h1-btn/maintenance", {"maintenance": True})
    ).status_code == 403
    assert await world.index_reason(a, "h1", "h1-btn", "x", NOW_MS) is None


async def test_home_status_away_then_back_to_normal(world: World) -> None:
    a = world.a
    r = await world.call(
        "PUT", "op-a", f"/api/homes/{a}/h1/status", {"status": "in_hospital", "until": at(NOW_MS + DAY_MS)}
    )
    assert r.status_code == 200, r.text
    assert r.json() | {"set_by": "-"} == {
        "tenant": a, "home_id": "h1", "status": "in_hospital", "since": at(NOW_MS), "until": at(NOW_MS + DAY_MS),
        "set_by": "-", "source": "api",
    }  # fmt: skip
    (entry,) = await world.audited("home_status")
    assert entry["user"] == "op-a" and entry["home"] == "h1" and entry["status"] == "in_hospital"
    homes = (await world.call("GET", "op-a", "/api/silences")).json()["homes"]
    assert [(h["home_id"], h["status"]) for h in homes] == [("h1", "in_hospital")]
    assert await world.index_reason(a, "h1", "h1-door", "door_open", NOW_MS + 1) == "in_hospital"
    assert await world.index_reason(a, "h1", "h1-smoke", "fire", NOW_MS + 1) is None, (
        "fire is never held back by a home"
    )

    world.clock.advance(60 * MIN_MS)
    r = await world.call("PUT", "op-a", f"/api/homes/{a}/h1/status", {"status": "normal"})
    assert r.status_code == 200 and r.json()["status"] == "normal" and r.json()["since"] == at(NOW_MS)
    assert (await world.call("GET", "op-a", "/api/silences")).json()["homes"] == []
    assert await world.index_reason(a, "h1", "h1-door", "door_open", world.clock()) is None
    assert await world.index_reason(a, "h1", "h1-door", "door_open", NOW_MS + 30 * MIN_MS) == "in_hospital"
    assert len(await world.audited("home_status")) == 2


async def test_device_maintenance_on_and_off(world: World) -> None:
    a = world.a
    path = f"/api/devices/{a}/h2-btn/maintenance"
    r = await world.call("PUT", "admin-a", path, {"maintenance": True})
    assert r.status_code == 200 and r.json()["maintenance"] is True and r.json()["home_id"] == "h2"
    devices = (await world.call("GET", "op-a", "/api/silences")).json()["devices"]
    assert [(d["device_id"], d["set_by"]) for d in devices] == [("h2-btn", "admin-a")]
    assert await world.index_reason(a, "h2", "h2-btn", "fire", NOW_MS) == "maintenance", "whatever the kind"
    world.clock.advance(MIN_MS)
    r = await world.call("PUT", "admin-a", path, {"maintenance": False})
    assert r.status_code == 200 and r.json()["maintenance"] is False
    assert await world.index_reason(a, "h2", "h2-btn", "assistance", world.clock()) is None
    assert [e["maintenance"] for e in await world.audited("device_maintenance")] == ["true", "false"]


async def test_times_that_do_not_fit_the_clock_are_refused(world: World) -> None:
    a = world.a
    for start, end in (
        (None, NOW_MS - 1),  # over before it begins
        (NOW_MS + MIN_MS, NOW_MS + MIN_MS),  # empty
        (None, NOW_MS + 91 * DAY_MS),  # too long
        (NOW_MS + 400 * DAY_MS, NOW_MS + 401 * DAY_MS),  # too far ahead
    ):
        r = await world.silence("op-a", a, "tenant", "", start, end)
        assert r.status_code == 409, (start, end, r.text)
    # A start in the past means now.
    r = await world.silence("op-a", a, "tenant", "", NOW_MS - DAY_MS, NOW_MS + MIN_MS)
    assert r.status_code == 201 and r.json()["start"] == at(NOW_MS) and r.json()["active"] is True
    r = await world.call("PUT", "op-a", f"/api/homes/{a}/h1/status", {"status": "away", "until": at(NOW_MS - 1)})
    assert r.status_code == 409
    r = await world.call("PUT", "op-a", f"/api/homes/{a}/h1/status", {"status": "normal", "until": at(NOW_MS + 1)})
    assert r.status_code == 409
    r = await world.call(
        "POST", "op-a", "/api/silences", {"tenant": a, "scope": "kind", "end": at(NOW_MS + 1), "reason": "x"}
    )
    assert r.status_code == 422, "a kind silence names its kind"
    r = await world.call(
        "POST",
        "op-a",
        "/api/silences",
        {"tenant": a, "scope": "home", "target": "h1", "end": "2026-12-01T08:00:00", "reason": "x"},
    )
    assert r.status_code == 422, "a time without an offset is ambiguous"
