"""Ingest: broker inbox -> validate -> durable log -> PUBACK, in micro-batches.

The order is the guarantee: a message is acked only after its event (or its dead-letter
record) is in Redis. If Redis is down the batch is retried and nothing is acked, so the
broker keeps every message; if the service dies, the broker redelivers and the (device,
event id) key makes the second copy a no-op.

No message can stop this loop. A message that breaks the contract is dead-lettered with
its reason; one that makes our own code fail (a bug) is dead-lettered as `internal` with
the exception's class, and acked once that record is stored. Acking it matters as much
as catching it: an unacked poison message stays in the broker session and comes back
after every restart, a crash loop that stops the alarms of every home.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from responsecentre.clock import Clock, system_clock
from responsecentre.config import Settings
from responsecentre.contract import (
    Rejected,
    RejectReason,
    decode_event,
    decode_status,
    parse_status_topic,
)
from responsecentre.directory import Directory
from responsecentre.faults import Faults, describe, is_outage, reraise_if_stopping
from responsecentre.ingest.log import EventLog, StatusChange, Stored, dead_letter_record
from responsecentre.ingest.mqtt import BrokerLink, Inbound
from responsecentre.metrics import Metrics

STAGE = "ingest"

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
        self,
        link: BrokerLink,
        event_log: EventLog,
        directory: Directory,
        metrics: Metrics,
        settings: Settings,
        faults: Faults | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.link = link
        self.clock = clock
        self.event_log = event_log
        self.directory = directory
        self.metrics = metrics
        self.settings = settings
        self.faults = faults or Faults()

    async def run(self) -> None:
        while True:
            reraise_if_stopping()  # a stop that wait_for swallowed in _next_batch (see notifier.py)
            batch = await self._next_batch()
            try:
                await self._store(batch)
            except Exception as exc:  # the last line: per-message isolation failed too
                reraise_if_stopping()
                # Unacked, the batch comes back from the broker on the next connection.
                self.metrics.internal_errors.labels(STAGE).inc()
                self.faults.fault(STAGE, exc, self.clock())
                log.exception("ingest failed on a batch of %d; left unacked", len(batch))
                await asyncio.sleep(0.5)

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

    def _classify(self, batch: list[Inbound]) -> _Sorted:
        out = _Sorted()
        for item in batch:
            leaf = item.topic.rsplit("/", 1)[-1]
            self.metrics.mqtt_messages.labels(leaf if leaf in ("events", "status") else "other").inc()
            if leaf == "commands":  # centre -> device: our own publications, not input
                continue
            try:
                if leaf == "status":
                    out.statuses.append(self._status(item))
                    continue
                event = decode_event(item.topic, item.payload)
                self._known(event.tenant, event.device_id)
                entry = Stored(event, engine_time(event.ts_ms, item.received_ms, self.settings), item.received_ms)
            except Rejected as exc:
                self.metrics.events_rejected.labels(str(exc.reason)).inc()
                out.dead.append(
                    dead_letter_record(item.topic, item.payload, str(exc.reason), exc.detail, item.received_ms)
                )
                log.info("dead-lettered a message on %s: %s", item.topic[:120], exc.reason)
                continue
            except Exception as exc:  # a bug on this one message: isolate it, never the loop
                out.dead.append(self._internal_letter(item, exc))
                out.internal += 1
                continue
            self.metrics.events_in.labels(event.tenant).inc()
            out.stored.append(entry)
            out.sources.append(item)
        return out

    def _status(self, item: Inbound) -> StatusChange:
        """A retained status to store, or None to clear: an empty retained message is
        MQTT's delete, and the device's stored status goes with it. A change of `online`
        is also logged for the rule engine (log.py), at the status's engine time."""
        where = parse_status_topic(item.topic)
        status = decode_status(item.topic, item.payload) if item.payload else None
        self._known(where.tenant, where.device_id)
        self.metrics.statuses.inc()
        engine_ts = None
        if status is not None:  # a Last Will carries no ts: then it is the receive time
            device_ts = status.ts_ms if status.ts_ms is not None else item.received_ms
            engine_ts = engine_time(device_ts, item.received_ms, self.settings)
        return StatusChange(where.tenant, where.device_id, status, item.received_ms, engine_ts)

    def _count_changes(self) -> None:
        for change in self.event_log.logged_changes:
            online = "true" if change.status is not None and change.status.online else "false"
            self.metrics.status_changes.labels(change.tenant, online).inc()

    def _internal_letter(self, item: Inbound, exc: Exception) -> dict[str, object]:
        self.metrics.events_rejected.labels(str(RejectReason.INTERNAL)).inc()
        self.metrics.internal_errors.labels(STAGE).inc()
        self.faults.fault(STAGE, exc, item.received_ms)
        log.error("ingest failed on a message on %s (%s); dead-lettered", item.topic[:120], describe(exc))
        return dead_letter_record(item.topic, item.payload, str(RejectReason.INTERNAL), describe(exc), item.received_ms)

    async def _store(self, batch: list[Inbound]) -> None:
        sorted_ = self._classify(batch)
        try:
            ids = await self._append(sorted_.stored, sorted_.dead, sorted_.statuses)
            self._count_changes()
        except Exception as exc:  # not an outage (_append waits those out): something breaks the writer
            log.error("storing a batch of %d failed (%s); storing one by one", len(batch), describe(exc))
            ids = await self._append_one_by_one(sorted_)
        for s, stream_id in zip(sorted_.stored, ids, strict=True):
            if stream_id is None:
                self.metrics.events_duplicate.labels(s.event.tenant).inc()
            elif stream_id != _DEAD:
                self.metrics.events_stored.labels(s.event.tenant).inc()
        if sorted_.internal < len(batch):  # something got through: not failing on everything
            self.faults.ok(STAGE, self.clock())
        for item in batch:
            self.link.ack(item)

    async def _append(
        self,
        stored: list[Stored],
        dead: list[dict[str, object]],
        statuses: list[StatusChange],
    ) -> list[str | None]:
        """Append, retrying for as long as storage is out; nothing is acked meanwhile, so
        the broker holds these messages. Any other error is raised to the caller."""
        delay = 0.1
        while True:
            try:
                ids = await self.event_log.append(stored, dead, statuses)
                self.faults.recovered(STAGE)
                return ids
            except Exception as exc:
                reraise_if_stopping()
                if not is_outage(exc):
                    raise
                self.faults.outage(STAGE, exc)
                log.warning("event log unavailable (%s); retrying %d messages in %.1fs", exc, len(stored), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _append_one_by_one(self, sorted_: _Sorted) -> list[str | None]:
        """Find what breaks the writer: each record alone; an event that fails is
        dead-lettered as `internal` in its place, and the rest are stored as usual.
        (`_append` already turns a stop request into CancelledError.)"""
        ids: list[str | None] = []
        for stored, source in zip(sorted_.stored, sorted_.sources, strict=True):
            try:
                ids += await self._append([stored], [], [])
            except Exception as exc:
                ids.append(_DEAD)
                with contextlib.suppress(Exception):
                    await self._append([], [self._internal_letter(source, exc)], [])
        for what, records in (
            ("dead letter", [([], [d], []) for d in sorted_.dead]),
            ("device status", [([], [], [c]) for c in sorted_.statuses]),
        ):
            for args in records:
                try:
                    await self._append(*args)
                    self._count_changes()
                except Exception as exc:  # the last resort: counted and logged, then acked
                    self.metrics.internal_errors.labels(STAGE).inc()
                    log.error("could not store a %s (%s); dropped it", what, describe(exc))
        return ids


@dataclass(slots=True)
class _Sorted:
    """A batch sorted for storage; `sources[i]` is the message `stored[i]` came from."""

    stored: list[Stored] = field(default_factory=list)
    sources: list[Inbound] = field(default_factory=list)
    dead: list[dict[str, object]] = field(default_factory=list)
    statuses: list[StatusChange] = field(default_factory=list)
    internal: int = 0  # messages that failed on a bug of ours


_DEAD = "dead"  # an event that went to the dead-letter stream in the one-by-one pass
