"""The alarm life cycle, pure: no Redis, no clock."""

from __future__ import annotations

import pytest

from responsecentre.alarms.model import (
    AlarmState,
    TransitionError,
    Trigger,
    acknowledge,
    join,
    queue_key,
    raise_alarm,
    resolve,
    timeout,
)
from responsecentre.escalation.chains import Chain, Channel, Step, Target, TargetKind

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
