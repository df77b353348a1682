"""The alarm desk: the thin shell that runs the pure alarm and chain functions against
Redis.

Every change of an alarm is one optimistic transaction (WATCH the alarm, compute with
the pure core, MULTI: write the record, append the timeline, move the timers, queue the
notifications in the outbox, publish to the console feed). Either all of it happens or
none of it, so a crash at any point leaves the alarm and its timers consistent, and the
notifier delivers from the outbox at least once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import WatchError
from ulid import ULID

from responsecentre.alarms.model import (
    Alarm,
    Answer,
    Entry,
    Page,
    ReplyRejected,
    Trigger,
    accept,
    acknowledge,
    add_note,
    cancel_by_resident,
    clear,
    decline,
    en_route,
    join,
    on_site,
    queue_key,
    raise_alarm,
    record_pages,
    rejected_entry,
    resolve,
    resolve_by,
    timeout,
)
from responsecentre.alarms.view import alarm_view, integration_view
from responsecentre.contract import replies_topic
from responsecentre.directory import Directory
from responsecentre.escalation.audit import Repair, RepairReason, check
from responsecentre.escalation.chains import Chain, Channel, Step, Target, TargetKind
from responsecentre.escalation.runner import Exhausted, Notify, Schedule, Unschedule
from responsecentre.metrics import Metrics
from responsecentre.store.keys import CAUSE_TTL_S, FEED_MAXLEN, KEYS, Keys
from responsecentre.store.records import feed_entry

log = logging.getLogger(__name__)

MAX_RETRIES = 100

# Used when a rule names a chain that does not exist: the centre always sees the alarm.
FALLBACK_CHAIN = Chain(
    "fallback",
    (Step((Target(TargetKind.CONSOLE),), (Channel.CONSOLE,), 60_000),),
    repeat=0,
)

_alarm_decoder = msgspec.json.Decoder(Alarm)
_entry_decoder = msgspec.json.Decoder(Entry)
_enc = msgspec.json.encode


class AlarmNotFound(LookupError):
    pass


def timer_member(tenant: str, alarm_id: str, step: int, round_: int) -> str:
    return f"{tenant}|{alarm_id}|{step}|{round_}"


def parse_timer_member(member: str) -> tuple[str, str, int, int]:
    tenant, alarm_id, step, round_ = member.split("|")
    return tenant, alarm_id, int(step), int(round_)


class AlarmDesk:
    def __init__(
        self,
        redis: aioredis.Redis,
        directory: Directory,
        chains: dict[str, Chain],
        metrics: Metrics,
        keys: Keys = KEYS,
    ) -> None:
        self.redis = redis
        self.directory = directory
        self.chains = chains
        self.metrics = metrics
        self.keys = keys

    # -- reads ---------------------------------------------------------------------------

    async def tenant_of(self, alarm_id: str) -> str:
        tenant = await self.redis.hget(self.keys.alarm_tenants(), alarm_id)
        if tenant is None:
            raise AlarmNotFound(alarm_id)
        return tenant.decode() if isinstance(tenant, bytes) else str(tenant)

    async def get(self, alarm_id: str) -> Alarm:
        tenant = await self.tenant_of(alarm_id)
        raw = await self.redis.get(self.keys.alarm(tenant, alarm_id))
        if raw is None:
            raise AlarmNotFound(alarm_id)
        return _alarm_decoder.decode(raw)

    async def timeline(self, alarm: Alarm) -> list[Entry]:
        raw = await self.redis.lrange(self.keys.timeline(alarm.tenant, alarm.id), 0, -1)
        return [_entry_decoder.decode(r) for r in raw]

    async def open_alarms(self, tenants: list[str] | None = None) -> list[Alarm]:
        alarms: list[Alarm] = []
        for tenant in self.directory.tenants if tenants is None else tenants:
            ids = await self.redis.hvals(self.keys.open_alarms(tenant))
            if ids:
                raws = await self.redis.mget([self.keys.alarm(tenant, i.decode()) for i in ids])
                alarms.extend(_alarm_decoder.decode(r) for r in raws if r is not None)
        alarms.sort(key=queue_key)
        return alarms

    async def count_open(self) -> int:
        """For the gauge on each scrape: the size of the open index, no records read."""
        return sum([await self.redis.hlen(self.keys.open_alarms(t)) for t in self.directory.tenants])

    async def recent_alarms(self, limit: int = 200, tenants: list[str] | None = None) -> list[Alarm]:
        alarms: list[Alarm] = []
        for tenant in self.directory.tenants if tenants is None else tenants:
            ids = await self.redis.zrevrange(self.keys.alarm_index(tenant), 0, limit - 1)
            if ids:
                raws = await self.redis.mget([self.keys.alarm(tenant, i.decode()) for i in ids])
                alarms.extend(_alarm_decoder.decode(r) for r in raws if r is not None)
        alarms.sort(key=lambda a: a.raised_ms, reverse=True)
        return alarms[:limit]

    # -- changes -------------------------------------------------------------------------

    async def _watch_open(
        self, pipe: Any, tenant: str, open_key: str, cause_key: str, field: str
    ) -> tuple[bool, Alarm | None]:
        """Start a decision's optimistic transaction: watch its cause and the open index,
        then the open alarm of (home, kind) if there is one. Returns (cause already
        applied, that alarm); a change to any of them by another writer retries the whole
        decision (WatchError), so two decisions never both think they raised it."""
        await pipe.watch(open_key, cause_key)
        if await pipe.exists(cause_key):
            await pipe.unwatch()
            return True, None
        existing = await pipe.hget(open_key, field)
        if existing is None:
            return False, None
        alarm_key = self.keys.alarm(tenant, existing.decode())
        await pipe.watch(alarm_key)
        raw = await pipe.get(alarm_key)
        return False, _alarm_decoder.decode(raw) if raw is not None else None

    async def apply_trigger(self, tenant: str, trigger: Trigger, now_ms: int) -> Alarm | None:
        """Raise a new alarm or join the open one of (home, kind). Idempotent by cause:
        replaying the event log after a crash applies each decision once."""
        open_key = self.keys.open_alarms(tenant)
        cause_key = self.keys.cause(tenant, trigger.cause)
        field = f"{trigger.home_id}|{trigger.kind}"
        async with self.redis.pipeline(transaction=True) as pipe:
            for _ in range(MAX_RETRIES):
                try:
                    seen, previous = await self._watch_open(pipe, tenant, open_key, cause_key, field)
                    if seen:
                        return None
                    if previous is not None and previous.is_open:
                        alarm, entries = join(previous, trigger, now_ms)
                        actions: list[Any] = []
                    else:
                        chain = self.chains.get(trigger.chain, FALLBACK_CHAIN)
                        alarm, entries, actions = raise_alarm(str(ULID()), tenant, trigger, chain, now_ms)
                        previous = None
                    pipe.multi()
                    if previous is None:
                        pipe.hset(open_key, field, alarm.id)
                        pipe.zadd(self.keys.alarm_index(tenant), {alarm.id: alarm.raised_ms})
                        pipe.hset(self.keys.alarm_tenants(), alarm.id, tenant)
                    pipe.set(cause_key, b"1", ex=CAUSE_TTL_S)
                    alarm = self._write(pipe, alarm, entries, actions, now_ms)
                    await pipe.execute()
                except WatchError:
                    continue
                self._count(alarm, previous, actions)
                self.metrics.triggers.labels(trigger.rule).inc()
                return alarm
        raise RuntimeError(f"alarm for {tenant}/{field} kept changing; gave up after {MAX_RETRIES} tries")

    async def apply_clear(self, tenant: str, decision: Trigger, now_ms: int) -> Alarm | None:
        """A rule's clear or the resident's cancel (`decision.action`) for the open alarm
        of (home, kind). Idempotent by cause like `apply_trigger`, and the cause is
        recorded even when there is no open alarm: a replay after a crash must not close
        an alarm raised after the clear was first applied.

        Returns the alarm as changed (closed, or noted and left open because a person has
        taken it), or None for a replayed cause or no open alarm.
        """
        open_key = self.keys.open_alarms(tenant)
        cause_key = self.keys.cause(tenant, decision.cause)
        field = f"{decision.home_id}|{decision.kind}"
        close = cancel_by_resident if decision.action == "cancel" else clear
        async with self.redis.pipeline(transaction=True) as pipe:
            for _ in range(MAX_RETRIES):
                try:
                    seen, previous = await self._watch_open(pipe, tenant, open_key, cause_key, field)
                    if seen:
                        return None
                    alarm: Alarm | None = None
                    entries: list[Entry] = []
                    actions: list[Any] = []
                    if previous is not None and previous.is_open:
                        alarm, entries, actions = close(previous, now_ms, decision)
                    pipe.multi()
                    pipe.set(cause_key, b"1", ex=CAUSE_TTL_S)
                    if alarm is not None and previous is not None and alarm is not previous:
                        alarm = self._write(pipe, alarm, entries, actions, now_ms)
                    await pipe.execute()
                except WatchError:
                    continue
                if alarm is None or previous is None or alarm is previous:
                    outcome = "no_open_alarm"
                    alarm = None
                else:
                    outcome = "kept_acknowledged" if alarm.is_open else "closed"
                    self._count(alarm, previous, actions)
                self.metrics.clears.labels(decision.action, outcome).inc()
                return alarm
        raise RuntimeError(f"alarm for {tenant}/{field} kept changing; gave up after {MAX_RETRIES} tries")

    async def acknowledge(self, alarm_id: str, by: str, now_ms: int) -> Alarm:
        tenant = await self.tenant_of(alarm_id)
        return await self._mutate(tenant, alarm_id, lambda a: acknowledge(a, by, now_ms), now_ms)

    async def resolve(self, alarm_id: str, by: str, code: str, note: str, now_ms: int) -> Alarm:
        tenant = await self.tenant_of(alarm_id)
        return await self._mutate(tenant, alarm_id, lambda a: resolve(a, by, code, note, now_ms), now_ms)

    async def note(self, alarm_id: str, by: str, text: str, now_ms: int) -> Alarm:
        def fn(a: Alarm) -> tuple[Alarm, list[Entry], list[Any]]:
            new, entries = add_note(a, by, text, now_ms)
            return new, entries, []

        tenant = await self.tenant_of(alarm_id)
        return await self._mutate(tenant, alarm_id, fn, now_ms)

    async def answer(
        self,
        alarm_id: str,
        staff_id: str | None,
        by: str,
        answer: Answer,
        now_ms: int,
        page_id: str | None = None,
        code: str = "",
        note: str = "",
        via: str = "http",
        tenant: str | None = None,
    ) -> Alarm:
        """A paged person's answer (or an operator's on her behalf: `staff_id` None, for
        en route, on site and resolve). `tenant`, when given, must be the alarm's: a
        handset's reply names its tenant in its topic. A reply the alarm cannot take
        raises ReplyRejected after its rejection is written to the timeline."""
        found = await self.tenant_of(alarm_id)
        if tenant is not None and found != tenant:
            raise AlarmNotFound(alarm_id)
        if answer in (Answer.ACCEPT, Answer.DECLINE) and staff_id is None:
            raise ReplyRejected("not_paged", "only a paged person can accept or decline; operators acknowledge")

        def fn(a: Alarm) -> tuple[Alarm, list[Entry], list[Any]]:
            if answer == Answer.ACCEPT:
                return accept(a, str(staff_id), by, page_id, now_ms, via)
            if answer == Answer.DECLINE:
                return decline(a, str(staff_id), by, page_id, now_ms, via)
            if answer == Answer.EN_ROUTE:
                return (*en_route(a, staff_id, by, now_ms, via), [])
            if answer == Answer.ON_SITE:
                return (*on_site(a, staff_id, by, now_ms, via), [])
            return resolve_by(a, staff_id, by, code, note, now_ms, via)

        try:
            alarm = await self._mutate(found, alarm_id, fn, now_ms)
        except ReplyRejected as rejection:
            entry = rejected_entry(staff_id or by, str(answer), rejection, now_ms, via)
            await self.redis.rpush(self.keys.timeline(found, alarm_id), _enc(entry))
            self.metrics.replies.labels(str(answer), rejection.code).inc()
            raise
        self.metrics.replies.labels(str(answer), "taken").inc()
        return alarm

    async def fire_timer(self, member: str, now_ms: int) -> Alarm | None:
        """Carry out a due escalation timer. The timer is removed in the same transaction
        that records its effect, so a crash in between leaves it to fire again, and the
        runner's fence makes a second firing a no-op."""
        tenant, alarm_id, step, round_ = parse_timer_member(member)

        def fn(a: Alarm) -> tuple[Alarm, list[Entry], list[Any]]:
            new, entries, actions = timeout(a, step, round_, now_ms)
            if actions:
                self.metrics.timer_lateness.observe(max(0, now_ms - (a.escalation.due_ms or now_ms)) / 1000)
            return new, entries, actions

        def remove_timer(pipe: Any) -> None:
            pipe.zrem(self.keys.timers(), member)

        try:
            return await self._mutate(tenant, alarm_id, fn, now_ms, also=remove_timer)
        except AlarmNotFound:
            await self.redis.zrem(self.keys.timers(), member)
            return None

    def timer_for(self, alarm: Alarm) -> str:
        """The timer member of the alarm's running position."""
        return timer_member(alarm.tenant, alarm.id, alarm.escalation.step, alarm.escalation.round)

    async def repair_timer(self, tenant: str, alarm_id: str, now_ms: int, grace_ms: int) -> tuple[Alarm, Repair] | None:
        """Put back a missing timer (or one due later than its step), or fire an overdue
        one, if the alarm still needs it: checked in a transaction on the alarm, so a
        timer the timer loop replaced a moment ago is not taken for a lost one."""
        key = self.keys.alarm(tenant, alarm_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            for _ in range(MAX_RETRIES):
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if raw is None:
                        await pipe.unwatch()
                        return None
                    alarm = _alarm_decoder.decode(raw)
                    member = self.timer_for(alarm)
                    repair = check(alarm.escalation, await pipe.zscore(self.keys.timers(), member), now_ms, grace_ms)
                    if repair is None or not alarm.is_open:
                        await pipe.unwatch()
                        return None
                    pipe.multi()
                    pipe.zadd(self.keys.timers(), {member: repair.due_ms})
                    await pipe.execute()
                except WatchError:
                    continue
                if repair.reason == RepairReason.LATE:
                    await self.fire_timer(member, now_ms)  # fenced: a no-op if the timer loop got there first
                return alarm, repair
        return None

    async def _mutate(
        self,
        tenant: str,
        alarm_id: str,
        fn: Callable[[Alarm], tuple[Alarm, list[Entry], list[Any]]],
        now_ms: int,
        also: Callable[[Any], None] | None = None,
    ) -> Alarm:
        """The optimistic transaction every change of an existing alarm goes through.
        `fn` is the pure change (it may raise TransitionError); `also` queues further
        writes that must commit with it. An unchanged alarm (a fenced-off timer) is not
        rewritten."""
        key = self.keys.alarm(tenant, alarm_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            for _ in range(MAX_RETRIES):
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if raw is None:
                        raise AlarmNotFound(alarm_id)
                    previous = _alarm_decoder.decode(raw)
                    alarm, entries, actions = fn(previous)
                    pipe.multi()
                    if also is not None:
                        also(pipe)
                    if alarm is not previous:
                        alarm = self._write(pipe, alarm, entries, actions, now_ms)
                    await pipe.execute()
                except WatchError:
                    continue
                self._count(alarm, previous, actions)
                return alarm
        raise RuntimeError(f"alarm {alarm_id} kept changing; gave up after {MAX_RETRIES} tries")

    # -- the write half of every transaction ----------------------------------------------

    def _write(self, pipe: Any, alarm: Alarm, entries: list[Entry], actions: list[Any], now_ms: int) -> Alarm:
        """Queue every write of one change; returns the alarm as stored (with its new pages)."""
        tenant = alarm.tenant
        pages: list[Page] = []
        for action in actions:
            if isinstance(action, Schedule):
                pipe.zadd(
                    self.keys.timers(), {timer_member(tenant, alarm.id, action.step, action.round): action.due_ms}
                )
            elif isinstance(action, Unschedule):
                pipe.zrem(self.keys.timers(), timer_member(tenant, alarm.id, action.step, action.round))
            elif isinstance(action, Notify):
                more, sent = self._page(pipe, alarm, action, now_ms)
                entries, pages = entries + more, pages + sent
        alarm = record_pages(alarm, pages)
        if not alarm.is_open:
            pipe.hdel(self.keys.open_alarms(tenant), f"{alarm.home_id}|{alarm.kind}")
        pipe.set(self.keys.alarm(tenant, alarm.id), _enc(alarm))
        if entries:
            pipe.rpush(self.keys.timeline(tenant, alarm.id), *[_enc(e) for e in entries])
        pipe.xadd(self.keys.feed(), feed_entry(_enc(alarm_view(alarm))), maxlen=FEED_MAXLEN, approximate=True)
        pipe.xadd(
            self.keys.outbox(),
            {"channel": "integration", "tenant": tenant, "alarm": alarm.id, "body": _enc(integration_view(alarm))},
        )
        return alarm

    def _page(self, pipe: Any, alarm: Alarm, action: Notify, now_ms: int) -> tuple[list[Entry], list[Page]]:
        """Resolve a step's targets to people on duty now and queue their pages; returns
        the timeline entries and the pages to keep on the alarm (replies are checked
        against them)."""
        step = alarm.escalation.chain.steps[action.step]
        entries: list[Entry] = []
        pages: list[Page] = []
        people: dict[str, str] = {}
        for target in step.targets:
            if target.kind == TargetKind.ROLE:
                found = self.directory.on_duty(alarm.tenant, target.value, alarm.zone, now_ms)
                coverage = self.directory.coverage(alarm.tenant, target.value, alarm.zone, now_ms)
                if coverage.short:  # fewer than the roster's minimum: not on every step
                    self.metrics.coverage_short.labels(target.value).inc()
                    entries.append(
                        Entry(
                            now_ms,
                            "roster_warning",
                            "system",
                            {
                                "role": target.value,
                                "zone": alarm.zone,
                                "on_duty": coverage.on_duty,
                                "minimum": coverage.minimum,
                            },
                        )
                    )
                people.update({s.staff_id: target.value for s in found})
            elif target.kind == TargetKind.STAFF:
                people[target.value] = "named"
        if Channel.HANDSET in step.channels:
            for staff_id in people:
                page_id = f"{alarm.id}.{action.step + 1}.{action.round}.{staff_id}"
                pages.append(Page(page_id, staff_id, action.step, action.round, now_ms))
                pipe.xadd(
                    self.keys.outbox(),
                    {
                        "channel": "mqtt",
                        "tenant": alarm.tenant,
                        "alarm": alarm.id,
                        "staff": staff_id,
                        "body": _enc(
                            {
                                "alarm_id": alarm.id,
                                "kind": alarm.kind,
                                "priority": alarm.priority,
                                "home_id": alarm.home_id,
                                "step": action.step + 1,
                                "ts_ms": now_ms,
                                "page_id": page_id,
                                "reply_topic": replies_topic(alarm.tenant, staff_id),
                            }
                        ),
                    },
                )
                entries.append(
                    Entry(now_ms, "paged", "system", {"staff": staff_id, "channel": "mqtt", "step": action.step + 1})
                )
                # NX: the first page decides the order of a nurse's list; repeats do not move it.
                pipe.zadd(self.keys.staff_alarms(alarm.tenant, staff_id), {alarm.id: now_ms}, nx=True)
        return entries, pages

    def _count(self, alarm: Alarm, previous: Alarm | None, actions: list[Any]) -> None:
        if previous is None:
            self.metrics.alarms_raised.labels(alarm.kind, alarm.priority).inc()
        elif previous.state != alarm.state:
            self.metrics.alarm_transitions.labels(str(alarm.state)).inc()
        for action in actions:
            if isinstance(action, Notify):
                self.metrics.escalation_steps.labels(alarm.escalation.chain.name, str(action.step + 1)).inc()
            elif isinstance(action, Exhausted):
                self.metrics.unhandled.labels(alarm.kind).inc()
