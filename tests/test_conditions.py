"""`where` conditions on event data: JSON equality, membership, numbers, missing fields."""

from __future__ import annotations

from typing import Any

import pytest

from responsecentre.engine.conditions import Conditions, compile_conditions
from responsecentre.engine.rules import parse_rules

RAISE = "raise: {kind: k, priority: high, chain: c}"


def compiled(*rules: str) -> Conditions:
    """A pack of flow-style rules (each `name: ..., when: ..., where: ...`)."""
    body = "".join(f"  - {{{rule}, {RAISE}}}\n" for rule in rules)
    return compile_conditions(parse_rules("version: 1\nrules:\n" + body))


def holds(where: str, data: Any, type_name: str = "motion.detected") -> tuple[bool, bool]:
    """(the one condition holds, the rule was reported as missing/non-comparable)."""
    conditions = compiled(f"name: r, when: motion.detected, where: {where}")
    bits, odd = conditions.evaluate(type_name, data)
    assert odd in ((), ("r",))
    return bits == 1, odd == ("r",)


@pytest.mark.parametrize(
    ("where", "data", "expected"),
    [
        # equality on strings
        ("{room: bathroom}", {"room": "bathroom"}, (True, False)),
        ("{room: bathroom}", {"room": "kitchen"}, (False, False)),
        ("{room: bathroom}", {"room": "Bathroom"}, (False, False)),
        ("{room: {equals: bathroom}}", {"room": "bathroom", "level": 3}, (True, False)),
        # equality on numbers: 1 == 1.0, "1" != 1, true != 1
        ("{level: 1}", {"level": 1}, (True, False)),
        ("{level: 1}", {"level": 1.0}, (True, False)),
        ("{level: 1.0}", {"level": 1}, (True, False)),
        ("{level: 1}", {"level": "1"}, (False, False)),
        ("{level: 1}", {"level": True}, (False, False)),
        ("{level: 0}", {"level": False}, (False, False)),
        ("{level: 0}", {"level": -0.0}, (True, False)),
        ("{level: 1}", {"level": None}, (False, False)),
        ("{level: 1}", {"level": [1]}, (False, False)),
        ("{level: 1}", {"level": float("nan")}, (False, False)),
        ("{level: 9007199254740993}", {"level": 9007199254740993.0}, (True, False)),
        # equality on booleans
        ("{open: true}", {"open": True}, (True, False)),
        ("{open: true}", {"open": 1}, (False, False)),
        ("{open: true}", {"open": 1.0}, (False, False)),
        ("{open: true}", {"open": "true"}, (False, False)),
        ("{open: false}", {"open": False}, (True, False)),
        ("{open: false}", {"open": 0}, (False, False)),
        ('{code: "1"}', {"code": "1"}, (True, False)),
        ('{code: "1"}', {"code": 1}, (False, False)),
        ("{light: on}", {"light": "on"}, (True, False)),  # a plain `on` is the word
        ("{light: on}", {"light": True}, (False, False)),
        # membership
        ("{room: {in: [bathroom, toilet]}}", {"room": "toilet"}, (True, False)),
        ("{room: {in: [bathroom, toilet]}}", {"room": "hall"}, (False, False)),
        ("{room: {in: [bathroom, toilet]}}", {"room": ["toilet"]}, (False, False)),
        ("{room: {in: [bathroom, toilet]}}", {"room": {"name": "toilet"}}, (False, False)),
        ("{room: {in: [bathroom, toilet]}}", {"room": None}, (False, False)),
        ("{v: {in: [1, 2]}}", {"v": 2.0}, (True, False)),
        ("{v: {in: [1, 2]}}", {"v": True}, (False, False)),
        ("{v: {in: [1, 2]}}", {"v": "1"}, (False, False)),
        ("{v: {in: [true, x]}}", {"v": True}, (True, False)),
        ("{v: {in: [true, x]}}", {"v": 1}, (False, False)),
        ("{v: {in: [true, x]}}", {"v": 1.0}, (False, False)),
        ("{v: {in: [false]}}", {"v": 0}, (False, False)),
        ("{v: {in: ['1', 2]}}", {"v": 1}, (False, False)),
        ("{v: {in: ['1', 2]}}", {"v": "1"}, (True, False)),
        # numeric comparisons
        ("{level: {above: 3}}", {"level": 4}, (True, False)),
        ("{level: {above: 3}}", {"level": 3}, (False, False)),
        ("{level: {above: 3}}", {"level": 3.0000001}, (True, False)),
        ("{level: {at_least: 3}}", {"level": 3}, (True, False)),
        ("{level: {at_least: 3}}", {"level": 2.9}, (False, False)),
        ("{level: {below: 3}}", {"level": -10}, (True, False)),
        ("{level: {below: 3}}", {"level": 3}, (False, False)),
        ("{level: {at_most: 3}}", {"level": 3.0}, (True, False)),
        ("{level: {at_most: 3}}", {"level": 10**400}, (False, False)),  # a huge JSON integer compares exactly
        ("{level: {above: 3}}", {"level": float("inf")}, (True, False)),
        # a numeric comparison against a non-number: does not hold, and is reported
        ("{level: {above: 3}}", {"level": "4"}, (False, True)),
        ("{level: {above: 3}}", {"level": True}, (False, True)),
        ("{level: {above: 0}}", {"level": False}, (False, True)),
        ("{level: {above: 3}}", {"level": None}, (False, True)),
        ("{level: {above: 3}}", {"level": [4]}, (False, True)),
        ("{level: {above: 3}}", {"level": {"v": 4}}, (False, True)),
        ("{level: {above: 3}}", {"level": float("nan")}, (False, True)),
        # a missing field, or data that is not an object: does not hold, and is reported
        ("{room: bathroom}", {}, (False, True)),
        ("{room: bathroom}", {"Room": "bathroom"}, (False, True)),
        ("{room: bathroom}", None, (False, True)),
        ("{room: bathroom}", [], (False, True)),
        ("{room: bathroom}", ["room"], (False, True)),
        ("{room: bathroom}", "room", (False, True)),
        ("{room: bathroom}", 3, (False, True)),
        ("{room: {in: [a]}}", {}, (False, True)),
        ("{level: {below: 3}}", {}, (False, True)),
    ],
)
def test_one_condition(where: str, data: Any, expected: tuple[bool, bool]) -> None:
    assert holds(where, data) == expected


def test_a_type_without_where_rules_costs_nothing() -> None:
    conditions = compiled("name: r, when: motion.detected, where: {room: bathroom}", "name: s, when: door.opened")
    assert conditions.evaluate("door.opened", None) == (0, ())
    assert conditions.evaluate("fall.detected", {"room": "bathroom"}) == (0, ())
    assert conditions.evaluate("no.such.type", {}) == (0, ())


def test_types_are_those_of_when_in_rules_with_where() -> None:
    conditions = compiled(
        "name: a, when: [motion.detected, bed.*], where: {room: bedroom}",
        "name: b, when: fall.detected, unless: {followed_by: fall.cancelled, within: 1m}, where: {room: hall}",
        "name: c, when: alarm.button, cancel: {by: alarm.cancel}, where: {zone: x}",
        "name: d, when: door.opened",
        "name: e, when: temperature, inactive: {for: 1h}, where: {level: {above: 1}}",
    )
    # followed_by and cancel.by types are never gated, so never evaluated.
    assert conditions.types == {
        "motion.detected",
        "bed.exit",
        "bed.enter",
        "fall.detected",
        "alarm.button",
        "temperature",
    }
    assert conditions.evaluate("fall.cancelled", {}) == (0, ())
    assert conditions.evaluate("alarm.cancel", {}) == (0, ())
    assert compile_conditions(parse_rules("version: 1\nrules: []\n")).types == frozenset()


def test_several_conditions_and_rules() -> None:
    conditions = compiled(
        "name: a, when: motion.detected, where: {room: bathroom, level: {above: 3}}",  # bits 0, 1
        "name: b, when: [motion.detected, door.opened], where: {room: {in: [hall, bathroom]}}",  # bit 2
        "name: c, when: door.opened, where: {room: bathroom, door: front}",  # bits 0, 3
        "name: d, when: motion.detected",
    )
    assert [c.describe() for c in conditions.conditions] == [
        "room: bathroom",
        "level: {above: 3}",
        "room: {in: [hall, bathroom]}",
        "door: front",
    ]
    evaluate = conditions.evaluate
    # Only the conditions of rules whose `when` has the type are evaluated.
    assert evaluate("motion.detected", {"room": "bathroom", "level": 5, "door": "front"}) == (0b0111, ())
    assert evaluate("door.opened", {"room": "bathroom", "level": 5, "door": "front"}) == (0b1101, ())
    assert evaluate("motion.detected", {"room": "hall", "level": 5}) == (0b0110, ())
    # A missing field is reported for each rule that needs it, in pack order, once.
    assert evaluate("motion.detected", {"level": 5}) == (0b0010, ("a", "b"))
    assert evaluate("motion.detected", {"room": "hall"}) == (0b0100, ("a",))
    assert evaluate("motion.detected", {"room": "hall", "level": "high"}) == (0b0100, ("a",))
    assert evaluate("door.opened", {"room": "hall"}) == (0b0100, ("c",))
    assert evaluate("door.opened", {}) == (0, ("b", "c"))
    assert evaluate("door.opened", None) == (0, ("b", "c"))


def test_a_failed_condition_does_not_hide_a_missing_one() -> None:
    conditions = compiled("name: a, when: motion.detected, where: {room: bathroom, level: {above: 3}}")
    assert conditions.evaluate("motion.detected", {"room": "kitchen"}) == (0, ("a",))


def test_bits_follow_the_pack_and_its_masks() -> None:
    text = (
        "version: 1\nrules:\n"
        f"  - {{name: a, when: door.opened, where: {{door: back}}, {RAISE}}}\n"
        f"  - {{name: b, when: motion.detected, where: {{room: bathroom, door: back}}, {RAISE}}}\n"
    )
    pack = parse_rules(text)
    conditions = compile_conditions(pack)
    assert conditions.conditions == pack.conditions
    data = {"room": "bathroom", "door": "back"}
    bits, _ = conditions.evaluate("motion.detected", data)
    mask = pack.condition_mask(pack.rules[1])
    assert mask == 0b11 and bits & mask == mask
    bits, _ = conditions.evaluate("door.opened", data)
    assert bits == pack.condition_mask(pack.rules[0]) == 0b01


def test_sixty_three_conditions_use_bits_0_to_62() -> None:
    fields = ", ".join(f"f{i}: {i}" for i in range(63))
    conditions = compiled(f"name: a, when: motion.detected, where: {{{fields}}}")
    data = {f"f{i}": i for i in range(63)}
    bits, odd = conditions.evaluate("motion.detected", data)
    assert (bits, odd) == ((1 << 63) - 1, ())
    assert bits < 2**63  # fits an int64 column
    del data["f62"]
    assert conditions.evaluate("motion.detected", data) == ((1 << 62) - 1, ("a",))


def test_evaluate_never_raises_on_odd_data() -> None:
    conditions = compiled(
        "name: a, when: motion.detected, where: {room: {in: [a, 1, true]}, level: {above: 3}, x: 1, y: true}"
    )
    odd_values: list[Any] = [None, [], {}, "", 0, -1, 1.5, float("nan"), float("inf"), True, [1, 2], {"a": 1}, 10**400]
    for value in odd_values:
        data = {"room": value, "level": value, "x": value, "y": value}
        bits, _ = conditions.evaluate("motion.detected", data)
        assert 0 <= bits < 16
