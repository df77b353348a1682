"""`during` windows in both engines: what a window gates per rule kind, windows across
midnight, day masks, the DST days of 2027 in Europe/Oslo, and homes in other zones.

Europe/Oslo changes at 01:00 UTC on 2027-03-28 (02:00 CET -> 03:00 CEST) and on
2027-10-31 (03:00 CEST -> 02:00 CET); America/New_York on 2027-03-14 and 2027-11-07.
Times are written in UTC (`utc`); rows are (rule name, device, home, ts, origin, event),
plus the action's name unless it is a raise. Device 0 and 1 live in home 0 (Oslo unless a
test says otherwise), device 2 in home 1.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pytest

from responsecentre.engine import Engine, EventBatch, HomeParams, ReferenceEngine, RulePack, home_params
from tests.test_engine_semantics import ENGINES, AnyEngine, ev, make_pack, named

DEVICE_HOME = np.array([0, 0, 1], np.int32)
HOUR = 3_600_000
MINUTE = 60_000
R = "raise: {kind: k, priority: high, chain: c}"
DAY = 'during: {from: "07:00", to: "22:00"}'


def utc(text: str) -> int:
    """UTC ms of a time written in UTC, e.g. '2027-03-28T01:00'."""
    return int(datetime.fromisoformat(text + "+00:00").timestamp() * 1000)


def homes(pack: RulePack, *zones: str, overrides: dict[int, dict[str, Any]] | None = None) -> HomeParams:
    """One home per zone (default: two homes in Oslo), with overrides by home index."""
    zones = zones or ("Europe/Oslo", "Europe/Oslo")
    return home_params(pack, [(zone, (overrides or {}).get(h, {})) for h, zone in enumerate(zones)])


def run(engine: AnyEngine, steps: list[tuple[Any, list[tuple[Any, ...]]]]) -> None:
    """Each step is a batch of events (a list) or a sweep time (an int), and its rows."""
    for number, (step, expected) in enumerate(steps):
        got = engine.sweep(step) if isinstance(step, int) else engine.process(EventBatch.of(step))
        assert named(engine.pack, got) == expected, f"step {number}"


@pytest.fixture(params=ENGINES, ids=lambda cls: cls.__name__)
def engine_cls(request: pytest.FixtureRequest) -> type[AnyEngine]:
    return request.param  # type: ignore[no-any-return]


# -- what a window gates, per kind (Oslo in January: UTC+1) -------------------------------

NIGHT = 'during: {from: "22:00", to: "07:00"}'
SCOPED_NIGHT = f"scope: home, {NIGHT}"
JAN14 = "2027-01-14"  # a Thursday


def t(clock: str, day: str = JAN14) -> int:
    """UTC ms of a UTC clock time on `day`."""
    return utc(f"{day}T{clock}")


GATES: list[tuple[str, list[str], list[tuple[Any, list[tuple[Any, ...]]]]]] = [
    (
        "match: only inside the window; 22:00 is in, 07:00 is out",
        [f"- {{name: m, when: alarm.button, {NIGHT}, {R}}}"],
        [
            (
                [
                    ev("alarm.button", 0, t("20:59"), 1),  # 21:59 local
                    ev("alarm.button", 0, t("21:00"), 2),  # 22:00
                    ev("alarm.button", 0, t("23:30"), 3),  # 00:30 the next day
                    ev("alarm.button", 0, t("05:59", "2027-01-15"), 4),  # 06:59
                    ev("alarm.button", 0, t("06:00", "2027-01-15"), 5),  # 07:00
                ],
                [
                    ("m", 0, 0, t("21:00"), 2, 1),
                    ("m", 0, 0, t("23:30"), 3, 2),
                    ("m", 0, 0, t("05:59", "2027-01-15"), 4, 3),
                ],
            )
        ],
    ),
    (
        "threshold: the value and the window must both hold",
        [f"- {{name: cold, when: temperature, value: {{below: 10}}, {NIGHT}, {R}}}"],
        [
            (
                [
                    ev("temperature", 0, t("12:00"), 1, 5.0),
                    ev("temperature", 0, t("22:00"), 2, 15.0),
                    ev("temperature", 0, t("22:01"), 3, 5.0),
                ],
                [("cold", 0, 0, t("22:01"), 3, 2)],
            )
        ],
    ),
    (
        "clear rule: also gated",
        [
            f"- {{name: cold, when: temperature, value: {{below: 10}}, {R}}}",
            f"- {{name: warm, when: temperature, value: {{above: 20}}, clear: {{kind: k}}, {NIGHT}}}",
        ],
        [
            (
                [ev("temperature", 0, t("12:00"), 1, 25.0), ev("temperature", 0, t("22:00"), 2, 25.0)],
                [("warm", 0, 0, t("22:00"), 2, 1, "clear")],
            )
        ],
    ),
    (
        "not followed by: only a trigger inside arms; a follow-up outside cancels; the deadline fires outside",
        [f"- {{name: bed, when: bed.exit, unless: {{followed_by: bed.enter, within: 45m}}, {SCOPED_NIGHT}, {R}}}"],
        [
            ([ev("bed.exit", 0, t("12:00"), 1)], []),
            (t("13:00"), []),
            ([ev("bed.exit", 0, t("05:30", "2027-01-15"), 2)], []),  # 06:30 local: arms
            ([ev("bed.enter", 1, t("06:10", "2027-01-15"), 3)], []),  # 07:10 local: cancels
            ([ev("bed.exit", 1, t("05:50", "2027-01-15"), 4)], []),  # 06:50 local, out of order: arms
            (t("06:34", "2027-01-15"), []),
            (t("06:35", "2027-01-15"), [("bed", -1, 0, t("06:35", "2027-01-15"), 4, -1)]),
        ],
    ),
    (
        "hysteresis: outside the window a reading may clear but not raise",
        [f"- {{name: low, when: device.battery, value: {{below: 15, clear_above: 25}}, {NIGHT}, {R}}}"],
        [
            (
                [
                    ev("device.battery", 0, t("12:00"), 1, 5.0),  # out: no raise, no flag
                    ev("device.battery", 0, t("22:00"), 2, 5.0),  # in: raise
                    ev("device.battery", 0, t("12:00", "2027-01-15"), 3, 90.0),  # out: clears
                    ev("device.battery", 0, t("13:00", "2027-01-15"), 4, 5.0),  # out: no raise
                    ev("device.battery", 0, t("23:00", "2027-01-15"), 5, 5.0),  # in: raise again
                ],
                [
                    ("low", 0, 0, t("22:00"), 2, 1),
                    ("low", 0, 0, t("12:00", "2027-01-15"), 3, 2, "clear"),
                    ("low", 0, 0, t("23:00", "2027-01-15"), 5, 4),
                ],
            )
        ],
    ),
    (
        "cancel: never gated (the press in the window, the cancel after it closed)",
        [f"- {{name: help, when: alarm.button, cancel: {{by: alarm.cancel, within: 2m}}, {NIGHT}, {R}}}"],
        [
            (
                [
                    ev("alarm.button", 0, t("05:59", "2027-01-15"), 1),
                    ev("alarm.cancel", 0, t("06:01", "2027-01-15"), 2),
                ],
                [
                    ("help", 0, 0, t("05:59", "2027-01-15"), 1, 0),
                    ("help", 0, 0, t("06:01", "2027-01-15"), 2, 1, "cancel"),
                ],
            )
        ],
    ),
    (
        "count: only events inside count",
        [f"- {{name: doors, when: door.opened, count: {{n: 2, within: 12h}}, scope: home, {NIGHT}, {R}}}"],
        [
            (
                [
                    ev("door.opened", 0, t("20:00"), 1),  # 21:00 local: not counted
                    ev("door.opened", 1, t("21:30"), 2),
                    ev("door.opened", 0, t("12:00", "2027-01-15"), 3),  # not counted
                    ev("door.opened", 0, t("22:00", "2027-01-15"), 4),  # 2 in 24h30: too far apart
                    ev("door.opened", 1, t("23:00", "2027-01-15"), 5),
                ],
                [("doors", 1, 0, t("23:00", "2027-01-15"), 5, 4)],
            )
        ],
    ),
    (
        "inactive: silence counted inside the window only; activity counts at any hour",
        [f"- {{name: still, when: motion.detected, inactive: {{for: 4h}}, {DAY}, {R}}}"],
        [
            ([ev("motion.detected", 0, t("05:00"), 1)], []),  # 06:00 local
            (t("09:00"), []),  # the bound (last + 4h): nothing due yet
            (t("09:59"), []),
            (t("10:00"), [("still", -1, 0, t("10:00"), 1, -1)]),  # 11:00 local: 4h of 07:00-22:00
            (t("23:00"), []),  # once
            ([ev("motion.detected", 1, t("03:00", "2027-01-15"), 2)], []),  # 04:00 local, at night
            (t("09:59", "2027-01-15"), []),
            (t("10:00", "2027-01-15"), [("still", -1, 0, t("10:00", "2027-01-15"), 2, -1)]),
        ],
    ),
]


@pytest.mark.parametrize(("rules", "steps"), [case[1:] for case in GATES], ids=[case[0] for case in GATES])
def test_what_a_window_gates(rules: list[str], steps: list[Any], engine_cls: type[AnyEngine]) -> None:
    pack = make_pack(rules)
    run(engine_cls(pack, DEVICE_HOME, homes=homes(pack)), steps)


def test_inactivity_next_due_is_a_bound_then_exact(engine_cls: type[AnyEngine]) -> None:
    """next_due is never late: last + for until a sweep past it settles the deadline."""
    pack = make_pack([f"- {{name: still, when: motion.detected, inactive: {{for: 4h}}, {DAY}, {R}}}"])
    engine = engine_cls(pack, DEVICE_HOME, homes=homes(pack))
    assert engine.next_due() is None, "a home is watched only after its first activity"
    engine.process(EventBatch.of([ev("motion.detected", 0, t("05:00"), 1)]))
    assert engine.next_due() == t("09:00")
    engine.sweep(t("09:00"))
    assert engine.next_due() == t("10:00")
    engine.sweep(t("10:00"))
    assert engine.next_due() is None


# -- across midnight, and days ------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "fires"),
    [
        ("2027-01-15T22:00", True),  # Friday 22:00: the window starts
        ("2027-01-16T03:00", True),  # Saturday 03:00 belongs to Friday's window
        ("2027-01-16T06:59", True),
        ("2027-01-16T07:00", False),
        ("2027-01-15T03:00", False),  # Friday 03:00 belongs to Thursday's window
        ("2027-01-16T22:00", False),  # Saturday's window is not allowed
        ("2027-01-15T21:59", False),
    ],
)
def test_days_of_a_window_across_midnight(local: str, fires: bool, engine_cls: type[AnyEngine]) -> None:
    pack = make_pack([f'- {{name: m, when: alarm.button, during: {{from: "22:00", to: "07:00", days: [fri]}}, {R}}}'])
    engine = engine_cls(pack, DEVICE_HOME, homes=homes(pack))
    at = utc(local) - HOUR  # Oslo in January is UTC+1
    assert len(engine.process(EventBatch.of([ev("alarm.button", 0, at, 1)]))) == int(fires)


def test_weekday_window(engine_cls: type[AnyEngine]) -> None:
    pack = make_pack(
        [f'- {{name: m, when: alarm.button, during: {{from: "08:00", to: "16:00", days: [mon, wed]}}, {R}}}']
    )
    engine = engine_cls(pack, DEVICE_HOME, homes=homes(pack))
    # 2027-01-11 is a Monday; 09:00 local each day from Monday to Sunday.
    events = [ev("alarm.button", 0, utc(f"2027-01-{11 + day}T08:00"), day) for day in range(7)]
    assert [row[4] for row in engine.process(EventBatch.of(events)).rows()] == [0, 2]


# -- DST in Europe/Oslo --------------------------------------------------------------------

DAYTIME = f"- {{name: still, when: motion.detected, inactive: {{for: 4h}}, {DAY}, {R}}}"


@pytest.mark.parametrize(
    ("evening", "expected"),
    [
        # 21:00 CET = 20:00Z: 1 h until 22:00; then 3 h from 07:00 CEST (05:00Z): 10:00 CEST.
        ("2027-03-27T20:00", "2027-03-28T08:00"),
        # 21:00 CEST = 19:00Z: 1 h until 22:00; then 3 h from 07:00 CET (06:00Z): 10:00 CET.
        ("2027-10-30T19:00", "2027-10-31T09:00"),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_inactivity_across_a_dst_night(evening: str, expected: str, engine_cls: type[AnyEngine]) -> None:
    """Silence from 21:00 local fires at 10:00 local the next day, in UTC exactly."""
    pack = make_pack([DAYTIME])
    engine = engine_cls(pack, DEVICE_HOME, homes=homes(pack))
    engine.process(EventBatch.of([ev("motion.detected", 0, utc(evening), 7)]))
    assert len(engine.sweep(utc(expected) - 1)) == 0
    assert engine.next_due() == utc(expected)
    assert named(pack, engine.sweep(utc(expected))) == [("still", -1, 0, utc(expected), 7, -1)]


def test_window_across_the_skipped_hour(engine_cls: type[AnyEngine]) -> None:
    """01:30-03:30 on 2027-03-28 is one hour long: 02:00-03:00 local does not exist."""
    pack = make_pack([f'- {{name: m, when: alarm.button, during: {{from: "01:30", to: "03:30"}}, {R}}}'])
    engine = engine_cls(pack, DEVICE_HOME, homes=homes(pack))
    times = ["00:29", "00:30", "00:59", "01:00", "01:29", "01:30"]  # UTC; 01:00Z is 03:00 CEST
    events = [ev("alarm.button", 0, utc(f"2027-03-28T{clock}"), i) for i, clock in enumerate(times)]
    assert [row[4] for row in engine.process(EventBatch.of(events)).rows()] == [1, 2, 3, 4]
    # Inactivity for 90 min of that window: 60 min on the 28th, the rest from 01:30 CEST
    # on the 29th (23:30Z on the 28th): due at 00:00Z on the 29th.
    quiet = make_pack(
        [f'- {{name: q, when: motion.detected, inactive: {{for: 90m}}, during: {{from: "01:30", to: "03:30"}}, {R}}}']
    )
    engine = engine_cls(quiet, DEVICE_HOME, homes=homes(quiet))
    engine.process(EventBatch.of([ev("motion.detected", 0, utc("2027-03-28T00:00"), 1)]))
    assert len(engine.sweep(utc("2027-03-28T23:59"))) == 0
    assert named(quiet, engine.sweep(utc("2027-03-29T00:00"))) == [("q", -1, 0, utc("2027-03-29T00:00"), 1, -1)]


def test_window_in_the_repeated_hour(engine_cls: type[AnyEngine]) -> None:
    """02:00-02:30 on 2027-10-31 happens twice: 00:00-00:30Z (CEST) and 01:00-01:30Z (CET)."""
    pack = make_pack([f'- {{name: m, when: alarm.button, during: {{from: "02:00", to: "02:30"}}, {R}}}'])
    engine = engine_cls(pack, DEVICE_HOME, homes=homes(pack))
    times = ["23:59", "00:15", "00:45", "01:15", "01:45"]
    events = [ev("alarm.button", 0, utc(f"2027-10-{30 if i == 0 else 31}T{clock}"), i) for i, clock in enumerate(times)]
    assert [row[4] for row in engine.process(EventBatch.of(events)).rows()] == [1, 3]
    # 45 min of it from 01:00 CEST: 30 min in the first pass, 15 in the second.
    quiet = make_pack(
        [f'- {{name: q, when: motion.detected, inactive: {{for: 45m}}, during: {{from: "02:00", to: "02:30"}}, {R}}}']
    )
    engine = engine_cls(quiet, DEVICE_HOME, homes=homes(quiet))
    engine.process(EventBatch.of([ev("motion.detected", 0, utc("2027-10-30T23:00"), 1)]))
    assert named(quiet, engine.sweep(utc("2027-10-31T02:00"))) == [("q", -1, 0, utc("2027-10-31T01:15"), 1, -1)]


# -- several zones in one engine ---------------------------------------------------------


def test_a_home_in_new_york_and_one_in_oslo(engine_cls: type[AnyEngine]) -> None:
    """Home 0 in Oslo (UTC+1 in January), home 1 in New York (UTC-5), one window 22:00-07:00."""
    pack = make_pack([f"- {{name: m, when: alarm.button, {NIGHT}, {R}}}"])
    engine = engine_cls(pack, DEVICE_HOME, homes=homes(pack, "Europe/Oslo", "America/New_York"))
    events = [
        ev("alarm.button", 0, utc("2027-01-15T04:00"), 1),  # Oslo 05:00: in
        ev("alarm.button", 2, utc("2027-01-15T04:00"), 2),  # New York 23:00: in
        ev("alarm.button", 0, utc("2027-01-15T11:59"), 3),  # Oslo 12:59: out
        ev("alarm.button", 2, utc("2027-01-15T11:59"), 4),  # New York 06:59: in
        ev("alarm.button", 2, utc("2027-01-15T12:00"), 5),  # New York 07:00: out
        ev("alarm.button", 0, utc("2027-01-15T21:00"), 6),  # Oslo 22:00: in
        ev("alarm.button", 2, utc("2027-01-15T21:00"), 7),  # New York 16:00: out
    ]
    assert [row[4] for row in engine.process(EventBatch.of(events)).rows()] == [1, 2, 4, 6]


def test_new_york_dst_is_its_own(engine_cls: type[AnyEngine]) -> None:
    """New York springs forward on 2027-03-14 (02:00 EST -> 03:00 EDT at 07:00Z), two weeks
    before Oslo: an inactivity deadline there follows New York's clock."""
    pack = make_pack([DAYTIME])
    engine = engine_cls(pack, DEVICE_HOME, homes=homes(pack, "Europe/Oslo", "America/New_York"))
    # 21:00 EST on the 13th = 02:00Z on the 14th; 1 h to 22:00; then 3 h from 07:00 EDT
    # (11:00Z): 10:00 EDT = 14:00Z.
    engine.process(EventBatch.of([ev("motion.detected", 2, utc("2027-03-14T02:00"), 9)]))
    assert named(pack, engine.sweep(utc("2027-03-15T00:00"))) == [("still", -1, 1, utc("2027-03-14T14:00"), 9, -1)]


def test_a_home_override_of_the_window(engine_cls: type[AnyEngine]) -> None:
    """Home 1 moves the window; home 0 keeps the pack's."""
    pack = make_pack([f"- {{name: m, when: alarm.button, {NIGHT}, {R}}}"])
    params = homes(pack, overrides={1: {"m": {"during": {"from": "12:00", "to": "13:00"}}}})
    engine = engine_cls(pack, DEVICE_HOME, homes=params)
    events = [
        ev("alarm.button", d, utc(f"2027-01-15T{clock}"), 10 * d + i)
        for d in (0, 2)
        for i, clock in enumerate(("04:00", "11:30"))
    ]
    assert [row[4] for row in engine.process(EventBatch.of(events)).rows()] == [0, 21]


def test_both_engines_agree_on_the_windows_above() -> None:
    """The tables (numba) and zoneinfo (reference) give the same snapshot after a mixed run."""
    pack = make_pack([DAYTIME, f"- {{name: m, when: alarm.button, {NIGHT}, {R}}}"])
    params = homes(pack, "Europe/Oslo", "America/New_York")
    engines = [Engine(pack, DEVICE_HOME, homes=params), ReferenceEngine(pack, DEVICE_HOME, homes=params)]
    start = utc("2027-10-30T00:00")
    events = [ev("motion.detected" if i % 3 else "alarm.button", i % 3, start + i * 37 * MINUTE, i) for i in range(120)]
    outputs = [engine.process(EventBatch.of(events)).rows() for engine in engines]
    assert outputs[0] == outputs[1]
    sweeps = [engine.sweep(start + 6 * 24 * HOUR).rows() for engine in engines]
    assert sweeps[0] == sweeps[1] and sweeps[0]
    assert engines[0].snapshot() == engines[1].snapshot()
