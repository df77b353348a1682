"""Rule packs: YAML that a municipality edits -> a validated, immutable `RulePack`.

The people who write these files are not programmers, so every mistake must be reported
with the file and the line of the offending node (`rules/x.yaml:12: unknown event type
'fall.detectd' (did you mean 'fall.detected'?)`). That is why the loader walks the node
tree of `yaml.compose` (which keeps line marks) instead of the plain Python objects of
`yaml.safe_load`, and why unknown keys are errors: a typo such as `unles:` must not
silently turn a "not followed by" rule into a plain match that pages a nurse for every
fall that was cancelled.

The language itself is documented in docs/rules.md.

Some mistakes only show across rules (a `clear` for an alarm kind that no rule raises, a
hysteresis rule whose kind is not declared auto-clearable); they are checked after every
rule is read and still reported at the line of the node that is wrong.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from responsecentre.contract import ENGINE_TYPES, EVENT_TYPES, TYPE_ID

__all__ = [
    "DEFAULT_CANCEL_WITHIN_MS",
    "DEFAULT_GRACE",
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
    scope: Scope = "device"  # whose follow-up cancels a NOT_FOLLOWED deadline
    cancel_by: tuple[str, ...] = ()  # the resident's cancel (MATCH/THRESHOLD raising rules)
    cancel_within_ms: int = 0  # how long after the trigger a cancel counts (with cancel_by)
    grace: float = 0.0  # SUPERVISION only: interval = heartbeat_every x grace (the shell applies it)
    action: Action = "raise"
    alarm: str  # the alarm kind raised (`raise.kind`) or cleared (`clear.kind`)
    priority: Priority
    chain: str
    line: int = 0  # 1-based line of the rule in its file, for messages

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
        for item in rules_node.value:
            rule, clear_node = self.rule(item)
            if rule.name in seen:
                first = seen[rule.name]
                raise self.fail(item, f"duplicate rule name {rule.name!r} (first at line {first})")
            seen[rule.name] = rule.line
            if clear_node is not None:
                clears.append((len(rules), clear_node))
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
        return RulePack(tuple(rules), self.source, frozenset(auto_clear))

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

    def rule(self, node: Node) -> tuple[Rule, Node | None]:
        """One rule, and for a clear rule the node of its kind (checked across rules later)."""
        keys = self.mapping(
            node,
            "a rule",
            ("name", "when", "value", "unless", "scope", "cancel", "supervise", "raise", "clear"),
            ("name",),
        )
        name = self.identifier(keys["name"][1], "rule name", _NAME, _NAME_CHARS)
        if "supervise" in keys:
            return self.supervise_rule(node, keys, name), None
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
        if "value" in keys and "unless" in keys:
            raise self.fail(
                keys["unless"][0],
                "a rule takes either 'value' or 'unless', not both (split it into two rules)",
            )
        if "scope" in keys and "unless" not in keys:
            raise self.fail(keys["scope"][0], "'scope' applies only to rules with 'unless'")
        if action == "clear" and "unless" in keys:
            raise self.fail(keys["unless"][0], "a clear rule takes no 'unless' (it clears on the event itself)")
        if "cancel" in keys:
            if action == "clear":
                raise self.fail(keys["cancel"][0], "'cancel' applies only to rules that raise")
            if "unless" in keys:
                raise self.fail(
                    keys["cancel"][0], "'cancel' does not go with 'unless' (put the cancel in 'followed_by')"
                )
        kind = RuleKind.MATCH
        op: Op | None = None
        threshold: float | None = None
        clear_op: Op | None = None
        clear_threshold: float | None = None
        unless: tuple[str, ...] = ()
        within_ms = 0
        scope: Scope = "device"
        cancel_by: tuple[str, ...] = ()
        cancel_within_ms = 0
        if "value" in keys:
            kind = RuleKind.THRESHOLD
            op, threshold, clear = self.value(keys["value"][1])
            if clear is not None:
                clear_word_node, clear_op, clear_threshold = clear
                if action == "clear":
                    raise self.fail(clear_word_node, "a clear rule takes no clear_above or clear_below")
                if "cancel" in keys:
                    raise self.fail(keys["cancel"][0], "'cancel' does not go with clear_above or clear_below")
                kind = RuleKind.HYSTERESIS
        if "unless" in keys:
            kind = RuleKind.NOT_FOLLOWED
            unless, within_ms = self.unless(keys["unless"][1])
            if "scope" in keys:
                scope = self.scope(keys["scope"][1])
        if "cancel" in keys:
            cancel_by, cancel_within_ms = self.cancel(keys["cancel"][1], when)
        return (
            Rule(
                name=name,
                kind=kind,
                when=when,
                op=op,
                threshold=threshold,
                clear_op=clear_op,
                clear_threshold=clear_threshold,
                unless=unless,
                within_ms=within_ms,
                scope=scope,
                cancel_by=cancel_by,
                cancel_within_ms=cancel_within_ms,
                action=action,
                alarm=alarm,
                priority=priority,
                chain=chain,
                line=node.start_mark.line + 1,
            ),
            clear_node,
        )

    def supervise_rule(self, node: Node, keys: dict[str, tuple[Node, Node]], name: str) -> Rule:
        """`supervise: {grace: 2}` with a `raise`: every event of a device counts as a sign
        of life, so the rule has no `when`; nor anything else that picks events."""
        for word in ("when", "value", "unless", "scope", "cancel", "clear"):
            if word in keys:
                why = "every event of a device is a sign of life" if word == "when" else "it raises and clears itself"
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
        if (clear_word == "clear_above" and bound < threshold) or (clear_word == "clear_below" and bound > threshold):
            side = "below" if clear_word == "clear_above" else "above"
            raise self.fail(
                clear_node,
                f"{clear_word} {_num(bound)} is {side} the threshold ({word} {_num(threshold)}): "
                f"a reading would both raise and clear",
            )
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
