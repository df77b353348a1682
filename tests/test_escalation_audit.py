"""The auditor's judgement, pure (plain-int clock): a running step needs its timer, due on
time; a stopped, exhausted or paused escalation needs none."""

from __future__ import annotations

import msgspec
import pytest

from responsecentre.escalation.audit import Repair, RepairReason, check, expected_due
from responsecentre.escalation.chains import Chain, Step, Target, TargetKind
from responsecentre.escalation.delivery import Channel
from responsecentre.escalation.runner import Stop, advance, start

CHAIN = Chain("c", (Step((Target(TargetKind.CONSOLE),), (Channel.CONSOLE,), 60_000),) * 2, repeat=0)
GRACE = 5_000


def running(now: int = 0):
    escalation, _ = start(CHAIN, now)
    return escalation  # step 1, due at now + 60 s


@pytest.mark.parametrize(
    ("score", "now", "expected"),
    [
        (60_000, 10_000, None),  # on time, not yet due
        (60_000, 64_000, None),  # due, within the grace: the timer loop's business
        (None, 10_000, Repair(RepairReason.MISSING, 60_000, 0)),  # lost before it was due: put back at its due time
        (None, 70_000, Repair(RepairReason.MISSING, 70_000, 10_000)),  # lost and overdue: fire now
        (60_000, 66_000, Repair(RepairReason.LATE, 66_000, 6_000)),  # left overdue past the grace
        (600_000, 10_000, Repair(RepairReason.WRONG_DUE, 60_000, 0)),  # due far later than its step
        (64_000, 10_000, None),  # a little later than the step (within the grace) is fine
    ],
)
def test_check(score: float | None, now: int, expected: Repair | None) -> None:
    assert check(running(), score, now, GRACE) == expected


def test_a_stopped_or_exhausted_escalation_needs_no_timer() -> None:
    stopped, _ = advance(running(), Stop("acknowledged"), 1_000)
    assert expected_due(stopped) is None and check(stopped, None, 10**9, GRACE) is None
    exhausted = msgspec.structs.replace(running(), exhausted=True, due_ms=None)
    assert check(exhausted, None, 10**9, GRACE) is None


def test_a_paused_escalation_needs_no_timer() -> None:
    paused = msgspec.structs.replace(running(), paused=True)
    assert check(paused, None, 10**9, GRACE) is None
