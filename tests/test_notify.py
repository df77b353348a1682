"""The outbox against a real Redis: a failing channel is retried, nothing is dropped."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import redis.asyncio as aioredis

from responsecentre import notifier as notify
from responsecentre.metrics import Metrics
from responsecentre.store.keys import KEYS
from tests.waiting import until


class FlakyChannel:
    """A channel that fails its first `failures` sends, like a gateway that is briefly down."""

    channel = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.delivered: list[str] = []

    async def send(self, entry: dict[str, str]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("gateway down")
        self.delivered.append(entry["n"])


async def test_a_failed_delivery_is_retried_and_every_entry_arrives_once(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify, "RETRY_S", 0.3)
    client = aioredis.Redis.from_url(redis_url)
    channel = FlakyChannel(failures=2)
    metrics = Metrics()
    try:
        for n in range(5):
            await client.xadd(KEYS.outbox(), {"channel": "flaky", "n": str(n)})
        task = asyncio.create_task(notify.run_notifiers(client, [channel], metrics))
        with contextlib.suppress(AssertionError):  # what arrived is asserted below
            await until(lambda: len(channel.delivered) == 5, 10, "five deliveries")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert sorted(channel.delivered) == ["0", "1", "2", "3", "4"]
        assert await client.xlen(KEYS.outbox()) == 0
        assert metrics.notifications.labels("flaky", "failed")._value.get() == 2
    finally:
        await client.aclose()
