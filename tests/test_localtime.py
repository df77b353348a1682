"""Local time: offset tables, daily windows and window deadlines, on DST days above all.

The numba functions (from the tables) and their plain-Python twins (from zoneinfo) are both
checked against hand-worked instants, and against each other on random zones, windows and
instants around the DST changes of 2026-2028. Europe/Oslo changes at 01:00 UTC on
2027-03-28 (02:00 CET -> 03:00 CEST) and 2027-10-31 (03:00 CEST -> 02:00 CET); both are
Sundays.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responsecentre.engine import kernels
from responsecentre.engine.localtime import (
    ALL_DAYS,
    DAY_MS,
    DEFAULT_TIMEZONE,
    HORIZON_MS,
    NO_DUE,
    SEGMENT_MIN,
    _zone_table,
    build_timezones,
    check_timezone,
    in_window,
    py_in_window,
    py_utc_offset,
    py_window_due,
    utc_offset,
    window_due,
)

MINUTE = 60_000
HOUR = 3_600_000
MON, TUE, WED, THU, FRI, SAT, SUN = (1 << i for i in range(7))

ZONE_NAMES = (
    "Europe/Oslo",
    "America/New_York",
    "Asia/Tokyo",
    "UTC",
    "Australia/Sydney",  # southern hemisphere: DST over new year
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "Africa/Casablanca",  # Ramadan changes, a month apart
    "Asia/Kolkata",  # +05:30, no DST
    "Pacific/Chatham",  # +12:45 / +13:45
    "America/Sao_Paulo",  # DST abolished in 2019
)
ZONES = build_timezones(ZONE_NAMES)


def utc(text: str) -> int:
    """UTC ms of an ISO time written in UTC, e.g. '2027-03-28T01:00'."""
    return int(datetime.fromisoformat(text + "+00:00").timestamp() * 1000)


def hm(text: str) -> int:
    """ms of the day of 'HH:MM'."""
    hours, minutes = text.split(":")
    return int(hours) * HOUR + int(minutes) * MINUTE


def offset(zone: str, ts: int) -> int:
    return int(utc_offset(*ZONES.args(), ZONES.index(zone), ts))


def inside(zone: str, ts: int, window: str, days: int) -> bool:
    start, end = window.split("-")
    return bool(in_window(*ZONES.args(), ZONES.index(zone), ts, hm(start), hm(end), days))


def due(zone: str, start: int, need: int, window: str, days: int) -> int:
    begin, end = window.split("-")
    return int(window_due(*ZONES.args(), ZONES.index(zone), start, need, hm(begin), hm(end), days))


@pytest.mark.parametrize(
    ("zone", "ts", "hours"),
    [
        ("Europe/Oslo", utc("2027-03-28T00:59:59.999"), 1),
        ("Europe/Oslo", utc("2027-03-28T01:00"), 2),
        ("Europe/Oslo", utc("2027-10-31T00:59:59.999"), 2),
        ("Europe/Oslo", utc("2027-10-31T01:00"), 1),
        ("America/New_York", utc("2026-03-08T06:59:59.999"), -5),
        ("America/New_York", utc("2026-03-08T07:00"), -4),
        ("America/New_York", utc("2026-11-01T05:59:59.999"), -4),
        ("America/New_York", utc("2026-11-01T06:00"), -5),
        ("Asia/Tokyo", utc("2027-03-28T01:00"), 9),
        ("Asia/Tokyo", utc("2027-07-01T12:00"), 9),
        ("UTC", utc("2027-10-31T01:00"), 0),
        ("Asia/Kolkata", utc("2027-10-31T01:00"), 5.5),
        # Outside 1970..2100 the nearest segment holds: Oslo was on CET on both ends.
        ("Europe/Oslo", utc("1960-07-01T12:00"), 1),
        ("Europe/Oslo", utc("2150-07-01T12:00"), 1),
    ],
)
def test_utc_offset(zone: str, ts: int, hours: float) -> None:
    assert offset(zone, ts) == hours * HOUR
    assert py_utc_offset(zone, ts) == hours * HOUR


@pytest.mark.parametrize(
    ("ts", "window", "days", "expected"),
    [
        # Spring forward, Sunday 2027-03-28: 02:00-03:00 local does not exist.
        (utc("2027-03-28T00:30"), "22:00-07:00", ALL_DAYS, True),  # 01:30 CET
        (utc("2027-03-28T01:00"), "22:00-07:00", ALL_DAYS, True),  # 03:00 CEST
        (utc("2027-03-28T04:59:59.999"), "22:00-07:00", ALL_DAYS, True),
        (utc("2027-03-28T05:00"), "22:00-07:00", ALL_DAYS, False),  # 07:00 CEST
        (utc("2027-03-28T00:59:59.999"), "02:30-03:30", ALL_DAYS, False),  # 01:59:59 CET
        (utc("2027-03-28T01:00"), "02:30-03:30", ALL_DAYS, True),  # the window opens at 03:00
        (utc("2027-03-28T01:29:59.999"), "02:30-03:30", ALL_DAYS, True),
        (utc("2027-03-28T01:30"), "02:30-03:30", ALL_DAYS, False),
        (utc("2027-03-28T00:00"), "01:00-02:30", ALL_DAYS, True),  # 01:00 CET
        (utc("2027-03-28T00:59:59.999"), "01:00-02:30", ALL_DAYS, True),
        (utc("2027-03-28T01:00"), "01:00-02:30", ALL_DAYS, False),  # jumped to 03:00
        (utc("2027-03-28T04:59:59.999"), "07:00-22:00", ALL_DAYS, False),
        (utc("2027-03-28T05:00"), "07:00-22:00", ALL_DAYS, True),
        (utc("2027-03-28T19:59:59.999"), "07:00-22:00", ALL_DAYS, True),
        (utc("2027-03-28T20:00"), "07:00-22:00", ALL_DAYS, False),  # 22:00 CEST
        # Fall back, Sunday 2027-10-31: 02:00-03:00 local happens twice.
        (utc("2027-10-31T00:30"), "22:00-07:00", ALL_DAYS, True),  # 02:30 CEST
        (utc("2027-10-31T01:30"), "22:00-07:00", ALL_DAYS, True),  # 02:30 CET
        (utc("2027-10-31T05:59:59.999"), "22:00-07:00", ALL_DAYS, True),
        (utc("2027-10-31T06:00"), "22:00-07:00", ALL_DAYS, False),  # 07:00 CET
        (utc("2027-10-31T00:29:59.999"), "02:30-03:30", ALL_DAYS, False),
        (utc("2027-10-31T00:30"), "02:30-03:30", ALL_DAYS, True),  # 02:30 CEST
        (utc("2027-10-31T00:59:59.999"), "02:30-03:30", ALL_DAYS, True),
        (utc("2027-10-31T01:00"), "02:30-03:30", ALL_DAYS, False),  # back to 02:00 CET
        (utc("2027-10-31T01:30"), "02:30-03:30", ALL_DAYS, True),  # 02:30 CET, again
        (utc("2027-10-31T02:30"), "02:30-03:30", ALL_DAYS, False),  # 03:30 CET
        (utc("2027-10-30T23:00"), "01:00-02:30", ALL_DAYS, True),  # 01:00 CEST
        (utc("2027-10-31T00:30"), "01:00-02:30", ALL_DAYS, False),  # 02:30 CEST
        (utc("2027-10-31T01:00"), "01:00-02:30", ALL_DAYS, True),  # 02:00 CET
        (utc("2027-10-31T01:30"), "01:00-02:30", ALL_DAYS, False),
        (utc("2027-10-31T05:59:59.999"), "07:00-22:00", ALL_DAYS, False),
        (utc("2027-10-31T06:00"), "07:00-22:00", ALL_DAYS, True),
        (utc("2027-10-31T20:59:59.999"), "07:00-22:00", ALL_DAYS, True),
        (utc("2027-10-31T21:00"), "07:00-22:00", ALL_DAYS, False),
        # Days: a window across midnight belongs to the day it starts on.
        (utc("2027-03-26T21:00"), "22:00-07:00", FRI, True),  # Friday 22:00 CET
        (utc("2027-03-27T02:00"), "22:00-07:00", FRI, True),  # Saturday 03:00 CET
        (utc("2027-03-28T01:00"), "22:00-07:00", FRI, False),  # Sunday 03:00 CEST
        (utc("2027-03-26T05:00"), "22:00-07:00", FRI, False),  # Friday 06:00: Thursday's night
        (utc("2027-03-28T01:00"), "22:00-07:00", SAT, True),  # Sunday 03:00 CEST
        (utc("2027-03-27T21:00"), "22:00-07:00", SAT, True),  # Saturday 22:00 CET
        (utc("2027-03-28T05:00"), "07:00-22:00", SUN, True),
        (utc("2027-03-29T05:00"), "07:00-22:00", SUN, False),  # Monday 07:00
        (utc("2027-03-27T06:00"), "07:00-22:00", SUN, False),  # Saturday 07:00
        (utc("2027-03-28T05:00"), "07:00-22:00", 0, False),
    ],
)
def test_in_window_oslo(ts: int, window: str, days: int, expected: bool) -> None:
    assert inside("Europe/Oslo", ts, window, days) is expected
    start, end = window.split("-")
    assert py_in_window("Europe/Oslo", ts, hm(start), hm(end), days) is expected


@pytest.mark.parametrize(
    ("ts", "zone", "window", "expected"),
    [
        (utc("2026-03-08T06:59:59.999"), "America/New_York", "01:00-02:00", True),  # 01:59:59 EST
        (utc("2026-03-08T07:00"), "America/New_York", "01:00-02:00", False),  # 03:00 EDT
        (utc("2026-11-01T05:30"), "America/New_York", "01:00-02:00", True),  # 01:30 EDT
        (utc("2026-11-01T06:30"), "America/New_York", "01:00-02:00", True),  # 01:30 EST, again
        (utc("2026-11-01T07:00"), "America/New_York", "01:00-02:00", False),
        (utc("2027-03-27T22:00"), "Asia/Tokyo", "07:00-22:00", True),  # 07:00 JST
        (utc("2027-03-27T21:59:59.999"), "Asia/Tokyo", "07:00-22:00", False),
        (utc("2027-03-28T13:00"), "Asia/Tokyo", "22:00-07:00", True),
        (utc("2027-03-28T07:00"), "UTC", "07:00-22:00", True),
        (utc("2027-03-28T06:59:59.999"), "UTC", "07:00-22:00", False),
    ],
)
def test_in_window_other_zones(ts: int, zone: str, window: str, expected: bool) -> None:
    assert inside(zone, ts, window, ALL_DAYS) is expected
    start, end = window.split("-")
    assert py_in_window(zone, ts, hm(start), hm(end), ALL_DAYS) is expected


@pytest.mark.parametrize(
    ("zone", "start", "need", "window", "days", "expected"),
    [
        # 4 h of 07:00-22:00 from 21:00 the evening before a DST day: 1 h that evening,
        # 3 h from 07:00 -> 10:00 local next morning, on the new offset.
        ("Europe/Oslo", utc("2027-03-27T20:00"), 4 * HOUR, "07:00-22:00", ALL_DAYS, utc("2027-03-28T08:00")),
        ("Europe/Oslo", utc("2027-10-30T19:00"), 4 * HOUR, "07:00-22:00", ALL_DAYS, utc("2027-10-31T09:00")),
        # Spring gap: a Sunday 02:00-04:00 window holds 1 real hour (03:00-04:00 CEST).
        ("Europe/Oslo", utc("2027-03-27T23:00"), HOUR, "02:00-04:00", SUN, utc("2027-03-28T02:00")),
        ("Europe/Oslo", utc("2027-03-27T23:00"), HOUR + MINUTE, "02:00-04:00", SUN, utc("2027-04-04T00:01")),
        ("Europe/Oslo", utc("2027-03-27T23:00"), 30 * MINUTE, "02:30-03:30", ALL_DAYS, utc("2027-03-28T01:30")),
        # Autumn repeat: a Sunday 02:00-03:00 window holds 2 real hours (CEST, then CET).
        ("Europe/Oslo", utc("2027-10-30T22:00"), HOUR, "02:00-03:00", SUN, utc("2027-10-31T01:00")),
        ("Europe/Oslo", utc("2027-10-30T22:00"), 2 * HOUR, "02:00-03:00", SUN, utc("2027-10-31T02:00")),
        ("Europe/Oslo", utc("2027-10-30T22:00"), 2 * HOUR + MINUTE, "02:00-03:00", SUN, utc("2027-11-07T01:01")),
        ("Europe/Oslo", utc("2027-10-30T22:00"), 90 * MINUTE, "02:30-03:30", ALL_DAYS, utc("2027-10-31T02:30")),
        # Across midnight, Friday nights only: 9 h fill Friday 22:00 -> Saturday 07:00.
        ("Europe/Oslo", utc("2027-03-26T12:00"), 9 * HOUR, "22:00-07:00", FRI, utc("2027-03-27T06:00")),
        ("Europe/Oslo", utc("2027-03-26T12:00"), 9 * HOUR + MINUTE, "22:00-07:00", FRI, utc("2027-04-02T20:01")),
        # Across midnight over the spring gap: Saturday 22:00 CET to Sunday 07:00 CEST is 8 h.
        ("Europe/Oslo", utc("2027-03-27T12:00"), 8 * HOUR, "22:00-07:00", SAT, utc("2027-03-28T05:00")),
        # Starting inside the window.
        ("Europe/Oslo", utc("2027-03-28T06:00"), HOUR, "07:00-22:00", ALL_DAYS, utc("2027-03-28T07:00")),
        ("America/New_York", utc("2026-03-08T02:00"), 4 * HOUR, "07:00-22:00", ALL_DAYS, utc("2026-03-08T14:00")),
        ("America/New_York", utc("2026-11-01T01:00"), 4 * HOUR, "07:00-22:00", ALL_DAYS, utc("2026-11-01T15:00")),
        ("Asia/Tokyo", utc("2027-03-27T12:00"), 4 * HOUR, "07:00-22:00", ALL_DAYS, utc("2027-03-28T01:00")),
        ("UTC", utc("2027-03-27T21:00"), 4 * HOUR, "07:00-22:00", ALL_DAYS, utc("2027-03-28T10:00")),
        # Edges: nothing needed; no days; from == to; more than fits before the horizon.
        ("Europe/Oslo", utc("2027-03-28T06:00"), 0, "07:00-22:00", ALL_DAYS, utc("2027-03-28T06:00")),
        ("Europe/Oslo", utc("2027-03-28T06:00"), HOUR, "07:00-22:00", 0, NO_DUE),
        ("Europe/Oslo", utc("2027-03-28T06:00"), HOUR, "07:00-07:00", ALL_DAYS, NO_DUE),
        ("Europe/Oslo", utc("2027-03-28T06:00"), 7 * DAY_MS, "00:00-00:01", MON, NO_DUE),
    ],
)
def test_window_due(zone: str, start: int, need: int, window: str, days: int, expected: int) -> None:
    assert due(zone, start, need, window, days) == expected
    begin, end = window.split("-")
    assert py_window_due(zone, start, need, hm(begin), hm(end), days) == expected


def test_no_due_is_the_kernels() -> None:
    assert NO_DUE == kernels.NO_DUE


def test_oslo_table() -> None:
    """Two changes a year at 01:00 UTC, each to the offset zoneinfo gives; the first entry is the sentinel."""
    zones = build_timezones(["Europe/Oslo"])
    trans, off = zones.trans, zones.off
    assert trans[0] == SEGMENT_MIN
    assert off[0] == HOUR  # CET on 1970-01-01
    in_2027 = (trans >= utc("2027-01-01T00:00")) & (trans < utc("2028-01-01T00:00"))
    assert trans[in_2027].tolist() == [utc("2027-03-28T01:00"), utc("2027-10-31T01:00")]
    assert off[in_2027].tolist() == [2 * HOUR, HOUR]
    assert np.all(np.diff(trans) > 0)
    assert np.all(np.diff(off) != 0)  # a segment starts only where the offset changes
    for start, value in zip(trans[1:].tolist(), off[1:].tolist(), strict=True):
        assert py_utc_offset("Europe/Oslo", start) == value
        assert py_utc_offset("Europe/Oslo", start - 1) != value


def test_zones_without_changes() -> None:
    zones = build_timezones(["Asia/Tokyo", "UTC"])
    assert zones.ptr.tolist() == [0, 1, 2]
    assert zones.trans.tolist() == [SEGMENT_MIN, SEGMENT_MIN]
    assert zones.off.tolist() == [9 * HOUR, 0]


def test_build_timezones_order_and_cache() -> None:
    before = _zone_table.cache_info()
    zones = build_timezones(["UTC", "Europe/Oslo", "UTC", "Asia/Tokyo", "Europe/Oslo"])
    assert zones.names == ("UTC", "Europe/Oslo", "Asia/Tokyo")
    assert [zones.index(name) for name in zones.names] == [0, 1, 2]
    assert zones.args() == (zones.ptr, zones.trans, zones.off)
    ptr = zones.ptr.tolist()
    assert ptr[0] == 0 and ptr[-1] == zones.trans.shape[0] == zones.off.shape[0]
    assert all(zones.trans[start] == SEGMENT_MIN for start in ptr[:-1])
    for i, name in enumerate(zones.names):
        trans, off = _zone_table(name)
        assert zones.trans[ptr[i] : ptr[i + 1]].tolist() == trans.tolist()
        assert zones.off[ptr[i] : ptr[i + 1]].tolist() == off.tolist()
    # Every zone was built by the module-level ZONES already: this build only hit the cache.
    after = _zone_table.cache_info()
    assert after.misses == before.misses
    assert after.hits > before.hits
    assert not zones.trans.flags.writeable
    with pytest.raises(ValueError, match="not among"):
        zones.index("Europe/Paris")
    empty = build_timezones([])
    assert empty.names == () and empty.ptr.tolist() == [0] and empty.trans.shape == (0,)


def test_build_timezones_refuses_unknown() -> None:
    with pytest.raises(ValueError, match=r"unknown time zone 'Europe/Olso' \(did you mean 'Europe/Oslo'\?\)"):
        build_timezones(["UTC", "Europe/Olso"])
    with pytest.raises(ValueError, match="not list"):  # a YAML list where a name belongs; unhashable
        build_timezones([["Europe/Oslo"]])  # type: ignore[list-item]


@pytest.mark.parametrize("name", ["Europe/Oslo", "UTC", "Asia/Tokyo", "America/Argentina/Buenos_Aires", "Etc/GMT-14"])
def test_check_timezone_accepts(name: str) -> None:
    check_timezone(name)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Europe/Olso", "unknown time zone 'Europe/Olso' (did you mean 'Europe/Oslo'?)"),
        ("europe/oslo", "unknown time zone 'europe/oslo' (did you mean 'Europe/Oslo'?)"),
        ("Europe/Oslo ", "unknown time zone 'Europe/Oslo ' (did you mean 'Europe/Oslo'?)"),
        ("America/NewYork", "unknown time zone 'America/NewYork' (did you mean 'America/New_York'?)"),
        ("qqqqqq", "unknown time zone 'qqqqqq' (an IANA name such as 'Europe/Oslo')"),
        ("", "unknown time zone '' (an IANA name such as 'Europe/Oslo')"),
        ("../../etc/passwd", "unknown time zone '../../etc/passwd' (an IANA name such as 'Europe/Oslo')"),
        (1, "a time zone is a name such as 'Europe/Oslo', not int"),
        (None, "a time zone is a name such as 'Europe/Oslo', not NoneType"),
    ],
)
def test_check_timezone_refuses(name: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        check_timezone(name)  # type: ignore[arg-type]
    assert str(caught.value) == message


@pytest.mark.parametrize("name", ["localtime", "Europe", "posixrules"])
def test_check_timezone_refuses_files_that_are_no_zone(name: str) -> None:
    """ZoneInfo would load these (a machine's own zone, a directory error, a template)."""
    with pytest.raises(ValueError, match=f"^unknown time zone '{name}' "):
        check_timezone(name)


def test_default_timezone_is_known() -> None:
    check_timezone(DEFAULT_TIMEZONE)


# --- the numba functions against the Python twins -----------------------------------------

SPAN_START = utc("2026-01-01T00:00")
SPAN_END = utc("2029-01-01T00:00")


def _changes(zone: str) -> list[int]:
    i = ZONES.index(zone)
    trans = ZONES.trans[ZONES.ptr[i] : ZONES.ptr[i + 1]]
    return [int(t) for t in trans if SPAN_START <= t < SPAN_END]


CHANGES = {zone: _changes(zone) for zone in ZONE_NAMES}


@st.composite
def moments(draw: st.DrawFn) -> tuple[str, int]:
    """A zone and an instant near one of its 2026-2028 changes (or anywhere then, if none)."""
    zone = draw(st.sampled_from(ZONE_NAMES))
    changes = CHANGES[zone]
    if changes and draw(st.booleans()):
        near = draw(st.sampled_from(changes))
        delta = draw(st.one_of(st.integers(-3 * HOUR, 3 * HOUR), st.integers(-3 * DAY_MS, 3 * DAY_MS)))
        return zone, near + delta
    return zone, draw(st.integers(SPAN_START, SPAN_END))


@st.composite
def windows(draw: st.DrawFn) -> tuple[int, int, int]:
    """(from_ms, to_ms, days): whole minutes mostly, odd ms sometimes; either order; masks incl. 0."""
    bound = st.one_of(st.integers(0, 1439).map(lambda m: m * MINUTE), st.integers(0, DAY_MS - 1))
    begin = draw(bound)
    end = draw(bound)
    days = draw(st.one_of(st.just(ALL_DAYS), st.integers(0, ALL_DAYS)))
    return begin, end, days


@settings(max_examples=300, deadline=None)
@given(moment=moments(), window=windows())
def test_in_window_twins(moment: tuple[str, int], window: tuple[int, int, int]) -> None:
    zone, ts = moment
    begin, end, days = window
    tz = ZONES.index(zone)
    for t in (ts - 1, ts, ts + 1):
        assert utc_offset(*ZONES.args(), tz, t) == py_utc_offset(zone, t)
        assert bool(in_window(*ZONES.args(), tz, t, begin, end, days)) is py_in_window(zone, t, begin, end, days)


@settings(max_examples=300, deadline=None)
@given(
    moment=moments(),
    window=windows(),
    need=st.one_of(st.integers(0, DAY_MS), st.integers(1, 4 * HOUR), st.sampled_from([1, MINUTE, HOUR])),
    more=st.integers(1, 2 * HOUR),
)
def test_window_due_twins(moment: tuple[str, int], window: tuple[int, int, int], need: int, more: int) -> None:
    zone, start = moment
    begin, end, days = window
    tz = ZONES.index(zone)
    got = int(window_due(*ZONES.args(), tz, start, need, begin, end, days))
    assert got == py_window_due(zone, start, need, begin, end, days)
    if need == 0:
        assert got == start
        return
    if got == NO_DUE:
        return
    assert start < got <= start + HORIZON_MS
    # The deadline ends a stretch of window time, so its last ms is in the window...
    assert in_window(*ZONES.args(), tz, got - 1, begin, end, days)
    # ...and in-window time adds up: `more` after the deadline is `need + more` from the start.
    then = int(window_due(*ZONES.args(), tz, got, more, begin, end, days))
    if then != NO_DUE and then - start <= HORIZON_MS:
        assert int(window_due(*ZONES.args(), tz, start, need + more, begin, end, days)) == then


@settings(max_examples=60, deadline=None)
@given(
    moment=moments(),
    begin=st.integers(0, 1439),
    end=st.integers(0, 1439),
    days=st.one_of(st.just(ALL_DAYS), st.integers(1, ALL_DAYS)),
    need=st.integers(1, 180),
)
def test_window_due_by_the_minute(moment: tuple[str, int], begin: int, end: int, days: int, need: int) -> None:
    """A third opinion from the definition alone: walk minute by minute from a whole minute,
    counting the minutes whose wall time is in the window (the zones here change offset on
    whole minutes, so each minute is wholly in or out)."""
    zone, start = moment
    start -= start % MINUTE
    walked, held = start, 0
    for _ in range(3 * 1440):
        if held == need:
            break
        held += py_in_window(zone, walked, begin * MINUTE, end * MINUTE, days)
        walked += MINUTE
    expected = walked if held == need else None
    got = int(window_due(*ZONES.args(), ZONES.index(zone), start, need * MINUTE, begin * MINUTE, end * MINUTE, days))
    if expected is None:  # not within three days: only later, or never if the window is empty
        assert got == NO_DUE or got > start + 3 * DAY_MS
    else:
        assert got == expected
