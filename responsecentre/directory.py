"""Who and what the centre knows: tenants, homes, residents, devices, staff.

Loaded from `devices/homes.yaml` and `escalation/staff.yaml`. The engine addresses
devices and homes by dense integer index; this module owns that numbering so the
engine's arrays, the ingest lookups and the alarm records agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml


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


@dataclass(frozen=True, slots=True)
class Staff:
    tenant: str
    staff_id: str
    name: str
    role: str
    zone: str  # a zone name, or "all"
    on_duty: bool


@dataclass
class Directory:
    homes: dict[tuple[str, str], Home] = field(default_factory=dict)
    devices: dict[tuple[str, str], Device] = field(default_factory=dict)
    staff: dict[tuple[str, str], Staff] = field(default_factory=dict)
    home_list: list[Home] = field(default_factory=list)
    device_list: list[Device] = field(default_factory=list)

    @property
    def tenants(self) -> list[str]:
        return sorted({h.tenant for h in self.home_list})

    def device(self, tenant: str, device_id: str) -> Device | None:
        return self.devices.get((tenant, device_id))

    def home(self, tenant: str, home_id: str) -> Home | None:
        return self.homes.get((tenant, home_id))

    def device_home(self) -> np.ndarray:
        """Device index -> home index, the array the engine is built on."""
        return np.array([d.home_index for d in self.device_list], dtype=np.int32)

    def on_duty(self, tenant: str, role: str, zone: str) -> list[Staff]:
        """Who of `role` is on duty for a home in `zone` (the roster's first cut)."""
        return [
            s
            for s in self.staff.values()
            if s.tenant == tenant and s.role == role and s.on_duty and s.zone in (zone, "all")
        ]

    def add_home(self, tenant: str, spec: dict[str, Any]) -> Home:
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
        self.homes[(tenant, home_id)] = home
        self.home_list.append(home)
        return home

    def add_staff(self, tenant: str, spec: dict[str, Any]) -> Staff:
        member = Staff(
            tenant=tenant,
            staff_id=str(spec["id"]),
            name=str(spec.get("name", "")),
            role=str(spec["role"]),
            zone=str(spec.get("zone", "all")),
            on_duty=bool(spec.get("on_duty", True)),
        )
        self.staff[(tenant, member.staff_id)] = member
        return member


def build_directory(homes: dict[str, Any], staff: dict[str, Any] | None = None) -> Directory:
    """From the parsed YAML documents (tests build these dicts directly)."""
    directory = Directory()
    for tenant, spec in (homes.get("tenants") or {}).items():
        for home in spec.get("homes") or []:
            directory.add_home(str(tenant), home)
    for tenant, spec in ((staff or {}).get("tenants") or {}).items():
        for member in spec.get("staff") or []:
            directory.add_staff(str(tenant), member)
    return directory


def load_directory(homes_path: Path, staff_path: Path | None) -> Directory:
    homes = yaml.safe_load(homes_path.read_text()) or {}
    staff = yaml.safe_load(staff_path.read_text()) if staff_path and staff_path.exists() else {}
    return build_directory(homes, staff)
