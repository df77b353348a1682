"""`where` conditions evaluated on an event's JSON `data`, for the shell.

The kernels see numbers only, so the shell (which holds the decoded `data` of each event)
evaluates a pack's conditions once per event and hands the engine one int64 per event,
the `cond` column of `EventBatch`: bit c set iff condition c of `pack.conditions` holds.
An event passes a rule's `where` iff all the rule's bits are set
(`RulePack.condition_mask`).

Equality is that of JSON values, not Python's: 1 == 1.0, but "1" != 1 and true != 1
(Python's `True == 1` would let a `{light: true}` condition match a reading of 1). A
missing field, `data` that is not an object, or a numeric comparison against something
that is not a number (a string, a boolean, null, NaN) does not hold and never raises; the
evaluator names the rules it happened to, so the shell can count them
(`responsecentre_condition_missing_total{rule}`): a sensor that stopped sending `room`
silently disables a rule otherwise.

Only the conditions of rules whose `when` has the event's type are evaluated (`where`
gates `when` events only: follow-ups and cancels are never gated); the other bits stay 0,
which no rule looks at for that type. The per-type plans are built once per pack, so an
event of a type no `where` rule reacts to costs one dict lookup.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from responsecentre.engine.rules import Condition, CondOp, RulePack

__all__ = ["Conditions", "compile_conditions"]

# A test's verdict on one field value.
_HOLDS = 1
_FAILS = 0
_ODD = -1  # not comparable: a numeric test of something that is not a number

_Test = Callable[[Any], int]

_COMPARE: dict[CondOp, Callable[[Any, Any], bool]] = {
    CondOp.LT: operator.lt,
    CondOp.LE: operator.le,
    CondOp.GT: operator.gt,
    CondOp.GE: operator.ge,
}


@dataclass(frozen=True, slots=True)
class _Plan:
    """What an event of one type needs: (bit, field, test) per condition, and per rule
    that reacts to the type with a `where` (name, its condition bits)."""

    checks: tuple[tuple[int, str, _Test], ...]
    rules: tuple[tuple[str, int], ...]


class Conditions:
    """A pack's conditions, compiled per event type (`compile_conditions`)."""

    __slots__ = ("_plans", "conditions", "types")

    def __init__(self, conditions: tuple[Condition, ...], plans: dict[str, _Plan]) -> None:
        self.conditions = conditions  # bit c <-> conditions[c], as in the pack
        self.types: frozenset[str] = frozenset(plans)  # event types some rule with `where` reacts to
        self._plans = plans

    def evaluate(self, type_name: str, data: Mapping[str, Any] | None) -> tuple[int, tuple[str, ...]]:
        """(condition bits, names of the rules that react to `type_name` with a `where`
        whose field is missing from `data` or not comparable), rules in pack order."""
        plan = self._plans.get(type_name)
        if plan is None:
            return 0, ()
        bits = 0
        odd = 0
        for bit, name, test in plan.checks:
            try:
                value = data[name]  # type: ignore[index]
            except (KeyError, TypeError, IndexError):  # absent, or data is None / not an object
                odd |= bit
                continue
            verdict = test(value)
            if verdict == _HOLDS:
                bits |= bit
            elif verdict == _ODD:
                odd |= bit
        if not odd:
            return bits, ()
        return bits, tuple(rule for rule, mask in plan.rules if mask & odd)


def compile_conditions(pack: RulePack) -> Conditions:
    """The per-type plans of `pack` (pure; build once per pack and per reload)."""
    tests = [_test(condition) for condition in pack.conditions]
    checks: dict[str, dict[int, tuple[int, str, _Test]]] = {}
    rules: dict[str, list[tuple[str, int]]] = {}
    for rule in pack.rules:
        if not rule.where:
            continue
        mask = pack.condition_mask(rule)
        for type_name in rule.when:
            rules.setdefault(type_name, []).append((rule.name, mask))
            per_type = checks.setdefault(type_name, {})
            for c, condition in enumerate(pack.conditions):
                if mask >> c & 1:
                    per_type.setdefault(c, (1 << c, condition.field, tests[c]))
    plans = {
        type_name: _Plan(tuple(found[c] for c in sorted(found)), tuple(rules[type_name]))
        for type_name, found in checks.items()
    }
    return Conditions(pack.conditions, plans)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _test(condition: Condition) -> _Test:
    """One condition as a function of the field's value -> _HOLDS, _FAILS or _ODD."""
    op, expected = condition.op, condition.value
    if op is CondOp.EQ:
        return _equals(expected)  # type: ignore[arg-type]
    if op is CondOp.IN:
        assert isinstance(expected, tuple)
        return _member(expected)
    compare = _COMPARE[op]
    bound = expected

    def numeric(value: Any) -> int:
        if not _is_number(value) or (isinstance(value, float) and math.isnan(value)):
            return _ODD
        return _HOLDS if compare(value, bound) else _FAILS

    return numeric


def _equals(expected: str | float | bool) -> _Test:
    if isinstance(expected, bool):
        return lambda value: _HOLDS if isinstance(value, bool) and value == expected else _FAILS
    if isinstance(expected, str):
        return lambda value: _HOLDS if isinstance(value, str) and value == expected else _FAILS
    return lambda value: _HOLDS if _is_number(value) and value == expected else _FAILS


def _member(expected: tuple[str | float | bool, ...]) -> _Test:
    # Booleans apart: in a Python set True is 1 and 1.0. Strings and numbers never collide.
    bools = frozenset(v for v in expected if isinstance(v, bool))
    others = frozenset(v for v in expected if not isinstance(v, bool))

    def member(value: Any) -> int:
        if isinstance(value, bool):
            return _HOLDS if value in bools else _FAILS
        if isinstance(value, str | int | float):
            return _HOLDS if value in others else _FAILS
        return _FAILS  # null, a list or an object equals no scalar

    return member
