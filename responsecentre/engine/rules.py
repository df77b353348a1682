"""Rule packs: YAML that a municipality edits -> a validated, immutable `RulePack`.

The people who write these files are not programmers, so every mistake must be reported
with the file and the line of the offending node (`rules/x.yaml:12: unknown event type
'fall.detectd' (did you mean 'fall.detected'?)`). That is why the loader walks the node
tree of `yaml.compose` (which keeps line marks) instead of the plain Python objects of
`yaml.safe_load`, and why unknown keys are errors: a typo such as `unles:` must not
silently turn a "not followed by" rule into a plain match that pages a nurse for every
fall that was cancelled.

The language itself is documented in docs/rules.md.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from responsecentre.contract import EVENT_TYPES, TYPE_ID

__all__ = [
    "MAX_DURATION_MS",
    "Op",
    "Priority",
    "Rule",
    "RuleError",
    "RuleKind",
    "RulePack",
    "Scope",
    "load_rules",
    "parse_duration",
    "parse_rules",
]

# A deadline longer than a year is a typo ("1000d"), and the cap keeps `ts + within` far
# away from the int64 limit the kernels use as "no deadline pending".
MAX_DURATION_MS = 365 * 24 * 3600 * 1000

Scope = Literal["device", "home"]

_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_IDENT = re.compile(r"[a-z0-9_-]+")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_NAME_CHARS = "a-z, 0-9 and '-'"
_IDENT_CHARS = "a-z, 0-9, '_' and '-'"


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


class Op(StrEnum):
    """The comparison of a threshold rule: `value <op> threshold` (YAML word in comments)."""

    LT = "lt"  # below
    LE = "le"  # at_most
    GT = "gt"  # above
    GE = "ge"  # at_least
    EQ = "eq"  # equals


_VALUE_OPS = {"below": Op.LT, "at_most": Op.LE, "above": Op.GT, "at_least": Op.GE, "equals": Op.EQ}


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One validated rule. `when`/`unless` hold event type names with families expanded."""

    name: str
    kind: RuleKind
    when: tuple[str, ...]
    op: Op | None = None  # THRESHOLD only
    threshold: float | None = None  # THRESHOLD only
    unless: tuple[str, ...] = ()  # NOT_FOLLOWED only
    within_ms: int = 0  # NOT_FOLLOWED only
    scope: Scope = "device"  # whose follow-up cancels a NOT_FOLLOWED deadline
    alarm: str  # the alarm kind raised (`raise.kind` in YAML)
    priority: Priority
    chain: str
    line: int = 0  # 1-based line of the rule in its file, for messages

    @property
    def types(self) -> tuple[str, ...]:
        """Every event type this rule reacts to (`when`, then the rest of `unless`)."""
        return self.when + tuple(t for t in self.unless if t not in self.when)


@dataclass(frozen=True, slots=True)
class RulePack:
    """An ordered set of rules; a rule's index in `rules` is its id in the engine's output."""

    rules: tuple[Rule, ...] = ()
    source: str = field(default="<string>", compare=False)  # file name, for messages

    def index(self, name: str) -> int:
        """The engine's id of the rule called `name` (KeyError if there is none)."""
        for i, rule in enumerate(self.rules):
            if rule.name == name:
                return i
        raise KeyError(name)

    def __len__(self) -> int:
        return len(self.rules)


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


def load_rules(path: str | Path) -> RulePack:
    """Load and validate a rule pack file; errors name the path as given."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RuleError(source, 1, f"not UTF-8 text ({exc.reason})") from None
    return parse_rules(text, source=source)


def parse_rules(text: str, source: str = "<string>") -> RulePack:
    """Parse and validate rule-pack YAML; `source` is the name used in error messages."""
    return _Parser(source).pack(text)


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
        top = self.mapping(root, "the rule pack", ("version", "rules"), ("version", "rules"))
        version_node = top["version"][1]
        version = self.scalar(version_node, "version")
        if version != 1 or isinstance(version, bool):
            raise self.fail(version_node, f"unsupported version {version!r} (this engine reads 1)")
        rules_node = top["rules"][1]
        if isinstance(rules_node, ScalarNode) and self.scalar(rules_node, "rules") is None:
            return RulePack((), self.source)  # `rules:` with nothing under it
        if not isinstance(rules_node, SequenceNode):
            raise self.fail(rules_node, f"rules must be a list, not a {_shape(rules_node)}")
        rules: list[Rule] = []
        seen: dict[str, int] = {}
        for item in rules_node.value:
            rule = self.rule(item)
            if rule.name in seen:
                first = seen[rule.name]
                raise self.fail(item, f"duplicate rule name {rule.name!r} (first at line {first})")
            seen[rule.name] = rule.line
            rules.append(rule)
        return RulePack(tuple(rules), self.source)

    def rule(self, node: Node) -> Rule:
        keys = self.mapping(
            node,
            "a rule",
            ("name", "when", "value", "unless", "scope", "raise"),
            ("name", "when", "raise"),
        )
        name = self.identifier(keys["name"][1], "rule name", _NAME, _NAME_CHARS)
        when = self.types(keys["when"][1], "when")
        alarm, priority, chain = self.raise_(keys["raise"][1])
        if "value" in keys and "unless" in keys:
            raise self.fail(
                keys["unless"][0],
                "a rule takes either 'value' or 'unless', not both (split it into two rules)",
            )
        if "scope" in keys and "unless" not in keys:
            raise self.fail(keys["scope"][0], "'scope' applies only to rules with 'unless'")
        kind = RuleKind.MATCH
        op: Op | None = None
        threshold: float | None = None
        unless: tuple[str, ...] = ()
        within_ms = 0
        scope: Scope = "device"
        if "value" in keys:
            kind = RuleKind.THRESHOLD
            op, threshold = self.value(keys["value"][1])
        if "unless" in keys:
            kind = RuleKind.NOT_FOLLOWED
            unless, within_ms = self.unless(keys["unless"][1])
            if "scope" in keys:
                scope = self.scope(keys["scope"][1])
        return Rule(
            name=name,
            kind=kind,
            when=when,
            op=op,
            threshold=threshold,
            unless=unless,
            within_ms=within_ms,
            scope=scope,
            alarm=alarm,
            priority=priority,
            chain=chain,
            line=node.start_mark.line + 1,
        )

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
        if ref not in TYPE_ID:
            raise self.fail(node, f"unknown event type {ref!r}{_suggest(ref, EVENT_TYPES)}")
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

    def value(self, node: Node) -> tuple[Op, float]:
        keys = self.mapping(node, "value", tuple(_VALUE_OPS))
        if len(keys) != 1:
            raise self.fail(node, f"value takes exactly one of {', '.join(_VALUE_OPS)}")
        ((word, (_, number_node)),) = keys.items()
        number = self.scalar(number_node, word)
        numeric = isinstance(number, int | float) and not isinstance(number, bool)
        if not numeric or not math.isfinite(number):
            raise self.fail(number_node, f"{word} must be a finite number, not {number!r}")
        return _VALUE_OPS[word], float(number)

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


def _shape(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "mapping"
    if isinstance(node, SequenceNode):
        return "list"
    return "single value"


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
