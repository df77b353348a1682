"""The alarm life cycle, pure: no Redis, no clock."""

from __future__ import annotations

import pytest

from responsecentre.alarms.model import (
    CLOSING_CODES,
    SYSTEM_CLOSING_CODES,
    AlarmState,
    TransitionError,
    Trigger,
    acknowledge,
    cancel_by_resident,
    clear,
    join,
    queue_key,
    raise_alarm,
    resolve,
    timeout,
)
from responsecentre.escalation.chains import Chain, Channel, Step, Target, TargetKind
from responsecentre.escalation.runner import Notify, Unschedule

CHAIN = Chain("urgent", (Step((Target(TargetKind.CONSOLE),), (Channel.CONSOLE,), 60_000),) * 2, repeat=0)


def trigger(priority: str = "high", cause: str = "c1") -> Trigger:
    return Trigger(cause, "rule-a", "fall", priority, "urgent", "h1", "north", "h1-fall", 1_000, "e1", "fall.detected")


def test_raise_notifies_step_one_and_records_who_and_why() -> None:
    alarm, entries, _actions = raise_alarm("A1", "t", trigger(), CHAIN, 5_000)
    assert alarm.state == AlarmState.RAISED and alarm.escalation.due_ms == 65_000
    assert [e.what for e in entries] == ["raised", "notified"]
    assert entries[0].by == "rule-a" and entries[0].detail["device"] == "h1-fall"


def test_join_counts_and_only_raises_priority() -> None:
    alarm, _, _ = raise_alarm("A1", "t", trigger("high"), CHAIN, 0)
    alarm, entries = join(alarm, trigger("low", "c2"), 10)
    assert (alarm.triggers, alarm.priority) == (2, "high") and entries[0].what == "trigger"
    alarm, _ = join(alarm, trigger("critical", "c3"), 20)
    assert alarm.priority == "critical"


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        (["ack", "resolve"], True),
        (["resolve"], True),
        (["ack", "ack"], False),
        (["resolve", "ack"], False),
        (["resolve", "resolve"], False),
    ],
)
def test_transitions(path: list[str], ok: bool) -> None:
    alarm, _, _ = raise_alarm("A1", "t", trigger(), CHAIN, 0)

    def run() -> None:
        nonlocal alarm
        for step in path:
            if step == "ack":
                alarm, _, _ = acknowledge(alarm, "op", 1)
            else:
                alarm, _, _ = resolve(alarm, "op", "assisted", "", 2)

    if ok:
        run()
    else:
        with pytest.raises(TransitionError):
            run()


def test_resolve_needs_a_known_closing_code() -> None:
    alarm, _, _ = raise_alarm("A1", "t", trigger(), CHAIN, 0)
    with pytest.raises(TransitionError, match="closing code"):
        resolve(alarm, "op", "whatever", "", 1)


def test_unacked_chain_ends_unhandled_and_sorts_first() -> None:
    alarm, _, _ = raise_alarm("A1", "t", trigger("low"), CHAIN, 0)
    other, _, _ = raise_alarm("A2", "t", trigger("critical"), CHAIN, 0)
    alarm, entries, _ = timeout(alarm, 0, 0, 60_000)
    assert [e.what for e in entries] == ["escalated"]
    alarm, entries, _ = timeout(alarm, 1, 0, 120_000)
    assert alarm.unhandled and [e.what for e in entries] == ["unhandled"]
    assert sorted([other, alarm], key=queue_key)[0] is alarm


def test_acked_alarm_ignores_its_old_timer() -> None:
    alarm, _, _ = raise_alarm("A1", "t", trigger(), CHAIN, 0)
    alarm, _, _actions = acknowledge(alarm, "op", 30_000)
    assert timeout(alarm, 0, 0, 60_000) == (alarm, [], [])


def decision(action: str, cause: str = "d1") -> Trigger:
    return Trigger(
        cause, "rule-b", "fall", "high", "urgent", "h1", "north", "h1-fall", 2_000, "e2", "alarm.cancel", action
    )


@pytest.mark.parametrize(
    ("close", "what", "code"),
    [
        (lambda a, now: clear(a, now, decision("clear")), "cleared", "auto_cleared"),
        (lambda a, now: cancel_by_resident(a, now, decision("cancel")), "cancelled", "cancelled_by_resident"),
    ],
)
def test_a_raised_alarm_closes_and_its_chain_stops(close, what: str, code: str) -> None:  # type: ignore[no-untyped-def]
    alarm, _, _ = raise_alarm("A1", "t", trigger(), CHAIN, 0)
    closed, entries, actions = close(alarm, 10_000)
    assert closed.state == AlarmState.CANCELLED and not closed.is_open
    assert (closed.closing_code, closed.closed_by, closed.closed_ms) == (code, "rule-b", 10_000)
    assert closed.acknowledged_by is None  # nobody took it
    assert [e.what for e in entries] == [what]
    assert entries[0].by == "rule-b" and entries[0].detail["event"] == "e2" and entries[0].detail["code"] == code
    assert actions == [Unschedule(0, 0)] and closed.escalation.stopped
    # The step's timer, should it still fire, is fenced off: no further Notify.
    assert timeout(closed, 0, 0, 60_000) == (closed, [], [])
    assert not any(isinstance(a, Notify) for a in actions)


@pytest.mark.parametrize("function", [clear, cancel_by_resident])
def test_an_acknowledged_alarm_stays_open_and_notes_it(function) -> None:  # type: ignore[no-untyped-def]
    alarm, _, _ = raise_alarm("A1", "t", trigger(), CHAIN, 0)
    alarm, _, _ = acknowledge(alarm, "op-kari", 5_000)
    kept, entries, actions = function(alarm, 10_000, decision("clear"))
    assert kept.state == AlarmState.ACKNOWLEDGED and kept.closing_code is None and actions == []
    assert kept.updated_ms == 10_000
    (entry,) = entries
    assert entry.what in ("clear_ignored", "cancel_ignored") and entry.what.startswith(function.__name__[:5])
    assert entry.detail["reason"] == "acknowledged: acknowledged by op-kari; left open"


def test_a_closed_alarm_is_left_alone() -> None:
    alarm, _, _ = raise_alarm("A1", "t", trigger(), CHAIN, 0)
    alarm, _, _ = resolve(alarm, "op", "assisted", "", 1)
    assert clear(alarm, 2, decision("clear")) == (alarm, [], [])
    assert cancel_by_resident(alarm, 2, decision("cancel")) == (alarm, [], [])


def test_system_codes_are_not_offered_for_manual_resolve() -> None:
    assert not set(SYSTEM_CLOSING_CODES) & set(CLOSING_CODES)
    alarm, _, _ = raise_alarm("A1", "t", trigger(), CHAIN, 0)
    with pytest.raises(TransitionError):
        resolve(alarm, "op", "auto_cleared", "", 1)
    with pytest.raises(TransitionError, match="system closing code"):
        clear(alarm, 1, decision("clear"), code="assisted")
