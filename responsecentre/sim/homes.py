"""The simulator's view of the demo homes: who has which devices, and what each kind sends.

Deliberately small: the service has its own directory loader (`responsecentre.directory`)
with residents, zones and engine indices. The simulator needs only tenant, home, device id,
kind, the kind's event types and its heartbeat interval, read from the same two files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from responsecentre import contract

DEFAULT_HEARTBEAT_MS = 5 * 60_000

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


@dataclass(frozen=True, slots=True)
class SimDevice:
    device_id: str
    kind: str
    events: tuple[str, ...]  # the event types this kind may send (from the catalogue)
    heartbeat_every_ms: int = DEFAULT_HEARTBEAT_MS


@dataclass(frozen=True, slots=True)
class SimHome:
    tenant: str
    home_id: str
    devices: tuple[SimDevice, ...]


def parse_duration_ms(text: str | int | float) -> int:
    """`"5m"`, `"15m"`, `"30s"`, `"1h"`, `"250ms"`; a bare number means seconds."""
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        return int(text * 1000)
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"not a duration: {text!r} (expected e.g. 30s, 5m, 1h)")
    return int(float(match.group(1)) * _UNIT_MS[match.group(2) or "s"])


def repo_devices_dir() -> Path:
    """`devices/` of the source checkout, else of the current directory."""
    here = Path(__file__).resolve().parents[2] / "devices"
    return here if here.is_dir() else Path.cwd() / "devices"


def default_homes_path() -> Path:
    return repo_devices_dir() / "homes.yaml"


def build_homes(homes_doc: dict[str, Any], catalog_doc: dict[str, Any]) -> tuple[SimHome, ...]:
    """From the parsed YAML documents, in file order (tests build these dicts directly)."""
    kinds: dict[str, tuple[tuple[str, ...], int]] = {}
    for kind, spec in (catalog_doc.get("kinds") or {}).items():
        events = tuple(str(e) for e in spec.get("events") or ())
        unknown = [e for e in events if e not in contract.TYPE_ID]
        if unknown:
            raise ValueError(f"catalogue kind {kind!r} lists event types outside contract v1: {unknown}")
        every = spec.get("heartbeat_every")
        kinds[str(kind)] = (
            events,
            parse_duration_ms(every) if every is not None else DEFAULT_HEARTBEAT_MS,
        )
    homes: list[SimHome] = []
    for tenant, tenant_spec in (homes_doc.get("tenants") or {}).items():
        for home in (tenant_spec or {}).get("homes") or []:
            devices: list[SimDevice] = []
            for dev in home.get("devices") or []:
                kind = str(dev["kind"])
                if kind not in kinds:
                    raise ValueError(f"device {tenant}/{dev['id']} has kind {kind!r}, which the catalogue lacks")
                events, every = kinds[kind]
                devices.append(SimDevice(str(dev["id"]), kind, events, every))
            homes.append(SimHome(str(tenant), str(home["id"]), tuple(devices)))
    return tuple(homes)


def load_homes(
    homes_path: Path | str | None = None,
    catalog_path: Path | str | None = None,
    limit: int | None = None,
) -> tuple[SimHome, ...]:
    """Load homes and catalogue (the catalogue defaults to `catalog.yaml` beside the homes).

    `limit` keeps the first N homes of the file.
    """
    homes_file = Path(homes_path) if homes_path is not None else default_homes_path()
    catalog_file = Path(catalog_path) if catalog_path is not None else homes_file.with_name("catalog.yaml")
    homes = build_homes(
        yaml.safe_load(homes_file.read_text(encoding="utf-8")) or {},
        yaml.safe_load(catalog_file.read_text(encoding="utf-8")) or {},
    )
    if limit is not None:
        if limit < 0:
            raise ValueError("the number of homes cannot be negative")
        if limit > len(homes):
            raise ValueError(f"{homes_file} has {len(homes)} homes; {limit} were asked for")
        homes = homes[:limit]
    return homes


def with_tenant(homes: tuple[SimHome, ...] | list[SimHome], tenant: str) -> tuple[SimHome, ...]:
    """The same homes under another tenant (tests give each run a tenant of its own)."""
    return tuple(replace(h, tenant=tenant) for h in homes)
