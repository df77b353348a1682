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
from responsecentre.escalation.delivery import Delivery
from responsecentre.escalation.runner import (
    Decline,
    Dispatch,
    DispatchAccepted,
    DispatchDeclined,
    DispatchReleased,
    DispatchStatus,
    Escalation,
    Exhausted,
    Notify,
    Paused,
    People,
    Rechain,
    Rechained,
    Resumed,
    Skipped,
    Start,
    Stop,
    Timeout,
    advance,
    dispatch_of,
    start,
)


class AlarmState(StrEnum):
    RAISED = "raised"  # waiting for someone to take it
    ACKNOWLEDGED = "acknowledged"  # a person has taken it (an operator's ack, a nurse's accept); the chain has stopped
    EN_ROUTE = "en_route"  # the nurse who accepted is on the way
    ON_SITE = "on_site"  # a nurse is with the resident
    RESOLVED = "resolved"  # closed with a closing code
    CANCELLED = "cancelled"  # closed because the cause went away (e.g. the resident cancelled)


OPEN_STATES = frozenset({AlarmState.RAISED, AlarmState.ACKNOWLEDGED, AlarmState.EN_ROUTE, AlarmState.ON_SITE})

_ALLOWED: dict[AlarmState, frozenset[AlarmState]] = {
    AlarmState.RAISED: frozenset(
        {AlarmState.ACKNOWLEDGED, AlarmState.ON_SITE, AlarmState.RESOLVED, AlarmState.CANCELLED}
    ),
    AlarmState.ACKNOWLEDGED: frozenset(
        {AlarmState.EN_ROUTE, AlarmState.ON_SITE, AlarmState.RESOLVED, AlarmState.CANCELLED}
    ),
    AlarmState.EN_ROUTE: frozenset({AlarmState.ON_SITE, AlarmState.RESOLVED, AlarmState.CANCELLED}),
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


class Answer(StrEnum):
    """What a paged person says back, over the handset's reply topic or the API alike."""

    ACCEPT = "accept"  # I take it: the chain stops, the alarm is mine
    DECLINE = "decline"  # not me: the chain moves on at once
    EN_ROUTE = "en_route"  # on my way (only the person who accepted)
    ON_SITE = "on_site"  # with the resident (only the person who accepted)
    RESOLVE = "resolve"  # done, with a closing code and a note (only the person who accepted)


class Page(msgspec.Struct, frozen=True, omit_defaults=True):
    """One page to one person, kept on the alarm so a reply can be checked against it:
    only the paged person, only once, only while its step is live."""

    page_id: str
    staff_id: str
    step: int  # 0-based step index of the chain, as the runner counts
    round: int
    ts_ms: int
    turn: int = 0  # the position within a round-robin step
    dispatched: bool = False  # an operator's dispatch, outside the chain
    epoch: int = 0  # the runner's epoch when it was sent (a chain move or a resume starts a new one)
    dispatch: int = 0  # the dispatch's number (1, 2, ...) for an operator's dispatch
    answer: Answer | None = None  # accept or decline, once
    answered_ms: int | None = None


class ReplyRejected(TransitionError):
    """A reply the alarm cannot take, with a reason a nurse can read on her handset.
    `code` is stable for machines (not_paged, already_answered,
    already_taken, not_live, not_yours, closed, bad_state)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


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
    accepted_by: str | None = None  # the staff id of the nurse who accepted (she may read the key safe)
    en_route_ms: int | None = None
    on_site_ms: int | None = None
    pages: tuple[Page, ...] = ()  # everyone told, staff and others ("relative:0", "webhook:1")
    chain_requested: str = ""  # the chain the rule asked for: a priority jump chooses again from it
    incident_id: str = ""  # one of an incident's members (escalation.incidents)
    incident_lead: bool = False  # the member whose chain is the incident's one escalation

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
            what = "notified" if (action.step, action.round, action.turn) == (0, 0, 0) else "escalated"
            detail: dict[str, Any] = {
                "step": action.step + 1,
                "round": action.round,
                "targets": [f"{t.kind}:{t.value}" if t.value else str(t.kind) for t in step.targets],
                "channels": [str(c) for c in step.channels],
                "ack_within_s": (alarm.escalation.due_ms - now_ms) / 1000
                if alarm.escalation.due_ms is not None
                else step.ack_within_ms / 1000,
            }
            if step.notify != "all":
                detail["notify"] = str(step.notify)
                detail["turn"] = action.turn + 1
            entries.append(Entry(now_ms, what, "system", detail))
        elif isinstance(action, Exhausted):
            alarm = msgspec.structs.replace(alarm, unhandled=True)
            entries.append(Entry(now_ms, "unhandled", "system", {"chain": alarm.escalation.chain.name}))
        elif isinstance(action, Skipped):
            detail = {"step": action.step + 1, "round": action.round, "reason": "nobody on duty to tell"}
            entries.append(Entry(now_ms, "step_skipped", "system", detail))
        elif isinstance(action, Rechained):
            detail = {
                "from_chain": action.from_chain,
                "to_chain": action.to_chain,
                "from_step": action.from_step + 1,
                "priority": alarm.priority,
            }
            entries.append(Entry(now_ms, "rechained", "system", detail))
        elif isinstance(action, Paused):
            detail = {"staff": action.staff_id, "step": action.step + 1, "round": action.round}
            entries.append(Entry(now_ms, "chain_paused", "system", detail))
        elif isinstance(action, Resumed):
            detail = {"staff": action.staff_id, "step": action.step + 1, "round": action.round}
            entries.append(Entry(now_ms, "chain_resumed", "system", detail))
    return alarm, entries


def raise_alarm(
    alarm_id: str, tenant: str, trigger: Trigger, chain: Chain, now_ms: int, people: People | None = None
) -> tuple[Alarm, list[Entry], list[Any]]:
    """A new alarm; returns the escalation actions for the shell to carry out. `people`
    freezes each step's recipients when it is entered (`planner.people_for`)."""
    escalation, actions = start(chain, now_ms, people)
    alarm = _new_alarm(alarm_id, tenant, trigger, escalation, now_ms)
    detail = _trigger_detail(trigger)
    detail["chain"] = chain.name
    entries = [Entry(now_ms, "raised", trigger.rule, detail)]
    alarm, more = _escalation_entries(alarm, actions, now_ms)
    return alarm, entries + more, actions


def _new_alarm(alarm_id: str, tenant: str, trigger: Trigger, escalation: Escalation, now_ms: int) -> Alarm:
    return Alarm(
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
        chain_requested=trigger.chain,
    )


def raise_in_incident(
    alarm_id: str, tenant: str, trigger: Trigger, chain: Chain, now_ms: int, incident_id: str
) -> tuple[Alarm, list[Entry], list[Any]]:
    """A new alarm that joins an open incident: on the queue with the incident, paged
    through the incident's one escalation, not its own (no actions)."""
    alarm = _new_alarm(alarm_id, tenant, trigger, Escalation(chain=chain, stopped=True), now_ms)
    alarm = msgspec.structs.replace(alarm, incident_id=incident_id)
    raised = Entry(now_ms, "raised", trigger.rule, {**_trigger_detail(trigger), "chain": chain.name})
    return alarm, [raised, Entry(now_ms, "joined_incident", "system", {"incident": incident_id})], []


def join_incident(alarm: Alarm, incident_id: str, now_ms: int) -> tuple[Alarm, list[Entry], list[Any]]:
    """An alarm already escalating on its own becomes a member of an incident that just
    opened: its own chain stops (the incident's lead pages for all of them)."""
    if not alarm.is_open or alarm.incident_id:
        return alarm, [], []
    escalation, actions = advance(alarm.escalation, Stop("incident"), now_ms)
    new = msgspec.structs.replace(alarm, escalation=escalation, incident_id=incident_id, updated_ms=now_ms)
    return new, [Entry(now_ms, "joined_incident", "system", {"incident": incident_id})], actions


def lead_incident(
    alarm: Alarm, incident_id: str, now_ms: int, people: People | None = None, reason: str = "opened"
) -> tuple[Alarm, list[Entry], list[Any]]:
    """This member carries the incident's escalation: its chain starts from step 1 (in a
    new epoch, so no timer of its own earlier run can move it). Nothing happens once a
    person has taken it."""
    if alarm.state != AlarmState.RAISED:
        return msgspec.structs.replace(alarm, incident_id=incident_id), [], []
    fresh = Escalation(chain=alarm.escalation.chain, epoch=alarm.escalation.epoch + 1)
    escalation, actions = advance(fresh, Start(), now_ms, people)
    new = msgspec.structs.replace(
        alarm, escalation=escalation, incident_id=incident_id, incident_lead=True, unhandled=False, updated_ms=now_ms
    )
    new, entries = _escalation_entries(new, actions, now_ms)
    lead = Entry(now_ms, "incident_lead", "system", {"incident": incident_id, "reason": reason})
    return new, [lead, *entries], actions


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


def rechain(
    alarm: Alarm, chain: Chain, now_ms: int, people: People | None = None
) -> tuple[Alarm, list[Entry], list[Any]]:
    """The alarm was raised again at a higher priority and that priority's chain is
    another: move to it from its first step. Nothing happens once a person has taken the
    alarm, or when the chain is the one already running."""
    if alarm.state != AlarmState.RAISED:
        return alarm, [], []
    escalation, actions = advance(alarm.escalation, Rechain(chain), now_ms, people)
    if not actions:
        return alarm, [], []
    alarm = msgspec.structs.replace(alarm, escalation=escalation, updated_ms=now_ms)
    alarm, entries = _escalation_entries(alarm, actions, now_ms)
    return alarm, entries, actions


def timeout(
    alarm: Alarm,
    step: int,
    round_: int,
    now_ms: int,
    turn: int = 0,
    epoch: int = 0,
    people: People | None = None,
) -> tuple[Alarm, list[Entry], list[Any]]:
    if not alarm.is_open:
        return alarm, [], []
    escalation, actions = advance(alarm.escalation, Timeout(step, round_, turn, epoch), now_ms, people)
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


# -- the paged person's answers ------------------------------------------------------------


def record_pages(alarm: Alarm, pages: list[Page]) -> Alarm:
    """Keep the pages just sent on the alarm, so replies can be checked against them."""
    return msgspec.structs.replace(alarm, pages=alarm.pages + tuple(pages)) if pages else alarm


RELATIVE_PREFIX = "relative:"
WEBHOOK_PREFIX = "webhook:"


def is_staff(recipient: str) -> bool:
    """A page's recipient who can answer: staff, not a relative or a webhook."""
    return not recipient.startswith((RELATIVE_PREFIX, WEBHOOK_PREFIX))


def _page_for(alarm: Alarm, staff_id: str, page_id: str | None) -> Page:
    """The page a reply answers: the one it quotes, else the person's latest."""
    mine = [p for p in alarm.pages if p.staff_id == staff_id and is_staff(p.staff_id)]
    if page_id is not None:
        mine = [p for p in mine if p.page_id == page_id]
    if not mine:
        quoted = f" with page {page_id[:64]!r}" if page_id is not None else ""
        raise ReplyRejected("not_paged", f"{staff_id} was not paged{quoted} for alarm {alarm.id}")
    return mine[-1]


def _dispatch_open(alarm: Alarm, page: Page) -> bool:
    """A dispatch page is live while it is the person's latest dispatch and still unanswered."""
    latest = dispatch_of(alarm.escalation, page.staff_id)
    return latest is not None and latest.number == page.dispatch and latest.status == DispatchStatus.PAGED


def page_is_live(alarm: Alarm, page: Page) -> bool:
    """A page may be answered while its position (epoch, step, round, turn) is the chain's
    running one; an operator's dispatch while it is open. Once the chain is exhausted
    (UNHANDLED) every page stays answerable: an alarm nobody took must never turn a taker
    away."""
    if not alarm.is_open:
        return False
    if page.dispatched:
        return _dispatch_open(alarm, page)
    escalation = alarm.escalation
    if escalation.exhausted:
        return True
    if escalation.stopped or escalation.paused:
        return False
    position = (page.epoch, page.step, page.round, page.turn)
    return position == (escalation.epoch, escalation.step, escalation.round, escalation.turn)


def delivery_wanted(alarm: Alarm, delivery: Delivery) -> bool:
    """Whether a delivery still waiting in the outbox (or between a channel's retries)
    should go out: its page unanswered and still live, and nobody has taken the alarm.
    An ack, a clear, an accept, a decline or the chain moving on makes it unwanted, and
    the notifier drops it rather than page someone about an alarm that is in hand."""
    if not alarm.is_open:
        return False
    page = next((p for p in reversed(alarm.pages) if p.page_id == delivery.page_id), None)
    if page is None or page.answer is not None:
        return False
    if page.dispatched:
        return alarm.accepted_by is None and _dispatch_open(alarm, page)
    return alarm.state == AlarmState.RAISED and page_is_live(alarm, page)


def _answerable(alarm: Alarm, staff_id: str, page_id: str | None) -> Page:
    if not alarm.is_open:
        raise ReplyRejected("closed", f"alarm {alarm.id} is already {alarm.state}")
    page = _page_for(alarm, staff_id, page_id)
    if page.answer is not None:
        raise ReplyRejected("already_answered", f"page {page.page_id} was already answered: {page.answer}")
    # A dispatch may follow an operator's own ack (she talked to the resident and sends a
    # nurse): it is answerable until a person has accepted the alarm.
    taken = alarm.state != AlarmState.RAISED
    if page.dispatched:
        taken = alarm.accepted_by is not None or alarm.state not in (AlarmState.RAISED, AlarmState.ACKNOWLEDGED)
    if taken:
        taker = alarm.acknowledged_by or alarm.accepted_by or "someone"
        raise ReplyRejected("already_taken", f"alarm {alarm.id} was already taken by {taker}")
    if not page_is_live(alarm, page):
        raise ReplyRejected(
            "not_live", f"step {page.step + 1} of alarm {alarm.id} is no longer running; answer your latest page"
        )
    return page


def _answered(alarm: Alarm, page: Page, answer: Answer, now_ms: int) -> tuple[Page, ...]:
    done = msgspec.structs.replace(page, answer=answer, answered_ms=now_ms)
    return tuple(done if p is page else p for p in alarm.pages)


def accept(
    alarm: Alarm, staff_id: str, by: str, page_id: str | None, now_ms: int, via: str = "http"
) -> tuple[Alarm, list[Entry], list[Any]]:
    """The paged nurse takes the alarm: it is hers (she may now read the key safe). A
    chain page stops the chain as an operator's ack does; a dispatch only pauses it, so
    that the chain picks up again if she hands it back (`release`)."""
    page = _answerable(alarm, staff_id, page_id)
    if page.dispatched:
        escalation, actions = advance(alarm.escalation, DispatchAccepted(staff_id), now_ms)
        acked = msgspec.structs.replace(
            alarm,
            state=AlarmState.ACKNOWLEDGED,
            escalation=escalation,
            acknowledged_ms=alarm.acknowledged_ms or now_ms,
            acknowledged_by=alarm.acknowledged_by or by,
            updated_ms=now_ms,
        )
    else:
        acked, _, actions = acknowledge(alarm, by, now_ms)
    new = msgspec.structs.replace(acked, accepted_by=staff_id, pages=_answered(alarm, page, Answer.ACCEPT, now_ms))
    detail: dict[str, Any] = {
        "staff": staff_id,
        "page": page.page_id,
        "step": page.step + 1,
        "via": via,
        "waited_s": (now_ms - alarm.raised_ms) / 1000,
    }
    if page.dispatched:
        detail["dispatched"] = True
    new, more = _escalation_entries(new, actions, now_ms)
    return new, [Entry(now_ms, "accepted", by, detail), *more], actions


def decline(
    alarm: Alarm,
    staff_id: str,
    by: str,
    page_id: str | None,
    now_ms: int,
    via: str = "http",
    people: People | None = None,
) -> tuple[Alarm, list[Entry], list[Any]]:
    """The paged nurse cannot take it. Recorded on her page; the chain moves on at once
    when the runner says so (round robin: the next person; all at once: when everyone
    paged in the step has declined). The dispatched nurse who accepted and then declines
    hands the alarm back (`release`)."""
    held = _held_dispatch(alarm, staff_id, page_id)
    if held is not None:
        return release(alarm, held, by, now_ms, via, people)
    page = _answerable(alarm, staff_id, page_id)
    alarm = msgspec.structs.replace(alarm, pages=_answered(alarm, page, Answer.DECLINE, now_ms), updated_ms=now_ms)
    detail: dict[str, Any] = {"staff": staff_id, "page": page.page_id, "step": page.step + 1, "via": via}
    if page.dispatched:
        detail["dispatched"] = True
    entries = [Entry(now_ms, "declined", by, detail)]
    event: Any = DispatchDeclined(staff_id) if page.dispatched else _decline_event(alarm, page)
    escalation, actions = advance(alarm.escalation, event, now_ms, people)
    if escalation is not alarm.escalation:
        alarm = msgspec.structs.replace(alarm, escalation=escalation)
        alarm, more = _escalation_entries(alarm, actions, now_ms)
        entries += more
    return alarm, entries, actions


def _held_dispatch(alarm: Alarm, staff_id: str, page_id: str | None) -> Page | None:
    """The dispatch page `staff_id` accepted and still holds, if the reply is about it."""
    if not alarm.is_open or alarm.accepted_by != staff_id:
        return None
    for page in reversed(alarm.pages):
        if page.staff_id == staff_id and page.dispatched and page.answer == Answer.ACCEPT:
            if page_id is None or page.page_id == page_id:
                return page
            return None
    return None


def release(
    alarm: Alarm, page: Page, by: str, now_ms: int, via: str = "http", people: People | None = None
) -> tuple[Alarm, list[Entry], list[Any]]:
    """The dispatched nurse hands back an alarm she accepted (before she is on site): it
    is nobody's again, and a chain she paused starts its step afresh."""
    if alarm.state not in (AlarmState.ACKNOWLEDGED, AlarmState.EN_ROUTE):
        raise ReplyRejected("bad_state", f"alarm {alarm.id} is {alarm.state}; it can no longer be handed back")
    escalation, actions = advance(alarm.escalation, DispatchReleased(page.staff_id), now_ms, people)
    resumed = any(isinstance(a, Resumed) for a in actions)
    new = msgspec.structs.replace(
        alarm,
        escalation=escalation,
        accepted_by=None,
        en_route_ms=None,
        pages=_answered(alarm, page, Answer.DECLINE, now_ms),
        updated_ms=now_ms,
    )
    if resumed:  # she held it for the chain: back on the queue as nobody's
        new = msgspec.structs.replace(new, state=AlarmState.RAISED, acknowledged_ms=None, acknowledged_by=None)
    else:  # an operator had it before the dispatch and still has it
        new = msgspec.structs.replace(new, state=AlarmState.ACKNOWLEDGED)
    detail = {"staff": page.staff_id, "page": page.page_id, "via": via, "chain_resumed": resumed}
    new, more = _escalation_entries(new, actions, now_ms)
    return new, [Entry(now_ms, "released", by, detail), *more], actions


def dispatch(alarm: Alarm, staff_id: str, by: str, now_ms: int) -> tuple[Alarm, list[Entry], list[Any]]:
    """An operator pages a chosen person outside the chain. The shell plans the page
    (`NotifyDispatch`) and records it; the person answers it like a chain page."""
    if not alarm.is_open:
        raise TransitionError(f"alarm {alarm.id} is already {alarm.state}")
    if alarm.state == AlarmState.ON_SITE:
        raise TransitionError(f"alarm {alarm.id} is on site: someone is with the resident")
    escalation, actions = advance(alarm.escalation, Dispatch(staff_id), now_ms)
    if not actions:
        raise TransitionError(f"{staff_id} is already dispatched to alarm {alarm.id} and has not declined")
    new = msgspec.structs.replace(alarm, escalation=escalation, updated_ms=now_ms)
    return new, [Entry(now_ms, "dispatch", by, {"staff": staff_id})], actions


def _decline_event(alarm: Alarm, page: Page) -> Decline:
    same = [p for p in alarm.pages if _same_position(p, page) and not p.dispatched and is_staff(p.staff_id)]
    declined = frozenset(p.staff_id for p in same if p.answer == Answer.DECLINE)
    paged = frozenset(p.staff_id for p in same)
    return Decline(page.staff_id, page.step, page.round, page.turn, page.epoch, everyone=declined >= paged)


def _same_position(a: Page, b: Page) -> bool:
    return (a.epoch, a.step, a.round, a.turn) == (b.epoch, b.step, b.round, b.turn)


def _mine(alarm: Alarm, staff_id: str | None) -> None:
    """En route, on site and resolve belong to the nurse who accepted; operators (no
    staff id) may record them on her behalf."""
    if not alarm.is_open:
        raise ReplyRejected("closed", f"alarm {alarm.id} is already {alarm.state}")
    if staff_id is not None and alarm.accepted_by != staff_id:
        raise ReplyRejected("not_yours", f"alarm {alarm.id} was not accepted by {staff_id}; accept it first")


def en_route(alarm: Alarm, staff_id: str | None, by: str, now_ms: int, via: str = "http") -> tuple[Alarm, list[Entry]]:
    _mine(alarm, staff_id)
    if alarm.state not in (AlarmState.ACKNOWLEDGED,):
        raise ReplyRejected("bad_state", f"alarm {alarm.id} is {alarm.state}; en route follows an accept")
    new = msgspec.structs.replace(alarm, state=AlarmState.EN_ROUTE, en_route_ms=now_ms, updated_ms=now_ms)
    return new, [Entry(now_ms, "en_route", by, {"staff": staff_id, "via": via})]


def on_site(alarm: Alarm, staff_id: str | None, by: str, now_ms: int, via: str = "http") -> tuple[Alarm, list[Entry]]:
    _mine(alarm, staff_id)
    if alarm.state not in (AlarmState.ACKNOWLEDGED, AlarmState.EN_ROUTE):
        raise ReplyRejected("bad_state", f"alarm {alarm.id} is {alarm.state}; on site follows an accept")
    new = msgspec.structs.replace(alarm, state=AlarmState.ON_SITE, on_site_ms=now_ms, updated_ms=now_ms)
    detail: dict[str, Any] = {"staff": staff_id, "via": via}
    if alarm.en_route_ms is not None:
        detail["travel_s"] = (now_ms - alarm.en_route_ms) / 1000
    return new, [Entry(now_ms, "on_site", by, detail)]


def resolve_by(
    alarm: Alarm, staff_id: str | None, by: str, code: str, note: str, now_ms: int, via: str = "http"
) -> tuple[Alarm, list[Entry], list[Any]]:
    """A resolve from a nurse (only the one who accepted) or an operator (staff_id None)."""
    _mine(alarm, staff_id)
    new, entries, actions = resolve(alarm, by, code, note, now_ms)
    if via != "http":
        entries = [Entry(e.ts_ms, e.what, e.by, {**e.detail, "via": via}) for e in entries]
    return new, entries, actions


def rejected_entry(staff_id: str, answer: str, rejection: ReplyRejected, now_ms: int, via: str) -> Entry:
    """The timeline's record of a reply the alarm did not take, and why."""
    return Entry(
        now_ms,
        "reply_rejected",
        staff_id,
        {"answer": answer, "code": rejection.code, "reason": rejection.reason, "via": via},
    )
