"""Two municipalities side by side: the data the tenant-isolation tests run on.

The second tenant deliberately reuses the first one's home, device and staff ids (ids are
unique only within a tenant), so a check that forgets the tenant is caught: nurse `n1` of
tenant B must not see what was paged to `n1` of tenant A.
Tenant names come from the caller (a fresh pair per test), so topics, retained messages
and Redis keys never meet another test's.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from responsecentre.alarms.desk import AlarmDesk
from responsecentre.alarms.model import Trigger
from responsecentre.directory import build_directory
from responsecentre.escalation.chains import parse_chains
from responsecentre.metrics import Metrics
from responsecentre.web.app import AppContext
from responsecentre.web.auth import Users
from tests.service import PASSWORD, TEST_CHAINS
from tests.test_http_edges import CHEAP_HASHER

NOW_MS = 1_795_000_000_000

# (username, role, staff id, which tenants: "a", "b" or "ab")
USERS: tuple[tuple[str, str, str | None, str], ...] = (
    ("op-a", "operator", None, "a"),
    ("op-b", "operator", None, "b"),
    ("op-ab", "operator", None, "ab"),
    ("admin-a", "admin", None, "a"),
    ("integrator-a", "integrator", None, "a"),
    ("nurse-north-a", "nurse", "n1", "a"),  # paged for homes in zone north of tenant A
    ("nurse-south-a", "nurse", "s1", "a"),
    ("nurse-north-b", "nurse", "n1", "b"),  # same staff id, other tenant
)


def user_tenants(which: str, a: str, b: str) -> list[str]:
    return [t for flag, t in (("a", a), ("b", b)) if flag in which]


def _home(home_id: str, zone: str, key_safe: str) -> dict[str, Any]:
    return {
        "id": home_id,
        "zone": zone,
        "resident": {"name": f"Resident {home_id}", "address": f"Street {home_id}", "key_safe": key_safe},
        "devices": [{"id": f"{home_id}-btn", "kind": "safety_alarm"}, {"id": f"{home_id}-door", "kind": "door_sensor"}],
    }


def homes_doc(a: str, b: str) -> dict[str, Any]:
    return {
        "tenants": {
            a: {"homes": [_home("h1", "north", "1111"), _home("h2", "south", "2222")]},
            b: {"homes": [_home("h1", "north", "9999")]},
        }
    }


def staff_doc(a: str, b: str) -> dict[str, Any]:
    return {
        "tenants": {
            a: {
                "staff": [
                    {"id": "n1", "name": "Nurse North", "role": "nurse", "zone": "north", "on_duty": True},
                    {"id": "s1", "name": "Nurse South", "role": "nurse", "zone": "south", "on_duty": True},
                    {"id": "tl1", "name": "Lead", "role": "team_lead", "zone": "all", "on_duty": True},
                ]
            },
            b: {"staff": [{"id": "n1", "name": "Nurse B", "role": "nurse", "zone": "north", "on_duty": True}]},
        }
    }


@dataclass
class Seeded:
    a: str
    b: str
    ctx: AppContext
    alarms: dict[tuple[str, str], str]  # (tenant, home) -> id of its open alarm

    async def raise_alarm(self, tenant: str, home_id: str, kind: str) -> str:
        """Another alarm in a home (through the desk: feed entry, pages and page index)."""
        home = self.ctx.directory.home(tenant, home_id)
        assert home is not None
        trigger = Trigger(
            f"{kind}:{tenant}:{home_id}", f"{kind}-rule", kind, "high", "urgent", home_id, home.zone,
            f"{home_id}-btn", NOW_MS,
        )  # fmt: skip
        alarm = await self.ctx.desk.apply_trigger(tenant, trigger, NOW_MS)
        assert alarm is not None
        return alarm.id


async def seed(redis_url: str) -> Seeded:
    """An emptied Redis with two fresh tenants, the USERS (cheap argon2), and one open
    assistance alarm per home, each paged to the nurses on duty in its zone."""
    a, b = f"ta{uuid.uuid4().hex[:8]}", f"tb{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    directory = build_directory(homes_doc(a, b), staff_doc(a, b))
    metrics = Metrics()
    users = Users(client)
    users.hasher = CHEAP_HASHER
    for name, role, staff_id, which in USERS:
        await users.add(name, PASSWORD, role, staff_id, user_tenants(which, a, b))
    desk = AlarmDesk(client, directory, parse_chains(TEST_CHAINS), metrics)
    ctx = AppContext(redis=client, desk=desk, directory=directory, metrics=metrics, users=users)
    seeded = Seeded(a, b, ctx, {})
    for home in directory.home_list:
        seeded.alarms[(home.tenant, home.home_id)] = await seeded.raise_alarm(home.tenant, home.home_id, "assistance")
    return seeded
