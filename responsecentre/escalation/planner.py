"""The planner, pure: who gets which delivery over which channel, for one runner position.

The shell builds a `StepContext` from the roster and the home's record at `now` (people
on duty in the home's zone per role, in roster order; staff by id; the resident's
relatives; receipt times; coverage minimums), asks `plan` what a `Notify` means, and
stores the `Plan`'s deliveries in the outbox in the same transaction as the alarm
change. Nothing here reads the clock, the roster files or Redis.

Identifiers are deterministic, so re-planning after a crash gives the same ids and the
outbox and timeline de-duplicate by them:

    page_id      {alarm}:{epoch}.{step 1-based}.{round}.{turn}:{recipient}
    dispatch     {alarm}:d{number}:{staff_id}
    delivery id  {page_id}:{attempt}      (attempt 0 = first contact, 1 = first fallback, ...)

Page bodies carry no resident data (see `delivery.PageBody`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum

import msgspec

from responsecentre.escalation.chains import Chain, NotifyMode, Step, TargetKind
from responsecentre.escalation.delivery import Channel, Contact, Delivery, PageBody
from responsecentre.escalation.people import Relative, StaffMember, StaffRole
from responsecentre.escalation.runner import Notify, NotifyDispatch, Turn

__all__ = [
    "DEFAULT_RECEIPT_MS",
    "AlarmRef",
    "Plan",
    "PlanWarning",
    "StepContext",
    "WarningKind",
    "people_for",
    "plan",
    "plan_dispatch",
    "plan_fallback",
    "reply_topic",
    "turns",
]

# How long a channel has to confirm a delivery before the person's next contact is
# tried: a handset's PUBACK is quick, an SMS gateway or SMTP server slower.
DEFAULT_RECEIPT_MS: dict[Channel, int] = {
    Channel.HANDSET: 15_000,
    Channel.SMS: 60_000,
    Channel.EMAIL: 120_000,
    Channel.WEBHOOK: 30_000,
}
DEFAULT_MINIMUM = 1  # without a configured minimum, warn only when nobody is on duty

RELATIVE_PREFIX = "relative:"
WEBHOOK_PREFIX = "webhook:"


def reply_topic(tenant: str, staff_id: str) -> str:
    """Where a handset publishes accept/decline/en_route/on_site/resolve."""
    return f"rc/v1/{tenant}/staff/{staff_id}/replies"


class AlarmRef(msgspec.Struct, frozen=True):
    """The alarm as a page may name it: identity, no resident data."""

    id: str
    tenant: str
    kind: str
    priority: str
    home_id: str
    zone: str
    incident_id: str = ""


class StepContext(msgspec.Struct, frozen=True):
    """What the shell knows about the people around one alarm at `now`."""

    on_duty: dict[StaffRole, tuple[StaffMember, ...]] = {}  # in the home's zone, roster order
    staff: dict[str, StaffMember] = {}  # anyone a chain may name, by staff id
    relatives: tuple[Relative, ...] = ()  # the resident's, in the home record's order
    receipt_within_ms: dict[Channel, int] = {}  # overrides DEFAULT_RECEIPT_MS
    minimums: dict[StaffRole, int] = {}  # coverage minimum per role (default 1)


class WarningKind(StrEnum):
    COVERAGE = "coverage"  # fewer people on duty for a role than its minimum
    UNKNOWN_STAFF = "unknown_staff"  # a named person who is not on the roster (paged on the handset anyway)
    NO_CONTACT = "no_contact"  # someone the step names but cannot reach over its channels


class PlanWarning(msgspec.Struct, frozen=True, omit_defaults=True):
    kind: WarningKind
    role: str = ""
    zone: str = ""
    on_duty: int = 0
    minimum: int = 0
    recipient: str = ""


class Plan(msgspec.Struct, frozen=True):
    deliveries: tuple[Delivery, ...] = ()
    console: bool = False  # show it on the console
    warnings: tuple[PlanWarning, ...] = ()
    recipients: tuple[str, ...] = ()  # who was told, in order, for the timeline


# -- who --------------------------------------------------------------------------------


def _member(ctx: StepContext, staff_id: str) -> StaffMember | None:
    if staff_id in ctx.staff:
        return ctx.staff[staff_id]
    for members in ctx.on_duty.values():
        for member in members:
            if member.staff_id == staff_id:
                return member
    return None


def _usable(contacts: tuple[Contact, ...], channels: tuple[Channel, ...]) -> tuple[Contact, ...]:
    """A person's contacts in their own order, limited to the step's channels (empty: all).
    The console is not a person's channel."""
    return tuple(c for c in contacts if c.channel != Channel.CONSOLE and (not channels or c.channel in channels))


def _contacts(recipient: str, step: Step | None, ctx: StepContext) -> tuple[Contact, ...]:
    """Every contact of a recipient, unrestricted. A person with none listed is reached on
    the handset (their staff id), as before contacts existed."""
    if recipient.startswith(RELATIVE_PREFIX):
        index = int(recipient.removeprefix(RELATIVE_PREFIX))
        return ctx.relatives[index].contacts if 0 <= index < len(ctx.relatives) else ()
    if recipient.startswith(WEBHOOK_PREFIX):
        index = int(recipient.removeprefix(WEBHOOK_PREFIX))
        if step is None or not 0 <= index < len(step.targets):
            return ()
        return (Contact(Channel.WEBHOOK, step.targets[index].value),)
    member = _member(ctx, recipient)
    if member is not None and member.contacts:
        return member.contacts
    return (Contact(Channel.HANDSET, recipient),)


def _reachable(recipient: str, step: Step, ctx: StepContext) -> tuple[Contact, ...]:
    contacts = _contacts(recipient, step, ctx)
    if recipient.startswith(WEBHOOK_PREFIX):
        return contacts  # a webhook target is a webhook whatever the step's channels
    return _usable(contacts, step.channels)


def _candidates(step: Step, ctx: StepContext) -> list[Turn]:
    """Everyone the step's targets name, in target order then roster order, once each."""
    out: dict[str, Turn] = {}
    for i, target in enumerate(step.targets):
        names: list[str] = []
        match target.kind:
            case TargetKind.ROLE:
                names = [m.staff_id for m in _on_duty(ctx, target.value)]
            case TargetKind.STAFF:
                names = [target.value]
            case TargetKind.RELATIVES:
                names = [f"{RELATIVE_PREFIX}{j}" for j in range(len(ctx.relatives))]
            case TargetKind.WEBHOOK:
                names = [f"{WEBHOOK_PREFIX}{i}"]
        for name in names:
            out.setdefault(name, Turn(name, i))
    return list(out.values())


def _on_duty(ctx: StepContext, role: str) -> tuple[StaffMember, ...]:
    try:
        return ctx.on_duty.get(StaffRole(role), ())
    except ValueError:  # a role an older chain named that the roster no longer knows
        return ()


def turns(step: Step, ctx: StepContext) -> tuple[Turn, ...]:
    """The step's recipients in order, as the runner freezes them at step entry: the
    people its targets name who can be reached over its channels."""
    return tuple(t for t in _candidates(step, ctx) if _reachable(t.recipient, step, ctx))


def people_for(ctx: StepContext) -> Callable[[Step], tuple[Turn, ...]]:
    """The `people` argument of `runner.start`/`runner.advance`, bound to one context."""
    return lambda step: turns(step, ctx)


# -- what -------------------------------------------------------------------------------


def _warnings(step: Step, alarm: AlarmRef, ctx: StepContext) -> list[PlanWarning]:
    out: list[PlanWarning] = []
    seen: set[str] = set()
    for target in step.targets:
        if target.kind == TargetKind.ROLE and target.value not in seen:
            seen.add(target.value)
            n = len(_on_duty(ctx, target.value))
            try:
                minimum = ctx.minimums.get(StaffRole(target.value), DEFAULT_MINIMUM)
            except ValueError:
                minimum = DEFAULT_MINIMUM
            if n < minimum:
                out.append(PlanWarning(WarningKind.COVERAGE, target.value, alarm.zone, n, minimum))
        elif target.kind == TargetKind.STAFF and _member(ctx, target.value) is None:
            out.append(PlanWarning(WarningKind.UNKNOWN_STAFF, recipient=target.value))
    for turn in _candidates(step, ctx):
        if not _reachable(turn.recipient, step, ctx):
            out.append(PlanWarning(WarningKind.NO_CONTACT, recipient=turn.recipient))
    return out


def _is_staff(recipient: str) -> bool:
    return not recipient.startswith((RELATIVE_PREFIX, WEBHOOK_PREFIX))


def _delivery(
    alarm: AlarmRef,
    page_id: str,
    recipient: str,
    contacts: tuple[Contact, ...],
    body: PageBody,
    receipt: Mapping[Channel, int],
) -> Delivery:
    first, rest = contacts[0], contacts[1:]
    topic = reply_topic(alarm.tenant, recipient) if first.channel == Channel.HANDSET and _is_staff(recipient) else ""
    return Delivery(
        id=f"{page_id}:0",
        page_id=page_id,
        alarm_id=alarm.id,
        tenant=alarm.tenant,
        channel=first.channel,
        address=first.address,
        recipient=recipient,
        body=msgspec.structs.replace(body, page_id=page_id, reply_topic=topic),
        receipt_within_ms=_receipt_ms(first.channel, receipt),
        fallback=rest,
    )


def _receipt_ms(channel: Channel, receipt: Mapping[Channel, int]) -> int:
    return receipt.get(channel, DEFAULT_RECEIPT_MS.get(channel, 30_000))


def _body(alarm: AlarmRef, step: int, round_: int, now_ms: int, dispatched: bool = False) -> PageBody:
    return PageBody(
        alarm_id=alarm.id,
        tenant=alarm.tenant,
        kind=alarm.kind,
        priority=alarm.priority,
        home_id=alarm.home_id,
        zone=alarm.zone,
        step=step,
        round=round_,
        ts_ms=now_ms,
        page_id="",
        dispatched=dispatched,
        incident_id=alarm.incident_id,
    )


def page_id(alarm_id: str, notify: Notify, recipient: str) -> str:
    return f"{alarm_id}:{notify.epoch}.{notify.step + 1}.{notify.round}.{notify.turn}:{recipient}"


def dispatch_page_id(alarm_id: str, dispatch: int, staff_id: str) -> str:
    return f"{alarm_id}:d{dispatch}:{staff_id}"


def plan(alarm: AlarmRef, chain: Chain, notify: Notify, ctx: StepContext, now_ms: int) -> Plan:
    """The deliveries for one `Notify` of `chain` (the alarm's chain after the action).

    Recipients are the ones the runner froze (`notify.recipients`), else the step's
    targets resolved now (all of them, or the turn's person in a round robin). Each gets
    one delivery over their first usable contact, with the rest as its fallback.
    Warnings (coverage, unknown staff, unreachable people) come once per step entry
    (turn 0), not once per person of a round robin."""
    step = chain.steps[notify.step]
    recipients = notify.recipients
    if recipients is None:
        everyone = tuple(t.recipient for t in turns(step, ctx))
        if step.notify == NotifyMode.ROUND_ROBIN:
            everyone = everyone[notify.turn : notify.turn + 1]
        recipients = everyone
    receipt = ctx.receipt_within_ms
    body = _body(alarm, notify.step + 1, notify.round, now_ms)
    deliveries: list[Delivery] = []
    told: list[str] = []
    for recipient in recipients:
        contacts = _reachable(recipient, step, ctx)
        if not contacts:
            continue
        deliveries.append(_delivery(alarm, page_id(alarm.id, notify, recipient), recipient, contacts, body, receipt))
        told.append(recipient)
    warnings = tuple(_warnings(step, alarm, ctx)) if notify.turn == 0 else ()
    return Plan(tuple(deliveries), step.on_console, warnings, tuple(told))


def plan_dispatch(alarm: AlarmRef, action: NotifyDispatch, ctx: StepContext, now_ms: int) -> Plan:
    """An operator's page to one chosen person, outside the chain: over all of their
    contacts in their order (no step restricts them). `step` 0 in the body means no
    chain step."""
    staff_id = action.staff_id
    warnings: tuple[PlanWarning, ...] = ()
    if _member(ctx, staff_id) is None:
        warnings = (PlanWarning(WarningKind.UNKNOWN_STAFF, recipient=staff_id),)
    contacts = _usable(_contacts(staff_id, None, ctx), ())
    if not contacts:
        return Plan(warnings=(*warnings, PlanWarning(WarningKind.NO_CONTACT, recipient=staff_id)))
    body = _body(alarm, 0, 0, now_ms, dispatched=True)
    pid = dispatch_page_id(alarm.id, action.dispatch, staff_id)
    delivery = _delivery(alarm, pid, staff_id, contacts, body, ctx.receipt_within_ms)
    return Plan((delivery,), False, warnings, (staff_id,))


def plan_fallback(
    delivery: Delivery, now_ms: int, receipt_within_ms: Mapping[Channel, int] | None = None
) -> Delivery | None:
    """The same page over the recipient's next contact (attempt + 1), or None when the
    contacts have run out."""
    if not delivery.fallback:
        return None
    nxt, rest = delivery.fallback[0], delivery.fallback[1:]
    attempt = delivery.attempt + 1
    staff = _is_staff(delivery.recipient)
    topic = reply_topic(delivery.tenant, delivery.recipient) if nxt.channel == Channel.HANDSET and staff else ""
    return msgspec.structs.replace(
        delivery,
        id=f"{delivery.page_id}:{attempt}",
        channel=nxt.channel,
        address=nxt.address,
        body=msgspec.structs.replace(delivery.body, ts_ms=now_ms, reply_topic=topic),
        receipt_within_ms=_receipt_ms(nxt.channel, receipt_within_ms or {}),
        fallback=rest,
        attempt=attempt,
    )
