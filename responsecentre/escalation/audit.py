"""The escalation auditor's judgement, pure: does an escalating alarm have the timer it
needs, due when it should be?

Every running step is backed by one durable timer (a member of `rc:timers` whose score is
the step's due time). A timer that went missing (a bug, a hand-edited Redis, a restore
from an old backup) or that is left overdue (a timer loop that stopped) would leave the
alarm on its step for ever: nobody else would be told. The shell (`responsecentre.auditor`)
reads each open alarm's timer and asks `check`; a repair puts the timer back, is counted
and raises a technical alarm of the centre itself, because the cause is ours to find.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from responsecentre.escalation.runner import Escalation


class RepairReason(StrEnum):
    MISSING = "missing"  # no timer for the running step
    LATE = "late"  # the timer is overdue by more than the grace: the timer loop is not firing it
    WRONG_DUE = "wrong_due"  # the timer exists but is due later than the step's own due time
    INCIDENT_MEMBER = "incident_member"  # a closed alarm still listed open on its incident
    INCIDENT_LEAD = "incident_lead"  # an incident's members wait and none carries its escalation


class Repair(msgspec.Struct, frozen=True):
    reason: RepairReason
    due_ms: int  # when the timer should fire: the step's due time (now, if that has passed)
    overdue_ms: int  # how far past its due time the step was when found (0 for a future step)


def expected_due(escalation: Escalation) -> int | None:
    """The due time of the timer an escalation needs, or None when it needs none
    (stopped, exhausted, paused by a dispatch)."""
    if escalation.stopped or escalation.exhausted or escalation.due_ms is None:
        return None
    if getattr(escalation, "paused", False):
        return None
    return escalation.due_ms


def check(escalation: Escalation, timer_score_ms: float | None, now_ms: int, grace_ms: int) -> Repair | None:
    """Whether the escalation's timer needs a repair. `timer_score_ms` is the score of its
    timer member in `rc:timers` (None: no such member). A timer that is merely due (within
    the grace) is the timer loop's business, not a fault."""
    due = expected_due(escalation)
    if due is None:
        return None
    overdue = max(0, now_ms - due)
    if timer_score_ms is None:
        return Repair(RepairReason.MISSING, max(due, now_ms), overdue)
    score = int(timer_score_ms)
    if score > due + grace_ms:
        return Repair(RepairReason.WRONG_DUE, max(due, now_ms), overdue)
    if now_ms - score > grace_ms:
        return Repair(RepairReason.LATE, now_ms, now_ms - score)
    return None
