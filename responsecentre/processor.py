"""The rule processor: event log -> engine -> alarm desk.

It reads the tenants' event-log streams from a cursor, runs each micro-batch through the
engine, and hands the triggers to the alarm desk. The engine's state is snapshotted to
Redis together with the cursor it belongs to; after a crash it restores the snapshot and
replays the log from that cursor. Replayed decisions carry the same cause ids, which the
desk applies once, so a crash neither loses a pending deadline nor raises a second alarm.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec
import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from responsecentre.alarms.desk import AlarmDesk
from responsecentre.alarms.model import Trigger
from responsecentre.config import Settings
from responsecentre.contract import TYPE_ID
from responsecentre.directory import Directory
from responsecentre.engine import Engine, EventBatch, Triggers
from responsecentre.metrics import Metrics
from responsecentre.store.keys import KEYS, Keys

log = logging.getLogger(__name__)


def stream_seq(stream_id: str) -> int:
    """A Redis stream id as one int64, the engine's opaque event `seq` (stable on replay)."""
    ms, _, n = stream_id.partition("-")
    return (int(ms) << 20) | (int(n) & 0xFFFFF)


class RuleProcessor:
    def __init__(
        self,
        redis: aioredis.Redis,
        engine: Engine,
        directory: Directory,
        desk: AlarmDesk,
        metrics: Metrics,
        settings: Settings,
        keys: Keys = KEYS,
    ) -> None:
        self.redis = redis
        self.engine = engine
        self.directory = directory
        self.desk = desk
        self.metrics = metrics
        self.settings = settings
        self.keys = keys
        self.cursor: dict[str, str] = {t: "0-0" for t in directory.tenants}
        self.caught_up = asyncio.Event()  # set once the backlog is replayed (readyz)
        self._last_snapshot = 0.0
        # The last snapshot in memory too: after a Redis error mid-batch the engine rolls
        # back to it and replays, exactly as after a restart.
        self._rollback: tuple[bytes, dict[str, str]] = (engine.snapshot(), dict(self.cursor))

    async def restore(self) -> bool:
        raw = await self.redis.hgetall(self.keys.engine_snapshot())
        if not raw:
            return False
        try:
            self.engine.restore(raw[b"state"])
        except ValueError as exc:
            log.warning("engine snapshot does not fit the current rules (%s); replaying the whole log", exc)
            return False
        saved = msgspec.json.decode(raw[b"cursor"], type=dict[str, str])
        self.cursor.update({t: c for t, c in saved.items() if t in self.cursor})
        log.info("engine state restored; replaying the event log from %s", self.cursor)
        return True

    async def snapshot(self) -> None:
        state, cursor = self.engine.snapshot(), dict(self.cursor)
        self._rollback = (state, cursor)
        await self.redis.hset(
            self.keys.engine_snapshot(),
            mapping={"state": state, "cursor": msgspec.json.encode(cursor), "ts": int(time.time() * 1000)},
        )
        self._last_snapshot = time.monotonic()

    async def run(self) -> None:
        while True:
            try:
                await self.restore()
                break
            except (RedisError, OSError) as exc:
                log.warning("rules: redis unavailable at start (%s); retrying", exc)
                await asyncio.sleep(1.0)
        self._rollback = (self.engine.snapshot(), dict(self.cursor))
        while True:
            try:
                n = await self.step(block_ms=self.settings.sweep_ms)
                if n < self.settings.batch_max:
                    self.caught_up.set()
                    await self.sweep(int(time.time() * 1000))
                if time.monotonic() - self._last_snapshot >= self.settings.snapshot_s:
                    await self.snapshot()
            except (RedisError, OSError) as exc:
                # Part of a batch may have been applied: roll the engine back to the last
                # snapshot and replay from its cursor; the desk applies each cause once.
                log.warning("rules: redis unavailable (%s); rolling back to the last snapshot", exc)
                state, cursor = self._rollback
                self.engine.restore(state)
                self.cursor = dict(cursor)
                await asyncio.sleep(0.5)

    async def step(self, block_ms: int | None = None) -> int:
        """Read and process one micro-batch; returns the number of log entries read."""
        if not self.cursor:
            await asyncio.sleep((block_ms or 100) / 1000)
            return 0
        streams = {self.keys.events(t): c for t, c in self.cursor.items()}
        reply = await self.redis.xread(streams, count=self.settings.batch_max, block=block_ms)
        if not reply:
            return 0
        rows: list[tuple[str, str, dict[bytes, bytes]]] = []
        for stream, entries in reply:
            tenant = (stream.decode() if isinstance(stream, bytes) else stream).split(":")[1]
            for entry_id, fields in entries:
                rows.append((tenant, entry_id.decode() if isinstance(entry_id, bytes) else entry_id, fields))
        await self._process(rows)
        for tenant, entry_id, _ in rows:
            self.cursor[tenant] = entry_id
        return len(rows)

    async def _process(self, rows: list[tuple[str, str, dict[bytes, bytes]]]) -> None:
        kept: list[tuple[str, str, dict[bytes, bytes]]] = []
        devices: list[int] = []
        for tenant, entry_id, fields in rows:
            device = self.directory.device(tenant, fields[b"device"].decode())
            if device is None or fields[b"type"].decode() not in TYPE_ID:
                continue  # removed from the directory since it was stored
            kept.append((tenant, entry_id, fields))
            devices.append(device.index)
        if not kept:
            return
        n = len(kept)
        values = [f.get(b"value") for _, _, f in kept]
        batch = EventBatch(
            type_id=np.array([TYPE_ID[f[b"type"].decode()] for _, _, f in kept], dtype=np.int32),
            device=np.array(devices, dtype=np.int32),
            ts=np.array([int(f[b"ts"]) for _, _, f in kept], dtype=np.int64),
            value=np.array([float(v) if v is not None else 0.0 for v in values], dtype=np.float64),
            has_value=np.array([v is not None for v in values], dtype=np.bool_),
            seq=np.array([stream_seq(eid) for _, eid, _ in kept], dtype=np.int64),
        )
        started = time.perf_counter()
        triggers = self.engine.process(batch)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(n)
        self.metrics.events_processed.inc(n)
        await self._apply(triggers, kept)

    async def sweep(self, now_ms: int) -> None:
        due = self.engine.next_due()
        if due is None or due > now_ms:
            return
        await self._apply(self.engine.sweep(now_ms), [])

    async def _apply(self, triggers: Triggers, rows: list[tuple[str, str, dict[bytes, bytes]]]) -> None:
        rules = self.engine.pack.rules
        for i in range(len(triggers.rule)):
            rule = rules[int(triggers.rule[i])]
            home = self.directory.home_list[int(triggers.home[i])]
            device_index = int(triggers.device[i])
            device = self.directory.device_list[device_index] if device_index >= 0 else None
            entity = device.device_id if device is not None else f"home:{home.home_id}"
            event_index = int(triggers.event[i])
            fields: dict[bytes, Any] = rows[event_index][2] if event_index >= 0 else {}
            trigger = Trigger(
                cause=f"{rule.name}:{entity}:{int(triggers.origin[i])}",
                rule=rule.name,
                kind=rule.alarm,
                priority=str(rule.priority),
                chain=rule.chain,
                home_id=home.home_id,
                zone=home.zone,
                device_id=device.device_id if device is not None else None,
                ts_ms=int(triggers.ts[i]),
                event_id=fields[b"id"].decode() if fields else None,
                event_type=fields[b"type"].decode() if fields else None,
            )
            now_ms = int(time.time() * 1000)
            alarm = await self.desk.apply_trigger(home.tenant, trigger, now_ms)
            if alarm is not None and fields:
                self.metrics.event_to_alarm_seconds.observe(max(0, now_ms - int(fields[b"recv"])) / 1000)
