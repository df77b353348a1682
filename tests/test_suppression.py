"""The pure suppression index and its YAML: each scope, the time bounds, the exempt kinds,
overlapping silences, and the API's records replacing the YAML's (no Redis, no clock)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from responsecentre.directory import build_directory
from responsecentre.suppression import (
    DAY_MS,
    KEEP_ENDED_MS,
    HomeStatus,
    Maintenance,
    Silence,
    SuppressionConfig,
    Suppressions,
    to_ms,
)

T = "vestby"
T0 = 1_795_000_000_000


def silence(scope: str, target: str, start: int, end: int, tenant: str = T, sid: str = "s") -> Silence:
    return Silence(sid, tenant, scope, target, start, end)


def test_an_empty_index_holds_nothing_back() -> None:
    index = Suppressions()
    assert index.empty
    assert index.reason(T, "h1", "h1-door", "door_open", T0) is None


@pytest.mark.parametrize(
    ("scope", "target", "home", "device", "kind", "held"),
    [
        ("tenant", "", "h1", "h1-door", "door_open", True),
        ("tenant", "", "h9", None, "inactivity", True),  # a home-scoped deadline has no device
        ("home", "h1", "h1", "h1-door", "door_open", True),
        ("home", "h1", "h2", "h2-door", "door_open", False),
        ("device", "h1-door", "h1", "h1-door", "door_open", True),
        ("device", "h1-door", "h1", "h1-btn", "assistance", False),
        ("kind", "door_open", "h2", "h2-door", "door_open", True),
        ("kind", "door_open", "h2", "h2-btn", "assistance", False),
    ],
)
def test_each_scope_holds_back_what_it_names(
    scope: str, target: str, home: str, device: str | None, kind: str, held: bool
) -> None:
    index = Suppressions([silence(scope, target, T0, T0 + 60_000)])
    assert index.reason(T, home, device, kind, T0 + 1) == ("silence" if held else None)
    assert index.reason("other", home, device, kind, T0 + 1) is None, "another tenant is never touched"


def test_a_silence_covers_its_start_but_not_its_end() -> None:
    index = Suppressions([silence("home", "h1", T0, T0 + 1000)])
    assert index.reason(T, "h1", None, "x", T0 - 1) is None
    assert index.reason(T, "h1", None, "x", T0) == "silence"
    assert index.reason(T, "h1", None, "x", T0 + 999) == "silence"
    assert index.reason(T, "h1", None, "x", T0 + 1000) is None


def test_overlapping_silences_hold_until_the_last_one_ends() -> None:
    index = Suppressions(
        [silence("home", "h1", T0, T0 + 1000, sid="a"), silence("home", "h1", T0 + 500, T0 + 3000, sid="b")]
    )
    assert [index.reason(T, "h1", None, "x", t) for t in (T0 + 200, T0 + 1500, T0 + 2999, T0 + 3000)] == [
        "silence",
        "silence",
        "silence",
        None,
    ]


def test_home_status_away_and_in_hospital_with_until() -> None:
    index = Suppressions(
        statuses=[HomeStatus(T, "h1", "away", T0, None), HomeStatus(T, "h2", "in_hospital", T0, T0 + 1000)]
    )
    assert index.reason(T, "h1", "h1-door", "door_open", T0 - 1) is None, "not before it was set"
    assert index.reason(T, "h1", "h1-door", "door_open", T0 + 10 * DAY_MS) == "away"
    assert index.reason(T, "h2", "h2-btn", "assistance", T0 + 999) == "in_hospital"
    assert index.reason(T, "h2", "h2-btn", "assistance", T0 + 1000) is None, "until ends it by itself"


def test_fire_and_water_leak_bypass_the_home_but_not_the_device_or_the_kind() -> None:
    index = Suppressions(
        [silence("tenant", "", T0, T0 + 1000, sid="t"), silence("home", "h2", T0, T0 + 1000, sid="h")],
        statuses=[HomeStatus(T, "h1", "away", T0, None)],
    )
    for home in ("h1", "h2", "h3"):
        assert index.reason(T, home, f"{home}-smoke", "fire", T0 + 1) is None
        assert index.reason(T, home, f"{home}-leak", "water_leak", T0 + 1) is None
        assert index.reason(T, home, f"{home}-door", "door_open", T0 + 1) is not None
    # Named on purpose: the device in maintenance, its own silence, a silence of the kind.
    index = Suppressions(
        [silence("device", "h1-smoke", T0, T0 + 1000, sid="d"), silence("kind", "water_leak", T0, T0 + 1000, sid="k")],
        maintenance=[Maintenance(T, "h2-smoke", T0, None)],
    )
    assert index.reason(T, "h1", "h1-smoke", "fire", T0 + 1) == "silence"
    assert index.reason(T, "h2", "h2-smoke", "fire", T0 + 1) == "maintenance"
    assert index.reason(T, "h3", "h3-leak", "water_leak", T0 + 1) == "silence"
    assert index.reason(T, "h3", "h3-smoke", "fire", T0 + 1) is None


def test_the_exempt_kinds_are_per_tenant() -> None:
    index = Suppressions(statuses=[HomeStatus(T, "h1", "away", T0, None)], exempt_kinds={T: frozenset({"gas"})})
    assert index.reason(T, "h1", "h1-gas", "gas", T0) is None
    assert index.reason(T, "h1", "h1-smoke", "fire", T0) == "away", "the tenant replaced the default list"


def test_an_event_without_a_kind_is_held_by_its_home_and_device() -> None:
    index = Suppressions(statuses=[HomeStatus(T, "h1", "away", T0, None)], maintenance=[Maintenance(T, "h2-btn", T0)])
    assert index.reason(T, "h1", "h1-smoke", None, T0) == "away"
    assert index.reason(T, "h2", "h2-btn", None, T0) == "maintenance"
    assert index.reason(T, "h2", "h2-door", None, T0) is None


def test_maintenance_wins_over_the_home_status() -> None:
    index = Suppressions(statuses=[HomeStatus(T, "h1", "away", T0)], maintenance=[Maintenance(T, "h1-btn", T0)])
    assert index.reason(T, "h1", "h1-btn", "assistance", T0) == "maintenance"
    assert index.reason(T, "h1", "h1-door", "door_open", T0) == "away"


def test_an_ended_interval_still_answers_for_its_past() -> None:
    """Nothing stale fires: a deadline armed while away is recognised after the return."""
    index = Suppressions(statuses=[HomeStatus(T, "h1", "away", T0, T0 + 1000)])
    assert index.reason(T, "h1", None, "no_motion", T0 + 500) == "away"
    assert index.reason(T, "h1", None, "no_motion", T0 + 5000) is None


def test_long_ended_records_are_dropped_when_built_with_now() -> None:
    old = silence("home", "h1", T0, T0 + 1000)
    assert Suppressions([old], now_ms=T0 + 1000 + KEEP_ENDED_MS - 1).silences == (old,)
    assert Suppressions([old], now_ms=T0 + 1000 + KEEP_ENDED_MS).empty


def homes(**extra: Any) -> dict[str, Any]:
    home = {"id": "h1", "zone": "north", "devices": [{"id": "h1-btn", "kind": "safety_alarm"}]}
    return {"tenants": {T: {"homes": [{**home, **extra.pop("home", {})}], **extra}}}


def test_yaml_status_maintenance_silences_and_exempt_kinds() -> None:
    doc = homes(
        home={
            "status": "in_hospital",
            "status_until": "2026-12-01T12:00:00+01:00",
            "devices": [{"id": "h1-btn", "kind": "safety_alarm", "maintenance": True}],
        },
        silences=[
            {"scope": "kind", "target": "door_open", "from": "2026-12-01T08:00:00Z", "to": "2026-12-01T09:00:00Z"}
        ],
        suppression_exempt_kinds=["fire"],
    )
    config = build_directory(doc).suppression
    index = config.merged()
    until = to_ms("2026-12-01T11:00:00Z", "x")
    assert index.reason(T, "h1", None, "door_open", until - 1) == "in_hospital"
    assert index.reason(T, "h1", None, "door_open", until) is None
    assert index.reason(T, "h1", "h1-btn", "assistance", until + DAY_MS) == "maintenance"
    assert index.reason(T, "h2", None, "door_open", to_ms("2026-12-01T08:30:00Z", "x")) == "silence"
    assert config.exempt_kinds == {T: frozenset({"fire"})}
    assert config.silences[0].id == f"yaml-{T}-1" and config.silences[0].source == "yaml"


def test_yaml_parsed_timestamps_work_too() -> None:
    """YAML turns an unquoted ISO time into a datetime; both spellings mean the same."""

    item = yaml.safe_load("{scope: tenant, from: 2026-12-01T08:00:00Z, to: '2026-12-01T10:00:00+01:00'}")
    config = SuppressionConfig()
    config.add_tenant(T, {"silences": [item]}, set(), set())
    assert config.silences[0].start_ms == to_ms("2026-12-01T08:00:00Z", "x")
    assert config.silences[0].end_ms - config.silences[0].start_ms == 3600_000


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (homes(home={"status": "gone"}), "status 'gone' is not one of normal, away, in_hospital"),
        (homes(home={"status": "away", "status_until": "2026-12-01T12:00:00"}), "has no UTC offset"),
        (homes(silences=[{"scope": "home", "target": "h9", "from": 0, "to": 1}]), "no home 'h9'"),
        (homes(silences=[{"scope": "device", "target": "x", "from": 0, "to": 1}]), "no device 'x'"),
        (homes(silences=[{"scope": "street", "from": 0, "to": 1}]), "scope 'street' is not one of"),
        (homes(silences=[{"scope": "tenant", "from": 5, "to": 5}]), "'to' must be after 'from'"),
        (homes(silences=[{"scope": "tenant", "from": 5, "untill": 9}]), "unknown keys untill"),
        (homes(silences=[{"scope": "kind", "from": 0, "to": 1}]), "a kind silence needs a target"),
    ],
)
def test_yaml_mistakes_stop_the_load(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        build_directory(doc)


def test_api_records_replace_the_yamls() -> None:
    doc = homes(home={"status": "away", "devices": [{"id": "h1-btn", "kind": "safety_alarm", "maintenance": True}]})
    config = build_directory(doc).suppression
    assert config.merged().reason(T, "h1", "h1-btn", "assistance", T0) == "maintenance"
    back = config.merged(statuses=[HomeStatus(T, "h1", "away", 0, T0)], maintenance=[Maintenance(T, "h1-btn", 0, T0)])
    assert back.reason(T, "h1", "h1-btn", "assistance", T0) is None
    assert back.reason(T, "h1", "h1-btn", "assistance", T0 - 1) == "maintenance"
