"""Sign-ins, sessions and tokens, as a penetration tester and a data-protection officer
would check them: throttling, lockout and its audit trail, sessions that really end,
tokens that are hashed at rest, and the closed /metrics, /docs and /openapi.json.

In-process app on a real Redis (as tests/test_http_edges.py, cheap argon2) and, for the
exponential delays and lifetimes, a clock the test moves: no sleeping through a wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import uuid
from collections.abc import AsyncIterator, Generator
from typing import Any

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from responsecentre import cli
from responsecentre.clock import ManualClock
from responsecentre.store.keys import KEYS
from responsecentre.web.app import AppContext, create_app
from responsecentre.web.auth import Role
from responsecentre.web.throttle import LoginLimits
from tests.servers import Redis
from tests.service import PASSWORD
from tests.test_http_edges import CHEAP_HASHER, TENANT, make_context, prepare
from tests.waiting import until

T0 = 1_790_000_000_000
NEW_PASSWORD = "a much longer passphrase"
LENIENT = LoginLimits(free_per_user=1000, free_per_address=1000, lockout_after=1000)


_open: list[AppContext] = []


def context(redis_url: str, clock: ManualClock | None = None, **changes: Any) -> AppContext:
    """The test app's context with other limits, clock or settings (throttle, sessions and
    tokens are rebuilt from them); its Redis client is closed after the test."""
    ctx = make_context(redis_url)
    if clock is not None:
        changes["clock"] = clock
    ctx = dataclasses.replace(ctx, **changes)
    _open.append(ctx)
    return ctx


@contextlib.asynccontextmanager
async def client(ctx: AppContext, address: str = "127.0.0.1", auth: Any = None) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctx), client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://rc.test", auth=auth) as http:
        yield http


async def form_login(http: httpx.AsyncClient, username: str, password: str, **headers: str) -> httpx.Response:
    return await http.post(
        "/login", data={"username": username, "password": password, "next": "/console"}, headers=headers
    )


def wrong(r: httpx.Response) -> bool:
    """The form's answer to a checked, wrong password: back to the form."""
    return r.status_code == 303 and r.headers["location"].startswith("/login?error=1")


def signed_in(r: httpx.Response) -> bool:
    return r.status_code == 303 and r.headers["location"] == "/console"


async def audit(redis: aioredis.Redis, *actions: str) -> list[dict[str, str]]:
    records = [{k.decode(): v.decode() for k, v in f.items()} for _, f in await redis.xrange(KEYS.audit())]
    return [r for r in records if not actions or r["action"] in actions]


def checks(ctx: AppContext, outcome: str) -> float:
    """responsecentre_password_checks_total{outcome}"""
    return ctx.metrics.registry.get_sample_value("responsecentre_password_checks_total", {"outcome": outcome}) or 0.0


def throttled(ctx: AppContext, scope: str) -> float:
    """responsecentre_logins_throttled_total{scope}"""
    return ctx.metrics.registry.get_sample_value("responsecentre_logins_throttled_total", {"scope": scope}) or 0.0


@pytest.fixture
def redis_url(redis_server: Redis) -> str:
    """Overrides conftest's: `prepare` empties the database and makes cheap users itself."""
    return redis_server.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """The test database with one cheap user per role; every test here takes it."""
    await prepare(redis_url)
    r = aioredis.Redis.from_url(redis_url)
    yield r
    await r.aclose()
    while _open:
        await _open.pop().redis.aclose()


# -- throttling and lockout ------------------------------------------------------------------


async def test_failures_wait_exponentially_and_a_wait_is_a_429_that_checks_nothing(
    redis: aioredis.Redis, redis_url: str
) -> None:
    clock = ManualClock(T0)
    ctx = context(redis_url, clock, login_limits=LoginLimits(free_per_user=3, free_per_address=100))
    async with client(ctx) as http:
        for _ in range(3):  # the free ones
            assert wrong(await form_login(http, "operator", "nope"))
        waits = []
        for expected in (1, 2, 4, 8):
            r = await form_login(http, "operator", PASSWORD)  # even the right password: not checked
            assert r.status_code == 429 and r.headers["retry-after"] == str(expected), (r.status_code, r.headers)
            assert "try again in" in r.json()["detail"]
            clock.advance(expected * 1000 - 1)
            assert (await form_login(http, "operator", "nope")).status_code == 429  # 1 ms early
            clock.advance(1)
            assert wrong(await form_login(http, "operator", "nope"))
            waits.append(expected)
        # HTTP Basic is counted and refused the same way.
        r = await http.get("/api/me", auth=("operator", PASSWORD))
        assert r.status_code == 429 and r.headers["retry-after"] == "16"
        clock.advance(16_000)
        assert (await http.get("/api/me", auth=("operator", PASSWORD))).status_code == 200
        # A success starts the user's count again: three free failures.
        for _ in range(3):
            assert wrong(await form_login(http, "operator", "nope"))
        assert (await form_login(http, "operator", "nope")).status_code == 429

    checked = 3 + len(waits) + 3
    assert checks(ctx, "wrong") == checked
    assert checks(ctx, "ok") == 1
    assert throttled(ctx, "user") == 2 * len(waits) + 2
    # Every checked failure is audited, with who was tried and from where; no refusal is.
    failures = await audit(redis, "login_failed")
    assert len(failures) == checked
    assert {(f["user"], f["address"], f["via"]) for f in failures} == {("operator", "127.0.0.1", "form")}
    assert all("nope" not in str(f) and PASSWORD not in str(f) for f in await audit(redis))


async def test_the_address_limit_spans_usernames_and_other_addresses_are_not_held(
    redis: aioredis.Redis, redis_url: str
) -> None:
    clock = ManualClock(T0)
    ctx = context(redis_url, clock, login_limits=LoginLimits(free_per_user=100, free_per_address=4))
    async with client(ctx, "203.0.113.7") as spray:
        for i in range(4):
            assert wrong(await form_login(spray, f"user{i}", "Winter2025!"))
        r = await form_login(spray, "operator", "Winter2025!")
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        # X-Forwarded-For changes nothing: the address is the socket's.
        r = await form_login(spray, "nurse", "x", **{"X-Forwarded-For": "198.51.100.1"})
        assert r.status_code == 429
    async with client(ctx, "198.51.100.1") as colleague:
        assert signed_in(await form_login(colleague, "operator", PASSWORD))
    # IPv6 is counted per /64: the next address in the block is the same knocker.
    async with client(ctx, "2001:db8::1") as six:
        for i in range(4):
            assert wrong(await form_login(six, f"v6user{i}", "x"))
    async with client(ctx, "2001:db8::ffff") as six_too:
        assert (await form_login(six_too, "operator", PASSWORD)).status_code == 429
    assert throttled(ctx, "address") == 3
    # A success does not wipe the address's count (one good account must not reset a spray).
    async with client(ctx, "203.0.113.7") as spray:
        clock.advance(1000)
        assert signed_in(await form_login(spray, "nurse", PASSWORD))
        assert (await form_login(spray, "user9", "x")).status_code == 429


async def test_a_lockout_is_audited_once_and_an_admin_lifts_it(redis: aioredis.Redis, redis_url: str) -> None:
    clock = ManualClock(T0)
    limits = LoginLimits(free_per_user=2, free_per_address=100, lockout_after=4, lockout_s=1800)
    ctx = context(redis_url, clock, login_limits=limits)
    async with client(ctx) as http, client(ctx, "10.1.1.1", auth=("admin", PASSWORD)) as admin:
        for name in ("operator", "nobody-by-this-name"):
            for wait_s in (0, 0, 1, 2):
                clock.advance(wait_s * 1000)
                assert wrong(await form_login(http, name, "guess"))
            r = await form_login(http, name, PASSWORD)
            assert r.status_code == 429 and r.headers["retry-after"] == "1800"
            assert "locked" in r.json()["detail"] and "admin" in r.json()["detail"]
        # An unknown name locks the same way: the answers do not tell which names exist.
        lockouts = await audit(redis, "lockout")
        assert [(a["user"], a["failures"]) for a in lockouts] == [("operator", "4"), ("nobody-by-this-name", "4")]
        assert len(await audit(redis, "login_failed")) == 8

        clock.advance(10 * 60 * 1000)
        assert (await form_login(http, "operator", PASSWORD)).status_code == 429
        users = {u["username"]: u for u in (await admin.get("/api/users")).json()["users"]}
        assert users["operator"]["locked_until"] is not None and users["nurse"]["locked_until"] is None
        r = await admin.post("/api/users/operator/unlock")
        assert r.status_code == 200 and r.json()["locked_until"] is None
        assert signed_in(await form_login(http, "operator", PASSWORD))
        (unlock,) = await audit(redis, "unlock")
        assert (unlock["user"], unlock["target"], unlock["was_locked"]) == ("admin", "operator", "true")
        # Without an admin, the lockout ends by itself after lockout_s (and starts afresh).
        clock.advance(20 * 60 * 1000)
        assert wrong(await form_login(http, "nobody-by-this-name", "guess"))
    assert len(await audit(redis, "lockout")) == 2


async def test_the_cli_unlocks_an_account_too(redis: aioredis.Redis, redis_url: str) -> None:
    ctx = context(redis_url, login_limits=LoginLimits(free_per_user=100, free_per_address=100, lockout_after=2))
    async with client(ctx) as http:
        for _ in range(2):
            assert wrong(await form_login(http, "operator", "guess"))
        assert (await form_login(http, "operator", PASSWORD)).status_code == 429
        assert await asyncio.to_thread(cli.main, ["users", "unlock", "operator", "--redis", redis_url]) == 0
        assert signed_in(await form_login(http, "operator", PASSWORD))
    (unlock,) = await audit(redis, "unlock")
    assert unlock["user"].startswith("cli") and unlock["target"] == "operator"


async def test_a_full_password_queue_answers_503_at_once_and_counts_nothing(
    redis: aioredis.Redis, redis_url: str
) -> None:
    ctx = context(redis_url)
    ctx.users.passwords.max_pending = 0  # every check finds the queue full
    async with client(ctx) as http:
        r = await form_login(http, "operator", PASSWORD)
        assert r.status_code == 503 and r.headers["retry-after"] and "in progress" in r.json()["detail"]
        r = await form_login(http, "operator", PASSWORD, accept="text/html")
        assert r.status_code == 503 and "<html" in r.text and "in progress" in r.text
        r = await http.get("/api/alarms", auth=("operator", PASSWORD))
        assert r.status_code == 503 and r.headers["retry-after"]
        # A token needs no check; a new password's hash still finds the queue full.
        token, _ = await ctx.tokens.create("admin", "ops", ctx.clock())
        new = {"username": "newcomer", "password": NEW_PASSWORD, "role": "nurse", "tenants": [TENANT]}
        r = await http.post("/api/users", json=new, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 503 and r.headers["retry-after"] and "in progress" in r.json()["detail"]
    assert checks(ctx, "busy") == 3
    assert await redis.hget(KEYS.login_failures_user("operator"), "n") in (None, b"0")
    assert await audit(redis, "login_failed") == []


# -- sessions ----------------------------------------------------------------------------------


async def test_logout_ends_the_session_on_the_server(redis: aioredis.Redis, redis_url: str) -> None:
    ctx = context(redis_url)
    async with client(ctx) as http:
        assert signed_in(await form_login(http, "operator", PASSWORD))
        cookie = http.cookies["rc_session"]
        assert (await http.get("/api/me")).status_code == 200
        r = await http.post("/logout")
        assert r.status_code == 303 and "rc_session" not in http.cookies
    async with client(ctx) as replay:  # the old cookie, kept by an attacker
        replay.cookies.set("rc_session", cookie, domain="rc.test")
        assert (await replay.get("/api/me")).status_code == 401
    assert [k async for k in redis.scan_iter(match="rc:session:*")] == []
    assert [(a["user"], a["address"]) for a in await audit(redis, "logout")] == [("operator", "127.0.0.1")]
    assert [a["user"] for a in await audit(redis, "login")] == ["operator"]


async def test_a_password_change_ends_every_other_session(redis: aioredis.Redis, redis_url: str) -> None:
    ctx = context(redis_url, login_limits=LENIENT)
    async with client(ctx) as desk, client(ctx) as laptop, client(ctx, auth=("admin", PASSWORD)) as admin:
        for http in (desk, laptop):
            assert signed_in(await form_login(http, "operator", PASSWORD))
        token = (await admin.post("/api/users/operator/tokens", json={"label": "feed"})).json()["token"]
        csrf = {"X-CSRF-Token": desk.cookies["rc_csrf"]}
        r = await desk.post("/api/me/password", json={"current_password": "wrong", "new_password": NEW_PASSWORD})
        assert r.status_code == 403  # no CSRF token
        r = await desk.post(
            "/api/me/password", json={"current_password": "wrong", "new_password": NEW_PASSWORD}, headers=csrf
        )
        assert r.status_code == 403 and "current password" in r.json()["detail"]
        r = await desk.post(
            "/api/me/password", json={"current_password": PASSWORD, "new_password": "short"}, headers=csrf
        )
        assert r.status_code == 422
        r = await desk.post(
            "/api/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}, headers=csrf
        )
        assert r.status_code == 200 and r.json() == {"sessions_ended": 2}
        assert (await desk.get("/api/me")).status_code == 200  # this console got a new session
        assert (await laptop.get("/api/me")).status_code == 401
        assert wrong(await form_login(laptop, "operator", PASSWORD))
        assert signed_in(await form_login(laptop, "operator", NEW_PASSWORD))
        # An admin's reset ends them all again, the tokens stay.
        r = await admin.put("/api/users/operator/password", json={"password": "reset by the admin"})
        assert r.status_code == 200 and r.json() == {"sessions_ended": 2}
        for http in (desk, laptop):
            assert (await http.get("/api/me")).status_code == 401
        assert (await admin.get("/api/me", auth=None, headers={"Authorization": f"Bearer {token}"})).status_code == 200
    failed = [(a["user"], a["via"]) for a in await audit(redis, "login_failed")]
    assert failed == [("operator", "password_change"), ("operator", "form")]  # the old password, after
    changes = await audit(redis, "password_change", "password_reset")
    assert [(a["action"], a["user"], a.get("target")) for a in changes] == [
        ("password_change", "operator", None),
        ("password_reset", "admin", "operator"),
    ]


async def test_sessions_end_when_idle_and_after_their_lifetime(redis: aioredis.Redis, redis_url: str) -> None:
    ctx = context(redis_url, session_idle_s=1)
    async with client(ctx) as http:
        assert signed_in(await form_login(http, "operator", PASSWORD))
        (key,) = [k async for k in redis.scan_iter(match="rc:session:*")]
        assert 0 < await redis.pttl(key) <= 1000  # the idle timeout is the key's TTL

        assert (await http.get("/api/me")).status_code == 200  # each use restarts it
        assert 0 < await redis.pttl(key) <= 1000

        async def logged_out() -> bool:
            return (await http.get("/api/me")).status_code == 401

        await until(logged_out, 5, "the idle session to end", every=1.2)  # a poll after > 1 s idle
        assert await redis.exists(key) == 0

    clock = ManualClock(T0)
    ctx = context(redis_url, clock)  # 30 min idle, 12 h lifetime
    async with client(ctx) as http:
        assert signed_in(await form_login(http, "operator", PASSWORD))
        for _ in range(12 * 4):  # busy all shift long: never idle
            clock.advance(15 * 60 * 1000 - 1)
            assert (await http.get("/api/me")).status_code == 200
        clock.advance(48)
        assert (await http.get("/api/me")).status_code == 401


async def test_the_principal_is_the_users_current_record(redis: aioredis.Redis, redis_url: str) -> None:
    ctx = context(redis_url)
    home = f"/api/homes/{TENANT}/h1"
    async with client(ctx) as http:
        assert signed_in(await form_login(http, "integrator", PASSWORD))
        assert (await http.get(home)).status_code == 403
        record = await ctx.users.get("integrator")
        assert record is not None
        promoted = msgspec.structs.replace(record, role=Role.OPERATOR)
        await redis.hset(KEYS.users(), "integrator", msgspec.json.encode(promoted))  # as an edit in place would
        assert (await http.get(home)).status_code == 200  # the same session, the new role
        moved = msgspec.structs.replace(promoted, tenants=("elsewhere",))
        await redis.hset(KEYS.users(), "integrator", msgspec.json.encode(moved))
        assert (await http.get(home)).status_code == 404  # not her tenant any more
        await ctx.users.delete("integrator")
        assert (await http.get("/api/me")).status_code == 401
        # Replacing a user (`users add` again) ends her sessions: password, role or tenants changed.
        assert signed_in(await form_login(http, "operator", PASSWORD))
        await ctx.users.add("operator", PASSWORD, "nurse", "n1", [TENANT])
        assert (await http.get("/api/me")).status_code == 401


# -- API tokens --------------------------------------------------------------------------------


READ_ALL = {
    "string": ["GET"],
    "hash": ["HGETALL"],
    "set": ["SMEMBERS"],
    "zset": ["ZRANGE", 0, -1, "WITHSCORES"],
    "list": ["LRANGE", 0, -1],
    "stream": ["XRANGE", "-", "+"],
}


async def all_of_redis(redis: aioredis.Redis) -> bytes:
    """Every key and value in the database, as one blob to search."""
    out = []
    async for key in redis.scan_iter():
        command, *args = READ_ALL[(await redis.type(key)).decode()]
        value = await redis.execute_command(command, key, *args)
        out.append(key + b"=" + repr(value).encode())
    return b"\n".join(out)


async def test_tokens_act_as_their_user_are_hashed_at_rest_and_revocable(
    redis: aioredis.Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = context(redis_url)
    async with client(ctx, auth=("admin", PASSWORD)) as admin, client(ctx) as http:
        r = await admin.post("/api/users/integrator/tokens", json={"label": "alarm receiver"})
        assert r.status_code == 201, r.text
        made = r.json()
        token = made["token"]
        assert token.startswith(f"rct_{made['id']}_") and made["label"] == "alarm receiver"
        bearer = {"Authorization": f"Bearer {token}"}
        checks_before = sum(checks(ctx, o) for o in ("ok", "wrong", "unknown_user"))
        for _ in range(5):
            assert (await http.get("/api/devices", headers=bearer)).status_code == 200
        assert (await http.get(f"/api/homes/{TENANT}/h1", headers=bearer)).status_code == 403  # an integrator
        assert sum(checks(ctx, o) for o in ("ok", "wrong", "unknown_user")) == checks_before

        listed = (await admin.get("/api/users/integrator/tokens")).json()["tokens"]
        assert [t["id"] for t in listed] == [made["id"]] and listed[0]["last_used_at"] is not None
        assert "token" not in listed[0]
        secret = token.split("_", 2)[2]
        everything = await all_of_redis(redis)
        assert secret.encode() not in everything and token.encode() not in everything
        assert hashlib.sha256(secret.encode()).hexdigest().encode() in everything
        assert signed_in(await form_login(http, "operator", PASSWORD))
        session_cookie = http.cookies["rc_session"]
        assert session_cookie.encode() not in await all_of_redis(redis)  # sessions too: only sha256
        http.cookies.clear()

        # Wrong tokens: 401, audited (the id, never the secret).
        forged = f"rct_{made['id']}_{'A' * 43}"
        assert (await http.get("/api/me", headers={"Authorization": f"Bearer {forged}"})).status_code == 401
        assert (await http.get("/api/me", headers={"Authorization": "Bearer nonsense"})).status_code == 401
        failed = await audit(redis, "login_failed")
        assert [(f["via"], f["user"], f["token"]) for f in failed] == [
            ("token", "integrator", made["id"]),
            ("token", "", ""),
        ]
        assert "A" * 43 not in str(failed)

        r = await admin.delete(f"/api/users/integrator/tokens/{made['id']}")
        assert r.status_code == 204
        assert (await http.get("/api/devices", headers=bearer)).status_code == 401
        assert (await admin.delete(f"/api/users/integrator/tokens/{made['id']}")).status_code == 404

    # The CLI: create prints the token once; revoke by id.
    assert await asyncio.to_thread(cli.main, ["users", "token", "create", "nurse", "--redis", redis_url]) == 0
    printed = capsys.readouterr().out.strip()
    token_id = printed.split("_")[1]
    async with client(ctx) as http:
        assert (await http.get("/api/me", headers={"Authorization": f"Bearer {printed}"})).json()["username"] == "nurse"
        assert await asyncio.to_thread(cli.main, ["users", "token", "revoke", token_id, "--redis", redis_url]) == 0
        assert (await http.get("/api/me", headers={"Authorization": f"Bearer {printed}"})).status_code == 401
    actions = [(a["action"], a["user"]) for a in await audit(redis, "token_create", "token_revoke")]
    assert actions[:2] == [("token_create", "admin"), ("token_revoke", "admin")]
    assert [a for a, _ in actions[2:]] == ["token_create", "token_revoke"]


# -- /metrics, /docs, /openapi.json --------------------------------------------------------------


async def test_metrics_wants_its_bearer_token(redis: aioredis.Redis, redis_url: str) -> None:
    async with client(context(redis_url)) as http:
        r = await http.get("/metrics")
        assert r.status_code == 403 and "RC_METRICS_TOKEN" in r.json()["detail"]
    async with client(context(redis_url, metrics_token="s3cret-scraper-token")) as http:
        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
        assert (await http.get("/metrics", auth=("admin", PASSWORD))).status_code == 401  # no user gets in
        r = await http.get("/metrics", headers={"Authorization": "Bearer s3cret-scraper-token"})
        assert r.status_code == 200 and "responsecentre_password_checks_total" in r.text


async def test_the_api_docs_and_document_are_for_signed_in_users(redis: aioredis.Redis, redis_url: str) -> None:
    async with client(context(redis_url)) as http:
        assert (await http.get("/openapi.json")).status_code == 401
        r = await http.get("/docs")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/docs"
        assert (await http.get("/openapi.json", auth=("integrator", PASSWORD))).json()["info"]["title"]
        assert signed_in(await form_login(http, "nurse", PASSWORD))
        assert (await http.get("/openapi.json")).status_code == 200
        r = await http.get("/docs")
        assert r.status_code == 200 and "swagger-ui" in r.text


# -- /api/users: admins, scoped to their tenants ---------------------------------------------------


async def test_an_admin_manages_only_the_users_of_her_tenants(redis: aioredis.Redis, redis_url: str) -> None:
    ctx = context(redis_url, login_limits=LENIENT)
    ctx.users.hasher = CHEAP_HASHER
    a, b = TENANT, "other-municipality"
    for name, role, tenants in [
        ("admin-a", "admin", [a]),
        ("admin-ab", "admin", [a, b]),
        ("op-a", "operator", [a]),
        ("op-b", "operator", [b]),
        ("op-ab", "operator", [a, b]),
    ]:
        await ctx.users.add(name, PASSWORD, role, None, tenants)
    async with client(ctx, auth=("admin-a", PASSWORD)) as admin_a, client(ctx, auth=("admin-ab", PASSWORD)) as admin_ab:
        names = {u["username"] for u in (await admin_a.get("/api/users")).json()["users"]}
        assert {"admin-a", "op-a", "operator"} <= names and not names & {"op-b", "op-ab", "admin-ab"}
        assert {"op-b", "op-ab"} <= {u["username"] for u in (await admin_ab.get("/api/users")).json()["users"]}
        # Outside her tenants a user does not exist for her, whatever she tries.
        for method, path, body in [
            ("PUT", "/api/users/op-b/password", {"password": NEW_PASSWORD}),
            ("POST", "/api/users/op-ab/unlock", None),
            ("DELETE", "/api/users/op-ab", None),
            ("POST", "/api/users/op-b/tokens", {}),
            ("GET", "/api/users/op-b/tokens", None),
            ("DELETE", "/api/users/op-b/tokens/0123456789abcdef", None),
            ("GET", "/api/users/no-such-user/tokens", None),
        ]:
            r = await admin_a.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.status_code)
        # She grants only her own tenants, with a long enough password, to a free name.
        new = {"username": f"op-{uuid.uuid4().hex[:6]}", "password": NEW_PASSWORD, "role": "operator", "tenants": [b]}
        assert (await admin_a.post("/api/users", json=new)).status_code == 403
        assert (await admin_a.post("/api/users", json={**new, "tenants": [a], "password": "short"})).status_code == 422
        r = await admin_a.post("/api/users", json={**new, "tenants": [a]})
        assert r.status_code == 201 and r.json()["tenants"] == [a]
        assert (await admin_a.post("/api/users", json={**new, "tenants": [a]})).status_code == 409
        async with client(ctx, auth=(new["username"], NEW_PASSWORD)) as newcomer:
            assert (await newcomer.get("/api/me")).json()["role"] == "operator"
            assert (await newcomer.get("/api/users")).status_code == 403  # not an admin
        assert (await admin_a.delete(f"/api/users/{new['username']}")).status_code == 204
        assert (await admin_a.delete("/api/users/admin-a")).status_code == 409  # not herself
        assert (await admin_ab.delete("/api/users/op-ab")).status_code == 204
    changes = [(r["action"], r["user"], r["target"]) for r in await audit(redis, "user_create", "user_delete")]
    assert changes == [
        ("user_create", "admin-a", new["username"]),
        ("user_delete", "admin-a", new["username"]),
        ("user_delete", "admin-ab", "op-ab"),
    ]


# -- the console's live feed ends with its session -----------------------------------------------


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serving(ctx: AppContext) -> AsyncIterator[str]:
    config = uvicorn.Config(
        create_app(ctx), host="127.0.0.1", port=0, log_level="warning", lifespan="off", log_config=None
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started or task.done(), 10, "uvicorn started", every=0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield f"{host}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.mark.parametrize("how", ["logout", "password reset", "user deleted", "token revoked"])
async def test_an_open_feed_closes_with_4401_when_its_credentials_end(
    redis: aioredis.Redis, redis_url: str, how: str
) -> None:
    ctx = context(redis_url)
    async with serving(ctx) as where, httpx.AsyncClient(base_url=f"http://{where}") as http:
        if how == "token revoked":
            token, info = await ctx.tokens.create("operator", "feed", ctx.clock())
            headers = {"Authorization": f"Bearer {token}"}
        else:
            assert signed_in(await form_login(http, "operator", PASSWORD))
            headers = {"Cookie": f"rc_session={http.cookies['rc_session']}"}
        async with connect(f"ws://{where}/ws", additional_headers=headers) as ws:
            assert '"snapshot"' in await ws.recv()
            if how == "logout":
                await http.post("/logout")
            elif how == "password reset":
                await ctx.users.set_password("operator", NEW_PASSWORD)
            elif how == "user deleted":
                await ctx.users.delete("operator")
            else:
                await ctx.tokens.revoke(info.id)
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(5):  # checked about once a second
                    while True:
                        await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
