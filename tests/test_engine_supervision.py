"""Device supervision (`supervise`) as tables, against both engines; its rule syntax; the
intervals the shell computes from the catalogue and the homes; and the internal status
event types of the contract.

Devices 0 and 1 live in home 0, device 2 in home 1. Device 0 is supervised every 100 ms,
device 1 every 200 ms, device 2 not at all. Rows are (rule name, device, home, ts, origin,
event), plus the action's name unless it is a raise; origin -1 is "never heard from".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from responsecentre.contract import (
    ENGINE_TYPES,
    EVENT_TYPES,
    INTERNAL_TYPES,
    TYPE_ID,
    Rejected,
    RejectReason,
    decode_event,
    encode_event,
    events_topic,
)
from responsecentre.directory import build_directory, load_catalog, parse_catalog
from responsecentre.engine import Engine, EventBatch, ReferenceEngine, RuleError, RuleKind, load_rules, parse_rules
from responsecentre.engine.tables import EventRow
from tests.test_engine_semantics import BUTTON, ENGINES, FALL, ROOT, AnyEngine, check_dtypes, ev, named

DEVICE_HOME = np.array([0, 0, 1], np.int32)
INTERVALS = np.array([100, 200, 0], np.int64)
SUP = "- {name: sup, supervise: {}, raise: {kind: k, priority: medium, chain: c}}"


def make_pack(rules: list[str]) -> Any:
    body = "\n".join(f"  {rule}" for rule in rules)
    return parse_rules(f"version: 1\nalarms: {{k: {{auto_clear: true}}}}\nrules:\n{body}\n")


@dataclass(frozen=True)
class Case:
    id: str
    steps: list[tuple[list[EventRow] | int, list[tuple[Any, ...]]]]
    rules: tuple[str, ...] = (SUP,)


CASES = [
    Case(
        "silence past the interval raises once per device",
        [
            (0, []),  # the first sweep starts the clocks of devices never heard from
            (99, []),
            (100, [("sup", 0, 0, 100, -1, -1)]),
            (150, []),
            (1000, [("sup", 1, 0, 200, -1, -1)]),  # its own, longer interval; device 0 is raised already
            (5000, []),
        ],
    ),
    Case(
        "an event before the interval restarts the clock",
        [
            (0, []),
            ([ev("device.heartbeat", 0, 50, 1)], []),
            (100, []),
            ([ev("motion.detected", 0, 120, 2)], []),  # any type counts
            (219, [("sup", 1, 0, 200, -1, -1)]),
            (220, [("sup", 0, 0, 220, 2, -1)]),
        ],
    ),
    Case(
        "a device heard from before any sweep starts its clock at that event",
        [
            ([ev("device.heartbeat", 0, 500, 1)], []),
            (599, []),  # device 1's clock starts here
            (600, [("sup", 0, 0, 600, 1, -1)]),
            (799, [("sup", 1, 0, 799, -1, -1)]),
        ],
    ),
    Case(
        "device.offline raises at once, once; the sweep leaves an offline device alone",
        [
            (0, []),
            ([ev("device.offline", 0, 10, 1)], [("sup", 0, 0, 10, 1, 0)]),
            ([ev("device.offline", 0, 20, 2)], []),
            (1000, [("sup", 1, 0, 200, -1, -1)]),
        ],
    ),
    Case(
        "device.online clears, then silence raises again from it",
        [
            (0, []),
            ([ev("device.offline", 0, 10, 1)], [("sup", 0, 0, 10, 1, 0)]),
            ([ev("device.online", 0, 20, 2)], [("sup", 0, 0, 20, 2, 0, "clear")]),
            ([ev("device.online", 0, 30, 3)], []),  # a second online: nothing to clear
            (129, []),
            (130, [("sup", 0, 0, 130, 3, -1)]),
        ],
    ),
    Case(
        "any event clears a device raised for silence",
        [
            (0, []),
            (100, [("sup", 0, 0, 100, -1, -1)]),
            ([ev("medication.due", 0, 150, 3)], [("sup", 0, 0, 150, 3, 0, "clear")]),
            (250, [("sup", 0, 0, 250, 3, -1), ("sup", 1, 0, 200, -1, -1)]),
        ],
    ),
    Case(
        "offline and back in one batch: a raise and a clear, in order",
        [
            (0, []),
            (
                [ev("device.offline", 1, 10, 1), ev("device.heartbeat", 1, 11, 2), ev("device.offline", 1, 12, 3)],
                [("sup", 1, 0, 10, 1, 0), ("sup", 1, 0, 11, 2, 1, "clear"), ("sup", 1, 0, 12, 3, 2)],
            ),
        ],
    ),
    Case(
        "an unsupervised device raises nothing, even offline",
        [
            ([ev("device.offline", 2, 10, 1)], []),
            (0, []),
            (10**6, [("sup", 0, 0, 100, -1, -1), ("sup", 1, 0, 200, -1, -1)]),
            ([ev("device.heartbeat", 2, 10**6 + 1, 2)], []),
        ],
    ),
    Case(
        "out of order: the latest time counts; the origin is the latest event in log order",
        [
            ([ev("device.heartbeat", 0, 80, 1), ev("device.heartbeat", 0, 50, 2)], []),
            (179, []),
            (180, [("sup", 0, 0, 180, 2, -1)]),
        ],
    ),
    Case(
        "duplicates: the same event twice changes nothing more than once",
        [
            ([ev("device.heartbeat", 0, 80, 1), ev("device.heartbeat", 0, 80, 1)], []),
            (180, [("sup", 0, 0, 180, 1, -1)]),
            (
                [ev("device.heartbeat", 0, 200, 4), ev("device.heartbeat", 0, 200, 4)],
                [("sup", 0, 0, 200, 4, 0, "clear")],
            ),
        ],
    ),
    Case(
        "an old event clears an offline device; the next sweep raises again from its time",
        [
            (0, []),
            (100, [("sup", 0, 0, 100, -1, -1)]),
            ([ev("device.heartbeat", 0, 40, 5)], [("sup", 0, 0, 40, 5, 0, "clear")]),
            (150, [("sup", 0, 0, 140, 5, -1)]),
        ],
    ),
    Case(
        "with other rules: in pack order on the same event",
        [
            (0, []),
            (100, [("sup", 0, 0, 100, -1, -1)]),
            ([ev("alarm.button", 0, 120, 7)], [("button", 0, 0, 120, 7, 0), ("sup", 0, 0, 120, 7, 0, "clear")]),
            (
                [ev("fall.detected", 1, 130, 8)],
                [],
            ),
            (10**5, [("fall", 1, 0, 60_130, 8, -1), ("sup", 0, 0, 220, 7, -1), ("sup", 1, 0, 330, 8, -1)]),
        ],
        rules=(BUTTON, FALL, SUP),
    ),
]


@pytest.fixture(params=ENGINES, ids=lambda cls: cls.__name__)
def engine_cls(request: pytest.FixtureRequest) -> type[AnyEngine]:
    return request.param  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_timeline(case: Case, engine_cls: type[AnyEngine]) -> None:
    pack = make_pack(list(case.rules))
    engine = engine_cls(pack, DEVICE_HOME, INTERVALS)
    for number, (step, expected) in enumerate(case.steps):
        triggers = engine.sweep(step) if isinstance(step, int) else engine.process(EventBatch.of(step))
        check_dtypes(triggers)
        assert named(pack, triggers) == expected, f"step {number}"


def test_next_due_tracks_supervision(engine_cls: type[AnyEngine]) -> None:
    """0 while a supervised device was never heard from (any sweep starts its clock), exact
    after a sweep, a lower bound after events, None once every supervised device is offline."""
    engine = engine_cls(make_pack([SUP]), DEVICE_HOME, INTERVALS)
    assert engine.next_due() == 0
    engine.sweep(1000)
    assert engine.next_due() == 1100
    engine.process(EventBatch.of([ev("device.heartbeat", 0, 1050, 1)]))
    assert engine.next_due() == 1100  # only ever lowered by an event: a sweep at 1100 finds nothing
    assert engine.sweep(1100).rows() == []
    assert engine.next_due() == 1150
    engine.process(EventBatch.of([ev("device.offline", 0, 1060, 2), ev("device.offline", 1, 1060, 3)]))
    assert len(engine.sweep(1150)) == 0
    assert engine.next_due() is None
    engine.process(EventBatch.of([ev("device.online", 1, 1070, 4)]))
    assert engine.next_due() == 1270


def test_no_supervision_without_intervals(engine_cls: type[AnyEngine]) -> None:
    engine = engine_cls(make_pack([SUP]), DEVICE_HOME)
    assert engine.next_due() is None
    assert engine.process(EventBatch.of([ev("device.offline", 0, 1, 1)])).rows() == []
    assert engine.sweep(10**9).rows() == []


def test_snapshot_carries_supervision_between_engines(engine_cls: type[AnyEngine]) -> None:
    pack = make_pack([SUP])
    engine = engine_cls(pack, DEVICE_HOME, INTERVALS)
    engine.process(EventBatch.of([ev("device.heartbeat", 1, 50, 1), ev("device.offline", 0, 60, 2)]))
    blob = engine.snapshot()
    for other_cls in ENGINES:
        other = other_cls(pack, DEVICE_HOME, INTERVALS)
        other.restore(blob)
        assert other.snapshot() == blob
        assert other.next_due() == 250
        # Device 0 stays offline (no second raise); device 1 falls silent at 250.
        assert named(pack, other.sweep(300)) == [("sup", 1, 0, 250, 1, -1)]
        assert named(pack, other.process(EventBatch.of([ev("door.opened", 0, 310, 3)]))) == [
            ("sup", 0, 0, 310, 3, 0, "clear")
        ]
    # A restore under other intervals keeps the times and applies the new intervals.
    longer = engine_cls(pack, DEVICE_HOME, np.array([100, 1000, 0], np.int64))
    longer.restore(blob)
    assert longer.next_due() == 1050


def test_resize_keeps_supervision_and_new_devices_start_unheard(engine_cls: type[AnyEngine]) -> None:
    pack = make_pack([SUP])
    engine = engine_cls(pack, DEVICE_HOME, INTERVALS)
    engine.sweep(0)
    engine.process(EventBatch.of([ev("device.offline", 0, 10, 1)]))
    engine.resize(np.array([0, 0, 1, 2], np.int32), np.array([100, 200, 0, 50], np.int64))
    assert engine.next_due() == 0  # device 3 has never been heard from
    assert named(pack, engine.sweep(100)) == []  # device 3's clock starts at 100
    assert named(pack, engine.sweep(200)) == [("sup", 1, 0, 200, -1, -1), ("sup", 3, 2, 150, -1, -1)]
    engine.resize(np.array([0, 0, 1, 2, 2], np.int32))  # None: the new device is unsupervised
    if isinstance(engine, Engine):
        assert engine.supervision_ms.tolist() == [100, 200, 0, 50, 0]
    assert named(pack, engine.sweep(10**6)) == []


def test_bad_intervals_are_refused(engine_cls: type[AnyEngine]) -> None:
    pack = make_pack([SUP])
    with pytest.raises(ValueError, match="2 entries for 3 devices"):
        engine_cls(pack, DEVICE_HOME, np.array([1, 2], np.int64))
    with pytest.raises(ValueError, match=r"outside 0\.\.365d"):
        engine_cls(pack, DEVICE_HOME, np.array([1, -2, 0], np.int64))
    with pytest.raises(TypeError, match="integer array"):
        engine_cls(pack, DEVICE_HOME, np.array([1.0, 2.0, 0.0]))


def test_restore_refuses_damaged_supervision_state() -> None:
    pack = make_pack([BUTTON, SUP])
    engine = Engine(pack, DEVICE_HOME, INTERVALS)
    engine.process(EventBatch.of([ev("device.heartbeat", 0, 50, 1)]))
    blob = bytearray(engine.snapshot())
    at = len(blob) - 25  # the one supervision entry: rule (i32) ...
    blob[at : at + 4] = (0).to_bytes(4, "little")  # names `button`, which keeps no such state
    with pytest.raises(ValueError, match="state for a rule without state"):
        engine.restore(bytes(blob))
    blob = bytearray(engine.snapshot())
    blob[-1] = 7  # offline flag neither 0 nor 1
    with pytest.raises(ValueError, match="impossible supervision entry"):
        ReferenceEngine(pack, DEVICE_HOME, INTERVALS).restore(bytes(blob))


# -- the rule syntax ----------------------------------------------------------------------


def test_supervise_rule_parses_with_default_and_given_grace() -> None:
    pack = make_pack([SUP])
    (rule,) = pack.rules
    assert rule.kind is RuleKind.SUPERVISION and rule.grace == 2.0 and rule.when == ENGINE_TYPES
    assert pack.supervision_grace == 2.0
    pack = make_pack(["- {name: s, supervise: {grace: 3}, raise: {kind: k, priority: low, chain: c}}"])
    assert pack.supervision_grace == 3.0
    assert make_pack([BUTTON]).supervision_grace is None
    pack = make_pack(["- {name: s, supervise: null, raise: {kind: k, priority: low, chain: c}}"])
    assert pack.supervision_grace == 2.0


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("- {name: s, supervise: {}, when: door.opened, raise: {kind: k, priority: low, chain: c}}", "takes no 'when'"),
        ("- {name: s, supervise: {}, clear: {kind: k}}", "takes no 'clear'"),
        ("- {name: s, supervise: {}}", "needs 'raise'"),
        ("- {name: s, supervise: {grace: 0.5}, raise: {kind: k, priority: low, chain: c}}", "from 1 to 100"),
        ("- {name: s, supervise: {grac: 2}, raise: {kind: k, priority: low, chain: c}}", "did you mean 'grace'"),
        ("- {name: s, supervise: {}, raise: {kind: other, priority: low, chain: c}}", "not auto-clearable"),
        ("- {name: s, raise: {kind: k, priority: low, chain: c}}", "missing the key 'when'"),
    ],
)
def test_supervise_rule_errors(rule: str, message: str) -> None:
    with pytest.raises(RuleError, match=message) as info:
        make_pack([rule])
    assert info.value.line >= 3


def test_one_supervise_rule_per_pack() -> None:
    second = "- {name: again, supervise: {}, raise: {kind: k, priority: low, chain: c}}"
    with pytest.raises(RuleError, match="supervises devices once") as info:
        make_pack([SUP, second])
    assert info.value.line == 5


def test_internal_types_only_by_name() -> None:
    """`device.*` is what devices send; the internal status types are named explicitly."""
    family = make_pack(["- {name: d, when: device.*, raise: {kind: k, priority: low, chain: c}}"])
    assert set(family.rules[0].when) == {t for t in EVENT_TYPES if t.startswith("device.")}
    named_rule = make_pack(["- {name: d, when: device.offline, raise: {kind: k, priority: low, chain: c}}"])
    assert named_rule.rules[0].when == ("device.offline",)


def test_default_pack_supervises() -> None:
    pack = load_rules(ROOT / "rules" / "default.yaml")
    rule = next(r for r in pack.rules if r.kind is RuleKind.SUPERVISION)
    assert rule.alarm == "device_offline" and rule.chain == "technical" and str(rule.priority) == "medium"
    assert "device_offline" in pack.auto_clear


# -- the contract -------------------------------------------------------------------------


def test_internal_types_keep_the_contract_ids_and_are_refused_from_devices() -> None:
    assert ENGINE_TYPES[: len(EVENT_TYPES)] == EVENT_TYPES
    assert [TYPE_ID[t] for t in INTERNAL_TYPES] == [len(EVENT_TYPES), len(EVENT_TYPES) + 1]
    for type_ in INTERNAL_TYPES:
        with pytest.raises(Rejected) as info:
            decode_event(events_topic("t", "d"), encode_event("1", type_, 1000))
        assert info.value.reason is RejectReason.UNKNOWN_TYPE


# -- intervals from the catalogue and the homes ------------------------------------------

CATALOG = {
    "kinds": {
        "button": {"events": ["alarm.button"], "heartbeat_every": "5m"},
        "door": {"events": ["door.opened"], "heartbeat_every": "5m", "supervision": "30m"},
        "plain": {"events": ["temperature"]},
    }
}


def homes(**extra: Any) -> dict[str, Any]:
    devices = [{"id": "b", "kind": "button"}, {"id": "d", "kind": "door"}, {"id": "p", "kind": "plain"}]
    other = [{"id": "b2", "kind": "button"}, {"id": "d2", "kind": "door"}, {"id": "x", "kind": "unknown"}]
    return {
        "tenants": {
            "t": {
                "homes": [
                    {"id": "h1", "devices": devices, **extra},
                    {"id": "h2", "devices": other},
                ]
            }
        }
    }


def test_intervals_per_kind_and_per_home() -> None:
    catalog = parse_catalog(CATALOG)
    directory = build_directory(homes(supervision={"door": "2h"}))
    ids = [d.device_id for d in directory.device_list]
    got = dict(zip(ids, directory.supervision_ms(catalog, 2.0).tolist(), strict=True))
    minute = 60_000
    assert got == {"b": 10 * minute, "d": 120 * minute, "p": 0, "b2": 10 * minute, "d2": 30 * minute, "x": 0}
    assert directory.supervision_ms(catalog, 3.0)[0] == 15 * minute


def test_home_override_errors() -> None:
    with pytest.raises(ValueError, match="kinds the catalogue lacks: dor"):
        build_directory(homes(supervision={"dor": "2h"})).supervision_ms(parse_catalog(CATALOG), 2.0)
    with pytest.raises(ValueError, match=r"h1: supervision\.door: duration"):
        build_directory(homes(supervision={"door": "soon"}))
    with pytest.raises(ValueError, match="catalogue kind x: heartbeat_every"):
        parse_catalog({"kinds": {"x": {"heartbeat_every": "0s"}}})


def test_the_repository_catalogue_supervises_every_kind() -> None:
    catalog = load_catalog(ROOT / "devices" / "catalog.yaml")
    assert catalog and all(spec.heartbeat_every_ms for spec in catalog.values())
