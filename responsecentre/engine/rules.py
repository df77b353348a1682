"""Rule packs: YAML that a municipality edits -> a validated, immutable `RulePack`.

The people who write these files are not programmers, so every mistake must be reported
with the file and the line of the offending node (`rules/x.yaml:12: unknown event type
'fall.detectd' (did you mean 'fall.detected'?)`). That is why the loader walks the node
tree of `yaml.compose` (which keeps line marks) instead of the plain Python objects of
`yaml.safe_load`, and why unknown keys are errors: a typo such as `unles:` must not
silently turn a "not followed by" rule into a plain match that pages a nurse for every
fall that was cancelled.

The language itself is documented in docs/rules.md.

A home may change a rule's numbers and window (`apply_overrides`, fed from
devices/homes.yaml); the same checks apply there, reported with the home instead of a line.

Some mistakes only show across rules (a `clear` for an alarm kind that no rule raises, a
hysteresis rule whose kind is not declared auto-clearable); they are checked after every
rule is read and still reported at the line of the node that is wrong.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from responsecentre.contract import ENGINE_TYPES, EVENT_TYPES, TYPE_ID
from responsecentre.engine.localtime import ALL_DAYS, DAY_MS

__all__ = [
    "ALL_DAYS",
    "DAY_MS",
    "DAY_NAMES",
    "DEFAULT_CANCEL_WITHIN_MS",
    "DEFAULT_GRACE",
    "MAX_CONDITIONS",
    "MAX_COUNT",
    "MAX_DURATION_MS",
    "MAX_INACTIVE_MS",
    "CondOp",
    "Condition",
    "Op",
    "Priority",
    "Rule",
    "RuleError",
    "RuleKind",
    "RulePack",
    "Scope",
    "Window",
    "apply_overrides",
    "format_time",
    "load_rules",
    "parse_duration",
    "parse_rules",
    "parse_time_of_day",
]

# Weekday names in the order of the bits of `Window.days` (localtime.ALL_DAYS: bit 0 = Monday).
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# A count keeps the times of its last n events per device or home: 16 keeps that ring
# inside the engine's per-device state budget, and nobody presses a button 17 times.
MAX_COUNT = 16

# Silence longer than a week is no longer "inactivity in a daily window" but a home
# nobody lives in; the bound also keeps the search for the in-window deadline short.
MAX_INACTIVE_MS = 7 * DAY_MS

# Condition bits travel in one int64 column per event; bit 63 would be the sign.
MAX_CONDITIONS = 63

# A deadline longer than a year is a typo ("1000d"), and the cap keeps `ts + within` far
# away from the int64 limit the kernels use as "no deadline pending".
MAX_DURATION_MS = 365 * 24 * 3600 * 1000

# The resident's cancel window when a rule's `cancel` does not say (the "2 min").
DEFAULT_CANCEL_WITHIN_MS = 2 * 60_000

# A supervised device may miss one heartbeat: silence for heartbeat_every x this raises.
DEFAULT_GRACE = 2.0

Scope = Literal["device", "home"]
Action = Literal["raise", "clear"]

_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_IDENT = re.compile(r"[a-z0-9_-]+")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_NAME_CHARS = "a-z, 0-9 and '-'"
_IDENT_CHARS = "a-z, 0-9, '_' and '-'"
_RULE_KEYS = (
    "name",
    "when",
    "value",
    "unless",
    "count",
    "inactive",
    "scope",
    "during",
    "where",
    "cancel",
    "supervise",
    "raise",
    "clear",
)
_KIND_KEYS = ("value", "unless", "count", "inactive")  # each decides the rule's kind
_FIELD = re.compile(r"[A-Za-z0-9_]+")
_TIME = re.compile(r"(\d{1,2}):(\d{2})")


class RuleError(ValueError):
    """A rule pack that cannot be loaded; the message starts with `file:line:`."""

    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}:{line}: {message}")
        self.source = source
        self.line = line
        self.message = message


class Priority(StrEnum):
    """How urgent an alarm is; `rank` orders the operator's queue (critical first)."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.CRITICAL: 0, Priority.HIGH: 1, Priority.MEDIUM: 2, Priority.LOW: 3}


class RuleKind(StrEnum):
    """What the engine evaluates; derived from which keys a rule has."""

    MATCH = "match"  # `when` only: every matching event raises
    THRESHOLD = "threshold"  # `when` + `value`: a matching event whose value passes the test
    NOT_FOLLOWED = "not_followed"  # `when` + `unless`: a deadline that a follow-up cancels
    HYSTERESIS = "hysteresis"  # `value` with `clear_above`/`clear_below`: raise once, then clear
    SUPERVISION = "supervision"  # `supervise`: a device silent too long, or offline, raises
    COUNT = "count"  # `when` + `count`: n counted events within a time raise
    INACTIVE = "inactive"  # `when` + `inactive`: no activity in a home for a time raises


class Op(StrEnum):
    """The comparison of a threshold rule: `value <op> threshold` (YAML word in comments)."""

    LT = "lt"  # below
    LE = "le"  # at_most
    GT = "gt"  # above
    GE = "ge"  # at_least
    EQ = "eq"  # equals


_VALUE_OPS = {"below": Op.LT, "at_most": Op.LE, "above": Op.GT, "at_least": Op.GE, "equals": Op.EQ}
# The clearing bound of a hysteresis rule, and the comparisons it may go with: a low
# reading raises and a high one clears, or the other way round.
_CLEAR_OPS = {"clear_above": Op.GT, "clear_below": Op.LT}
_CLEAR_PAIRS = {"clear_above": ("below", "at_most"), "clear_below": ("above", "at_least")}
_OP_WORDS = {op: word for word, op in _VALUE_OPS.items()}
_CLEAR_WORDS = {op: word for word, op in _CLEAR_OPS.items()}


class CondOp(StrEnum):
    """The test of one `where` condition on a `data` field; the values are the YAML words."""

    EQ = "equals"
    IN = "in"
    LT = "below"
    LE = "at_most"
    GT = "above"
    GE = "at_least"


# What a condition compares with: a JSON scalar (numbers are floats: 1 == 1.0).
Scalar = str | float | bool


@dataclass(frozen=True, slots=True)
class Window:
    """A daily window of local wall-clock time: `from_ms` up to `to_ms` (ms of the local day),
    on the days in `days` (bit 0 = Monday). `from_ms > to_ms` crosses midnight; such a
    window belongs to the day it starts on. `from_ms == to_ms` is never built."""

    from_ms: int
    to_ms: int
    days: int = ALL_DAYS

    @property
    def crosses_midnight(self) -> bool:
        return self.from_ms > self.to_ms

    def describe(self) -> str:
        """The window as a rule author writes it (for `rules check` and `rules explain`)."""
        text = f'from: "{format_time(self.from_ms)}", to: "{format_time(self.to_ms)}"'
        if self.days != ALL_DAYS:
            text += ", days: [" + ", ".join(d for i, d in enumerate(DAY_NAMES) if self.days >> i & 1) + "]"
        return "{" + text + "}"


@dataclass(frozen=True, slots=True, eq=False)
class Condition:
    """One `where` test: the event's `data[field]` against `value` with `op`.

    Equality is that of JSON values, not Python's: `True == 1.0` in Python, but a
    condition on `true` and one on `1` are different conditions (and get different bits),
    hence the explicit `__eq__`/`__hash__` over a typed key.
    """

    field: str
    op: CondOp
    value: Scalar | tuple[Scalar, ...]

    def _key(self) -> tuple[str, str, object]:
        return (self.field, self.op.value, _typed(self.value))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Condition):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def describe(self) -> str:
        """The condition as a rule author writes it: `room: bathroom`, `level: {above: 3}`."""
        if self.op is CondOp.EQ:
            return f"{self.field}: {_scalar_text(self.value)}"
        if isinstance(self.value, tuple):
            shown = "[" + ", ".join(_scalar_text(v) for v in self.value) + "]"
        else:
            shown = _scalar_text(self.value)
        return f"{self.field}: {{{self.op.value}: {shown}}}"


def _typed(value: object) -> object:
    """A key that tells JSON types apart (bool before int: `True` is an `int` in Python)."""
    if isinstance(value, tuple):
        return ("list", tuple(_typed(v) for v in value))
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", float(value))
    return ("string", value)


def _scalar_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _num(value)
    return json.dumps(value) if _needs_quotes(str(value)) else str(value)


def _needs_quotes(text: str) -> bool:
    """A string YAML would read as something else (a number, a bool, null, a list) is quoted."""
    try:
        return not text or yaml.safe_load(text) != text
    except yaml.YAMLError:
        return True


def _condition_json(condition: Condition) -> str:
    value = list(condition.value) if isinstance(condition.value, tuple) else condition.value
    return json.dumps([condition.field, condition.op.value, value], separators=(",", ":"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One validated rule. `when`/`unless`/`cancel_by` hold type names, families expanded.

    `action` is what a firing decides: "raise" an alarm of kind `alarm`, or "clear" the
    home's open alarm of that kind. A clear rule has no `raise:` of its own; it carries
    the priority and chain of the first rule that raises its kind, so that every rule
    describes a complete alarm (the shell and the tools need not special-case it).
    """

    name: str
    kind: RuleKind
    when: tuple[str, ...]
    op: Op | None = None  # THRESHOLD and HYSTERESIS: the raising comparison
    threshold: float | None = None  # THRESHOLD and HYSTERESIS
    clear_op: Op | None = None  # HYSTERESIS only: the clearing comparison
    clear_threshold: float | None = None  # HYSTERESIS only
    unless: tuple[str, ...] = ()  # NOT_FOLLOWED only
    within_ms: int = 0  # NOT_FOLLOWED only
    scope: Scope = "device"  # NOT_FOLLOWED: whose follow-up cancels; COUNT: whose events count together;
    # INACTIVE: always "home"
    cancel_by: tuple[str, ...] = ()  # the resident's cancel (MATCH/THRESHOLD raising rules)
    cancel_within_ms: int = 0  # how long after the trigger a cancel counts (with cancel_by)
    grace: float = 0.0  # SUPERVISION only: interval = heartbeat_every x grace (the shell applies it)
    count_n: int = 0  # COUNT only: how many counted events (1..16) ...
    count_within_ms: int = 0  # ... within how long raise
    inactive_ms: int = 0  # INACTIVE only: how long without activity (in-window time) raises
    during: Window | None = None  # every kind but SUPERVISION: the daily window (None: all day)
    where: tuple[Condition, ...] = ()  # every kind but SUPERVISION: all must hold for the event
    action: Action = "raise"
    alarm: str  # the alarm kind raised (`raise.kind`) or cleared (`clear.kind`)
    priority: Priority
    chain: str
    line: int = 0  # 1-based line of the rule in its file, for messages

    @property
    def meaning(self) -> str:
        """A short hash of everything that decides what the rule's engine state means.

        A hot reload keeps the state of a rule whose name and meaning did not change, so
        it covers every field that the state depends on, and none that it does not: not
        `name` (that is the other half of the key), `line`, `priority`, `chain` or the
        alarm kind. Type lists and conditions are sets, so their order does not count.
        Computed from canonical JSON (not Python's `hash`), so it is the same in every run.
        """
        canon = {
            "kind": self.kind.value,
            "when": sorted(self.when),
            "unless": sorted(self.unless),
            "cancel_by": sorted(self.cancel_by),
            "op": None if self.op is None else self.op.value,
            "threshold": self.threshold,
            "clear_op": None if self.clear_op is None else self.clear_op.value,
            "clear_threshold": self.clear_threshold,
            "within_ms": self.within_ms,
            "scope": self.scope,
            "cancel_within_ms": self.cancel_within_ms,
            "grace": self.grace,
            "count": [self.count_n, self.count_within_ms],
            "inactive_ms": self.inactive_ms,
            "during": None if self.during is None else [self.during.from_ms, self.during.to_ms, self.during.days],
            "where": sorted(_condition_json(c) for c in self.where),
            "action": self.action,
        }
        text = json.dumps(canon, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def types(self) -> tuple[str, ...]:
        """Every event type this rule reacts to (`when`, then `unless`, then `cancel_by`)."""
        out = list(self.when)
        out += [t for t in self.unless if t not in out]
        out += [t for t in self.cancel_by if t not in out]
        return tuple(out)


@dataclass(frozen=True, slots=True)
class RulePack:
    """An ordered set of rules; a rule's index in `rules` is its id in the engine's output.

    `auto_clear` holds the alarm kinds the pack declares auto-clearable (`alarms:`): only
    those may be closed by a clear decision, since closing an alarm without a person is a
    choice the municipality makes per kind, not a side effect of a rule.
    """

    rules: tuple[Rule, ...] = ()
    source: str = field(default="<string>", compare=False)  # file name, for messages
    auto_clear: frozenset[str] = frozenset()
    # The distinct `where` conditions of all rules, in order of first use: condition c is
    # bit c of an event's `cond` column. Derived from `rules` when not given.
    conditions: tuple[Condition, ...] = ()
    sha256: str = field(default="", compare=False)  # hex sha256 of the file's text ("" if built in code)

    def __post_init__(self) -> None:
        if not self.conditions:
            found = _collect_conditions(self.rules)
            if len(found) > MAX_CONDITIONS:
                raise ValueError(f"a pack may use at most {MAX_CONDITIONS} different conditions in 'where'")
            object.__setattr__(self, "conditions", found)

    def condition_mask(self, rule: Rule) -> int:
        """The bits of `rule`'s conditions: an event passes its `where` iff all are set."""
        mask = 0
        for condition in rule.where:
            try:
                mask |= 1 << self.conditions.index(condition)
            except ValueError:
                message = f"rule {rule.name!r}: condition {condition.describe()} is not one of the pack's"
                raise ValueError(message) from None
        return mask

    def index(self, name: str) -> int:
        """The engine's id of the rule called `name` (KeyError if there is none)."""
        for i, rule in enumerate(self.rules):
            if rule.name == name:
                return i
        raise KeyError(name)

    def __len__(self) -> int:
        return len(self.rules)

    @property
    def supervision_grace(self) -> float | None:
        """The grace factor of the pack's `supervise` rule, None if it has none (then no
        device is supervised). The shell turns it into per-device intervals."""
        for rule in self.rules:
            if rule.kind is RuleKind.SUPERVISION:
                return rule.grace
        return None


def _collect_conditions(rules: Sequence[Rule]) -> tuple[Condition, ...]:
    seen: dict[Condition, None] = {}
    for rule in rules:
        for condition in rule.where:
            seen.setdefault(condition, None)
    return tuple(seen)


def parse_duration(value: object) -> int:
    """A duration ("500ms", "60s", "30m", "12h", "1d", or a bare number of seconds) -> ms.

    Raises ValueError with a message fit for a rule author. Arithmetic is exact
    (`Fraction`), so "0.1s" is 100 ms and not 100.00000000000001.
    """
    wrong = f"duration must be a number of seconds or a string like '60s', not {value!r}"
    if isinstance(value, bool):
        raise ValueError(wrong)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"duration {value!r} is not a finite number")
        amount, unit, shown = Fraction(str(value)), "s", str(value)
    elif isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"duration {value!r} is not a number followed by ms, s, m, h or d")
        amount, unit, shown = Fraction(match.group(1)), match.group(2) or "s", repr(value)
    else:
        raise ValueError(wrong)
    ms = amount * _UNIT_MS[unit]
    if ms <= 0:
        raise ValueError(f"duration {shown} must be greater than zero")
    if ms.denominator != 1:
        raise ValueError(f"duration {shown} is not a whole number of milliseconds")
    if ms > MAX_DURATION_MS:
        raise ValueError(f"duration {shown} is longer than 365d")
    return int(ms)


def format_time(ms: int) -> str:
    """Milliseconds of the local day -> "HH:MM"."""
    minutes = ms // 60_000
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_time_of_day(text: str, word: str = "time") -> int:
    """ "HH:MM" or "H:MM", 00:00..23:59 -> ms of the local day; ValueError otherwise."""
    match = _TIME.fullmatch(text.strip())
    if match is not None:
        hours, minutes = int(match.group(1)), int(match.group(2))
        if hours <= 23 and minutes <= 59:
            return (hours * 60 + minutes) * 60_000
    hint = " (midnight is 00:00)" if text.strip() in ("24:00", "24:00:00") else ""
    raise ValueError(f"{word} {text!r} is not a time of day from 00:00 to 23:59 written as HH:MM{hint}")


def _day_bit(word: str) -> int:
    if word not in DAY_NAMES:
        raise ValueError(f"unknown day {word!r}{_suggest(word, DAY_NAMES)} (days are {', '.join(DAY_NAMES)})")
    return 1 << DAY_NAMES.index(word)


def _window(from_ms: int, to_ms: int, days: int) -> Window:
    if from_ms == to_ms:
        shown = format_time(from_ms)
        raise ValueError(
            f"a window from {shown} to {shown} is empty or the whole day; leave out `during` for the whole day"
        )
    return Window(from_ms, to_ms, days)


def _count_n(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"count n must be a whole number from 1 to {MAX_COUNT}, not {value!r}")
    if value == 0:
        raise ValueError(f"a count of 0 never fires (n is from 1 to {MAX_COUNT})")
    if value < 0:
        raise ValueError(f"count n {value} must be from 1 to {MAX_COUNT}")
    if value > MAX_COUNT:
        raise ValueError(
            f"count n {value} is more than {MAX_COUNT} (the engine keeps the times of at most "
            f"{MAX_COUNT} events per device or home)"
        )
    return value


def _inactive_ms(value: object) -> int:
    ms = parse_duration(value)
    if ms > MAX_INACTIVE_MS:
        raise ValueError(f"inactive for {value!r} is longer than 7d (a home silent for a week is not inactivity)")
    return ms


def _duration_text(ms: int) -> str:
    """A duration in the pack's own words: 20h, 90m, 45s, 1500ms."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _check_inactive_window(inactive_ms: int, during: Window | None) -> None:
    """The silence must fit into one week of its window: a longer one takes weeks to notice
    (the engine's search for the deadline also stops after about a year)."""
    if during is None:
        return
    per_day = (during.to_ms - during.from_ms) % DAY_MS
    days = during.days.bit_count()
    if inactive_ms > per_day * days:
        raise ValueError(
            f"inactive for {_duration_text(inactive_ms)} is more than its window holds in a week "
            f"({_duration_text(per_day * days)}: {_duration_text(per_day)} on {days} day{'s' if days > 1 else ''}); "
            "shorten 'for' or widen the window"
        )


def _check_clear_side(word: str, threshold: float, clear_word: str, bound: float) -> None:
    """A hysteresis bound on the wrong side of the threshold would raise and clear at once."""
    if (clear_word == "clear_above" and bound < threshold) or (clear_word == "clear_below" and bound > threshold):
        side = "below" if clear_word == "clear_above" else "above"
        raise ValueError(
            f"{clear_word} {_num(bound)} is {side} the threshold ({word} {_num(threshold)}): "
            f"a reading would both raise and clear"
        )


def load_rules(path: str | Path) -> RulePack:
    """Load and validate a rule pack file; errors name the path as given."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RuleError(source, 1, f"not UTF-8 text ({exc.reason})") from None
    return parse_rules(text, source=source)


def parse_rules(text: str, source: str = "<string>") -> RulePack:
    """Parse and validate rule-pack YAML; `source` is the name used in error messages.
    The pack's `sha256` is that of `text`, so `/api/rules` can say which file is running."""
    pack = _Parser(source).pack(text)
    return replace(pack, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest())


class _Parser:
    """Walks the composed YAML node tree, keeping line numbers for every error."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._constructor = SafeConstructor()

    def fail(self, node: Node, message: str) -> RuleError:
        return RuleError(self.source, node.start_mark.line + 1, message)

    # -- generic node helpers ------------------------------------------------------------

    def scalar(self, node: Node, what: str) -> Any:
        if not isinstance(node, ScalarNode):
            raise self.fail(node, f"{what} must be a single value, not a {_shape(node)}")
        return self._constructor.construct_object(node)

    def string(self, node: Node, what: str) -> str:
        value = self.scalar(node, what)
        if not isinstance(value, str):
            raise self.fail(node, f"{what} must be a string, not {value!r}")
        return value

    def identifier(self, node: Node, what: str, pattern: re.Pattern[str], chars: str) -> str:
        value = self.string(node, what)
        if not pattern.fullmatch(value):
            raise self.fail(node, f"{what} {value!r} may only contain {chars}")
        return value

    def mapping(
        self, node: Node, what: str, allowed: Sequence[str], required: Sequence[str] = ()
    ) -> dict[str, tuple[Node, Node]]:
        """Keys -> (key node, value node); rejects duplicates, unknown and missing keys."""
        if not isinstance(node, MappingNode):
            raise self.fail(node, f"{what} must be a mapping (key: value), not a {_shape(node)}")
        out: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node, f"a key in {what}")
            if not isinstance(key, str) or key not in allowed:
                hint = _suggest(str(key), allowed)
                listed = ", ".join(allowed)
                message = f"unknown key {key!r} in {what}{hint} (allowed: {listed})"
                raise self.fail(key_node, message)
            if key in out:
                first = out[key][0].start_mark.line + 1
                message = f"duplicate key {key!r} in {what} (first at line {first})"
                raise self.fail(key_node, message)
            out[key] = (key_node, value_node)
        for key in required:
            if key not in out:
                raise self.fail(node, f"{what} is missing the key {key!r}")
        return out

    # -- the language --------------------------------------------------------------------

    def pack(self, text: str) -> RulePack:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 1
            problem = exc.problem or exc.context
            raise RuleError(self.source, line, f"invalid YAML: {problem}") from None
        except yaml.YAMLError as exc:
            raise RuleError(self.source, 1, f"invalid YAML: {exc}") from None
        if root is None:
            raise RuleError(self.source, 1, "empty rule pack (expected 'version: 1' and 'rules:')")
        top = self.mapping(root, "the rule pack", ("version", "alarms", "rules"), ("version", "rules"))
        version_node = top["version"][1]
        version = self.scalar(version_node, "version")
        if version != 1 or isinstance(version, bool):
            raise self.fail(version_node, f"unsupported version {version!r} (this engine reads 1)")
        auto_clear = self.alarms(top["alarms"][1]) if "alarms" in top else {}
        rules_node = top["rules"][1]
        if isinstance(rules_node, ScalarNode) and self.scalar(rules_node, "rules") is None:
            return RulePack((), self.source, frozenset(auto_clear))  # `rules:` with nothing under it
        if not isinstance(rules_node, SequenceNode):
            raise self.fail(rules_node, f"rules must be a list, not a {_shape(rules_node)}")
        rules: list[Rule] = []
        seen: dict[str, int] = {}
        clears: list[tuple[int, Node]] = []  # (rule index, node naming the cleared kind)
        conditions: dict[Condition, None] = {}  # in order of first use
        for item in rules_node.value:
            rule, clear_node, used = self.rule(item)
            if rule.name in seen:
                first = seen[rule.name]
                raise self.fail(item, f"duplicate rule name {rule.name!r} (first at line {first})")
            seen[rule.name] = rule.line
            if clear_node is not None:
                clears.append((len(rules), clear_node))
            for condition, key_node in used:
                if condition not in conditions and len(conditions) == MAX_CONDITIONS:
                    message = (
                        f"a pack may use at most {MAX_CONDITIONS} different conditions in 'where'; "
                        f"{condition.describe()} is the {MAX_CONDITIONS + 1}th"
                    )
                    raise self.fail(key_node, message)
                conditions.setdefault(condition, None)
            rules.append(rule)
        self.check_clears(rules, clears, auto_clear)
        supervising = [rule for rule in rules if rule.kind is RuleKind.SUPERVISION]
        if len(supervising) > 1:
            first, second = supervising[:2]
            message = (
                f"a pack supervises devices once: rule {second.name!r} repeats the 'supervise' of "
                f"{first.name!r} (line {first.line})"
            )
            raise RuleError(self.source, second.line, message)
        return RulePack(tuple(rules), self.source, frozenset(auto_clear), tuple(conditions))

    def alarms(self, node: Node) -> dict[str, int]:
        """`alarms: {kind: {auto_clear: true}}` -> {auto-clearable kind: line}."""
        if isinstance(node, ScalarNode) and self.scalar(node, "alarms") is None:
            return {}
        if not isinstance(node, MappingNode):
            raise self.fail(node, f"alarms must be a mapping (alarm kind: options), not a {_shape(node)}")
        out: dict[str, int] = {}
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            kind = self.identifier(key_node, "alarm kind", _IDENT, _IDENT_CHARS)
            line = key_node.start_mark.line + 1
            if kind in seen:
                raise self.fail(key_node, f"duplicate alarm kind {kind!r} in alarms (first at line {seen[kind]})")
            seen[kind] = line
            options = self.mapping(value_node, f"alarms.{kind}", ("auto_clear",), ("auto_clear",))
            flag_node = options["auto_clear"][1]
            flag = self.scalar(flag_node, "auto_clear")
            if not isinstance(flag, bool):
                raise self.fail(flag_node, f"auto_clear must be true or false, not {flag!r}")
            if flag:
                out[kind] = line
        return out

    def check_clears(self, rules: list[Rule], clears: list[tuple[int, Node]], auto_clear: dict[str, int]) -> None:
        """Cross-rule checks, and a clear rule's priority and chain taken from the rule that
        raises its kind. Clearing is only for kinds that a rule raises (otherwise the clear
        is a typo that would never close anything) and that the pack declares auto-clearable."""
        raisers: dict[str, Rule] = {}
        for rule in rules:
            if rule.action == "raise":
                raisers.setdefault(rule.alarm, rule)
        declare = "declare it under 'alarms:' as {kind}: {{auto_clear: true}}"
        for index, node in clears:
            rule = rules[index]
            raiser = raisers.get(rule.alarm)
            if raiser is None:
                raised = ", ".join(sorted(raisers)) or "none"
                hint = _suggest(rule.alarm, sorted(raisers))
                message = f"clear names alarm kind {rule.alarm!r}, which no rule raises{hint} (raised: {raised})"
                raise self.fail(node, message)
            if rule.alarm not in auto_clear:
                message = f"alarm kind {rule.alarm!r} is not auto-clearable; " + declare.format(kind=rule.alarm)
                raise self.fail(node, message)
            rules[index] = replace(rule, priority=raiser.priority, chain=raiser.chain)
        for rule in rules:
            if rule.kind is RuleKind.SUPERVISION and rule.alarm not in auto_clear:
                message = (
                    f"rule {rule.name!r} supervises devices, and a device heard from again clears its "
                    f"alarm kind {rule.alarm!r}, but that kind is not auto-clearable; "
                    + declare.format(kind=rule.alarm)
                )
                raise RuleError(self.source, rule.line, message)
            if rule.kind is RuleKind.HYSTERESIS and rule.alarm not in auto_clear:
                word = "clear_above" if rule.clear_op is Op.GT else "clear_below"
                message = (
                    f"rule {rule.name!r} clears alarm kind {rule.alarm!r} with {word}, but that kind is not "
                    "auto-clearable; " + declare.format(kind=rule.alarm)
                )
                raise RuleError(self.source, rule.line, message)

    def rule(self, node: Node) -> tuple[Rule, Node | None, list[tuple[Condition, Node]]]:
        """One rule; for a clear rule the node of its kind (checked across rules later); and
        each `where` condition with its node (numbered across the pack later)."""
        keys = self.mapping(node, "a rule", _RULE_KEYS, ("name",))
        name = self.identifier(keys["name"][1], "rule name", _NAME, _NAME_CHARS)
        if "supervise" in keys:
            return self.supervise_rule(node, keys, name), None, []
        if "when" not in keys:
            raise self.fail(node, "a rule is missing the key 'when'")
        when = self.types(keys["when"][1], "when")
        if "raise" in keys and "clear" in keys:
            raise self.fail(keys["clear"][0], "a rule takes either 'raise' or 'clear', not both")
        if "raise" not in keys and "clear" not in keys:
            raise self.fail(node, "a rule needs 'raise' (an alarm) or 'clear' (close one)")
        clear_node: Node | None = None
        action: Action = "raise"
        if "raise" in keys:
            alarm, priority, chain = self.raise_(keys["raise"][1])
        else:
            action = "clear"
            alarm, clear_node = self.clear(keys["clear"][1])
            priority, chain = Priority.LOW, ""  # taken from the raising rule in check_clears
        self.check_combinations(keys, action)
        fields: dict[str, Any] = {}
        if "value" in keys:
            fields["kind"] = RuleKind.THRESHOLD
            fields["op"], fields["threshold"], clear = self.value(keys["value"][1])
            if clear is not None:
                clear_word_node, fields["clear_op"], fields["clear_threshold"] = clear
                if action == "clear":
                    raise self.fail(clear_word_node, "a clear rule takes no clear_above or clear_below")
                if "cancel" in keys:
                    raise self.fail(keys["cancel"][0], "'cancel' does not go with clear_above or clear_below")
                fields["kind"] = RuleKind.HYSTERESIS
        if "unless" in keys:
            fields["kind"] = RuleKind.NOT_FOLLOWED
            fields["unless"], fields["within_ms"] = self.unless(keys["unless"][1])
        if "count" in keys:
            fields["kind"] = RuleKind.COUNT
            fields["count_n"], fields["count_within_ms"] = self.count(keys["count"][1])
        if "inactive" in keys:
            fields["kind"] = RuleKind.INACTIVE
            fields["inactive_ms"] = self.inactive(keys["inactive"][1])
            fields["scope"] = "home"  # a home's silence: any device's activity counts
        if "scope" in keys:
            fields["scope"] = self.scope(keys["scope"][1])
        if "cancel" in keys:
            fields["cancel_by"], fields["cancel_within_ms"] = self.cancel(keys["cancel"][1], when)
        if "during" in keys:
            fields["during"] = self.during(keys["during"][1])
        if "inactive" in keys:
            try:
                _check_inactive_window(fields["inactive_ms"], fields.get("during"))
            except ValueError as exc:
                raise self.fail(keys["inactive"][1], str(exc)) from None
        conditions: list[tuple[Condition, Node]] = []
        if "where" in keys:
            conditions = self.where(keys["where"][1])
            fields["where"] = tuple(condition for condition, _ in conditions)
        rule = Rule(
            name=name,
            kind=fields.pop("kind", RuleKind.MATCH),
            when=when,
            action=action,
            alarm=alarm,
            priority=priority,
            chain=chain,
            line=node.start_mark.line + 1,
            **fields,
        )
        return rule, clear_node, conditions

    def check_combinations(self, keys: dict[str, tuple[Node, Node]], action: Action) -> None:
        """Keys that do not go together, reported at the later one. `value`, `unless`,
        `count` and `inactive` each decide what the rule is, so a rule has at most one."""
        deciding = sorted((word for word in _KIND_KEYS if word in keys), key=lambda w: keys[w][0].start_mark.index)
        if len(deciding) > 1:
            first, second = deciding[:2]
            raise self.fail(
                keys[second][0], f"a rule takes either {first!r} or {second!r}, not both (split it into two rules)"
            )
        if "scope" in keys:
            if "inactive" in keys:
                raise self.fail(keys["scope"][0], "an 'inactive' rule is always per home; leave out 'scope'")
            if "unless" not in keys and "count" not in keys:
                raise self.fail(keys["scope"][0], "'scope' applies only to rules with 'unless' or 'count'")
        if action == "clear":
            for word in ("unless", "count", "inactive"):
                if word in keys:
                    raise self.fail(keys[word][0], f"a clear rule takes no {word!r} (it clears on the event itself)")
        if "cancel" in keys:
            if action == "clear":
                raise self.fail(keys["cancel"][0], "'cancel' applies only to rules that raise")
            if "unless" in keys:
                raise self.fail(
                    keys["cancel"][0], "'cancel' does not go with 'unless' (put the cancel in 'followed_by')"
                )
            for word in ("count", "inactive"):
                if word in keys:
                    raise self.fail(
                        keys["cancel"][0],
                        f"'cancel' does not go with {word!r} (a resident cancels the alarm of one press: "
                        "a match or threshold rule)",
                    )

    def supervise_rule(self, node: Node, keys: dict[str, tuple[Node, Node]], name: str) -> Rule:
        """`supervise: {grace: 2}` with a `raise`: every event of a device counts as a sign
        of life, so the rule has no `when`; nor anything else that picks events."""
        for word in ("when", "value", "unless", "count", "inactive", "scope", "during", "where", "cancel", "clear"):
            if word in keys:
                if word == "when":
                    why = "every event of a device is a sign of life"
                elif word in ("during", "where"):
                    why = "supervision runs around the clock; override the interval per home instead"
                else:
                    why = "it raises and clears itself"
                raise self.fail(keys[word][0], f"a supervise rule takes no {word!r} ({why})")
        if "raise" not in keys:
            raise self.fail(node, "a supervise rule needs 'raise' (the alarm of a device gone silent)")
        alarm, priority, chain = self.raise_(keys["raise"][1])
        grace = DEFAULT_GRACE
        options_node = keys["supervise"][1]
        if not (isinstance(options_node, ScalarNode) and self.scalar(options_node, "supervise") is None):
            options = self.mapping(options_node, "supervise", ("grace",))
            if "grace" in options:
                grace_node = options["grace"][1]
                grace = self.number(grace_node, "grace")
                if not 1 <= grace <= 100:
                    why = "below 1 a device raises between two heartbeats"
                    raise self.fail(grace_node, f"grace {_num(grace)} must be from 1 to 100 ({why})")
        return Rule(
            name=name,
            kind=RuleKind.SUPERVISION,
            when=ENGINE_TYPES,
            grace=grace,
            alarm=alarm,
            priority=priority,
            chain=chain,
            line=node.start_mark.line + 1,
        )

    def duration(self, node: Node, word: str) -> int:
        try:
            return parse_duration(self.scalar(node, word))
        except ValueError as exc:
            raise self.fail(node, str(exc)) from None

    def count(self, node: Node) -> tuple[int, int]:
        """`count: {n: 3, within: 2m}`."""
        fields = ("n", "within")
        keys = self.mapping(node, "count", fields, fields)
        n_node = keys["n"][1]
        try:
            n = _count_n(self.scalar(n_node, "n"))
        except ValueError as exc:
            raise self.fail(n_node, str(exc)) from None
        return n, self.duration(keys["within"][1], "within")

    def inactive(self, node: Node) -> int:
        """`inactive: {for: 4h}`."""
        keys = self.mapping(node, "inactive", ("for",), ("for",))
        for_node = keys["for"][1]
        try:
            return _inactive_ms(self.scalar(for_node, "for"))
        except ValueError as exc:
            raise self.fail(for_node, str(exc)) from None

    def during(self, node: Node) -> Window:
        """`during: {from: "22:00", to: "07:00", days: [fri, sat]}`."""
        keys = self.mapping(node, "during", ("from", "to", "days"), ("from", "to"))
        from_ms = self.time_of_day(keys["from"][1], "from")
        to_node = keys["to"][1]
        to_ms = self.time_of_day(to_node, "to")
        days = self.days(keys["days"][1]) if "days" in keys else ALL_DAYS
        try:
            return _window(from_ms, to_ms, days)
        except ValueError as exc:
            raise self.fail(to_node, str(exc)) from None

    def time_of_day(self, node: Node, word: str) -> int:
        value = self.scalar(node, word)
        text: str | None = None
        if isinstance(value, str):
            text = value
        elif isinstance(value, int) and isinstance(node, ScalarNode) and node.style is None and ":" in node.value:
            text = node.value  # YAML 1.1 reads an unquoted 22:00 as the base-60 number 1320
        if text is None:
            raise self.fail(node, f'{word} must be a time of day like "07:00", not {value!r}')
        try:
            return parse_time_of_day(text, word)
        except ValueError as exc:
            raise self.fail(node, str(exc)) from None

    def days(self, node: Node) -> int:
        items = node.value if isinstance(node, SequenceNode) else [node]
        if not items:
            raise self.fail(node, "days must name at least one day (leave out 'days' for every day)")
        mask = 0
        for item in items:
            word = self.string(item, "a day")
            try:
                bit = _day_bit(word)
            except ValueError as exc:
                raise self.fail(item, str(exc)) from None
            if mask & bit:
                raise self.fail(item, f"day {word!r} is listed twice in days")
            mask |= bit
        return mask

    def where(self, node: Node) -> list[tuple[Condition, Node]]:
        """`where: {room: bathroom, level: {above: 3}}` -> conditions with their key nodes."""
        if not isinstance(node, MappingNode):
            raise self.fail(node, f"where must be a mapping (field: value), not a {_shape(node)}")
        if not node.value:
            raise self.fail(node, "where must name at least one field")
        out: list[tuple[Condition, Node]] = []
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise self.fail(key_node, f"a field name in where must be a single word, not a {_shape(key_node)}")
            name = key_node.value  # the text as written: `on:` is the field "on", not true
            if not _FIELD.fullmatch(name):
                raise self.fail(key_node, f"field name {name!r} in where may only contain A-Z, a-z, 0-9 and '_'")
            if name in seen:
                raise self.fail(key_node, f"duplicate field {name!r} in where (first at line {seen[name]})")
            seen[name] = key_node.start_mark.line + 1
            out.append((self.condition(name, value_node), key_node))
        return out

    def condition(self, name: str, node: Node) -> Condition:
        what = f"where.{name}"
        if isinstance(node, SequenceNode):
            raise self.fail(node, f"{what} takes one value; for a choice write {name}: {{in: [a, b]}}")
        if not isinstance(node, MappingNode):
            return Condition(name, CondOp.EQ, self.condition_value(node, what))
        words = [op.value for op in CondOp]
        keys = self.mapping(node, what, words)
        if len(keys) != 1:
            raise self.fail(node, f"{what} takes exactly one of {', '.join(words)}")
        ((word, (_, value_node)),) = keys.items()
        op = CondOp(word)
        if op is CondOp.EQ:
            return Condition(name, op, self.condition_value(value_node, f"{what}.equals"))
        if op is CondOp.IN:
            if not isinstance(value_node, SequenceNode):
                raise self.fail(value_node, f"{what}.in takes a list of values, like in: [bathroom, toilet]")
            if not value_node.value:
                raise self.fail(value_node, f"{what}.in must list at least one value")
            values: dict[object, Scalar] = {}
            for item in value_node.value:
                value = self.condition_value(item, f"a value in {what}.in")
                values.setdefault(_typed(value), value)
            return Condition(name, op, tuple(values.values()))
        return Condition(name, op, self.number(value_node, word))

    def condition_value(self, node: Node, what: str) -> Scalar:
        """A JSON scalar. Numbers become floats (JSON has one number type); a plain yes, no,
        on or off is the word, not YAML 1.1's boolean (`where: {light: on}`); only true and
        false are booleans."""
        value = self.scalar(node, what)
        if isinstance(value, bool):
            if isinstance(node, ScalarNode) and node.style is None and node.value.lower() not in ("true", "false"):
                return node.value
            return value
        if isinstance(value, str):
            return value
        if isinstance(value, int | float):
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
            if not math.isfinite(number):
                raise self.fail(node, f"{what} must be a finite number, not {value!r}")
            return number
        raise self.fail(node, f"{what} must be a string, a number or true/false, not {value!r}")

    def types(self, node: Node, what: str) -> tuple[str, ...]:
        """An event type, a family `door.*`, or a non-empty list of them -> type names."""
        items = node.value if isinstance(node, SequenceNode) else [node]
        if not items:
            raise self.fail(node, f"{what} must name at least one event type")
        out: list[str] = []
        for item in items:
            ref = self.string(item, f"{what} (an event type)")
            for name in self.expand(item, ref):
                if name not in out:
                    out.append(name)
        return tuple(out)

    def expand(self, node: Node, ref: str) -> list[str]:
        if ref.endswith(".*"):
            prefix = ref[:-1]
            names = [t for t in EVENT_TYPES if t.startswith(prefix)]
            if not names:
                families = sorted({t.split(".")[0] + ".*" for t in EVENT_TYPES if "." in t})
                raise self.fail(node, f"unknown event family {ref!r}{_suggest(ref, families)}")
            return names
        if ref not in TYPE_ID:  # a family is a device's types; the internal ones only by name
            raise self.fail(node, f"unknown event type {ref!r}{_suggest(ref, ENGINE_TYPES)}")
        return [ref]

    def raise_(self, node: Node) -> tuple[str, Priority, str]:
        fields = ("kind", "priority", "chain")
        keys = self.mapping(node, "raise", fields, fields)
        kind = self.identifier(keys["kind"][1], "alarm kind", _IDENT, _IDENT_CHARS)
        priority_node = keys["priority"][1]
        priority = self.string(priority_node, "priority")
        if priority not in set(Priority):
            allowed = ", ".join(p.value for p in Priority)
            raise self.fail(priority_node, f"unknown priority {priority!r} (allowed: {allowed})")
        chain = self.identifier(keys["chain"][1], "chain", _IDENT, _IDENT_CHARS)
        return kind, Priority(priority), chain

    def clear(self, node: Node) -> tuple[str, Node]:
        keys = self.mapping(node, "clear", ("kind",), ("kind",))
        kind_node = keys["kind"][1]
        return self.identifier(kind_node, "alarm kind", _IDENT, _IDENT_CHARS), kind_node

    def number(self, node: Node, word: str) -> float:
        number = self.scalar(node, word)
        numeric = isinstance(number, int | float) and not isinstance(number, bool)
        if not numeric or not math.isfinite(number):
            raise self.fail(node, f"{word} must be a finite number, not {number!r}")
        return float(number)

    def value(self, node: Node) -> tuple[Op, float, tuple[Node, Op, float] | None]:
        """The comparison, and for hysteresis (key node of the clear word, clear op, bound)."""
        keys = self.mapping(node, "value", (*_VALUE_OPS, *_CLEAR_OPS))
        compare = [word for word in keys if word in _VALUE_OPS]
        clears = [word for word in keys if word in _CLEAR_OPS]
        if len(compare) != 1:
            raise self.fail(node, f"value takes exactly one of {', '.join(_VALUE_OPS)}")
        if len(clears) > 1:
            raise self.fail(keys[clears[1]][0], "value takes at most one of clear_above, clear_below")
        (word,) = compare
        threshold = self.number(keys[word][1], word)
        if not clears:
            return _VALUE_OPS[word], threshold, None
        (clear_word,) = clears
        clear_key, clear_node = keys[clear_word]
        bound = self.number(clear_node, clear_word)
        if word not in _CLEAR_PAIRS[clear_word]:
            pairs = " or ".join(_CLEAR_PAIRS[clear_word])
            raise self.fail(clear_key, f"{clear_word} goes with {pairs}, not with {word}")
        try:
            _check_clear_side(word, threshold, clear_word, bound)
        except ValueError as exc:
            raise self.fail(clear_node, str(exc)) from None
        return _VALUE_OPS[word], threshold, (clear_key, _CLEAR_OPS[clear_word], bound)

    def cancel(self, node: Node, when: tuple[str, ...]) -> tuple[tuple[str, ...], int]:
        keys = self.mapping(node, "cancel", ("by", "within"), ("by",))
        by_node = keys["by"][1]
        by = self.types(by_node, "by")
        both = [t for t in by if t in when]
        if both:
            raise self.fail(by_node, f"cancel by {both[0]!r}, which is also in 'when': it cannot both raise and cancel")
        within_ms = DEFAULT_CANCEL_WITHIN_MS
        if "within" in keys:
            within_node = keys["within"][1]
            try:
                within_ms = parse_duration(self.scalar(within_node, "within"))
            except ValueError as exc:
                raise self.fail(within_node, str(exc)) from None
        return by, within_ms

    def unless(self, node: Node) -> tuple[tuple[str, ...], int]:
        fields = ("followed_by", "within")
        keys = self.mapping(node, "unless", fields, fields)
        unless = self.types(keys["followed_by"][1], "followed_by")
        within_node = keys["within"][1]
        try:
            within_ms = parse_duration(self.scalar(within_node, "within"))
        except ValueError as exc:
            raise self.fail(within_node, str(exc)) from None
        return unless, within_ms

    def scope(self, node: Node) -> Scope:
        value = self.string(node, "scope")
        if value == "device":
            return "device"
        if value == "home":
            return "home"
        raise self.fail(node, f"scope must be 'device' or 'home', not {value!r}")


# -- per-home overrides ---------------------------------------------------------------------

_OVERRIDE_KEYS = ("value", "unless", "cancel", "count", "inactive", "during")
_KIND_WORDS = {
    RuleKind.MATCH: "match",
    RuleKind.THRESHOLD: "threshold",
    RuleKind.NOT_FOLLOWED: "not-followed-by",
    RuleKind.HYSTERESIS: "hysteresis",
    RuleKind.SUPERVISION: "supervise",
    RuleKind.COUNT: "count",
    RuleKind.INACTIVE: "inactive",
}


def apply_overrides(pack: RulePack, overrides: Mapping[str, Any] | None, where: str) -> tuple[Rule, ...]:
    """A home's overrides (rule name -> settings, plain objects from devices/homes.yaml)
    applied to the pack's rules: the rules in force for that home, in pack order.

    A home changes numbers and windows, never what a rule looks at: `value` (the rule's own
    words), `unless: {within}`, `cancel: {within}`, `count: {n, within}`, `inactive: {for}`
    and `during` (replaced whole; any rule but supervision may take one). The checks are
    the pack's; a mistake is a ValueError `"{where}: rule 'x': message"`. An override equal
    to the rule changes nothing (the rule, and so its meaning and state, stay the same).
    Supervision intervals are a home's `supervision:` (responsecentre/directory.py).
    """
    if overrides is None:
        return pack.rules
    if not isinstance(overrides, Mapping):
        raise ValueError(f"{where}: rule overrides must map rule names to settings, not {_plain_shape(overrides)}")
    index = {rule.name: i for i, rule in enumerate(pack.rules)}
    rules = list(pack.rules)
    for name, settings in overrides.items():
        if not isinstance(name, str) or name not in index:
            hint = _suggest(str(name), list(index))
            raise ValueError(f"{where}: rule {name!r}: no such rule in {pack.source}{hint}")
        i = index[name]
        try:
            rules[i] = _override(rules[i], settings)
        except ValueError as exc:
            raise ValueError(f"{where}: rule {name!r}: {exc}") from None
    return tuple(rules)


def _override_keys(rule: Rule) -> tuple[str, ...]:
    keys: list[str] = []
    if rule.kind in (RuleKind.THRESHOLD, RuleKind.HYSTERESIS):
        keys.append("value")
    if rule.kind is RuleKind.NOT_FOLLOWED:
        keys.append("unless")
    if rule.cancel_by:
        keys.append("cancel")
    if rule.kind is RuleKind.COUNT:
        keys.append("count")
    if rule.kind is RuleKind.INACTIVE:
        keys.append("inactive")
    keys.append("during")
    return tuple(keys)


def _override(rule: Rule, settings: object) -> Rule:
    if rule.kind is RuleKind.SUPERVISION:
        raise ValueError("supervision intervals are overridden per device kind under the home's 'supervision:'")
    allowed = _override_keys(rule)
    keys = _plain_mapping(settings, "the overrides", _OVERRIDE_KEYS, allowed)
    if not keys:
        raise ValueError(f"the overrides name nothing to change (this rule takes: {', '.join(allowed)})")
    for key in keys:
        if key not in allowed:
            kind = _KIND_WORDS[rule.kind]
            raise ValueError(f"this {kind} rule has no {key!r} to override (it takes: {', '.join(allowed)})")
    changes: dict[str, Any] = {}
    if "value" in keys:
        changes.update(_override_value(rule, keys["value"]))
    if "unless" in keys:
        given = _plain_mapping(keys["unless"], "unless", ("within",), required=("within",))
        changes["within_ms"] = _plain_duration(given["within"], "unless.within")
    if "cancel" in keys:
        given = _plain_mapping(keys["cancel"], "cancel", ("within",), required=("within",))
        changes["cancel_within_ms"] = _plain_duration(given["within"], "cancel.within")
    if "count" in keys:
        given = _plain_mapping(keys["count"], "count", ("n", "within"), at_least_one=True)
        if "n" in given:
            changes["count_n"] = _count_n(given["n"])
        if "within" in given:
            changes["count_within_ms"] = _plain_duration(given["within"], "count.within")
    if "inactive" in keys:
        given = _plain_mapping(keys["inactive"], "inactive", ("for",), required=("for",))
        changes["inactive_ms"] = _inactive_ms(given["for"])
    if "during" in keys:
        changes["during"] = _override_during(keys["during"])
    changed = replace(rule, **changes)
    if changed.kind is RuleKind.INACTIVE:
        _check_inactive_window(changed.inactive_ms, changed.during)
    return changed


def _override_value(rule: Rule, spec: object) -> dict[str, float]:
    """New numbers for the rule's own comparison words; the test itself stays the pack's."""
    assert rule.op is not None and rule.threshold is not None
    word = _OP_WORDS[rule.op]
    words = [word]
    clear_word = None if rule.clear_op is None else _CLEAR_WORDS[rule.clear_op]
    if clear_word is not None:
        words.append(clear_word)
    given = _plain_mapping(spec, "value", (*_VALUE_OPS, *_CLEAR_OPS), words, at_least_one=True)
    for key in given:
        if key not in words:
            raise ValueError(
                f"value: {key!r} is not this rule's comparison (it uses {', '.join(words)}); "
                "a home changes the numbers, not the test"
            )
    threshold = _plain_number(given[word], word) if word in given else rule.threshold
    out = {"threshold": threshold}
    if clear_word is not None:
        assert rule.clear_threshold is not None
        bound = _plain_number(given[clear_word], clear_word) if clear_word in given else rule.clear_threshold
        _check_clear_side(word, threshold, clear_word, bound)
        out["clear_threshold"] = bound
    return out


def _override_during(spec: object) -> Window:
    given = _plain_mapping(spec, "during", ("from", "to", "days"), required=("from", "to"))
    times = []
    for word in ("from", "to"):
        value = given[word]
        if not isinstance(value, str):
            raise ValueError(
                f'during.{word} must be a time of day in quotes, like "22:00", not {value!r} '
                "(YAML reads an unquoted 22:00 as a number)"
            )
        times.append(parse_time_of_day(value, word))
    days = ALL_DAYS
    if "days" in given:
        words = given["days"]
        words = [words] if isinstance(words, str) else words
        if not isinstance(words, list) or not words:
            raise ValueError("during.days must be a non-empty list of days (leave out 'days' for every day)")
        days = 0
        for day in words:
            if not isinstance(day, str):
                raise ValueError(f"a day in during.days must be a string, not {day!r}")
            bit = _day_bit(day)
            if days & bit:
                raise ValueError(f"day {day!r} is listed twice in during.days")
            days |= bit
    return _window(times[0], times[1], days)


def _plain_mapping(
    value: object,
    what: str,
    known: Sequence[str],
    allowed: Sequence[str] | None = None,
    required: Sequence[str] = (),
    at_least_one: bool = False,
) -> dict[str, Any]:
    """The pack's `mapping` check for plain objects: unknown keys (not in `known`) are
    errors with a suggestion from `allowed` (default: `known`), the caller handles keys
    that are known but not allowed here."""
    allowed = known if allowed is None else allowed
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a mapping (key: value), not {_plain_shape(value)}")
    for key in value:
        if not isinstance(key, str) or key not in known:
            hint = _suggest(str(key), allowed)
            raise ValueError(f"unknown key {key!r} in {what}{hint} (allowed: {', '.join(allowed)})")
    for key in required:
        if key not in value:
            raise ValueError(f"{what} is missing the key {key!r}")
    if at_least_one and not value:
        raise ValueError(f"{what} names nothing to change (give {' or '.join(allowed)})")
    return dict(value)


def _plain_number(value: object, word: str) -> float:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if not numeric or not math.isfinite(value):  # type: ignore[arg-type]
        raise ValueError(f"{word} must be a finite number, not {value!r}")
    return float(value)  # type: ignore[arg-type]


def _plain_duration(value: object, what: str) -> int:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


def _plain_shape(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value)


def _shape(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "mapping"
    if isinstance(node, SequenceNode):
        return "list"
    return "single value"


def _num(x: float) -> str:
    """A bound as the author wrote it: 15, not 15.0."""
    return str(int(x)) if x.is_integer() else str(x)


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
