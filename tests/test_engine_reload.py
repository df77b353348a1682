"""Hot reload and restore across packs: state is keyed by (rule name, meaning in every home).

A rule whose name and meaning are unchanged keeps its state whatever moved around it (its
position, other rules, its priority or chain); a changed rule starts idle; a snapshot of
one pack restores into an engine of another the same way. Devices 0 and 1 live in home 0,
device 2 in home 1.
"""

from __future__ import annotations

import numpy as np
import pytest

from responsecentre.engine import Engine, EventBatch, ReferenceEngine
from tests.test_engine_semantics import DOOR, ENGINES, FALL, HELP, LOW, AnyEngine, ev, make_pack, named
from tests.test_engine_windows import homes, utc

DEVICE_HOME = np.array([0, 0, 1], np.int32)
R = "raise: {kind: k, priority: high, chain: c}"
PRESSES = f"- {{name: presses, when: alarm.button, count: {{n: 3, within: 2m}}, {R}}}"
STILL = f'- {{name: still, when: motion.detected, inactive: {{for: 4h}}, during: {{from: "07:00", to: "22:00"}}, {R}}}'
SUP = "- {name: sup, supervise: {}, raise: {kind: k, priority: medium, chain: c}}"


@pytest.fixture(params=ENGINES, ids=lambda cls: cls.__name__)
def engine_cls(request: pytest.FixtureRequest) -> type[AnyEngine]:
    return request.param  # type: ignore[no-any-return]


def report_of(report: object) -> tuple[tuple[str, ...], ...]:
    return report.kept, report.reset, report.added, report.removed  # type: ignore[attr-defined]


def test_unchanged_rule_keeps_its_pending_deadline(engine_cls: type[AnyEngine]) -> None:
    """The fall deadline armed before the reload fires at its original time after it."""
    engine = engine_cls(make_pack([FALL, DOOR]), DEVICE_HOME)
    engine.process(EventBatch.of([ev("fall.detected", 0, 1000, 7), ev("door.opened", 2, 1000, 8)]))
    new = make_pack([FALL, DOOR.replace("10m", "20m")])
    report = engine.reload(new)
    assert report_of(report) == (("fall",), ("door",), (), ())
    assert report.seconds >= 0
    assert engine.pack is new
    assert engine.pending() == {(0, 0): (61_000, 7)}
    assert engine.next_due() == 61_000
    assert named(new, engine.sweep(10**9)) == [("fall", 0, 0, 61_000, 7, -1)]


def test_added_removed_and_reordered_rules(engine_cls: type[AnyEngine]) -> None:
    """State follows the rule by name, not by index."""
    engine = engine_cls(make_pack([DOOR, FALL, LOW, HELP]), DEVICE_HOME)
    engine.process(
        EventBatch.of(
            [
                ev("door.opened", 0, 0, 1),
                ev("fall.detected", 2, 0, 2),
                ev("device.battery", 1, 0, 3, 5.0),
                ev("alarm.button", 1, 0, 4),
            ]
        )
    )
    new = make_pack([PRESSES, HELP, FALL, LOW])
    report = engine.reload(new)
    assert report_of(report) == (("help", "fall", "low"), (), ("presses",), ("door",))
    assert engine.pending() == {(2, 2): (60_000, 2)}
    later = [ev("alarm.cancel", 1, 10, 5), ev("device.battery", 1, 20, 6, 4.0), ev("device.battery", 1, 30, 7, 50.0)]
    assert named(new, engine.process(EventBatch.of(later))) == [
        ("help", 1, 0, 10, 5, 0, "cancel"),
        ("low", 1, 0, 30, 7, 2, "clear"),
    ]


def test_priority_chain_and_alarm_kind_changes_keep_state(engine_cls: type[AnyEngine]) -> None:
    engine = engine_cls(make_pack([FALL]), DEVICE_HOME)
    engine.process(EventBatch.of([ev("fall.detected", 0, 5, 1)]))
    new = make_pack([FALL.replace("kind: k, priority: high, chain: c", "kind: k2, priority: low, chain: other")])
    assert report_of(engine.reload(new)) == (("fall",), (), (), ())
    assert engine.pending() == {(0, 0): (60_005, 1)}


def test_a_renamed_rule_starts_afresh(engine_cls: type[AnyEngine]) -> None:
    engine = engine_cls(make_pack([FALL]), DEVICE_HOME)
    engine.process(EventBatch.of([ev("fall.detected", 0, 5, 1)]))
    assert report_of(engine.reload(make_pack([FALL.replace("name: fall", "name: fall2")]))) == (
        (),
        (),
        ("fall2",),
        ("fall",),
    )
    assert engine.pending() == {} and engine.next_due() is None


def test_every_kind_of_state_is_carried(engine_cls: type[AnyEngine]) -> None:
    """Counts, inactivity clocks, hysteresis flags, cancel windows and supervision."""
    pack = make_pack([PRESSES, STILL, LOW, HELP, SUP])
    params = homes(pack)
    intervals = np.array([36_000_000, 36_000_000, 0], np.int64)  # 10 h
    engine = engine_cls(pack, DEVICE_HOME, intervals, homes=params)
    start = utc("2027-01-14T05:00")  # 06:00 in Oslo
    engine.process(
        EventBatch.of(
            [
                ev("alarm.button", 0, start, 1),
                ev("alarm.button", 0, start + 1, 2),
                ev("motion.detected", 2, start, 3),
                ev("device.battery", 1, start, 4, 5.0),
                ev("device.offline", 1, start, 5),
            ]
        )
    )
    engine.sweep(utc("2027-01-14T09:30"))  # settles home 1's inactivity deadline
    before = engine.snapshot()
    due = engine.next_due()
    new = make_pack([SUP, STILL, HELP, LOW, PRESSES])  # every rule moves
    report = engine.reload(new, homes(new))
    assert sorted(report.kept) == ["help", "low", "presses", "still", "sup"]
    assert engine.next_due() == due
    fresh = engine_cls(new, DEVICE_HOME, intervals, homes=homes(new))
    fresh.restore(before)
    assert engine.snapshot() == fresh.snapshot()
    later = [
        ev("alarm.button", 0, start + 2, 6),
        ev("device.battery", 1, start + 3, 7, 90.0),
        ev("alarm.cancel", 0, start + 4, 8),
    ]
    assert named(new, engine.process(EventBatch.of(later))) == [
        ("help", 0, 0, start + 2, 6, 0),
        ("presses", 0, 0, start + 2, 6, 0),
        ("sup", 1, 0, start + 3, 7, 1, "clear"),
        ("low", 1, 0, start + 3, 7, 1, "clear"),
        ("help", 0, 0, start + 4, 8, 2, "cancel"),
    ]
    assert named(new, engine.sweep(utc("2027-01-14T10:00"))) == [("still", -1, 1, utc("2027-01-14T10:00"), 3, -1)]


def test_new_supervision_intervals_apply_and_offline_stays_offline(engine_cls: type[AnyEngine]) -> None:
    pack = make_pack([SUP])
    engine = engine_cls(pack, DEVICE_HOME, np.array([100, 100, 100], np.int64))
    engine.process(EventBatch.of([ev("device.offline", 0, 0, 1), ev("door.opened", 1, 0, 2)]))
    engine.reload(pack, supervision_ms=np.array([0, 500, 0], np.int64))
    assert list(engine.supervision_ms) == [0, 500, 0]
    assert engine.sweep(499).rows() == []
    assert named(pack, engine.sweep(500)) == [("sup", 1, 0, 500, 2, -1)]
    engine.reload(pack, supervision_ms=np.array([100, 500, 0], np.int64))
    # Device 0 went offline before its interval was taken away: it is still offline.
    assert named(pack, engine.process(EventBatch.of([ev("door.opened", 0, 600, 3)]))) == [
        ("sup", 0, 0, 600, 3, 0, "clear")
    ]


def test_a_home_override_changes_only_that_rule(engine_cls: type[AnyEngine]) -> None:
    """Overriding fall's delay in home 1 resets fall (its meaning in every home changed) and
    keeps door; the same override again keeps both."""
    pack = make_pack([FALL, DOOR])
    engine = engine_cls(pack, DEVICE_HOME, homes=homes(pack))
    engine.process(EventBatch.of([ev("fall.detected", 0, 0, 1), ev("door.opened", 2, 0, 2)]))
    keys = engine.rule_keys
    params = homes(pack, overrides={1: {"fall": {"unless": {"within": "2m"}}}})
    assert report_of(engine.reload(pack, params)) == (("door",), ("fall",), (), ())
    assert engine.rule_keys[1] == keys[1] and engine.rule_keys[0] != keys[0]
    assert engine.pending() == {(1, 1): (600_000, 2)}
    engine.process(EventBatch.of([ev("fall.detected", 2, 10, 3), ev("fall.detected", 0, 10, 4)]))
    assert report_of(engine.reload(pack, homes(pack, overrides={1: {"fall": {"unless": {"within": "2m"}}}}))) == (
        ("fall", "door"),
        (),
        (),
        (),
    )
    assert named(pack, engine.sweep(10**9)) == [
        ("fall", 0, 0, 60_010, 4, -1),
        ("fall", 2, 1, 120_010, 3, -1),
        ("door", -1, 1, 600_000, 2, -1),
    ]


def test_a_time_zone_change_resets_only_rules_with_a_window(engine_cls: type[AnyEngine]) -> None:
    pack = make_pack([STILL, FALL])
    engine = engine_cls(pack, DEVICE_HOME, homes=homes(pack))
    engine.process(EventBatch.of([ev("motion.detected", 2, 0, 1), ev("fall.detected", 2, 0, 2)]))
    report = engine.reload(pack, homes(pack, "Europe/Oslo", "America/New_York"))
    assert report_of(report) == (("fall",), ("still",), (), ())


def test_reload_without_homes_keeps_the_zones(engine_cls: type[AnyEngine]) -> None:
    pack = make_pack([STILL])
    engine = engine_cls(pack, DEVICE_HOME, homes=homes(pack, "Europe/Oslo", "America/New_York"))
    engine.process(EventBatch.of([ev("motion.detected", 2, 0, 1)]))
    assert report_of(engine.reload(pack)) == (("still",), (), (), ())
    assert engine.homes.zones.names[int(engine.homes.timezone[1])] == "America/New_York"


def test_a_refused_reload_changes_nothing(engine_cls: type[AnyEngine]) -> None:
    pack = make_pack([FALL])
    engine = engine_cls(pack, DEVICE_HOME)
    engine.process(EventBatch.of([ev("fall.detected", 0, 0, 1)]))
    blob = engine.snapshot()
    other = make_pack([DOOR])
    with pytest.raises(ValueError, match="profiles"):
        engine.reload(other, homes(pack))  # homes built for another pack
    with pytest.raises(ValueError, match="supervision_ms"):
        engine.reload(other, supervision_ms=np.array([1], np.int64))
    assert engine.pack is pack and engine.snapshot() == blob


def test_snapshot_of_one_pack_restores_into_another(engine_cls: type[AnyEngine]) -> None:
    """A restart with a changed pack restores what still means the same."""
    a = make_pack([FALL, DOOR, PRESSES, LOW])
    b = make_pack([LOW, PRESSES.replace("n: 3", "n: 4"), FALL, HELP])
    engine = engine_cls(a, DEVICE_HOME)
    engine.process(
        EventBatch.of(
            [
                ev("fall.detected", 0, 0, 1),
                ev("door.opened", 0, 0, 2),
                ev("alarm.button", 1, 0, 3),
                ev("device.battery", 2, 0, 4, 1.0),
            ]
        )
    )
    blob = engine.snapshot()
    for cls in ENGINES:
        other = cls(b, DEVICE_HOME)
        report = other.restore(blob)
        assert report_of(report) == (("low", "fall"), ("presses",), ("help",), ("door",))
        assert other.pending() == {(2, 0): (60_000, 1)}
        assert named(b, other.process(EventBatch.of([ev("device.battery", 2, 5, 5, 99.0)]))) == [
            ("low", 2, 1, 5, 5, 0, "clear")
        ]


def test_damaged_snapshots_are_refused(engine_cls: type[AnyEngine]) -> None:
    engine = engine_cls(make_pack([FALL, PRESSES, STILL]), DEVICE_HOME)
    engine.process(
        EventBatch.of([ev("fall.detected", 0, 0, 1), ev("alarm.button", 0, 0, 2), ev("motion.detected", 0, 0, 3)])
    )
    blob = engine.snapshot()
    state = engine.snapshot()
    for damaged in (blob[:-1], blob + b"\0", blob[:50], b"RCENGST3" + blob[8:], blob[:8] + b"\xff" * 8 + blob[16:]):
        with pytest.raises(ValueError):
            engine.restore(damaged)
    # The count ring's one time, moved out of range.
    bad = bytearray(blob)
    bad[-33:-25] = (2**60).to_bytes(8, "little")  # the count's one time precedes the inactivity row
    with pytest.raises(ValueError):
        engine.restore(bytes(bad))
    assert engine.snapshot() == state


def test_both_engines_write_the_same_bytes_after_a_reload() -> None:
    pack = make_pack([FALL, PRESSES, STILL, LOW])
    params = homes(pack, "Europe/Oslo", "America/New_York")
    engines = [Engine(pack, DEVICE_HOME, homes=params), ReferenceEngine(pack, DEVICE_HOME, homes=params)]
    events = [
        ev(t, i % 3, 1000 * i, i, 3.0)
        for i, t in enumerate(["alarm.button", "motion.detected", "fall.detected", "device.battery"] * 5)
    ]
    for engine in engines:
        engine.process(EventBatch.of(events))
    new = make_pack([PRESSES, LOW.replace("15", "16"), STILL, FALL])
    new_params = homes(new, "Europe/Oslo", "America/New_York", overrides={0: {"still": {"inactive": {"for": "5h"}}}})
    reports = [engine.reload(new, new_params) for engine in engines]
    assert report_of(reports[0]) == report_of(reports[1]) == (("presses", "fall"), ("low", "still"), (), ())
    assert engines[0].snapshot() == engines[1].snapshot()
    assert engines[0].next_due() == engines[1].next_due()
