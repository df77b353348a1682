"""The durable event log: one Redis stream per tenant, plus the dead-letter stream.

Storing and de-duplicating is one Lua script per event (SET NX on the (device, id) key,
then XADD), so a redelivered event can never be stored twice, and a whole micro-batch
goes to Redis in one pipelined round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import redis.asyncio as aioredis

from responsecentre.contract import DeviceStatus, Event
from responsecentre.store.keys import DEAD_LETTER_MAXLEN, KEYS, SEEN_TTL_S, Keys
from responsecentre.store.records import EventRecord, StatusRecord

EVENT_LOG_MAXLEN = 1_000_000  # per tenant; the engine reads far behind only after an outage

_STORE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
end
return false
"""

DEAD_LETTER_SAMPLE = 1024  # bytes of a rejected payload kept for the integrator to see


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A device's retained status to store, or to clear when `status` is None."""

    tenant: str
    device_id: str
    status: DeviceStatus | None
    received_ms: int


@dataclass(frozen=True, slots=True)
class Stored:
    event: Event
    engine_ts_ms: int
    received_ms: int


class EventLog:
    def __init__(self, redis: aioredis.Redis, keys: Keys = KEYS) -> None:
        self.redis = redis
        self.keys = keys
        self._store = redis.register_script(_STORE)

    async def append(
        self, stored: list[Stored], dead: list[dict[str, Any]], statuses: Sequence[StatusChange] = ()
    ) -> list[str | None]:
        """Store a batch; returns the stream id per event, None for a duplicate."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for s in stored:
                e = s.event
                record = EventRecord(
                    device=e.device_id,
                    id=e.id,
                    type=e.type,
                    ts=s.engine_ts_ms,
                    dts=e.ts_ms,
                    recv=s.received_ms,
                    value=e.value,
                    data=msgspec.json.encode(e.data) if e.data else None,
                )
                await self._store(
                    keys=[self.keys.seen(e.tenant, e.device_id, e.id), self.keys.events(e.tenant)],
                    args=[SEEN_TTL_S, EVENT_LOG_MAXLEN, *record.fields()],
                    client=pipe,
                )
            for change in statuses:
                key = self.keys.device_status(change.tenant)
                if change.status is None:
                    pipe.hdel(key, change.device_id)
                    continue
                status = change.status
                status_record = StatusRecord(status.online, status.battery, status.ts_ms, change.received_ms)
                pipe.hset(key, change.device_id, status_record.encode())
            for letter in dead:
                pipe.xadd(self.keys.dead_letters(), letter, maxlen=DEAD_LETTER_MAXLEN, approximate=True)
            results = await pipe.execute()
        return [r.decode() if isinstance(r, bytes) else r for r in results[: len(stored)]]


def _text(value: str, limit: int) -> str:
    """Bounded and always encodable: a dead letter must store whatever it describes."""
    return value[:limit].encode("utf-8", "replace").decode("utf-8")


def dead_letter_record(topic: str, payload: bytes, reason: str, detail: str, received_ms: int) -> dict[str, Any]:
    return {
        "topic": _text(topic, 512),
        "reason": reason,
        "detail": _text(detail, 500),
        "size": len(payload),
        "sample": payload[:DEAD_LETTER_SAMPLE],
        "recv": received_ms,
    }
