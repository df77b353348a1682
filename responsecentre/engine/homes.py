"""What the engine needs to know per home: its time zone and its rule overrides.

A home may override a rule's numbers and window (devices/homes.yaml, `rules.apply_overrides`)
and lives in a time zone (`during` windows are read on its wall clock). The kernels cannot
look at Python objects, so each home gets two small integers: `timezone`, an index into
the zone tables of `localtime.TimeZones`, and `profile`, an index into `profiles`, the
distinct rule tuples in force. Homes with the same overrides share a profile, so 40,000
homes with a handful of local variations compile to a handful of rows of parameters.
Profile 0 is always the pack as written.

`rule_keys` is the identity of each rule's state across reloads and restarts: the rule's
name and its meaning in every home (its meaning in the pack, plus a digest of the homes
where it means something else, including the time zone of a rule with a window). Both
engines and the snapshot format use it. The module is pure: no clock, no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from responsecentre.engine.localtime import DEFAULT_TIMEZONE, TimeZones, build_timezones, check_timezone
from responsecentre.engine.rules import Rule, RulePack, apply_overrides

__all__ = [
    "HomeParams",
    "check_home_params",
    "default_home_params",
    "extend_home_params",
    "home_params",
    "rule_keys",
]

# What a per-home override may change; everything else of a rule is the same in every
# profile (the kernels read it from one per-rule column).
_STRUCTURE = ("name", "kind", "when", "unless", "cancel_by", "op", "clear_op", "scope", "action", "where")


@dataclass(frozen=True, eq=False)
class HomeParams:
    """Per home index: `timezone` (int16, into `zones`) and `profile` (int32, into
    `profiles`); `profiles[0]` is the pack's own rules, each profile a full rule tuple."""

    timezone: np.ndarray
    profile: np.ndarray
    zones: TimeZones
    profiles: tuple[tuple[Rule, ...], ...]

    @property
    def n_homes(self) -> int:
        return int(self.profile.shape[0])

    def zone_of(self, home: int) -> str:
        """The IANA name of a home's time zone."""
        return self.zones.names[int(self.timezone[home])]

    def rules_of(self, home: int) -> tuple[Rule, ...]:
        """The rules in force for a home (its overrides applied)."""
        return self.profiles[int(self.profile[home])]


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def home_params(
    pack: RulePack, homes: Sequence[tuple[str, Mapping[str, Any] | None]], where: Sequence[str] | None = None
) -> HomeParams:
    """(time zone name, raw overrides) per home index -> HomeParams.

    Equal override sets share a profile (and an override that changes nothing is profile
    0). ValueError names the home (`where[i]`, e.g. "devices/homes.yaml: home vestby/h01").
    """
    if where is not None and len(where) != len(homes):
        raise ValueError(f"home_params: {len(where)} names for {len(homes)} homes")
    profiles: list[tuple[Rule, ...]] = [pack.rules]
    by_rules: dict[tuple[Rule, ...], int] = {pack.rules: 0}
    by_text: dict[str, int] = {}
    zone_names: dict[str, int] = {}
    profile = np.zeros(len(homes), np.int32)
    zone_of = np.zeros(len(homes), np.int64)
    for i, (zone, overrides) in enumerate(homes):
        name = where[i] if where is not None else f"home {i}"
        if zone not in zone_names:
            try:
                check_timezone(zone)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
            zone_names[zone] = len(zone_names)
        zone_of[i] = zone_names[zone]
        if not overrides:
            continue
        # Most homes that override share a few override sets: apply each set once.
        text = _canonical(overrides)
        if text is None or text not in by_text:
            rules = apply_overrides(pack, overrides, name)
            index = by_rules.setdefault(rules, len(profiles))
            if index == len(profiles):
                profiles.append(rules)
            if text is not None:
                by_text[text] = index
        else:
            index = by_text[text]
        profile[i] = index
    if len(zone_names) > np.iinfo(np.int16).max:
        raise ValueError("more time zones than the engine indexes (int16)")
    zones = build_timezones(zone_names) if zone_names else build_timezones([DEFAULT_TIMEZONE])
    return HomeParams(
        timezone=_readonly(zone_of.astype(np.int16)),
        profile=_readonly(profile),
        zones=zones,
        profiles=tuple(profiles),
    )


def _canonical(overrides: Mapping[str, Any]) -> str | None:
    """A text equal for equal override sets (None if it has no JSON form: no sharing)."""
    try:
        return json.dumps(overrides, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None


def default_home_params(pack: RulePack, n_homes: int) -> HomeParams:
    """Every home in Europe/Oslo with the pack as written."""
    return HomeParams(
        timezone=_readonly(np.zeros(n_homes, np.int16)),
        profile=_readonly(np.zeros(n_homes, np.int32)),
        zones=build_timezones([DEFAULT_TIMEZONE]),
        profiles=(pack.rules,),
    )


def extend_home_params(homes: HomeParams, n_homes: int) -> HomeParams:
    """`homes` with default homes (Europe/Oslo, profile 0) appended up to `n_homes`."""
    extra = n_homes - homes.n_homes
    if extra <= 0:
        return homes
    zones = homes.zones
    if DEFAULT_TIMEZONE not in zones.names:
        zones = build_timezones([*zones.names, DEFAULT_TIMEZONE])
    default = zones.index(DEFAULT_TIMEZONE)
    return HomeParams(
        timezone=_readonly(np.concatenate([homes.timezone, np.full(extra, default, np.int16)])),
        profile=_readonly(np.concatenate([homes.profile, np.zeros(extra, np.int32)])),
        zones=zones,
        profiles=homes.profiles,
    )


def check_home_params(homes: HomeParams, pack: RulePack, n_homes: int) -> HomeParams:
    """Validate `homes` for an engine of `pack` with at least `n_homes` homes (the kernels
    index with these arrays unchecked); returns it with read-only arrays of the right types."""
    if not isinstance(homes, HomeParams):
        raise TypeError(f"homes must be a HomeParams, not {type(homes).__name__}")
    if not homes.profiles or homes.profiles[0] != pack.rules:
        raise ValueError("homes.profiles[0] must be the pack's own rules (HomeParams of another pack?)")
    for profile in homes.profiles[1:]:
        if len(profile) != len(pack.rules):
            raise ValueError("every profile of homes must hold one rule per rule of the pack")
        for mine, theirs in zip(pack.rules, profile, strict=True):
            if any(getattr(mine, name) != getattr(theirs, name) for name in _STRUCTURE):
                raise ValueError(f"a profile changes more of rule {mine.name!r} than its numbers and window")
    timezone, profile = homes.timezone, homes.profile
    for name, array in (("timezone", timezone), ("profile", profile)):
        if not isinstance(array, np.ndarray) or array.ndim != 1 or array.dtype.kind not in "iu":
            raise TypeError(f"homes.{name} must be a 1-D numpy integer array")
    if timezone.shape[0] != profile.shape[0]:
        raise ValueError("homes.timezone and homes.profile differ in length")
    if profile.shape[0] < n_homes:
        raise ValueError(f"homes covers {profile.shape[0]} homes; the engine has {n_homes}")
    if profile.shape[0]:
        if profile.min() < 0 or profile.max() >= len(homes.profiles):
            raise ValueError("homes.profile holds an index outside its profiles")
        if timezone.min() < 0 or timezone.max() >= len(homes.zones.names):
            raise ValueError("homes.timezone holds an index outside its zones")
    if timezone.dtype != np.int16 or profile.dtype != np.int32 or timezone.flags.writeable or profile.flags.writeable:
        homes = HomeParams(
            timezone=_readonly(np.array(timezone, np.int16)),
            profile=_readonly(np.array(profile, np.int32)),
            zones=homes.zones,
            profiles=homes.profiles,
        )
    return homes


def _home_meaning(rule: Rule, zone: str) -> str:
    """A rule's meaning in one home: a window is read on the home's clock, so its zone counts."""
    return rule.meaning + (f"@{zone}" if rule.during is not None else "")


def rule_keys(pack: RulePack, homes: HomeParams) -> tuple[tuple[str, str], ...]:
    """(name, meaning in every home) per rule: the identity of the rule's engine state.

    The meaning is the rule's own (`Rule.meaning`) when it means the same in every home
    (with a window: in Europe/Oslo, the default). Otherwise the homes where it differs,
    with what it means there, are folded into a digest after a '+'. Homes that use the
    pack as written do not enter it, so adding such homes keeps every key.
    """
    combo = homes.profile.astype(np.int64) * 65536 + homes.timezone.astype(np.int64)
    combos, inverse = np.unique(combo, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(combos) + 1))
    members = [order[bounds[c] : bounds[c + 1]] for c in range(len(combos))]
    keys: list[tuple[str, str]] = []
    meanings: dict[tuple[int, int], str] = {}
    for r, rule in enumerate(pack.rules):
        base = rule.meaning
        reference = _home_meaning(rule, DEFAULT_TIMEZONE)
        differing: dict[str, list[np.ndarray]] = {}
        for c, value in enumerate(combos.tolist()):
            p, z = divmod(value, 65536)
            there = homes.profiles[p][r]
            memo = (p, r)
            if memo not in meanings:
                meanings[memo] = there.meaning
            meaning = meanings[memo] + (f"@{homes.zones.names[z]}" if there.during is not None else "")
            if meaning != reference:
                differing.setdefault(meaning, []).append(members[c])
        if not differing:
            keys.append((rule.name, base))
            continue
        digest = hashlib.sha256()
        for meaning in sorted(differing):
            where = np.sort(np.concatenate(differing[meaning])).astype("<i8")
            digest.update(f"{meaning}:{where.shape[0]}\n".encode())
            digest.update(where.tobytes())
        keys.append((rule.name, f"{base}+{digest.hexdigest()[:16]}"))
    return tuple(keys)
