"""Every route against every role and tenant, generated from the app's own route table.

RULES below says, for each (method, path) the app serves, who may use it. The first test
fails when the app has a route RULES does not name (a new route must come with a rule) or
RULES names a route the app no longer has. The second calls every route as nobody, as each
role of tenant A, with ids of tenant A and of tenant B, and checks the status against the
rule: anonymous -> its rule's status, a role without the right -> 403, the right role on
tenant B's alarm, home or events -> 404, on its own -> a real answer. And no response to a
user of tenant A ever carries tenant B's data or B's resident, whatever the route (an error
may echo the tenant name the client itself sent).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import BaseRoute, Mount, Route

from responsecentre.store.suppressions import SuppressionStore
from responsecentre.suppression import Silence
from responsecentre.web.app import create_app
from tests import tenancy
from tests.servers import Redis
from tests.service import PASSWORD

OPERATOR, NURSE, ADMIN, INTEGRATOR = "operator", "nurse", "admin", "integrator"
EVERYONE = frozenset({OPERATOR, NURSE, ADMIN, INTEGRATOR})
# The user of tenant A who plays each role (tests/tenancy.py); the nurse is the one the
# seeded tenant-A alarm in zone north was paged to.
PLAYERS = {OPERATOR: "op-a", NURSE: "nurse-north-a", ADMIN: "admin-a", INTEGRATOR: "integrator-a"}


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str] = EVERYONE
    anonymous: int = 401  # what a request without credentials gets
    body: dict[str, Any] | None = None
    form: dict[str, str] | None = None
    query: dict[str, str] = field(default_factory=dict)
    # For routes that list (no id in the path): a query parameter naming tenant B must
    # give an empty answer rather than B's data; None where the route takes no tenant.
    tenant_query: str | None = None
    # The id names nothing in tenant A either (no incident is open there): the roles
    # allowed get 404 too; the test is then that the others get 403 and nothing leaks.
    missing: bool = False


PUBLIC = Rule(roles=EVERYONE, anonymous=200)
MOUNTED_FILE = {"/static": "/console.css", "/docs-assets": "/swagger-ui.css"}  # one file each mount serves
RESIDENT_READERS = frozenset({OPERATOR, ADMIN})
ACTORS = frozenset({OPERATOR, NURSE, ADMIN})

SILENCE_END = (datetime.now(UTC) + timedelta(days=1)).isoformat()
# Block style only: Matrix.body fills in "{word}" wherever it stands.
MATRIX_ROSTER = """\
tenants:
  {tenant}:
    staff:
      - id: n1
        name: Nurse North
        role: nurse
        zone: north
        on_duty: true
      - id: s1
        name: Nurse South
        role: nurse
        zone: south
        on_duty: true
      - id: tl1
        name: Lead
        role: team_lead
        on_duty: true
"""

RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/"): Rule(anonymous=307),
    ("GET", "/console"): Rule(anonymous=303),
    ("GET", "/docs"): Rule(anonymous=303),  # to /login?next=/docs
    ("GET", "/openapi.json"): Rule(),
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): Rule(anonymous=303, form={"username": "nobody", "password": "wrong-password"}),
    ("POST", "/logout"): Rule(anonymous=303),
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): Rule(anonymous=503),  # no readiness checks wired in-process: Redis only -> 200
    ("GET", "/metrics"): Rule(anonymous=403, roles=frozenset()),  # no RC_METRICS_TOKEN here: closed to all
    ("GET", "/static"): PUBLIC,
    ("GET", "/docs-assets"): PUBLIC,
    ("GET", "/api/me"): Rule(),
    ("GET", "/api/alarms"): Rule(query={"state": "all"}),
    ("GET", "/api/alarms/{alarm_id}"): Rule(),
    ("POST", "/api/alarms/{alarm_id}/ack"): Rule(roles=ACTORS, body={}),
    ("POST", "/api/alarms/{alarm_id}/resolve"): Rule(roles=ACTORS, body={"code": "assisted"}),
    ("POST", "/api/alarms/{alarm_id}/note"): Rule(roles=ACTORS, body={"text": "checked"}),
    # The nurse's answers: accept and decline are hers alone (operators acknowledge);
    # en route and on site an operator may record for her (409 until someone accepted).
    ("POST", "/api/alarms/{alarm_id}/accept"): Rule(roles=frozenset({NURSE}), body={}),
    ("POST", "/api/alarms/{alarm_id}/decline"): Rule(roles=frozenset({NURSE}), body={}),
    ("POST", "/api/alarms/{alarm_id}/en-route"): Rule(roles=ACTORS),
    ("POST", "/api/alarms/{alarm_id}/on-site"): Rule(roles=ACTORS),
    # The key safe: operators, admins, and the nurse who accepted (409 for another nurse).
    ("GET", "/api/alarms/{alarm_id}/resident"): Rule(roles=ACTORS),
    # Dispatch outside the chain: operators and admins (409 here: nobody on duty to send).
    ("GET", "/api/alarms/{alarm_id}/dispatchable"): Rule(roles=frozenset({OPERATOR, ADMIN})),
    ("POST", "/api/alarms/{alarm_id}/dispatch"): Rule(roles=frozenset({OPERATOR, ADMIN}), body={"staff_id": "s-n1"}),
    ("GET", "/api/incidents"): Rule(roles=frozenset({OPERATOR, ADMIN})),
    ("POST", "/api/incidents/{tenant}/{incident_id}/resolve"): Rule(
        roles=frozenset({OPERATOR, ADMIN}), body={"code": "assisted"}, missing=True
    ),
    ("GET", "/api/closing-codes"): Rule(),
    ("GET", "/api/devices"): Rule(tenant_query="tenant"),
    ("GET", "/api/homes/{tenant}/{home_id}"): Rule(roles=RESIDENT_READERS),
    ("GET", "/api/events/{tenant}"): Rule(roles=frozenset({OPERATOR, ADMIN, INTEGRATOR})),
    ("GET", "/api/dead-letters"): Rule(roles=frozenset({ADMIN, INTEGRATOR}), tenant_query="tenant"),
    ("POST", "/api/me/password"): Rule(body={"current_password": PASSWORD, "new_password": PASSWORD}),
    # {username} is a user of the tenant alone who plays no role here (`Matrix.path`); the
    # user's deletion is the users router's last route, so nothing after it needs her.
    ("GET", "/api/users"): Rule(roles=frozenset({ADMIN})),
    ("POST", "/api/users"): Rule(
        roles=frozenset({ADMIN}),
        body={"username": "made-here", "password": "a long new password", "role": "operator", "tenants": []},
    ),
    ("PUT", "/api/users/{username}/password"): Rule(roles=frozenset({ADMIN}), body={"password": PASSWORD}),
    ("POST", "/api/users/{username}/unlock"): Rule(roles=frozenset({ADMIN})),
    ("POST", "/api/users/{username}/tokens"): Rule(roles=frozenset({ADMIN}), body={"label": "matrix"}),
    ("GET", "/api/users/{username}/tokens"): Rule(roles=frozenset({ADMIN})),
    ("DELETE", "/api/users/{username}/tokens/{token_id}"): Rule(roles=frozenset({ADMIN})),
    ("DELETE", "/api/users/{username}"): Rule(roles=frozenset({ADMIN})),
    # Suppression: operators and admins; "{tenant}" in a body is filled in like a path's.
    ("GET", "/api/silences"): Rule(roles=RESIDENT_READERS, tenant_query="tenant"),
    ("POST", "/api/silences"): Rule(
        roles=RESIDENT_READERS,
        body={"tenant": "{tenant}", "scope": "home", "target": "h1", "end": SILENCE_END, "reason": "matrix"},
    ),
    ("DELETE", "/api/silences/{silence_id}"): Rule(roles=RESIDENT_READERS),  # ending twice is a 200
    ("PUT", "/api/homes/{tenant}/{home_id}/status"): Rule(roles=RESIDENT_READERS, body={"status": "away"}),
    ("PUT", "/api/devices/{tenant}/{device_id}/maintenance"): Rule(roles=RESIDENT_READERS, body={"maintenance": True}),
    # Rosters: operators read them (who is on duty at 3 a.m.), admins write them; the body
    # is tenant A's roster as tests/tenancy.py has it (later routes page the same nurses).
    ("GET", "/api/rosters/{tenant}"): Rule(roles=RESIDENT_READERS),
    ("PUT", "/api/rosters/{tenant}"): Rule(roles=frozenset({ADMIN}), body={"yaml": MATRIX_ROSTER}),
    ("GET", "/api/rosters/{tenant}/who"): Rule(roles=RESIDENT_READERS, query={"zone": "north", "role": "nurse"}),
    # The rule pack: not per tenant. No engine runs in this process, so the right roles get 409.
    ("GET", "/api/rules"): Rule(roles=frozenset({OPERATOR, ADMIN, INTEGRATOR})),
    ("POST", "/api/rules/reload"): Rule(roles=frozenset({ADMIN})),
    ("WS", "/ws"): Rule(),
}
# A user of each tenant alone, in no role of PLAYERS: the users routes' {username}.
MANAGED = {"a": "nurse-south-a", "b": "nurse-north-b"}


def served(app: FastAPI) -> Iterator[tuple[str, str, BaseRoute]]:
    """(method, path, route) for everything the app answers, routers flattened."""

    def walk(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
        for route in routes:
            contexts = getattr(route, "effective_route_contexts", None)
            if contexts is not None:  # FastAPI's included router
                for context in contexts():
                    yield context.original_route
            else:
                yield route

    for route in walk(list(app.routes)):
        if isinstance(route, APIWebSocketRoute):
            yield "WS", route.path, route
        elif isinstance(route, Mount):
            yield "GET", route.path, route
        elif isinstance(route, APIRoute | Route):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                yield method, route.path, route


@dataclass
class Matrix:
    seeded: tenancy.Seeded
    http: httpx.AsyncClient
    app: FastAPI
    tokens: dict[str, str] = field(default_factory=dict)  # tenant -> id of a token of MANAGED's user
    silences: dict[str, str] = field(default_factory=dict)  # tenant -> id of one of its silences

    def ids(self, tenant: str) -> dict[str, str]:
        which = "a" if tenant == self.seeded.a else "b"
        return {
            "tenant": tenant,
            "home_id": "h1",
            "device_id": "h1-btn",
            "alarm_id": self.seeded.alarms[(tenant, "h1")],
            "username": MANAGED[which],
            "token_id": self.tokens[tenant],
            "silence_id": self.silences[tenant],
            "incident_id": f"{tenant}:device_offline:none",  # no incident is open: 404 for everyone allowed
        }

    def path(self, template: str, tenant: str) -> str:
        """The route's path with tenant `tenant`'s ids filled in."""
        ids = self.ids(tenant)
        path = re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], template)
        return path + MOUNTED_FILE.get(template, "")

    def body(self, rule: Rule, tenant: str) -> dict[str, Any] | None:
        """The rule's body with tenant `tenant`'s ids filled into "{...}" strings."""
        if rule.body is None:
            return None
        ids = self.ids(tenant)
        return {
            k: re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], v) if isinstance(v, str) else v
            for k, v in rule.body.items()
        }

    async def call(self, method: str, template: str, rule: Rule, user: str | None, tenant: str) -> httpx.Response:
        query = dict(rule.query)
        if rule.tenant_query is not None:
            query[rule.tenant_query] = tenant
        return await self.http.request(
            method,
            self.path(template, tenant),
            params=query,
            json=self.body(rule, tenant),
            data=rule.form,
            auth=(user, PASSWORD) if user else None,
        )


@pytest.fixture
async def matrix(redis_server: Redis) -> AsyncIterator[Matrix]:
    seeded = await tenancy.seed(redis_server.url)
    app = create_app(seeded.ctx)
    transport = httpx.ASGITransport(app=app)
    tokens, silences = {}, {}
    store = SuppressionStore(seeded.ctx.redis, seeded.ctx.directory)
    for tenant, which in ((seeded.a, "a"), (seeded.b, "b")):
        _, info = await seeded.ctx.tokens.create(MANAGED[which], "matrix", 0)
        tokens[tenant] = info.id
        now = seeded.ctx.clock()
        silences[tenant] = f"sil-matrix-{which}"
        await store.put_silence(Silence(silences[tenant], tenant, "home", "h1", now, now + 3_600_000, "matrix"), now)
    async with httpx.AsyncClient(transport=transport, base_url="http://rc", follow_redirects=False) as http:
        yield Matrix(seeded, http, app, tokens, silences)
    await seeded.ctx.redis.aclose()


async def test_every_route_has_a_rule(matrix: Matrix) -> None:
    routes = {(method, path) for method, path, _ in served(matrix.app)}
    assert routes - set(RULES) == set(), "routes without a rule in RULES: add one"
    assert set(RULES) - routes == set(), "rules for routes the app no longer serves"


async def test_every_route_against_every_role_and_tenant(matrix: Matrix) -> None:
    a, b = matrix.seeded.a, matrix.seeded.b
    outcomes: list[str] = []
    for method, template, _ in served(matrix.app):
        rule = RULES[(method, template)]
        if method == "WS":
            continue  # the handshake is checked below
        r = await matrix.call(method, template, rule, None, a)
        expected_anonymous = 200 if (method, template) == ("GET", "/readyz") else rule.anonymous
        if r.status_code != expected_anonymous:
            outcomes.append(f"{method} {template} as nobody: {r.status_code}, expected {expected_anonymous}")
        if rule.anonymous == 200 and rule is PUBLIC:
            continue
        in_body = any("{" in v for v in (rule.body or {}).values() if isinstance(v, str))  # ids, filled in per tenant
        scoped = "{" in template or rule.tenant_query is not None or in_body
        for role, user in PLAYERS.items():
            for tenant in (a, b) if scoped else (a,):
                r = await matrix.call(method, template, rule, user, tenant)
                where = f"{method} {template} as {role} on tenant {'A' if tenant == a else 'B'}"
                if r.is_success and (b in r.text or "9999" in r.text):
                    outcomes.append(f"{where}: the answer carries tenant B's data")
                if role not in rule.roles:
                    if r.status_code != 403:
                        outcomes.append(f"{where}: {r.status_code}, expected 403")
                elif (tenant == b and ("{" in template or in_body)) or rule.missing:
                    if r.status_code != 404:
                        outcomes.append(f"{where}: {r.status_code}, expected 404")
                elif r.status_code in (401, 403, 404) or r.status_code >= 500:
                    outcomes.append(f"{where}: {r.status_code} {r.text[:120]}")
    assert not outcomes, "\n".join(outcomes)
