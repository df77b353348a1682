"""SIGTERM and SIGINT stop the service within 10 s, whatever its loops are doing.

Once a restart loop could leave the service answering /healthz, storing nothing and
ignoring SIGTERM, its outbox task stuck in a Redis read; only SIGKILL ended it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from responsecentre import notifier as notify
from responsecentre.metrics import Metrics
from responsecentre.store.keys import KEYS
from tests.conftest import seed
from tests.servers import Redis, running
from tests.service import ServiceProcess
from tests.waiting import until_sync

STOP_WITHIN_S = 10.0


@dataclass(kw_only=True)
class LiveService(ServiceProcess):
    """Started once its HTTP answers (/healthz), before it is ready: to stop it mid-replay."""

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1.0) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def readyz(self) -> int:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2.0) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)


def stop_time(svc: ServiceProcess, sig: signal.Signals) -> float:
    assert svc.proc is not None
    started = time.monotonic()
    svc.proc.send_signal(sig)
    try:
        svc.proc.wait(STOP_WITHIN_S + 5)
    except Exception:
        svc.proc.kill()
        raise
    print(f"stopped by {sig.name} in {time.monotonic() - started:.2f} s, exit {svc.proc.returncode}")
    return time.monotonic() - started


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Redis]:
    with running(Redis, tmp_path / "redis") as server:
        yield server


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_stops_in_time_while_redis_hangs(
    tmp_path: Path, tenant: str, mosquitto, own_redis: Redis, sig: signal.Signals
) -> None:
    """Redis stopped mid-conversation (SIGSTOP: connections open, no answers) is the
    worst case for a loop blocked in a read."""
    await seed(own_redis.url, tenant)
    svc = LiveService(tenant=tenant, workdir=tmp_path / "svc", broker=mosquitto, redis_url=own_redis.url)
    svc.start()
    assert own_redis.proc is not None
    os.kill(own_redis.proc.pid, signal.SIGSTOP)
    try:
        # The service has noticed: Redis no longer answers its /readyz ping either.
        await asyncio.to_thread(until_sync, lambda: svc.readyz() == 503, 10, "/readyz seeing Redis hang")
        took = stop_time(svc, sig)
    finally:
        os.kill(own_redis.proc.pid, signal.SIGCONT)
        svc.stop()
    assert took < STOP_WITHIN_S, f"took {took:.1f} s\n{svc.log_tail()}"


async def test_stops_in_time_during_replay(tmp_path: Path, tenant: str, mosquitto, own_redis: Redis) -> None:
    await seed(own_redis.url, tenant)
    client = aioredis.Redis.from_url(own_redis.url)
    try:  # a long event log and no engine snapshot: the start replays all of it
        for chunk in range(40):
            async with client.pipeline(transaction=False) as pipe:
                for i in range(5000):
                    n = chunk * 5000 + i
                    fields = {"device": f"h{1 + n % 3}-btn", "id": f"r{n}", "type": "device.heartbeat"}
                    pipe.xadd(f"rc:{tenant}:events", {**fields, "ts": 1_795_000_000_000 + n, "recv": 1})
                await pipe.execute()
    finally:
        await client.aclose()
    svc = LiveService(tenant=tenant, workdir=tmp_path / "svc", broker=mosquitto, redis_url=own_redis.url)
    svc.start()
    try:
        assert svc.readyz() == 503, "the replay was over before the test could stop it"
        took = stop_time(svc, signal.SIGTERM)
    finally:
        svc.stop()
    assert took < STOP_WITHIN_S, f"took {took:.1f} s\n{svc.log_tail()}"


class _StopsTheNotifierAsItSends:
    """A channel whose send completes in the very step its notifier loop is cancelled: on
    Python 3.11, asyncio.wait_for then returns the send's result and swallows the cancel."""

    channel = "test"

    def __init__(self) -> None:
        self.loop_task: asyncio.Task[None] | None = None
        self.sent = 0

    async def send(self, entry: dict[str, str]) -> None:
        self.sent += 1
        assert self.loop_task is not None
        self.loop_task.cancel()


async def test_a_stop_that_lands_as_a_send_completes_still_stops_the_notifier(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        await notify.ensure_group(client)
        await client.xadd(KEYS.outbox(), {"channel": "test", "n": "1"})
        channel = _StopsTheNotifierAsItSends()
        task = asyncio.create_task(notify.run_notifiers(client, [channel], Metrics()))
        channel.loop_task = task
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)  # a TimeoutError here: the loop ran on after its stop
        assert task.cancelled() and channel.sent == 1
    finally:
        await client.aclose()
