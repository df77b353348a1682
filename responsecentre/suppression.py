"""Suppression: when an event is logged and counted but must not page anyone.

Three sources, all answered by one pure index (`Suppressions.reason`):
- a home's **status**: `away` or `in_hospital` (the resident is not there: a door sensor
  must not send a nurse to an empty flat), optionally until a time;
- a device's **maintenance** (a technician is testing it: the test press is not an alarm);
- planned **silences** with a start and an end, scoped to a whole tenant, a home, a
  device or an alarm kind (a known fault of one kind of sensor, a planned renovation).

Kinds listed as exempt (default `fire`, `water_leak`) are never held back by a home's
status or by a home- or tenant-wide silence: a fire in an empty home still burns, and the
building still needs someone. Maintenance and device- or kind-scoped silences do suppress
them: those name the device or the kind on purpose.

Nothing here does I/O or reads the clock: every question carries its time, and the index
is rebuilt whole (from YAML and Redis, `store/suppressions.py`) when something changes.
An ended status or maintenance is kept as an interval with its end, not deleted, so that
a deadline armed while it was on is still recognised as armed in suppression after it
ends ("nothing stale fires").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

Scope = Literal["tenant", "home", "device", "kind"]
SCOPES: tuple[str, ...] = ("tenant", "home", "device", "kind")
HOME_STATUSES: tuple[str, ...] = ("normal", "away", "in_hospital")
REASONS: tuple[str, ...] = ("maintenance", "in_hospital", "away", "silence")
DEFAULT_EXEMPT_KINDS: frozenset[str] = frozenset({"fire", "water_leak"})

DAY_MS = 24 * 3600 * 1000
MAX_SILENCE_MS = 90 * DAY_MS  # a silence is planned work, not a way to switch a home off
MAX_UNTIL_MS = 366 * DAY_MS  # how far ahead a status or maintenance may be set to end
# Ended silences, statuses and maintenance are kept this long: a replay of the event log
# after a restart must still see the suppression its events arrived in.
KEEP_ENDED_MS = 7 * DAY_MS


@dataclass(frozen=True, slots=True)
class Silence:
    """A planned silence: [start_ms, end_ms) for one tenant, home, device or alarm kind."""

    id: str
    tenant: str
    scope: str  # one of SCOPES
    target: str  # home id, device id or alarm kind; "" for a tenant-wide silence
    start_ms: int
    end_ms: int
    reason: str = ""
    created_by: str = ""
    source: str = "api"  # "api" (Redis, may be ended over the API) or "yaml"

    def covers(self, at_ms: int) -> bool:
        return self.start_ms <= at_ms < self.end_ms


@dataclass(frozen=True, slots=True)
class HomeStatus:
    """A home that is `away` or `in_hospital` from `since_ms` until `until_ms` (None: until
    changed). Setting a home back to normal keeps the record with `until_ms` = then."""

    tenant: str
    home_id: str
    status: str  # away | in_hospital (a record never says "normal": it has an end instead)
    since_ms: int = 0
    until_ms: int | None = None
    set_by: str = ""
    source: str = "api"

    def active(self, at_ms: int) -> bool:
        return self.since_ms <= at_ms and (self.until_ms is None or at_ms < self.until_ms)


@dataclass(frozen=True, slots=True)
class Maintenance:
    """A device in maintenance from `since_ms` until `until_ms` (None: until switched off)."""

    tenant: str
    device_id: str
    since_ms: int = 0
    until_ms: int | None = None
    set_by: str = ""
    source: str = "api"

    def active(self, at_ms: int) -> bool:
        return self.since_ms <= at_ms and (self.until_ms is None or at_ms < self.until_ms)


def _recent(until_ms: int | None, now_ms: int | None) -> bool:
    return until_ms is None or now_ms is None or until_ms > now_ms - KEEP_ENDED_MS


class Suppressions:
    """The index the rule processor asks, per decision and per event: dict lookups only.

    Built whole and never changed (a new one replaces it), so a reader needs no lock.
    """

    __slots__ = ("_device", "_exempt", "_home", "_silences", "empty", "maintenance", "silences", "statuses")

    def __init__(
        self,
        silences: Iterable[Silence] = (),
        statuses: Iterable[HomeStatus] = (),
        maintenance: Iterable[Maintenance] = (),
        exempt_kinds: Mapping[str, frozenset[str]] | None = None,
        now_ms: int | None = None,
    ) -> None:
        """`now_ms`, if given, drops what ended more than KEEP_ENDED_MS before it."""
        self.silences = tuple(s for s in silences if _recent(s.end_ms, now_ms))
        self.statuses = {(s.tenant, s.home_id): s for s in statuses if _recent(s.until_ms, now_ms)}
        self.maintenance = {(m.tenant, m.device_id): m for m in maintenance if _recent(m.until_ms, now_ms)}
        by_target: dict[tuple[str, str, str], list[Silence]] = {}
        for s in self.silences:
            by_target.setdefault((s.tenant, s.scope, s.target), []).append(s)
        self._silences = {k: tuple(v) for k, v in by_target.items()}
        self._home = self.statuses
        self._device = self.maintenance
        self._exempt = dict(exempt_kinds or {})
        self.empty = not (self._silences or self._home or self._device)

    def exempt(self, tenant: str) -> frozenset[str]:
        return self._exempt.get(tenant, DEFAULT_EXEMPT_KINDS)

    def reason(self, tenant: str, home_id: str, device_id: str | None, kind: str | None, at_ms: int) -> str | None:
        """Why an alarm of `kind` (None: any, for an event) from this home and device at
        `at_ms` is held back, or None. The most specific reason wins: maintenance, a
        device's or kind's silence, the home's status, a home's or tenant's silence."""
        if self.empty:
            return None
        if device_id is not None:
            m = self._device.get((tenant, device_id))
            if m is not None and m.active(at_ms):
                return "maintenance"
            if self._silenced(tenant, "device", device_id, at_ms):
                return "silence"
        if kind is not None:
            if self._silenced(tenant, "kind", kind, at_ms):
                return "silence"
            if kind in self._exempt.get(tenant, DEFAULT_EXEMPT_KINDS):
                return None
        status = self._home.get((tenant, home_id))
        if status is not None and status.active(at_ms):
            return status.status
        if self._silenced(tenant, "home", home_id, at_ms) or self._silenced(tenant, "tenant", "", at_ms):
            return "silence"
        return None

    def _silenced(self, tenant: str, scope: str, target: str, at_ms: int) -> bool:
        return any(s.start_ms <= at_ms < s.end_ms for s in self._silences.get((tenant, scope, target), ()))


# -- YAML (devices/homes.yaml) -------------------------------------------------------------------


def to_ms(value: Any, where: str) -> int:
    """An ISO 8601 time (as YAML parses it, or as text) or epoch ms, as epoch ms; a time
    without an offset is refused: a silence that starts an hour off is a wrong silence."""
    if isinstance(value, bool):
        raise ValueError(f"{where}: {value!r} is not a time")
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        raise ValueError(f"{where}: {value} is a date; give a time with an offset, e.g. {value}T08:00:00+01:00")
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{where}: {value!r} is not an ISO 8601 time") from None
    else:
        raise ValueError(f"{where}: {value!r} is not a time")
    if moment.tzinfo is None:
        raise ValueError(f"{where}: {value} has no UTC offset (write e.g. +01:00 or Z)")
    return int(moment.timestamp() * 1000)  # no astimezone: year 1 at +05:00 would overflow


@dataclass
class SuppressionConfig:
    """What devices/homes.yaml says; merged with what was set over the API at every load."""

    statuses: dict[tuple[str, str], HomeStatus] = field(default_factory=dict)
    maintenance: dict[tuple[str, str], Maintenance] = field(default_factory=dict)
    silences: list[Silence] = field(default_factory=list)
    exempt_kinds: dict[str, frozenset[str]] = field(default_factory=dict)

    def add_home(self, tenant: str, home_id: str, spec: Mapping[str, Any]) -> None:
        """A home's `status` (+ `status_until`) and its devices' `maintenance` (+ `maintenance_until`)."""
        where = f"home {tenant}/{home_id}"
        status = spec.get("status", "normal")
        if status not in HOME_STATUSES:
            raise ValueError(f"{where}: status {status!r} is not one of {', '.join(HOME_STATUSES)}")
        if status != "normal":
            until = spec.get("status_until")
            self.statuses[(tenant, home_id)] = HomeStatus(
                tenant, home_id, str(status), 0, to_ms(until, where) if until is not None else None, "yaml", "yaml"
            )
        for dev in spec.get("devices") or []:
            on = dev.get("maintenance", False)
            if not isinstance(on, bool):
                raise ValueError(f"device {tenant}/{dev.get('id')}: maintenance must be true or false")
            if on:
                until = dev.get("maintenance_until")
                device_id = str(dev["id"])
                self.maintenance[(tenant, device_id)] = Maintenance(
                    tenant,
                    device_id,
                    0,
                    to_ms(until, f"device {tenant}/{device_id}") if until else None,
                    "yaml",
                    "yaml",
                )

    def add_tenant(self, tenant: str, spec: Mapping[str, Any], homes: set[str], devices: set[str]) -> None:
        """A tenant's `silences` and `suppression_exempt_kinds`, checked against its homes and devices."""
        exempt = spec.get("suppression_exempt_kinds")
        if exempt is not None:
            if not isinstance(exempt, list) or not all(isinstance(k, str) for k in exempt):
                raise ValueError(f"tenant {tenant}: suppression_exempt_kinds must be a list of alarm kinds")
            self.exempt_kinds[tenant] = frozenset(exempt)
        for n, item in enumerate(spec.get("silences") or []):
            where = f"tenant {tenant}, silence {n + 1}"
            unknown = set(item) - {"scope", "target", "from", "to", "reason"}
            if unknown:
                raise ValueError(
                    f"{where}: unknown keys {', '.join(sorted(unknown))} (allowed: scope, target, from, to, reason)"
                )
            scope = item.get("scope")
            if scope not in SCOPES:
                raise ValueError(f"{where}: scope {scope!r} is not one of {', '.join(SCOPES)}")
            target = "" if scope == "tenant" else str(item.get("target", ""))
            if scope == "home" and target not in homes:
                raise ValueError(f"{where}: no home {target!r} in tenant {tenant}")
            if scope == "device" and target not in devices:
                raise ValueError(f"{where}: no device {target!r} in tenant {tenant}")
            if scope == "kind" and not target:
                raise ValueError(f"{where}: a kind silence needs a target (the alarm kind)")
            if "from" not in item or "to" not in item:
                raise ValueError(f"{where}: needs both 'from' and 'to'")
            start, end = to_ms(item["from"], where), to_ms(item["to"], where)
            if end <= start:
                raise ValueError(f"{where}: 'to' must be after 'from'")
            self.silences.append(
                Silence(
                    f"yaml-{tenant}-{n + 1}",
                    tenant,
                    scope,
                    target,
                    start,
                    end,
                    str(item.get("reason", "")),
                    "yaml",
                    "yaml",
                )
            )

    def merged(
        self,
        silences: Iterable[Silence] = (),
        statuses: Iterable[HomeStatus] = (),
        maintenance: Iterable[Maintenance] = (),
        now_ms: int | None = None,
    ) -> Suppressions:
        """The index of YAML plus what was set over the API; an API record of a home or
        device replaces the YAML one (setting a YAML-away home back to normal works)."""
        all_statuses = dict(self.statuses)
        all_statuses.update({(s.tenant, s.home_id): s for s in statuses})
        all_maintenance = dict(self.maintenance)
        all_maintenance.update({(m.tenant, m.device_id): m for m in maintenance})
        return Suppressions(
            [*self.silences, *silences], all_statuses.values(), all_maintenance.values(), self.exempt_kinds, now_ms
        )
