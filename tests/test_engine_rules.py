"""The rule-pack loader: the language, durations, families, and errors with their lines."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from responsecentre.contract import EVENT_TYPES
from responsecentre.engine import (
    Op,
    Priority,
    RuleError,
    RuleKind,
    load_rules,
    parse_duration,
    parse_rules,
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
    by_when = {(r.when, r.kind): r for r in rules.values()}

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
    assert pack.auto_clear == {"door_open", "cold_home", "low_battery", "device_offline"}
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
