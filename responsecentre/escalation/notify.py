"""Notifiers: deliver what the alarm desk queued in the outbox stream.

The outbox is written in the same transaction as the alarm change, and read here through
a consumer group; an entry is acked only after its channel took it, so a crash between
the two re-delivers (at least once). One notifier class per channel, all with the same
small interface, so webhook, e-mail and SMS channels slot in beside these.

One entry can never hold up the rest: a send is bounded in time, an entry that cannot
even be read or whose channel keeps failing for MAX_ATTEMPTS is parked in `rc:parked`
(with the reason, counted) and acked, and the loop goes on. The chain's own timers still
move the alarm on when a page is lost this way, so a parked page costs a step, not the alarm.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from responsecentre.clock import Clock, system_clock
from responsecentre.contract import alarm_topic, page_topic
from responsecentre.faults import Faults, describe, is_outage, reraise_if_stopping
from responsecentre.ingest.mqtt import PublishLink
from responsecentre.metrics import Metrics
from responsecentre.store.keys import KEYS, OUTBOX_GROUP, PARKED_MAXLEN, Keys

log = logging.getLogger(__name__)

RETRY_S = 10.0
SEND_TIMEOUT_S = 10.0  # a channel that hangs is a failed attempt, not a stuck loop
MAX_ATTEMPTS = 6  # then the entry is parked as undeliverable
STAGE = "notifier"


class Notifier(Protocol):
    channel: str

    async def send(self, entry: dict[str, str]) -> None: ...


class MqttPager:
    """A page to a nurse's handset: rc/v1/{tenant}/staff/{staff_id}/pages (no resident data).
    Done once the broker acked it (`PublishLink.publish` raises otherwise)."""

    channel = "mqtt"

    def __init__(self, link: PublishLink) -> None:
        self.link = link

    async def send(self, entry: dict[str, str]) -> None:
        await self.link.publish(page_topic(entry["tenant"], entry["staff"]), entry["body"].encode(), qos=1)


class IntegrationPublisher:
    """Every alarm state change on rc/v1/{tenant}/alarms/{alarm_id}, for integrations."""

    channel = "integration"

    def __init__(self, link: PublishLink) -> None:
        self.link = link

    async def send(self, entry: dict[str, str]) -> None:
        await self.link.publish(alarm_topic(entry["tenant"], entry["alarm"]), entry["body"].encode(), qos=1)


async def ensure_group(redis: aioredis.Redis, keys: Keys = KEYS) -> None:
    try:
        await redis.xgroup_create(keys.outbox(), OUTBOX_GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def run_notifiers(
    redis: aioredis.Redis,
    notifiers: list[Notifier],
    metrics: Metrics,
    consumer: str = "notifier-1",
    keys: Keys = KEYS,
    faults: Faults | None = None,
    clock: Clock = system_clock,
) -> None:
    """Deliver the outbox. An entry whose channel failed stays pending in the group and is
    retried on the next scan of the pending list (at start, then every RETRY_S), up to
    MAX_ATTEMPTS; then it is parked."""
    by_channel = {n.channel: n for n in notifiers}
    attempts: dict[bytes, int] = {}
    last_scan = -RETRY_S  # after a restart, first deliver what was read but never acked
    while True:
        # Python 3.11's wait_for (used per send) can swallow a cancellation that lands just
        # as the send completes; the task is still marked as being cancelled, so honour it
        # here or the loop runs on and a stop never ends.
        reraise_if_stopping()
        scan = time.monotonic() - last_scan >= RETRY_S
        try:
            await ensure_group(redis, keys)
            reply = await redis.xreadgroup(
                OUTBOX_GROUP, consumer, {keys.outbox(): "0" if scan else ">"}, count=200, block=500
            )
        except Exception as exc:
            reraise_if_stopping()
            if is_outage(exc):
                log.warning("notifier: redis unavailable (%s); retrying", exc)
            else:
                log.exception("notifier: reading the outbox failed; retrying")
            await asyncio.sleep(1.0)
            continue
        if scan:
            last_scan = time.monotonic()
        for entry_id, raw in reply[0][1] if reply else []:
            try:
                await _deliver(redis, by_channel, entry_id, raw, attempts, metrics, keys, faults, clock)
            except Exception as exc:  # storage out mid-entry: it stays pending, retried on a scan
                reraise_if_stopping()
                log.warning("notifier: could not finish an outbox entry (%s); it will be retried", describe(exc))


async def _deliver(
    redis: aioredis.Redis,
    by_channel: dict[str, Notifier],
    entry_id: bytes,
    raw: dict[bytes, bytes],
    attempts: dict[bytes, int],
    metrics: Metrics,
    keys: Keys,
    faults: Faults | None,
    clock: Clock,
) -> None:
    try:
        entry = {k.decode(): v.decode() for k, v in raw.items()}
    except UnicodeDecodeError as exc:
        await _park(redis, entry_id, "?", exc, metrics, keys, faults, clock)
        return
    channel = entry.get("channel", "?")
    notifier = by_channel.get(channel)
    if notifier is None:
        log.error("outbox entry for unknown channel %r dropped", channel)
        metrics.notifications.labels(channel, "no_channel").inc()
    else:
        try:
            await asyncio.wait_for(notifier.send(entry), SEND_TIMEOUT_S)
        except Exception as exc:  # a failing channel must not stop the others
            reraise_if_stopping()
            metrics.notifications.labels(channel, "failed").inc()
            attempts[entry_id] = attempts.get(entry_id, 0) + 1
            if attempts[entry_id] < MAX_ATTEMPTS:
                log.warning("notifier %s failed (%s); will retry", channel, describe(exc))
                return
            await _park(redis, entry_id, channel, exc, metrics, keys, faults, clock)
            attempts.pop(entry_id, None)
            return
        attempts.pop(entry_id, None)
        metrics.notifications.labels(channel, "delivered").inc()
        if faults is not None:
            faults.ok(STAGE, clock())
    await _done(redis, entry_id, keys)


async def _park(
    redis: aioredis.Redis,
    entry_id: bytes,
    channel: str,
    exc: BaseException,
    metrics: Metrics,
    keys: Keys,
    faults: Faults | None,
    clock: Clock,
) -> None:
    """Set an entry aside for good: recorded with why, counted, then acked."""
    log.error("notifier: parked outbox entry %s for %s (%s)", entry_id.decode(), channel, describe(exc))
    metrics.notifications.labels(channel, "parked").inc()
    metrics.internal_errors.labels(STAGE).inc()
    if faults is not None:
        faults.fault(STAGE, exc, clock())
    record = {"stage": STAGE, "position": entry_id, "channel": channel, "detail": describe(exc)}
    await redis.xadd(keys.parked(), record, maxlen=PARKED_MAXLEN, approximate=True)
    await _done(redis, entry_id, keys)


async def _done(redis: aioredis.Redis, entry_id: bytes, keys: Keys) -> None:
    await redis.xack(keys.outbox(), OUTBOX_GROUP, entry_id)
    await redis.xdel(keys.outbox(), entry_id)
