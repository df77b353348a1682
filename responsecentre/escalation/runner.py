"""The chain runner: a pure state machine, `advance(state, event, now) -> (state, actions)`.

No I/O and no clock: the shell stores the state with the alarm, carries out the actions
(notify, schedule a timer in Redis) and feeds timer firings back in. Timers are fenced by
(step, round): a firing for any other position is stale and does nothing, so a duplicate
or late timer after a restart can neither skip nor repeat a step.
"""

from __future__ import annotations

import msgspec

from responsecentre.escalation.chains import Chain, Step


class Escalation(msgspec.Struct, frozen=True):
    chain: Chain  # the snapshot frozen onto the alarm when it was raised
    step: int = 0  # index of the step now running
    round: int = 0  # how many times the chain has started over
    due_ms: int | None = None  # when the running step times out; None once stopped
    stopped: bool = False  # acknowledged or closed
    exhausted: bool = False  # every step of every round passed without an ack

    @property
    def current(self) -> Step:
        return self.chain.steps[self.step]


# Events fed to the runner.
class Start(msgspec.Struct, frozen=True):
    pass


class Timeout(msgspec.Struct, frozen=True):
    step: int
    round: int


class Stop(msgspec.Struct, frozen=True):
    """An ack, a resolve or a cancel: no further steps."""

    reason: str


# Actions for the shell.
class Notify(msgspec.Struct, frozen=True):
    step: int
    round: int


class Schedule(msgspec.Struct, frozen=True):
    due_ms: int
    step: int
    round: int


class Unschedule(msgspec.Struct, frozen=True):
    step: int
    round: int


class Exhausted(msgspec.Struct, frozen=True):
    pass


Event = Start | Timeout | Stop
Action = Notify | Schedule | Unschedule | Exhausted


def start(chain: Chain, now_ms: int) -> tuple[Escalation, list[Action]]:
    return advance(Escalation(chain=chain), Start(), now_ms)


def _enter(state: Escalation, step: int, round_: int, now_ms: int) -> tuple[Escalation, list[Action]]:
    due = now_ms + state.chain.steps[step].ack_within_ms
    new = msgspec.structs.replace(state, step=step, round=round_, due_ms=due)
    return new, [Notify(step, round_), Schedule(due, step, round_)]


def advance(state: Escalation, event: Event, now_ms: int) -> tuple[Escalation, list[Action]]:
    """One transition. The next step's clock runs from when it is notified (now), so a
    step that fires late after an outage still gives its targets the full ack_within."""
    match event:
        case Start():
            return _enter(state, 0, 0, now_ms)
        case Stop():
            if state.stopped or state.exhausted:
                return state, []
            new = msgspec.structs.replace(state, stopped=True, due_ms=None)
            return new, [Unschedule(state.step, state.round)]
        case Timeout(step=step, round=round_):
            if (
                state.stopped
                or state.exhausted
                or (step, round_) != (state.step, state.round)
                or state.due_ms is None
                or now_ms < state.due_ms
            ):
                return state, []  # stale, duplicate or early: fenced off
            nxt, rnd = step + 1, round_
            if nxt == len(state.chain.steps):
                if rnd >= state.chain.repeat:
                    return msgspec.structs.replace(state, exhausted=True, due_ms=None), [Exhausted()]
                nxt, rnd = 0, rnd + 1
            return _enter(state, nxt, rnd, now_ms)
    raise TypeError(f"unknown escalation event {event!r}")
