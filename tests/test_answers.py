"""The paged person's answers, pure: accept, en route, on site, resolve, and every way a
reply is turned away (not paged, twice, a step that is over, not hers)."""

from __future__ import annotations

import pytest

from responsecentre.alarms.model import (
    Alarm,
    AlarmState,
    Answer,
    Page,
    ReplyRejected,
    Trigger,
    accept,
    acknowledge,
    en_route,
    on_site,
    raise_alarm,
    record_pages,
    rejected_entry,
    resolve_by,
    timeout,
)
from responsecentre.escalation.chains import Chain, Step, Target, TargetKind
from responsecentre.escalation.delivery import Channel
from responsecentre.escalation.runner import Unschedule

NURSE = Target(TargetKind.ROLE, "nurse")
CHAIN = Chain("urgent", (Step((NURSE,), (Channel.HANDSET,), 60_000),) * 2, repeat=0)


def paged(staff: tuple[str, ...] = ("n1", "n2")) -> Alarm:
    """An alarm raised at t=0 whose step 1 paged `staff`."""
    trigger = Trigger("c1", "rule-a", "fall", "high", "urgent", "h1", "north", "h1-fall", 0, "e1", "fall.detected")
    alarm, _, _ = raise_alarm("A1", "t", trigger, CHAIN, 0)
    return record_pages(alarm, [Page(f"A1.1.0.{s}", s, 0, 0, 0) for s in staff])


def test_accept_takes_the_alarm_stops_the_chain_and_marks_the_page() -> None:
    alarm, entries, actions = accept(paged(), "n1", "nurse-one", None, 5_000, via="mqtt")
    assert alarm.state == AlarmState.ACKNOWLEDGED and alarm.accepted_by == "n1"
    assert alarm.acknowledged_by == "nurse-one" and alarm.acknowledged_ms == 5_000
    assert alarm.escalation.stopped and actions == [Unschedule(0, 0)]
    assert [p.answer for p in alarm.pages] == [Answer.ACCEPT, None]
    (entry,) = entries
    assert (entry.what, entry.detail["staff"], entry.detail["via"], entry.detail["waited_s"]) == (
        "accepted",
        "n1",
        "mqtt",
        5.0,
    )


def test_the_full_visit_accept_en_route_on_site_resolve() -> None:
    alarm, _, _ = accept(paged(), "n1", "nurse-one", "A1.1.0.n1", 1_000)
    alarm, _ = en_route(alarm, "n1", "nurse-one", 2_000)
    alarm, entries = on_site(alarm, "n1", "nurse-one", 62_000)
    assert alarm.state == AlarmState.ON_SITE and entries[0].detail["travel_s"] == 60.0
    alarm, entries, _ = resolve_by(alarm, "n1", "nurse-one", "assisted", "helped to bed", 90_000, via="mqtt")
    assert alarm.state == AlarmState.RESOLVED and alarm.closing_code == "assisted"
    assert entries[0].detail == {"code": "assisted", "note": "helped to bed", "via": "mqtt"}


@pytest.mark.parametrize(
    ("staff", "page_id", "code"),
    [
        ("n9", None, "not_paged"),  # never paged
        ("n1", "A1.1.0.n2", "not_paged"),  # quoting someone else's page
        ("n1", "nonsense", "not_paged"),
    ],
)
def test_a_reply_from_someone_not_paged_is_rejected(staff: str, page_id: str | None, code: str) -> None:
    with pytest.raises(ReplyRejected) as caught:
        accept(paged(), staff, staff, page_id, 1_000)
    assert caught.value.code == code


def test_only_once_and_only_while_nobody_has_taken_it() -> None:
    alarm, _, _ = accept(paged(), "n1", "nurse-one", None, 1_000)
    with pytest.raises(ReplyRejected) as twice:
        accept(alarm, "n1", "nurse-one", None, 2_000)
    assert twice.value.code == "already_answered"
    with pytest.raises(ReplyRejected) as late:
        accept(alarm, "n2", "nurse-two", None, 2_000)
    assert late.value.code == "already_taken" and "nurse-one" in late.value.reason


def test_a_page_whose_step_is_over_cannot_be_answered() -> None:
    alarm, _, _ = timeout(paged(), 0, 0, 60_000)  # step 2 runs now; nobody was paged in it
    assert alarm.escalation.step == 1
    with pytest.raises(ReplyRejected) as caught:
        accept(alarm, "n1", "nurse-one", None, 61_000)
    assert caught.value.code == "not_live" and "step 1" in caught.value.reason


def test_an_unhandled_alarm_can_still_be_taken_by_anyone_it_paged() -> None:
    alarm, _, _ = timeout(paged(), 0, 0, 60_000)
    alarm, _, _ = timeout(alarm, 1, 0, 120_000)
    assert alarm.unhandled and alarm.escalation.exhausted
    alarm, _, _ = accept(alarm, "n2", "nurse-two", None, 130_000)
    assert alarm.accepted_by == "n2"


def test_an_operator_ack_leaves_no_page_to_accept() -> None:
    alarm, _, _ = acknowledge(paged(), "op", 1_000)
    with pytest.raises(ReplyRejected) as caught:
        accept(alarm, "n1", "nurse-one", None, 2_000)
    assert caught.value.code == "already_taken"


def test_en_route_on_site_and_resolve_belong_to_the_nurse_who_accepted() -> None:
    alarm, _, _ = accept(paged(), "n1", "nurse-one", None, 1_000)
    for step in (
        lambda: en_route(alarm, "n2", "nurse-two", 2_000),
        lambda: on_site(alarm, "n2", "nurse-two", 2_000),
        lambda: resolve_by(alarm, "n2", "nurse-two", "assisted", "", 2_000),
    ):
        with pytest.raises(ReplyRejected) as caught:
            step()
        assert caught.value.code == "not_yours"
    # an operator (no staff id) records them on her behalf
    alarm, _ = on_site(alarm, None, "op", 3_000)
    assert alarm.state == AlarmState.ON_SITE


def test_en_route_before_anyone_accepted_is_a_bad_state() -> None:
    with pytest.raises(ReplyRejected) as caught:
        en_route(paged(), None, "op", 1_000)
    assert caught.value.code == "bad_state"


def test_a_rejection_is_a_timeline_entry_with_its_reason() -> None:
    rejection = ReplyRejected("not_live", "step 1 is over")
    entry = rejected_entry("n1", "accept", rejection, 5_000, "mqtt")
    assert (entry.what, entry.by) == ("reply_rejected", "n1")
    assert entry.detail == {"answer": "accept", "code": "not_live", "reason": "step 1 is over", "via": "mqtt"}
