"""The alarm and its life cycle, pure: functions take `now` and return the new alarm
plus the timeline entries to append. The shell (`alarms.desk`) stores them.

One open alarm per (home, kind): a further trigger joins the open alarm's timeline
instead of raising a second alarm, so a resident pressing the button five times gives
the operator one alarm with five presses on it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec

from responsecentre.escalation.chains import Chain
from responsecentre.escalation.runner import Escalation, Exhausted, Notify, Stop, Timeout, advance, start


class AlarmState(StrEnum):
    RAISED = "raised"  # waiting for someone to take it
    ACKNOWLEDGED = "acknowledged"  # a person has taken it; the chain has stopped
    ON_SITE = "on_site"  # a nurse is with the resident
    RESOLVED = "resolved"  # closed with a closing code
    CANCELLED = "cancelled"  # closed because the cause went away (e.g. the resident cancelled)


OPEN_STATES = frozenset({AlarmState.RAISED, AlarmState.ACKNOWLEDGED, AlarmState.ON_SITE})

_ALLOWED: dict[AlarmState, frozenset[AlarmState]] = {
    AlarmState.RAISED: frozenset(
        {AlarmState.ACKNOWLEDGED, AlarmState.ON_SITE, AlarmState.RESOLVED, AlarmState.CANCELLED}
    ),
    AlarmState.ACKNOWLEDGED: frozenset({AlarmState.ON_SITE, AlarmState.RESOLVED, AlarmState.CANCELLED}),
    AlarmState.ON_SITE: frozenset({AlarmState.RESOLVED, AlarmState.CANCELLED}),
    AlarmState.RESOLVED: frozenset(),
    AlarmState.CANCELLED: frozenset(),
}

# Closing codes an operator or nurse picks when resolving; statistics group by them.
CLOSING_CODES: dict[str, str] = {
    "assisted": "Resident assisted",
    "visit_no_action": "Visited, no action needed",
    "resolved_by_phone": "Resolved by phone, no visit",
    "ambulance": "Ambulance called",
    "false_alarm": "False alarm",
    "resident_cancelled": "Cancelled by the resident",
    "technical_fixed": "Technical fault fixed",
}

# Closing codes the system sets itself, never offered to a person resolving an alarm: a
# separate map so that the console's and the API's list of codes (CLOSING_CODES) stays
# what a person may pick, while statistics still find a label for every closed alarm.
SYSTEM_CLOSING_CODES: dict[str, str] = {
    "auto_cleared": "Cleared automatically: the condition went away",
    "cancelled_by_resident": "Cancelled by the resident on the device",
}

PRIORITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}


class TransitionError(ValueError):
    """An action that the alarm's state does not allow (e.g. ack a resolved alarm)."""


class Entry(msgspec.Struct, frozen=True):
    """One line of an alarm's timeline: what happened, when, who did it, and why."""

    ts_ms: int
    # raised | trigger | notified | escalated | unhandled | acknowledged | resolved | note |
    # cleared | cancelled (closed by a rule) | clear_ignored | cancel_ignored (left open)
    what: str
    by: str  # "system", a rule name or a user
    detail: dict[str, Any] = {}


class Trigger(msgspec.Struct, frozen=True):
    """A rule's decision about a home's alarm of `kind` (from the engine): `action` is
    "raise" (the home needs a human), "clear" (the condition went away) or "cancel" (the
    resident took the call back)."""

    cause: str  # unique id of this decision; replaying it is a no-op
    rule: str
    kind: str
    priority: str
    chain: str
    home_id: str
    zone: str
    device_id: str | None
    ts_ms: int
    event_id: str | None = None
    event_type: str | None = None
    action: str = "raise"


class Alarm(msgspec.Struct, frozen=True):
    id: str
    tenant: str
    home_id: str
    zone: str
    kind: str
    priority: str
    rule: str
    state: AlarmState
    raised_ms: int
    updated_ms: int
    escalation: Escalation
    triggers: int = 1
    unhandled: bool = False
    acknowledged_ms: int | None = None
    acknowledged_by: str | None = None
    closed_ms: int | None = None
    closed_by: str | None = None
    closing_code: str | None = None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


def _transition(alarm: Alarm, to: AlarmState) -> None:
    if to not in _ALLOWED[alarm.state]:
        raise TransitionError(f"alarm {alarm.id} is {alarm.state}; it cannot become {to}")


def _escalation_entries(alarm: Alarm, actions: list[Any], now_ms: int) -> tuple[Alarm, list[Entry]]:
    entries: list[Entry] = []
    for action in actions:
        if isinstance(action, Notify):
            step = alarm.escalation.chain.steps[action.step]
            what = "notified" if (action.step, action.round) == (0, 0) else "escalated"
            entries.append(
                Entry(
                    now_ms,
                    what,
                    "system",
                    {
                        "step": action.step + 1,
                        "round": action.round,
                        "targets": [f"{t.kind}:{t.value}" if t.value else str(t.kind) for t in step.targets],
                        "channels": [str(c) for c in step.channels],
                        "ack_within_s": step.ack_within_ms / 1000,
                    },
                )
            )
        elif isinstance(action, Exhausted):
            alarm = msgspec.structs.replace(alarm, unhandled=True)
            entries.append(Entry(now_ms, "unhandled", "system", {"chain": alarm.escalation.chain.name}))
    return alarm, entries


def raise_alarm(
    alarm_id: str, tenant: str, trigger: Trigger, chain: Chain, now_ms: int
) -> tuple[Alarm, list[Entry], list[Any]]:
    """A new alarm; returns the escalation actions for the shell to carry out."""
    escalation, actions = start(chain, now_ms)
    alarm = Alarm(
        id=alarm_id,
        tenant=tenant,
        home_id=trigger.home_id,
        zone=trigger.zone,
        kind=trigger.kind,
        priority=trigger.priority,
        rule=trigger.rule,
        state=AlarmState.RAISED,
        raised_ms=now_ms,
        updated_ms=now_ms,
        escalation=escalation,
    )
    entries = [Entry(now_ms, "raised", trigger.rule, _trigger_detail(trigger))]
    alarm, more = _escalation_entries(alarm, actions, now_ms)
    return alarm, entries + more, actions


def _trigger_detail(trigger: Trigger) -> dict[str, Any]:
    return {
        "device": trigger.device_id,
        "event": trigger.event_id,
        "type": trigger.event_type,
        "event_ts_ms": trigger.ts_ms,
        "priority": trigger.priority,
    }


def join(alarm: Alarm, trigger: Trigger, now_ms: int) -> tuple[Alarm, list[Entry]]:
    """A further trigger for an open alarm of the same (home, kind). A more urgent
    trigger raises the alarm's priority; it never lowers it."""
    priority = alarm.priority
    if PRIORITY_RANK.get(trigger.priority, 9) < PRIORITY_RANK.get(priority, 9):
        priority = trigger.priority
    new = msgspec.structs.replace(alarm, triggers=alarm.triggers + 1, priority=priority, updated_ms=now_ms)
    return new, [Entry(now_ms, "trigger", trigger.rule, _trigger_detail(trigger))]


def timeout(alarm: Alarm, step: int, round_: int, now_ms: int) -> tuple[Alarm, list[Entry], list[Any]]:
    if not alarm.is_open:
        return alarm, [], []
    escalation, actions = advance(alarm.escalation, Timeout(step, round_), now_ms)
    if not actions:
        return alarm, [], []
    alarm = msgspec.structs.replace(alarm, escalation=escalation, updated_ms=now_ms)
    alarm, entries = _escalation_entries(alarm, actions, now_ms)
    return alarm, entries, actions


def acknowledge(alarm: Alarm, by: str, now_ms: int) -> tuple[Alarm, list[Entry], list[Any]]:
    _transition(alarm, AlarmState.ACKNOWLEDGED)
    escalation, actions = advance(alarm.escalation, Stop("acknowledged"), now_ms)
    new = msgspec.structs.replace(
        alarm,
        state=AlarmState.ACKNOWLEDGED,
        escalation=escalation,
        acknowledged_ms=now_ms,
        acknowledged_by=by,
        updated_ms=now_ms,
    )
    waited = (now_ms - alarm.raised_ms) / 1000
    return new, [Entry(now_ms, "acknowledged", by, {"waited_s": waited, "step": alarm.escalation.step + 1})], actions


def resolve(alarm: Alarm, by: str, code: str, note: str, now_ms: int) -> tuple[Alarm, list[Entry], list[Any]]:
    if code not in CLOSING_CODES:
        raise TransitionError(f"unknown closing code {code!r}; use one of {', '.join(CLOSING_CODES)}")
    _transition(alarm, AlarmState.RESOLVED)
    escalation, actions = advance(alarm.escalation, Stop("resolved"), now_ms)
    new = msgspec.structs.replace(
        alarm,
        state=AlarmState.RESOLVED,
        escalation=escalation,
        closed_ms=now_ms,
        closed_by=by,
        closing_code=code,
        updated_ms=now_ms,
        acknowledged_ms=alarm.acknowledged_ms or now_ms,
        acknowledged_by=alarm.acknowledged_by or by,
    )
    detail: dict[str, Any] = {"code": code}
    if note:
        detail["note"] = note
    return new, [Entry(now_ms, "resolved", by, detail)], actions


def clear(
    alarm: Alarm, now_ms: int, cause: Trigger, code: str = "auto_cleared"
) -> tuple[Alarm, list[Entry], list[Any]]:
    """A rule says the alarm's cause went away. An alarm nobody has taken yet closes
    (CANCELLED with `code`) and its chain stops; one that a person has acknowledged is
    theirs to close, so it stays open and the clear is only noted on its timeline: the
    nurse on the way must not find the alarm gone behind their back."""
    return _close_by_rule(alarm, now_ms, cause, code, "cleared", "clear_ignored")


def cancel_by_resident(alarm: Alarm, now_ms: int, cause: Trigger) -> tuple[Alarm, list[Entry], list[Any]]:
    """The resident cancelled from the device within the window: as `clear`, with the
    closing code `cancelled_by_resident` and the timeline entry `cancelled`."""
    return _close_by_rule(alarm, now_ms, cause, "cancelled_by_resident", "cancelled", "cancel_ignored")


def _close_by_rule(
    alarm: Alarm, now_ms: int, cause: Trigger, code: str, closed: str, ignored: str
) -> tuple[Alarm, list[Entry], list[Any]]:
    if code not in SYSTEM_CLOSING_CODES:
        raise TransitionError(f"unknown system closing code {code!r}; use one of {', '.join(SYSTEM_CLOSING_CODES)}")
    detail = {**_trigger_detail(cause), "rule": cause.rule}
    del detail["priority"]
    if not alarm.is_open:
        return alarm, [], []  # already closed: nothing to do, nothing to note
    if alarm.state != AlarmState.RAISED:
        who = alarm.acknowledged_by or "staff"
        state = "on site" if alarm.state == AlarmState.ON_SITE else "acknowledged"
        detail["reason"] = f"{state}: acknowledged by {who}; left open"
        return msgspec.structs.replace(alarm, updated_ms=now_ms), [Entry(now_ms, ignored, cause.rule, detail)], []
    escalation, actions = advance(alarm.escalation, Stop(closed), now_ms)
    new = msgspec.structs.replace(
        alarm,
        state=AlarmState.CANCELLED,
        escalation=escalation,
        closed_ms=now_ms,
        closed_by=cause.rule,
        closing_code=code,
        updated_ms=now_ms,
    )
    detail["code"] = code
    return new, [Entry(now_ms, closed, cause.rule, detail)], actions


def add_note(alarm: Alarm, by: str, text: str, now_ms: int) -> tuple[Alarm, list[Entry]]:
    return msgspec.structs.replace(alarm, updated_ms=now_ms), [Entry(now_ms, "note", by, {"text": text})]


def queue_key(alarm: Alarm) -> tuple[int, int, int]:
    """The console's order: UNHANDLED first, then priority, then longest waiting."""
    return (0 if alarm.unhandled else 1, PRIORITY_RANK.get(alarm.priority, 9), alarm.raised_ms)
