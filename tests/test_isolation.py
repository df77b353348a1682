"""The fault must not just move elsewhere: after ingest, the rule processor, the timer
loop and the outbox each isolate an entry they fail on, and go on with the rest."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import redis.asyncio as aioredis

from responsecentre import notifier as notify
from responsecentre.metrics import Metrics
from responsecentre.store.keys import KEYS, OUTBOX_GROUP
from tests.service import Api, Publisher, ServiceProcess
from tests.waiting import until


async def test_a_stored_event_the_processor_fails_on_is_parked_and_the_cursor_moves_on(
    service: ServiceProcess, api: Api, publisher: Publisher, tenant: str
) -> None:
    client = aioredis.Redis.from_url(service.redis_url)
    try:
        # Log entries ingest would never write (say, from an older version or a bad
        # restore): a `ts` that is no number, and a record with no device at all.
        bad_ts = await client.xadd(
            KEYS.events(tenant), {"device": "h1-btn", "id": "z1", "type": "alarm.button", "ts": "soon"}
        )
        no_device = await client.xadd(KEYS.events(tenant), {"id": "z2", "type": "alarm.button", "ts": "1"})
        publisher.event(tenant, "h2-btn", "after-bad-log", "alarm.button")
        await api.wait_for(lambda al: [a for a in al if a["home_id"] == "h2"], timeout=5)
        parked = {f[b"position"]: f for _, f in await client.xrange(KEYS.parked())}
        assert set(parked) == {bad_ts, no_device}
        assert parked[bad_ts][b"detail"].startswith(b"ValueError") and parked[bad_ts][b"stage"] == b"rules"
        assert parked[no_device][b"detail"].startswith(b"KeyError")
        assert not [a for a in await api.alarms() if a["home_id"] == "h1"]
        metrics = (await api.client.get("/metrics")).text
        assert 'responsecentre_internal_errors_total{stage="rules"} 2.0' in metrics
    finally:
        await client.aclose()


async def test_a_timer_the_desk_fails_on_does_not_hold_up_the_others(
    service: ServiceProcess, api: Api, publisher: Publisher, tenant: str
) -> None:
    client = aioredis.Redis.from_url(service.redis_url)
    try:
        await client.zadd(KEYS.timers(), {"not|a|timer": 0, "\xff-bytes": 0})
        publisher.event(tenant, "h1-btn", "t-1", "alarm.button")
        (alarm,) = await api.wait_for(lambda al: al, timeout=5)
        # Step 1 has 2 s; the broken timers are due first and must not block step 2.
        await api.wait_for(lambda al: any(a["id"] == alarm["id"] and a["step"] == 2 for a in al), timeout=6)
        assert await client.zscore(KEYS.timers(), "not|a|timer") is not None  # kept, moved later
        metrics = (await api.client.get("/metrics")).text
        assert 'responsecentre_internal_errors_total{stage="timers"} 2.0' in metrics
    finally:
        await client.aclose()


class Channel:
    channel = "test"

    def __init__(self) -> None:
        self.delivered: list[str] = []

    async def send(self, entry: dict[str, str]) -> None:
        if entry["n"] == "never":
            raise ConnectionError("this address never answers")
        if entry["n"] == "hang":
            await asyncio.Event().wait()  # never answers: only SEND_TIMEOUT_S ends it
        self.delivered.append(entry["n"])


async def test_an_undeliverable_outbox_entry_is_parked_and_the_others_delivered(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify, "RETRY_S", 0.2)
    monkeypatch.setattr(notify, "SEND_TIMEOUT_S", 0.2)
    client = aioredis.Redis.from_url(redis_url)
    channel, metrics = Channel(), Metrics()
    try:
        await notify.ensure_group(client)
        for n in ("0", "never", "1", "hang", "2"):
            await client.xadd(KEYS.outbox(), {"channel": "test", "n": n})
        await client.xadd(KEYS.outbox(), {"channel": "test", "n": b"\xff\xfe"})
        await client.xadd(KEYS.outbox(), {"channel": "test", "n": "3"})
        task = asyncio.create_task(notify.run_notifiers(client, [channel], metrics))

        async def drained() -> bool:
            return not await client.xlen(KEYS.outbox())

        with contextlib.suppress(AssertionError):  # what is left is reported below
            await until(drained, 30, "the outbox drained")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        left = await client.xrange(KEYS.outbox())
        assert sorted(channel.delivered) == ["0", "1", "2", "3"], (channel.delivered, left)
        assert not left
        assert (await client.xpending(KEYS.outbox(), OUTBOX_GROUP))["pending"] == 0
        parked = [f for _, f in await client.xrange(KEYS.parked())]
        assert sorted(f[b"detail"].split(b":")[0] for f in parked) == [
            b"ConnectionError",
            b"TimeoutError",
            b"UnicodeDecodeError",
        ]
        assert metrics.notifications.labels("test", "parked")._value.get() == 2
    finally:
        await client.aclose()
