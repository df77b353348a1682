"""Notifiers: deliver what the alarm desk queued in the outbox stream.

The outbox is written in the same transaction as the alarm change, and read here through
a consumer group; an entry is acked only after its channel took it, so a crash between
the two re-delivers (at least once). One notifier class per channel, all with the same
small interface, so webhook, e-mail and SMS channels slot in beside these.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from responsecentre.contract import alarm_topic, page_topic
from responsecentre.ingest.mqtt import BrokerLink
from responsecentre.metrics import Metrics
from responsecentre.store.keys import KEYS, OUTBOX_GROUP, Keys

log = logging.getLogger(__name__)

RETRY_S = 10.0


class Notifier(Protocol):
    channel: str

    async def send(self, entry: dict[str, str]) -> None: ...


class MqttPager:
    """A page to a nurse's handset: rc/v1/{tenant}/staff/{staff_id}/pages (no resident data)."""

    channel = "mqtt"

    def __init__(self, link: BrokerLink) -> None:
        self.link = link

    async def send(self, entry: dict[str, str]) -> None:
        self.link.publish(page_topic(entry["tenant"], entry["staff"]), entry["body"].encode(), qos=1)


class IntegrationPublisher:
    """Every alarm state change on rc/v1/{tenant}/alarms/{alarm_id}, for integrations."""

    channel = "integration"

    def __init__(self, link: BrokerLink) -> None:
        self.link = link

    async def send(self, entry: dict[str, str]) -> None:
        self.link.publish(alarm_topic(entry["tenant"], entry["alarm"]), entry["body"].encode(), qos=1)


async def ensure_group(redis: aioredis.Redis, keys: Keys = KEYS) -> None:
    try:
        await redis.xgroup_create(keys.outbox(), OUTBOX_GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def run_notifiers(
    redis: aioredis.Redis, notifiers: list[Notifier], metrics: Metrics, consumer: str = "notifier-1", keys: Keys = KEYS
) -> None:
    """Deliver the outbox. An entry whose channel failed stays pending in the group and is
    retried on the next scan of the pending list (at start, then every RETRY_S)."""
    by_channel = {n.channel: n for n in notifiers}
    last_scan = -RETRY_S  # after a restart, first deliver what was read but never acked
    while True:
        scan = time.monotonic() - last_scan >= RETRY_S
        try:
            await ensure_group(redis, keys)
            reply = await redis.xreadgroup(
                OUTBOX_GROUP, consumer, {keys.outbox(): "0" if scan else ">"}, count=200, block=500
            )
        except (RedisError, OSError) as exc:
            log.warning("notifier: redis unavailable (%s); retrying", exc)
            await asyncio.sleep(1.0)
            continue
        if scan:
            last_scan = time.monotonic()
        for entry_id, raw in reply[0][1] if reply else []:
            entry = {k.decode(): v.decode() for k, v in raw.items()}
            channel = entry.get("channel", "?")
            notifier = by_channel.get(channel)
            if notifier is None:
                log.error("outbox entry for unknown channel %r dropped", channel)
                metrics.notifications.labels(channel, "no_channel").inc()
            else:
                try:
                    await notifier.send(entry)
                except Exception:  # a failing channel must not stop the others
                    log.exception("notifier %s failed; will retry", channel)
                    metrics.notifications.labels(channel, "failed").inc()
                    continue
                metrics.notifications.labels(channel, "delivered").inc()
            try:
                await redis.xack(keys.outbox(), OUTBOX_GROUP, entry_id)
                await redis.xdel(keys.outbox(), entry_id)
            except (RedisError, OSError) as exc:
                log.warning("notifier: could not ack an outbox entry (%s); it may be sent twice", exc)
