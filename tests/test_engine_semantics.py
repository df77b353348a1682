"""Hand-written timelines run against both engines: the semantics of docs/rules.md as tables.

Every case is a pack, a list of steps (a batch of events, or a sweep at a time) and the
triggers each step must return, written as (rule name, device, home, ts, origin, event).
Devices 0 and 1 live in home 0, device 2 in home 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from responsecentre.contract import ENGINE_TYPES
from responsecentre.engine import (
    Engine,
    EventBatch,
    ReferenceEngine,
    RulePack,
    Triggers,
    load_rules,
    parse_rules,
)
from responsecentre.engine.kernels import ACTION_RAISE
from responsecentre.engine.tables import ACTIONS, EventRow

ROOT = Path(__file__).resolve().parent.parent
DEVICE_HOME = np.array([0, 0, 1], np.int32)
ENGINES = [Engine, ReferenceEngine]
AnyEngine = Engine | ReferenceEngine

R = "raise: {kind: k, priority: high, chain: c}"
BUTTON = f"- {{name: button, when: alarm.button, {R}}}"
DOORS = f"- {{name: doors, when: door.*, {R}}}"
COLD = f"- {{name: cold, when: temperature, value: {{below: 10}}, {R}}}"
COLD_LE = f"- {{name: cold, when: temperature, value: {{at_most: 10}}, {R}}}"
WARM = f"- {{name: warm, when: temperature, value: {{above: 30}}, {R}}}"
WARM_GE = f"- {{name: warm, when: temperature, value: {{at_least: 30}}, {R}}}"
EXACT = f"- {{name: exact, when: temperature, value: {{equals: 21.5}}, {R}}}"
FALL = f"- {{name: fall, when: fall.detected, unless: {{followed_by: fall.cancelled, within: 60s}}, {R}}}"
FALL_ANY = (
    f"- {{name: fall, when: fall.detected, unless: {{followed_by: [fall.cancelled, alarm.*], within: 60s}}, {R}}}"
)
DOOR = f"- {{name: door, when: door.opened, unless: {{followed_by: door.closed, within: 10m}}, scope: home, {R}}}"
LOW = f"- {{name: low, when: device.battery, value: {{below: 15, clear_above: 25}}, {R}}}"
HOT = f"- {{name: hot, when: temperature, value: {{at_least: 30, clear_below: 25}}, {R}}}"
TIGHT = f"- {{name: tight, when: temperature, value: {{at_most: 10, clear_above: 10}}, {R}}}"
SHUT = "- {name: shut, when: door.closed, clear: {kind: k}}"
WARMED = "- {name: warmed, when: temperature, value: {at_least: 18}, clear: {kind: k}}"
HELP = f"- {{name: help, when: alarm.button, cancel: {{by: alarm.cancel, within: 2m}}, {R}}}"
HELP_DEFAULT = f"- {{name: help, when: alarm.button, cancel: {{by: [alarm.cancel, fall.cancelled]}}, {R}}}"
HOT_CANCEL = f"- {{name: hot, when: temperature, value: {{above: 30}}, cancel: {{by: alarm.cancel, within: 1s}}, {R}}}"
QUIET = f"- {{name: quiet, when: motion.detected, unless: {{followed_by: motion.detected, within: 10s}}, {R}}}"


@dataclass(frozen=True)
class Case:
    id: str
    rules: list[str]
    steps: list[tuple[list[EventRow] | int, list[tuple[Any, ...]]]]


def ev(type_: str, device: int, ts: int, seq: int, value: float | None = None) -> EventRow:
    return (type_, device, ts, value, seq)


CASES = [
    Case(
        "match fires per event",
        [BUTTON],
        [
            (
                [ev("alarm.button", 2, 1000, 7), ev("alarm.cancel", 2, 1001, 8), ev("alarm.button", 0, 1002, 9)],
                [("button", 2, 1, 1000, 7, 0), ("button", 0, 0, 1002, 9, 2)],
            ),
        ],
    ),
    Case(
        "match on a family",
        [DOORS],
        [
            (
                [ev("door.closed", 1, 5, 1), ev("bed.exit", 1, 6, 2), ev("door.opened", 2, 7, 3)],
                [("doors", 1, 0, 5, 1, 0), ("doors", 2, 1, 7, 3, 2)],
            ),
        ],
    ),
    Case(
        "below is strict, no value never fires",
        [COLD],
        [
            (
                [
                    ev("temperature", 0, 1, 1, 9.99),
                    ev("temperature", 0, 2, 2, 10.0),
                    ev("temperature", 0, 3, 3),
                    ev("temperature", 0, 4, 4, -40.0),
                ],
                [("cold", 0, 0, 1, 1, 0), ("cold", 0, 0, 4, 4, 3)],
            ),
        ],
    ),
    Case(
        "at_most includes the bound",
        [COLD_LE],
        [
            ([ev("temperature", 0, 1, 1, 10.0), ev("temperature", 0, 2, 2, 10.01)], [("cold", 0, 0, 1, 1, 0)]),
        ],
    ),
    Case(
        "above and at_least",
        [WARM],
        [
            ([ev("temperature", 2, 1, 1, 30.0), ev("temperature", 2, 2, 2, 30.5)], [("warm", 2, 1, 2, 2, 1)]),
        ],
    ),
    Case(
        "at_least includes the bound",
        [WARM_GE],
        [
            ([ev("temperature", 2, 1, 1, 30.0), ev("temperature", 2, 2, 2, 29.9)], [("warm", 2, 1, 1, 1, 0)]),
        ],
    ),
    Case(
        "equals",
        [EXACT],
        [
            ([ev("temperature", 1, 1, 1, 21.5), ev("temperature", 1, 2, 2, 21.6)], [("exact", 1, 0, 1, 1, 0)]),
        ],
    ),
    Case(
        "NaN passes no comparison",
        [COLD, WARM, EXACT],
        [
            ([ev("temperature", 1, 1, 1, math.nan)], []),
        ],
    ),
    Case(
        "a value on a type a threshold does not watch",
        [COLD],
        [
            ([ev("device.battery", 1, 1, 1, 1.0)], []),
        ],
    ),
    Case(
        "thresholds of one type in pack order",
        [WARM, COLD],
        [
            (
                [ev("temperature", 0, 1, 1, 5.0), ev("temperature", 0, 2, 2, 35.0)],
                [("cold", 0, 0, 1, 1, 0), ("warm", 0, 0, 2, 2, 1)],
            ),
        ],
    ),
    Case(
        "cancelled in time: nothing",
        [FALL],
        [
            ([ev("fall.detected", 0, 1000, 1), ev("fall.cancelled", 0, 30_000, 2)], []),
            (10**9, []),
        ],
    ),
    Case(
        "cancel exactly at the deadline still counts",
        [FALL],
        [
            ([ev("fall.detected", 0, 1000, 1)], []),
            ([ev("fall.cancelled", 0, 61_000, 2)], []),
            (10**9, []),
        ],
    ),
    Case(
        "cancel one ms late: the deadline fires first, at its own time",
        [FALL],
        [
            ([ev("fall.detected", 0, 1000, 1), ev("fall.cancelled", 0, 61_001, 2)], [("fall", 0, 0, 61_000, 1, -1)]),
            (10**9, []),
        ],
    ),
    Case(
        "sweep fires at due, not before, and once",
        [FALL],
        [
            ([ev("fall.detected", 2, 1000, 5)], []),
            (60_999, []),
            (61_000, [("fall", 2, 1, 61_000, 5, -1)]),
            (61_000, []),
            ([ev("fall.cancelled", 2, 61_500, 6)], []),
        ],
    ),
    Case(
        "a second trigger while pending keeps the first clock",
        [FALL],
        [
            ([ev("fall.detected", 0, 1000, 1), ev("fall.detected", 0, 50_000, 2)], []),
            (61_000, [("fall", 0, 0, 61_000, 1, -1)]),
            (10**9, []),
        ],
    ),
    Case(
        "a trigger after the deadline fires the old one and re-arms",
        [FALL],
        [
            ([ev("fall.detected", 0, 1000, 1), ev("fall.detected", 0, 70_000, 2)], [("fall", 0, 0, 61_000, 1, -1)]),
            (129_999, []),
            (130_000, [("fall", 0, 0, 130_000, 2, -1)]),
        ],
    ),
    Case(
        "an unrelated event does not fire an overdue deadline",
        [FALL, BUTTON],
        [
            ([ev("fall.detected", 0, 1000, 1), ev("alarm.button", 0, 90_000, 2)], [("button", 0, 0, 90_000, 2, 1)]),
            (90_000, [("fall", 0, 0, 61_000, 1, -1)]),
        ],
    ),
    Case(
        "scope device: another device's cancel does not count",
        [FALL],
        [
            ([ev("fall.detected", 0, 1000, 1), ev("fall.cancelled", 1, 2000, 2)], []),
            (61_000, [("fall", 0, 0, 61_000, 1, -1)]),
        ],
    ),
    Case(
        "followed_by a list of types and a family",
        [FALL_ANY],
        [
            (
                [
                    ev("fall.detected", 0, 0, 1),
                    ev("alarm.cancel", 0, 10, 2),
                    ev("fall.detected", 1, 0, 3),
                    ev("alarm.button", 1, 10, 4),
                    ev("fall.detected", 2, 0, 5),
                    ev("bed.exit", 2, 10, 6),
                ],
                [],
            ),
            (60_000, [("fall", 2, 1, 60_000, 5, -1)]),
        ],
    ),
    Case(
        "scope home: any device of the home cancels, device is -1",
        [DOOR],
        [
            (
                [
                    ev("door.opened", 0, 0, 1),
                    ev("door.closed", 1, 1000, 2),
                    ev("door.opened", 2, 0, 3),
                    ev("door.closed", 0, 1000, 4),
                ],
                [],
            ),
            (600_000, [("door", -1, 1, 600_000, 3, -1)]),
        ],
    ),
    Case(
        "scope home: a second door of the home keeps the first clock",
        [DOOR],
        [
            ([ev("door.opened", 0, 0, 1), ev("door.opened", 1, 500, 2)], []),
            (600_000, [("door", -1, 0, 600_000, 1, -1)]),
        ],
    ),
    Case(
        "scope home: overdue fires on the next event from any device",
        [DOOR],
        [
            ([ev("door.opened", 0, 0, 1), ev("door.closed", 1, 600_001, 2)], [("door", -1, 0, 600_000, 1, -1)]),
        ],
    ),
    Case(
        "a type in when and unless cancels and re-arms",
        [QUIET],
        [
            ([ev("motion.detected", 0, 0, 1), ev("motion.detected", 0, 5000, 2)], []),
            (14_999, []),
            (15_000, [("quiet", 0, 0, 15_000, 2, -1)]),
            (
                [ev("motion.detected", 0, 20_000, 3), ev("motion.detected", 0, 31_000, 4)],
                [("quiet", 0, 0, 30_000, 3, -1)],
            ),
            (41_000, [("quiet", 0, 0, 41_000, 4, -1)]),
        ],
    ),
    Case(
        "duplicate timestamps: array order decides",
        [FALL],
        [
            (
                [
                    ev("fall.cancelled", 0, 1000, 1),
                    ev("fall.detected", 0, 1000, 2),
                    ev("fall.detected", 1, 1000, 3),
                    ev("fall.cancelled", 1, 1000, 4),
                ],
                [],
            ),
            (61_000, [("fall", 0, 0, 61_000, 2, -1)]),
        ],
    ),
    Case(
        "out of order: an earlier cancel still cancels",
        [FALL],
        [
            ([ev("fall.detected", 0, 10_000, 1), ev("fall.cancelled", 0, 5000, 2)], []),
            (10**9, []),
        ],
    ),
    Case(
        "several rules on one type run in pack order",
        [BUTTON, FALL_ANY, f"- {{name: b2, when: alarm.*, {R}}}"],
        [
            (
                [ev("fall.detected", 0, 0, 1), ev("alarm.button", 0, 70_000, 2)],
                [("button", 0, 0, 70_000, 2, 1), ("fall", 0, 0, 60_000, 1, -1), ("b2", 0, 0, 70_000, 2, 1)],
            ),
        ],
    ),
    Case(
        "sweep order: rule, then entity",
        [DOOR, FALL],
        [
            (
                [
                    ev("fall.detected", 2, 5, 1),
                    ev("door.opened", 2, 0, 2),
                    ev("fall.detected", 0, 0, 3),
                    ev("door.opened", 0, 9, 4),
                ],
                [],
            ),
            (
                10**9,
                [
                    ("door", -1, 0, 600_009, 4, -1),
                    ("door", -1, 1, 600_000, 2, -1),
                    ("fall", 0, 0, 60_000, 3, -1),
                    ("fall", 2, 1, 60_005, 1, -1),
                ],
            ),
        ],
    ),
    Case(
        "sweep fires only what is due",
        [FALL],
        [
            ([ev("fall.detected", 0, 0, 1), ev("fall.detected", 1, 100, 2)], []),
            (60_050, [("fall", 0, 0, 60_000, 1, -1)]),
            (60_100, [("fall", 1, 0, 60_100, 2, -1)]),
        ],
    ),
    Case(
        "event index is per batch",
        [BUTTON],
        [
            ([ev("alarm.cancel", 0, 0, 1), ev("alarm.button", 0, 1, 2)], [("button", 0, 0, 1, 2, 1)]),
            ([ev("alarm.button", 1, 2, 3)], [("button", 1, 0, 2, 3, 0)]),
            ([], []),
        ],
    ),
    Case(
        "empty pack",
        [],
        [
            ([ev("alarm.button", 0, 0, 1)], []),
            (10**9, []),
        ],
    ),
    # -- hysteresis: raise once, clear on the other bound, raise again after ----------------
    Case(
        "hysteresis: battery 10, 12, 30 raises once then clears",
        [LOW],
        [
            (
                [
                    ev("device.battery", 0, 1, 1, 10.0),
                    ev("device.battery", 0, 2, 2, 12.0),
                    ev("device.battery", 0, 3, 3, 30.0),
                ],
                [("low", 0, 0, 1, 1, 0), ("low", 0, 0, 3, 3, 2, "clear")],
            ),
        ],
    ),
    Case(
        "hysteresis: the dead band neither raises nor clears; a new drop raises again",
        [LOW],
        [
            ([ev("device.battery", 0, 1, 1, 20.0), ev("device.battery", 0, 2, 2, 14.0)], [("low", 0, 0, 2, 2, 1)]),
            ([ev("device.battery", 0, 3, 3, 20.0), ev("device.battery", 0, 4, 4, 25.0)], []),
            ([ev("device.battery", 0, 5, 5, 14.0)], []),
            ([ev("device.battery", 0, 6, 6, 25.5)], [("low", 0, 0, 6, 6, 0, "clear")]),
            ([ev("device.battery", 0, 7, 7, 25.5), ev("device.battery", 0, 8, 8, 3.0)], [("low", 0, 0, 8, 8, 1)]),
        ],
    ),
    Case(
        "hysteresis: per device, no value and NaN change nothing",
        [LOW],
        [
            (
                [
                    ev("device.battery", 0, 1, 1, 10.0),
                    ev("device.battery", 1, 2, 2, 10.0),
                    ev("device.battery", 0, 3, 3),
                    ev("device.battery", 0, 4, 4, math.nan),
                    ev("device.battery", 1, 5, 5, 50.0),
                    ev("device.battery", 1, 6, 6, 10.0),
                ],
                [
                    ("low", 0, 0, 1, 1, 0),
                    ("low", 1, 0, 2, 2, 1),
                    ("low", 1, 0, 5, 5, 4, "clear"),
                    ("low", 1, 0, 6, 6, 5),
                ],
            ),
        ],
    ),
    Case(
        "hysteresis the other way: at_least 30, clear_below 25",
        [HOT],
        [
            (
                [
                    ev("temperature", 2, 1, 1, 30.0),
                    ev("temperature", 2, 2, 2, 35.0),
                    ev("temperature", 2, 3, 3, 25.0),
                    ev("temperature", 2, 4, 4, 24.9),
                ],
                [("hot", 2, 1, 1, 1, 0), ("hot", 2, 1, 4, 4, 3, "clear")],
            ),
        ],
    ),
    Case(
        "hysteresis with no dead band: at_most 10, clear_above 10",
        [TIGHT],
        [
            (
                [ev("temperature", 0, 1, 1, 10.0), ev("temperature", 0, 2, 2, 10.0), ev("temperature", 0, 3, 3, 10.1)],
                [("tight", 0, 0, 1, 1, 0), ("tight", 0, 0, 3, 3, 2, "clear")],
            ),
        ],
    ),
    Case(
        "hysteresis: out of order and duplicate readings count in array order",
        [LOW],
        [
            (
                [
                    ev("device.battery", 0, 100, 1, 10.0),
                    ev("device.battery", 0, 50, 2, 30.0),
                    ev("device.battery", 0, 50, 2, 30.0),
                    ev("device.battery", 0, 100, 1, 10.0),
                ],
                [("low", 0, 0, 100, 1, 0), ("low", 0, 0, 50, 2, 1, "clear"), ("low", 0, 0, 100, 1, 3)],
            ),
        ],
    ),
    # -- clear rules ------------------------------------------------------------------------
    Case(
        "clear rule: every matching event is a clear decision",
        [DOOR, SHUT],
        [
            ([ev("door.opened", 0, 0, 1)], []),
            (600_000, [("door", -1, 0, 600_000, 1, -1)]),
            ([ev("door.closed", 1, 700_000, 2)], [("shut", 1, 0, 700_000, 2, 0, "clear")]),
            ([ev("door.closed", 2, 700_001, 3)], [("shut", 2, 1, 700_001, 3, 0, "clear")]),
        ],
    ),
    Case(
        "clear rule: an overdue deadline fires before the clear of the same event",
        [DOOR, SHUT],
        [
            (
                [ev("door.opened", 0, 0, 1), ev("door.closed", 0, 600_001, 2)],
                [("door", -1, 0, 600_000, 1, -1), ("shut", 0, 0, 600_001, 2, 1, "clear")],
            ),
        ],
    ),
    Case(
        "clear rule with a threshold",
        [COLD, WARMED],
        [
            (
                [ev("temperature", 0, 1, 1, 5.0), ev("temperature", 0, 2, 2, 17.9), ev("temperature", 0, 3, 3, 18.0)],
                [("cold", 0, 0, 1, 1, 0), ("warmed", 0, 0, 3, 3, 2, "clear")],
            ),
        ],
    ),
    # -- the resident's cancel --------------------------------------------------------------
    Case(
        "cancel within the window after the press",
        [HELP],
        [
            (
                [ev("alarm.button", 0, 1000, 1), ev("alarm.cancel", 0, 121_000, 2)],
                [("help", 0, 0, 1000, 1, 0), ("help", 0, 0, 121_000, 2, 1, "cancel")],
            ),
        ],
    ),
    Case(
        "cancel one ms late, before any press, or twice: nothing",
        [HELP],
        [
            ([ev("alarm.cancel", 0, 0, 1), ev("alarm.button", 0, 1000, 2)], [("help", 0, 0, 1000, 2, 1)]),
            ([ev("alarm.cancel", 0, 121_001, 3)], []),
            (
                [ev("alarm.button", 0, 200_000, 4), ev("alarm.cancel", 0, 200_500, 5)],
                [
                    ("help", 0, 0, 200_000, 4, 0),
                    ("help", 0, 0, 200_500, 5, 1, "cancel"),
                ],
            ),
            ([ev("alarm.cancel", 0, 200_600, 6)], []),
        ],
    ),
    Case(
        "cancel: only the same device's cancel counts",
        [HELP],
        [
            (
                [ev("alarm.button", 0, 0, 1), ev("alarm.cancel", 1, 10, 2), ev("alarm.cancel", 0, 20, 3)],
                [("help", 0, 0, 0, 1, 0), ("help", 0, 0, 20, 3, 2, "cancel")],
            ),
        ],
    ),
    Case(
        "cancel: a cancel dated before the press does not count; the window runs from the last press",
        [HELP],
        [
            (
                [
                    ev("alarm.button", 0, 1000, 1),
                    ev("alarm.cancel", 0, 999, 2),
                    ev("alarm.button", 0, 100_000, 3),
                    ev("alarm.cancel", 0, 220_000, 4),
                ],
                [("help", 0, 0, 1000, 1, 0), ("help", 0, 0, 100_000, 3, 2), ("help", 0, 0, 220_000, 4, 3, "cancel")],
            ),
        ],
    ),
    Case(
        "cancel: within defaults to 2m, by takes a list",
        [HELP_DEFAULT],
        [
            (
                [ev("alarm.button", 2, 0, 1), ev("fall.cancelled", 2, 120_000, 2)],
                [("help", 2, 1, 0, 1, 0), ("help", 2, 1, 120_000, 2, 1, "cancel")],
            ),
        ],
    ),
    Case(
        "cancel on a threshold rule: only a firing reading opens the window",
        [HOT_CANCEL],
        [
            (
                [ev("temperature", 0, 0, 1, 20.0), ev("alarm.cancel", 0, 10, 2), ev("temperature", 0, 20, 3, 31.0)],
                [("hot", 0, 0, 20, 3, 2)],
            ),
            ([ev("alarm.cancel", 0, 1020, 4)], [("hot", 0, 0, 1020, 4, 0, "cancel")]),
        ],
    ),
]


def make_pack(rules: list[str]) -> RulePack:
    """A pack of `rules`; their alarm kind `k` is auto-clearable, as clear rules need."""
    body = "\n".join(f"  {rule}" for rule in rules)
    head = "version: 1\nalarms: {k: {auto_clear: true}}\n"
    return parse_rules(f"{head}rules:\n{body}\n" if rules else f"{head}rules: []\n")


def named(pack: RulePack, triggers: Triggers) -> list[tuple[Any, ...]]:
    """(rule name, device, home, ts, origin, event), plus the action's name unless it is a raise."""
    out: list[tuple[Any, ...]] = []
    for r, *rest, action in triggers.rows():
        row: tuple[Any, ...] = (pack.rules[r].name, *rest)
        out.append(row if action == ACTION_RAISE else (*row, ACTIONS[action]))
    return out


def unindexed(row: tuple[int, ...]) -> tuple[int, ...]:
    """A trigger row without its `event` index, which depends on the batching."""
    return row[:5] + row[6:]


def check_dtypes(triggers: Triggers) -> None:
    dtypes = [np.int32, np.int32, np.int32, np.int64, np.int64, np.int32, np.int8]
    assert [c.dtype for c in triggers.columns()] == dtypes
    assert len({len(c) for c in triggers.columns()}) == 1


@pytest.fixture(params=ENGINES, ids=lambda cls: cls.__name__)
def engine_cls(request: pytest.FixtureRequest) -> type[AnyEngine]:
    return request.param  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_timeline(case: Case, engine_cls: type[AnyEngine]) -> None:
    pack = make_pack(case.rules)
    engine = engine_cls(pack, DEVICE_HOME)
    for number, (step, expected) in enumerate(case.steps):
        is_sweep = isinstance(step, int)
        triggers = engine.sweep(step) if is_sweep else engine.process(EventBatch.of(step))
        check_dtypes(triggers)
        assert named(pack, triggers) == expected, f"step {number}"


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_timeline_in_one_batch_per_event(case: Case, engine_cls: type[AnyEngine]) -> None:
    """Batch boundaries change only `event` indices, never what fires or when."""
    pack = make_pack(case.rules)
    whole = engine_cls(pack, DEVICE_HOME)
    single = engine_cls(pack, DEVICE_HOME)
    for step, _ in case.steps:
        if isinstance(step, int):
            assert whole.sweep(step).rows() == single.sweep(step).rows()
            continue
        expected = [unindexed(row) for row in whole.process(EventBatch.of(step)).rows()]
        got = [unindexed(row) for one in step for row in single.process(EventBatch.of([one])).rows()]
        assert got == expected
    assert whole.snapshot() == single.snapshot()


# -- the rest of the API -----------------------------------------------------------------------


def default_engine(engine_cls: type[AnyEngine]) -> AnyEngine:
    return engine_cls(load_rules(ROOT / "rules" / "default.yaml"), DEVICE_HOME)


def test_next_due(engine_cls: type[AnyEngine]) -> None:
    engine = engine_cls(make_pack([FALL, DOOR]), DEVICE_HOME)
    assert engine.next_due() is None
    engine.process(EventBatch.of([ev("door.opened", 0, 100, 1), ev("fall.detected", 2, 5000, 2)]))
    assert engine.next_due() == 65_000
    engine.sweep(65_000)
    assert engine.next_due() == 600_100
    engine.process(EventBatch.of([ev("door.closed", 1, 700, 3)]))
    assert engine.next_due() is None


def test_snapshot_round_trip_and_cross_engine(engine_cls: type[AnyEngine]) -> None:
    engine = default_engine(engine_cls)
    events = [ev("fall.detected", 0, 1, 11), ev("door.opened", 2, 2, 12), ev("medication.due", 1, 3, 13)]
    engine.process(EventBatch.of(events))
    blob = engine.snapshot()
    for other_cls in ENGINES:
        other = default_engine(other_cls)
        other.restore(blob)
        assert other.snapshot() == blob
        assert other.pending() == engine.pending()
        deadlines = {"fall-not-cancelled", "door-left-open", "medication-not-taken"}
        assert [row for row in named(engine.pack, other.sweep(10**10)) if row[0] in deadlines] == [
            ("fall-not-cancelled", 0, 0, 60_001, 11, -1),
            ("door-left-open", -1, 1, 600_002, 12, -1),
            ("medication-not-taken", 1, 0, 1_800_003, 13, -1),
        ]
    # restore replaces the state, it does not merge
    engine.sweep(10**10)
    engine.restore(default_engine(engine_cls).snapshot())
    assert engine.pending() == {} and engine.next_due() is None


def test_restore_of_another_pack_and_damaged_snapshots(engine_cls: type[AnyEngine]) -> None:
    """A snapshot of another pack restores the rules whose key (name and meaning) it holds;
    a damaged one, or one naming devices the engine lacks, is refused and changes nothing."""
    engine = engine_cls(make_pack([FALL, DOOR]), DEVICE_HOME)
    engine.process(EventBatch.of([ev("fall.detected", 0, 1, 1), ev("door.opened", 2, 1, 2)]))
    blob = engine.snapshot()
    longer = engine_cls(make_pack([DOOR, FALL.replace("60s", "61s"), BUTTON]), DEVICE_HOME)
    report = longer.restore(blob)
    assert (report.kept, report.reset, report.added, report.removed) == (("door",), ("fall",), ("button",), ())
    assert longer.pending() == {(0, 1): (600_001, 2)}
    engine = default_engine(engine_cls)
    engine.process(EventBatch.of([ev("fall.detected", 0, 1, 1)]))
    blob = engine.snapshot()
    with pytest.raises(ValueError, match="bad magic"):
        engine.restore(b"x" * len(blob))
    with pytest.raises(ValueError, match="truncated"):
        engine.restore(blob[:-1])
    with pytest.raises(ValueError, match="truncated"):
        engine.restore(blob[:10])
    small = engine_cls(engine.pack, np.array([0], np.int32))
    small.process(EventBatch.of([ev("fall.detected", 0, 1, 1)]))
    with pytest.raises(ValueError, match="device or home this engine does not have"):
        small.restore(_with_device(engine, 2))
    fall = engine.pack.index("fall-not-cancelled")
    assert small.pending() == {(fall, 0): (60_001, 1)}, "a refused restore leaves state alone"


def _with_device(engine: AnyEngine, device: int) -> bytes:
    fresh = type(engine)(engine.pack, DEVICE_HOME)
    fresh.process(EventBatch.of([ev("fall.detected", device, 1, 1)]))
    return fresh.snapshot()


def test_priority_only_change_keeps_snapshots(engine_cls: type[AnyEngine]) -> None:
    """A rule's key covers what its state means, not what its alarm is called."""
    a = engine_cls(make_pack([FALL]), DEVICE_HOME)
    b = engine_cls(make_pack([FALL.replace("priority: high", "priority: low")]), DEVICE_HOME)
    a.process(EventBatch.of([ev("fall.detected", 0, 1, 1)]))
    b.restore(a.snapshot())
    assert b.pending() == a.pending()


def test_resize_keeps_state(engine_cls: type[AnyEngine]) -> None:
    engine = engine_cls(make_pack([DOOR, FALL]), DEVICE_HOME)
    engine.process(EventBatch.of([ev("fall.detected", 2, 0, 1), ev("door.opened", 2, 0, 2)]))
    with pytest.raises(ValueError, match="device"):
        engine.process(EventBatch.of([ev("fall.detected", 3, 0, 3)]))
    with pytest.raises(ValueError, match="cannot forget"):
        engine.resize(np.array([0, 0], np.int32))
    engine.resize(np.array([0, 0, 1, 2, 2], np.int32))
    assert engine.n_devices == 5 and engine.n_homes == 3
    engine.process(EventBatch.of([ev("fall.detected", 4, 10, 3), ev("door.opened", 3, 10, 4)]))
    assert engine.sweep(10**9).rows() == [
        (0, -1, 1, 600_000, 2, -1, 0),
        (0, -1, 2, 600_010, 4, -1, 0),
        (1, 2, 1, 60_000, 1, -1, 0),
        (1, 4, 2, 60_010, 3, -1, 0),
    ]


def test_batch_validation(engine_cls: type[AnyEngine]) -> None:
    engine = default_engine(engine_cls)
    good = EventBatch.of([ev("alarm.button", 0, 1, 1)])

    def with_(**changes: np.ndarray) -> EventBatch:
        fields = {name: getattr(good, name) for name in ("type_id", "device", "ts", "value", "has_value", "seq")}
        return EventBatch(**{**fields, **changes})

    assert len(engine.process(with_(type_id=good.type_id.astype(np.int16)))) == 1
    with pytest.raises(TypeError, match="device must be int32"):
        engine.process(with_(device=good.device.astype(np.int64)))
    with pytest.raises(TypeError, match="type_id must be int16 or int32"):
        engine.process(with_(type_id=good.type_id.astype(np.int64)))
    with pytest.raises(TypeError, match="ts must be int64"):
        engine.process(with_(ts=good.ts.astype(np.float64)))
    with pytest.raises(TypeError, match="1-D"):
        engine.process(with_(seq=[1]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="differ in length"):
        engine.process(with_(seq=np.array([1, 2], np.int64)))
    with pytest.raises(ValueError, match="type_id outside"):
        engine.process(with_(type_id=np.array([len(ENGINE_TYPES)], np.int32)))
    with pytest.raises(ValueError, match="device outside"):
        engine.process(with_(device=np.array([-1], np.int32)))
    with pytest.raises(ValueError, match="ts outside"):
        engine.process(with_(ts=np.array([-1], np.int64)))
    with pytest.raises(TypeError, match="now_ms"):
        engine.sweep(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="device_home"):
        engine_cls(engine.pack, np.array([0.0]))
    with pytest.raises(ValueError, match="home index"):
        engine_cls(engine.pack, np.array([-1], np.int32))


def test_readonly_and_strided_input(engine_cls: type[AnyEngine]) -> None:
    """Input the shell may build cheaply (views, read-only buffers) is accepted as is."""
    engine = engine_cls(make_pack([BUTTON]), DEVICE_HOME)
    rows = [ev("alarm.button", d % 3, d, d) for d in range(10)]
    batch = EventBatch.of(rows)
    for column in (batch.device, batch.ts):
        column.flags.writeable = False
    strided = EventBatch(*(getattr(batch, f)[::2] for f in ("type_id", "device", "ts", "value", "has_value", "seq")))
    assert [r[3] for r in engine.process(strided).rows()] == [0, 2, 4, 6, 8]


def test_sweep_extremes(engine_cls: type[AnyEngine]) -> None:
    engine = engine_cls(make_pack([FALL]), DEVICE_HOME)
    assert len(engine.sweep(-(2**70))) == 0
    assert len(engine.sweep(2**70)) == 0, "idle slots never fire"
    engine.process(EventBatch.of([ev("fall.detected", 0, 2**53, 1)]))
    assert engine.sweep(2**70).rows() == [(0, 0, 0, 2**53 + 60_000, 1, -1, 0)]


def test_pack_property(engine_cls: type[AnyEngine]) -> None:
    pack = make_pack([BUTTON])
    assert engine_cls(pack, DEVICE_HOME).pack is pack


def test_hysteresis_and_cancel_state_survive_snapshot_restore_and_resize(engine_cls: type[AnyEngine]) -> None:
    """The flag of a raised hysteresis rule and an open cancel window are state: a restart
    from a snapshot must neither raise the low battery again nor forget the press."""
    pack = make_pack([LOW, HELP, FALL])
    engine = engine_cls(pack, DEVICE_HOME)
    engine.process(
        EventBatch.of([ev("device.battery", 2, 1, 1, 5.0), ev("alarm.button", 1, 2, 2), ev("fall.detected", 0, 3, 3)])
    )
    blob = engine.snapshot()
    later = [ev("device.battery", 2, 10, 4, 4.0), ev("alarm.cancel", 1, 20, 5), ev("device.battery", 2, 30, 6, 90.0)]
    expected = [("help", 1, 0, 20, 5, 1, "cancel"), ("low", 2, 1, 30, 6, 2, "clear")]
    for other_cls in ENGINES:
        other = other_cls(pack, DEVICE_HOME)
        other.restore(blob)
        assert other.snapshot() == blob
        assert named(pack, other.process(EventBatch.of(later))) == expected
    # Growing the directory keeps every kind of state where it was.
    engine.resize(np.array([0, 0, 1, 1], np.int32))
    assert named(pack, engine.process(EventBatch.of(later))) == expected
    assert named(pack, engine.sweep(10**9)) == [("fall", 0, 0, 60_003, 3, -1)]
    # The new device has idle state of every kind.
    assert named(pack, engine.process(EventBatch.of([ev("alarm.cancel", 3, 40, 7)]))) == []


def test_restore_refuses_state_for_the_wrong_rule(engine_cls: type[AnyEngine]) -> None:
    """A damaged snapshot that puts a hysteresis flag on a rule without one is refused."""
    import struct

    engine = engine_cls(make_pack([LOW, HELP]), DEVICE_HOME)
    engine.process(EventBatch.of([ev("device.battery", 0, 1, 1, 5.0)]))
    blob = bytearray(engine.snapshot())
    # The only state is one raised flag, (rule i32, device i32): the last 8 bytes.
    assert struct.unpack_from("<ii", blob, len(blob) - 8) == (0, 0)  # the raised flag's rule: `low`
    struct.pack_into("<i", blob, len(blob) - 8, 1)  # now `help`, which has no flags
    with pytest.raises(ValueError, match="state for a rule without state"):
        engine.restore(bytes(blob))
