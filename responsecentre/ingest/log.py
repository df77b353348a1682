"""The durable event log: one Redis stream per tenant, plus the dead-letter stream.

Storing and de-duplicating is one Lua script per event (SET NX on the (device, id) key,
then XADD), so a redelivered event can never be stored twice, and a whole micro-batch
goes to Redis in one pipelined round trip.

A device's retained status goes to a hash (`/api/devices` reads it) and, when its
`online` flag changes, also into the event log as an internal `device.online` or
`device.offline` event, in the same script: the rule engine sees status in log order
(supervision raises `device_offline` on a Last Will), and a replay after a crash sees it
again. Comparing with the stored status makes the broker's redelivery of a retained
status (on every reconnect of ingest) a no-op, like the dedup key for events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import redis.asyncio as aioredis

from responsecentre.contract import DeviceStatus, Event, format_ts
from responsecentre.store.keys import DEAD_LETTER_MAXLEN, KEYS, SEEN_TTL_S, Keys
from responsecentre.store.records import EventRecord, StatusRecord

EVENT_LOG_MAXLEN = 1_000_000  # per tenant; the engine reads far behind only after an outage

_STORE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
end
return false
"""

# KEYS: the status hash, the event log; ARGV: device id, the status record, 1 if online
# else 0, the log's MAXLEN, then the internal event's stream fields. Returns the stream
# id of the internal event, or false when `online` did not change.
_STATUS = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local online = ARGV[3] == '1'
if old then
  local ok, prev = pcall(cjson.decode, old)
  if ok and type(prev) == 'table' and prev['online'] == online then
    return false
  end
end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, 5))
"""

DEAD_LETTER_SAMPLE = 1024  # bytes of a rejected payload kept for the integrator to see


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A device's retained status to store, or to clear when `status` is None."""

    tenant: str
    device_id: str
    status: DeviceStatus | None
    received_ms: int
    engine_ts_ms: int | None = None  # the internal event's time (engine_time); receive time if None

    def internal_event(self) -> EventRecord:
        """The `device.online`/`device.offline` log entry this change makes if `online`
        changed. Its id names the flag and the receive time: unique enough for a timeline,
        and no dedup key is needed (the script compares with the stored status)."""
        assert self.status is not None
        type_ = "device.online" if self.status.online else "device.offline"
        ts = self.engine_ts_ms if self.engine_ts_ms is not None else self.received_ms
        return EventRecord(
            device=self.device_id,
            id=f"{type_.split('.')[1]}@{format_ts(self.received_ms)}",
            type=type_,
            ts=ts,
            dts=self.status.ts_ms if self.status.ts_ms is not None else self.received_ms,
            recv=self.received_ms,
        )


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
        self._status = redis.register_script(_STATUS)
        # The status changes the last `append` logged as internal events (for the metric).
        self.logged_changes: list[StatusChange] = []

    async def append(
        self, stored: list[Stored], dead: list[dict[str, Any]], statuses: Sequence[StatusChange] = ()
    ) -> list[str | None]:
        """Store a batch; returns the stream id per event, None for a duplicate. The status
        changes that went into the log as internal events are in `logged_changes` after."""
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
                await self._status(
                    keys=[key, self.keys.events(change.tenant)],
                    args=[
                        change.device_id,
                        status_record.encode(),
                        1 if status.online else 0,
                        EVENT_LOG_MAXLEN,
                        *change.internal_event().fields(),
                    ],
                    client=pipe,
                )
            for letter in dead:
                pipe.xadd(self.keys.dead_letters(), letter, maxlen=DEAD_LETTER_MAXLEN, approximate=True)
            results = await pipe.execute()
        # Results: one per event, then per status change one (HDEL or the script).
        at = len(stored)
        logged: list[StatusChange] = []
        for change in statuses:
            if change.status is not None and results[at]:
                logged.append(change)
            at += 1
        self.logged_changes = logged
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
