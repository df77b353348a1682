"""The chain runner: a pure state machine, `advance(state, event, now) -> (state, actions)`.

No I/O and no clock: the shell stores the state with the alarm, carries out the actions
(notify, schedule a timer in Redis) and feeds timer firings and people's answers back in.

Fencing. Every timer names the position it was set for: (epoch, step, round, turn).
`epoch` grows when the alarm moves to another chain (a priority jump) or a step is
entered again after a dispatch; `turn` is the person's place in a round-robin step. A
firing, or a decline, for any other position is stale and returns the very same state
and no actions, so a duplicate or late timer after a restart can neither skip nor repeat
a step, and an answer to an old page cannot move the chain.

People. At step entry the step's recipients are frozen into the state in roster order
(`people`, supplied by the caller from the roster, e.g. `planner.turns`): a round robin
then walks a fixed list, and a restart in the middle of it pages the same next person.
Without `people` (the old API) nothing is frozen and the shell plans from the targets.

A step with nobody to tell (no recipients frozen and not shown on the console) is
skipped at once (`Skipped`, for the timeline) rather than waited out: an empty step
would only delay the next one.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

import msgspec

from responsecentre.escalation.chains import REPLYING_KINDS, Chain, NotifyMode, Step


class Turn(msgspec.Struct, frozen=True):
    """One recipient of a step, frozen at step entry: who, and which of the step's
    targets named them (their ack_within in a round robin; whether they can answer)."""

    recipient: str  # a staff id, "relative:<index>" or "webhook:<target index>"
    target: int = 0


class DispatchStatus(StrEnum):
    PAGED = "paged"  # sent, not answered
    ACCEPTED = "accepted"  # the person has it: the chain is paused
    DECLINED = "declined"  # not them (before or after accepting)
    RELEASED = "released"  # handed back to the chain after accepting


class Dispatched(msgspec.Struct, frozen=True):
    """An operator's page to a chosen person, outside the chain."""

    number: int  # 1, 2, ... per alarm: part of the page id
    staff_id: str
    status: DispatchStatus = DispatchStatus.PAGED


class Escalation(msgspec.Struct, frozen=True):
    chain: Chain  # the snapshot frozen onto the alarm when it was raised (or moved)
    step: int = 0  # index of the step now running
    round: int = 0  # how many times the chain has started over
    due_ms: int | None = None  # when the running position times out; None when not running
    stopped: bool = False  # acknowledged or closed
    exhausted: bool = False  # every step of every round passed without an ack
    turn: int = 0  # the person's index in `people` (round robin); 0 otherwise
    people: tuple[Turn, ...] = ()  # the running step's recipients, frozen at entry
    declined: tuple[str, ...] = ()  # staff who declined the running position
    epoch: int = 0  # grows on a move to another chain and on re-entry after a dispatch
    paused: bool = False  # a dispatched person has accepted: no timer runs
    dispatches: tuple[Dispatched, ...] = ()

    @property
    def current(self) -> Step:
        return self.chain.steps[self.step]

    @property
    def running(self) -> bool:
        """A timer is set for the current position."""
        return not (self.stopped or self.exhausted or self.paused) and self.due_ms is not None

    @property
    def recipient(self) -> str | None:
        """Who a round-robin step is waiting for now; None for an all-at-once step."""
        if self.current.notify == NotifyMode.ROUND_ROBIN and self.turn < len(self.people):
            return self.people[self.turn].recipient
        return None


# -- events fed to the runner -----------------------------------------------------------------


class Start(msgspec.Struct, frozen=True):
    pass


class Timeout(msgspec.Struct, frozen=True):
    step: int
    round: int
    turn: int = 0
    epoch: int = 0


class Stop(msgspec.Struct, frozen=True):
    """An ack, an accept of a chain page, a resolve or a cancel: no further steps."""

    reason: str


class Decline(msgspec.Struct, frozen=True):
    """A paged person says "not me" to the page of (step, round, turn). `epoch` None:
    the shell did not keep it (the position alone is checked). `everyone`: the shell
    knows every paged person of an all-at-once step has now declined (needed when no
    people were frozen)."""

    staff_id: str
    step: int
    round: int
    turn: int = 0
    epoch: int | None = None
    everyone: bool = False


class Rechain(msgspec.Struct, frozen=True):
    """The alarm was raised again at a higher priority and `choose_chain` gave another
    chain: move to it, from its first step."""

    chain: Chain


class Dispatch(msgspec.Struct, frozen=True):
    staff_id: str


class DispatchAccepted(msgspec.Struct, frozen=True):
    staff_id: str


class DispatchDeclined(msgspec.Struct, frozen=True):
    staff_id: str


class DispatchReleased(msgspec.Struct, frozen=True):
    staff_id: str


# -- actions for the shell ----------------------------------------------------------------------


class Notify(msgspec.Struct, frozen=True):
    """Tell the position's recipients. `recipients` None: not frozen (plan from targets)."""

    step: int
    round: int
    turn: int = 0
    recipients: tuple[str, ...] | None = None
    epoch: int = 0


class Schedule(msgspec.Struct, frozen=True):
    due_ms: int
    step: int
    round: int
    turn: int = 0
    epoch: int = 0


class Unschedule(msgspec.Struct, frozen=True):
    step: int
    round: int
    turn: int = 0
    epoch: int = 0


class Exhausted(msgspec.Struct, frozen=True):
    pass


class Skipped(msgspec.Struct, frozen=True):
    """A step with nobody to tell was passed over at once (for the timeline)."""

    step: int
    round: int
    epoch: int = 0


class Rechained(msgspec.Struct, frozen=True):
    """Moved from chain `from_chain` to `to_chain` (for the timeline)."""

    from_chain: str
    to_chain: str
    from_step: int  # the step it was on (0-based)


class NotifyDispatch(msgspec.Struct, frozen=True):
    """Page `staff_id` outside the chain; `dispatch` numbers it for the page id."""

    staff_id: str
    dispatch: int


class Paused(msgspec.Struct, frozen=True):
    """A dispatched person accepted: the chain waits at this position (timer removed)."""

    staff_id: str
    step: int
    round: int
    turn: int = 0


class Resumed(msgspec.Struct, frozen=True):
    """The dispatched person declined or released: the paused step starts afresh."""

    staff_id: str
    step: int
    round: int


Event = Start | Timeout | Stop | Decline | Rechain | Dispatch | DispatchAccepted | DispatchDeclined | DispatchReleased
Action = Notify | Schedule | Unschedule | Exhausted | Skipped | Rechained | NotifyDispatch | Paused | Resumed
People = Callable[[Step], tuple[Turn, ...]]


class NotLive(StrEnum):
    """Why an answer to a chain page is not taken (`why_not_live`)."""

    STOPPED = "stopped"  # the alarm was taken or closed
    EXHAUSTED = "exhausted"  # the chain ran out
    PAUSED = "paused"  # a dispatched person has it
    STALE = "stale"  # the chain has moved past that page
    NOT_PAGED = "not_paged"  # this person was not paged at that position
    ANSWERED = "answered"  # this person already declined it


def start(chain: Chain, now_ms: int, people: People | None = None) -> tuple[Escalation, list[Action]]:
    return advance(Escalation(chain=chain), Start(), now_ms, people)


# -- positions ------------------------------------------------------------------------------


def _after(chain: Chain, step: int, round_: int) -> tuple[int, int] | None:
    """The step after (step, round); None when the chain is exhausted."""
    if step + 1 < len(chain.steps):
        return step + 1, round_
    if round_ >= chain.repeat:
        return None
    return min(chain.repeat_from, len(chain.steps) - 1), round_ + 1


def _ack_ms(step: Step, people: tuple[Turn, ...], turn: int) -> int:
    """A round robin gives each person their target's ack_within, else the step's."""
    if step.notify == NotifyMode.ROUND_ROBIN and turn < len(people):
        index = people[turn].target
        if 0 <= index < len(step.targets):
            own = step.targets[index].ack_within_ms
            if own is not None:
                return own
    return step.ack_within_ms


def _notify_at(state: Escalation, now_ms: int, actions: list[Action], frozen: bool) -> Escalation:
    """Notify the state's position and set its timer."""
    step = state.current
    due = now_ms + _ack_ms(step, state.people, state.turn)
    recipients: tuple[str, ...] | None = None
    if frozen:
        if step.notify == NotifyMode.ROUND_ROBIN:
            recipients = (state.people[state.turn].recipient,) if state.people else ()
        else:
            recipients = tuple(t.recipient for t in state.people)
    actions.append(Notify(state.step, state.round, state.turn, recipients, state.epoch))
    actions.append(Schedule(due, state.step, state.round, state.turn, state.epoch))
    return msgspec.structs.replace(state, due_ms=due, declined=())


def _enter(
    state: Escalation, step: int, round_: int, now_ms: int, people: People | None, actions: list[Action]
) -> Escalation:
    """Enter (step, round) at its first turn, skipping steps with nobody to tell."""
    chain = state.chain
    for _ in range(len(chain.steps) * (chain.repeat + 1) + 1):  # each step of each round at most once
        frozen = people(chain.steps[step]) if people is not None else ()
        if people is not None and not frozen and not chain.steps[step].on_console:
            actions.append(Skipped(step, round_, state.epoch))
            nxt = _after(chain, step, round_)
            if nxt is None:
                return _exhaust(state, actions)
            step, round_ = nxt
            continue
        state = msgspec.structs.replace(state, step=step, round=round_, turn=0, people=frozen, paused=False)
        return _notify_at(state, now_ms, actions, people is not None)
    return _exhaust(state, actions)


def _exhaust(state: Escalation, actions: list[Action]) -> Escalation:
    actions.append(Exhausted())
    return msgspec.structs.replace(state, exhausted=True, due_ms=None, declined=())


def _move_on(state: Escalation, now_ms: int, people: People | None, actions: list[Action]) -> Escalation:
    """From the running position to the next: the next person of a round robin, else the
    next step (or the repeat, or exhaustion)."""
    step = state.current
    if step.notify == NotifyMode.ROUND_ROBIN and state.turn + 1 < len(state.people):
        return _notify_at(msgspec.structs.replace(state, turn=state.turn + 1), now_ms, actions, True)
    nxt = _after(state.chain, state.step, state.round)
    if nxt is None:
        return _exhaust(state, actions)
    return _enter(state, nxt[0], nxt[1], now_ms, people, actions)


def _unschedule(state: Escalation) -> Unschedule:
    return Unschedule(state.step, state.round, state.turn, state.epoch)


# -- answers ----------------------------------------------------------------------------------


def _replying(state: Escalation) -> list[str]:
    """The staff of the running position who can answer (not relatives, not webhooks)."""
    step = state.current
    people = state.people
    if step.notify == NotifyMode.ROUND_ROBIN:
        people = people[state.turn : state.turn + 1]
    return [
        t.recipient
        for t in people
        if 0 <= t.target < len(step.targets) and step.targets[t.target].kind in REPLYING_KINDS
    ]


def why_not_live(
    state: Escalation, staff_id: str, step: int, round_: int, turn: int = 0, epoch: int | None = None
) -> NotLive | None:
    """Why an answer from `staff_id` to the chain page of (step, round, turn) cannot move
    the chain; None when it can. Without frozen people, membership is the shell's to check."""
    if state.stopped:
        return NotLive.STOPPED
    if state.exhausted:
        return NotLive.EXHAUSTED
    if state.paused:
        return NotLive.PAUSED
    if state.due_ms is None or (step, round_, turn) != (state.step, state.round, state.turn):
        return NotLive.STALE
    if epoch is not None and epoch != state.epoch:
        return NotLive.STALE
    if state.people and staff_id not in _replying(state):
        return NotLive.NOT_PAGED
    if staff_id in state.declined:
        return NotLive.ANSWERED
    return None


def is_live(state: Escalation, staff_id: str, step: int, round_: int, turn: int = 0, epoch: int | None = None) -> bool:
    return why_not_live(state, staff_id, step, round_, turn, epoch) is None


def _decline(state: Escalation, event: Decline, now_ms: int, people: People | None) -> tuple[Escalation, list[Action]]:
    if why_not_live(state, event.staff_id, event.step, event.round, event.turn, event.epoch) is not None:
        return state, []
    actions: list[Action] = [_unschedule(state)]
    if state.current.notify == NotifyMode.ROUND_ROBIN:
        return _move_on(state, now_ms, people, actions), actions
    declined = (*state.declined, event.staff_id)
    replying = _replying(state)
    if event.everyone or (replying and set(replying) <= set(declined)):
        return _move_on(state, now_ms, people, actions), actions
    return msgspec.structs.replace(state, declined=declined), []


# -- dispatch -------------------------------------------------------------------------------


def _latest(state: Escalation, staff_id: str, statuses: frozenset[DispatchStatus]) -> int | None:
    for i in range(len(state.dispatches) - 1, -1, -1):
        d = state.dispatches[i]
        if d.staff_id == staff_id and d.status in statuses:
            return i
    return None


def dispatch_of(state: Escalation, staff_id: str) -> Dispatched | None:
    """The person's latest dispatch for this alarm, if any (for checking their answers)."""
    i = _latest(state, staff_id, frozenset(DispatchStatus))
    return None if i is None else state.dispatches[i]


_OPEN = frozenset({DispatchStatus.PAGED, DispatchStatus.ACCEPTED})


def _set_status(state: Escalation, index: int, status: DispatchStatus) -> Escalation:
    dispatches = list(state.dispatches)
    dispatches[index] = msgspec.structs.replace(dispatches[index], status=status)
    return msgspec.structs.replace(state, dispatches=tuple(dispatches))


def _dispatch(state: Escalation, event: Event, now_ms: int, people: People | None) -> tuple[Escalation, list[Action]]:
    match event:
        case Dispatch(staff_id=staff_id):
            if _latest(state, staff_id, _OPEN) is not None:
                return state, []  # already paged or holding it
            number = len(state.dispatches) + 1
            new = msgspec.structs.replace(state, dispatches=(*state.dispatches, Dispatched(number, staff_id)))
            return new, [NotifyDispatch(staff_id, number)]
        case DispatchAccepted(staff_id=staff_id):
            index = _latest(state, staff_id, frozenset({DispatchStatus.PAGED}))
            if index is None:
                return state, []
            new = _set_status(state, index, DispatchStatus.ACCEPTED)
            if not state.running:
                return new, []
            paused = msgspec.structs.replace(new, paused=True, due_ms=None)
            return paused, [_unschedule(state), Paused(staff_id, state.step, state.round, state.turn)]
        case DispatchDeclined(staff_id=staff_id) | DispatchReleased(staff_id=staff_id):
            allowed = _OPEN if isinstance(event, DispatchDeclined) else frozenset({DispatchStatus.ACCEPTED})
            index = _latest(state, staff_id, allowed)
            if index is None:
                return state, []
            status = DispatchStatus.DECLINED if isinstance(event, DispatchDeclined) else DispatchStatus.RELEASED
            new = _set_status(state, index, status)
            holding = any(d.status == DispatchStatus.ACCEPTED for d in new.dispatches)
            if not new.paused or holding or new.stopped or new.exhausted:
                return new, []
            # The step starts afresh, as if just entered: its pages are old by now and the
            # roster may have changed during the pause.
            actions: list[Action] = [Resumed(staff_id, new.step, new.round)]
            new = msgspec.structs.replace(new, epoch=new.epoch + 1)
            return _enter(new, new.step, new.round, now_ms, people, actions), actions
    raise TypeError(f"not a dispatch event: {event!r}")


# -- the transition -----------------------------------------------------------------------------


def _rechain(state: Escalation, chain: Chain, now_ms: int, people: People | None) -> tuple[Escalation, list[Action]]:
    if state.stopped or chain.name == state.chain.name:
        return state, []
    actions: list[Action] = []
    if state.running:
        actions.append(_unschedule(state))
    actions.append(Rechained(state.chain.name, chain.name, state.step))
    moved = msgspec.structs.replace(
        state,
        chain=chain,
        step=0,
        round=0,
        turn=0,
        people=(),
        declined=(),
        due_ms=None,
        exhausted=False,
        epoch=state.epoch + 1,
    )
    if state.paused:
        return moved, actions  # stays with the dispatched person; resumes at the new chain's first step
    return _enter(moved, 0, 0, now_ms, people, actions), actions


def advance(
    state: Escalation, event: Event, now_ms: int, people: People | None = None
) -> tuple[Escalation, list[Action]]:
    """One transition. The next position's clock runs from when it is notified (now), so
    a step that fires late after an outage still gives its people the full ack_within.
    `people` freezes a step's recipients when it is entered (see the module docstring).
    Stale, duplicate or early events return `(state, [])` with the same state object."""
    match event:
        case Start():
            actions: list[Action] = []
            return _enter(state, 0, 0, now_ms, people, actions), actions
        case Stop():
            if state.stopped or state.exhausted:
                return state, []
            new = msgspec.structs.replace(state, stopped=True, due_ms=None)
            return new, [_unschedule(state)] if state.running else []
        case Timeout(step=step, round=round_, turn=turn, epoch=epoch):
            if (
                not state.running
                or (epoch, step, round_, turn) != (state.epoch, state.step, state.round, state.turn)
                or state.due_ms is None
                or now_ms < state.due_ms
            ):
                return state, []  # stale, duplicate or early: fenced off
            actions = []
            return _move_on(state, now_ms, people, actions), actions
        case Decline():
            return _decline(state, event, now_ms, people)
        case Rechain(chain=chain):
            return _rechain(state, chain, now_ms, people)
        case Dispatch() | DispatchAccepted() | DispatchDeclined() | DispatchReleased():
            return _dispatch(state, event, now_ms, people)
    raise TypeError(f"unknown escalation event {event!r}")
