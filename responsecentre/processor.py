"""The rule processor: event log -> engine -> alarm desk.

It reads the tenants' event-log streams from a cursor, runs each micro-batch through the
engine, and hands the triggers to the alarm desk. The engine's state is snapshotted to
Redis together with the cursor it belongs to; after a crash it restores the snapshot and
replays the log from that cursor. Replayed decisions carry the same cause ids, which the
desk applies once, so a crash neither loses a pending deadline nor raises a second alarm.

A decision is a raise (`desk.apply_trigger`), or a clear or a resident's cancel
(`desk.apply_clear`), by the engine's `action` column. The cause id of a clear or cancel
names its action, so it can never collide with the raise cause of the same rule.

A stored event that this stage fails on (a bug in decoding it, the engine refusing it,
the desk failing on its trigger) is parked in `rc:parked` with its log position, and the
cursor moves on: one such event must not hold up every later alarm of every home. A
storage outage is different: the batch is rolled back and retried, since it will succeed.

Suppression (docs/rules.md, "Suppression"): a raise whose home, device or kind is held
back (away, in hospital, maintenance, a planned silence) at the decision's time, or at the
time of the event that armed it, is dropped and counted, never applied; so a deadline
armed during a silence does not fire when the silence ends. Clears and cancels always
apply: closing is never harmful. The events themselves stay in the log; each that arrives
for a held-back home or device is counted once.

Conditions on `data` (`where`, docs/rules.md): the engine sees one bit per condition of
the pack in the batch's `cond` column. Only events of a type that some `where` rule reacts
to have their `data` JSON decoded and judged here; a field a rule needs that is missing or
not comparable makes the condition not hold, and is counted per rule
(`responsecentre_condition_missing_total`).

Hot reload (rules_admin.py): `request_reload` queues a new pack; the run loop swaps it into
the engine between two steps, never inside a batch, rebuilds the conditions, and writes a
snapshot at once. The engine keys each rule's state by its name and meaning, so the
snapshot restores into whichever of the two packs the service starts with after a crash.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np
import redis.asyncio as aioredis

from responsecentre.alarms.desk import AlarmDesk
from responsecentre.alarms.model import Trigger
from responsecentre.clock import Clock, system_clock
from responsecentre.config import Settings
from responsecentre.contract import TYPE_ID
from responsecentre.directory import Directory, Home
from responsecentre.engine import Engine, EventBatch, RulePack, Triggers
from responsecentre.engine.conditions import Conditions, compile_conditions
from responsecentre.engine.homes import HomeParams
from responsecentre.engine.tables import ACTIONS
from responsecentre.faults import Faults, describe, is_outage, reraise_if_stopping
from responsecentre.metrics import Metrics
from responsecentre.store.keys import KEYS, PARKED_MAXLEN, Keys
from responsecentre.store.records import EventRecord
from responsecentre.store.suppressions import SuppressionStore
from responsecentre.suppression import Suppressions

if TYPE_CHECKING:
    from responsecentre.engine.tables import ReloadReport

log = logging.getLogger(__name__)

STAGE = "rules"
SUPPRESSION_POLL_S = 0.1  # at most this often one GET of the suppression version

Row = tuple[str, str, dict[bytes, bytes]]  # tenant, log position, the stored fields


def stream_seq(stream_id: str) -> int:
    """A Redis stream id as one int64, the engine's opaque event `seq` (stable on replay)."""
    ms, _, n = stream_id.partition("-")
    return (int(ms) << 20) | (int(n) & 0xFFFFF)


class _Parsed:
    """One stored event, decoded for the engine."""

    __slots__ = ("cond", "device", "position", "record", "seq", "tenant", "type_id")

    def __init__(self, tenant: str, position: str, record: EventRecord, device: int) -> None:
        self.tenant, self.position, self.record, self.device = tenant, position, record, device
        self.type_id = TYPE_ID[record.type]
        self.seq = stream_seq(position)
        self.cond = 0  # the bits of the pack's conditions that hold (only for `where` types)


def data_object(raw: bytes | None) -> Mapping[str, Any] | None:
    """An event's stored `data` as an object, or None (absent, or not a JSON object):
    then every condition on it is "missing", never an error."""
    if not raw:
        return None
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, dict) else None


_Reload = tuple[RulePack, HomeParams, np.ndarray | None, Conditions, "asyncio.Future[ReloadReport]"]


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
        faults: Faults | None = None,
        clock: Clock = system_clock,
        suppressions: SuppressionStore | None = None,
    ) -> None:
        self.redis = redis
        self.faults = faults or Faults()
        self.clock = clock
        self.engine = engine
        self.directory = directory
        self.desk = desk
        self.metrics = metrics
        self.settings = settings
        self.keys = keys
        self.cursor: dict[str, str] = {t: "0-0" for t in directory.tenants}
        self.caught_up = asyncio.Event()  # set once the backlog is replayed (readyz)
        self._last_snapshot = 0.0
        self.suppression_store = suppressions or SuppressionStore(redis, directory, keys)
        self.suppressed: Suppressions = directory.suppression.merged()  # the YAML's until the first refresh
        self._suppression_version: int | None = None
        self._suppression_polled = 0.0
        self.conditions: Conditions = compile_conditions(engine.pack)
        self._reloads: deque[_Reload] = deque()
        # The last snapshot in memory too: after a Redis error mid-batch the engine rolls
        # back to it and replays, exactly as after a restart.
        self._rollback: tuple[bytes, dict[str, str]] = (engine.snapshot(), dict(self.cursor))

    async def restore(self) -> bool:
        raw = await self.redis.hgetall(self.keys.engine_snapshot())
        if not raw:
            return False
        try:
            report = self.engine.restore(raw[b"state"])
        except ValueError as exc:
            log.warning("engine snapshot does not fit the current rules (%s); replaying the whole log", exc)
            return False
        changed = [getattr(report, word, ()) for word in ("reset", "added", "removed")]
        if any(changed):
            # A snapshot of another pack: the rules that did not change keep their state.
            log.info(
                "engine snapshot of another pack: kept %d rules; reset %s, added %s, removed %s",
                len(getattr(report, "kept", ())), *(", ".join(names) or "none" for names in changed),
            )  # fmt: skip
        saved = msgspec.json.decode(raw[b"cursor"], type=dict[str, str])
        self.cursor.update({t: c for t, c in saved.items() if t in self.cursor})
        log.info("engine state restored; replaying the event log from %s", self.cursor)
        return True

    async def snapshot(self) -> None:
        state, cursor = self.engine.snapshot(), dict(self.cursor)
        self._rollback = (state, cursor)
        await self.redis.hset(
            self.keys.engine_snapshot(),
            mapping={"state": state, "cursor": msgspec.json.encode(cursor), "ts": self.clock()},
        )
        self._last_snapshot = time.monotonic()

    async def run(self) -> None:
        while True:
            try:
                await self.restore()
                break
            except Exception as exc:
                reraise_if_stopping()
                if not is_outage(exc):
                    log.error("rules: the engine snapshot cannot be read (%s); replaying the log", describe(exc))
                    break
                log.warning("rules: redis unavailable at start (%s); retrying", exc)
                await asyncio.sleep(1.0)
        self._rollback = (self.engine.snapshot(), dict(self.cursor))
        while True:
            # A stop that a wait_for inside redis-py swallowed (Python 3.11) would leave
            # this loop running for ever: honour a pending cancel every turn (notifier.py).
            reraise_if_stopping()
            try:
                await self.apply_reloads()
                await self.refresh_suppressions()
                n = await self.step(block_ms=self.settings.sweep_ms)
                if n < self.settings.batch_max:
                    self.caught_up.set()
                    now_ms = self.clock()
                    await self.sweep(now_ms)
                    self.metrics.engine_swept_until.set(now_ms / 1000)
                if time.monotonic() - self._last_snapshot >= self.settings.snapshot_s:
                    await self.snapshot()
            except Exception as exc:
                reraise_if_stopping()
                # Part of a batch may have been applied: roll the engine back to the last
                # snapshot and replay from its cursor; the desk applies each cause once.
                # A fault that is not an outage was isolated per event below; reaching
                # here means it is not about one event, so it is reported and retried.
                if is_outage(exc):
                    log.warning("rules: redis unavailable (%s); rolling back to the last snapshot", exc)
                else:
                    self.metrics.internal_errors.labels(STAGE).inc()
                    self.faults.fault(STAGE, exc, self.clock())
                    log.exception("rules: failed outside any one event; rolling back to the last snapshot")
                state, cursor = self._rollback
                self.engine.restore(state)
                self.cursor = dict(cursor)
                await asyncio.sleep(0.5)

    def request_reload(
        self, pack: RulePack, homes: HomeParams, supervision_ms: np.ndarray | None, conditions: Conditions
    ) -> asyncio.Future[ReloadReport]:
        """Queue a validated pack (rules_admin.py); the run loop swaps it in between two
        steps. The future has the engine's report, or the engine's exception."""
        future: asyncio.Future[ReloadReport] = asyncio.get_running_loop().create_future()
        self._reloads.append((pack, homes, supervision_ms, conditions, future))
        return future

    async def apply_reloads(self) -> None:
        """Swap in every queued pack, in order; then snapshot at once, so that the state in
        Redis is keyed for the pack in force if the process dies right after."""
        applied: list[tuple[asyncio.Future[ReloadReport], ReloadReport]] = []
        while self._reloads:
            pack, homes, supervision_ms, conditions, future = self._reloads.popleft()
            if future.done():  # the asker gave up (cancelled): nothing to apply
                continue
            try:
                report = self.engine.reload(pack, homes=homes, supervision_ms=supervision_ms)
            except Exception as exc:  # the engine refused it whole: the running pack stays
                log.error("rules: the engine refused the new pack (%s); the running pack stays", describe(exc))
                future.set_exception(exc)
                continue
            self.conditions = conditions
            applied.append((future, report))
        if not applied:
            return
        try:
            await self.snapshot()
        finally:  # applied either way; a failed snapshot is retried like any other
            for future, report in applied:
                if not future.done():
                    future.set_result(report)

    async def step(self, block_ms: int | None = None) -> int:
        """Read and process one micro-batch; returns the number of log entries read."""
        if not self.cursor:
            await asyncio.sleep((block_ms or 100) / 1000)
            return 0
        streams = {self.keys.events(t): c for t, c in self.cursor.items()}
        reply = await self.redis.xread(streams, count=self.settings.batch_max, block=block_ms)
        if not reply:
            return 0
        rows: list[Row] = []
        for stream, entries in reply:
            tenant = (stream.decode() if isinstance(stream, bytes) else stream).split(":")[1]
            for entry_id, fields in entries:
                rows.append((tenant, entry_id.decode() if isinstance(entry_id, bytes) else entry_id, fields))
        await self._process(rows)
        for tenant, entry_id, _ in rows:
            self.cursor[tenant] = entry_id
        self.faults.ok(STAGE, self.clock())
        return len(rows)

    async def park(self, tenant: str, position: str, exc: BaseException, cause: str = "") -> None:
        """Set a stored event (or its trigger) aside with its log position and why."""
        self.metrics.internal_errors.labels(STAGE).inc()
        self.faults.fault(STAGE, exc, self.clock())
        log.error("rules: parked event %s of %s (%s)", position, tenant, describe(exc))
        record = {"stage": STAGE, "tenant": tenant, "position": position, "detail": describe(exc), "ts": self.clock()}
        if cause:
            record["cause"] = cause
        await self.redis.xadd(self.keys.parked(), record, maxlen=PARKED_MAXLEN, approximate=True)

    async def _process(self, rows: list[Row]) -> None:
        kept: list[_Parsed] = []
        for row in rows:
            tenant, position, fields = row
            try:
                record = EventRecord.decode(fields)
                device = self.directory.device(tenant, record.device)
                if device is None or record.type not in TYPE_ID:
                    continue  # removed from the directory since it was stored
                parsed = _Parsed(tenant, position, record, device.index)
                if record.type in self.conditions.types:
                    parsed.cond = self._judge(record)
                kept.append(parsed)
            except Exception as exc:  # pure decoding: a bad entry, never an outage
                await self.park(tenant, position, exc)
        if not kept:
            return
        self._count_suppressed_events(kept)
        started = time.perf_counter()
        try:
            triggers = self.engine.process(_batch(kept))
        except Exception as exc:  # the engine is pure: no outage, no cancellation inside
            # The engine checks a batch before it changes any state, so a refused batch
            # is refused whole: find the event it refuses by running them one at a time.
            log.error("rules: the engine refused a batch of %d (%s); one by one", len(kept), describe(exc))
            for one in kept:
                try:
                    triggers = self.engine.process(_batch([one]))
                except Exception as exc_one:
                    await self.park(one.tenant, one.position, exc_one)
                    continue
                await self._apply(triggers, [one])
            return
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(kept))
        self.metrics.events_processed.inc(len(kept))
        await self._apply(triggers, kept)

    def _judge(self, record: EventRecord) -> int:
        """The condition bits of one event; each rule that could not judge it is counted."""
        bits, missing = self.conditions.evaluate(record.type, data_object(record.data))
        for rule in missing:
            self.metrics.condition_missing.labels(rule).inc()
        return bits

    async def refresh_suppressions(self, force: bool = False) -> None:
        """Reload the suppression index if the API changed something (one GET, rate-limited)."""
        if not force and time.monotonic() - self._suppression_polled < SUPPRESSION_POLL_S:
            return
        self._suppression_polled = time.monotonic()
        version = await self.suppression_store.version()
        if version != self._suppression_version or force:
            self.suppressed = await self.suppression_store.load(now_ms=self.clock())
            self._suppression_version = version
            self.metrics.suppression_version.set(version)

    def _count_suppressed_events(self, kept: Sequence[_Parsed]) -> None:
        """Each stored event of a home or device held back at its time is counted once."""
        index = self.suppressed
        if index.empty:
            return
        for e in kept:
            device = self.directory.device_list[e.device]
            why = index.reason(e.tenant, device.home_id, device.device_id, None, e.record.ts) or index.reason(
                e.tenant, device.home_id, device.device_id, None, e.seq >> 20
            )
            if why is not None:
                self.metrics.events_suppressed.labels(why).inc()

    def _suppression(self, tenant: str, trigger: Trigger, origin: int) -> str | None:
        """Why a raise is held back: at its own time, or when the event that armed it arrived."""
        index = self.suppressed
        if index.empty:
            return None
        return index.reason(tenant, trigger.home_id, trigger.device_id, trigger.kind, trigger.ts_ms) or index.reason(
            tenant, trigger.home_id, trigger.device_id, trigger.kind, origin >> 20
        )

    async def sweep(self, now_ms: int) -> None:
        await self.refresh_suppressions()
        due = self.engine.next_due()
        if due is None or due > now_ms:
            return
        await self._apply(self.engine.sweep(now_ms), [])

    async def _apply(self, triggers: Triggers, rows: Sequence[_Parsed]) -> None:
        rules = self.engine.pack.rules
        for i in range(len(triggers.rule)):
            event_index = int(triggers.event[i])
            event = rows[event_index] if event_index >= 0 else None
            home = self.directory.home_list[int(triggers.home[i])]
            trigger: Trigger | None = None
            try:
                trigger = self._trigger(triggers, i, rules, home, event)
                now_ms = self.clock()
                if trigger.action == "raise":
                    why = self._suppression(home.tenant, trigger, int(triggers.origin[i]))
                    if why is not None:
                        self.metrics.alarms_suppressed.labels(why, trigger.kind).inc()
                        log.debug("rules: %s held back (%s)", trigger.cause, why)
                        continue
                    alarm = await self.desk.apply_trigger(home.tenant, trigger, now_ms)
                else:
                    await self.desk.apply_clear(home.tenant, trigger, now_ms)
                    continue
            except Exception as exc:
                reraise_if_stopping()
                if is_outage(exc):
                    raise
                position = event.position if event is not None else ""
                await self.park(home.tenant, position, exc, trigger.cause if trigger else "")
                continue
            if alarm is not None and event is not None:
                self.metrics.event_to_alarm_seconds.observe(max(0, now_ms - event.record.recv) / 1000)

    def _trigger(self, triggers: Triggers, i: int, rules: Any, home: Home, event: _Parsed | None) -> Trigger:
        rule = rules[int(triggers.rule[i])]
        device_index = int(triggers.device[i])
        device = self.directory.device_list[device_index] if device_index >= 0 else None
        entity = device.device_id if device is not None else f"home:{home.home_id}"
        action = ACTIONS[int(triggers.action[i])]
        # A raise keeps the cause format of earlier versions, so that a replay across an
        # upgrade still recognises the raises applied before it.
        cause = f"{rule.name}:{entity}:{int(triggers.origin[i])}"
        if action != "raise":
            cause = f"{rule.name}:{action}:{entity}:{int(triggers.origin[i])}"
        return Trigger(
            cause=cause,
            rule=rule.name,
            kind=rule.alarm,
            priority=str(rule.priority),
            chain=rule.chain,
            home_id=home.home_id,
            zone=home.zone,
            device_id=device.device_id if device is not None else None,
            ts_ms=int(triggers.ts[i]),
            event_id=event.record.id if event is not None else None,
            event_type=event.record.type if event is not None else None,
            action=action,
        )


def _batch(events: Sequence[_Parsed]) -> EventBatch:
    return EventBatch(
        type_id=np.array([e.type_id for e in events], dtype=np.int32),
        device=np.array([e.device for e in events], dtype=np.int32),
        ts=np.array([e.record.ts for e in events], dtype=np.int64),
        value=np.array([e.record.value if e.record.value is not None else 0.0 for e in events], dtype=np.float64),
        has_value=np.array([e.record.value is not None for e in events], dtype=np.bool_),
        seq=np.array([e.seq for e in events], dtype=np.int64),
        cond=np.array([e.cond for e in events], dtype=np.int64),
    )
