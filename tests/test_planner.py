"""The planner, pure: who gets which delivery over which channel, with which fallback."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from responsecentre.escalation.chains import Chain, Channel, NotifyMode, Step, Target, TargetKind
from responsecentre.escalation.delivery import Contact, Delivery, PageBody
from responsecentre.escalation.people import Relative, StaffMember, StaffRole
from responsecentre.escalation.planner import (
    DEFAULT_RECEIPT_MS,
    AlarmRef,
    PlanWarning,
    StepContext,
    WarningKind,
    people_for,
    plan,
    plan_dispatch,
    plan_fallback,
    reply_topic,
    turns,
)
from responsecentre.escalation.runner import Notify, NotifyDispatch, Timeout, advance, start
from tests import test_purity

TENANT = "t1"
ALARM = AlarmRef("A1", TENANT, "fall", "critical", "h1", "north")
HANDSET, SMS, EMAIL = Channel.HANDSET, Channel.SMS, Channel.EMAIL


def person(staff_id: str, *contacts: Contact, role: StaffRole = StaffRole.NURSE) -> StaffMember:
    return StaffMember(TENANT, staff_id, f"Name {staff_id}", (role,), ("north",), contacts)


N1 = person("n1", Contact(HANDSET, "n1"), Contact(SMS, "+4790000001"), Contact(EMAIL, "n1@example.org"))
N2 = person("n2", Contact(SMS, "+4790000002"))
N3 = person("n3")  # no contacts listed: the handset, as before contacts existed
TL = person("tl1", Contact(EMAIL, "tl1@example.org"), role=StaffRole.TEAM_LEAD)
KARI = Relative("Kari Nordmann", (Contact(SMS, "+4791111111"), Contact(EMAIL, "kari@example.org")))
OLA = Relative("Ola Nordmann", (Contact(EMAIL, "ola@example.org"),))
CTX = StepContext(
    on_duty={StaffRole.NURSE: (N1, N2, N3), StaffRole.TEAM_LEAD: (TL,)},
    staff={s.staff_id: s for s in (N1, N2, N3, TL)},
    relatives=(KARI, OLA),
)
NURSES = Target(TargetKind.ROLE, "nurse")


def one_step(*targets: Target, channels: tuple[Channel, ...] = (), mode: NotifyMode = NotifyMode.ALL) -> Chain:
    return Chain("c", (Step(targets, channels, 60_000, mode),))


def by_recipient(deliveries: tuple[Delivery, ...]) -> dict[str, tuple[Channel, str, tuple[Channel, ...]]]:
    return {d.recipient: (d.channel, d.address, tuple(c.channel for c in d.fallback)) for d in deliveries}


def test_each_person_gets_their_first_contact_with_the_rest_as_fallback_in_their_order() -> None:
    p = plan(ALARM, one_step(NURSES), Notify(0, 0), CTX, 1_000)
    assert by_recipient(p.deliveries) == {
        "n1": (HANDSET, "n1", (SMS, EMAIL)),
        "n2": (SMS, "+4790000002", ()),
        "n3": (HANDSET, "n3", ()),
    }
    assert p.recipients == ("n1", "n2", "n3") and not p.console and p.warnings == ()
    n1 = p.deliveries[0]
    assert n1.body.reply_topic == "rc/v1/t1/staff/n1/replies" == reply_topic(TENANT, "n1")
    assert n1.receipt_within_ms == DEFAULT_RECEIPT_MS[HANDSET] and n1.attempt == 0
    assert p.deliveries[1].body.reply_topic == ""  # an SMS has no reply topic


def test_the_steps_channels_restrict_which_contacts_are_used() -> None:
    chain = one_step(NURSES, channels=(Channel.CONSOLE, SMS, EMAIL))
    p = plan(ALARM, chain, Notify(0, 0), CTX, 1_000)
    assert by_recipient(p.deliveries) == {"n1": (SMS, "+4790000001", (EMAIL,)), "n2": (SMS, "+4790000002", ())}
    assert p.console  # `console` among the channels shows it there
    assert p.warnings == (PlanWarning(WarningKind.NO_CONTACT, recipient="n3"),)
    assert [t.recipient for t in turns(chain.steps[0], CTX)] == ["n1", "n2"]  # n3 cannot be reached: not frozen


def test_a_console_target_shows_the_step_on_the_console_and_pages_nobody() -> None:
    p = plan(ALARM, one_step(Target(TargetKind.CONSOLE)), Notify(0, 0), CTX, 1_000)
    assert p.console and p.deliveries == () and p.recipients == ()


def test_relatives_are_told_over_their_own_contacts_and_their_names_go_nowhere() -> None:
    p = plan(ALARM, one_step(Target(TargetKind.RELATIVES), channels=(SMS,)), Notify(0, 0), CTX, 1_000)
    assert by_recipient(p.deliveries) == {"relative:0": (SMS, "+4791111111", ())}
    assert p.warnings == (PlanWarning(WarningKind.NO_CONTACT, recipient="relative:1"),)
    assert p.deliveries[0].body.reply_topic == ""
    encoded = msgspec.json.encode(p)
    assert b"Nordmann" not in encoded and b"Kari" not in encoded


def test_a_webhook_target_is_a_webhook_whatever_the_steps_channels() -> None:
    chain = one_step(
        Target(TargetKind.CONSOLE), Target(TargetKind.WEBHOOK, "https://hooks.example.org/rc"), channels=(HANDSET,)
    )
    (d,) = plan(ALARM, chain, Notify(0, 0), CTX, 1_000).deliveries
    assert (d.recipient, d.channel, d.address, d.fallback) == (
        "webhook:1",
        Channel.WEBHOOK,
        "https://hooks.example.org/rc",
        (),
    )
    assert d.receipt_within_ms == DEFAULT_RECEIPT_MS[Channel.WEBHOOK] and d.body.reply_topic == ""


def test_a_fallback_is_the_same_page_over_the_next_contact_until_they_run_out() -> None:
    d0 = plan(ALARM, one_step(NURSES), Notify(0, 0), CTX, 1_000).deliveries[0]
    d1 = plan_fallback(d0, 16_000)
    assert d1 is not None
    assert (d1.id, d1.page_id, d1.channel, d1.address, d1.attempt) == (
        "A1:0.1.0.0:n1:1",
        d0.page_id,
        SMS,
        "+4790000001",
        1,
    )
    assert d1.fallback == (Contact(EMAIL, "n1@example.org"),) and d1.receipt_within_ms == DEFAULT_RECEIPT_MS[SMS]
    assert d1.body.reply_topic == "" and d1.body.ts_ms == 16_000 and d1.body.page_id == d0.page_id
    d2 = plan_fallback(d1, 76_000, {EMAIL: 5_000})
    assert d2 is not None and (d2.channel, d2.attempt, d2.receipt_within_ms, d2.fallback) == (EMAIL, 2, 5_000, ())
    assert plan_fallback(d2, 81_000) is None


def test_a_fallback_back_to_a_handset_carries_the_reply_topic() -> None:
    sms_first = person("n4", Contact(SMS, "+4790000004"), Contact(HANDSET, "n4"))
    ctx = StepContext(on_duty={StaffRole.NURSE: (sms_first,)})
    d0 = plan(ALARM, one_step(NURSES), Notify(0, 0), ctx, 0).deliveries[0]
    d1 = plan_fallback(d0, 60_000)
    assert d0.body.reply_topic == "" and d1 is not None and d1.body.reply_topic == "rc/v1/t1/staff/n4/replies"


@pytest.mark.parametrize(
    ("minimums", "on_duty", "warned"),
    [
        ({}, (N1,), False),  # default minimum 1: someone is on duty, no warning (the old bug warned here)
        ({}, (), True),
        ({StaffRole.NURSE: 2}, (N1,), True),
        ({StaffRole.NURSE: 2}, (N1, N2), False),
    ],
)
def test_a_coverage_warning_only_below_the_minimum(
    minimums: dict[StaffRole, int], on_duty: tuple[StaffMember, ...], warned: bool
) -> None:
    ctx = StepContext(on_duty={StaffRole.NURSE: on_duty}, minimums=minimums)
    p = plan(ALARM, one_step(Target(TargetKind.CONSOLE), NURSES), Notify(0, 0), ctx, 0)
    minimum = minimums.get(StaffRole.NURSE, 1)
    expected = (PlanWarning(WarningKind.COVERAGE, "nurse", "north", len(on_duty), minimum),) if warned else ()
    assert p.warnings == expected


def test_round_robin_plans_the_frozen_person_and_warns_once_per_step_not_per_turn() -> None:
    chain = one_step(NURSES, mode=NotifyMode.ROUND_ROBIN)
    ctx = StepContext(on_duty=CTX.on_duty, minimums={StaffRole.NURSE: 5})
    first = plan(ALARM, chain, Notify(0, 0, 0, ("n1",)), ctx, 0)
    assert first.recipients == ("n1",) and first.warnings[0].kind == WarningKind.COVERAGE
    second = plan(ALARM, chain, Notify(0, 0, 1, ("n2",)), ctx, 60_000)
    assert second.recipients == ("n2",) and second.warnings == ()
    unfrozen = plan(ALARM, chain, Notify(0, 0, 2), ctx, 120_000)  # old API: the turn's person from the roster
    assert unfrozen.recipients == ("n3",)


def test_the_runner_freezes_the_planners_turns() -> None:
    chain = Chain(
        "c",
        (
            Step((NURSES,), (SMS, HANDSET), 60_000, NotifyMode.ROUND_ROBIN),
            Step((Target(TargetKind.ROLE, "team_lead"),), (), 60_000),
        ),
    )
    people = people_for(CTX)
    state, actions = start(chain, 0, people)
    assert actions[0] == Notify(0, 0, 0, ("n1",))
    planned = [plan(ALARM, chain, actions[0], CTX, 0)]
    for turn in range(3):
        state, actions = advance(state, Timeout(0, 0, turn), (turn + 1) * 60_000, people)
        planned.append(plan(ALARM, state.chain, next(a for a in actions if isinstance(a, Notify)), CTX, 0))
    assert [(p.recipients, p.deliveries[0].channel) for p in planned] == [
        (("n1",), HANDSET),  # the step's channels filter; the person's own order decides (not the step's)
        (("n2",), SMS),
        (("n3",), HANDSET),
        (("tl1",), EMAIL),
    ]
    assert planned[0].deliveries[0].fallback == (Contact(SMS, "+4790000001"),)  # e-mail is not allowed here


def test_ids_are_deterministic_and_differ_by_position() -> None:
    chain = one_step(NURSES)
    a = plan(ALARM, chain, Notify(0, 0), CTX, 1_000)
    assert plan(ALARM, chain, Notify(0, 0), CTX, 1_000) == a
    assert [d.id for d in a.deliveries] == ["A1:0.1.0.0:n1:0", "A1:0.1.0.0:n2:0", "A1:0.1.0.0:n3:0"]
    assert a.deliveries[0].page_id == a.deliveries[0].body.page_id == "A1:0.1.0.0:n1"
    others = [
        plan(ALARM, chain, n, CTX, 1_000).deliveries[0].id
        for n in (Notify(0, 1), Notify(0, 0, epoch=1), Notify(0, 0, 1, ("n1",)))
    ]
    assert len({a.deliveries[0].id, *others}) == 4


def test_page_bodies_carry_no_resident_data() -> None:
    assert set(PageBody.__struct_fields__) == {
        "alarm_id",
        "tenant",
        "kind",
        "priority",
        "home_id",
        "zone",
        "step",
        "round",
        "ts_ms",
        "page_id",
        "reply_topic",
        "dispatched",
        "incident_id",
    }
    body = plan(ALARM, one_step(NURSES), Notify(0, 0), CTX, 1_000).deliveries[0].body
    assert msgspec.to_builtins(body) == {
        "alarm_id": "A1",
        "tenant": "t1",
        "kind": "fall",
        "priority": "critical",
        "home_id": "h1",
        "zone": "north",
        "step": 1,
        "round": 0,
        "ts_ms": 1_000,
        "page_id": "A1:0.1.0.0:n1",
        "reply_topic": "rc/v1/t1/staff/n1/replies",
    }


def test_an_unknown_named_person_is_paged_on_the_handset_with_a_warning() -> None:
    p = plan(ALARM, one_step(Target(TargetKind.STAFF, "x9")), Notify(0, 0), CTX, 0)
    assert by_recipient(p.deliveries) == {"x9": (HANDSET, "x9", ())}
    assert p.warnings == (PlanWarning(WarningKind.UNKNOWN_STAFF, recipient="x9"),)


def test_a_dispatch_uses_all_of_the_persons_contacts_and_says_it_is_a_dispatch() -> None:
    p = plan_dispatch(ALARM, NotifyDispatch("n1", 2), CTX, 5_000)
    (d,) = p.deliveries
    assert (d.page_id, d.id, d.channel, d.recipient) == ("A1:d2:n1", "A1:d2:n1:0", HANDSET, "n1")
    assert d.fallback == N1.contacts[1:] and p.recipients == ("n1",) and p.warnings == ()
    assert d.body.dispatched and d.body.step == 0 and d.body.reply_topic == "rc/v1/t1/staff/n1/replies"


def test_the_incident_id_travels_in_the_body() -> None:
    alarm = msgspec.structs.replace(ALARM, incident_id="I7")
    assert plan(alarm, one_step(NURSES), Notify(0, 0), CTX, 0).deliveries[0].body.incident_id == "I7"


def test_the_planner_is_pure() -> None:
    path = Path(test_purity.PKG) / "escalation" / "planner.py"
    test_purity.test_pure_module_has_no_io_and_no_clock(path)
