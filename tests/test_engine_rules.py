"""The rule-pack loader: the language, durations, families, and errors with their lines."""

from __future__ import annotations

import dataclasses
import hashlib
import textwrap
from pathlib import Path

import pytest
import yaml

from responsecentre.contract import EVENT_TYPES
from responsecentre.engine import (
    Op,
    Priority,
    Rule,
    RuleError,
    RuleKind,
    RulePack,
    load_rules,
    parse_duration,
    parse_rules,
)
from responsecentre.engine.rules import (
    ALL_DAYS,
    DAY_NAMES,
    MAX_CONDITIONS,
    MAX_COUNT,
    Condition,
    CondOp,
    Window,
    apply_overrides,
    format_time,
    parse_time_of_day,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "rules" / "default.yaml"

RAISE = "raise: {kind: k, priority: high, chain: c}"


def pack(body: str) -> str:
    """A version-1 pack around an indented `rules:` body."""
    return "version: 1\nrules:\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "  ")


# -- the default pack ----------------------------------------------------------------------


def test_default_pack_loads_and_covers_the_brief() -> None:
    rules = {rule.name: rule for rule in load_rules(DEFAULT).rules}
    by_when: dict[tuple[tuple[str, ...], RuleKind], Rule] = {}
    for rule in rules.values():
        by_when.setdefault((rule.when, rule.kind), rule)  # the first such rule: the brief's

    def find(when: str, kind: RuleKind) -> tuple[str, Priority, str]:
        rule = by_when[((when,), kind)]
        return rule.alarm, rule.priority, rule.chain

    match, nf, hy = RuleKind.MATCH, RuleKind.NOT_FOLLOWED, RuleKind.HYSTERESIS
    assert find("alarm.button", match) == ("assistance", Priority.CRITICAL, "urgent")
    assert find("fall.detected", nf) == ("fall", Priority.CRITICAL, "urgent")
    assert find("seizure.detected", match) == ("seizure", Priority.CRITICAL, "urgent")
    assert find("smoke.detected", match) == ("fire", Priority.CRITICAL, "urgent")
    assert find("water.leak", match) == ("water_leak", Priority.HIGH, "standard")
    assert find("medication.due", nf) == ("missed_dose", Priority.MEDIUM, "standard")
    assert find("medication.missed", match) == ("missed_dose", Priority.MEDIUM, "standard")
    assert find("medication.empty", match) == ("dispenser_empty", Priority.MEDIUM, "technical")
    assert find("door.opened", nf) == ("door_open", Priority.HIGH, "standard")
    assert find("geofence.exit", match) == ("wandering", Priority.HIGH, "urgent")
    assert find("temperature", hy) == ("cold_home", Priority.HIGH, "standard")
    assert find("device.battery", hy) == ("low_battery", Priority.LOW, "technical")
    assert find("device.tamper", match) == ("tamper", Priority.MEDIUM, "technical")

    fall = by_when[(("fall.detected",), nf)]
    assert (fall.unless, fall.within_ms, fall.scope) == (("fall.cancelled",), 60_000, "device")
    dose = by_when[(("medication.due",), nf)]
    assert (dose.unless, dose.within_ms) == (("medication.taken",), 30 * 60_000)
    door = by_when[(("door.opened",), nf)]
    assert (door.unless, door.within_ms, door.scope) == (("door.closed",), 600_000, "home")
    cold = by_when[(("temperature",), hy)]
    assert (cold.op, cold.threshold, cold.clear_op, cold.clear_threshold) == (Op.LT, 10.0, Op.GT, 16.0)
    battery = by_when[(("device.battery",), hy)]
    assert (battery.op, battery.threshold, battery.clear_op, battery.clear_threshold) == (Op.LT, 15.0, Op.GT, 25.0)
    assert {r.chain for r in rules.values()} == {"urgent", "standard", "technical"}
    # Part 2: the resident's cancel, clearing, auto-clearable kinds.
    button = by_when[(("alarm.button",), match)]
    assert (button.cancel_by, button.cancel_within_ms) == (("alarm.cancel",), 120_000)
    closed = by_when[(("door.closed",), match)]
    assert (closed.action, closed.alarm, closed.chain) == ("clear", "door_open", "standard")
    pack = load_rules(DEFAULT)
    assert {"door_open", "cold_home", "low_battery", "device_offline"} <= pack.auto_clear
    assert all(r.action == "raise" for r in pack.rules if r.name != "door-closed")


def test_lines_point_at_rules() -> None:
    rules = load_rules(DEFAULT).rules
    lines = DEFAULT.read_text().splitlines()
    for rule in rules:
        assert lines[rule.line - 1].strip() == f"- name: {rule.name}"


# -- the language ----------------------------------------------------------------------------


def test_three_kinds() -> None:
    text = pack(
        f"""
        - name: a
          when: alarm.button
          {RAISE}
        - name: b
          when: device.battery
          value: {{at_least: 90.5}}
          {RAISE}
        - name: c
          when: fall.detected
          unless: {{followed_by: [fall.cancelled, alarm.cancel], within: 2m}}
          scope: home
          raise: {{kind: fall, priority: critical, chain: urgent}}
        """
    )
    a, b, c = parse_rules(text).rules
    assert (a.kind, a.when, a.op, a.threshold, a.unless, a.within_ms) == (
        RuleKind.MATCH,
        ("alarm.button",),
        None,
        None,
        (),
        0,
    )
    assert (b.kind, b.op, b.threshold) == (RuleKind.THRESHOLD, Op.GE, 90.5)
    assert (c.kind, c.unless, c.within_ms, c.scope) == (
        RuleKind.NOT_FOLLOWED,
        ("fall.cancelled", "alarm.cancel"),
        120_000,
        "home",
    )
    assert (c.alarm, c.priority, c.chain) == ("fall", Priority.CRITICAL, "urgent")
    assert [r.line for r in (a, b, c)] == [3, 6, 10]


@pytest.mark.parametrize(
    ("word", "op"),
    [("below", Op.LT), ("at_most", Op.LE), ("above", Op.GT), ("at_least", Op.GE), ("equals", Op.EQ)],
)
def test_value_words(word: str, op: Op) -> None:
    rule = parse_rules(pack(f"- {{name: a, when: temperature, value: {{{word}: -3}}, {RAISE}}}"))
    assert (rule.rules[0].op, rule.rules[0].threshold) == (op, -3.0)


def test_empty_rule_list_is_a_valid_pack() -> None:
    assert parse_rules("version: 1\nrules: []\n").rules == ()
    assert parse_rules("version: 1\nrules:\n").rules == ()


def test_priority_rank_orders_the_queue() -> None:
    assert [p.rank for p in Priority] == [0, 1, 2, 3]
    assert sorted(["low", "critical", "medium", "high"], key=lambda p: Priority(p).rank) == [
        "critical",
        "high",
        "medium",
        "low",
    ]
    assert Priority.CRITICAL == "critical"


def test_rules_are_frozen() -> None:
    rule = load_rules(DEFAULT).rules[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.name = "x"  # type: ignore[misc]


# -- families ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("door.*", ("door.opened", "door.closed")),
        ("medication.*", ("medication.due", "medication.taken", "medication.missed", "medication.empty")),
        ("[door.closed, door.*]", ("door.closed", "door.opened")),
        ("[bed.*, motion.detected, bed.exit]", ("bed.exit", "bed.enter", "motion.detected")),
        ("[alarm.button, alarm.button]", ("alarm.button",)),
        ("device.*", ("device.heartbeat", "device.battery", "device.tamper")),
    ],
)
def test_families_expand_in_order_without_duplicates(when: str, expected: tuple[str, ...]) -> None:
    rule = parse_rules(pack(f"- {{name: a, when: {when}, {RAISE}}}")).rules[0]
    assert rule.when == expected
    assert set(rule.when) <= set(EVENT_TYPES)


def test_family_in_followed_by() -> None:
    text = pack(f"- {{name: a, when: fall.detected, unless: {{followed_by: alarm.*, within: 1}}, {RAISE}}}")
    rule = parse_rules(text).rules[0]
    assert rule.unless == ("alarm.button", "alarm.cancel")
    assert rule.types == ("fall.detected", "alarm.button", "alarm.cancel")


def test_same_type_in_when_and_unless() -> None:
    text = pack(f"- {{name: a, when: motion.detected, unless: {{followed_by: motion.detected, within: 12h}}, {RAISE}}}")
    rule = parse_rules(text).rules[0]
    assert rule.types == ("motion.detected",)
    assert rule.within_ms == 12 * 3_600_000


# -- durations -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("500ms", 500),
        ("60s", 60_000),
        ("30m", 1_800_000),
        ("12h", 43_200_000),
        ("1d", 86_400_000),
        ("1.5s", 1500),
        ("0.1s", 100),
        ("2.5m", 150_000),
        (" 10 s ", 10_000),
        ("45", 45_000),
        (60, 60_000),
        (1.5, 1500),
        (0.001, 1),
        ("365d", 365 * 86_400_000),
    ],
)
def test_parse_duration(value: object, ms: int) -> None:
    assert parse_duration(value) == ms


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0s", "greater than zero"),
        (0, "greater than zero"),
        (-5, "not a number followed by|greater than zero"),
        ("-5s", "not a number followed by"),
        ("0.5ms", "whole number of milliseconds"),
        (0.0001, "whole number of milliseconds"),
        ("10 minutes", "not a number followed by"),
        ("1w", "not a number followed by"),
        ("", "not a number followed by"),
        ("366d", "longer than 365d"),
        (True, "number of seconds"),
        (None, "number of seconds"),
        (float("inf"), "finite"),
        (float("nan"), "finite"),
    ],
)
def test_parse_duration_refuses(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(value)


# -- errors with lines ---------------------------------------------------------------------------

GOOD = f"""\
version: 1
rules:
  - name: ok
    when: alarm.button
    {RAISE}
"""

# A pack whose kind `k` is auto-clearable: rule 'ok' is at line 4, the next rule at 5.
AUTO = f"""\
version: 1
alarms: {{k: {{auto_clear: true}}}}
rules:
  - {{name: ok, when: alarm.button, {RAISE}}}
"""

ERRORS = [
    # (yaml text, line, fragment of the message)
    ("", 1, "empty rule pack"),
    ("version: 1\nrules: [\n", 3, "invalid YAML"),
    ("version: 1\nrules:\n  - name: a\n   when: x\n", 4, "invalid YAML"),
    ("- just a list\n", 1, "the rule pack must be a mapping"),
    ("rules: []\n", 1, "missing the key 'version'"),
    ("version: 1\n", 1, "missing the key 'rules'"),
    ("version: 2\nrules: []\n", 1, "unsupported version 2"),
    ("version: 1\nrules: []\nextra: 1\n", 3, "unknown key 'extra' in the rule pack"),
    ("version: 1\nrules: {a: 1}\n", 2, "rules must be a list"),
    ("version: 1\nrules: []\nversion: 1\n", 3, "duplicate key 'version'"),
    (
        GOOD + "  - name: ok\n    when: alarm.cancel\n    " + RAISE + "\n",
        6,
        "duplicate rule name 'ok' (first at line 3)",
    ),
    (GOOD + "  - when: alarm.cancel\n    " + RAISE + "\n", 6, "missing the key 'name'"),
    (GOOD + "  - name: b\n    " + RAISE + "\n", 6, "missing the key 'when'"),
    (GOOD + "  - name: b\n    when: alarm.cancel\n", 6, "a rule needs 'raise' (an alarm) or 'clear'"),
    (
        GOOD + "  - name: Bad_Name\n    when: alarm.cancel\n    " + RAISE + "\n",
        6,
        "rule name 'Bad_Name' may only contain",
    ),
    (GOOD + "  - name: -x\n    when: alarm.cancel\n    " + RAISE + "\n", 6, "rule name '-x'"),
    (GOOD + "  - name: 12\n    when: alarm.cancel\n    " + RAISE + "\n", 6, "rule name must be a string"),
    (
        GOOD + "  - name: b\n    when: fall.detectd\n    " + RAISE + "\n",
        7,
        "unknown event type 'fall.detectd' (did you mean 'fall.detected'?)",
    ),
    (
        GOOD + "  - name: b\n    when:\n      - alarm.button\n      - dor.opened\n    " + RAISE + "\n",
        9,
        "unknown event type 'dor.opened'",
    ),
    (GOOD + "  - name: b\n    when: windo.*\n    " + RAISE + "\n", 7, "unknown event family 'windo.*'"),
    (GOOD + "  - name: b\n    when: []\n    " + RAISE + "\n", 7, "must name at least one event type"),
    (GOOD + "  - name: b\n    when: {a: 1}\n    " + RAISE + "\n", 7, "when (an event type) must be a"),
    (
        GOOD + "  - name: b\n    when: alarm.button\n    unles: 3\n    " + RAISE + "\n",
        8,
        "unknown key 'unles' in a rule (did you mean 'unless'?)",
    ),
    (
        GOOD + "  - name: b\n    when: alarm.button\n    raise: {kind: k, priority: urgent, chain: c}\n",
        8,
        "unknown priority 'urgent'",
    ),
    (
        GOOD + "  - name: b\n    when: alarm.button\n    raise:\n      kind: Fall Alarm\n"
        "      priority: high\n      chain: c\n",
        9,
        "alarm kind 'Fall Alarm' may only contain",
    ),
    (
        GOOD + "  - name: b\n    when: alarm.button\n    raise:\n      kind: k\n"
        "      priority: high\n      chain: c.d\n",
        11,
        "chain 'c.d' may only contain",
    ),
    (
        GOOD + "  - name: b\n    when: alarm.button\n    raise: {kind: k, priority: high}\n",
        8,
        "raise is missing the key 'chain'",
    ),
    (
        GOOD + "  - name: b\n    when: alarm.button\n    raise: {kind: k, priority: high, chain: c, colour: red}\n",
        8,
        "unknown key 'colour' in raise",
    ),
    (
        GOOD + "  - name: b\n    when: temperature\n    value: {below: cold}\n    " + RAISE + "\n",
        8,
        "below must be a finite number",
    ),
    (
        GOOD + "  - name: b\n    when: temperature\n    value: {below: true}\n    " + RAISE + "\n",
        8,
        "below must be a finite number",
    ),
    (
        GOOD + "  - name: b\n    when: temperature\n    value: {below: .nan}\n    " + RAISE + "\n",
        8,
        "below must be a finite number",
    ),
    (
        GOOD + "  - name: b\n    when: temperature\n    value: {below: 1, above: 0}\n    " + RAISE + "\n",
        8,
        "exactly one of",
    ),
    (GOOD + "  - name: b\n    when: temperature\n    value: {}\n    " + RAISE + "\n", 8, "exactly one of"),
    (
        GOOD + "  - name: b\n    when: temperature\n    value: {under: 1}\n    " + RAISE + "\n",
        8,
        "unknown key 'under' in value",
    ),
    (GOOD + "  - name: b\n    when: temperature\n    value: 10\n    " + RAISE + "\n", 8, "value must be a mapping"),
    (
        GOOD + "  - name: b\n    when: fall.detected\n    value: {below: 1}\n"
        "    unless: {followed_by: fall.cancelled, within: 1s}\n    " + RAISE + "\n",
        9,
        "either 'value' or 'unless'",
    ),
    (
        GOOD + "  - name: b\n    when: fall.detected\n    unless: {followed_by: fall.cancelled}\n    " + RAISE + "\n",
        8,
        "unless is missing the key 'within'",
    ),
    (
        GOOD + "  - name: b\n    when: fall.detected\n    unless:\n      followed_by: fall.cancelled\n"
        "      within: 0s\n    " + RAISE + "\n",
        10,
        "must be greater than zero",
    ),
    (
        GOOD + "  - name: b\n    when: fall.detected\n    unless:\n      followed_by: fall.cancelld\n"
        "      within: 1m\n    " + RAISE + "\n",
        9,
        "unknown event type 'fall.cancelld'",
    ),
    (
        GOOD + "  - name: b\n    when: fall.detected\n    unless:\n      followed_by: fall.cancelled\n"
        "      within: soon\n    " + RAISE + "\n",
        10,
        "duration 'soon' is not a number",
    ),
    (
        GOOD + "  - name: b\n    when: fall.detected\n    unless: {followed_by: fall.cancelled, "
        "within: 1s}\n    scope: flat\n    " + RAISE + "\n",
        9,
        "scope must be 'device' or 'home'",
    ),
    (
        GOOD + "  - name: b\n    when: fall.detected\n    scope: home\n    " + RAISE + "\n",
        8,
        "'scope' applies only to rules with 'unless'",
    ),
    (
        GOOD + "  - name: b\n    name: c\n    when: alarm.button\n    " + RAISE + "\n",
        7,
        "duplicate key 'name' in a rule (first at line 6)",
    ),
    (GOOD + "  - alarm.button\n", 6, "a rule must be a mapping"),
    # -- part 2: hysteresis, clear, auto-clear, cancel --
    (
        AUTO + "  - name: b\n    when: device.battery\n    value:\n      below: 15\n"
        "      clear_above: 10\n    " + RAISE + "\n",
        9,
        "clear_above 10 is below the threshold (below 15)",
    ),
    (
        AUTO + "  - name: b\n    when: temperature\n    value: {above: 30, clear_below: 31}\n    " + RAISE + "\n",
        7,
        "clear_below 31 is above the threshold (above 30)",
    ),
    (
        AUTO + "  - name: b\n    when: temperature\n    value: {above: 30, clear_above: 40}\n    " + RAISE + "\n",
        7,
        "clear_above goes with below or at_most, not with above",
    ),
    (
        AUTO + "  - name: b\n    when: temperature\n    value: {equals: 3, clear_above: 4}\n    " + RAISE + "\n",
        7,
        "clear_above goes with below or at_most",
    ),
    (
        AUTO + "  - name: b\n    when: temperature\n    value: {below: 3, clear_above: 4, clear_below: 1}\n"
        "    " + RAISE + "\n",
        7,
        "at most one of clear_above, clear_below",
    ),
    (
        AUTO + "  - name: b\n    when: temperature\n    value: {below: 3, clear_abov: 4}\n    " + RAISE + "\n",
        7,
        "unknown key 'clear_abov' in value (did you mean 'clear_above'?)",
    ),
    (
        GOOD + "  - name: b\n    when: temperature\n    value: {below: 3, clear_above: 4}\n    " + RAISE + "\n",
        6,
        "clears alarm kind 'k' with clear_above, but that kind is not auto-clearable",
    ),
    (
        GOOD + "  - name: b\n    when: door.closed\n    clear: {kind: door_open}\n",
        8,
        "clear names alarm kind 'door_open', which no rule raises (raised: k)",
    ),
    (
        GOOD + "  - name: b\n    when: door.closed\n    clear: {kind: k}\n",
        8,
        "alarm kind 'k' is not auto-clearable; declare it under 'alarms:'",
    ),
    (
        AUTO + "  - name: b\n    when: door.closed\n    clear: {kind: k}\n    " + RAISE + "\n",
        7,
        "either 'raise' or 'clear', not both",
    ),
    (AUTO + "  - name: b\n    when: door.closed\n    clear: {knd: k}\n", 7, "unknown key 'knd' in clear"),
    (
        AUTO + "  - name: b\n    when: door.closed\n    clear: {kind: k}\n    cancel: {by: alarm.cancel}\n",
        8,
        "'cancel' applies only to rules that raise",
    ),
    (
        AUTO + "  - name: b\n    when: fall.detected\n    unless: {followed_by: fall.cancelled, within: 1s}\n"
        "    clear: {kind: k}\n",
        7,
        "a clear rule takes no 'unless'",
    ),
    (
        AUTO + "  - name: b\n    when: temperature\n    value: {below: 3, clear_above: 4}\n    clear: {kind: k}\n",
        7,
        "a clear rule takes no clear_above or clear_below",
    ),
    (
        GOOD + "  - name: b\n    when: alarm.button\n    cancel:\n      by: alarm.cancel\n      within: 0\n"
        "    " + RAISE + "\n",
        10,
        "duration 0 must be greater than zero",
    ),
    (
        GOOD + "  - name: b\n    when: alarm.button\n    cancel: {by: alarm.cancl}\n    " + RAISE + "\n",
        8,
        "unknown event type 'alarm.cancl' (did you mean 'alarm.cancel'?)",
    ),
    (
        GOOD + "  - name: b\n    when: alarm.button\n    cancel: {by: alarm.*}\n    " + RAISE + "\n",
        8,
        "cancel by 'alarm.button', which is also in 'when'",
    ),
    (
        GOOD + "  - name: b\n    when: alarm.button\n    cancel: {by: alarm.cancel, inside: 1m}\n    " + RAISE + "\n",
        8,
        "unknown key 'inside' in cancel",
    ),
    (
        GOOD + "  - name: b\n    when: alarm.button\n    cancel: {within: 1m}\n    " + RAISE + "\n",
        8,
        "cancel is missing the key 'by'",
    ),
    (
        GOOD + "  - name: b\n    when: fall.detected\n    unless: {followed_by: fall.cancelled, within: 1s}\n"
        "    cancel: {by: alarm.cancel}\n    " + RAISE + "\n",
        9,
        "'cancel' does not go with 'unless'",
    ),
    (
        AUTO + "  - name: b\n    when: temperature\n    value: {below: 3, clear_above: 4}\n"
        "    cancel: {by: alarm.cancel}\n    " + RAISE + "\n",
        8,
        "'cancel' does not go with clear_above or clear_below",
    ),
    ("version: 1\nalarms: {k: {auto_clear: yes please}}\nrules: []\n", 2, "auto_clear must be true or false"),
    ("version: 1\nalarms: {k: {autoclear: true}}\nrules: []\n", 2, "unknown key 'autoclear' in alarms.k"),
    ("version: 1\nalarms: {Door Open: {auto_clear: true}}\nrules: []\n", 2, "alarm kind 'Door Open' may only"),
    ("version: 1\nalarms:\n  k: {auto_clear: true}\n  k: {auto_clear: false}\nrules: []\n", 4, "duplicate alarm"),
    ("version: 1\nalarms: [k]\nrules: []\n", 2, "alarms must be a mapping"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), ERRORS)
def test_errors_name_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rules(text, source="rules/x.yaml")
    message = str(caught.value)
    assert message.startswith(f"rules/x.yaml:{line}: "), message
    assert fragment in message, message
    assert caught.value.line == line


def test_good_fixture_is_good() -> None:
    assert [r.name for r in parse_rules(GOOD).rules] == ["ok"]


def test_load_rules_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "pack.yaml"
    path.write_text(GOOD + "  - name: b\n    when: fall.detectd\n    " + RAISE + "\n")
    with pytest.raises(RuleError, match=rf"^{path}:7: unknown event type 'fall.detectd'"):
        load_rules(path)
    with pytest.raises(RuleError, match=rf"^{path}:7: "):
        load_rules(str(path))


def test_load_rules_refuses_binary(tmp_path: Path) -> None:
    path = tmp_path / "pack.yaml"
    path.write_bytes(b"version: 1\nrules: []\n\xff\xfe")
    with pytest.raises(RuleError, match=r":1: not UTF-8"):
        load_rules(path)


def test_rule_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="<string>:1:"):
        parse_rules("")


# -- part 2: count, inactive, during, where -------------------------------------------------


def one(*lines: str, alarms: str = "") -> str:
    """A pack of one rule 'b' whose keys are `lines`: without `alarms` the name is at line 3
    and lines[i] at line 4 + i."""
    head = "version: 1\n" + (f"alarms: {alarms}\n" if alarms else "") + "rules:\n  - name: b\n"
    return head + "".join(f"    {line}\n" for line in lines)


H = 3_600_000
M = 60_000


def test_count_rules() -> None:
    text = pack(
        f"""
        - name: presses
          when: alarm.button
          count: {{n: 3, within: 2m}}
          {RAISE}
        - name: night-wandering
          when: door.opened
          count: {{n: 4, within: 1h}}
          scope: home
          during: {{from: "23:00", to: "06:00"}}
          raise: {{kind: wandering, priority: high, chain: urgent}}
        - name: once
          when: alarm.button
          count: {{n: 1, within: 1s}}
          scope: device
          {RAISE}
        """
    )
    presses, night, once = parse_rules(text).rules
    assert (presses.kind, presses.count_n, presses.count_within_ms, presses.scope) == (
        RuleKind.COUNT,
        3,
        2 * M,
        "device",
    )
    assert (presses.within_ms, presses.unless, presses.during, presses.where) == (0, (), None, ())
    assert (night.kind, night.count_n, night.count_within_ms, night.scope) == (RuleKind.COUNT, 4, H, "home")
    assert night.during == Window(23 * H, 6 * H, ALL_DAYS)
    assert night.during.crosses_midnight
    assert (once.count_n, once.scope) == (1, "device")


def test_inactive_may_take_exactly_a_week_of_its_window() -> None:
    text = one("when: motion.detected", "inactive: {for: 2h}", "during: {from: '23:00', to: '01:00', days: fri}", RAISE)
    assert parse_rules(text).rules[0].inactive_ms == 2 * H
    assert parse_rules(one("when: motion.detected", "inactive: {for: 7d}", RAISE)).rules[0].inactive_ms == 7 * 24 * H


def test_count_of_sixteen_is_the_most() -> None:
    rule = parse_rules(one("when: alarm.button", "count: {n: 16, within: 1m}", RAISE)).rules[0]
    assert rule.count_n == MAX_COUNT == 16


def test_inactive_rules() -> None:
    text = pack(
        """
        - name: no-movement-daytime
          when: [motion.detected, bed.*, door.*]
          inactive: {for: 4h}
          during: {from: "07:00", to: "22:00", days: [mon, tue, wed, thu, fri, sat, sun]}
          raise: {kind: inactivity, priority: high, chain: standard}
        - name: weekend
          when: motion.detected
          inactive: {for: 24h}
          during: {from: "08:00", to: "20:00", days: [sat, sun]}
          raise: {kind: inactivity, priority: high, chain: standard}
        """
    )
    daytime, weekend = parse_rules(text).rules
    assert daytime.kind is RuleKind.INACTIVE
    assert daytime.when == ("motion.detected", "bed.exit", "bed.enter", "door.opened", "door.closed")
    assert (daytime.inactive_ms, daytime.scope) == (4 * H, "home")  # always per home
    assert daytime.during == Window(7 * H, 22 * H, ALL_DAYS)
    assert not daytime.during.crosses_midnight
    assert (weekend.inactive_ms, weekend.during) == (24 * H, Window(8 * H, 20 * H, 0b110_0000))


@pytest.mark.parametrize(
    ("during", "window"),
    [
        ('{from: "22:00", to: "07:00"}', Window(22 * H, 7 * H)),
        ("{from: '00:00', to: '23:59'}", Window(0, 23 * H + 59 * M)),
        ("{from: 22:00, to: 07:00}", Window(22 * H, 7 * H)),  # unquoted: YAML's 1320 read as text
        ("{from: 7:30, to: 9:05}", Window(7 * H + 30 * M, 9 * H + 5 * M)),
        ('{from: "7:30", to: "09:05"}', Window(7 * H + 30 * M, 9 * H + 5 * M)),
        ('{from: "23:59", to: "00:00", days: fri}', Window(23 * H + 59 * M, 0, 0b001_0000)),
        ('{from: "01:00", to: "05:00", days: [sun, mon]}', Window(H, 5 * H, 0b100_0001)),
        ('{from: "01:00", to: "05:00", days: [mon, tue, wed, thu, fri, sat, sun]}', Window(H, 5 * H, ALL_DAYS)),
    ],
)
def test_during_windows(during: str, window: Window) -> None:
    rule = parse_rules(one("when: alarm.button", f"during: {during}", RAISE)).rules[0]
    assert rule.during == window
    assert rule.kind is RuleKind.MATCH


def test_window_describe_and_times() -> None:
    assert Window(22 * H, 7 * H).describe() == '{from: "22:00", to: "07:00"}'
    assert Window(H + 5 * M, 2 * H, 0b100_0001).describe() == '{from: "01:05", to: "02:00", days: [mon, sun]}'
    assert format_time(0) == "00:00"
    assert format_time(23 * H + 59 * M) == "23:59"
    assert parse_time_of_day("7:05") == 7 * H + 5 * M
    assert ALL_DAYS == 0x7F
    assert DAY_NAMES[0] == "mon"


# Every rule kind but supervision takes `during` and `where`.
GATED_KINDS = [
    (RuleKind.MATCH, ["when: motion.detected", RAISE]),
    (RuleKind.THRESHOLD, ["when: motion.detected", "value: {above: 3}", RAISE]),
    (RuleKind.NOT_FOLLOWED, ["when: motion.detected", "unless: {followed_by: door.closed, within: 1m}", RAISE]),
    (RuleKind.HYSTERESIS, ["when: motion.detected", "value: {above: 3, clear_below: 1}", RAISE]),
    (RuleKind.COUNT, ["when: motion.detected", "count: {n: 2, within: 1m}", RAISE]),
    (RuleKind.INACTIVE, ["when: motion.detected", "inactive: {for: 1h}", RAISE]),
    (RuleKind.MATCH, ["when: motion.detected", "cancel: {by: alarm.cancel}", RAISE]),
]


@pytest.mark.parametrize(("kind", "lines"), GATED_KINDS)
def test_every_kind_but_supervision_takes_during_and_where(kind: RuleKind, lines: list[str]) -> None:
    gates = ['during: {from: "01:00", to: "05:00"}', "where: {room: bathroom}"]
    text = one(*lines, *gates, alarms="{k: {auto_clear: true}}")
    rule = parse_rules(text).rules[0]
    assert rule.kind is kind
    assert rule.during == Window(H, 5 * H)
    assert rule.where == (Condition("room", CondOp.EQ, "bathroom"),)


def test_a_clear_rule_takes_during_and_where() -> None:
    text = pack(
        f"""
        - {{name: a, when: door.opened, {RAISE}}}
        - name: b
          when: door.closed
          where: {{door: front}}
          during: {{from: "06:00", to: "23:00"}}
          clear: {{kind: k}}
        """
    ).replace("version: 1\n", "version: 1\nalarms: {k: {auto_clear: true}}\n")
    clear = parse_rules(text).rules[1]
    assert (clear.action, clear.during, clear.where) == (
        "clear",
        Window(6 * H, 23 * H),
        (Condition("door", CondOp.EQ, "front"),),
    )


@pytest.mark.parametrize(
    ("where", "conditions"),
    [
        ("{room: bathroom}", [("room", CondOp.EQ, "bathroom")]),
        ("{room: {equals: bathroom}}", [("room", CondOp.EQ, "bathroom")]),
        (
            "{room: {in: [bathroom, toilet]}, level: {above: 3}}",
            [
                ("room", CondOp.IN, ("bathroom", "toilet")),
                ("level", CondOp.GT, 3.0),
            ],
        ),
        ("{level: {below: -1.5}}", [("level", CondOp.LT, -1.5)]),
        ("{level: {at_most: 2}}", [("level", CondOp.LE, 2.0)]),
        ("{level: {at_least: 0}}", [("level", CondOp.GE, 0.0)]),
        ("{level: 3}", [("level", CondOp.EQ, 3.0)]),
        ("{open: true, shut: False}", [("open", CondOp.EQ, True), ("shut", CondOp.EQ, False)]),
        (
            "{light: on, ok: yes, x: no, y: off}",
            [  # YAML 1.1 booleans other than true/false stay words
                ("light", CondOp.EQ, "on"),
                ("ok", CondOp.EQ, "yes"),
                ("x", CondOp.EQ, "no"),
                ("y", CondOp.EQ, "off"),
            ],
        ),
        ('{code: "1"}', [("code", CondOp.EQ, "1")]),
        ("{on: 1, 2: x, Room_B: y}", [("on", CondOp.EQ, 1.0), ("2", CondOp.EQ, "x"), ("Room_B", CondOp.EQ, "y")]),
        ("{v: {in: [a, a, 1, 1.0, true, '1']}}", [("v", CondOp.IN, ("a", 1.0, True, "1"))]),
    ],
)
def test_where_conditions(where: str, conditions: list[tuple[str, CondOp, object]]) -> None:
    rule = parse_rules(one("when: motion.detected", f"where: {where}", RAISE)).rules[0]
    assert rule.where == tuple(Condition(*c) for c in conditions)  # type: ignore[arg-type]
    for got, (_, _, value) in zip(rule.where, conditions, strict=True):
        assert type(got.value) is type(value)  # true stays a bool, 3 becomes a float


def test_conditions_are_json_values_not_python_ones() -> None:
    assert Condition("x", CondOp.EQ, True) != Condition("x", CondOp.EQ, 1.0)
    assert Condition("x", CondOp.EQ, 1.0) != Condition("x", CondOp.EQ, "1")
    assert Condition("x", CondOp.EQ, 1.0) == Condition("x", CondOp.EQ, 1)
    assert len({Condition("x", CondOp.EQ, True), Condition("x", CondOp.EQ, 1.0)}) == 2
    assert Condition("x", CondOp.IN, (True,)) != Condition("x", CondOp.IN, (1.0,))
    assert Condition("x", CondOp.EQ, 1.0) != Condition("x", CondOp.GE, 1.0)
    assert Condition("room", CondOp.EQ, "on").describe() == 'room: "on"'
    assert Condition("room", CondOp.IN, ("a", 2.0, True)).describe() == "room: {in: [a, 2, true]}"
    assert Condition("level", CondOp.GT, 2.5).describe() == "level: {above: 2.5}"


def test_pack_conditions_are_distinct_in_order_of_first_use() -> None:
    text = pack(
        f"""
        - {{name: a, when: motion.detected, where: {{room: bathroom, level: {{above: 3}}}}, {RAISE}}}
        - {{name: b, when: motion.detected, where: {{flag: true}}, {RAISE}}}
        - {{name: c, when: door.opened, where: {{level: {{above: 3.0}}, flag: 1}}, {RAISE}}}
        - {{name: d, when: door.opened, {RAISE}}}
        - {{name: e, when: door.opened, where: {{room: {{equals: bathroom}}}}, {RAISE}}}
        """
    )
    loaded = parse_rules(text)
    assert loaded.conditions == (
        Condition("room", CondOp.EQ, "bathroom"),
        Condition("level", CondOp.GT, 3.0),
        Condition("flag", CondOp.EQ, True),
        Condition("flag", CondOp.EQ, 1.0),
    )
    assert [loaded.condition_mask(r) for r in loaded.rules] == [0b0011, 0b0100, 0b1010, 0, 0b0001]
    # A pack built in code derives the same conditions.
    assert RulePack(loaded.rules).conditions == loaded.conditions
    stranger = dataclasses.replace(loaded.rules[0], where=(Condition("x", CondOp.EQ, "y"),))
    with pytest.raises(ValueError, match=r"rule 'a': condition x: y is not one of the pack's"):
        loaded.condition_mask(stranger)


def test_sixty_three_conditions_fit() -> None:
    fields = [f"  f{i}: {i}" for i in range(MAX_CONDITIONS)]
    text = one("when: motion.detected", "where:", *fields, RAISE)
    loaded = parse_rules(text)
    assert len(loaded.conditions) == 63
    assert loaded.condition_mask(loaded.rules[0]) == (1 << 63) - 1
    # The same conditions again in another rule add nothing.
    again = text + "  - name: c\n    when: door.opened\n    where:\n" + "".join(f"    {f}\n" for f in fields)
    again += f"    {RAISE}\n"
    assert len(parse_rules(again).conditions) == 63


def test_a_pack_built_in_code_with_64_conditions_is_refused() -> None:
    rule = Rule(
        name="a",
        kind=RuleKind.MATCH,
        when=("motion.detected",),
        where=tuple(Condition(f"f{i}", CondOp.EQ, float(i)) for i in range(64)),
        alarm="k",
        priority=Priority.LOW,
        chain="c",
    )
    with pytest.raises(ValueError, match="at most 63 different conditions"):
        RulePack((rule,))


def test_pack_sha256_is_of_the_text(tmp_path: Path) -> None:
    text = one("when: alarm.button", RAISE)
    assert parse_rules(text).sha256 == hashlib.sha256(text.encode()).hexdigest()
    path = tmp_path / "p.yaml"
    path.write_text(text + "# a comment changes the file\n")
    loaded = load_rules(path)
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() != parse_rules(text).sha256
    assert loaded == parse_rules(text)  # the hash is not part of the pack's equality
    assert RulePack().sha256 == ""


NEW_ERRORS = [
    # (yaml text, line, the whole message)
    # -- during --
    (
        one("when: alarm.button", "during: {from: '07:00', to: '07:00'}", RAISE),
        5,
        "a window from 07:00 to 07:00 is empty or the whole day; leave out `during` for the whole day",
    ),
    (
        one("when: alarm.button", "during:", "  from: 7:00", "  to: '07:00'", RAISE),
        7,
        "a window from 07:00 to 07:00 is empty or the whole day; leave out `during` for the whole day",
    ),
    (
        one("when: alarm.button", "during: {from: '07:00', to: '08:00', day: [mon]}", RAISE),
        5,
        "unknown key 'day' in during (did you mean 'days'?) (allowed: from, to, days)",
    ),
    (one("when: alarm.button", "during: {from: '07:00'}", RAISE), 5, "during is missing the key 'to'"),
    (
        one("when: alarm.button", "during: '22:00-07:00'", RAISE),
        5,
        "during must be a mapping (key: value), not a single value",
    ),
    (
        one("when: alarm.button", "during:", "  from: '25:00'", "  to: '07:00'", RAISE),
        6,
        "from '25:00' is not a time of day from 00:00 to 23:59 written as HH:MM",
    ),
    (
        one("when: alarm.button", "during: {from: '22:00', to: '24:00'}", RAISE),
        5,
        "to '24:00' is not a time of day from 00:00 to 23:59 written as HH:MM (midnight is 00:00)",
    ),
    (
        one("when: alarm.button", "during: {from: '22:00', to: '07:00:00'}", RAISE),
        5,
        "to '07:00:00' is not a time of day from 00:00 to 23:59 written as HH:MM",
    ),
    (
        one("when: alarm.button", "during: {from: 7:00:00, to: '08:00'}", RAISE),
        5,
        "from '7:00:00' is not a time of day from 00:00 to 23:59 written as HH:MM",
    ),
    (
        one("when: alarm.button", "during: {from: '7:60', to: '08:00'}", RAISE),
        5,
        "from '7:60' is not a time of day from 00:00 to 23:59 written as HH:MM",
    ),
    (
        one("when: alarm.button", "during: {from: 7, to: '08:00'}", RAISE),
        5,
        'from must be a time of day like "07:00", not 7',
    ),
    (
        one(
            "when: alarm.button",
            "during:",
            "  from: '22:00'",
            "  to: '07:00'",
            "  days:",
            "    - mon",
            "    - tues",
            RAISE,
        ),
        10,
        "unknown day 'tues' (did you mean 'tue'?) (days are mon, tue, wed, thu, fri, sat, sun)",
    ),
    (
        one("when: alarm.button", "during: {from: '22:00', to: '07:00', days: [mon, sat, mon]}", RAISE),
        5,
        "day 'mon' is listed twice in days",
    ),
    (
        one("when: alarm.button", "during: {from: '22:00', to: '07:00', days: []}", RAISE),
        5,
        "days must name at least one day (leave out 'days' for every day)",
    ),
    (
        one("when: alarm.button", "during: {from: '22:00', to: '07:00', days: [1]}", RAISE),
        5,
        "a day must be a string, not 1",
    ),
    (
        one("supervise: {}", "during: {from: '22:00', to: '07:00'}", RAISE),
        5,
        "a supervise rule takes no 'during' (supervision runs around the clock; override the interval per home "
        "instead)",
    ),
    (
        one("supervise: {}", "where: {room: x}", RAISE),
        5,
        "a supervise rule takes no 'where' (supervision runs around the clock; override the interval per home instead)",
    ),
    (
        one("supervise: {}", "count: {n: 2, within: 1m}", RAISE),
        5,
        "a supervise rule takes no 'count' (it raises and clears itself)",
    ),
    (
        one("supervise: {}", "inactive: {for: 1h}", RAISE),
        5,
        "a supervise rule takes no 'inactive' (it raises and clears itself)",
    ),
    # -- count --
    (
        one("when: alarm.button", "count: {n: 0, within: 2m}", RAISE),
        5,
        "a count of 0 never fires (n is from 1 to 16)",
    ),
    (
        one("when: alarm.button", "count:", "  n: 17", "  within: 2m", RAISE),
        6,
        "count n 17 is more than 16 (the engine keeps the times of at most 16 events per device or home)",
    ),
    (one("when: alarm.button", "count: {n: -1, within: 2m}", RAISE), 5, "count n -1 must be from 1 to 16"),
    (
        one("when: alarm.button", "count: {n: 2.5, within: 2m}", RAISE),
        5,
        "count n must be a whole number from 1 to 16, not 2.5",
    ),
    (
        one("when: alarm.button", "count: {n: true, within: 2m}", RAISE),
        5,
        "count n must be a whole number from 1 to 16, not True",
    ),
    (one("when: alarm.button", "count: {n: 3, within: 0}", RAISE), 5, "duration 0 must be greater than zero"),
    (
        one("when: alarm.button", "count: {n: 3, withn: 2m}", RAISE),
        5,
        "unknown key 'withn' in count (did you mean 'within'?) (allowed: n, within)",
    ),
    (one("when: alarm.button", "count: {n: 3}", RAISE), 5, "count is missing the key 'within'"),
    (one("when: alarm.button", "count: 3", RAISE), 5, "count must be a mapping (key: value), not a single value"),
    (
        one("when: alarm.button", "count: {n: 3, within: 2m}", "clear: {kind: k}"),
        5,
        "a clear rule takes no 'count' (it clears on the event itself)",
    ),
    (
        one("when: temperature", "value: {above: 3}", "count: {n: 3, within: 2m}", RAISE),
        6,
        "a rule takes either 'value' or 'count', not both (split it into two rules)",
    ),
    (
        one(
            "when: fall.detected",
            "count: {n: 3, within: 2m}",
            "unless: {followed_by: fall.cancelled, within: 1m}",
            RAISE,
        ),
        6,
        "a rule takes either 'count' or 'unless', not both (split it into two rules)",
    ),
    (
        one("when: alarm.button", "count: {n: 3, within: 2m}", "cancel: {by: alarm.cancel}", RAISE),
        6,
        "'cancel' does not go with 'count' (a resident cancels the alarm of one press: a match or threshold rule)",
    ),
    (
        one("when: alarm.button", "count: {n: 3, within: 2m}", "scope: flat", RAISE),
        6,
        "scope must be 'device' or 'home', not 'flat'",
    ),
    (
        one("when: alarm.button", "scope: home", RAISE),
        5,
        "'scope' applies only to rules with 'unless' or 'count'",
    ),
    # -- inactive --
    (
        one("when: motion.detected", "inactive: {for: 4h}", "scope: home", RAISE),
        6,
        "an 'inactive' rule is always per home; leave out 'scope'",
    ),
    (
        one("when: motion.detected", "inactive: {for: 8d}", RAISE),
        5,
        "inactive for '8d' is longer than 7d (a home silent for a week is not inactivity)",
    ),
    (one("when: motion.detected", "inactive: {for: 0s}", RAISE), 5, "duration '0s' must be greater than zero"),
    (
        one(
            "when: motion.detected", "inactive:", "  for: 2h", "during: {from: '07:00', to: '08:00', days: sun}", RAISE
        ),
        6,
        "inactive for 2h is more than its window holds in a week (1h: 1h on 1 day); shorten 'for' or widen the window",
    ),
    (
        one("when: motion.detected", "inactive: {for: 4d}", "during: {from: '22:00', to: '07:00'}", RAISE),
        5,
        "inactive for 4d is more than its window holds in a week (63h: 9h on 7 days); shorten 'for' or widen the "
        "window",
    ),
    (
        one("when: motion.detected", "inactive: {fr: 4h}", RAISE),
        5,
        "unknown key 'fr' in inactive (did you mean 'for'?) (allowed: for)",
    ),
    (one("when: motion.detected", "inactive: {}", RAISE), 5, "inactive is missing the key 'for'"),
    (
        one("when: motion.detected", "inactive: {for: 4h}", "clear: {kind: k}"),
        5,
        "a clear rule takes no 'inactive' (it clears on the event itself)",
    ),
    (
        one("when: motion.detected", "count: {n: 2, within: 1m}", "inactive: {for: 4h}", RAISE),
        6,
        "a rule takes either 'count' or 'inactive', not both (split it into two rules)",
    ),
    (
        one("when: motion.detected", "value: {above: 1}", "inactive: {for: 4h}", RAISE),
        6,
        "a rule takes either 'value' or 'inactive', not both (split it into two rules)",
    ),
    (
        one("when: motion.detected", "inactive: {for: 4h}", "cancel: {by: alarm.cancel}", RAISE),
        6,
        "'cancel' does not go with 'inactive' (a resident cancels the alarm of one press: a match or threshold rule)",
    ),
    (
        one("inactive: {for: 4h}", RAISE),
        3,
        "a rule is missing the key 'when'",
    ),
    (
        one("when: motion.detected", "inactiv: {for: 4h}", RAISE),
        5,
        "unknown key 'inactiv' in a rule (did you mean 'inactive'?) (allowed: name, when, value, unless, count, "
        "inactive, scope, during, where, cancel, supervise, raise, clear)",
    ),
    # -- where --
    (
        one("when: motion.detected", "where: {room: {is: bathroom}}", RAISE),
        5,
        "unknown key 'is' in where.room (allowed: equals, in, below, at_most, above, at_least)",
    ),
    (
        one("when: motion.detected", "where: {room: {eqals: bathroom}}", RAISE),
        5,
        "unknown key 'eqals' in where.room (did you mean 'equals'?) (allowed: equals, in, below, at_most, above, "
        "at_least)",
    ),
    (one("when: motion.detected", "where: {room: {in: []}}", RAISE), 5, "where.room.in must list at least one value"),
    (
        one("when: motion.detected", "where: {room: {in: bathroom}}", RAISE),
        5,
        "where.room.in takes a list of values, like in: [bathroom, toilet]",
    ),
    (
        one("when: motion.detected", "where: {room: {in: [a, [b]]}}", RAISE),
        5,
        "a value in where.room.in must be a single value, not a list",
    ),
    (
        one("when: motion.detected", "where: {level: {above: high}}", RAISE),
        5,
        "above must be a finite number, not 'high'",
    ),
    (
        one("when: motion.detected", "where: {level: {at_least: true}}", RAISE),
        5,
        "at_least must be a finite number, not True",
    ),
    (
        one("when: motion.detected", "where: {level: .inf}", RAISE),
        5,
        "where.level must be a finite number, not inf",
    ),
    (
        one("when: motion.detected", "where: {room: {equals: a, in: [b]}}", RAISE),
        5,
        "where.room takes exactly one of equals, in, below, at_most, above, at_least",
    ),
    (
        one("when: motion.detected", "where: {room: {}}", RAISE),
        5,
        "where.room takes exactly one of equals, in, below, at_most, above, at_least",
    ),
    (one("when: motion.detected", "where: {}", RAISE), 5, "where must name at least one field"),
    (one("when: motion.detected", "where: [room]", RAISE), 5, "where must be a mapping (field: value), not a list"),
    (
        one("when: motion.detected", "where: {room.name: x}", RAISE),
        5,
        "field name 'room.name' in where may only contain A-Z, a-z, 0-9 and '_'",
    ),
    (
        one("when: motion.detected", "where: {room: [a, b]}", RAISE),
        5,
        "where.room takes one value; for a choice write room: {in: [a, b]}",
    ),
    (
        one("when: motion.detected", "where: {room: ~}", RAISE),
        5,
        "where.room must be a string, a number or true/false, not None",
    ),
    (
        one("when: motion.detected", "where: {day: 2024-01-01}", RAISE),
        5,
        "where.day must be a string, a number or true/false, not datetime.date(2024, 1, 1)",
    ),
    (
        one("when: motion.detected", "where:", "  room: a", "  room: b", RAISE),
        7,
        "duplicate field 'room' in where (first at line 6)",
    ),
    (
        one("when: motion.detected", "where:", *[f"  f{i}: {i}" for i in range(64)], RAISE),
        69,
        "a pack may use at most 63 different conditions in 'where'; f63: 63 is the 64th",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), NEW_ERRORS)
def test_new_construct_errors(text: str, line: int, message: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rules(text, source="rules/x.yaml")
    assert str(caught.value) == f"rules/x.yaml:{line}: {message}"
    assert (caught.value.line, caught.value.message) == (line, message)


def test_the_64th_condition_may_come_from_another_rule() -> None:
    first = [f"  f{i}: {i}" for i in range(63)]
    text = one("when: motion.detected", "where:", *first, RAISE)
    text += "  - name: c\n    when: door.opened\n    where: {f0: 0, g: x}\n    " + RAISE + "\n"
    with pytest.raises(RuleError) as caught:
        parse_rules(text, source="rules/x.yaml")
    line = 4 + 1 + 63 + 1 + 3  # rule b's lines, then c's `where`
    assert str(caught.value) == (
        f"rules/x.yaml:{line}: a pack may use at most 63 different conditions in 'where'; g: x is the 64th"
    )


# -- meaning: what a rule's state means ---------------------------------------------------------

BASE = [
    "when: [alarm.button, door.opened]",
    "count: {n: 3, within: 2m}",
    "scope: home",
    "during: {from: '22:00', to: '07:00', days: [fri, sat]}",
    "where: {room: hall, level: {above: 3}}",
    "raise: {kind: k, priority: high, chain: c}",
]


def meaning_of(lines: list[str], name: str = "b", before: str = "") -> str:
    text = one(*lines).replace("  - name: b\n", before + f"  - name: {name}\n")
    loaded = parse_rules(text)
    return loaded.rules[loaded.index(name)].meaning


def test_meaning_is_stable_across_runs() -> None:
    meaning = meaning_of(BASE)
    assert len(meaning) == 16 and int(meaning, 16) >= 0
    # A literal, not Python's per-process hash(): a restart must find the same key.
    assert meaning == "95d37c7dc5e8c247"


@pytest.mark.parametrize(
    "change",
    [
        {"name": "renamed"},
        {5: "raise: {kind: other, priority: low, chain: technical}"},
        {0: "when: [door.opened, alarm.button]"},
        {4: "where: {level: {above: 3.0}, room: hall}"},
        {3: "during: {from: 22:00, to: '07:00', days: [sat, fri]}"},
        {"before": "  - {name: first, when: fall.detected, raise: {kind: k, priority: high, chain: c}}\n"},
    ],
)
def test_meaning_ignores_names_alarms_order_and_lines(change: dict[object, str]) -> None:
    lines = list(BASE)
    for key, value in change.items():
        if isinstance(key, int):
            lines[key] = value
    name = change.get("name", "b")
    assert meaning_of(lines, name=name, before=change.get("before", "")) == meaning_of(BASE)


@pytest.mark.parametrize(
    ("index", "line"),
    [
        (0, "when: [alarm.button]"),
        (1, "count: {n: 4, within: 2m}"),
        (1, "count: {n: 3, within: 3m}"),
        (2, "scope: device"),
        (3, "during: {from: '22:00', to: '06:00', days: [fri, sat]}"),
        (3, "during: {from: '21:00', to: '07:00', days: [fri, sat]}"),
        (3, "during: {from: '22:00', to: '07:00', days: [fri]}"),
        (3, None),  # no during
        (4, "where: {room: hall, level: {above: 4}}"),
        (4, "where: {room: hall, level: {at_least: 3}}"),
        (4, "where: {room: kitchen, level: {above: 3}}"),
        (4, "where: {room: hall, lvl: {above: 3}}"),
        (4, None),  # no where
    ],
)
def test_meaning_changes_with_every_semantic_field(index: int, line: str | None) -> None:
    lines: list[str | None] = list(BASE)
    lines[index] = line
    kept = [x for x in lines if x is not None]
    before = "  - {name: r, when: fall.detected, raise: {kind: k, priority: high, chain: c}}\n"
    text = one(*kept, alarms="{k: {auto_clear: true}}").replace("  - name: b\n", before + "  - name: b\n")
    rule = parse_rules(text).rules[1]
    assert rule.meaning != meaning_of(BASE)


def kinds_pack() -> RulePack:
    return parse_rules(
        """\
version: 1
alarms: {k: {auto_clear: true}, offline: {auto_clear: true}}
rules:
  - {name: m, when: alarm.button, cancel: {by: alarm.cancel, within: 1m}, raise: {kind: k, priority: high, chain: c}}
  - {name: t, when: temperature, value: {below: 10}, raise: {kind: k, priority: high, chain: c}}
  - {name: n, when: fall.detected, unless: {followed_by: fall.cancelled, within: 1m}, raise: {kind: k, priority: high,
    chain: c}}
  - {name: h, when: temperature, value: {below: 10, clear_above: 16}, raise: {kind: k, priority: high, chain: c}}
  - {name: c, when: door.opened, count: {n: 3, within: 1h}, raise: {kind: k, priority: high, chain: c}}
  - {name: i, when: motion.detected, inactive: {for: 4h}, raise: {kind: k, priority: high, chain: c}}
  - {name: s, supervise: {grace: 2}, raise: {kind: offline, priority: low, chain: c}}
  - {name: x, when: door.closed, value: {at_least: 1}, clear: {kind: k}}
"""
    )


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("m", {"cancel_within_ms": 2 * M}),
        ("m", {"cancel_by": ("alarm.cancel", "fall.cancelled")}),
        ("t", {"threshold": 11.0}),
        ("t", {"op": Op.LE}),
        ("n", {"within_ms": 2 * M}),
        ("n", {"unless": ("alarm.cancel",)}),
        ("n", {"scope": "home"}),
        ("h", {"clear_threshold": 17.0}),
        ("c", {"count_n": 4}),
        ("c", {"count_within_ms": 2 * H}),
        ("i", {"inactive_ms": 5 * H}),
        ("i", {"during": Window(7 * H, 22 * H)}),
        ("s", {"grace": 3.0}),
        ("x", {"action": "raise"}),
        ("x", {"when": ("door.opened",)}),
        ("m", {"kind": RuleKind.THRESHOLD}),
    ],
)
def test_meaning_of_each_field(name: str, changes: dict[str, object]) -> None:
    rule = kinds_pack().rules[kinds_pack().index(name)]
    assert dataclasses.replace(rule, **changes).meaning != rule.meaning  # type: ignore[arg-type]


def test_meaning_ignores_presentation_fields() -> None:
    for rule in kinds_pack().rules:
        same = dataclasses.replace(rule, name="zz", line=99, priority=Priority.LOW, chain="other", alarm="other")
        assert same.meaning == rule.meaning


# -- per-home overrides ---------------------------------------------------------------------------

HOME = "devices/homes.yaml: home vestby/h01"


def overridden(overrides: object) -> dict[str, Rule]:
    return {rule.name: rule for rule in apply_overrides(kinds_pack(), overrides, HOME)}  # type: ignore[arg-type]


def test_overrides_change_numbers_and_windows() -> None:
    before = {rule.name: rule for rule in kinds_pack().rules}
    after = overridden(
        {
            "m": {"cancel": {"within": "5m"}, "during": {"from": "22:00", "to": "07:00", "days": ["fri", "sat"]}},
            "t": {"value": {"below": 12}},
            "n": {"unless": {"within": 90}},
            "h": {"value": {"clear_above": 18.5}},
            "c": {"count": {"n": 5}},
            "i": {"inactive": {"for": "6h"}, "during": {"from": "09:00", "to": "21:00", "days": "sun"}},
            "x": {"value": {"at_least": 2}},
        }
    )
    assert after["m"].cancel_within_ms == 5 * M
    assert after["m"].during == Window(22 * H, 7 * H, 0b011_0000)
    assert after["t"].threshold == 12.0
    assert after["n"].within_ms == 90_000
    assert (after["h"].threshold, after["h"].clear_threshold) == (10.0, 18.5)
    assert (after["c"].count_n, after["c"].count_within_ms) == (5, H)
    assert after["i"].inactive_ms == 6 * H
    assert after["i"].during == Window(9 * H, 21 * H, 0b100_0000)
    assert after["x"].threshold == 2.0
    assert after["s"] == before["s"]
    for name, rule in after.items():
        assert (rule.name, rule.line, rule.priority, rule.kind, rule.when) == (
            name,
            before[name].line,
            before[name].priority,
            before[name].kind,
            before[name].when,
        )
        assert (rule.meaning == before[name].meaning) == (name == "s")


def test_overrides_of_both_hysteresis_bounds_and_count_within() -> None:
    after = overridden({"h": {"value": {"below": 5, "clear_above": 5}}, "c": {"count": {"within": "2h", "n": 2}}})
    assert (after["h"].threshold, after["h"].clear_threshold) == (5.0, 5.0)
    assert (after["c"].count_n, after["c"].count_within_ms) == (2, 2 * H)


def test_an_override_equal_to_the_rule_changes_nothing() -> None:
    pack_ = kinds_pack()
    same = apply_overrides(
        pack_,
        {
            "t": {"value": {"below": 10.0}},
            "h": {"value": {"below": 10, "clear_above": 16}},
            "c": {"count": {"n": 3, "within": "1h"}},
            "i": {"inactive": {"for": 4 * 3600}},
            "m": {"cancel": {"within": "60s"}},
        },
        HOME,
    )
    assert same == pack_.rules
    assert [r.meaning for r in same] == [r.meaning for r in pack_.rules]
    assert apply_overrides(pack_, {}, HOME) == pack_.rules
    assert apply_overrides(pack_, None, HOME) == pack_.rules


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hh": {}}, "rule 'hh': no such rule in <string> (did you mean 'h'?)"),
        ({"nothing-like-it": {}}, "rule 'nothing-like-it': no such rule in <string>"),
        ([1], "rule overrides must map rule names to settings, not a list"),
        ({"h": None}, "rule 'h': the overrides must be a mapping (key: value), not nothing"),
        ({"h": {}}, "rule 'h': the overrides name nothing to change (this rule takes: value, during)"),
        (
            {"h": {"value": {"below": 12, "clear_above": 9}}},
            "rule 'h': clear_above 9 is below the threshold (below 12): a reading would both raise and clear",
        ),
        (
            {"h": {"value": {"below": 17}}},
            "rule 'h': clear_above 16 is below the threshold (below 17): a reading would both raise and clear",
        ),
        (
            {"t": {"value": {"above": 3}}},
            "rule 't': value: 'above' is not this rule's comparison (it uses below); a home changes the numbers, "
            "not the test",
        ),
        ({"t": {"value": {"below": "cold"}}}, "rule 't': below must be a finite number, not 'cold'"),
        ({"t": {"value": {"below": True}}}, "rule 't': below must be a finite number, not True"),
        ({"t": {"value": {"below": float("nan")}}}, "rule 't': below must be a finite number, not nan"),
        ({"t": {"value": {}}}, "rule 't': value names nothing to change (give below)"),
        (
            {"t": {"value": {"belw": 3}}},
            "rule 't': unknown key 'belw' in value (did you mean 'below'?) (allowed: below)",
        ),
        ({"t": {"value": 12}}, "rule 't': value must be a mapping (key: value), not 12"),
        (
            {"t": {"unless": {"within": "1m"}}},
            "rule 't': this threshold rule has no 'unless' to override (it takes: value, during)",
        ),
        ({"t": {"when": "door.opened"}}, "rule 't': unknown key 'when' in the overrides (allowed: value, during)"),
        (
            {"t": {"where": {"room": "x"}}},
            "rule 't': unknown key 'where' in the overrides (allowed: value, during)",
        ),
        (
            {"m": {"cancel": {"within": 0}}},
            "rule 'm': cancel.within: duration 0 must be greater than zero",
        ),
        (
            {"m": {"cancel": {"by": "fall.cancelled"}}},
            "rule 'm': unknown key 'by' in cancel (allowed: within)",
        ),
        (
            {"m": {"count": {"n": 2}}},
            "rule 'm': this match rule has no 'count' to override (it takes: cancel, during)",
        ),
        (
            {"n": {"unless": {"within": "soon"}}},
            "rule 'n': unless.within: duration 'soon' is not a number followed by ms, s, m, h or d",
        ),
        ({"n": {"unless": {}}}, "rule 'n': unless is missing the key 'within'"),
        (
            {"n": {"unless": {"followed_by": "alarm.cancel", "within": "1m"}}},
            "rule 'n': unknown key 'followed_by' in unless (allowed: within)",
        ),
        ({"c": {"count": {"n": 0}}}, "rule 'c': a count of 0 never fires (n is from 1 to 16)"),
        (
            {"c": {"count": {"n": 17}}},
            "rule 'c': count n 17 is more than 16 (the engine keeps the times of at most 16 events per device or home)",
        ),
        ({"c": {"count": {"n": 2.0}}}, "rule 'c': count n must be a whole number from 1 to 16, not 2.0"),
        ({"c": {"count": {"within": "0s"}}}, "rule 'c': count.within: duration '0s' must be greater than zero"),
        ({"c": {"count": {}}}, "rule 'c': count names nothing to change (give n or within)"),
        ({"c": {"count": {"n": 2, "scope": "home"}}}, "rule 'c': unknown key 'scope' in count (allowed: n, within)"),
        (
            {"i": {"inactive": {"for": "8d"}}},
            "rule 'i': inactive for '8d' is longer than 7d (a home silent for a week is not inactivity)",
        ),
        ({"i": {"inactive": {"for": -1}}}, "rule 'i': duration -1 must be greater than zero"),
        (
            {"i": {"inactive": {"fr": "1h"}}},
            "rule 'i': unknown key 'fr' in inactive (did you mean 'for'?) (allowed: for)",
        ),
        (
            {"i": {"during": {"from": "07:00", "to": "07:00"}}},
            "rule 'i': a window from 07:00 to 07:00 is empty or the whole day; leave out `during` for the whole day",
        ),
        (
            {"i": {"during": {"from": 1320, "to": "07:00"}}},
            "rule 'i': during.from must be a time of day in quotes, like \"22:00\", not 1320 (YAML reads an unquoted "
            "22:00 as a number)",
        ),
        (
            {"i": {"during": {"from": "25:00", "to": "07:00"}}},
            "rule 'i': from '25:00' is not a time of day from 00:00 to 23:59 written as HH:MM",
        ),
        ({"i": {"during": {"from": "22:00"}}}, "rule 'i': during is missing the key 'to'"),
        (
            {"i": {"during": {"from": "22:00", "to": "07:00", "days": ["mon", "mon"]}}},
            "rule 'i': day 'mon' is listed twice in during.days",
        ),
        (
            {"i": {"during": {"from": "22:00", "to": "07:00", "days": ["mondag"]}}},
            "rule 'i': unknown day 'mondag' (did you mean 'mon'?) (days are mon, tue, wed, thu, fri, sat, sun)",
        ),
        (
            {"i": {"during": {"from": "22:00", "to": "07:00", "days": []}}},
            "rule 'i': during.days must be a non-empty list of days (leave out 'days' for every day)",
        ),
        (
            {"i": {"during": {"from": "22:00", "to": "07:00", "dayz": ["mon"]}}},
            "rule 'i': unknown key 'dayz' in during (did you mean 'days'?) (allowed: from, to, days)",
        ),
        (
            {"i": {"during": {"from": "07:00", "to": "08:00", "days": ["sat", "sun"]}}},
            "rule 'i': inactive for 4h is more than its window holds in a week (2h: 1h on 2 days); shorten 'for' or "
            "widen the window",
        ),
        (
            {"i": {"inactive": {"for": "7d"}, "during": {"from": "00:00", "to": "23:59"}}},
            "rule 'i': inactive for 7d is more than its window holds in a week (10073m: 1439m on 7 days); shorten "
            "'for' or widen the window",
        ),
        (
            {"s": {"during": {"from": "22:00", "to": "07:00"}}},
            "rule 's': supervision intervals are overridden per device kind under the home's 'supervision:'",
        ),
        (
            {"x": {"value": {"at_least": "x"}}},
            "rule 'x': at_least must be a finite number, not 'x'",
        ),
    ],
)
def test_override_errors_name_the_home_and_rule(overrides: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        apply_overrides(kinds_pack(), overrides, HOME)  # type: ignore[arg-type]
    assert str(caught.value) == f"{HOME}: {message}"


def test_overrides_from_yaml_safe_load() -> None:
    """The plain objects of `yaml.safe_load`, as the shell reads devices/homes.yaml."""
    home = yaml.safe_load(
        """
        rules:
          c: {count: {n: 2}}
          i: {during: {from: "09:00", to: "22:00"}, inactive: {for: 6h}}
          h: {value: {below: 12, clear_above: 18}}
        """
    )
    rules = overridden(home["rules"])
    assert (rules["h"].threshold, rules["h"].clear_threshold) == (12.0, 18.0)
    assert (rules["i"].during, rules["i"].inactive_ms, rules["c"].count_n) == (Window(9 * H, 22 * H), 6 * H, 2)
    unquoted = yaml.safe_load("rules: {i: {during: {from: 9:00, to: '22:00'}}}")
    with pytest.raises(ValueError, match=r"during.from must be a time of day in quotes, like \"22:00\", not 540"):
        overridden(unquoted["rules"])
    bad = yaml.safe_load("rules: {cold-home: {value: {below: 12, clear_above: 9}}}")
    with pytest.raises(ValueError, match=rf"^{HOME}: rule 'cold-home': clear_above 9 is below the threshold"):
        apply_overrides(load_rules(DEFAULT), bad["rules"], HOME)
