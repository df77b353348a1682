"""Edge faults a tester found in the HTTP API, each kept from coming back.

The app runs in-process on a real Redis (httpx's ASGI transport; no broker needed). The
helpers here also build the app for tests/test_http_contract.py and tests/test_http_server.py.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from argon2 import PasswordHasher

from responsecentre.alarms.desk import AlarmDesk
from responsecentre.alarms.model import Trigger
from responsecentre.directory import build_directory
from responsecentre.escalation.chains import parse_chains
from responsecentre.metrics import Metrics
from responsecentre.web.app import AppContext, create_app
from responsecentre.web.auth import Users
from tests.servers import Redis
from tests.service import PASSWORD, TEST_CHAINS, homes_doc, staff_doc

TENANT = "httptest"
ROLES = ("operator", "nurse", "admin", "integrator")
# Cheap argon2 for the test users: the contract test makes thousands of authenticated calls,
# and verifying uses the parameters stored in the hash.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
ALARMS = [("h1", "assistance"), ("h2", "fall"), ("h3", "missed_dose"), ("h1", "fall"), ("h2", "assistance")]


def make_context(redis_url: str, ready_checks: list[Any] | None = None) -> AppContext:
    client = aioredis.Redis.from_url(redis_url)
    directory = build_directory(homes_doc(TENANT), staff_doc(TENANT))
    metrics = Metrics()
    users = Users(client)
    users.hasher = CHEAP_HASHER
    return AppContext(
        redis=client,
        desk=AlarmDesk(client, directory, parse_chains(TEST_CHAINS), metrics),
        directory=directory,
        metrics=metrics,
        users=users,
        ready_checks=ready_checks or [],
    )


async def prepare(redis_url: str) -> list[str]:
    """An empty database with one user per role and a few open alarms; their ids."""
    ctx = make_context(redis_url)
    try:
        await ctx.redis.flushdb()
        for role in ROLES:
            await ctx.users.add(role, PASSWORD, role, "n1" if role == "nurse" else None, [TENANT])
        now = int(time.time() * 1000)
        ids = []
        for i, (home, kind) in enumerate(ALARMS):
            trigger = Trigger(
                f"seed:{i}", f"{kind}-rule", kind, "critical", "urgent", home, "north", f"{home}-btn", now
            )
            alarm = await ctx.desk.apply_trigger(TENANT, trigger, now)
            assert alarm is not None
            ids.append(alarm.id)
        return ids
    finally:
        await ctx.redis.aclose()


@pytest.fixture
def redis_url(redis_server: Redis) -> str:
    """Overrides conftest's: `prepare` empties the database and makes cheap users itself."""
    return redis_server.url


@pytest.fixture
async def alarm_ids(redis_url: str) -> list[str]:
    return await prepare(redis_url)


@pytest.fixture
async def http(redis_url: str, alarm_ids: list[str]) -> Any:
    ctx = make_context(redis_url)
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://rc", auth=("operator", PASSWORD)) as client:
        yield client
    await ctx.redis.aclose()


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("note", {"text": "\ud800"}),
        ("ack", {"note": "help \ud800 on the way"}),
        ("resolve", {"code": "assisted", "note": "\udfff"}),
    ],
)
async def test_a_lone_surrogate_in_a_text_field_is_a_422_not_a_500(
    http: httpx.AsyncClient, alarm_ids: list[str], action: str, body: dict[str, str]
) -> None:
    # json.dumps escapes it as \ud800: valid JSON that decodes to a string UTF-8 cannot hold.
    raw = json.dumps(body)
    r = await http.post(
        f"/api/alarms/{alarm_ids[0]}/{action}", content=raw, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    (problem,) = r.json()["detail"]
    assert "surrogate" in problem["msg"] and problem["loc"][0] == "body"
    assert set(problem) == {"loc", "msg", "type"}
    # Nothing was changed: the alarm is still waiting for someone.
    assert (await http.get(f"/api/alarms/{alarm_ids[0]}")).json()["state"] == "raised"


async def test_a_body_over_64_kib_is_a_short_413(http: httpx.AsyncClient, alarm_ids: list[str]) -> None:
    huge = b'{"text": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    r = await http.post(f"/api/alarms/{alarm_ids[0]}/note", content=huge, headers={"content-type": "application/json"})
    assert r.status_code == 413 and len(r.content) < 200, r.content[:200]
    assert "64 KiB" in r.json()["detail"]


async def test_a_streamed_body_is_cut_off_at_the_limit_too(http: httpx.AsyncClient, alarm_ids: list[str]) -> None:
    async def chunks() -> Any:  # no Content-Length: sent chunked
        yield b'{"text": "'
        for _ in range(200):
            yield b"x" * 1024
        yield b'"}'

    r = await http.post(
        f"/api/alarms/{alarm_ids[0]}/note", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and len(r.content) < 200


async def test_a_validation_error_does_not_echo_the_input(http: httpx.AsyncClient, alarm_ids: list[str]) -> None:
    secret = "resident-said-" + "y" * 3000
    r = await http.post(f"/api/alarms/{alarm_ids[0]}/note", json={"text": secret})
    assert r.status_code == 422 and "resident-said" not in r.text and len(r.content) < 500
    assert [set(p) for p in r.json()["detail"]] == [{"loc", "msg", "type"}]
    r = await http.post(f"/api/alarms/{alarm_ids[0]}/note", content=b'{"text": ' + secret.encode())
    assert r.status_code == 422 and "resident-said" not in r.text


@pytest.mark.parametrize(("limit", "status"), [(-5, 422), (0, 422), (1, 200), (1000, 200), (1001, 422)])
async def test_the_alarm_list_limit_is_bounded(http: httpx.AsyncClient, limit: int, status: int) -> None:
    r = await http.get("/api/alarms", params={"state": "all", "limit": limit})
    assert r.status_code == status, r.text
    if status == 200:
        assert 1 <= len(r.json()["alarms"]) <= limit


async def test_state_and_limit_are_declared_in_the_document(http: httpx.AsyncClient) -> None:
    params = {
        p["name"]: p["schema"]
        for p in (await http.get("/openapi.json")).json()["paths"]["/api/alarms"]["get"]["parameters"]
    }
    assert params["state"]["enum"] == ["open", "all"]
    assert (params["limit"]["minimum"], params["limit"]["maximum"]) == (1, 1000)
    r = await http.get("/api/alarms", params={"state": "closed"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "state"]


@pytest.mark.parametrize("action", ["", "/ack", "/note", "/resolve"])
async def test_an_unknown_alarm_is_a_404_that_says_so(http: httpx.AsyncClient, action: str) -> None:
    body = {"code": "assisted", "text": "x"} if action else None
    r = await (
        http.post(f"/api/alarms/no-such-id{action}", json=body) if action else http.get("/api/alarms/no-such-id")
    )
    assert r.status_code == 404 and r.json() == {"detail": "no alarm with id 'no-such-id'"}


async def test_a_bad_closing_code_is_a_422_naming_the_good_ones(http: httpx.AsyncClient, alarm_ids: list[str]) -> None:
    r = await http.post(f"/api/alarms/{alarm_ids[0]}/resolve", json={"code": "fixed-it"})
    assert r.status_code == 422
    (problem,) = r.json()["detail"]
    assert problem["loc"] == ["body", "code"] and "false_alarm" in problem["msg"] and "fixed-it" not in r.text


async def test_acting_on_a_closed_alarm_is_a_409_that_says_why(http: httpx.AsyncClient, alarm_ids: list[str]) -> None:
    assert (await http.post(f"/api/alarms/{alarm_ids[0]}/resolve", json={"code": "assisted"})).status_code == 200
    r = await http.post(f"/api/alarms/{alarm_ids[0]}/resolve", json={"code": "assisted"})
    assert r.status_code == 409 and "resolved" in r.json()["detail"]
    r = await http.post(f"/api/alarms/{alarm_ids[0]}/ack")
    assert r.status_code == 409 and "resolved" in r.json()["detail"]


async def test_readyz_names_each_failing_dependency(redis_url: str, alarm_ids: list[str]) -> None:
    def broker_ready() -> tuple[bool, str]:
        return False, "broker: not connected"

    def engine_ready() -> tuple[bool, str]:
        return True, "engine: replaying the event log"

    def legacy_ready() -> tuple[bool, str]:  # a check that does not name itself
        return False, "no answer"

    ctx = make_context(redis_url, [broker_ready, engine_ready, legacy_ready])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)), base_url="http://rc") as client:
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert r.json() == {
            "status": "not ready",
            "checks": {"redis": "ok", "broker": "not connected", "engine": "ok", "legacy": "no answer"},
            "problems": ["broker: not connected", "legacy: no answer"],
        }
        ctx.ready_checks = [engine_ready]
        r = await client.get("/readyz")
        assert r.status_code == 200
        assert r.json() == {"status": "ready", "checks": {"redis": "ok", "engine": "ok"}, "problems": []}
    await ctx.redis.aclose()

    # Redis gone: its check says why, the others still answer.
    ctx = make_context("redis://127.0.0.1:1/0", [engine_ready])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)), base_url="http://rc") as client:
        r = await client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["checks"]["engine"] == "ok" and body["checks"]["redis"] != "ok"
    assert body["problems"] == [f"redis: {body['checks']['redis']}"]
    await ctx.redis.aclose()
