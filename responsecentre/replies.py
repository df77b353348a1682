"""The reply desk: handsets' answers to their pages, over MQTT, into the alarm desk.

A nurse answers on rc/v1/{tenant}/staff/{staff_id}/replies (accept, decline, en_route,
on_site, resolve). The broker lets a handset write only its own topic, so the topic is
who she is; the payload says which alarm and page. Each reply is checked against the page
it answers (only the paged person, only once, only while that step is live: the pure
rules in `alarms.model`), and the centre answers on .../replies/outcome with `taken` or
the rejection and its reason. A rejection also goes on the alarm's timeline.

Like ingest, a reply is acked to the broker only after its effect is stored, on a
persistent session of its own (`rc-replies`): a reply sent while the centre is down or
Redis is out is kept by the broker and applied when both are back. A reply that breaks
the contract is answered, dead-lettered and acked; it never stops the loop.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from responsecentre.alarms.desk import AlarmDesk, AlarmNotFound
from responsecentre.alarms.model import Answer, ReplyRejected
from responsecentre.clock import Clock, system_clock
from responsecentre.contract import Rejected, Reply, decode_reply, encode_reply_outcome, reply_outcome_topic
from responsecentre.faults import Faults, describe, is_outage, reraise_if_stopping
from responsecentre.ingest.log import dead_letter_record
from responsecentre.ingest.mqtt import BrokerLink, Inbound, PublishLink
from responsecentre.metrics import Metrics
from responsecentre.store.keys import DEAD_LETTER_MAXLEN, KEYS, Keys

log = logging.getLogger(__name__)

STAGE = "replies"
OUTAGE_RETRY_S = 1.0


class ReplyDesk:
    def __init__(
        self,
        link: BrokerLink,
        publisher: PublishLink,
        desk: AlarmDesk,
        redis: aioredis.Redis,
        metrics: Metrics,
        faults: Faults | None = None,
        clock: Clock = system_clock,
        keys: Keys = KEYS,
    ) -> None:
        self.link = link
        self.publisher = publisher
        self.desk = desk
        self.redis = redis
        self.metrics = metrics
        self.faults = faults or Faults()
        self.clock = clock
        self.keys = keys

    async def run(self) -> None:
        while True:
            reraise_if_stopping()
            item = await self.link.inbox.get()
            self.link.taken(1)
            while True:  # one reply until it is applied (or answered as bad): none is skipped
                try:
                    await self.handle(item)
                    break
                except Exception as exc:
                    reraise_if_stopping()
                    if not is_outage(exc):
                        raise
                    log.warning("replies: storage unavailable (%s); retrying", describe(exc))
                    await asyncio.sleep(OUTAGE_RETRY_S)
            self.link.ack(item)

    async def handle(self, item: Inbound) -> None:
        """Apply one reply and answer it. Raises only on a storage outage (the caller
        retries the same reply); everything else is answered and returns."""
        now_ms = self.clock()
        try:
            reply = decode_reply(item.topic, item.payload)
        except Rejected as rejected:
            await self._bad(item, str(rejected.reason), rejected.detail, now_ms)
            return
        body = reply.body
        try:
            alarm = await self.desk.answer(
                body.alarm_id,
                reply.staff_id,
                f"staff:{reply.staff_id}",
                Answer(body.answer),
                now_ms,
                page_id=body.page_id,
                code=body.code or "",
                via="mqtt",
                tenant=reply.tenant,
            )
        except AlarmNotFound:
            self.metrics.replies.labels(body.answer, "unknown_alarm").inc()
            await self._answer(reply, "unknown_alarm", f"no alarm {body.alarm_id[:64]!r} in {reply.tenant}", now_ms)
            return
        except ReplyRejected as rejection:  # already on the timeline and counted by the desk
            await self._answer(reply, rejection.code, rejection.reason, now_ms)
            return
        except Exception as exc:
            reraise_if_stopping()
            if is_outage(exc):
                raise
            log.exception("replies: a reply from %s failed", reply.staff_id)
            self.metrics.internal_errors.labels(STAGE).inc()
            self.faults.fault(STAGE, exc, now_ms)
            await self._answer(reply, "error", "the centre could not apply this reply; call the centre", now_ms)
            return
        self.faults.ok(STAGE, now_ms)
        await self._answer(reply, "taken", f"{body.answer} recorded", now_ms, state=str(alarm.state))

    async def _answer(self, reply: Reply, outcome: str, reason: str, now_ms: int, state: str | None = None) -> None:
        body = reply.body
        payload = encode_reply_outcome(body.alarm_id, body.answer, outcome, reason, now_ms, body.reply_id, state)
        await self._publish(reply_outcome_topic(reply.tenant, reply.staff_id), payload)

    async def _bad(self, item: Inbound, reason: str, detail: str, now_ms: int) -> None:
        """A reply that breaks the contract: dead-lettered (without its payload: it may hold
        a note about the resident), counted, and answered when its topic names a person."""
        self.metrics.replies.labels("?", reason).inc()
        record = dead_letter_record(item.topic, b"", reason, detail, item.received_ms)
        record["size"] = len(item.payload)
        await self.redis.xadd(self.keys.dead_letters(), record, maxlen=DEAD_LETTER_MAXLEN, approximate=True)
        parts = item.topic.split("/")
        if reason != "bad_topic" and len(parts) == 6:
            payload = encode_reply_outcome(None, None, reason, detail[:300], now_ms)
            await self._publish(reply_outcome_topic(parts[2], parts[4]), payload)

    async def _publish(self, topic: str, payload: bytes) -> None:
        """The outcome is a courtesy to the handset; the timeline is the record. A broker
        that does not take it is logged and counted, and the reply still counts as applied."""
        try:
            await self.publisher.publish(topic, payload, qos=1)
        except Exception as exc:
            reraise_if_stopping()
            log.warning("replies: could not publish an outcome (%s)", describe(exc))
            self.metrics.notifications.labels("reply_outcome", "failed").inc()
