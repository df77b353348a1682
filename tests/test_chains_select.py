"""chains.yaml: parsing (targets, notify modes, repeat, select), errors with file:line, and
the choice of chain by requested chain, priority, kind and local time, across midnight
and on the daylight-saving days of 2027 in Europe/Oslo."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from responsecentre.engine.rules import load_rules
from responsecentre.escalation.chains import (
    FALLBACK_CHAIN,
    ChainBook,
    ChainError,
    Channel,
    NotifyMode,
    Target,
    TargetKind,
    choose_chain,
    load_book,
    load_chains,
    parse_book,
    parse_chains,
)

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "escalation" / "chains.yaml"


def ms(iso: str) -> int:
    """An instant written with its offset, so the test says which wall clock it means."""
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


# -- parsing --------------------------------------------------------------------------------

FULL = """\
timezone: Europe/Oslo
incidents: {anything: [is, left, to, escalation.incidents]}
chains:
  night:
    repeat: {times: 2, from_step: 2}
    steps:
      - notify: round_robin
        targets: [console, {role: nurse, ack_within: 45s}, {staff: n-7}]
        channels: [console, mqtt, sms]
        ack_within: 60s
      - targets: [{relatives: true, ack_within: 5m}, {webhook: "https://hooks.example.org/rc"}]
        channels: [sms, email]
        ack_within: 10m
  day:
    repeat: 1
    steps:
      - {targets: [console, relatives], ack_within: 2m}
select:
  - {chain: urgent, priority: [critical, high], kind: fall, during: {from: "22:00", to: "07:00"}, use: night}
  - {chain: urgent, use: day}
"""


def test_every_kind_of_target_notify_mode_and_repeat_parses() -> None:
    book = parse_book(FULL, "chains.yaml")
    night = book.chains["night"]
    assert (night.repeat, night.repeat_from) == (2, 1)
    first, second = night.steps
    assert first.notify == NotifyMode.ROUND_ROBIN and first.ack_within_ms == 60_000
    assert first.targets == (
        Target(TargetKind.CONSOLE),
        Target(TargetKind.ROLE, "nurse", 45_000),
        Target(TargetKind.STAFF, "n-7"),
    )
    assert first.channels == (Channel.CONSOLE, Channel.HANDSET, Channel.SMS)  # "mqtt" is the handset
    assert second.notify == NotifyMode.ALL and second.channels == (Channel.SMS, Channel.EMAIL)
    assert second.targets == (
        Target(TargetKind.RELATIVES, "", 300_000),
        Target(TargetKind.WEBHOOK, "https://hooks.example.org/rc"),
    )
    assert not second.on_console and first.on_console
    day = book.chains["day"]
    assert (day.repeat, day.repeat_from, day.steps[0].channels) == (1, 0, ())  # no channels: all of a person's
    assert book.timezone == "Europe/Oslo" and [s.use for s in book.select] == ["night", "day"]
    assert book.select[0].line == 19


def test_the_dict_api_and_load_chains_give_the_same_chains(tmp_path: Path) -> None:
    path = tmp_path / "chains.yaml"
    path.write_text(FULL)
    assert load_chains(path) == load_book(path).chains == parse_book(FULL).chains
    old = {
        "chains": {"x": {"steps": [{"targets": ["console", {"role": "nurse"}], "channels": ["mqtt"], "ack_within": 9}]}}
    }
    assert parse_chains(old)["x"].steps[0].channels == (Channel.HANDSET,)


def _select(entry: str) -> str:
    return "chains:\n  x: {steps: [{ack_within: 1s}]}\nselect:\n  - " + entry + "\n"


def _step(body: str) -> str:
    return "chains:\n  x:\n    steps:\n      - " + body.replace("\n", "\n        ") + "\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            _step("targets: [console]\nack_within: 60s\nack_whitin: 5s"),
            r"c\.yaml:6: unknown key 'ack_whitin' in chain 'x' step 1 \(did you mean 'ack_within'\?\)",
        ),
        (_step("targets: [console]"), r"c\.yaml:4: chain 'x' step 1 is missing the key 'ack_within'"),
        (
            _step("targets: [{role: nures}]\nack_within: 60s"),
            r"c\.yaml:4: chain 'x' step 1: unknown role 'nures' \(did you mean 'nurse'\?\)",
        ),
        (_step("targets: [pager]\nack_within: 60s"), r"c\.yaml:4: chain 'x' step 1: unknown target 'pager'"),
        (
            _step("targets: [{role: nurse, staff: n1}]\nack_within: 60s"),
            r":4: chain 'x' step 1: unknown target: name exactly one",
        ),
        (
            _step("targets: [{webhook: hooks.example.org}]\nack_within: 60s"),
            r":4: chain 'x' step 1: webhook 'hooks.example.org' must be an http\(s\) URL",
        ),
        (_step("channels: [console, pager]\nack_within: 60s"), r":4: chain 'x' step 1: unknown channel 'pager'"),
        (_step("channels: [sms, sms]\nack_within: 60s"), r":4: chain 'x' step 1: channel 'sms' is listed twice"),
        (
            _step("notify: round-robin\nack_within: 60s"),
            r":4: chain 'x' step 1: unknown notify 'round-robin' \(did you mean 'round_robin'\?\)",
        ),
        (_step("ack_within: soon"), r":4: chain 'x' step 1 ack_within: duration 'soon'"),
        (_step("ack_within: 60s\ntargets: []"), r":5: chain 'x' step 1: targets must be a list with at least one"),
        (
            "chains:\n  x:\n    repeat: {times: 1, from_step: 3}\n    steps:\n      - {ack_within: 1s}\n",
            r":3: chain 'x' repeat: from_step must be a step number from 1 to 1",
        ),
        (
            "chains:\n  x:\n    repeat: -1\n    steps:\n      - {ack_within: 1s}\n",
            r":3: chain 'x' repeat must be a whole number >= 0",
        ),
        ("chains:\n  x:\n    steps: []\n", r":3: chain 'x' has no steps"),
        (
            _select("{use: y}"),
            r":4: select entry 1: use names no chain 'y'",
        ),
        (
            _select("{use: x, priority: urgent}"),
            r":4: select entry 1: unknown priority 'urgent'",
        ),
        (
            _select('{use: x, during: {from: "25:00", to: "07:00"}}'),
            r":4: .*'25:00' is not a time of day",
        ),
        (
            _select('{use: x, during: {from: "07:00", to: "07:00"}}'),
            r":4: select entry 1: a window from 07:00 to 07:00 is empty",
        ),
        (
            _select('{use: x, during: {from: "22:00", to: "07:00", days: [fri, funday]}}'),
            r":4: select entry 1: unknown day 'funday'",
        ),
        (
            _select("{use: x, when: night}"),
            r":4: unknown key 'when' in select entry 1",
        ),
        ("timezone: Europe/Olso\nchains:\n  x: {steps: [{ack_within: 1s}]}\n", r":1: unknown timezone 'Europe/Olso'"),
        ("chains:\n  x: {steps: [{ack_within: 1s}]}\n  x: {steps: [{ack_within: 2s}]}\n", r":3: duplicate chain 'x'"),
        (
            "chain:\n  x: {steps: [{ack_within: 1s}]}\n",
            r":1: unknown key 'chain' in the chains file \(did you mean 'chains'\?\)",
        ),
        ("chains: [x\n", r"c\.yaml:2: invalid YAML"),
        ("", r"c\.yaml:1: empty chains file"),
    ],
)
def test_errors_name_the_file_the_line_the_chain_and_the_step(text: str, message: str) -> None:
    with pytest.raises(ChainError, match=message):
        parse_book(text, "c.yaml")


def test_the_dict_api_still_names_the_chain_and_step() -> None:
    with pytest.raises(ValueError, match=r"chain 'x' step 2: unknown target 'pager'"):
        parse_chains({"chains": {"x": {"steps": [{"ack_within": 1}, {"targets": ["pager"], "ack_within": 5}]}}})


# -- choosing by time and priority ------------------------------------------------------------

NIGHT_DAY = """\
chains:
  urgent: {steps: [{ack_within: 60s}]}
  urgent-night: {steps: [{ack_within: 45s}]}
  weekend-night: {steps: [{ack_within: 30s}]}
  office: {steps: [{ack_within: 5m}]}
  fire: {steps: [{ack_within: 10s}]}
select:
  - {kind: fire, use: fire}
  - {chain: urgent, during: {from: "22:00", to: "07:00", days: [sat]}, use: weekend-night}
  - {chain: urgent, during: {from: "22:00", to: "07:00"}, use: urgent-night}
  - {chain: office, priority: critical, use: urgent}
"""


def chosen(
    at: str, requested: str = "urgent", priority: str = "high", kind: str = "fall", book: str = NIGHT_DAY
) -> str:
    return choose_chain(parse_book(book), requested, priority, kind, ms(at)).name


@pytest.mark.parametrize(
    ("at", "name"),
    [
        ("2027-06-02T21:59:59+02:00", "urgent"),  # Wednesday, summer time
        ("2027-06-02T22:00:00+02:00", "urgent-night"),
        ("2027-06-03T03:00:00+02:00", "urgent-night"),  # after midnight: Wednesday's window
        ("2027-06-03T06:59:59+02:00", "urgent-night"),
        ("2027-06-03T07:00:00+02:00", "urgent"),
        ("2027-01-13T22:30:00+01:00", "urgent-night"),  # winter time
        # `days` names the day a window starts on: Saturday night runs into Sunday morning.
        ("2027-06-05T23:00:00+02:00", "weekend-night"),  # Saturday
        ("2027-06-06T06:30:00+02:00", "weekend-night"),  # Sunday morning: Saturday's window
        ("2027-06-05T03:00:00+02:00", "urgent-night"),  # Saturday morning: Friday's window
        ("2027-06-06T23:00:00+02:00", "urgent-night"),  # Sunday night
    ],
)
def test_night_chains_across_midnight(at: str, name: str) -> None:
    assert chosen(at) == name


@pytest.mark.parametrize(
    ("at", "name"),
    [
        # 2027-03-28, Sunday: 02:00 CET becomes 03:00 CEST. With a fixed +01:00 the first
        # two would both be night (05:59, 06:00 "local"); the wall clock says otherwise.
        ("2027-03-28T06:59:59+02:00", "weekend-night"),  # Sunday morning: Saturday's window
        ("2027-03-28T07:00:00+02:00", "urgent"),
        ("2027-03-28T01:59:59+01:00", "weekend-night"),  # the last second before the gap (Saturday's window)
        ("2027-03-28T03:00:00+02:00", "weekend-night"),  # the first after it
        ("2027-03-28T21:59:59+02:00", "urgent"),
        ("2027-03-28T22:00:00+02:00", "urgent-night"),
        # 2027-10-31, Sunday: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
        ("2027-10-31T02:30:00+02:00", "weekend-night"),
        ("2027-10-31T02:30:00+01:00", "weekend-night"),
        ("2027-10-31T06:59:59+01:00", "weekend-night"),  # with a fixed +02:00 this would be 07:59, day
        ("2027-10-31T07:00:00+01:00", "urgent"),
        ("2027-10-31T21:59:59+01:00", "urgent"),
        ("2027-10-31T22:00:00+01:00", "urgent-night"),
    ],
)
def test_the_wall_clock_decides_on_the_daylight_saving_days(at: str, name: str) -> None:
    assert chosen(at) == name


def test_first_match_wins_and_priority_kind_and_requested_chain_filter() -> None:
    noon = "2027-06-02T12:00:00+02:00"
    night = "2027-06-02T23:00:00+02:00"
    assert chosen(night, kind="fire") == "fire"  # listed first, so before the night rule
    assert chosen(noon, requested="office", priority="high") == "office"  # no match: as requested
    assert chosen(noon, requested="office", priority="critical") == "urgent"  # the priority jump's target
    assert chosen(night, requested="office", priority="critical") == "urgent"  # `use` is not chosen again


def test_no_match_falls_back_to_the_requested_chain_then_the_fallback_chain() -> None:
    book = parse_book(NIGHT_DAY)
    assert choose_chain(book, "nowhere", "high", "fall", ms("2027-06-02T12:00:00+02:00")) == FALLBACK_CHAIN
    assert FALLBACK_CHAIN.steps[0].on_console


def test_the_timezone_is_a_parameter() -> None:
    at = ms("2027-06-02T07:30:00+02:00")  # 05:30 UTC
    book = parse_book(NIGHT_DAY)
    assert choose_chain(book, "urgent", "high", "fall", at).name == "urgent"
    assert choose_chain(book, "urgent", "high", "fall", at, tz="UTC").name == "urgent-night"
    utc_book = parse_book("timezone: UTC\n" + NIGHT_DAY)
    assert choose_chain(utc_book, "urgent", "high", "fall", at).name == "urgent-night"


# -- the shipped file -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> ChainBook:
    return load_book(SHIPPED)


def test_the_shipped_chains_keep_the_names_the_rules_ask_for(shipped: ChainBook) -> None:
    asked = {rule.chain for rule in load_rules(ROOT / "rules" / "default.yaml").rules}
    assert asked <= set(shipped.chains) and {"urgent", "standard", "technical"} <= asked


def test_the_shipped_night_chain_differs_from_the_day_chain(shipped: ChainBook) -> None:
    day = choose_chain(shipped, "urgent", "critical", "fall", ms("2027-06-02T12:00:00+02:00"))
    night = choose_chain(shipped, "urgent", "critical", "fall", ms("2027-06-02T23:00:00+02:00"))
    assert (day.name, night.name) == ("urgent-day", "urgent-night") and day.steps != night.steps
    assert shipped.chains["urgent"].steps == day.steps  # what the rules name is the day chain as written


def test_the_shipped_chains_use_round_robin_and_relatives_and_a_standard_alarm_can_jump(shipped: ChainBook) -> None:
    steps = [s for c in shipped.chains.values() for s in c.steps]
    assert any(s.notify == NotifyMode.ROUND_ROBIN for s in steps)
    assert any(t.kind == TargetKind.RELATIVES for s in steps for t in s.targets)
    noon = ms("2027-06-02T12:00:00+02:00")
    assert choose_chain(shipped, "standard", "high", "water_leak", noon).name == "standard"
    assert choose_chain(shipped, "standard", "critical", "water_leak", noon).name == "urgent-day"
    assert choose_chain(shipped, "technical", "critical", "tamper", noon).name == "technical"
