"""Two municipalities side by side: the data the tenant-isolation tests run on.

The second tenant deliberately reuses the first one's home, device and staff ids (ids are
unique only within a tenant), so a check that forgets the tenant is caught: nurse `n1` of
tenant B must not see what was paged to `n1` of tenant A.
Tenant names come from the caller (a fresh pair per test), so topics, retained messages
and Redis keys never meet another test's.
"""

from __future__ import annotations

from typing import Any

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
