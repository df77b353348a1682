"""Who and what the centre knows: tenants, homes, residents, devices, staff.

Loaded from `devices/homes.yaml` and `escalation/staff.yaml`. The engine addresses
devices and homes by dense integer index; this module owns that numbering so the
engine's arrays, the ingest lookups and the alarm records agree.

A home also carries what the rule engine needs of it beyond its devices: its time zone
(`timezone`, per home or per tenant, default Europe/Oslo) for `during` windows, and its
`rules:` overrides, kept raw here and checked against the rule pack where the service
builds the engine's per-home parameters (docs/rules.md, "Per-home overrides").
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from responsecentre.escalation.delivery import Contact, parse_channel
from responsecentre.escalation.people import Relative, StaffMember, StaffRole
from responsecentre.escalation.roster import Coverage, Roster, parse_roster
from responsecentre.suppression import SuppressionConfig

DEFAULT_TIMEZONE = "Europe/Oslo"  # as engine.localtime.DEFAULT_TIMEZONE
_ROLES = frozenset(str(r) for r in StaffRole)


@dataclass(frozen=True, slots=True)
class Resident:
    """Health data: shown only to roles that need it, never logged or sent over MQTT."""

    name: str
    address: str
    key_safe: str = ""
    care_notes: str = ""


@dataclass(frozen=True, slots=True)
class Device:
    tenant: str
    device_id: str
    kind: str
    home_id: str
    index: int  # the engine's device index
    home_index: int


@dataclass(frozen=True, slots=True)
class Home:
    tenant: str
    home_id: str
    zone: str
    resident: Resident
    device_ids: tuple[str, ...]
    index: int  # the engine's home index
    # Supervision intervals (ms) by device kind for this home only (`supervision:` in
    # homes.yaml); they beat the catalogue's. A tuple of pairs: a frozen record.
    supervision: tuple[tuple[str, int], ...] = ()
    timezone: str = DEFAULT_TIMEZONE  # IANA name; the home's own, else its tenant's
    # Per-home rule overrides (`rules:` in homes.yaml): (rule name, the override as JSON
    # text), in file order. Text keeps the record frozen and hashable; the rule pack
    # checks the content (engine.homes.home_params), since only it knows the rules.
    rules: tuple[tuple[str, str], ...] = ()
    # The resident's relatives, in the record's order, for a chain's `relatives` target.
    relatives: tuple[Relative, ...] = ()

    def rule_overrides(self) -> dict[str, Any]:
        """The `rules:` overrides as plain objects: rule name -> its override mapping."""
        return {name: json.loads(text) for name, text in self.rules}


@dataclass
class Directory:
    homes: dict[tuple[str, str], Home] = field(default_factory=dict)
    devices: dict[tuple[str, str], Device] = field(default_factory=dict)
    # Staff and their shifts per tenant (escalation/staff.yaml, escalation/roster.py).
    rosters: dict[str, Roster] = field(default_factory=dict)
    staff: dict[tuple[str, str], StaffMember] = field(default_factory=dict)
    home_list: list[Home] = field(default_factory=list)
    device_list: list[Device] = field(default_factory=list)
    # Home status, device maintenance and planned silences as the YAML sets them (suppression.py).
    suppression: SuppressionConfig = field(default_factory=SuppressionConfig)
    source: str = "devices/homes.yaml"  # the homes file, for messages ("<source>: home t/h: ...")

    @property
    def tenants(self) -> list[str]:
        return sorted({h.tenant for h in self.home_list})

    def device(self, tenant: str, device_id: str) -> Device | None:
        return self.devices.get((tenant, device_id))

    def home(self, tenant: str, home_id: str) -> Home | None:
        return self.homes.get((tenant, home_id))

    def home_settings(self) -> list[tuple[str, dict[str, Any]]]:
        """(time zone, rule overrides) per home index: what engine.homes.home_params takes."""
        return [(home.timezone, home.rule_overrides()) for home in self.home_list]

    def home_wheres(self) -> list[str]:
        """Per home index, where it is written, for messages about its overrides."""
        return [f"{self.source}: home {home.tenant}/{home.home_id}" for home in self.home_list]

    def device_home(self) -> np.ndarray:
        """Device index -> home index, the array the engine is built on."""
        return np.array([d.home_index for d in self.device_list], dtype=np.int32)

    def supervision_ms(self, catalog: dict[str, KindSpec], grace: float) -> np.ndarray:
        """Device index -> supervision interval in ms (0: not supervised), the array the
        engine supervises with: the home's `supervision` for the device's kind, else the
        kind's `supervision` in the catalogue, else its `heartbeat_every` x `grace` (the
        rule pack's), else 0 (a kind the catalogue does not know, or without a heartbeat).
        Raises ValueError for a home override that names a kind the catalogue lacks."""
        from responsecentre.engine.rules import MAX_DURATION_MS

        for home in self.home_list:
            unknown = sorted(kind for kind, _ in home.supervision if kind not in catalog)
            if catalog and unknown:
                raise ValueError(
                    f"home {home.tenant}/{home.home_id}: supervision names device kinds the catalogue "
                    f"lacks: {', '.join(unknown)}"
                )
        out = np.zeros(len(self.device_list), np.int64)
        for device in self.device_list:
            override = dict(self.home_list[device.home_index].supervision).get(device.kind)
            spec = catalog.get(device.kind)
            if override is not None:
                out[device.index] = override
            elif spec is not None and spec.supervision_ms is not None:
                out[device.index] = spec.supervision_ms
            elif spec is not None and spec.heartbeat_every_ms is not None:
                out[device.index] = min(round(spec.heartbeat_every_ms * grace), MAX_DURATION_MS)
        return out

    def on_duty(self, tenant: str, role: str, zone: str, at_ms: int) -> tuple[StaffMember, ...]:
        """Who of `role` is on duty for a home in `zone` at `at_ms`, in roster order."""
        roster = self.rosters.get(tenant)
        if roster is None or role not in _ROLES:
            return ()
        return roster.who(zone, StaffRole(role), at_ms)

    def coverage(self, tenant: str, role: str, zone: str, at_ms: int) -> Coverage:
        """On duty against the roster's minimum for that role and zone (the warning's test)."""
        roster = self.rosters.get(tenant)
        if roster is None or role not in _ROLES:
            return Coverage(on_duty=0, minimum=1, short=True)
        return roster.coverage(zone, StaffRole(role), at_ms)

    def add_rosters(self, rosters: dict[str, Roster]) -> None:
        for tenant, roster in rosters.items():
            self.rosters[tenant] = roster
            for member in roster.staff.values():
                self.staff[(tenant, member.staff_id)] = member

    def replace_roster(self, tenant: str, roster: Roster) -> None:
        """Swap in `tenant`'s roster (one written over the API, store/rosters.py): its staff
        replace the tenant's, so someone the new roster leaves out is gone from `staff` too.
        Other tenants are untouched. No await inside: readers never see half of it."""
        for key in [key for key in self.staff if key[0] == tenant and key[1] not in roster.staff]:
            del self.staff[key]
        for member in roster.staff.values():
            self.staff[(tenant, member.staff_id)] = member
        self.rosters[tenant] = roster

    def add_home(self, tenant: str, spec: dict[str, Any], timezone: str = DEFAULT_TIMEZONE) -> Home:
        """Add a home of `tenant`; `timezone` is the tenant's, which the home's own beats."""
        home_id = str(spec["id"])
        if (tenant, home_id) in self.homes:
            raise ValueError(f"home {tenant}/{home_id} is defined twice")
        res = spec.get("resident") or {}
        resident = Resident(
            name=str(res.get("name", "")),
            address=str(res.get("address", "")),
            key_safe=str(res.get("key_safe", "")),
            care_notes=str(res.get("care_notes", "")),
        )
        home_index = len(self.home_list)
        device_ids: list[str] = []
        for dev in spec.get("devices") or []:
            device_id = str(dev["id"])
            if (tenant, device_id) in self.devices:
                raise ValueError(f"device {tenant}/{device_id} is defined twice")
            device = Device(tenant, device_id, str(dev["kind"]), home_id, len(self.device_list), home_index)
            self.devices[(tenant, device_id)] = device
            self.device_list.append(device)
            device_ids.append(device_id)
        home = Home(tenant, home_id, str(spec.get("zone", "")), resident, tuple(device_ids), home_index)
        where = f"home {tenant}/{home_id}"
        home = replace(
            home,
            supervision=_home_supervision(tenant, home_id, spec.get("supervision")),
            timezone=_timezone(spec.get("timezone", timezone), f"{where}: timezone"),
            rules=_home_rules(spec.get("rules"), where),
            relatives=_relatives(spec.get("relatives"), where),
        )
        self.homes[(tenant, home_id)] = home
        self.home_list.append(home)
        self.suppression.add_home(tenant, home_id, spec)
        return home


@dataclass(frozen=True, slots=True)
class KindSpec:
    """What the service needs of a device kind in `devices/catalog.yaml`: how often it
    must be heard from. The simulator reads the same file for what the kind sends."""

    kind: str
    heartbeat_every_ms: int | None  # `heartbeat_every`
    supervision_ms: int | None = None  # `supervision`: the interval itself, not x grace


def _duration(value: object, where: str) -> int:
    from responsecentre.engine.rules import parse_duration  # the rule language's durations

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _home_supervision(tenant: str, home_id: str, spec: object) -> tuple[tuple[str, int], ...]:
    if spec is None:
        return ()
    if not isinstance(spec, dict):
        raise ValueError(f"home {tenant}/{home_id}: supervision must map device kinds to durations")
    where = f"home {tenant}/{home_id}: supervision"
    return tuple((str(kind), _duration(value, f"{where}.{kind}")) for kind, value in spec.items())


def _timezone(value: object, where: str) -> str:
    """An IANA time zone name that this machine's zone database knows, else ValueError."""
    from responsecentre.engine.localtime import check_timezone

    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: a time zone name such as 'Europe/Oslo', not {value!r}")
    try:
        check_timezone(value)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return value


_RELATIVE_CHANNELS = ("sms", "email")  # what a relative can be reached on: no handset, no webhook


def _relatives(spec: object, where: str) -> tuple[Relative, ...]:
    """`relatives: [{name: ..., contacts: [{sms: "+47..."}, {email: ...}]}]`, in order."""
    if spec is None:
        return ()
    if not isinstance(spec, list):
        raise ValueError(f"{where}: relatives must be a list")
    out: list[Relative] = []
    for i, item in enumerate(spec, 1):
        if not isinstance(item, dict) or not isinstance(item.get("contacts", []), list):
            raise ValueError(f"{where}: relative {i} must be a mapping with a list of contacts")
        contacts: list[Contact] = []
        for contact in item.get("contacts") or []:
            if not isinstance(contact, dict) or len(contact) != 1:
                raise ValueError(f"{where}: relative {i}: a contact is one `channel: address` pair")
            ((channel, address),) = contact.items()
            if channel not in _RELATIVE_CHANNELS or not isinstance(address, str) or not address:
                raise ValueError(f"{where}: relative {i}: contacts are {' or '.join(_RELATIVE_CHANNELS)} addresses")
            contacts.append(Contact(parse_channel(channel), address))
        out.append(Relative(str(item.get("name", "")), tuple(contacts)))
    return tuple(out)


def _home_rules(spec: object, where: str) -> tuple[tuple[str, str], ...]:
    """`rules:` of a home: rule name -> a mapping of overrides. Only the shape is checked
    here; what may be overridden, and how, is the rule pack's business."""
    if spec is None:
        return ()
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: rules must map rule names to overrides, e.g. low-battery: {{value: {{below: 20}}}}")
    out: list[tuple[str, str]] = []
    for name, override in spec.items():
        if not isinstance(override, Mapping):
            raise ValueError(f"{where}: rules.{name} must be a mapping of overrides, not {override!r}")
        try:
            text = json.dumps(override, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError):
            raise ValueError(
                f"{where}: rules.{name} holds a value that is not text, a number, true/false or a list "
                "(quote times and dates)"
            ) from None
        out.append((str(name), text))
    return tuple(out)


def parse_catalog(doc: dict[str, Any]) -> dict[str, KindSpec]:
    """The parsed catalogue YAML -> kind -> KindSpec; ValueError names the bad entry."""
    out: dict[str, KindSpec] = {}
    for kind, spec in ((doc or {}).get("kinds") or {}).items():
        spec = spec or {}
        every = spec.get("heartbeat_every")
        supervision = spec.get("supervision")
        where = f"catalogue kind {kind}"
        out[str(kind)] = KindSpec(
            kind=str(kind),
            heartbeat_every_ms=None if every is None else _duration(every, f"{where}: heartbeat_every"),
            supervision_ms=None if supervision is None else _duration(supervision, f"{where}: supervision"),
        )
    return out


def load_catalog(path: Path) -> dict[str, KindSpec]:
    return parse_catalog(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


def build_directory(homes: dict[str, Any], staff: dict[str, Any] | None = None) -> Directory:
    """From the parsed YAML documents (tests build these dicts directly)."""
    directory = Directory()
    for tenant, spec in (homes.get("tenants") or {}).items():
        timezone = _timezone(spec.get("timezone", DEFAULT_TIMEZONE), f"tenant {tenant}: timezone")
        for home in spec.get("homes") or []:
            directory.add_home(str(tenant), home, timezone)
        directory.suppression.add_tenant(
            str(tenant),
            spec,
            {h for (t, h) in directory.homes if t == str(tenant)},
            {d for (t, d) in directory.devices if t == str(tenant)},
        )
    if staff:
        directory.add_rosters(parse_roster(yaml.safe_dump(staff, sort_keys=False), "<staff>"))
    return directory


class _HomesLoader(yaml.SafeLoader):
    """YAML as safe_load reads it, except that a time of day such as 22:00 stays text:
    YAML 1.1 reads it as the base-60 number 1320, and a `during` override needs "22:00"."""


_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_HomesLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _NUMBER_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# PyYAML's own number patterns without their base-60 forms.
_HomesLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_HomesLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def load_directory(homes_path: Path, staff_path: Path | None) -> Directory:
    """The homes file and the staff file (rosters: parsed from the text, so that a mistake
    is reported with its file:line)."""
    homes = yaml.load(homes_path.read_text(), Loader=_HomesLoader) or {}  # a SafeLoader
    directory = build_directory(homes)
    directory.source = str(homes_path)
    if staff_path and staff_path.exists():
        directory.add_rosters(parse_roster(staff_path.read_text(encoding="utf-8"), str(staff_path)))
    return directory
