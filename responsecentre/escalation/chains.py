"""Alert chains (varslingskjeder) as data, loaded from `escalation/chains.yaml`.

Chains are msgspec structs so that a chain can be frozen onto an alarm when it is
raised: editing the YAML later never changes an escalation already under way. Every new
field has a default, so chains stored inside alarms by an older version still decode
(including the old channel name "mqtt", which `Channel` reads as the handset).

The file also says which chain an alarm gets (`select:`): by the chain its rule asked
for, its priority, its kind and the local time of day, first match wins
(`choose_chain`). Errors name the file and line, like the rule pack's.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from responsecentre.engine.rules import (
    ALL_DAYS,
    DAY_NAMES,
    Priority,
    Window,
    format_time,
    parse_duration,
    parse_time_of_day,
)
from responsecentre.escalation.delivery import Channel, parse_channel
from responsecentre.escalation.people import StaffRole

__all__ = [
    "DEFAULT_TIMEZONE",
    "FALLBACK_CHAIN",
    "REPLYING_KINDS",
    "Chain",
    "ChainBook",
    "ChainError",
    "Channel",
    "NotifyMode",
    "Selector",
    "Step",
    "Target",
    "TargetKind",
    "choose_chain",
    "in_window",
    "load_book",
    "load_chains",
    "parse_book",
    "parse_chains",
    "parse_duration_ms",
]

DEFAULT_TIMEZONE = "Europe/Oslo"


class TargetKind(StrEnum):
    CONSOLE = "console"  # every operator at the centre
    ROLE = "role"  # everyone with a staff role on duty in the home's zone, in roster order
    STAFF = "staff"  # one named person
    RELATIVES = "relatives"  # the resident's relatives from the home's record, in its order
    WEBHOOK = "webhook"  # a named webhook address (value: the URL)


class NotifyMode(StrEnum):
    ALL = "all"  # every target of the step at once; one ack_within for the step
    ROUND_ROBIN = "round_robin"  # one person at a time in roster order, each with their own ack_within


# Targets whose people can answer a page (accept or decline); relatives and webhooks are told only.
REPLYING_KINDS = frozenset({TargetKind.ROLE, TargetKind.STAFF})


class Target(msgspec.Struct, frozen=True):
    kind: TargetKind
    value: str = ""  # the role, the staff id or the webhook URL; empty for console and relatives
    ack_within_ms: int | None = None  # this target's own time in a round robin; None: the step's


class Step(msgspec.Struct, frozen=True):
    targets: tuple[Target, ...]
    # Which of a person's contact channels this step may use, in the person's own order;
    # empty: all of them. `console` here (or a console target) shows the step on the console.
    channels: tuple[Channel, ...]
    ack_within_ms: int
    notify: NotifyMode = NotifyMode.ALL

    @property
    def on_console(self) -> bool:
        return Channel.CONSOLE in self.channels or any(t.kind == TargetKind.CONSOLE for t in self.targets)


class Chain(msgspec.Struct, frozen=True):
    name: str
    steps: tuple[Step, ...]
    repeat: int = 0  # how many more times the chain runs before it is exhausted
    repeat_from: int = 0  # 0-based index of the step a repeat starts from


class ChainError(ValueError):
    """A chains file that cannot be loaded; the message starts with `file:line:` when the
    line is known, and names the chain and step."""


# Used when neither a select rule nor the requested name gives a chain: the centre always sees the alarm.
FALLBACK_CHAIN = Chain("fallback", (Step((Target(TargetKind.CONSOLE),), (Channel.CONSOLE,), 60_000),))


class Selector(msgspec.Struct, frozen=True):
    """One entry of `select:`. Empty filters match anything; all given filters must match."""

    use: str  # the chain to use
    chains: tuple[str, ...] = ()  # the chain names the rule may have asked for
    priorities: tuple[Priority, ...] = ()
    kinds: tuple[str, ...] = ()
    during: Window | None = None  # local wall-clock window; crossing midnight, it belongs to its start day
    line: int = 0  # where it is written, for messages


class ChainBook(msgspec.Struct, frozen=True):
    """Everything `chains.yaml` says: the chains by name and how to choose among them."""

    chains: dict[str, Chain]
    select: tuple[Selector, ...] = ()
    timezone: str = DEFAULT_TIMEZONE
    source: str = ""


def parse_duration_ms(value: Any) -> int:
    """A duration ("90s", "10m", a bare number of seconds) -> ms, or ChainError."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ChainError(str(exc)) from None


# -- choosing a chain ------------------------------------------------------------------------


def in_window(window: Window, at_ms: int, tz: ZoneInfo) -> bool:
    """Whether UTC `at_ms` falls in the daily window on `tz`'s wall clock. A window that
    crosses midnight belongs to the day it starts on (22:00-07:00 on fri covers Saturday
    06:00), as the rule pack's `during` does."""
    local = datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(tz)
    tod = ((local.hour * 60 + local.minute) * 60 + local.second) * 1000 + local.microsecond // 1000
    day = local.weekday()

    def on(d: int) -> bool:
        return bool(window.days >> (d % 7) & 1)

    if window.from_ms < window.to_ms:
        return window.from_ms <= tod < window.to_ms and on(day)
    return (tod >= window.from_ms and on(day)) or (tod < window.to_ms and on(day - 1))


def _matches(selector: Selector, requested: str, priority: str, kind: str, at_ms: int, tz: ZoneInfo) -> bool:
    return (
        (not selector.chains or requested in selector.chains)
        and (not selector.priorities or priority in selector.priorities)
        and (not selector.kinds or kind in selector.kinds)
        and (selector.during is None or in_window(selector.during, at_ms, tz))
    )


def choose_chain(
    book: ChainBook,
    requested: str,
    priority: str,
    kind: str,
    at_ms: int,
    tz: str | ZoneInfo | None = None,
) -> Chain:
    """The chain for an alarm: the first `select` entry that matches the requested chain
    name, priority, kind and local time (`tz`, else the book's timezone) wins; with none,
    the requested chain itself; failing that, FALLBACK_CHAIN (console only)."""
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz or book.timezone)
    for selector in book.select:
        if _matches(selector, requested, priority, kind, at_ms, zone):
            return book.chains[selector.use]
    return book.chains.get(requested, FALLBACK_CHAIN)


# -- parsing -----------------------------------------------------------------------------


def load_book(path: Path) -> ChainBook:
    return parse_book(path.read_text(), str(path))


def load_chains(path: Path) -> dict[str, Chain]:
    """The chains by name (the form the desk and the rules' check use)."""
    return load_book(path).chains


def parse_chains(doc: dict[str, Any]) -> dict[str, Chain]:
    """The chains of an already-loaded document (tests build them as dicts). Goes through
    the one parser by way of YAML text, so the checks are the same."""
    return parse_book(yaml.safe_dump(doc, sort_keys=False), "<chains>").chains


def parse_book(text: str, source: str = "<string>") -> ChainBook:
    return _Parser(source).book(text)


_TOP_KEYS = ("chains", "select", "timezone", "incidents")  # incidents: read by escalation.incidents
_CHAIN_KEYS = ("steps", "repeat", "description")
_STEP_KEYS = ("targets", "channels", "ack_within", "notify")
_SELECT_KEYS = ("use", "chain", "priority", "kind", "during")


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _shape(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "mapping"
    if isinstance(node, SequenceNode):
        return "list"
    return "single value"


class _Parser:
    """Walks the composed YAML node tree, keeping line numbers for every error."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._constructor = SafeConstructor()

    def fail(self, node: Node, message: str) -> ChainError:
        return ChainError(f"{self.source}:{node.start_mark.line + 1}: {message}")

    def scalar(self, node: Node, what: str) -> Any:
        if not isinstance(node, ScalarNode):
            raise self.fail(node, f"{what} must be a single value, not a {_shape(node)}")
        return self._constructor.construct_object(node)

    def string(self, node: Node, what: str) -> str:
        value = self.scalar(node, what)
        if not isinstance(value, str) or not value:
            raise self.fail(node, f"{what} must be a non-empty string, not {value!r}")
        return value

    def strings(self, node: Node, what: str) -> list[tuple[str, Node]]:
        """One string or a list of them."""
        items = node.value if isinstance(node, SequenceNode) else [node]
        if not items:
            raise self.fail(node, f"{what} must name at least one value")
        return [(self.string(item, what), item) for item in items]

    def mapping(
        self, node: Node, what: str, allowed: Sequence[str], required: Sequence[str] = ()
    ) -> dict[str, tuple[Node, Node]]:
        if not isinstance(node, MappingNode):
            raise self.fail(node, f"{what} must be a mapping (key: value), not a {_shape(node)}")
        out: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node, f"a key in {what}")
            if not isinstance(key, str) or key not in allowed:
                message = f"unknown key {key!r} in {what}{_suggest(str(key), allowed)} (allowed: {', '.join(allowed)})"
                raise self.fail(key_node, message)
            if key in out:
                first = out[key][0].start_mark.line + 1
                raise self.fail(key_node, f"duplicate key {key!r} in {what} (first at line {first})")
            out[key] = (key_node, value_node)
        for key in required:
            if key not in out:
                raise self.fail(node, f"{what} is missing the key {key!r}")
        return out

    def duration(self, node: Node, what: str) -> int:
        try:
            return parse_duration(self.scalar(node, what))
        except ValueError as exc:
            raise self.fail(node, f"{what}: {exc}") from None

    # -- the file ------------------------------------------------------------------------

    def book(self, text: str) -> ChainBook:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 1
            raise ChainError(f"{self.source}:{line}: invalid YAML: {exc.problem or exc.context}") from None
        except yaml.YAMLError as exc:
            raise ChainError(f"{self.source}:1: invalid YAML: {exc}") from None
        if root is None:
            raise ChainError(f"{self.source}:1: empty chains file (expected 'chains:')")
        top = self.mapping(root, "the chains file", _TOP_KEYS, ("chains",))
        timezone = DEFAULT_TIMEZONE
        if "timezone" in top:
            node = top["timezone"][1]
            timezone = self.string(node, "timezone")
            try:
                ZoneInfo(timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise self.fail(node, f"unknown timezone {timezone!r} (use an IANA name like Europe/Oslo)") from None
        chains_node = top["chains"][1]
        if not isinstance(chains_node, MappingNode) or not chains_node.value:
            raise self.fail(chains_node, "chains must be a mapping of chain names to chains, with at least one")
        chains: dict[str, Chain] = {}
        for key_node, value_node in chains_node.value:
            name = str(self.scalar(key_node, "a chain name"))
            if name in chains:
                raise self.fail(key_node, f"duplicate chain {name!r}")
            chains[name] = self.chain(name, value_node)
        select: tuple[Selector, ...] = ()
        if "select" in top:
            select = self.select(top["select"][1], chains)
        return ChainBook(chains, select, timezone, self.source)

    def chain(self, name: str, node: Node) -> Chain:
        keys = self.mapping(node, f"chain {name!r}", _CHAIN_KEYS, ("steps",))
        steps_node = keys["steps"][1]
        if not isinstance(steps_node, SequenceNode) or not steps_node.value:
            raise self.fail(steps_node, f"chain {name!r} has no steps (steps must be a list of steps)")
        steps = tuple(self.step(name, i, item) for i, item in enumerate(steps_node.value, 1))
        repeat, repeat_from = 0, 0
        if "repeat" in keys:
            repeat, repeat_from = self.repeat(name, keys["repeat"][1], len(steps))
        if "description" in keys:
            self.string(keys["description"][1], f"chain {name!r} description")
        return Chain(name, steps, repeat, repeat_from)

    def repeat(self, name: str, node: Node, n_steps: int) -> tuple[int, int]:
        """`repeat: N` (from the start) or `repeat: {times: N, from_step: K}` (K 1-based)."""
        what = f"chain {name!r} repeat"
        from_step = 1
        if isinstance(node, MappingNode):
            keys = self.mapping(node, what, ("times", "from_step"), ("times",))
            times_node = keys["times"][1]
            if "from_step" in keys:
                step_node = keys["from_step"][1]
                from_step = self.scalar(step_node, f"{what} from_step")
                if isinstance(from_step, bool) or not isinstance(from_step, int) or not 1 <= from_step <= n_steps:
                    raise self.fail(step_node, f"{what}: from_step must be a step number from 1 to {n_steps}")
        else:
            times_node = node
        times = self.scalar(times_node, what)
        if isinstance(times, bool) or not isinstance(times, int) or times < 0:
            raise self.fail(times_node, f"{what} must be a whole number >= 0, not {times!r}")
        return times, from_step - 1

    def step(self, chain: str, number: int, node: Node) -> Step:
        where = f"chain {chain!r} step {number}"
        keys = self.mapping(node, where, _STEP_KEYS, ("ack_within",))
        ack = self.duration(keys["ack_within"][1], f"{where} ack_within")
        targets: tuple[Target, ...] = (Target(TargetKind.CONSOLE),)
        if "targets" in keys:
            targets_node = keys["targets"][1]
            if not isinstance(targets_node, SequenceNode) or not targets_node.value:
                raise self.fail(targets_node, f"{where}: targets must be a list with at least one target")
            targets = tuple(self.target(where, item) for item in targets_node.value)
        channels: tuple[Channel, ...] = ()
        if "channels" in keys:
            channels = self.channels(where, keys["channels"][1])
        mode = NotifyMode.ALL
        if "notify" in keys:
            mode_node = keys["notify"][1]
            word = str(self.scalar(mode_node, f"{where} notify"))
            try:
                mode = NotifyMode(word)
            except ValueError:
                choices = [m.value for m in NotifyMode]
                raise self.fail(
                    mode_node, f"{where}: unknown notify {word!r}{_suggest(word, choices)} (use all or round_robin)"
                ) from None
        return Step(targets, channels, ack, mode)

    def channels(self, where: str, node: Node) -> tuple[Channel, ...]:
        if not isinstance(node, SequenceNode):
            raise self.fail(node, f"{where}: channels must be a list, not a {_shape(node)}")
        out: list[Channel] = []
        for item in node.value:
            word = str(self.scalar(item, f"{where} channel"))
            try:
                channel = parse_channel(word)
            except ValueError:
                choices = [c.value for c in Channel]
                raise self.fail(
                    item, f"{where}: unknown channel {word!r}{_suggest(word, choices)} (use {', '.join(choices)})"
                ) from None
            if channel in out:
                raise self.fail(item, f"{where}: channel {word!r} is listed twice")
            out.append(channel)
        return tuple(out)

    def target(self, where: str, node: Node) -> Target:
        """`console`, `relatives`, `{role: R}`, `{staff: ID}`, `{webhook: URL}`, each mapping
        form with an optional `ack_within` (its own time in a round robin)."""
        usage = "use console, relatives, {role: R}, {staff: ID} or {webhook: URL}"
        if isinstance(node, ScalarNode):
            word = self.scalar(node, f"{where} target")
            if word in (TargetKind.CONSOLE, TargetKind.RELATIVES):
                return Target(TargetKind(word))
            raise self.fail(node, f"{where}: unknown target {word!r}: {usage}")
        if not isinstance(node, MappingNode):
            raise self.fail(node, f"{where}: unknown target (a {_shape(node)}): {usage}")
        keys = self.mapping(node, f"{where} target", [*(k.value for k in TargetKind), "ack_within"])
        kinds = [k for k in keys if k != "ack_within"]
        if len(kinds) != 1:
            raise self.fail(node, f"{where}: unknown target: name exactly one kind ({usage})")
        kind = TargetKind(kinds[0])
        value_node = keys[kinds[0]][1]
        value = ""
        if kind == TargetKind.ROLE:
            value = self.string(value_node, f"{where} role")
            roles = [r.value for r in StaffRole]
            if value not in roles:
                raise self.fail(
                    value_node, f"{where}: unknown role {value!r}{_suggest(value, roles)} (roles: {', '.join(roles)})"
                )
        elif kind == TargetKind.STAFF:
            value = str(self.scalar(value_node, f"{where} staff"))
            if not value or value == "None":
                raise self.fail(value_node, f"{where}: staff must name a staff id")
        elif kind == TargetKind.WEBHOOK:
            value = self.string(value_node, f"{where} webhook")
            url = urlsplit(value)
            if url.scheme not in ("http", "https") or not url.netloc:
                raise self.fail(value_node, f"{where}: webhook {value!r} must be an http(s) URL")
        else:
            flag = self.scalar(value_node, f"{where} {kind}")
            if flag not in (None, True, "all"):
                raise self.fail(value_node, f"{where}: write `{kind}` alone (or `{kind}: true`)")
        ack = None
        if "ack_within" in keys:
            ack = self.duration(keys["ack_within"][1], f"{where} target ack_within")
        return Target(kind, value, ack)

    def select(self, node: Node, chains: dict[str, Chain]) -> tuple[Selector, ...]:
        if isinstance(node, ScalarNode) and self.scalar(node, "select") is None:
            return ()
        if not isinstance(node, SequenceNode):
            raise self.fail(node, f"select must be a list, not a {_shape(node)}")
        return tuple(self.selector(i, item, chains) for i, item in enumerate(node.value, 1))

    def selector(self, number: int, node: Node, chains: dict[str, Chain]) -> Selector:
        where = f"select entry {number}"
        keys = self.mapping(node, where, _SELECT_KEYS, ("use",))
        use_node = keys["use"][1]
        use = self.string(use_node, f"{where} use")
        if use not in chains:
            raise self.fail(use_node, f"{where}: use names no chain {use!r}{_suggest(use, list(chains))}")
        requested = tuple(v for v, _ in self.strings(keys["chain"][1], f"{where} chain")) if "chain" in keys else ()
        kinds = tuple(v for v, _ in self.strings(keys["kind"][1], f"{where} kind")) if "kind" in keys else ()
        priorities: list[Priority] = []
        if "priority" in keys:
            for word, item in self.strings(keys["priority"][1], f"{where} priority"):
                try:
                    priorities.append(Priority(word))
                except ValueError:
                    choices = [p.value for p in Priority]
                    raise self.fail(
                        item, f"{where}: unknown priority {word!r}{_suggest(word, choices)} ({', '.join(choices)})"
                    ) from None
        during = self.during(where, keys["during"][1]) if "during" in keys else None
        return Selector(use, requested, tuple(priorities), kinds, during, node.start_mark.line + 1)

    def during(self, where: str, node: Node) -> Window:
        """`during: {from: "22:00", to: "07:00", days: [fri, sat]}` (local wall clock)."""
        keys = self.mapping(node, f"{where} during", ("from", "to", "days"), ("from", "to"))
        from_ms = self.time_of_day(keys["from"][1], f"{where} from")
        to_node = keys["to"][1]
        to_ms = self.time_of_day(to_node, f"{where} to")
        if from_ms == to_ms:
            shown = format_time(from_ms)
            raise self.fail(
                to_node, f"{where}: a window from {shown} to {shown} is empty; leave out during for all day"
            )
        days = ALL_DAYS
        if "days" in keys:
            days = 0
            for word, item in self.strings(keys["days"][1], f"{where} day"):
                if word not in DAY_NAMES:
                    raise self.fail(
                        item, f"{where}: unknown day {word!r}{_suggest(word, DAY_NAMES)} ({', '.join(DAY_NAMES)})"
                    )
                days |= 1 << DAY_NAMES.index(word)
        return Window(from_ms, to_ms, days)

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
