"""`count` rules in both engines: n events within a time, per device or per home.

Each slot keeps the times of its last n counted events in arrival order; an event that
completes n of them within `within` (max - min) raises and empties the ring, so the next
alarm needs n new events. Rows are (rule name, device, home, ts, origin, event). Devices 0
and 1 live in home 0, device 2 in home 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from responsecentre.engine import Engine, EventBatch, ReferenceEngine, home_params
from tests.test_engine_semantics import ENGINES, AnyEngine, ev, make_pack, named
from tests.test_engine_windows import homes, run, utc

DEVICE_HOME = np.array([0, 0, 1], np.int32)
R = "raise: {kind: k, priority: high, chain: c}"
PRESSES = f"- {{name: presses, when: alarm.button, count: {{n: 3, within: 2m}}, {R}}}"
PRESSES_HOME = f"- {{name: presses, when: alarm.button, count: {{n: 3, within: 2m}}, scope: home, {R}}}"
S = 1000


@pytest.fixture(params=ENGINES, ids=lambda cls: cls.__name__)
def engine_cls(request: pytest.FixtureRequest) -> type[AnyEngine]:
    return request.param  # type: ignore[no-any-return]


CASES: list[tuple[str, list[str], list[tuple[Any, list[tuple[Any, ...]]]]]] = [
    (
        "device scope: the third press within 2 min raises; other devices count apart",
        [PRESSES],
        [
            (
                [
                    ev("alarm.button", 0, 0, 1),
                    ev("alarm.button", 1, 10 * S, 2),
                    ev("alarm.button", 0, 20 * S, 3),
                    ev("alarm.button", 1, 30 * S, 4),
                    ev("alarm.button", 0, 120 * S, 5),
                ],
                [("presses", 0, 0, 120 * S, 5, 4)],
            )
        ],
    ),
    (
        "home scope: every device of the home counts; the alarm names the last device",
        [PRESSES_HOME],
        [
            (
                [
                    ev("alarm.button", 0, 0, 1),
                    ev("alarm.button", 2, 5 * S, 2),  # another home
                    ev("alarm.button", 1, 10 * S, 3),
                    ev("alarm.button", 1, 20 * S, 4),
                ],
                [("presses", 1, 0, 20 * S, 4, 3)],
            )
        ],
    ),
    (
        "the window slides: the oldest of the last n drops out",
        [PRESSES],
        [
            ([ev("alarm.button", 0, 0, 1), ev("alarm.button", 0, 100 * S, 2)], []),
            ([ev("alarm.button", 0, 121 * S, 3)], []),  # 121 s from the first: too slow
            ([ev("alarm.button", 0, 200 * S, 4)], [("presses", 0, 0, 200 * S, 4, 0)]),  # 100, 121, 200
        ],
    ),
    (
        "exactly `within` apart counts",
        [PRESSES],
        [
            (
                [ev("alarm.button", 0, t, i) for i, t in enumerate((0, 60 * S, 120 * S))],
                [("presses", 0, 0, 120 * S, 2, 2)],
            )
        ],
    ),
    (
        "the ring is emptied after firing: the next alarm needs n new events",
        [PRESSES],
        [
            (
                [ev("alarm.button", 0, i * S, i) for i in range(7)],
                [("presses", 0, 0, 2 * S, 2, 2), ("presses", 0, 0, 5 * S, 5, 5)],
            )
        ],
    ),
    (
        "n = 1: every counted event raises",
        [f"- {{name: one, when: alarm.button, count: {{n: 1, within: 1s}}, {R}}}"],
        [
            (
                [ev("alarm.button", 0, 5, 1), ev("alarm.button", 0, 5, 2)],
                [("one", 0, 0, 5, 1, 0), ("one", 0, 0, 5, 2, 1)],
            )
        ],
    ),
    (
        "duplicates count like any other event",
        [PRESSES],
        [([ev("alarm.button", 0, 7 * S, i) for i in range(3)], [("presses", 0, 0, 7 * S, 2, 2)])],
    ),
    (
        "out of order: the spread of the held times decides, in arrival order",
        [PRESSES],
        [
            (
                [
                    ev("alarm.button", 0, 1000 * S, 1),
                    ev("alarm.button", 0, 0, 2),  # old, buffered: 1000 s apart
                    ev("alarm.button", 0, 1010 * S, 3),  # held 1000, 0, 1010: no
                    ev("alarm.button", 0, 1020 * S, 4),  # held 0, 1010, 1020: no (the oldest arrival is 1000)
                    ev("alarm.button", 0, 1030 * S, 5),  # held 1010, 1020, 1030: yes
                    ev("alarm.button", 0, 1040 * S, 6),
                    ev("alarm.button", 0, 1035 * S, 7),
                    ev("alarm.button", 0, 1039 * S, 8),  # 1040, 1035, 1039: yes, trigger ts is its own
                ],
                [("presses", 0, 0, 1030 * S, 5, 4), ("presses", 0, 0, 1039 * S, 8, 7)],
            )
        ],
    ),
    (
        "a count with `where`: only events whose conditions hold count",
        [f"- {{name: wet, when: water.leak, where: {{room: bathroom}}, count: {{n: 2, within: 1h}}, {R}}}"],
        [
            (
                [
                    ("water.leak", 0, 1, None, 1, 1),
                    ("water.leak", 0, 2, None, 2, 0),
                    ("water.leak", 0, 3, None, 3, 3),  # other bits set too: still holds
                ],
                [("wet", 0, 0, 3, 3, 2)],
            )
        ],
    ),
]


@pytest.mark.parametrize(("rules", "steps"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_count(rules: list[str], steps: list[Any], engine_cls: type[AnyEngine]) -> None:
    run(engine_cls(make_pack(rules), DEVICE_HOME), steps)


NIGHT = 'during: {from: "23:00", to: "06:00"}'
NIGHT_DOORS = f"- {{name: wandering, when: door.opened, count: {{n: 4, within: 7h}}, scope: home, {NIGHT}, {R}}}"


def test_four_door_openings_at_night(engine_cls: type[AnyEngine]) -> None:
    """Openings outside 23:00-06:00 (local, Oslo: UTC+1 in January) do not count."""
    pack = make_pack([NIGHT_DOORS])
    engine = engine_cls(pack, DEVICE_HOME, homes=homes(pack))
    local = ["21:30", "22:59", "23:10", "00:40", "06:00", "02:15", "05:59"]
    events = []
    for i, clock in enumerate(local):
        day = "2027-01-14" if clock >= "12:00" else "2027-01-15"
        events.append(ev("door.opened", i % 2, utc(f"{day}T{clock}") - 3_600_000, i))
    # Counted: 23:10, 00:40, 02:15, 05:59 (the fourth, from device 0).
    assert named(pack, engine.process(EventBatch.of(events))) == [
        ("wandering", 0, 0, utc("2027-01-15T05:59") - 3_600_000, 6, 6)
    ]


def test_a_home_override_of_n(engine_cls: type[AnyEngine]) -> None:
    """Home 1 raises on two presses; home 0 keeps the pack's three (the rings share a length)."""
    pack = make_pack([PRESSES])
    params = homes(pack, overrides={1: {"presses": {"count": {"n": 2}}}})
    engine = engine_cls(pack, DEVICE_HOME, homes=params)
    events = [ev("alarm.button", d, i * 1000, 10 * d + i) for i in range(3) for d in (0, 2)]
    assert [(row[1], row[4]) for row in engine.process(EventBatch.of(events)).rows()] == [(2, 21), (0, 2)]


def test_rings_survive_snapshots_and_resize() -> None:
    """Partial and wrapped rings are in the snapshot, in arrival order, the same from both engines."""
    pack = make_pack([PRESSES, PRESSES_HOME.replace("name: presses", "name: home-presses")])
    params = home_params(pack, [("Europe/Oslo", {}), ("Europe/Oslo", {})])
    engines = [Engine(pack, DEVICE_HOME, homes=params), ReferenceEngine(pack, DEVICE_HOME, homes=params)]
    # Device 0: 1000, 0 (buffered), 5000 -> full ring that does not fire (wrapped next).
    # Device 1: one press. Device 2 in home 1: two.
    events = [
        ev("alarm.button", 0, 1000 * S, 1),
        ev("alarm.button", 0, 0, 2),
        ev("alarm.button", 0, 5000 * S, 3),
        ev("alarm.button", 0, 6000 * S, 4),
        ev("alarm.button", 1, 10, 5),
        ev("alarm.button", 2, 10, 6),
        ev("alarm.button", 2, 20, 7),
    ]
    outputs = [engine.process(EventBatch.of(events)).rows() for engine in engines]
    assert outputs[0] == outputs[1]
    blobs = [engine.snapshot() for engine in engines]
    assert blobs[0] == blobs[1]
    later = [ev("alarm.button", 0, 6010 * S, 8), ev("alarm.button", 0, 6020 * S, 9), ev("alarm.button", 2, 30, 10)]
    expected = None
    for cls in (Engine, ReferenceEngine):
        for blob in blobs:
            other = cls(pack, DEVICE_HOME, homes=params)
            other.restore(blob)
            assert other.snapshot() == blob
            got = named(pack, other.process(EventBatch.of(later)))
            expected = expected or got
            assert got == expected
    # 5000, 6000, 6010 is too wide; 6000, 6010, 6020 fires; device 2's third press fires
    # both rules (device ring 10, 20, 30; home ring the same).
    assert expected == [
        ("presses", 0, 0, 6020 * S, 9, 1),
        ("presses", 2, 1, 30, 10, 2),
        ("home-presses", 2, 1, 30, 10, 2),
    ]
    for engine in engines:
        engine.resize(np.array([0, 0, 1, 1], np.int32))
        assert named(pack, engine.process(EventBatch.of(later))) == expected
