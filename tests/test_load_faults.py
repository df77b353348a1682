"""Crash and restart under load: SIGKILL of the service, a broker restart and a Redis
restart while devices publish at about half of the sustained rate. Nothing is lost, no
trigger is applied twice, and the centre recovers by itself within 10 s.

The load is a device-side publisher that behaves like a real device: it counts a message
as sent only when the broker's PUBACK is back, and sends it again (same id) otherwise.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from responsecentre.contract import encode_event, events_topic
from tests.conftest import seed
from tests.servers import Mosquitto, Redis, running
from tests.service import Api, ServiceProcess
from tests.waiting import until, until_sync

RATE = 2500  # events/s, about half of what the whole pipeline sustains here (bench/RESULTS.md: ~5,000)
EVENTS = 7500
BUTTON_EVERY = 50  # every 50th event is an alarm.button: triggers to count exactly
DEVICES = ["h1-btn", "h2-btn", "h3-btn", "h1-fall", "h2-fall", "h3-fall"]


class Device:
    """Publishes EVENTS events at RATE; each one until the broker has acked it."""

    def __init__(self, broker: Mosquitto, tenant: str) -> None:
        self.tenant = tenant
        self.acked = 0
        self.resent = 0
        self.client = broker.client()  # a harness account: it publishes for several devices
        self.client.reconnect_delay_set(0.1, 0.5)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _send(self, i: int) -> None:
        kind = "alarm.button" if i % BUTTON_EVERY == 0 else "device.heartbeat"
        payload = encode_event(f"load-{i}", kind, int(time.time() * 1000))
        topic = events_topic(self.tenant, DEVICES[i % len(DEVICES)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                info = self.client.publish(topic, payload, qos=1)
                info.wait_for_publish(2)
                if info.is_published():
                    self.acked += 1
                    return
            except (RuntimeError, ValueError):
                pass
            self.resent += 1
            # Send again once connected again (a broker restart drops the connection).
            until_sync(self.client.is_connected, 30, "the device connected again")
        raise AssertionError(f"event {i} never acked by the broker")

    def _run(self) -> None:
        started = time.monotonic()
        for i in range(EVENTS):
            ahead = started + i / RATE - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            self._send(i)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def ready(api: Api) -> bool:
    try:
        return (await api.client.get("/readyz")).status_code == 200
    except httpx.HTTPError:  # not listening yet
        return False


@pytest.mark.parametrize("fault", ["service-sigkill", "broker-restart", "redis-restart"])
async def test_a_fault_under_load_loses_nothing_and_applies_nothing_twice(
    tmp_path: Path, tenant: str, fault: str
) -> None:
    with running(Mosquitto, tmp_path / "mosquitto") as broker, running(Redis, tmp_path / "redis") as redis_server:
        await seed(redis_server.url, tenant)
        svc = ServiceProcess(tenant=tenant, workdir=tmp_path / "svc", broker=broker, redis_url=redis_server.url)
        svc.start()
        api = Api(svc.base_url)
        device = Device(broker, tenant)
        faults: dict[str, Callable[[], None]] = {
            "service-sigkill": lambda: (svc.kill(), svc.start()),
            "broker-restart": broker.restart,
            "redis-restart": redis_server.restart,
        }
        try:
            device.thread.start()
            await until(lambda: device.acked >= EVENTS // 3, 30, "a third of the load sent", every=0.01)
            hit = time.monotonic()
            await asyncio.to_thread(faults[fault])
            await until(lambda: ready(api), 10, "ready again after the fault")
            recovery = time.monotonic() - hit
            assert recovery < 10
            await asyncio.to_thread(device.thread.join, 60)
            assert device.acked == EVENTS
            client = aioredis.Redis.from_url(redis_server.url)

            async def stored_all() -> int | None:
                n = await client.xlen(f"rc:{tenant}:events")
                return n if n >= EVENTS else None

            try:
                stored = await until(stored_all, 30, "every event stored")
            finally:
                await client.aclose()
            assert stored == EVENTS, f"{stored} of {EVENTS} stored (resent {device.resent})\n{svc.log_tail()}"
            buttons = len(range(0, EVENTS, BUTTON_EVERY))
            alarms = await api.wait_for(
                lambda al: sum(a["triggers"] for a in al if a["kind"] == "assistance") >= buttons, timeout=15
            )
            assistance = [a for a in alarms if a["kind"] == "assistance"]
            assert sum(a["triggers"] for a in assistance) == buttons  # each press applied exactly once
            assert sorted(a["home_id"] for a in assistance) == ["h1", "h2", "h3"]  # one open alarm per home
            print(f"{fault}: ready again {recovery:.2f} s after the fault began (restart included)")
        finally:
            device.close()
            await api.close()
            svc.stop()
