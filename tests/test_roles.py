"""Least privilege: who may see resident data and act on alarms; every view is audited."""

from __future__ import annotations

import httpx
import redis.asyncio as aioredis

from tests.service import PASSWORD, ServiceProcess


async def test_roles_resident_data_and_audit(service: ServiceProcess, tenant: str) -> None:
    async with httpx.AsyncClient(base_url=service.base_url, timeout=10) as http:
        home = f"/api/homes/{tenant}/h1"
        assert (await http.get(home)).status_code == 401
        assert (await http.get(home, auth=("operator", "wrong"))).status_code == 401
        assert (await http.get(home, auth=("integrator", PASSWORD))).status_code == 403
        assert (await http.get(home, auth=("nurse", PASSWORD))).status_code == 403
        r = await http.get(home, auth=("operator", PASSWORD))
        assert r.status_code == 200 and r.json()["resident"]["key_safe"] == "1234"
        devices = (await http.get("/api/devices", auth=("integrator", PASSWORD))).json()["devices"]
        assert {d["device_id"] for d in devices} >= {"h1-btn", "h1-fall"}
        assert all("resident" not in d for d in devices)
        r = await http.post("/api/alarms/nope/ack", json={}, auth=("integrator", PASSWORD))
        assert r.status_code == 403
        me = (await http.get("/api/me", auth=("nurse", PASSWORD))).json()
        assert me == {"username": "nurse", "role": "nurse", "staff_id": "n1"}
    client = aioredis.Redis.from_url(service.redis_url)
    try:
        audit = [f for _, f in await client.xrange("rc:audit")]
    finally:
        await client.aclose()
    views = [a for a in audit if a[b"action"] == b"view_resident"]
    assert len(views) == 1 and views[0][b"user"] == b"operator" and views[0][b"home"] == b"h1"


async def test_a_browser_session_needs_its_csrf_token_to_act(service: ServiceProcess) -> None:
    async with httpx.AsyncClient(base_url=service.base_url, timeout=10) as http:
        r = await http.post("/login", data={"username": "operator", "password": PASSWORD, "next": "/console"})
        assert r.status_code == 303 and r.headers["location"] == "/console"
        assert "HttpOnly" in r.headers.get_list("set-cookie")[0]
        csrf = http.cookies["rc_csrf"]
        assert (await http.get("/api/alarms")).status_code == 200
        assert (await http.post("/api/alarms/nope/ack", json={})).status_code == 403
        assert (await http.post("/api/alarms/nope/ack", json={}, headers={"X-CSRF-Token": csrf})).status_code == 404
        r = await http.post("/login", data={"username": "operator", "password": "bad", "next": "//evil.example"})
        assert r.headers["location"].startswith("/login?error=1")
