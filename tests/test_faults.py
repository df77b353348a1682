"""Faults: Redis and the broker restarted under a running service; nothing is lost.

Each test has its own mosquitto and redis-server, so stopping them touches no other test.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.conftest import seed
from tests.servers import Mosquitto, Redis, running
from tests.service import Api, Publisher, ServiceProcess
from tests.waiting import until


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Redis]:
    with running(Redis, tmp_path / "redis") as server:
        yield server


@pytest.fixture
def own_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    with running(Mosquitto, tmp_path / "mosquitto") as server:
        yield server


def homes_with(kind: str, home: str):
    return lambda alarms: [a for a in alarms if a["kind"] == kind and a["home_id"] == home]


@contextlib.asynccontextmanager
async def centre(
    tmp_path: Path, tenant: str, broker: Mosquitto, redis: Redis
) -> AsyncIterator[tuple[ServiceProcess, Api]]:
    """The service on a Redis of the test's own (seeded first), and an API client."""
    await seed(redis.url, tenant)
    svc = ServiceProcess(tenant=tenant, workdir=tmp_path / "svc", broker=broker, redis_url=redis.url)
    svc.start()
    api = Api(svc.base_url)
    try:
        yield svc, api
    finally:
        await api.close()
        svc.stop()


async def test_an_event_sent_while_redis_is_down_is_held_by_the_broker_and_raises_its_alarm(
    tmp_path: Path, tenant: str, mosquitto: Mosquitto, own_redis: Redis, publisher: Publisher
) -> None:
    async with centre(tmp_path, tenant, mosquitto, own_redis) as (svc, api):
        publisher.event(tenant, "h1-btn", "r-1", "alarm.button")
        await api.wait_for(homes_with("assistance", "h1"), timeout=5)
        own_redis.stop()
        publisher.event(tenant, "h2-btn", "r-2", "alarm.button")  # cannot be stored yet: not acked
        await until(lambda: api.ready_problem("redis"), 10, "/readyz naming Redis")
        assert svc.proc is not None and svc.proc.poll() is None, svc.log_tail()
        own_redis.start()  # same port and directory: the append-only file brings the data back
        alarms = await api.wait_for(lambda al: homes_with("assistance", "h2")(al), timeout=20)
        assert homes_with("assistance", "h1")(alarms), "an alarm stored before the restart was lost"
        assert (await api.client.get("/readyz")).status_code == 200


async def test_a_broker_restart_is_survived(
    tmp_path: Path, tenant: str, own_mosquitto: Mosquitto, redis_url: str
) -> None:
    svc = ServiceProcess(tenant=tenant, workdir=tmp_path / "svc", broker=own_mosquitto, redis_url=redis_url)
    svc.start()
    api = Api(svc.base_url)
    try:
        own_mosquitto.restart()
        publisher = Publisher(own_mosquitto)
        try:
            publisher.event(tenant, "h3-btn", "b-1", "alarm.button")
            await api.wait_for(homes_with("assistance", "h3"), timeout=20)
        finally:
            publisher.close()
        metrics = (await api.client.get("/metrics")).text
        assert "responsecentre_mqtt_connected 1.0" in metrics
    finally:
        await api.close()
        svc.stop()


async def test_a_backlog_far_larger_than_the_inbox_is_stored_whole(
    tmp_path: Path, tenant: str, mosquitto: Mosquitto, redis_url: str, publisher: Publisher
) -> None:
    """A broker with a backlog for our session may send more than our Receive Maximum at
    once; ingest must hold back (flow control), never drop, and never stall."""
    svc = ServiceProcess(tenant=tenant, workdir=tmp_path / "svc", broker=mosquitto, redis_url=redis_url)
    svc.start()
    n = 40_000
    second = Publisher(mosquitto)
    try:  # two devices' worth of publishers at once, faster than ingest stores
        await asyncio.gather(
            asyncio.to_thread(publisher.burst, tenant, ["h1-btn", "h2-btn"], n // 2, "device.heartbeat", "a"),
            asyncio.to_thread(second.burst, tenant, ["h3-btn", "h3-fall"], n // 2, "device.heartbeat", "b"),
        )
    finally:
        second.close()
    api = Api(svc.base_url)
    try:
        stored = await api.metric_reaches("responsecentre_events_stored_total{", n, timeout=60)
        assert stored == n, f"{stored:.0f} of {n} stored\n{svc.log_tail()}"
        assert "inbox full" not in svc.log_path.read_text()
    finally:
        await api.close()
        svc.stop()


async def test_redis_out_of_memory_stops_acking_shows_on_readyz_and_recovers_by_itself(
    tmp_path: Path, tenant: str, mosquitto: Mosquitto, own_redis: Redis, publisher: Publisher
) -> None:
    admin = aioredis.Redis.from_url(own_redis.url)
    try:
        async with centre(tmp_path, tenant, mosquitto, own_redis) as (svc, api):
            publisher.event(tenant, "h1-btn", "oom-0", "alarm.button")
            await api.wait_for(homes_with("assistance", "h1"), timeout=5)
            # Full: every write is refused (noeviction is the default policy; the centre never
            # lets Redis evict, since an evicted event or alarm would be lost without a trace).
            await admin.config_set("maxmemory-policy", "noeviction")
            await admin.config_set("maxmemory", 1)
            publisher.event(tenant, "h2-btn", "oom-1", "alarm.button")  # PUBACK from the broker only
            why = await until(lambda: api.ready_problem("ingest"), 10, "/readyz naming ingest")
            assert "out of memory" in why
            assert await admin.xlen(f"rc:{tenant}:events") == 1  # not stored, so not acked
            assert svc.proc is not None and svc.proc.poll() is None, svc.log_tail()
            await admin.config_set("maxmemory", 0)  # space is back
            await api.wait_for(homes_with("assistance", "h2"), timeout=10)
            await until(lambda: _ready(api), 10, "/readyz 200 again")
            assert await admin.xlen(f"rc:{tenant}:events") == 2
    finally:
        await admin.config_set("maxmemory", 0)
        await admin.aclose()


async def _ready(api: Api) -> bool:
    return (await api.ready())[0] == 200


@contextlib.contextmanager
def small_disk(path: Path, size: str = "16m") -> Iterator[Path]:
    """A tmpfs of `size` at `path` (root only): a disk that really fills up."""
    path.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the disk has no space left; returns it (delete it to make room)."""
    filler = disk / "filler"
    with filler.open("wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    return filler


async def test_redis_disk_full_loses_nothing_and_the_centre_recovers_when_redis_is_back(
    tmp_path: Path, tenant: str, mosquitto: Mosquitto, publisher: Publisher
) -> None:
    """With `appendfsync always`, Redis that cannot write its append-only file exits rather
    than answer a write it could not persist. The centre must then hold everything at the
    broker (no ack), say so, and take it all once Redis runs again with space."""
    with small_disk(tmp_path / "disk") as disk:
        redis_server = Redis(workdir=disk / "redis")
        redis_server.start()
        try:
            async with centre(tmp_path, tenant, mosquitto, redis_server) as (svc, api):
                publisher.event(tenant, "h1-btn", "disk-0", "alarm.button")
                await api.wait_for(homes_with("assistance", "h1"), timeout=5)
                filler = fill(disk)
                publisher.event(tenant, "h2-btn", "disk-1", "alarm.button")  # the write that cannot be kept
                publisher.event(tenant, "h3-btn", "disk-2", "alarm.button")
                assert redis_server.proc is not None
                await until(lambda: redis_server.proc.poll() is not None, 10, "Redis giving up on its full disk")
                assert "AOF" in redis_server.log_tail()
                why = await until(lambda: api.ready_problem("redis"), 10, "/readyz naming Redis")
                assert why
                assert svc.proc is not None and svc.proc.poll() is None, svc.log_tail()
                filler.unlink()  # space is back; Redis is started again (as a supervisor would)
                redis_server.start()
                alarms = await api.wait_for(
                    lambda al: homes_with("assistance", "h2")(al) and homes_with("assistance", "h3")(al), timeout=20
                )
                assert homes_with("assistance", "h1")(alarms), "an alarm stored before the disk filled was lost"
                admin = aioredis.Redis.from_url(redis_server.url)
                try:
                    assert await admin.xlen(f"rc:{tenant}:events") == 3
                finally:
                    await admin.aclose()
        finally:
            redis_server.stop()
