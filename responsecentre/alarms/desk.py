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
    PRIORITY_RANK,
    Alarm,
    AlarmState,
    Answer,
    Entry,
    Page,
    ReplyRejected,
    TransitionError,
    Trigger,
    accept,
    acknowledge,
    add_note,
    cancel_by_resident,
    clear,
    decline,
    dispatch,
    en_route,
    is_staff,
    join,
    join_incident,
    lead_incident,
    on_site,
    queue_key,
    raise_alarm,
    raise_in_incident,
    rechain,
    record_pages,
    rejected_entry,
    resolve,
    resolve_by,
    timeout,
)
from responsecentre.alarms.staffing import on_duty_in_zone, step_context
from responsecentre.alarms.view import alarm_view, integration_view
from responsecentre.directory import Directory
from responsecentre.escalation.audit import Repair, RepairReason, check
from responsecentre.escalation.chains import FALLBACK_CHAIN, Chain, ChainBook, choose_chain
from responsecentre.escalation.delivery import Delivery
from responsecentre.escalation.incidents import (
    GroupState,
    IncidentConfig,
    Join,
    Open,
    close_member,
    decide,
)
from responsecentre.escalation.incidents import close as close_incident
from responsecentre.escalation.people import StaffMember, StaffRole
from responsecentre.escalation.planner import AlarmRef, Plan, StepContext, people_for, plan, plan_dispatch
from responsecentre.escalation.runner import (
    Exhausted,
    Notify,
    NotifyDispatch,
    Paused,
    People,
    Schedule,
    Unschedule,
)
from responsecentre.faults import describe, is_outage
from responsecentre.metrics import Metrics
from responsecentre.store.keys import CAUSE_TTL_S, FEED_MAXLEN, KEYS, Keys
from responsecentre.store.records import feed_entry

log = logging.getLogger(__name__)

MAX_RETRIES = 100

__all__ = ["FALLBACK_CHAIN", "AlarmDesk", "AlarmNotFound", "DispatchRefused", "parse_timer_member", "timer_member"]

_alarm_decoder = msgspec.json.Decoder(Alarm)
_group_decoder = msgspec.json.Decoder(GroupState)
_entry_decoder = msgspec.json.Decoder(Entry)
_enc = msgspec.json.encode

# Outbox entry channels (the notifier, notifier.py, reads them).
DELIVERY = "delivery"  # a planned `Delivery` to one person over one channel
RECHECK = "recheck"  # the alarm changed: drop its deliveries that are no longer wanted
INTEGRATION = "integration"  # the alarm's state for MQTT integrations


class AlarmNotFound(LookupError):
    pass


class DispatchRefused(TransitionError):
    """An operator's dispatch the desk will not send (not on duty in the zone, say)."""


def timer_member(tenant: str, alarm_id: str, step: int, round_: int, turn: int = 0, epoch: int = 0) -> str:
    """The timer of one runner position. Every field of the position is in it, so firing
    (and removing) one timer can never touch the timer of a later position."""
    return f"{tenant}|{alarm_id}|{step}|{round_}|{turn}|{epoch}"


def parse_timer_member(member: str) -> tuple[str, str, int, int, int, int]:
    """(tenant, alarm, step, round, turn, epoch); members written before round robin have
    four fields and read as turn 0, epoch 0."""
    parts = member.split("|")
    if len(parts) == 4:
        parts += ["0", "0"]
    if len(parts) != 6:
        raise ValueError(f"not a timer member: {member[:120]!r}")
    tenant, alarm_id, step, round_, turn, epoch = parts
    return tenant, alarm_id, int(step), int(round_), int(turn), int(epoch)


def _closed_at(alarm: Alarm) -> int:
    return alarm.closed_ms or alarm.updated_ms


def _ref(alarm: Alarm) -> AlarmRef:
    return AlarmRef(alarm.id, alarm.tenant, alarm.kind, alarm.priority, alarm.home_id, alarm.zone, alarm.incident_id)


class AlarmDesk:
    def __init__(
        self,
        redis: aioredis.Redis,
        directory: Directory,
        chains: ChainBook | dict[str, Chain],
        metrics: Metrics,
        keys: Keys = KEYS,
        incidents: IncidentConfig | None = None,
    ) -> None:
        self.redis = redis
        self.directory = directory
        self.book = chains if isinstance(chains, ChainBook) else ChainBook(dict(chains))
        self.chains = self.book.chains
        self.metrics = metrics
        self.keys = keys
        self.incidents = incidents or IncidentConfig()
        # (tenant, zone, home, now), chain, roster, context: the last `context` answer; it
        # holds the roster it was made from, so an updated roster is never mistaken for it.
        self._last_context: tuple[tuple[str, str, str, int], Chain, object, StepContext] | None = None

    # -- the people and the chain for an alarm ---------------------------------------------

    def _timezone(self, tenant: str, home_id: str) -> str | None:
        home = self.directory.home(tenant, home_id)
        return home.timezone if home is not None else None

    def choose(self, tenant: str, home_id: str, requested: str, priority: str, kind: str, now_ms: int) -> Chain:
        """The chain an alarm runs: `select:` in chains.yaml by priority, kind and the
        home's local time, else the rule's own, else the console-only fallback."""
        return choose_chain(self.book, requested, priority, kind, now_ms, self._timezone(tenant, home_id))

    def context(self, alarm: Alarm, now_ms: int, chain: Chain | None = None) -> StepContext:
        return self._context_at(_ref(alarm), chain or alarm.escalation.chain, now_ms)

    def _context_at(self, ref: AlarmRef, chain: Chain, now_ms: int) -> StepContext:
        """The people around an alarm at `now_ms`. One change asks twice (the runner to
        freeze a step's people, the planner to plan it): the last answer is kept for that."""
        roster = self.directory.rosters.get(ref.tenant)  # replaced, not changed, on an update
        place = (ref.tenant, ref.zone, ref.home_id, now_ms)
        last = self._last_context
        if last is None or last[0] != place or last[1] != chain or last[2] is not roster:
            self._last_context = (place, chain, roster, step_context(self.directory, ref, chain, now_ms))
        return self._last_context[3]

    def _people(self, alarm: Alarm, now_ms: int, chain: Chain | None = None) -> People:
        return people_for(self.context(alarm, now_ms, chain))

    def dispatchable(self, alarm: Alarm, now_ms: int) -> list[tuple[StaffMember, StaffRole]]:
        """Whom an operator may dispatch to this alarm: on duty in its zone now."""
        return on_duty_in_zone(self.directory, alarm.tenant, alarm.zone, now_ms)

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

    async def alarms_by_id(self, tenant: str, ids: list[str]) -> list[Alarm]:
        if not ids:
            return []
        raws = await self.redis.mget([self.keys.alarm(tenant, i) for i in ids])
        return [_alarm_decoder.decode(r) for r in raws if r is not None]

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
                    members: list[tuple[Alarm, list[Entry], list[Any]]] = []
                    group: GroupState | None = None
                    if previous is not None and previous.is_open:
                        alarm, entries, actions = self._join(previous, trigger, now_ms)
                    else:
                        previous = None
                        alarm, entries, actions, group, members = await self._raise(pipe, tenant, trigger, now_ms)
                    pipe.multi()
                    if group is not None:
                        pipe.set(self.keys.incident_group(tenant, trigger.kind), _enc(group))
                    for member, member_entries, member_actions in members:
                        self._write(pipe, member, member_entries, member_actions, now_ms)
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
                if members:  # this raise opened an incident
                    self.metrics.incidents_opened.labels(alarm.kind).inc()
                    self.metrics.incident_members.labels(alarm.kind).inc(len(members) + 1)
                elif previous is None and alarm.incident_id:
                    self.metrics.incident_members.labels(alarm.kind).inc()
                return alarm
        raise RuntimeError(f"alarm for {tenant}/{field} kept changing; gave up after {MAX_RETRIES} tries")

    async def _raise(
        self, pipe: Any, tenant: str, trigger: Trigger, now_ms: int
    ) -> tuple[Alarm, list[Entry], list[Any], GroupState | None, list[tuple[Alarm, list[Entry], list[Any]]]]:
        """A new alarm: alone, or one of an incident (escalation.incidents): the Nth alarm
        of a kind within the window opens an incident whose one escalation is the oldest
        member still waiting (its chain goes on; the others' stop); later ones join it
        without chains of their own. Watches the kind's group state (and, on opening, the
        members) so a concurrent raise of the same kind retries."""
        t = trigger
        chain = self.choose(tenant, t.home_id, t.chain, t.priority, t.kind, now_ms)
        alarm_id = str(ULID())
        if self.incidents.rule(t.kind) is None:
            people = self._new_people(tenant, t, chain, now_ms)
            return (*raise_alarm(alarm_id, tenant, t, chain, now_ms, people), None, [])
        group_key = self.keys.incident_group(tenant, t.kind)
        await pipe.watch(group_key)
        raw = await pipe.get(group_key)
        group, decision = decide(
            _group_decoder.decode(raw) if raw is not None else None, alarm_id, t.kind, tenant, now_ms, self.incidents
        )
        if isinstance(decision, Join):
            return (*raise_in_incident(alarm_id, tenant, t, chain, now_ms, decision.incident_id), group, [])
        if not isinstance(decision, Open):
            people = self._new_people(tenant, t, chain, now_ms)
            return (*raise_alarm(alarm_id, tenant, t, chain, now_ms, people), group, [])
        # An incident opens: the earlier members are read under WATCH and rewritten with it.
        earlier: list[Alarm] = []
        for member_id in decision.members[:-1]:
            key = self.keys.alarm(tenant, member_id)
            await pipe.watch(key)
            found = await pipe.get(key)
            if found is not None:
                earlier.append(_alarm_decoder.decode(found))
        lead = next((a for a in earlier if a.is_open and a.state == AlarmState.RAISED), None)
        members: list[tuple[Alarm, list[Entry], list[Any]]] = []
        for member in earlier:
            if member is lead:
                entry = Entry(now_ms, "incident_lead", "system", {"incident": decision.incident_id, "reason": "opened"})
                marked = msgspec.structs.replace(member, incident_id=decision.incident_id, incident_lead=True)
                members.append((marked, [entry], []))
            else:
                members.append(join_incident(member, decision.incident_id, now_ms))
        if lead is not None:
            return (*raise_in_incident(alarm_id, tenant, t, chain, now_ms, decision.incident_id), group, members)
        # Everyone earlier is taken already: this one carries the incident's escalation.
        people = self._new_people(tenant, t, chain, now_ms)
        alarm, entries, actions = raise_alarm(alarm_id, tenant, t, chain, now_ms, people)
        alarm = msgspec.structs.replace(alarm, incident_id=decision.incident_id, incident_lead=True)
        return alarm, entries, actions, group, members

    async def member_closed(self, alarm: Alarm, now_ms: int) -> None:
        """After an incident member closed: take it off the incident (which closes with its
        last member), and if it carried the incident's escalation, hand that to the oldest
        member still waiting. Outside the member's own transaction: a crash in between is
        found and finished by the auditor (`repair_incidents`), and running this twice for
        one member is harmless (the second finds it off the incident already)."""
        if not alarm.incident_id or alarm.is_open:
            return
        remaining: tuple[str, ...] | None = None

        def take_off(group: GroupState) -> GroupState:
            nonlocal remaining
            incident = group.incident
            listed = incident is not None and incident.id == alarm.incident_id and alarm.id in incident.open
            group, _ = close_member(group, alarm.id, now_ms)
            if listed and alarm.incident_lead and group.incident is not None:
                remaining = group.incident.open
            return group

        await self._change_group(alarm.tenant, alarm.kind, take_off)
        if remaining is not None:
            await self._hand_over(alarm.tenant, alarm.incident_id, remaining, now_ms, "lead closed")

    async def _hand_over(
        self, tenant: str, incident_id: str, members: tuple[str, ...], now_ms: int, reason: str
    ) -> Alarm | None:
        """Give the incident's escalation to the oldest of `members` still waiting (raised,
        nobody on it), unless an open member leads it already. Returns the new lead."""
        alarms = await self.alarms_by_id(tenant, list(members))
        if any(a.is_open and a.incident_lead and a.incident_id == incident_id for a in alarms):
            return None
        successor = next((a for a in alarms if a.is_open and a.state == AlarmState.RAISED), None)
        if successor is None:
            return None

        def fn(a: Alarm) -> tuple[Alarm, list[Entry], list[Any]]:
            if a.incident_lead or not a.is_open or a.state != AlarmState.RAISED:
                return a, [], []  # someone handed it over meanwhile, or a person took it
            return lead_incident(a, incident_id, now_ms, self._people(a, now_ms), reason)

        led = await self._mutate(tenant, successor.id, fn, now_ms)
        return led if led.incident_lead else None

    async def repair_incidents(
        self, now_ms: int, grace_ms: int, open_alarms: list[Alarm] | None = None
    ) -> list[tuple[Alarm, RepairReason]]:
        """The auditor's check of every open incident: a member closed more than `grace_ms`
        ago but still listed open (the service died between its close and `member_closed`)
        is taken off, and an incident whose members are waiting with nobody leading its
        escalation (the lead closed longer than `grace_ms` ago and the hand-over was lost)
        gets the oldest waiting member as its lead. `open_alarms` (read by the caller
        anyway) saves reading the members again: only closed ones are read, and those only
        when something looks wrong. Returns each repair with its alarm."""
        still = {a.id: a for a in (await self.open_alarms() if open_alarms is None else open_alarms)}
        repairs: list[tuple[Alarm, RepairReason]] = []
        for group in await self.open_incidents():
            incident = group.incident
            if incident is None:
                continue
            tenant = group.tenant
            listed_closed = [m for m in incident.open if m not in still]
            for member in await self.alarms_by_id(tenant, listed_closed):
                if member.is_open or now_ms - _closed_at(member) < grace_ms:
                    continue  # raised after the open alarms were read, or a hand-over may be under way
                await self.member_closed(member, now_ms)
                repairs.append((member, RepairReason.INCIDENT_MEMBER))
            waiting = [still[m] for m in incident.open if m in still]
            if any(a.incident_lead for a in waiting) or not any(a.state == AlarmState.RAISED for a in waiting):
                continue
            closed = await self.alarms_by_id(tenant, [m for m in incident.members if m not in still])
            if any(a.incident_lead and now_ms - _closed_at(a) < grace_ms for a in closed):
                continue  # the lead closed a moment ago: its hand-over may be under way
            led = await self._hand_over(tenant, incident.id, tuple(a.id for a in waiting), now_ms, "lead lost")
            if led is not None:
                repairs.append((led, RepairReason.INCIDENT_LEAD))
        return repairs

    async def _change_group(
        self, tenant: str, kind: str, change: Callable[[GroupState], GroupState]
    ) -> GroupState | None:
        """Apply a pure change to the incidents state of (tenant, kind) in an optimistic
        transaction; None when there is no state to change."""
        group_key = self.keys.incident_group(tenant, kind)
        async with self.redis.pipeline(transaction=True) as pipe:
            for _ in range(MAX_RETRIES):
                try:
                    await pipe.watch(group_key)
                    raw = await pipe.get(group_key)
                    if raw is None:
                        await pipe.unwatch()
                        return None
                    group = change(_group_decoder.decode(raw))
                    pipe.multi()
                    pipe.set(group_key, _enc(group))
                    await pipe.execute()
                    return group
                except WatchError:
                    continue
        raise RuntimeError(f"incidents of {tenant}/{kind} kept changing; gave up after {MAX_RETRIES} tries")

    async def open_incidents(self, tenants: list[str] | None = None) -> list[GroupState]:
        """The open incident of every (tenant, kind) that has an incident rule."""
        out: list[GroupState] = []
        for tenant in self.directory.tenants if tenants is None else tenants:
            keys = [self.keys.incident_group(tenant, kind) for kind in self.incidents.rules]
            for raw in await self.redis.mget(keys) if keys else []:
                if raw is not None:
                    group = _group_decoder.decode(raw)
                    if group.incident is not None:
                        out.append(group)
        return out

    async def resolve_incident(
        self, tenant: str, incident_id: str, by: str, code: str, note: str, now_ms: int
    ) -> list[str]:
        """Close an incident as a whole: closed first (so no member takes over its
        escalation while the others are being resolved), then every member still open is
        resolved with the one closing code. Returns the members resolved."""
        groups = await self.open_incidents([tenant])
        group = next((g for g in groups if g.incident is not None and g.incident.id == incident_id), None)
        if group is None or group.incident is None:
            raise AlarmNotFound(incident_id)
        changed = await self._change_group(tenant, group.kind, lambda g: close_incident(g, incident_id, now_ms)[0])
        if changed is None:
            raise AlarmNotFound(incident_id)
        resolved: list[str] = []
        for member_id in group.incident.open:
            try:
                await self._mutate(tenant, member_id, lambda a: resolve(a, by, code, note, now_ms), now_ms)
            except (AlarmNotFound, TransitionError):
                continue  # closed meanwhile
            resolved.append(member_id)
        return resolved

    def _new_people(self, tenant: str, trigger: Trigger, chain: Chain, now_ms: int) -> People:
        ref = AlarmRef("", tenant, trigger.kind, trigger.priority, trigger.home_id, trigger.zone)
        return people_for(self._context_at(ref, chain, now_ms))

    def _join(self, alarm: Alarm, trigger: Trigger, now_ms: int) -> tuple[Alarm, list[Entry], list[Any]]:
        """A further trigger; one at a higher priority whose chain is another moves the
        alarm to that chain from its first step (the timeline says so)."""
        joined, entries = join(alarm, trigger, now_ms)
        if PRIORITY_RANK.get(joined.priority, 9) >= PRIORITY_RANK.get(alarm.priority, 9):
            return joined, entries, []
        requested = alarm.chain_requested or trigger.chain
        chain = self.choose(alarm.tenant, alarm.home_id, requested, joined.priority, alarm.kind, now_ms)
        moved, more, actions = rechain(joined, chain, now_ms, self._people(joined, now_ms, chain))
        return moved, entries + more, actions

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
                    if not alarm.is_open and alarm.incident_id:
                        await self.member_closed(alarm, now_ms)
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
                return decline(a, str(staff_id), by, page_id, now_ms, via, self._people(a, now_ms))
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
        tenant, alarm_id, step, round_, turn, epoch = parse_timer_member(member)

        def fn(a: Alarm) -> tuple[Alarm, list[Entry], list[Any]]:
            new, entries, actions = timeout(a, step, round_, now_ms, turn, epoch, self._people(a, now_ms))
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

    async def fire_timers(self, members: list[str], now_ms: int) -> list[Alarm | Exception | None]:
        """Carry out a batch of due timers in one transaction: one WATCH and one read for
        every alarm of the batch, one MULTI/EXEC (and so one AOF fsync) for all their
        effects. Ten thousand timers falling due together (a mass event, a restart after
        an outage) cost a few hundred round trips, not thirty thousand.

        Each member's result is its alarm as stored (None: the alarm is gone), or the
        exception its own member raised (unreadable), for the caller to retry later. If any
        alarm of the batch changed under the transaction, or the pure core failed on one of
        them, the batch is done again one timer at a time through `fire_timer`, so one
        acknowledgement or one bad record costs the batch its speed, never its effect."""
        results: list[Alarm | Exception | None] = []
        batch: list[tuple[int, str, str, tuple[str, str, int, int, int, int]]] = []
        for i, member in enumerate(members):
            try:
                position = parse_timer_member(member)
            except ValueError as exc:
                results.append(exc)
                continue
            results.append(None)
            batch.append((i, member, self.keys.alarm(position[0], position[1]), position))
        if not batch:
            return results
        keys = list(dict.fromkeys(key for _, _, key, _ in batch))
        changed: list[tuple[Alarm, Alarm, list[Any]]] = []
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(*keys)
                raws = await pipe.mget(keys)
                current: dict[str, Alarm | None] = {
                    key: None if raw is None else _alarm_decoder.decode(raw)
                    for key, raw in zip(keys, raws, strict=True)
                }
                pipe.multi()
                pipe.zrem(self.keys.timers(), *[member for _, member, _, _ in batch])
                for i, _, key, (_, _, step, round_, turn, epoch) in batch:
                    previous = current[key]
                    if previous is None:
                        continue
                    alarm, entries, actions = timeout(
                        previous, step, round_, now_ms, turn, epoch, self._people(previous, now_ms)
                    )
                    if alarm is not previous:
                        alarm = self._write(pipe, alarm, entries, actions, now_ms)
                        changed.append((alarm, previous, actions))
                    current[key] = alarm
                    results[i] = alarm
                await pipe.execute()
            except WatchError:
                return await self._fire_one_by_one(members, now_ms)
            except Exception as exc:
                if is_outage(exc):
                    raise
                log.warning("a batch of %d timers failed (%s); firing them one by one", len(batch), describe(exc))
                return await self._fire_one_by_one(members, now_ms)
        for alarm, previous, actions in changed:
            if actions:
                self.metrics.timer_lateness.observe(max(0, now_ms - (previous.escalation.due_ms or now_ms)) / 1000)
            await self._committed(alarm, previous, actions, now_ms)
        return results

    async def _fire_one_by_one(self, members: list[str], now_ms: int) -> list[Alarm | Exception | None]:
        results: list[Alarm | Exception | None] = []
        for member in members:
            try:
                results.append(await self.fire_timer(member, now_ms))
            except Exception as exc:
                if is_outage(exc):
                    raise
                results.append(exc)
        return results

    def timer_for(self, alarm: Alarm) -> str:
        """The timer member of the alarm's running position."""
        esc = alarm.escalation
        return timer_member(alarm.tenant, alarm.id, esc.step, esc.round, esc.turn, esc.epoch)

    async def dispatch(self, alarm_id: str, staff_id: str, by: str, now_ms: int) -> Alarm:
        """An operator pages `staff_id`, who must be on duty in the alarm's zone now."""
        tenant = await self.tenant_of(alarm_id)

        def fn(a: Alarm) -> tuple[Alarm, list[Entry], list[Any]]:
            if staff_id not in {m.staff_id for m, _ in self.dispatchable(a, now_ms)}:
                raise DispatchRefused(f"{staff_id} is not on duty in zone {a.zone or '-'} now")
            return dispatch(a, staff_id, by, now_ms)

        alarm = await self._mutate(tenant, alarm_id, fn, now_ms)
        self.metrics.dispatches.inc()
        return alarm

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
                await self._committed(alarm, previous, actions, now_ms)
                return alarm
        raise RuntimeError(f"alarm {alarm_id} kept changing; gave up after {MAX_RETRIES} tries")

    async def _committed(self, alarm: Alarm, previous: Alarm, actions: list[Any], now_ms: int) -> None:
        """What follows a change of an existing alarm once it is stored: its counts, and
        an incident member's close-out."""
        self._count(alarm, previous, actions)
        if previous.is_open and not alarm.is_open and alarm.incident_id:
            await self.member_closed(alarm, now_ms)

    # -- the write half of every transaction ----------------------------------------------

    def _write(self, pipe: Any, alarm: Alarm, entries: list[Entry], actions: list[Any], now_ms: int) -> Alarm:
        """Queue every write of one change; returns the alarm as stored (with its new pages)."""
        tenant = alarm.tenant
        pages: list[Page] = []
        unwanted = not alarm.is_open or alarm.state != AlarmState.RAISED
        context: StepContext | None = None
        for action in actions:
            if isinstance(action, Schedule):
                member = timer_member(tenant, alarm.id, action.step, action.round, action.turn, action.epoch)
                pipe.zadd(self.keys.timers(), {member: action.due_ms})
            elif isinstance(action, Unschedule):
                member = timer_member(tenant, alarm.id, action.step, action.round, action.turn, action.epoch)
                pipe.zrem(self.keys.timers(), member)
                unwanted = True
            elif isinstance(action, Paused):
                unwanted = True
            elif isinstance(action, Notify | NotifyDispatch):
                context = context or self.context(alarm, now_ms)
                if isinstance(action, Notify):
                    planned = plan(_ref(alarm), alarm.escalation.chain, action, context, now_ms)
                    position = (action.step, action.round, action.turn, action.epoch, 0)
                else:
                    planned = plan_dispatch(_ref(alarm), action, context, now_ms)
                    esc = alarm.escalation
                    position = (esc.step, esc.round, 0, esc.epoch, action.dispatch)
                more, sent = self._queue_plan(pipe, alarm, planned, position, now_ms)
                entries, pages = entries + more, pages + sent
        alarm = record_pages(alarm, pages)
        if unwanted and any(p.answer is None for p in alarm.pages):
            # Ahead of this change's own deliveries: the notifier re-checks the alarm's
            # deliveries in flight and drops those no longer wanted (retries included).
            pipe.xadd(self.keys.outbox(), {"channel": RECHECK, "tenant": tenant, "alarm": alarm.id})
        if not alarm.is_open:
            pipe.hdel(self.keys.open_alarms(tenant), f"{alarm.home_id}|{alarm.kind}")
        pipe.set(self.keys.alarm(tenant, alarm.id), _enc(alarm))
        if entries:
            pipe.rpush(self.keys.timeline(tenant, alarm.id), *[_enc(e) for e in entries])
        pipe.xadd(self.keys.feed(), feed_entry(_enc(alarm_view(alarm))), maxlen=FEED_MAXLEN, approximate=True)
        pipe.xadd(
            self.keys.outbox(),
            {"channel": INTEGRATION, "tenant": tenant, "alarm": alarm.id, "body": _enc(integration_view(alarm))},
        )
        return alarm

    def _queue_plan(
        self, pipe: Any, alarm: Alarm, planned: Plan, position: tuple[int, int, int, int, int], now_ms: int
    ) -> tuple[list[Entry], list[Page]]:
        """Store what the planner decided: one outbox entry per delivery, the pages to
        check replies against, and the timeline's `paged` and `roster_warning` lines."""
        step, round_, turn, epoch, number = position
        entries: list[Entry] = []
        pages: list[Page] = []
        for warning in planned.warnings:
            if warning.kind == "coverage":
                self.metrics.coverage_short.labels(warning.role).inc()
                detail = {"role": warning.role, "zone": warning.zone, "on_duty": warning.on_duty}
                entries.append(Entry(now_ms, "roster_warning", "system", {**detail, "minimum": warning.minimum}))
            else:
                detail = {"kind": str(warning.kind), "who": warning.recipient}
                entries.append(Entry(now_ms, "plan_warning", "system", detail))
        for delivery in planned.deliveries:
            pages.append(
                Page(
                    delivery.page_id,
                    delivery.recipient,
                    step,
                    round_,
                    now_ms,
                    turn=turn,
                    dispatched=number > 0,
                    epoch=epoch,
                    dispatch=number,
                )
            )
            pipe.xadd(self.keys.outbox(), _delivery_entry(delivery))
            detail: dict[str, Any] = {
                "recipient": delivery.recipient,
                "channel": str(delivery.channel),
                "address": delivery.address,
                "page": delivery.page_id,
                "step": step + 1,
            }
            if number:
                detail["dispatched"] = True
            entries.append(Entry(now_ms, "paged", "system", detail))
            if is_staff(delivery.recipient):
                # NX: the first page decides the order of a nurse's list; repeats do not move it.
                pipe.zadd(self.keys.staff_alarms(alarm.tenant, delivery.recipient), {alarm.id: now_ms}, nx=True)
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


def _delivery_entry(delivery: Delivery) -> dict[str, Any]:
    return {"channel": DELIVERY, "tenant": delivery.tenant, "alarm": delivery.alarm_id, "body": _enc(delivery)}
