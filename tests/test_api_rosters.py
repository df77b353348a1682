"""Rosters over HTTP (web/rosters.py, store/rosters.py), in-process on a real Redis.

Two tenants (tests/tenancy.py): who may read and write a roster, that a write is checked
(a mistake is a 422 with its line, and the roster in force stays), that If-Match stops a
lost update, that reads and writes are audited without personal data, that `who` answers
from the new roster at once, and that another process picks the write up (`sync_rosters`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from responsecentre.alarms.view import iso
from responsecentre.clock import ManualClock
from responsecentre.directory import Directory, build_directory
from responsecentre.escalation.roster import parse_roster
from responsecentre.store.keys import KEYS
from responsecentre.store.rosters import (
    RosterStore,
    VersionConflict,
    applied_version,
    apply_roster,
    roster_key,
    roster_yaml,
    rosters_version_key,
    sha256_of,
    sync_rosters,
    watch_rosters,
)
from responsecentre.web.app import create_app
from tests import tenancy
from tests.servers import Redis
from tests.service import PASSWORD

ROOT = Path(__file__).resolve().parent.parent

# Tenant A's new roster: n1 by day and n2 by night in the north, s1 gone, two nurses the
# minimum in the north. "TENANT" is replaced by the tenant's name.
NEW_ROSTER = """\
tenants:
  TENANT:
    timezone: Europe/Oslo
    minimum:
      nurse: {north: 2, all: 1}
    staff:
      - id: n1
        name: Nurse North
        role: nurse
        zone: north
        contacts:
          - {sms: "+4790000001"}
          - {email: n1@example.org}
      - {id: n2, name: Nurse Night, role: nurse, zone: north}
      - {id: tl1, name: Lead, role: team_lead, on_duty: true}
    shifts:
      - {name: day, zone: north, role: nurse, from: "07:00", to: "19:00", staff: [n1]}
      - {name: night, zone: north, role: nurse, from: "19:00", to: "07:00", staff: [n2]}
"""
# Line 18 names a nurse the roster does not have.
BAD_ROSTER = NEW_ROSTER.replace("staff: [n2]", "staff: [n3]")


def iso_of(ms: int) -> str:
    text = iso(ms)
    assert text is not None
    return text


def roster_of(tenant: str, text: str = NEW_ROSTER) -> str:
    return text.replace("TENANT", tenant)


@dataclass
class World:
    a: str
    b: str
    client: httpx.AsyncClient
    redis: aioredis.Redis
    clock: ManualClock
    directory: Directory

    async def call(
        self,
        method: str,
        user: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        **params: Any,
    ) -> httpx.Response:
        return await self.client.request(method, path, json=body, params=params, headers=headers, auth=(user, PASSWORD))

    async def put(self, user: str, tenant: str, text: str, if_match: str | None = None) -> httpx.Response:
        headers = {"If-Match": if_match} if if_match is not None else None
        return await self.call("PUT", user, f"/api/rosters/{tenant}", {"yaml": text}, headers)

    async def who(self, user: str, tenant: str, **params: Any) -> httpx.Response:
        return await self.call("GET", user, f"/api/rosters/{tenant}/who", **params)

    async def audited(self, action: str) -> list[dict[str, str]]:
        entries = await self.redis.xrange(KEYS.audit())
        records = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]
        return [r for r in records if r["action"] == action]


@pytest.fixture
async def world(redis_server: Redis) -> AsyncIterator[World]:
    seeded = await tenancy.seed(redis_server.url)
    clock = ManualClock(tenancy.NOW_MS)
    seeded.ctx.clock = clock
    transport = httpx.ASGITransport(app=create_app(seeded.ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://rc") as http:
        yield World(seeded.a, seeded.b, http, seeded.ctx.redis, clock, seeded.ctx.directory)
    await seeded.ctx.redis.aclose()


def other_process(world: World) -> Directory:
    """The directory another process of the service loaded from the same files."""
    return build_directory(tenancy.homes_doc(world.a, world.b), tenancy.staff_doc(world.a, world.b))


# -- reading ----------------------------------------------------------------------------


async def test_operators_and_admins_read_the_file_roster_as_yaml_and_each_read_is_audited(world: World) -> None:
    a = world.a
    r = await world.call("GET", "op-a", f"/api/rosters/{a}")
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["source"] == "file" and view["version"] == 0 and r.headers["etag"] == '"0"'
    assert view["updated_by"] is None and view["updated_at"] is None and view["staff"] == 3
    assert view["sha256"] == sha256_of(view["yaml"])
    assert parse_roster(view["yaml"], "api") == {a: world.directory.rosters[a]}, "the YAML is the roster in force"
    assert (await world.call("GET", "admin-a", f"/api/rosters/{a}")).status_code == 200
    (first, second) = await world.audited("view_roster")
    assert first["user"] == "op-a" and first["tenant"] == a and first["version"] == "0" and first["source"] == "file"
    assert second["user"] == "admin-a"


async def test_nurses_and_integrators_may_not_read_and_another_tenant_does_not_exist(world: World) -> None:
    a, b = world.a, world.b
    for user in ("nurse-north-a", "integrator-a"):
        assert (await world.call("GET", user, f"/api/rosters/{a}")).status_code == 403
        assert (await world.who(user, a, zone="north", role="nurse")).status_code == 403
    for user, tenant in (("op-a", b), ("admin-a", b), ("op-b", a)):
        assert (await world.call("GET", user, f"/api/rosters/{tenant}")).status_code == 404
        assert (await world.who(user, tenant, zone="north", role="nurse")).status_code == 404
    r = await world.call("GET", "op-ab", "/api/rosters/nowhere")
    assert r.status_code == 404
    assert await world.audited("view_roster") == []


async def test_the_staff_file_round_trips_through_the_yaml_get_shows() -> None:
    """Every feature of the format (crews, leave, swaps, per-zone minimums, several roles
    and zones, contacts, on_duty) comes back equal from the re-serialised file."""
    shipped = parse_roster((ROOT / "escalation" / "staff.yaml").read_text(encoding="utf-8"))
    old_format = parse_roster(
        "tenants:\n  t:\n    minimum: {nurse: 0, team_lead: {north: 2}}\n    staff:\n"
        "      - {id: a, roles: [nurse, team_lead], zones: [north, 'no'], on_duty: false}\n"
        "      - {id: b, name: 'yes', role: nurse}\n"
        "    overrides:\n      - {type: leave, staff: b, date: 2027-01-01}\n"
    )
    for rosters in (shipped, old_format):
        for tenant, roster in rosters.items():
            assert parse_roster(roster_yaml(roster), "again") == {tenant: roster}
    assert old_format["t"].always == ("b",)


# -- writing ----------------------------------------------------------------------------


async def test_an_admin_writes_a_roster_which_is_stored_applied_at_once_and_audited(world: World) -> None:
    a, b = world.a, world.b
    text = roster_of(a)
    r = await world.put("admin-a", a, text)
    assert r.status_code == 200, r.text
    made = r.json()
    assert made["version"] == 1 and made["source"] == "api" and made["updated_by"] == "admin-a"
    assert made["sha256"] == sha256_of(text) and made["staff"] == 3 and r.headers["etag"] == '"1"'
    assert made["updated_at"] == iso_of(world.clock())

    view = (await world.call("GET", "op-a", f"/api/rosters/{a}")).json()
    assert view["yaml"] == text and view["version"] == 1 and view["source"] == "api"
    assert view["updated_by"] == "admin-a"

    # This process runs it already: s1 is gone from the staff, n2 is there; tenant B untouched.
    assert world.directory.rosters[a] == parse_roster(text, "x")[a]
    assert (a, "s1") not in world.directory.staff and (a, "n2") in world.directory.staff
    assert (b, "n1") in world.directory.staff and world.directory.rosters[b].staff["n1"].name == "Nurse B"
    assert applied_version(world.directory, a) == 1

    (entry,) = await world.audited("update_roster")
    assert entry["user"] == "admin-a" and entry["tenant"] == a
    assert entry["version"] == "1" and entry["previous_version"] == "0" and entry["sha256"] == made["sha256"]
    assert not any("+47" in v or "@example" in v or "Nurse" in v for v in entry.values()), "no personal data"

    r = await world.put("admin-a", a, text.replace("Nurse Night", "Nurse Nocturne"))
    assert r.json()["version"] == 2
    assert world.directory.staff[(a, "n2")].name == "Nurse Nocturne"


async def test_a_mistake_is_refused_with_its_line_and_the_roster_in_force_stays(world: World) -> None:
    a = world.a
    assert (await world.put("admin-a", a, roster_of(a))).status_code == 200
    running = world.directory.rosters[a]
    r = await world.put("admin-a", a, roster_of(a, BAD_ROSTER))
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [f"api:{a}:18: unknown staff id 'n3'"]
    assert "in force stays" in r.json()["detail"]
    assert world.directory.rosters[a] is running
    view = (await world.call("GET", "op-a", f"/api/rosters/{a}")).json()
    assert view["version"] == 1 and view["yaml"] == roster_of(a)
    (refused,) = await world.audited("update_roster_refused")
    assert refused["tenant"] == a and refused["why"] == "invalid" and refused["line"] == "18"
    assert len(await world.audited("update_roster")) == 1

    # Not YAML at all; a bare tenant section; another tenant's roster; no roster: each a 422.
    cases = {
        "staff: [\n": "invalid YAML",
        "staff:\n  - {id: n1, role: nurse}\n": f"put this section under 'tenants:' and '{a}:'",
        roster_of(a) + "  elsewhere:\n    staff: []\n": f"api:{a}:19: tenant 'elsewhere' in a roster for {a!r}",
        "": f"api:{a}:1: no roster for {a!r}",
        "tenants:\n  " + a + ":\n    staff:\n      - {id: n1, role: nurse, contacts: [{sms: '123'}]}\n": (
            f"api:{a}:4: an SMS number is written +<country><number>"
        ),
    }
    for text, message in cases.items():
        r = await world.put("admin-a", a, text)
        assert r.status_code == 422 and message in r.json()["errors"][0], (text, r.text)
    assert world.directory.rosters[a] is running
    # A body that is not {"yaml": "..."}: the usual validation problem.
    r = await world.call("PUT", "admin-a", f"/api/rosters/{a}", {"text": roster_of(a)})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "yaml"]


async def test_if_match_stops_a_lost_update(world: World) -> None:
    a = world.a
    assert (await world.put("admin-a", a, roster_of(a), if_match='"0"')).json()["version"] == 1
    # A second admin read version 0 too and writes after the first: refused, nothing written.
    r = await world.put("admin-a", a, roster_of(a).replace("Lead", "Other Lead"), if_match='"0"')
    assert r.status_code == 409 and "version 1, not 0" in r.json()["detail"]
    assert world.directory.staff[(a, "tl1")].name == "Lead"
    (refused,) = await world.audited("update_roster_refused")
    assert refused["why"] == "conflict" and refused["expected"] == "0" and refused["version"] == "1"
    # With the version read now it goes through; unquoted and `*` are taken too.
    assert (await world.put("admin-a", a, roster_of(a), if_match='"1"')).json()["version"] == 2
    assert (await world.put("admin-a", a, roster_of(a), if_match="1")).status_code == 409
    assert (await world.put("admin-a", a, roster_of(a), if_match="2")).json()["version"] == 3
    assert (await world.put("admin-a", a, roster_of(a), if_match="*")).json()["version"] == 4
    r = await world.put("admin-a", a, roster_of(a), if_match="W/abc")  # names no version: can never match
    assert r.status_code == 409 and "names no version" in r.json()["detail"]


async def test_only_admins_of_the_tenant_write(world: World) -> None:
    a, b = world.a, world.b
    for user in ("op-a", "nurse-north-a", "integrator-a"):
        r = await world.put(user, a, roster_of(a))
        assert r.status_code == 403, (user, r.text)
    r = await world.put("admin-a", b, roster_of(b))
    assert r.status_code == 404 and b in r.text
    assert await RosterStore(world.redis).get(a) is None and await RosterStore(world.redis).get(b) is None
    assert await world.audited("update_roster") == []
    assert world.directory.rosters[b].staff["n1"].name == "Nurse B"


# -- who is on duty ---------------------------------------------------------------------


async def test_who_answers_in_roster_order_with_coverage_and_changes_with_a_write(world: World) -> None:
    a = world.a
    r = await world.who("op-a", a, zone="north", role="nurse", at="2027-01-12T10:00")
    assert r.status_code == 200, r.text
    before = r.json()
    assert [p["staff_id"] for p in before["people"]] == ["n1"] and before["people"][0]["source"] == "always"
    assert before["coverage"] == {"on_duty": 1, "minimum": 1, "short": False}
    assert before["local"] == "2027-01-12 10:00 CET" and before["at"] == "2027-01-12T09:00:00.000Z"

    assert (await world.put("admin-a", a, roster_of(a))).status_code == 200
    r = await world.who("admin-a", a, zone="north", role="nurse", at="2027-01-12T10:00")
    day = r.json()
    assert day["people"] == [
        {
            "staff_id": "n1",
            "name": "Nurse North",
            "roles": ["nurse"],
            "source": "pattern",
            "shift": "day 07:00-19:00",
            "until": "2027-01-12T18:00:00.000Z",
            "note": "",
        }
    ]
    assert day["coverage"] == {"on_duty": 1, "minimum": 2, "short": True}
    assert "+47" not in r.text and "example.org" not in r.text and "contacts" not in r.text

    night = (await world.who("op-a", a, zone="north", role="nurse", at="2027-01-12T22:00:00Z")).json()
    assert [p["staff_id"] for p in night["people"]] == ["n2"] and night["local"] == "2027-01-12 23:00 CET"
    south = (await world.who("op-a", a, zone="south", role="nurse", at="2027-01-12T10:00")).json()
    assert south["people"] == [] and south["coverage"]["short"] is True
    assert south["notes"] == ["zone 'south' is not named in the roster; zones named there: north"]
    # Default: now on the app's clock (2026-11-18 12:06 in Oslo: the day shift).
    now = (await world.who("op-a", a, zone="north", role="nurse")).json()
    assert now["at"] == iso_of(world.clock()) and [p["staff_id"] for p in now["people"]] == ["n1"]
    # Team leads: the one always on duty, in every zone.
    lead = (await world.who("op-a", a, zone="anywhere", role="team_lead")).json()
    assert [(p["staff_id"], p["source"], p["until"]) for p in lead["people"]] == [("tl1", "always", None)]
    assert await world.audited("view_roster") == [], "who is not audited: it holds no contact data"


async def test_who_reads_local_times_as_the_cli_does(world: World) -> None:
    a = world.a
    r = await world.who("op-a", a, zone="north", role="nurse", at="2027-03-28T02:30")
    assert r.status_code == 422 and "does not exist in Europe/Oslo" in r.json()["detail"][0]["msg"]
    assert r.json()["detail"][0]["loc"] == ["query", "at"]
    twice = (await world.who("op-a", a, zone="north", role="nurse", at="2027-10-31T02:30")).json()
    assert twice["at"] == "2027-10-31T00:30:00.000Z" and "happens twice" in twice["notes"][0]
    for bad in ("tomorrow", "9999-12-31T23:59:59-23:00", "1960-01-01T00:00Z"):
        r = await world.who("op-a", a, zone="north", role="nurse", at=bad)
        assert r.status_code == 422, (bad, r.text)
    assert (await world.who("op-a", a, zone="north", role="nurce")).status_code == 422
    assert (await world.who("op-a", a, zone="no/rth", role="nurse")).status_code == 422


# -- other processes --------------------------------------------------------------------


async def test_sync_rosters_applies_a_roster_another_process_wrote(world: World) -> None:
    a, b = world.a, world.b
    other = other_process(world)
    assert await sync_rosters(world.redis, other) == [], "nothing stored yet: the file's rosters stay"
    file_roster = other.rosters[a]

    assert (await world.put("admin-a", a, roster_of(a))).status_code == 200
    assert await sync_rosters(world.redis, other) == [a]
    assert other.rosters[a] == world.directory.rosters[a] != file_roster
    assert (a, "s1") not in other.staff and other.staff[(a, "n2")].name == "Nurse Night"
    assert other.on_duty(a, "nurse", "north", 1_799_000_000_000)  # some nurse of the new roster
    assert (b, "n1") in other.staff
    assert await sync_rosters(world.redis, other) == [], "nothing new"
    # The writer's own process applied it at the write: its sync has nothing to do.
    assert await sync_rosters(world.redis, world.directory) == []

    # Written straight into the store (another process's PUT): picked up on the next sync.
    store = RosterStore(world.redis)
    await store.put(b, roster_of(b).replace("tl1, name: Lead", "tl9, name: Lead B"), "admin-b", 1, expected=0)
    assert await sync_rosters(world.redis, other) == [b]
    assert (b, "tl9") in other.staff and (b, "n1") in other.staff and applied_version(other, b) == 1
    # This process has not synced yet: GET shows the stored roster all the same.
    view = (await world.call("GET", "op-b", f"/api/rosters/{b}")).json()
    assert view["version"] == 1 and view["updated_by"] == "admin-b" and view["staff"] == 3 and "tl9" in view["yaml"]
    assert (b, "tl9") not in world.directory.staff
    assert await sync_rosters(world.redis, world.directory) == [b]
    assert world.directory.staff[(b, "tl9")].name == "Lead B"


async def test_a_stored_roster_a_process_refuses_is_logged_once_and_the_running_one_stays(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    a = world.a
    other = other_process(world)
    running = other.rosters[a]
    await RosterStore(world.redis).put(a, roster_of(a, BAD_ROSTER), "someone", 1)
    with caplog.at_level(logging.ERROR, logger="responsecentre.store.rosters"):
        assert await sync_rosters(world.redis, other) == []
        await world.redis.incr(rosters_version_key())  # another tenant's write: a full look again
        assert await sync_rosters(world.redis, other) == []
    assert other.rosters[a] is running
    assert [r.getMessage() for r in caplog.records].count(
        f"stored roster of {a}, version 1, refused; the running one stays: api:{a}:18: unknown staff id 'n3'"
    ) == 1
    # A good one after it is applied.
    await RosterStore(world.redis).put(a, roster_of(a), "someone", 2)
    assert await sync_rosters(world.redis, other) == [a] and applied_version(other, a) == 2


async def test_versions_are_compared_in_one_step_and_never_go_back(world: World) -> None:
    a = world.a
    store = RosterStore(world.redis)
    first = await store.put(a, roster_of(a), "x", 1)
    with pytest.raises(VersionConflict) as conflict:
        await store.put(a, roster_of(a), "y", 2, expected=0)
    assert conflict.value.current == 1 and (await store.get(a)) == first
    assert await world.redis.hget(roster_key(a), "updated_by") == b"x"
    assert await store.tenants() == [a]
    newer = parse_roster(roster_of(a), "x")[a]
    assert apply_roster(world.directory, a, newer, 2)
    older = parse_roster(roster_of(a).replace("Nurse Night", "Old"), "x")[a]
    assert not apply_roster(world.directory, a, older, 1), "a write applied late must not undo a newer one"
    assert world.directory.rosters[a] is newer


async def test_watch_rosters_keeps_a_process_in_step_and_outlives_redis_trouble(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    a = world.a
    other = other_process(world)
    task = asyncio.create_task(watch_rosters(world.redis, other, every_s=0.01))
    try:
        await RosterStore(world.redis).put(a, roster_of(a), "admin-a", 1)
        async with asyncio.timeout(5):
            while applied_version(other, a) != 1:
                await asyncio.sleep(0.01)
        assert (a, "n2") in other.staff
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    nowhere = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    task = asyncio.create_task(watch_rosters(nowhere, other, every_s=0.01))
    with caplog.at_level(logging.WARNING, logger="responsecentre.store.rosters"):
        async with asyncio.timeout(5):  # the first failed sync is logged, and the watch goes on
            while not any("roster sync failed" in r.getMessage() for r in caplog.records):
                await asyncio.sleep(0.01)
        assert not task.done(), "still watching"
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await nowhere.aclose()
    assert any("roster sync failed" in r.getMessage() for r in caplog.records)
    assert applied_version(other, a) == 1
