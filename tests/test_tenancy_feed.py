"""Tenant isolation and the nurse's scope on the /ws feed, over a real socket.

The feed is one Redis stream for every tenant; each connection must pass on only what its
user may see. uvicorn runs in-process on a loopback port with the two-tenant data of
tests/tenancy.py; alarms are raised through the desk, which writes the feed entries.
Each client reads until a marker alarm it must see, so "never received" is checked over
a stretch of the feed that certainly contained the foreign alarms.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import connect

from responsecentre.web.app import create_app
from tests import tenancy
from tests.servers import Redis
from tests.service import PASSWORD
from tests.waiting import until


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@pytest.fixture
async def live(redis_server: Redis) -> AsyncIterator[tuple[tenancy.Seeded, str]]:
    seeded = await tenancy.seed(redis_server.url)
    config = uvicorn.Config(
        create_app(seeded.ctx), host="127.0.0.1", port=0, log_level="warning", lifespan="off", ws="auto"
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started or task.done(), 10, "uvicorn started", every=0.01)
    assert not task.done(), "uvicorn did not start"
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield seeded, f"ws://{host}:{port}/ws"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        await seeded.ctx.redis.aclose()


def basic(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()}


class Console:
    """One user's feed: the snapshot, then alarm changes collected in the background."""

    def __init__(self, url: str, user: str) -> None:
        self.url = url
        self.user = user
        self.snapshot: list[dict[str, Any]] = []
        self.changes: list[dict[str, Any]] = []

    async def run(self, opened: asyncio.Event, stop: asyncio.Event) -> None:
        async with connect(self.url, additional_headers=basic(self.user)) as ws:
            first = json.loads(await ws.recv())
            assert first["type"] == "snapshot"
            self.snapshot = first["alarms"]
            opened.set()
            while not stop.is_set():
                try:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 0.2))
                except TimeoutError:
                    continue
                self.changes.append(message["alarm"])

    def saw(self, alarm_id: str) -> bool:
        return any(a["id"] == alarm_id for a in self.changes)

    def homes(self) -> set[tuple[str, str]]:
        return {(a["tenant"], a["home_id"]) for a in self.snapshot + self.changes}


async def test_each_feed_carries_only_what_its_user_may_see(live: tuple[tenancy.Seeded, str]) -> None:
    seeded, url = live
    a, b = seeded.a, seeded.b
    users = ("op-a", "op-b", "op-ab", "nurse-north-a", "nurse-south-a", "nurse-north-b")
    consoles = {u: Console(url, u) for u in users}
    stop = asyncio.Event()
    opened = {u: asyncio.Event() for u in users}
    tasks = [asyncio.create_task(c.run(opened[u], stop)) for u, c in consoles.items()]
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened.values())), 10)
        assert {(x["tenant"], x["home_id"]) for x in consoles["op-a"].snapshot} == {(a, "h1"), (a, "h2")}
        assert {(x["tenant"], x["home_id"]) for x in consoles["nurse-north-b"].snapshot} == {(b, "h1")}
        assert consoles["nurse-north-a"].homes() == {(a, "h1")}

        # In feed order: A north, B north, A south, B north again, A north again.
        a_north = await seeded.raise_alarm(a, "h1", "fall")
        b_north = await seeded.raise_alarm(b, "h1", "fall")
        a_south = await seeded.raise_alarm(a, "h2", "fall")
        b_last = await seeded.raise_alarm(b, "h1", "missed_dose")
        a_last = await seeded.raise_alarm(a, "h1", "missed_dose")
        markers = {
            "op-a": a_last,
            "op-b": b_last,
            "op-ab": a_last,
            "nurse-north-a": a_last,
            "nurse-south-a": a_south,
            "nurse-north-b": b_last,
        }
        for user, marker in markers.items():
            await until(lambda c=consoles[user], m=marker: c.saw(m), 10, f"{user} sees its marker alarm")
    finally:
        stop.set()
        await asyncio.gather(*tasks)

    assert consoles["op-a"].homes() == {(a, "h1"), (a, "h2")}
    assert consoles["op-b"].homes() == {(b, "h1")}
    assert consoles["op-ab"].homes() == {(a, "h1"), (a, "h2"), (b, "h1")}
    assert consoles["nurse-north-a"].homes() == {(a, "h1")}
    assert consoles["nurse-south-a"].homes() == {(a, "h2")}
    assert consoles["nurse-north-b"].homes() == {(b, "h1")}
    assert consoles["op-ab"].saw(b_north) and consoles["op-ab"].saw(a_north)
    assert not consoles["nurse-north-b"].saw(a_north)
