"""The notifier: delivers what the alarm desk queued in the outbox stream.

The outbox is written in the same transaction as the alarm change and read here through
a consumer group; an entry is acked only once it is done with (delivered, dead-lettered,
handed to the next channel, or no longer wanted), so a crash in between delivers it again
(at least once).

Three kinds of entry:

- `delivery`: one planned page to one person over one channel (`escalation.Delivery`).
  Each runs in a task of its own, so a channel that hangs or is down never holds up the
  others. The task first checks that the page is still wanted (the alarm not taken,
  cleared or moved on: `alarms.model.delivery_wanted`), then tries the channel with
  retries (`deliveries.deliver_with_retries`), writing every try on the alarm's timeline
  (channel, address, outcome, duration). No receipt in time: the person's next contact
  is queued as a new outbox entry in the same transaction that acks this one, and when
  the contacts run out the delivery is dead-lettered.
- `recheck`: the alarm changed (an ack, a clear, an accept, a step moving on). Its
  deliveries in flight are checked again and the unwanted ones cancelled, retries and
  all; entries still waiting are dropped by the check at their start.
- `integration` (and `mqtt`, the pages of versions before the planner): sent in order by
  one worker, retried on a rescan of the pending list and parked after MAX_ATTEMPTS.

Nothing here can stop the loop: an entry that cannot be read is parked, a channel that
fails costs its own delivery, and Redis going away is waited out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Mapping
from typing import Protocol

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from responsecentre.alarms.desk import DELIVERY, INTEGRATION, RECHECK
from responsecentre.alarms.model import Alarm, Entry, delivery_wanted
from responsecentre.clock import Clock, system_clock
from responsecentre.contract import alarm_topic, page_topic
from responsecentre.deliveries.base import DeliveryError, Notifier
from responsecentre.deliveries.deadletter import dead_letter
from responsecentre.deliveries.deadletter import encode as encode_dead_letter
from responsecentre.deliveries.retry import RetryPolicy, deliver_with_retries
from responsecentre.escalation.delivery import Channel, Delivery, Outcome, Receipt
from responsecentre.escalation.planner import plan_fallback
from responsecentre.faults import Faults, describe, is_outage, reraise_if_stopping
from responsecentre.ingest.mqtt import PublishLink
from responsecentre.metrics import Metrics
from responsecentre.store.keys import DEAD_LETTER_MAXLEN, KEYS, OUTBOX_GROUP, PARKED_MAXLEN, Keys

log = logging.getLogger(__name__)

RETRY_S = 10.0
SEND_TIMEOUT_S = 10.0  # a channel that hangs is a failed attempt, not a stuck loop
MAX_ATTEMPTS = 6  # then an integration entry is parked as undeliverable
MAX_IN_FLIGHT = 1000  # deliveries under way at once; the reader waits beyond this
QUEUE_MAX = 10_000  # integration entries read but not yet sent
STAGE = "notifier"

_alarm_decoder = msgspec.json.Decoder(Alarm)
_delivery_decoder = msgspec.json.Decoder(Delivery)
_enc = msgspec.json.encode


class EntrySender(Protocol):
    """Sends one integration (or old-style page) entry; raises when it could not."""

    channel: str

    async def send(self, entry: dict[str, str]) -> None: ...


class MqttPager:
    """Pages queued by versions before the planner (channel `mqtt`): delivered on
    rc/v1/{tenant}/staff/{staff_id}/pages once the broker acked it."""

    channel = "mqtt"

    def __init__(self, link: PublishLink) -> None:
        self.link = link

    async def send(self, entry: dict[str, str]) -> None:
        await self.link.publish(page_topic(entry["tenant"], entry["staff"]), entry["body"].encode(), qos=1)


class IntegrationPublisher:
    """Every alarm state change on rc/v1/{tenant}/alarms/{alarm_id}, for integrations."""

    channel = INTEGRATION

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


class _Unconfigured:
    """A channel nobody configured: fails at once, so the person's next contact is used."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    async def send(self, delivery: Delivery) -> Receipt:
        raise DeliveryError(f"channel {self.channel} is not configured", retryable=False)


class Outbox:
    """The outbox consumer (see the module docstring). One per service."""

    def __init__(
        self,
        redis: aioredis.Redis,
        senders: list[EntrySender],
        metrics: Metrics,
        deliveries: Mapping[Channel, Notifier] | None = None,
        consumer: str = "notifier-1",
        keys: Keys = KEYS,
        faults: Faults | None = None,
        clock: Clock = system_clock,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.redis = redis
        self.by_channel = {s.channel: s for s in senders}
        self.deliveries: Mapping[Channel, Notifier] = deliveries or {}
        self.metrics = metrics
        self.consumer = consumer
        self.keys = keys
        self.faults = faults
        self.clock = clock
        self.policy = policy or RetryPolicy()
        self.rng = rng or random.Random()
        self.slots = asyncio.Semaphore(max_in_flight)
        self.attempts: dict[bytes, int] = {}
        # entry id -> (alarm id, the delivery once its task decoded it, the task)
        self.in_flight: dict[bytes, tuple[str, Delivery | None, asyncio.Task[None]]] = {}
        self.dropping: set[bytes] = set()
        self.queued: set[bytes] = set()
        self.queue: asyncio.Queue[tuple[bytes, dict[bytes, bytes]]] = asyncio.Queue(QUEUE_MAX)

    def notifier_for(self, channel: Channel) -> Notifier:
        found = self.deliveries.get(channel)
        return found if found is not None else _Unconfigured(channel)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._integrations(), name="notifier-integrations")
            await self._read(tg)

    # -- the reader ----------------------------------------------------------------------

    async def _read(self, tg: asyncio.TaskGroup) -> None:
        """An entry that failed stays pending in the group and is read again on the next
        scan of the pending list (at start, then every RETRY_S)."""
        last_scan = -RETRY_S  # after a restart, first deliver what was read but never acked
        while True:
            # Python 3.11's wait_for (used per send) can swallow a cancellation that lands just
            # as the send completes; the task is still marked as being cancelled, so honour it
            # here or the loop runs on and a stop never ends.
            reraise_if_stopping()
            scan = time.monotonic() - last_scan >= RETRY_S
            try:
                await ensure_group(self.redis, self.keys)
                reply = await self.redis.xreadgroup(
                    OUTBOX_GROUP, self.consumer, {self.keys.outbox(): "0" if scan else ">"}, count=200, block=500
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
                    await self._take(tg, entry_id, raw)
                except Exception as exc:  # storage out mid-entry: it stays pending, retried on a scan
                    reraise_if_stopping()
                    log.warning("notifier: could not take an outbox entry (%s); it will be retried", describe(exc))

    async def _take(self, tg: asyncio.TaskGroup, entry_id: bytes, raw: dict[bytes, bytes]) -> None:
        if entry_id in self.in_flight or entry_id in self.queued:
            return  # read again by a scan while still under way
        channel = raw.get(b"channel", b"?")
        if channel == DELIVERY.encode():
            await self.slots.acquire()
            task = tg.create_task(self._deliver(entry_id, raw), name=f"delivery-{entry_id.decode()}")
            self.in_flight[entry_id] = (raw.get(b"alarm", b"").decode("utf-8", "replace"), None, task)
        elif channel == RECHECK.encode():
            await self._recheck(raw)
            await self._done(entry_id)
        else:
            self.queued.add(entry_id)
            await self.queue.put((entry_id, raw))

    # -- deliveries ----------------------------------------------------------------------

    async def _deliver(self, entry_id: bytes, raw: dict[bytes, bytes]) -> None:
        try:
            try:
                delivery = _delivery_decoder.decode(raw[b"body"])
            except (KeyError, msgspec.DecodeError) as exc:
                await self._park(entry_id, DELIVERY, exc)
                return
            alarm_id, _, task = self.in_flight[entry_id]
            self.in_flight[entry_id] = (alarm_id, delivery, task)
            if not await self._wanted(delivery):
                await self._drop(entry_id, delivery)
                return
            receipt = await deliver_with_retries(
                self.notifier_for(delivery.channel),
                delivery,
                self.policy,
                self.rng,
                on_attempt=lambda r: self._attempted(delivery, r),
            )
            await self._settle(entry_id, delivery, receipt)
        except asyncio.CancelledError:
            if entry_id not in self.dropping:
                raise  # the service is stopping: the entry stays pending for the next start
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            dropped = self.in_flight[entry_id][1]
            if dropped is not None:
                with contextlib.suppress(Exception):
                    await self._drop(entry_id, dropped)
        except Exception as exc:  # Redis out mid-way: it stays pending and is tried again on a scan
            reraise_if_stopping()
            log.warning("notifier: delivery %s not finished (%s); will retry", entry_id.decode(), describe(exc))
        finally:
            self.in_flight.pop(entry_id, None)
            self.dropping.discard(entry_id)
            self.slots.release()

    async def _wanted(self, delivery: Delivery) -> bool:
        raw = await self.redis.get(self.keys.alarm(delivery.tenant, delivery.alarm_id))
        return raw is not None and delivery_wanted(_alarm_decoder.decode(raw), delivery)

    async def _recheck(self, raw: dict[bytes, bytes]) -> None:
        """Cancel the alarm's deliveries in flight that are no longer wanted. One whose
        task has not decoded it yet needs nothing: its own check at the start reads the
        alarm as this change left it."""
        alarm_id = raw.get(b"alarm", b"").decode("utf-8", "replace")
        mine = [(eid, d, t) for eid, (a, d, t) in self.in_flight.items() if a == alarm_id and d is not None]
        if not mine:
            return
        found = await self.redis.get(self.keys.alarm(raw.get(b"tenant", b"").decode("utf-8", "replace"), alarm_id))
        alarm = _alarm_decoder.decode(found) if found is not None else None
        for entry_id, delivery, task in mine:
            if alarm is None or not delivery_wanted(alarm, delivery):
                self.dropping.add(entry_id)
                task.cancel()

    async def _attempted(self, delivery: Delivery, receipt: Receipt) -> None:
        """Every try on the timeline and in the metrics."""
        self.metrics.delivery_attempts.labels(str(receipt.channel), str(receipt.outcome)).inc()
        self.metrics.delivery_seconds.labels(str(receipt.channel)).observe(receipt.duration_ms / 1000)
        detail: dict[str, object] = {
            "page": delivery.page_id,
            "recipient": delivery.recipient,
            "channel": str(receipt.channel),
            "address": receipt.address,
            "outcome": str(receipt.outcome),
            "duration_ms": receipt.duration_ms,
            "try": receipt.attempt + 1,
        }
        if receipt.detail:
            detail["detail"] = receipt.detail
        if receipt.outcome == Outcome.FELL_BACK and delivery.fallback:
            detail["fallback"] = str(delivery.fallback[0].channel)
        await self._timeline(delivery, Entry(self.clock(), "delivery", "system", detail))

    async def _settle(self, entry_id: bytes, delivery: Delivery, receipt: Receipt) -> None:
        if receipt.outcome == Outcome.FELL_BACK:
            nxt = plan_fallback(delivery, self.clock())
            if nxt is not None:  # the next contact, queued in the transaction that acks this one
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.xadd(self.keys.outbox(), _delivery_entry(nxt))
                    pipe.xack(self.keys.outbox(), OUTBOX_GROUP, entry_id)
                    pipe.xdel(self.keys.outbox(), entry_id)
                    await pipe.execute()
                return
        if receipt.outcome in (Outcome.DEAD, Outcome.FELL_BACK):
            letter = dead_letter(delivery, msgspec.structs.replace(receipt, outcome=Outcome.DEAD))
            await self.redis.xadd(
                self.keys.delivery_dead_letters(),
                {"alarm": delivery.alarm_id, "body": encode_dead_letter(letter)},
                maxlen=DEAD_LETTER_MAXLEN,
                approximate=True,
            )
            detail = {"page": delivery.page_id, "recipient": delivery.recipient, "channels_tried": delivery.attempt + 1}
            await self._timeline(delivery, Entry(self.clock(), "delivery_failed", "system", detail))
            self.metrics.notifications.labels(str(delivery.channel), "dead").inc()
        else:
            self.metrics.notifications.labels(str(delivery.channel), "delivered").inc()
            if self.faults is not None:
                self.faults.ok(STAGE, self.clock())
        await self._done(entry_id)

    async def _drop(self, entry_id: bytes, delivery: Delivery) -> None:
        """Not wanted any more: not sent (or its retries stopped), noted, acked."""
        self.metrics.delivery_attempts.labels(str(delivery.channel), str(Outcome.CANCELLED)).inc()
        detail = {
            "page": delivery.page_id,
            "recipient": delivery.recipient,
            "channel": str(delivery.channel),
            "address": delivery.address,
            "outcome": str(Outcome.CANCELLED),
        }
        await self._timeline(delivery, Entry(self.clock(), "delivery", "system", detail))
        await self._done(entry_id)

    async def _timeline(self, delivery: Delivery, entry: Entry) -> None:
        await self.redis.rpush(self.keys.timeline(delivery.tenant, delivery.alarm_id), _enc(entry))

    # -- integrations, in order ------------------------------------------------------------

    async def _integrations(self) -> None:
        while True:
            entry_id, raw = await self.queue.get()
            try:
                await self._send_entry(entry_id, raw)
            except Exception as exc:  # storage out mid-entry: it stays pending, retried on a scan
                reraise_if_stopping()
                log.warning("notifier: could not finish an outbox entry (%s); it will be retried", describe(exc))
            finally:
                self.queued.discard(entry_id)

    async def _send_entry(self, entry_id: bytes, raw: dict[bytes, bytes]) -> None:
        try:
            entry = {k.decode(): v.decode() for k, v in raw.items()}
        except UnicodeDecodeError as exc:
            await self._park(entry_id, "?", exc)
            return
        channel = entry.get("channel", "?")
        sender = self.by_channel.get(channel)
        if sender is None:
            log.error("outbox entry for unknown channel %r dropped", channel)
            self.metrics.notifications.labels(channel, "no_channel").inc()
        else:
            try:
                await asyncio.wait_for(sender.send(entry), SEND_TIMEOUT_S)
            except Exception as exc:  # a failing channel must not stop the others
                reraise_if_stopping()
                self.metrics.notifications.labels(channel, "failed").inc()
                self.attempts[entry_id] = self.attempts.get(entry_id, 0) + 1
                if self.attempts[entry_id] < MAX_ATTEMPTS:
                    log.warning("notifier %s failed (%s); will retry", channel, describe(exc))
                    return
                await self._park(entry_id, channel, exc)
                self.attempts.pop(entry_id, None)
                return
            self.attempts.pop(entry_id, None)
            self.metrics.notifications.labels(channel, "delivered").inc()
            if self.faults is not None:
                self.faults.ok(STAGE, self.clock())
        await self._done(entry_id)

    # -- bookkeeping -----------------------------------------------------------------------

    async def _park(self, entry_id: bytes, channel: str, exc: BaseException) -> None:
        """Set an entry aside for good: recorded with why, counted, then acked."""
        log.error("notifier: parked outbox entry %s for %s (%s)", entry_id.decode(), channel, describe(exc))
        self.metrics.notifications.labels(channel, "parked").inc()
        self.metrics.internal_errors.labels(STAGE).inc()
        if self.faults is not None:
            self.faults.fault(STAGE, exc, self.clock())
        record = {"stage": STAGE, "position": entry_id, "channel": channel, "detail": describe(exc)}
        await self.redis.xadd(self.keys.parked(), record, maxlen=PARKED_MAXLEN, approximate=True)
        await self._done(entry_id)

    async def _done(self, entry_id: bytes) -> None:
        await self.redis.xack(self.keys.outbox(), OUTBOX_GROUP, entry_id)
        await self.redis.xdel(self.keys.outbox(), entry_id)


def _delivery_entry(delivery: Delivery) -> dict[str, bytes | str]:
    return {"channel": DELIVERY, "tenant": delivery.tenant, "alarm": delivery.alarm_id, "body": _enc(delivery)}


async def run_notifiers(
    redis: aioredis.Redis,
    notifiers: list[EntrySender],
    metrics: Metrics,
    consumer: str = "notifier-1",
    keys: Keys = KEYS,
    faults: Faults | None = None,
    clock: Clock = system_clock,
    deliveries: Mapping[Channel, Notifier] | None = None,
    policy: RetryPolicy | None = None,
) -> None:
    """Run the outbox consumer until cancelled."""
    await Outbox(redis, notifiers, metrics, deliveries, consumer, keys, faults, clock, policy).run()
