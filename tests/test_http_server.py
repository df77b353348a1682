"""Faults that only show on a real socket: uvicorn in-process on a free loopback port.

A console that drops its WebSocket and a client that sends a 1 MiB header are both the
client's doing; the centre must stay up and must not log them as its own errors.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import connect

from responsecentre.alarms.model import Trigger
from responsecentre.web.app import AppContext, create_app
from tests.servers import Redis
from tests.service import PASSWORD
from tests.test_http_edges import TENANT, make_context, prepare
from tests.waiting import until

BASIC = "Basic " + base64.b64encode(f"operator:{PASSWORD}".encode()).decode()


class _Server(uvicorn.Server):
    """As in service.py: signals belong to the test runner, not to uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass
class Running:
    host: str
    port: int
    ctx: AppContext
    server: uvicorn.Server

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@pytest.fixture
async def server(redis_server: Redis) -> AsyncIterator[Running]:
    await prepare(redis_server.url)
    ctx = make_context(redis_server.url)
    # The service's settings (service.py), except log_config=None: uvicorn's own logging
    # config stops its loggers from propagating, and then caplog could not see its errors.
    config = uvicorn.Config(
        create_app(ctx), host="127.0.0.1", port=0, log_level="warning", lifespan="off", ws="auto", log_config=None
    )
    srv = _Server(config)
    task = asyncio.create_task(srv.serve())
    await until(lambda: srv.started or task.done(), 10, "uvicorn started", every=0.01)
    assert not task.done(), "uvicorn did not start"
    host, port = srv.servers[0].sockets[0].getsockname()[:2]
    try:
        yield Running(host, port, ctx, srv)
    finally:
        srv.should_exit = True
        await asyncio.wait_for(task, 10)
        await ctx.redis.aclose()


async def healthy(running: Running) -> bool:
    async with httpx.AsyncClient(base_url=running.base_url, timeout=5) as client:
        return (await client.get("/healthz")).status_code == 200


async def wait_for_handlers(running: Running, timeout: float = 5.0) -> None:
    """Until every ASGI handler uvicorn started has returned (the dropped client's included),
    and whatever their ending logs has been logged."""
    await until(lambda: not running.server.server_state.tasks, timeout, "every handler returned", every=0.02)
    gc.collect()  # a task's never-retrieved exception is logged when the task is collected
    await asyncio.sleep(0)  # and callbacks scheduled by the ending handlers run


def loud(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records if r.levelno > logging.INFO]


async def raw_handshake(running: Running) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(running.host, running.port)
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: {running.host}:{running.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: {BASIC}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    return reader, writer


def reset(writer: asyncio.StreamWriter) -> None:
    """Drop the connection the way a lost laptop does: no close frame, no FIN handshake."""
    writer.transport.abort()


class Gate:
    """Holds a call until the test lets it go, and says when the call has begun: the test
    drops its client at a known point of the handler, not after a guessed time."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    def hold(self, fn: Any) -> Any:
        async def held(*args: Any, **kwargs: Any) -> Any:
            self.entered.set()
            await self.release.wait()
            return await fn(*args, **kwargs)

        return held


@pytest.mark.parametrize(
    ("held", "accepted"),
    [("users.verify", False), ("desk.open_alarms", True)],
    ids=["before the accept (checking the password)", "during the snapshot"],
)
async def test_a_client_dropping_mid_handshake_logs_nothing_loud(
    server: Running, caplog: pytest.LogCaptureFixture, held: str, accepted: bool
) -> None:
    caplog.set_level(logging.DEBUG)
    owner_name, method = held.split(".")
    owner, gate = getattr(server.ctx, owner_name), Gate()
    setattr(owner, method, gate.hold(getattr(owner, method)))
    reader, writer = await raw_handshake(server)
    if accepted:
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    await asyncio.wait_for(gate.entered.wait(), 5)  # the handler is inside the held call
    reset(writer)
    gate.release.set()
    await wait_for_handlers(server)
    assert loud(caplog) == []
    assert await healthy(server)


@pytest.mark.parametrize("how", ["reset", "close"])
async def test_a_client_leaving_during_the_feed_logs_nothing_loud(
    server: Running, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    caplog.set_level(logging.DEBUG)
    async with connect(f"ws://{server.host}:{server.port}/ws", additional_headers={"Authorization": BASIC}) as ws:
        assert '"snapshot"' in str(await ws.recv())
        if how == "reset":
            ws.transport.abort()
        else:
            await ws.close()
    # A change goes out on the feed after the client is gone.
    now = int(time.time() * 1000)
    trigger = Trigger("late:1", "button", "assistance", "critical", "urgent", "h3", "north", "h3-btn", now)
    await server.ctx.desk.apply_trigger(TENANT, trigger, now)
    await wait_for_handlers(server)
    assert loud(caplog) == []
    assert await healthy(server)


async def test_the_feed_still_delivers_changes(server: Running) -> None:
    async with connect(f"ws://{server.host}:{server.port}/ws", additional_headers={"Authorization": BASIC}) as ws:
        assert '"snapshot"' in str(await ws.recv())
        now = int(time.time() * 1000)
        trigger = Trigger("live:1", "button", "assistance", "critical", "urgent", "h3", "north", "h3-btn", now)
        await server.ctx.desk.apply_trigger(TENANT, trigger, now)
        assert '"type":"alarm"' in str(await asyncio.wait_for(ws.recv(), 5))


async def test_a_1_mib_header_is_refused_and_the_server_stays_up(
    server: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        try:
            r = await client.get("/healthz", headers={"X-Padding": "a" * (1024 * 1024)})
        except httpx.TransportError:
            pass  # uvicorn answers 400 and closes while the client is still sending: a reset
        else:
            assert r.status_code in (400, 431)
    assert await healthy(server)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
