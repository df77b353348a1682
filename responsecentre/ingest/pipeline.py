"""Ingest: broker inbox -> validate -> durable log -> PUBACK, in micro-batches.

The order is the guarantee: a message is acked only after its event (or its dead-letter
record) is in Redis. If Redis is down the batch is retried and nothing is acked, so the
broker keeps every message; if the service dies, the broker redelivers and the (device,
event id) key makes the second copy a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.exceptions import RedisError

from responsecentre.config import Settings
from responsecentre.contract import DeviceStatus, Rejected, RejectReason, decode_event, decode_status
from responsecentre.directory import Directory
from responsecentre.ingest.log import EventLog, Stored, dead_letter_record
from responsecentre.ingest.mqtt import BrokerLink, Inbound
from responsecentre.metrics import Metrics

log = logging.getLogger(__name__)


def engine_time(device_ts_ms: int, received_ms: int, settings: Settings) -> int:
    """The time the engine uses: the device's own clock when it is plausible (not in the
    future beyond the skew allowance, not older than the age limit), else receive time.
    Device time keeps a buffered burst from a device that was offline in its real order;
    receive time protects the deadlines from a device with a broken clock."""
    if received_ms - settings.max_event_age_ms <= device_ts_ms <= received_ms + settings.max_clock_skew_future_ms:
        return device_ts_ms
    return received_ms


class Ingest:
    def __init__(
        self, link: BrokerLink, event_log: EventLog, directory: Directory, metrics: Metrics, settings: Settings
    ) -> None:
        self.link = link
        self.event_log = event_log
        self.directory = directory
        self.metrics = metrics
        self.settings = settings

    async def run(self) -> None:
        while True:
            batch = await self._next_batch()
            await self._store(batch)

    async def _next_batch(self) -> list[Inbound]:
        inbox = self.link.inbox
        batch = [await inbox.get()]
        deadline = time.monotonic() + self.settings.batch_ms / 1000
        while len(batch) < self.settings.batch_max:
            if inbox.empty():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(inbox.get(), remaining))
                except TimeoutError:
                    break
            else:
                batch.append(inbox.get_nowait())
        self.link.taken(len(batch))
        return batch

    def _known(self, tenant: str, device_id: str) -> None:
        if self.directory.device(tenant, device_id) is None:
            raise Rejected(RejectReason.UNKNOWN_DEVICE, f"device {device_id!r} is not registered in tenant {tenant!r}")

    def _classify(
        self, batch: list[Inbound]
    ) -> tuple[list[Stored], list[dict[str, object]], list[tuple[DeviceStatus, int]]]:
        stored: list[Stored] = []
        dead: list[dict[str, object]] = []
        statuses: list[tuple[DeviceStatus, int]] = []
        for item in batch:
            try:
                if item.topic.endswith("/status"):
                    if not item.payload:  # an empty retained message clears the status: MQTT's delete
                        continue
                    status = decode_status(item.topic, item.payload)
                    self._known(status.tenant, status.device_id)
                    statuses.append((status, item.received_ms))
                    self.metrics.statuses.inc()
                    continue
                event = decode_event(item.topic, item.payload)
                self._known(event.tenant, event.device_id)
            except Rejected as exc:
                self.metrics.events_rejected.labels(str(exc.reason)).inc()
                dead.append(dead_letter_record(item.topic, item.payload, str(exc.reason), exc.detail, item.received_ms))
                log.info("dead-lettered a message on %s: %s", item.topic[:120], exc.reason)
                continue
            self.metrics.events_in.labels(event.tenant).inc()
            stored.append(Stored(event, engine_time(event.ts_ms, item.received_ms, self.settings), item.received_ms))
        return stored, dead, statuses

    async def _store(self, batch: list[Inbound]) -> None:
        stored, dead, statuses = self._classify(batch)
        delay = 0.1
        while True:
            try:
                ids = await self.event_log.append(stored, dead, statuses)
                break
            except (RedisError, OSError) as exc:
                # Nothing is acked: the broker holds these messages until Redis is back.
                log.warning("event log unavailable (%s); retrying %d messages in %.1fs", exc, len(batch), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        for s, stream_id in zip(stored, ids, strict=True):
            if stream_id is None:
                self.metrics.events_duplicate.labels(s.event.tenant).inc()
            else:
                self.metrics.events_stored.labels(s.event.tenant).inc()
        for item in batch:
            self.link.ack(item)
