"""Per-home time zones and rule overrides in devices/homes.yaml, and `rules explain --home`.

The directory keeps a home's `timezone` (its own, else its tenant's, else Europe/Oslo) and
its `rules:` overrides raw; the pack judges the overrides where the service builds the
engine's per-home parameters, so a mistake there names the home. `rules explain` prints
what is in force for one home, every difference from the pack marked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from responsecentre.cli import main
from responsecentre.config import Settings
from responsecentre.directory import build_directory, load_directory, parse_catalog
from responsecentre.engine import parse_rules
from responsecentre.rules_admin import PackRefused, prepare_pack, prepare_text
from responsecentre.rules_explain import duration, explain_home

PACK = """
version: 1
alarms:
  cold_home: {auto_clear: true}
  device_offline: {auto_clear: true}
rules:
  - name: assistance-button
    when: alarm.button
    cancel: {by: alarm.cancel, within: 2m}
    raise: {kind: assistance, priority: critical, chain: urgent}
  - name: repeated-presses
    when: alarm.button
    count: {n: 3, within: 2m}
    raise: {kind: assistance, priority: critical, chain: urgent}
  - name: fall-not-cancelled
    when: fall.detected
    unless: {followed_by: fall.cancelled, within: 60s}
    raise: {kind: fall, priority: critical, chain: urgent}
  - name: night-doors
    when: door.opened
    count: {n: 4, within: 1h}
    scope: home
    during: {from: "23:00", to: "06:00"}
    raise: {kind: wandering, priority: high, chain: urgent}
  - name: no-movement-daytime
    when: [motion.detected, door.*]
    inactive: {for: 4h}
    during: {from: "07:00", to: "22:00", days: [mon, tue, wed, thu, fri]}
    raise: {kind: inactivity, priority: high, chain: urgent}
  - name: bathroom-at-night
    when: motion.detected
    where: {room: {in: [bathroom, toilet]}}
    during: {from: "01:00", to: "05:00"}
    raise: {kind: night_bathroom, priority: medium, chain: urgent}
  - name: cold-home
    when: temperature
    value: {below: 10, clear_above: 16}
    raise: {kind: cold_home, priority: high, chain: urgent}
  - name: device-offline
    supervise: {grace: 2}
    raise: {kind: device_offline, priority: medium, chain: urgent}
"""

CATALOG = {
    "kinds": {
        "safety_alarm": {"events": ["alarm.button"], "heartbeat_every": "5m"},
        "door_sensor": {"events": ["door.opened"], "heartbeat_every": "5m", "supervision": "1h"},
        "motion_sensor": {"events": ["motion.detected"]},
    }
}


def homes(**h2: Any) -> dict[str, Any]:
    """Tenant `vestby` (New York time, to tell a tenant's zone from the default) with h1,
    which keeps the pack, and h2, which takes `h2`'s keys."""
    devices = [
        {"id": "h2-btn", "kind": "safety_alarm"},
        {"id": "h2-door", "kind": "door_sensor"},
        {"id": "h2-pir", "kind": "motion_sensor"},
        {"id": "h2-odd", "kind": "gadget"},
    ]
    return {
        "tenants": {
            "vestby": {
                "timezone": "America/New_York",
                "homes": [
                    {"id": "h1", "zone": "north", "devices": [{"id": "h1-btn", "kind": "safety_alarm"}]},
                    {"id": "h2", "zone": "south", "devices": devices, **h2},
                ],
            },
            "other": {"homes": [{"id": "h9", "devices": []}]},
        }
    }


def settings(tmp_path: Path) -> Settings:
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(CATALOG))
    return Settings(homes_path=tmp_path / "homes.yaml", rules_path=tmp_path / "rules.yaml")


CHAINS: dict[str, Any] = {"urgent": object()}


# -- the directory ----------------------------------------------------------------------------


def test_a_homes_time_zone_beats_its_tenants_which_beats_the_default() -> None:
    directory = build_directory(homes(timezone="Asia/Tokyo"))
    assert directory.home("vestby", "h1").timezone == "America/New_York"  # type: ignore[union-attr]
    assert directory.home("vestby", "h2").timezone == "Asia/Tokyo"  # type: ignore[union-attr]
    assert directory.home("other", "h9").timezone == "Europe/Oslo"  # type: ignore[union-attr]
    assert [zone for zone, _ in directory.home_settings()] == ["America/New_York", "Asia/Tokyo", "Europe/Oslo"]


@pytest.mark.parametrize(
    ("h2", "message"),
    [
        ({"timezone": "Europe/Olso"}, "home vestby/h2: timezone: unknown time zone 'Europe/Olso'"),
        ({"timezone": 5}, "home vestby/h2: timezone: a time zone name such as 'Europe/Oslo', not 5"),
        ({"rules": ["cold-home"]}, "home vestby/h2: rules must map rule names to overrides"),
        ({"rules": {"cold-home": 12}}, "home vestby/h2: rules.cold-home must be a mapping of overrides, not 12"),
    ],
)
def test_a_bad_time_zone_or_rules_shape_is_refused_at_load(h2: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        build_directory(homes(**h2))
    assert str(caught.value).startswith(message), caught.value


def test_a_tenants_unknown_time_zone_is_refused_too() -> None:
    doc = homes()
    doc["tenants"]["vestby"]["timezone"] = "Mars/Olympus"
    with pytest.raises(ValueError, match=r"^tenant vestby: timezone: unknown time zone 'Mars/Olympus'"):
        build_directory(doc)


def test_overrides_are_kept_raw_and_an_unquoted_time_of_day_stays_text(tmp_path: Path) -> None:
    path = tmp_path / "homes.yaml"
    text = yaml.safe_dump(homes(rules={"cold-home": {"value": {"below": 12}}}))
    # Written by hand, unquoted: YAML 1.1 would read 09:00 as the number 540.
    path.write_text(text.replace("zone: south", "zone: south\n      timezone: Europe/Oslo"))
    doc = path.read_text().replace(
        "cold-home:", "night-doors:\n          during: {from: 22:30, to: 06:00}\n        cold-home:"
    )
    path.write_text(doc)
    directory = load_directory(path, None)
    h2 = directory.home("vestby", "h2")
    assert h2 is not None and h2.timezone == "Europe/Oslo"
    assert h2.rule_overrides() == {
        "night-doors": {"during": {"from": "22:30", "to": "06:00"}},
        "cold-home": {"value": {"below": 12}},
    }
    assert directory.source == str(path)
    assert directory.home_wheres()[h2.index] == f"{path}: home vestby/h2"


# -- overrides judged against the pack ------------------------------------------------------


def test_an_override_the_pack_refuses_names_the_home_and_the_rule(tmp_path: Path) -> None:
    directory = build_directory(homes(rules={"cold-hom": {"value": {"below": 12}}}))
    directory.source = "devices/homes.yaml"
    with pytest.raises(PackRefused) as caught:
        prepare_text(PACK, "rules/x.yaml", directory, CHAINS, settings(tmp_path))  # type: ignore[arg-type]
    (error,) = caught.value.errors
    assert error.startswith("devices/homes.yaml: home vestby/h2: rule 'cold-hom'"), error
    assert "cold-home" in error  # the suggestion


def test_a_broken_pack_and_a_missing_chain_are_refused_with_file_and_line(tmp_path: Path) -> None:
    directory = build_directory(homes())
    broken = PACK.replace("count: {n: 3, within: 2m}", "count: {n: 0, within: 2m}")
    with pytest.raises(PackRefused) as caught:
        prepare_text(broken, "rules/x.yaml", directory, CHAINS, settings(tmp_path))  # type: ignore[arg-type]
    (error,) = caught.value.errors
    line = 1 + PACK.splitlines().index("    count: {n: 3, within: 2m}")
    assert error.startswith(f"rules/x.yaml:{line}: a count of 0"), error
    with pytest.raises(PackRefused) as caught:
        prepare_text(PACK, "rules/x.yaml", directory, {}, settings(tmp_path))
    assert caught.value.errors == ("rules name chains that escalation/chains.yaml does not define: urgent",)


def test_a_good_pack_is_prepared_with_its_homes_supervision_and_conditions(tmp_path: Path) -> None:
    directory = build_directory(homes(rules={"cold-home": {"value": {"below": 12}}}))
    prepared = prepare_text(PACK, "rules/x.yaml", directory, CHAINS, settings(tmp_path))  # type: ignore[arg-type]
    assert len(prepared.sha256) == 64 and prepared.source == "rules/x.yaml"
    assert prepared.homes.n_homes == 3 and len(prepared.homes.profiles) == 2
    assert prepared.homes.zone_of(0) == "America/New_York"
    assert prepared.supervision_ms is not None
    assert prepared.supervision_ms.tolist() == [600_000, 600_000, 3_600_000, 0, 0]
    assert "motion.detected" in prepared.conditions.types
    again = prepare_pack(prepared.pack, directory, CHAINS, settings(tmp_path))  # type: ignore[arg-type]
    assert again.sha256 == prepared.sha256  # the pack remembers its file's hash


# -- rules explain ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ms", "text"), [(500, "500ms"), (60_000, "1m"), (90 * 60_000, "90m"), (7_200_000, "2h"), (86_400_000, "1d")]
)
def test_durations_are_written_as_the_language_reads_them(ms: int, text: str) -> None:
    assert duration(ms) == text


def explain(h2: dict[str, Any], home: str = "h2") -> list[str]:
    pack = parse_rules(PACK, source="rules/x.yaml")
    directory = build_directory(homes(**h2))
    return explain_home(pack, directory, "vestby", home, parse_catalog(CATALOG))


def test_explain_marks_every_override_and_says_where_each_interval_comes_from() -> None:
    overrides = {
        "night-doors": {"count": {"n": 3}, "during": {"from": "22:00", "to": "06:00", "days": ["fri", "sat"]}},
        "no-movement-daytime": {"inactive": {"for": "6h"}},
        "cold-home": {"value": {"below": 12, "clear_above": 18}},
        "assistance-button": {"cancel": {"within": "5m"}},
        "bathroom-at-night": {"during": {"from": "00:00", "to": "06:00"}},
    }
    lines = explain({"timezone": "Europe/Oslo", "rules": overrides, "supervision": {"safety_alarm": "30m"}})
    digest = parse_rules(PACK, source="rules/x.yaml").sha256[:12]
    assert lines == [
        "home vestby/h2 (zone south), time zone Europe/Oslo",
        f"rules: rules/x.yaml, sha256 {digest}; 8 rules, 5 overridden for this home",
        "",
        "assistance-button: match rule, raises assistance (critical, chain urgent)",
        "  on: alarm.button",
        "  cancel: by alarm.cancel from the same device within 5m"
        " (home override; pack: by alarm.cancel from the same device within 2m)",
        "repeated-presses: count rule, raises assistance (critical, chain urgent)",
        "  on: alarm.button",
        "  count: 3 within 2m, per device",
        "fall-not-cancelled: not-followed-by rule, raises fall (critical, chain urgent)",
        "  on: fall.detected",
        "  unless: followed by fall.cancelled within 1m from the same device",
        "night-doors: count rule, raises wandering (high, chain urgent)",
        "  on: door.opened",
        "  count: 3 within 1h, per home (home override; pack: 4 within 1h, per home)",
        "  during: 22:00-06:00 (across midnight) on fri, sat"
        " (home override; pack: 23:00-06:00 (across midnight) every day)",
        "no-movement-daytime: inactivity rule, raises inactivity (high, chain urgent)",
        "  on: activity: motion.detected, door.opened, door.closed",
        "  inactive: none in the home for 6h of window time"
        " (home override; pack: none in the home for 4h of window time)",
        "  during: 07:00-22:00 on mon, tue, wed, thu, fri",
        "bathroom-at-night: match rule, raises night_bathroom (medium, chain urgent)",
        "  on: motion.detected",
        "  during: 00:00-06:00 every day (home override; pack: 01:00-05:00 every day)",
        "  where: room is one of [bathroom, toilet]",
        "cold-home: hysteresis rule, raises cold_home (high, chain urgent)",
        "  on: temperature",
        "  value: below 12; clears once above 18 (home override; pack: below 10; clears once above 16)",
        "device-offline: supervision rule, raises device_offline (medium, chain urgent)",
        "  on: every event of every device; silent past its interval (below), or offline, raises",
        "",
        "supervision (the pack's grace: 2):",
        "  h2-btn           safety_alarm            30m  home",
        "  h2-door          door_sensor              1h  catalogue",
        "  h2-pir           motion_sensor             -  not supervised (the kind has no heartbeat)",
        "  h2-odd           gadget                    -  not supervised (the catalogue lacks the kind)",
    ]


def test_explain_of_a_home_without_overrides_has_no_marks_and_a_window_added_by_a_home_shows() -> None:
    lines = explain({"rules": {"fall-not-cancelled": {"during": {"from": "22:00", "to": "07:00"}}}})
    assert lines[0] == "home vestby/h2 (zone south), time zone America/New_York"
    assert "  during: 22:00-07:00 (across midnight) every day (home override; pack: all day)" in lines
    plain = explain({}, home="h1")
    assert plain[1].endswith("8 rules, 0 overridden for this home")
    assert not any("home override" in line for line in plain)
    assert plain[-1] == "  h1-btn           safety_alarm            10m  grace: heartbeat every 5m x 2"


def test_the_cli_prints_the_explanation_and_refuses_an_unknown_home(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "rules.yaml").write_text(PACK)
    (tmp_path / "homes.yaml").write_text(yaml.safe_dump(homes(rules={"cold-home": {"value": {"below": 12}}})))
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(CATALOG))
    files = ["--rules", str(tmp_path / "rules.yaml"), "--homes", str(tmp_path / "homes.yaml")]
    assert main(["rules", "explain", "--home", "vestby/h2", *files]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "home vestby/h2 (zone south), time zone America/New_York"
    assert "  value: below 12; clears once above 16 (home override; pack: below 10; clears once above 16)" in out
    assert "  h2-door          door_sensor              1h  catalogue" in out
    assert main(["rules", "explain", "--home", "vestby/h7", *files]) == 1
    assert "error: no home 'h7' in tenant 'vestby' (homes: h1, h2)" in capsys.readouterr().err
    (tmp_path / "homes.yaml").write_text(yaml.safe_dump(homes(rules={"cold-home": {"value": {"above": 12}}})))
    assert main(["rules", "explain", "--home", "vestby/h2", *files]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'homes.yaml'}: home vestby/h2: rule 'cold-home': "), err
