"""Rosters, pure: shift patterns, midnight, overrides, roster order, coverage, DST in
Europe/Oslo, the loader's file:line messages. The clock is a plain int."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from responsecentre.escalation.delivery import Channel, Contact
from responsecentre.escalation.people import StaffRole
from responsecentre.escalation.roster import (
    ALL_DAYS,
    Coverage,
    Day,
    Roster,
    RosterError,
    Shift,
    Source,
    parse_roster,
)

ROOT = Path(__file__).resolve().parent.parent
OSLO = ZoneInfo("Europe/Oslo")
NURSE, LEAD, OPERATOR = StaffRole.NURSE, StaffRole.TEAM_LEAD, StaffRole.OPERATOR
HOUR = 3_600_000

STAFF = [
    {"id": "a", "name": "Anne", "role": "nurse", "zone": "north"},
    {"id": "b", "name": "Bo", "role": "nurse", "zone": "north"},
    {"id": "c", "name": "Cato", "role": "nurse", "zone": "south"},
    {"id": "f", "name": "Frida", "role": "nurse", "zones": ["north", "south"]},
    {"id": "lead", "name": "Lise", "roles": ["team_lead", "nurse"], "zone": "all"},
    {"id": "op", "name": "Ola", "role": "operator", "on_duty": True},
]


def at(text: str, fold: int = 0) -> int:
    """Europe/Oslo wall time -> epoch ms (fold=1: the second of a repeated time)."""
    return int(datetime.fromisoformat(text).replace(tzinfo=OSLO, fold=fold).timestamp()) * 1000


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 1000


def make(
    shifts: list[dict[str, Any]] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    staff: list[dict[str, Any]] | None = None,
    **tenant: Any,
) -> Roster:
    spec: dict[str, Any] = {"staff": STAFF if staff is None else staff, **tenant}
    if shifts is not None:
        spec["shifts"] = shifts
    if overrides is not None:
        spec["overrides"] = overrides
    return parse_roster(yaml.safe_dump({"tenants": {"t": spec}}), "test.yaml")["t"]


def ids(roster: Roster, zone: str, role: StaffRole, ms: int) -> list[str]:
    return [m.staff_id for m in roster.who(zone, role, ms)]


DAY = {"name": "day", "zone": "north", "role": "nurse", "from": "07:00", "to": "15:00", "staff": ["a", "b"]}
NIGHT = {"name": "night", "zone": "north", "role": "nurse", "from": "23:00", "to": "07:00", "staff": ["b"]}
SOUTH = {"zone": "south", "role": "nurse", "from": "07:00", "to": "19:00", "staff": ["c"]}


# -- the old file: on_duty flags --------------------------------------------------------------


OLD_STAFF_YAML = """\
tenants:
  vestby:
    staff:
      - {id: s-op1, name: Operator One, role: operator, zone: all, on_duty: true}
      - {id: s-n1, name: Nurse North, role: nurse, zone: north, on_duty: true}
      - {id: s-n2, name: Nurse North Night, role: nurse, zone: north, on_duty: false}
      - {id: s-n3, name: Nurse South, role: nurse, zone: south, on_duty: true}
      - {id: s-tl1, name: Team Lead, role: team_lead, zone: all, on_duty: true}
      - {id: s-tech1, name: Technician, role: technician, zone: all, on_duty: true}
"""


def test_the_old_staff_yaml_with_on_duty_flags_keeps_working() -> None:
    rosters = parse_roster(OLD_STAFF_YAML)
    roster = rosters["vestby"]
    for ms in (at("2027-03-28T02:30"), at("2027-07-01T12:00"), 0):
        assert ids(roster, "north", NURSE, ms) == ["s-n1"]  # s-n2 has on_duty: false
        assert ids(roster, "south", NURSE, ms) == ["s-n3"]
        assert ids(roster, "south", LEAD, ms) == ["s-tl1"]  # zone all covers every zone
    assert [d.source for d in roster.duty("north", NURSE, 0)] == [Source.ALWAYS]
    member = roster.member("s-n1")
    assert member is not None and member.contacts == (Contact(Channel.HANDSET, "s-n1"),)
    assert member.roles == (NURSE,) and member.zones == ("north",)
    assert roster.member("nobody") is None


def test_on_duty_default_is_true_without_shifts_and_false_with_them() -> None:
    staff = [{"id": "a", "role": "nurse", "zone": "north"}, {"id": "b", "role": "nurse", "zone": "north"}]
    assert ids(make(staff=staff), "north", NURSE, 0) == ["a", "b"]
    one = [{"zone": "north", "role": "nurse", "from": "07:00", "to": "15:00", "staff": ["a"]}]
    roster = make(one, staff=staff)
    assert ids(roster, "north", NURSE, at("2027-05-03T08:00")) == ["a"]  # b is on no shift: off
    assert ids(roster, "north", NURSE, at("2027-05-03T16:00")) == []


# -- weekly patterns -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("2027-05-03T06:59:59", []),
        ("2027-05-03T07:00", ["a", "b"]),
        ("2027-05-03T14:59:59", ["a", "b"]),
        ("2027-05-03T15:00", []),
    ],
)
def test_a_day_shift_is_from_inclusive_to_exclusive(local: str, expected: list[str]) -> None:
    assert ids(make([DAY]), "north", NURSE, at(local)) == expected


def test_days_are_the_days_a_shift_starts_on() -> None:
    friday_night = {**NIGHT, "days": ["fri"]}
    roster = make([friday_night])
    assert ids(roster, "north", NURSE, at("2027-05-07T23:30")) == ["b"]  # Friday 23:30
    assert ids(roster, "north", NURSE, at("2027-05-08T03:00")) == ["b"]  # Saturday morning: Friday's shift
    assert ids(roster, "north", NURSE, at("2027-05-08T07:00")) == []
    assert ids(roster, "north", NURSE, at("2027-05-07T03:00")) == []  # Thursday's night: not planned
    assert ids(roster, "north", NURSE, at("2027-05-08T23:30")) == []  # Saturday night: not planned


def test_weekday_shift_skips_the_weekend() -> None:
    roster = make([{**DAY, "days": ["mon", "tue", "wed", "thu", "fri"]}])
    assert ids(roster, "north", NURSE, at("2027-05-07T08:00")) == ["a", "b"]  # Friday
    assert ids(roster, "north", NURSE, at("2027-05-08T08:00")) == []  # Saturday


def test_zone_and_role_select_the_shift() -> None:
    lead = {"role": "team_lead", "from": "08:00", "to": "16:00", "staff": ["lead"]}  # zone: all by default
    roster = make([DAY, SOUTH, lead])
    ms = at("2027-05-03T09:00")
    assert ids(roster, "north", NURSE, ms) == ["a", "b"]
    assert ids(roster, "south", NURSE, ms) == ["c"]
    assert ids(roster, "east", NURSE, ms) == []
    assert ids(roster, "south", LEAD, ms) == ["lead"]
    assert ids(roster, "east", LEAD, ms) == ["lead"]
    assert ids(roster, "north", OPERATOR, ms) == ["op"]  # on_duty: true, no shifts: always


def test_roster_order_is_the_shifts_order_earlier_shifts_first_always_last() -> None:
    evening_overlap = {"zone": "north", "role": "nurse", "from": "06:00", "to": "10:00", "staff": ["f", "a"]}
    every_zone = {"zone": "all", "role": "nurse", "from": "06:00", "to": "10:00", "staff": ["lead"]}
    roster = make([{**NIGHT, "staff": ["b", "a"]}, every_zone, evening_overlap, DAY])
    # 06:30: last night's shift (started 23:00) first, then this morning's in file order.
    assert ids(roster, "north", NURSE, at("2027-05-04T06:30")) == ["b", "a", "lead", "f"]
    # 07:30: the day shift (07:00) after the 06:00 ones; a person appears once, first place kept.
    assert ids(roster, "north", NURSE, at("2027-05-04T07:30")) == ["lead", "f", "a", "b"]
    # The same question twice gives the same order.
    assert roster.who("north", NURSE, at("2027-05-04T06:30")) == roster.who("north", NURSE, at("2027-05-04T06:30"))


def test_until_is_when_the_shift_ends() -> None:
    roster = make([NIGHT, DAY])
    (night,) = roster.duty("north", NURSE, at("2027-05-04T02:00"))
    assert night.until_ms == at("2027-05-04T07:00")
    assert (night.source, night.shift) == (Source.PATTERN, "night 23:00-07:00")
    always = make().duty("north", OPERATOR, 0)
    assert [(d.member.staff_id, d.source, d.until_ms) for d in always] == [("op", Source.ALWAYS, None)]


# -- overrides ------------------------------------------------------------------------------

CHRISTMAS_EVE = {
    "type": "crew",
    "date": "2027-12-24",
    "zone": "north",
    "role": "nurse",
    "note": "Christmas Eve",
    "shifts": [{"name": "holiday", "from": "09:00", "to": "21:00", "staff": ["f"]}],
}


def test_a_crew_replaces_the_days_shifts_for_its_zone_and_role() -> None:
    roster = make([DAY, NIGHT, SOUTH], [CHRISTMAS_EVE])
    assert ids(roster, "north", NURSE, at("2027-12-24T03:00")) == ["b"]  # the night of the 23rd runs on
    assert ids(roster, "north", NURSE, at("2027-12-24T08:00")) == []  # the pattern's day shift is replaced
    (duty,) = roster.duty("north", NURSE, at("2027-12-24T10:00"))
    assert (duty.member.staff_id, duty.source, duty.shift, duty.note) == (
        "f",
        Source.OVERRIDE,
        "holiday 09:00-21:00",
        "Christmas Eve",
    )
    assert ids(roster, "north", NURSE, at("2027-12-24T23:30")) == []  # the 24th's night shift too
    assert ids(roster, "south", NURSE, at("2027-12-24T10:00")) == ["c"]  # other zones as planned
    assert ids(roster, "north", NURSE, at("2027-12-23T10:00")) == ["a", "b"]
    assert ids(roster, "north", NURSE, at("2027-12-25T10:00")) == ["a", "b"]


def test_a_crew_for_every_zone_replaces_the_role_everywhere_and_may_be_empty() -> None:
    closed = {"type": "crew", "dates": {"from": "2027-12-24", "to": "2027-12-26"}, "zone": "all", "role": "nurse"}
    closed["shifts"] = []
    roster = make([DAY, SOUTH], [closed])
    for day in ("2027-12-24", "2027-12-25", "2027-12-26"):
        assert ids(roster, "north", NURSE, at(f"{day}T10:00")) == []
        assert ids(roster, "south", NURSE, at(f"{day}T10:00")) == []
    assert ids(roster, "south", NURSE, at("2027-12-27T10:00")) == ["c"]


def test_leave_takes_a_person_off_the_shifts_that_start_on_those_days() -> None:
    sick = {"type": "leave", "staff": "b", "dates": {"from": "2027-11-02", "to": "2027-11-03"}, "note": "sick"}
    roster = make([DAY, NIGHT], [sick])
    assert ids(roster, "north", NURSE, at("2027-11-02T03:00")) == ["b"]  # the night that began on the 1st
    assert ids(roster, "north", NURSE, at("2027-11-02T08:00")) == ["a"]
    assert ids(roster, "north", NURSE, at("2027-11-03T23:30")) == []
    assert ids(roster, "north", NURSE, at("2027-11-04T03:00")) == []  # the night of the 3rd
    assert ids(roster, "north", NURSE, at("2027-11-04T08:00")) == ["a", "b"]


def test_leave_applies_to_crews_and_to_always_on_duty() -> None:
    roster = make(
        [DAY],
        [
            CHRISTMAS_EVE,
            {"type": "leave", "staff": "f", "date": "2027-12-24"},
            {"type": "leave", "staff": "op", "date": "2027-12-24"},
        ],
    )
    assert ids(roster, "north", NURSE, at("2027-12-24T10:00")) == []
    assert ids(roster, "north", OPERATOR, at("2027-12-24T10:00")) == []
    assert ids(roster, "north", OPERATOR, at("2027-12-25T00:00")) == ["op"]
    assert roster.coverage("north", NURSE, at("2027-12-24T10:00")) == Coverage(on_duty=0, minimum=1, short=True)


def test_a_swap_puts_the_other_person_in_the_same_place() -> None:
    swap = {"type": "swap", "out": "a", "in": "f", "date": "2027-11-10"}
    roster = make([DAY], [swap])
    duties = roster.duty("north", NURSE, at("2027-11-10T08:00"))
    assert [(d.member.staff_id, d.source, d.note) for d in duties] == [
        ("f", Source.OVERRIDE, "swap for a"),
        ("b", Source.PATTERN, ""),
    ]
    assert ids(roster, "north", NURSE, at("2027-11-11T08:00")) == ["a", "b"]


def test_an_exchange_is_two_swaps_applied_at_once() -> None:
    late = {"name": "late", "zone": "north", "role": "nurse", "from": "15:00", "to": "23:00", "staff": ["f"]}
    exchange = [
        {"type": "swap", "out": "a", "in": "f", "date": "2027-11-10"},
        {"type": "swap", "out": "f", "in": "a", "date": "2027-11-10"},
    ]
    roster = make([DAY, late], exchange)
    assert ids(roster, "north", NURSE, at("2027-11-10T08:00")) == ["f", "b"]
    assert ids(roster, "north", NURSE, at("2027-11-10T16:00")) == ["a"]


def test_a_swap_limited_to_a_zone_or_role() -> None:
    every_zone = {"zone": "all", "role": "team_lead", "from": "08:00", "to": "16:00", "staff": ["lead"]}
    stand_in = {"id": "lead2", "roles": ["team_lead", "nurse"], "zone": "all"}
    by_zone = {"type": "swap", "out": "lead", "in": "lead2", "date": "2027-11-10", "zone": "south"}
    roster = make([every_zone], [by_zone], staff=[*STAFF, stand_in])
    ms = at("2027-11-10T09:00")
    assert ids(roster, "south", LEAD, ms) == ["lead2"]
    assert ids(roster, "north", LEAD, ms) == ["lead"]
    nurse_day = {"zone": "north", "role": "nurse", "from": "08:00", "to": "16:00", "staff": ["lead"]}
    by_role = {"type": "swap", "out": "lead", "in": "lead2", "date": "2027-11-10", "role": "nurse"}
    roster = make([every_zone, nurse_day], [by_role], staff=[*STAFF, stand_in])
    assert ids(roster, "north", NURSE, ms) == ["lead2"]
    assert ids(roster, "north", LEAD, ms) == ["lead"]


def test_a_swap_with_someone_already_on_the_shift_leaves_them_once() -> None:
    roster = make([DAY], [{"type": "swap", "out": "a", "in": "b", "date": "2027-11-10"}])
    assert ids(roster, "north", NURSE, at("2027-11-10T08:00")) == ["b"]


def test_a_swap_stands_in_for_someone_always_on_duty() -> None:
    staff = [*STAFF, {"id": "op2", "role": "operator", "on_duty": False}]
    roster = make(None, [{"type": "swap", "out": "op", "in": "op2", "date": "2027-11-10"}], staff=staff)
    assert ids(roster, "north", OPERATOR, at("2027-11-10T12:00")) == ["op2"]
    assert ids(roster, "north", OPERATOR, at("2027-11-11T12:00")) == ["op"]


def test_a_sick_person_swapped_out_is_replaced_and_not_listed() -> None:
    overrides = [
        {"type": "leave", "staff": "c", "dates": {"from": "2027-11-01", "to": "2027-11-05"}},
        {"type": "swap", "out": "c", "in": "f", "dates": {"from": "2027-11-01", "to": "2027-11-05"}},
    ]
    roster = make([SOUTH], overrides)
    assert ids(roster, "south", NURSE, at("2027-11-03T08:00")) == ["f"]
    # A person on leave is not brought in by a swap either.
    overrides.append({"type": "leave", "staff": "f", "date": "2027-11-04"})
    assert ids(make([SOUTH], overrides), "south", NURSE, at("2027-11-04T08:00")) == []


# -- coverage -------------------------------------------------------------------------------


def test_coverage_warns_only_below_the_minimum() -> None:
    ms = at("2027-05-03T08:00")
    roster = make([DAY, SOUTH])
    assert roster.coverage("north", NURSE, ms) == Coverage(on_duty=2, minimum=1, short=False)
    assert roster.coverage("north", NURSE, at("2027-05-03T20:00")) == Coverage(on_duty=0, minimum=1, short=True)
    roster = make([DAY, SOUTH], minimum={"nurse": {"north": 3, "all": 2}, "team_lead": 0})
    assert roster.coverage("north", NURSE, ms) == Coverage(on_duty=2, minimum=3, short=True)
    assert roster.coverage("south", NURSE, ms) == Coverage(on_duty=1, minimum=2, short=True)
    assert roster.coverage("north", LEAD, ms) == Coverage(on_duty=0, minimum=0, short=False)
    roster = make([DAY, SOUTH], minimum={"nurse": 2})
    assert not roster.coverage("north", NURSE, ms).short
    assert roster.coverage("south", NURSE, ms).short


def test_on_duty_and_minimums_for_every_role_as_the_planner_takes_them() -> None:
    roster = make([DAY, SOUTH], minimum={"nurse": {"north": 2}})
    ms = at("2027-05-03T08:00")
    on_duty = roster.on_duty("north", ms)
    assert set(on_duty) == set(StaffRole)
    assert [m.staff_id for m in on_duty[NURSE]] == ["a", "b"]
    assert on_duty[OPERATOR] == roster.who("north", OPERATOR, ms) and on_duty[LEAD] == ()
    assert roster.minimums("north") == {role: 2 if role is NURSE else 1 for role in StaffRole}
    assert roster.minimums("south")[NURSE] == 1


# -- daylight saving time in Europe/Oslo ------------------------------------------------------


def shift_span(roster: Roster, start_ms: int) -> int:
    (duty,) = roster.duty("north", NURSE, start_ms)
    assert duty.until_ms is not None
    return duty.until_ms - start_ms


def test_the_spring_forward_night_is_seven_hours() -> None:
    roster = make([NIGHT])
    start = at("2027-03-27T23:00")
    assert shift_span(roster, start) == 7 * HOUR
    assert ids(roster, "north", NURSE, utc("2027-03-28T00:59:59")) == ["b"]  # 01:59:59 CET
    assert ids(roster, "north", NURSE, utc("2027-03-28T01:00")) == ["b"]  # 03:00 CEST
    assert ids(roster, "north", NURSE, at("2027-03-28T06:59")) == ["b"]
    assert ids(roster, "north", NURSE, at("2027-03-28T07:00")) == []
    assert at("2027-03-28T07:00") - start == 7 * HOUR


def test_the_fall_back_night_is_nine_hours_and_both_half_past_twos_are_on_duty() -> None:
    roster = make([NIGHT])
    start = at("2027-10-30T23:00")
    assert shift_span(roster, start) == 9 * HOUR
    first, second = at("2027-10-31T02:30", fold=0), at("2027-10-31T02:30", fold=1)
    assert second - first == HOUR
    assert ids(roster, "north", NURSE, first) == ["b"]
    assert ids(roster, "north", NURSE, second) == ["b"]
    assert ids(roster, "north", NURSE, at("2027-10-31T07:00")) == []


def test_a_shift_that_starts_in_the_skipped_hour_starts_when_the_clocks_jump() -> None:
    early = {"zone": "north", "role": "nurse", "from": "02:30", "to": "06:00", "staff": ["a"]}
    roster = make([early])
    assert ids(roster, "north", NURSE, utc("2027-03-28T00:59:59")) == []  # 01:59:59 CET
    assert ids(roster, "north", NURSE, utc("2027-03-28T01:00")) == ["a"]  # 03:00 CEST
    assert shift_span(roster, utc("2027-03-28T01:00")) == 3 * HOUR


def test_a_shift_that_ends_in_the_skipped_hour_ends_when_the_clocks_jump() -> None:
    late = {"zone": "north", "role": "nurse", "from": "22:00", "to": "02:30", "staff": ["a"]}
    roster = make([late])
    assert shift_span(roster, at("2027-03-27T22:00")) == 4 * HOUR  # 22:00 CET .. 02:00 CET = 03:00 CEST
    assert ids(roster, "north", NURSE, utc("2027-03-28T01:00")) == []


def test_a_boundary_in_the_repeated_hour_is_read_pointwise() -> None:
    """02:30-03:00 on the fall-back day holds twice (each 02:30-03:00 on the wall); a shift
    ending at 02:30 is off from the first 02:30 and on again from the second 02:00."""
    short = {"zone": "north", "role": "nurse", "from": "02:30", "to": "03:00", "staff": ["a"]}
    roster = make([short])
    first, second = at("2027-10-31T02:30", fold=0), at("2027-10-31T02:30", fold=1)
    assert ids(roster, "north", NURSE, first) == ["a"]
    assert ids(roster, "north", NURSE, second) == ["a"]
    assert ids(roster, "north", NURSE, at("2027-10-31T02:00", fold=1)) == []
    assert shift_span(roster, first) == HOUR // 2  # this stretch ends at the clock change
    assert shift_span(roster, second) == HOUR // 2
    until_half_two = {"zone": "north", "role": "nurse", "from": "23:00", "to": "02:30", "staff": ["a"]}
    roster = make([until_half_two])
    assert ids(roster, "north", NURSE, at("2027-10-31T02:45", fold=0)) == []
    assert ids(roster, "north", NURSE, at("2027-10-31T02:15", fold=1)) == ["a"]
    assert shift_span(roster, at("2027-10-31T02:00", fold=0)) == HOUR // 2


def test_a_shift_ending_at_the_fall_back_instant_runs_on_through_the_repeated_hour() -> None:
    roster = make([{"zone": "north", "role": "nurse", "from": "23:00", "to": "03:00", "staff": ["a"]}])
    assert shift_span(roster, at("2027-10-30T23:00")) == 5 * HOUR


# A brute-force reference: per minute, the wall clock from zoneinfo, each shift checked
# on the day it starts and the day before, with datetimes (not milliseconds).


def reference_on(shift: Shift, local: datetime) -> bool:
    naive = local.replace(tzinfo=None)
    for start_day in (naive.date() - timedelta(days=1), naive.date()):
        if Day.of(start_day) not in shift.days:
            continue
        start = datetime.combine(start_day, shift.starts)
        end_day = start_day + timedelta(days=1) if shift.ends < shift.starts else start_day
        if start <= naive < datetime.combine(end_day, shift.ends):
            return True
    return False


HALF_HOURS = st.integers(0, 47).map(lambda n: time(n // 2, 30 * (n % 2)))


@settings(max_examples=60, deadline=None)
@given(
    starts=HALF_HOURS,
    ends=HALF_HOURS,
    day=st.sampled_from([date(2027, 3, 28), date(2027, 10, 31), date(2027, 3, 27), date(2027, 10, 30)]),
    minute=st.integers(-6 * 60, 30 * 60),
    days=st.sets(st.sampled_from(list(Day)), min_size=1),
)
def test_who_and_until_equal_a_minute_by_minute_evaluation(
    starts: time, ends: time, day: date, minute: int, days: set[Day]
) -> None:
    if starts == ends:
        return
    shift = Shift("north", NURSE, starts, ends, ("a",), tuple(d for d in ALL_DAYS if d in days))
    base = utc(day.isoformat() + "T00:00")
    ms = base + minute * 60_000
    roster = make([{"zone": "north", "role": "nurse", "from": f"{starts:%H:%M}", "to": f"{ends:%H:%M}",
                    "staff": ["a"], "days": [d.value for d in shift.days]}])  # fmt: skip
    local = datetime.fromtimestamp(ms / 1000, OSLO)
    duties = roster.duty("north", NURSE, ms)
    assert bool(duties) == reference_on(shift, local)
    if duties:
        (duty,) = duties
        assert duty.until_ms is not None
        # The first minute after `ms` at which the reference says off (transitions and
        # shift bounds fall on whole minutes); this is the end of the current stretch.
        step = 60_000
        probe = ms + step
        while reference_on(shift, datetime.fromtimestamp(probe / 1000, OSLO)):
            probe += step
            assert probe - ms < 30 * HOUR
        assert duty.until_ms == probe


# -- msgspec round trip (the API reads and writes rosters as JSON) ----------------------------


def test_a_roster_survives_a_json_round_trip() -> None:
    text = (ROOT / "escalation" / "staff.yaml").read_text()
    roster = parse_roster(text, "escalation/staff.yaml")["vestby"]
    again = msgspec.json.decode(msgspec.json.encode(roster), type=Roster)
    assert again == roster
    assert b'"type":"swap"' in msgspec.json.encode(roster)


# -- the example file -----------------------------------------------------------------------


def test_the_example_roster_answers_as_its_comments_say() -> None:
    path = ROOT / "escalation" / "staff.yaml"
    roster = parse_roster(path.read_text(), str(path))["vestby"]
    assert roster.timezone == "Europe/Oslo"
    # Same ids as escalation/staff.yaml.
    assert {"s-op1", "s-n1", "s-n2", "s-n3", "s-tl1", "s-tech1"} <= set(roster.staff)
    assert ids(roster, "north", NURSE, at("2027-11-09T08:00")) == ["s-n1"]  # a Tuesday day
    assert ids(roster, "north", NURSE, at("2027-11-09T02:00")) == ["s-n2"]
    assert ids(roster, "south", NURSE, at("2027-11-02T08:00")) == ["s-n7"]  # s-n3 sick, float covers
    assert ids(roster, "north", NURSE, at("2027-11-10T08:00")) == ["s-n5"]  # the exchange
    assert ids(roster, "north", NURSE, at("2027-11-10T16:00")) == ["s-n1"]
    assert ids(roster, "north", NURSE, at("2027-12-24T10:00")) == ["s-n7"]  # Christmas Eve crew
    assert ids(roster, "north", NURSE, at("2027-12-24T20:00")) == ["s-n2"]
    assert ids(roster, "north", StaffRole.TECHNICIAN, at("2027-03-28T02:30", fold=0)) == ["s-tech1"]
    assert ids(roster, "east", OPERATOR, at("2027-03-28T12:00")) == ["s-op1"]
    # Every zone and role with a minimum is covered at every hour of a week with DST.
    for hour in range(7 * 24):
        ms = utc("2027-10-27T00:00") + hour * HOUR
        for zone in ("north", "south"):
            for role in (NURSE, LEAD, StaffRole.TECHNICIAN):
                assert not roster.coverage(zone, role, ms).short, (zone, role, hour)
    member = roster.member("s-tech1")
    assert member is not None and [c.channel for c in member.contacts] == [
        Channel.HANDSET,
        Channel.SMS,
        Channel.WEBHOOK,
    ]


# -- the loader's messages ------------------------------------------------------------------

HEAD = """\
tenants:
  t:
    staff:
      - {id: a, role: nurse, zone: north}
      - {id: op, role: operator}
"""
SHIFT = "    shifts:\n      - {%s}\n"  # on line 7
OVERRIDE = "    overrides:\n      - {%s}\n"  # on line 7
TIMES = "from: '07:00', to: '15:00'"


@pytest.mark.parametrize(
    ("tail", "line", "message"),
    [
        (SHIFT % f"zone: north, role: nurse, {TIMES}, staff: [a], zonee: north", 7, "unknown key 'zonee'"),
        (SHIFT % f"zone: north, role: nurse, {TIMES}, staff: [a, zz]", 7, "unknown staff id 'zz'"),
        (SHIFT % f"zone: north, role: nurce, {TIMES}, staff: [a]", 7, "unknown role 'nurce' (did you mean 'nurse'?)"),
        (SHIFT % "zone: north, role: nurse, from: '25:00', to: '07:00', staff: [a]", 7, "from '25:00' is not a time"),
        (SHIFT % "zone: north, role: nurse, from: 07:00, to: 24:00, staff: [a]", 7, "(midnight is 00:00)"),
        (
            "    shifts:\n      - role: nurse\n        from: '07:00'\n        to: '07:00'\n        staff: [a]\n",
            9,
            "is empty",
        ),
        (SHIFT % f"zone: north, role: nurse, days: [mon, tues], {TIMES}, staff: [a]", 7, "unknown day 'tues'"),
        (SHIFT % f"zone: north, role: operator, {TIMES}, staff: [a]", 7, "a is not a operator"),
        (SHIFT % f"zone: south, role: nurse, {TIMES}, staff: [a]", 7, "a does not cover zone 'south'"),
        (SHIFT % f"role: nurse, {TIMES}, staff: [a]", 7, "a does not cover every zone"),
        (SHIFT % f"zone: north, role: nurse, {TIMES}, staff: [a, a]", 7, "a is listed twice in this shift"),
        (SHIFT % f"zone: north, role: nurse, {TIMES}", 7, "a shift is missing the key 'staff'"),
        ("    timezone: Europe/Olso\n", 6, "unknown time zone 'Europe/Olso' (did you mean 'Europe/Oslo'?)"),
        (
            OVERRIDE % "type: leave, staff: a, dates: {from: 2027-11-05, to: 2027-11-01}",
            7,
            "dates end (2027-11-01) before they start (2027-11-05)",
        ),
        (OVERRIDE % "type: leave, staff: a, date: 2027-13-01", 7, "'2027-13-01' is not a date"),
        (OVERRIDE % "type: off, staff: a, date: 2027-11-01", 7, "unknown override type 'off'"),
        (OVERRIDE % "type: leave, staff: a", 7, "needs either 'date"),
        (OVERRIDE % "type: leave, staff: b, date: 2027-11-01", 7, "unknown staff id 'b'"),
        (OVERRIDE % "type: swap, out: a, in: a, date: 2027-11-01", 7, "with themself"),
        (OVERRIDE % "type: swap, out: a, in: op, date: 2027-11-01", 7, "op is not a nurse like a"),
        (
            "    overrides:\n      - {type: crew, date: 2027-11-01, zone: north, role: nurse,\n"
            "         shifts: [{from: '08:00', to: '09:00', staff: [op]}]}\n",
            8,
            "op is not a nurse",
        ),
        ("    minimum: {nurse: -1}\n", 6, "minimum nurse must be a whole number"),
        ("    minimum: {nurse: {north: two}}\n", 6, "minimum nurse north must be a whole number"),
    ],
)
def test_mistakes_are_refused_with_file_and_line(tail: str, line: int, message: str) -> None:
    with pytest.raises(RosterError) as caught:
        parse_roster(HEAD + tail, "escalation/staff.yaml")
    assert caught.value.line == line, str(caught.value)
    assert message in caught.value.message, str(caught.value)
    assert str(caught.value).startswith(f"escalation/staff.yaml:{line}: ")


ONE = "tenants:\n  t:\n    staff:\n      - {%s}\n"  # the entry on line 4


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (ONE % "id: a, role: nurse" + "      - {id: a, role: nurse}\n", 5, "staff id 'a' appears twice"),
        (ONE % "id: a, role: nurse, contacts: [{smss: '+4790000001'}]", 4, "unknown channel 'smss' (did you mean"),
        (ONE % "id: a, role: nurse, contacts: [{sms: '90000001'}]", 4, "an SMS number is written"),
        (ONE % "id: a, role: nurse, contacts: [{console: a}]", 4, "not a person's contact"),
        (ONE % "id: a, role: nurse, contacts: [{email: nobody}]", 4, "not an e-mail address"),
        (ONE % "id: a, role: nurse, contacts: [{webhook: ftp://x}]", 4, "http(s) URL"),
        (ONE % "id: a, name: A", 4, "give either 'role: R'"),
        (ONE % "id: 'a/b', role: nurse", 4, "may only contain"),
        (ONE % "id: a, role: nurse, on_duty: maybe", 4, "on_duty must be true or false"),
        (ONE % "id: a, roles: [nurse, nurse]", 4, "role 'nurse' is listed twice"),
        (ONE % "id: a, role: nurse, zones: [all, north]", 4, "already covers every zone"),
        (
            ONE % "id: a, role: nurse, on_duty: true" + SHIFT % f"role: nurse, {TIMES}, staff: [a]",
            4,
            "has on_duty: true (always on duty) and is also named in shifts",
        ),
        ("tenants:\n  t:\n    stafff: []\n", 3, "unknown key 'stafff' in tenant 't' (did you mean 'staff'?)"),
        ("tenants:\n  t:\n    staff: [\n", 4, "invalid YAML"),
        ("version: 1\n", 1, "unknown key 'version'"),
    ],
)
def test_more_mistakes(text: str, line: int, message: str) -> None:
    with pytest.raises(RosterError) as caught:
        parse_roster(text, "s.yaml")
    assert caught.value.line == line, str(caught.value)
    assert message in caught.value.message, str(caught.value)


def test_yaml_1_1_spellings_are_read_as_written() -> None:
    """Unquoted 23:00 (base 60 in YAML 1.1) is a time; `no` as a zone is the zone 'no'."""
    text = (
        HEAD.replace("zone: north", "zone: no")
        + "    shifts:\n      - {zone: no, role: nurse, from: 23:00, to: 07:00, staff: [a]}\n"
    )
    roster = parse_roster(text)["t"]
    assert roster.shifts[0].starts == time(23, 0)
    assert ids(roster, "no", NURSE, at("2027-05-04T01:00")) == ["a"]


def test_empty_files_have_no_rosters() -> None:
    assert parse_roster("") == {}
    assert parse_roster("tenants:\n") == {}
