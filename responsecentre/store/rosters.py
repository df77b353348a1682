"""Rosters written over the API (web/rosters.py), kept in Redis per tenant as their YAML text.

A tenant's stored roster overrides the one in `escalation/staff.yaml`. Keys:

- `rc:{tenant}:roster`, a hash: `yaml` (a whole staff document naming only this tenant,
  docs/rosters.md), `version` (1, 2, ...: bumped by each write; 0 means "none stored, the
  file's roster is in force"), `sha256` (of `yaml`), `updated_ms`, `updated_by`;
- `rc:rosters`, a set: the tenants that have one;
- `rc:rosters:version`, a counter bumped by every write of any tenant's roster, so that a
  process polling for changes (`sync_rosters`) pays one GET while nothing changed.

A write is one Lua script: compare the version (If-Match), bump it, store the text. Each
process applies what is stored with `sync_rosters` (at start and every few seconds) and
remembers per Directory which version of each tenant it applied; the process that served
the write applies it at once (`apply_roster`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import weakref
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis.asyncio as aioredis
import yaml
from redis.exceptions import RedisError

from responsecentre.directory import Directory
from responsecentre.escalation.delivery import Channel, Contact
from responsecentre.escalation.people import ALL_ZONES, StaffMember
from responsecentre.escalation.roster import (
    ALL_DAYS,
    Crew,
    DateRange,
    Leave,
    Roster,
    RosterError,
    Shift,
    Swap,
    parse_roster,
)
from responsecentre.store.keys import KEYS, Keys

log = logging.getLogger(__name__)

SYNC_EVERY_S = 2.0


def roster_key(tenant: str, keys: Keys = KEYS) -> str:
    """Hash: the tenant's roster written over the API (yaml, version, sha256, updated_ms, updated_by)."""
    return f"{keys.prefix}:{tenant}:roster"


def rosters_key(keys: Keys = KEYS) -> str:
    """Set: the tenants with a roster written over the API."""
    return f"{keys.prefix}:rosters"


def rosters_version_key(keys: Keys = KEYS) -> str:
    """String: bumped with every roster write; `sync_rosters` polls it."""
    return f"{keys.prefix}:rosters:version"


def sha256_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class StoredRoster(msgspec.Struct, frozen=True):
    tenant: str
    yaml: str
    version: int
    sha256: str
    updated_ms: int
    updated_by: str


class VersionConflict(Exception):
    """The roster's version is not the one the writer expected (If-Match): someone else
    wrote it since the writer read it."""

    def __init__(self, tenant: str, expected: int, current: int) -> None:
        super().__init__(f"the roster of {tenant} is at version {current}, not {expected}")
        self.tenant = tenant
        self.expected = expected
        self.current = current


# KEYS: the roster hash, the tenants set, the global counter.
# ARGV: expected version ('' = any), yaml, sha256, updated_ms, updated_by, tenant.
# -> {1, new version} or {0, current version}
_PUT = """
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= current then
  return {0, current}
end
local version = current + 1
redis.call('HSET', KEYS[1], 'yaml', ARGV[2], 'version', version, 'sha256', ARGV[3],
           'updated_ms', ARGV[4], 'updated_by', ARGV[5])
redis.call('SADD', KEYS[2], ARGV[6])
redis.call('INCR', KEYS[3])
return {1, version}
"""


def _stored(tenant: str, raw: dict[bytes, bytes]) -> StoredRoster | None:
    if not raw or b"yaml" not in raw:
        return None
    return StoredRoster(
        tenant=tenant,
        yaml=raw[b"yaml"].decode("utf-8"),
        version=int(raw.get(b"version", b"0")),
        sha256=raw.get(b"sha256", b"").decode(),
        updated_ms=int(raw.get(b"updated_ms", b"0")),
        updated_by=raw.get(b"updated_by", b"").decode(),
    )


class RosterStore:
    def __init__(self, redis: aioredis.Redis, keys: Keys = KEYS) -> None:
        self.redis = redis
        self.keys = keys
        self._put = redis.register_script(_PUT)

    async def get(self, tenant: str) -> StoredRoster | None:
        """The tenant's roster written over the API, or None (the file's is in force)."""
        return _stored(tenant, await self.redis.hgetall(roster_key(tenant, self.keys)))

    async def version(self, tenant: str) -> int:
        raw = await self.redis.hget(roster_key(tenant, self.keys), "version")
        return int(raw) if raw is not None else 0

    async def tenants(self) -> list[str]:
        return sorted(t.decode() for t in await self.redis.smembers(rosters_key(self.keys)))

    async def versions(self, tenants: list[str]) -> dict[str, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for tenant in tenants:
                pipe.hget(roster_key(tenant, self.keys), "version")
            replies = await pipe.execute()
        return {t: int(v) for t, v in zip(tenants, replies, strict=True) if v is not None}

    async def changes(self) -> int:
        """The global write counter (0 before the first write)."""
        raw = await self.redis.get(rosters_version_key(self.keys))
        return int(raw) if raw is not None else 0

    async def put(self, tenant: str, text: str, by: str, now_ms: int, expected: int | None = None) -> StoredRoster:
        """Store `text` (already checked by the caller) as the tenant's roster, one version
        on. With `expected`, only if the stored version is that one (0: none stored yet);
        otherwise VersionConflict and nothing is written."""
        digest = sha256_of(text)
        keys = [roster_key(tenant, self.keys), rosters_key(self.keys), rosters_version_key(self.keys)]
        args = ["" if expected is None else str(expected), text, digest, str(now_ms), by, tenant]
        stored, version = await self._put(keys=keys, args=args)
        if not int(stored):
            raise VersionConflict(tenant, expected if expected is not None else -1, int(version))
        return StoredRoster(tenant, text, int(version), digest, now_ms, by)


# -- what a Directory has applied ---------------------------------------------------------


@dataclass
class _Applied:
    versions: dict[str, int] = field(default_factory=dict)  # tenant -> the stored version in force
    refused: dict[str, int] = field(default_factory=dict)  # tenant -> a stored version this process refused
    changes: int | None = None  # the global counter when the last sync completed


# By id(directory), dropped when the directory is collected. (A Directory is a mutable
# dataclass, so neither hashable nor a WeakKeyDictionary key.)
_APPLIED: dict[int, _Applied] = {}


def _applied(directory: Directory) -> _Applied:
    key = id(directory)
    state = _APPLIED.get(key)
    if state is None:
        state = _APPLIED[key] = _Applied()
        weakref.finalize(directory, _APPLIED.pop, key, None)
    return state


def applied_version(directory: Directory, tenant: str) -> int:
    """The stored version of `tenant`'s roster that `directory` runs (0: the file's)."""
    return _applied(directory).versions.get(tenant, 0)


def apply_roster(directory: Directory, tenant: str, roster: Roster, version: int) -> bool:
    """Swap a stored roster into `directory` unless it already runs that version or a later
    one (two writes applied out of order must not go back). True if it was swapped in."""
    state = _applied(directory)
    if version <= state.versions.get(tenant, 0):
        return False
    directory.replace_roster(tenant, roster)
    state.versions[tenant] = version
    state.refused.pop(tenant, None)
    return True


def stored_source(tenant: str) -> str:
    """The source name a stored roster's messages carry (`api:vestby:12: ...`)."""
    return f"api:{tenant}"


async def parse_tenant_roster(text: str, tenant: str) -> Roster:
    """The roster of `tenant` from a whole staff document that names only that tenant;
    RosterError (`api:{tenant}:line: ...`) otherwise. Parsed on a worker thread: a large
    roster takes a while, and the event loop has pages to send meanwhile."""
    return await asyncio.to_thread(_parse_tenant_roster, text, tenant)


def _parse_tenant_roster(text: str, tenant: str) -> Roster:
    source = stored_source(tenant)
    try:
        rosters = parse_roster(text, source)
    except RosterError:
        _check_shape(text, tenant, source)  # a clearer word for a common slip
        raise
    others = [t for t in rosters if t != tenant]
    if others:
        line = _tenant_line(text, others[0])
        raise RosterError(
            source,
            line,
            f"tenant {others[0]!r} in a roster for {tenant!r}: send one tenant per request, to its own URL",
        )
    if tenant not in rosters:
        raise RosterError(source, 1, f"no roster for {tenant!r}: write it under 'tenants:' and '{tenant}:'")
    return rosters[tenant]


def _check_shape(text: str, tenant: str, source: str) -> None:
    """A bare tenant section (timezone:, staff:, ... at the top) is refused with a clear
    word rather than the loader's "unknown key 'staff' in the staff file"."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return  # parse_roster says where
    if isinstance(root, yaml.MappingNode):
        top = {k.value for k, _ in root.value if isinstance(k, yaml.ScalarNode)}
        if "tenants" not in top and top & {"timezone", "minimum", "staff", "shifts", "overrides"}:
            raise RosterError(
                source, 1, f"a whole staff document is expected: put this section under 'tenants:' and '{tenant}:'"
            )


def _tenant_line(text: str, tenant: str) -> int:
    with contextlib.suppress(yaml.YAMLError):
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        for key, value in root.value if isinstance(root, yaml.MappingNode) else []:
            if key.value == "tenants" and isinstance(value, yaml.MappingNode):
                for name, _ in value.value:
                    if name.value == tenant:
                        return int(name.start_mark.line) + 1
    return 1


async def sync_rosters(redis: aioredis.Redis, directory: Directory, keys: Keys = KEYS) -> list[str]:
    """Apply to `directory` every stored roster newer than the version it runs: the
    tenant's roster and staff are replaced (store comment above). The tenants changed,
    sorted. A stored roster this process refuses (it should not happen: the writer
    checked it) is logged once per version and the running roster stays. One GET when
    nothing was written since the last call."""
    store = RosterStore(redis, keys)
    state = _applied(directory)
    changes = await store.changes()
    if state.changes is not None and changes == state.changes:
        return []
    changed: list[str] = []
    tenants = await store.tenants()
    for tenant, version in (await store.versions(tenants)).items():
        if version <= state.versions.get(tenant, 0) or state.refused.get(tenant) == version:
            continue
        stored = await store.get(tenant)
        if stored is None:
            continue
        try:
            roster = await parse_tenant_roster(stored.yaml, tenant)
        except RosterError as exc:
            if state.refused.get(tenant) != stored.version:
                log.error(
                    "stored roster of %s, version %d, refused; the running one stays: %s", tenant, stored.version, exc
                )
                state.refused[tenant] = stored.version
            continue
        if apply_roster(directory, tenant, roster, stored.version):
            log.info("roster of %s: version %d by %s applied", tenant, stored.version, stored.updated_by)
            changed.append(tenant)
    state.changes = changes
    return sorted(changed)


async def watch_rosters(
    redis: aioredis.Redis, directory: Directory, every_s: float = SYNC_EVERY_S, keys: Keys = KEYS
) -> None:
    """`sync_rosters` now and every `every_s` seconds until cancelled. A failure is logged
    and retried at the next turn, with the running rosters in force: a roster that cannot
    be refreshed must not stop the alarms (what the service would do if this task raised)."""
    while True:
        try:
            await sync_rosters(redis, directory, keys)
        except (RedisError, OSError) as exc:
            log.warning("roster sync failed, retrying in %.0f s: %s", every_s, exc)
        except Exception:
            log.exception("roster sync failed, retrying in %.0f s", every_s)
        await asyncio.sleep(every_s)


# -- a roster as YAML ----------------------------------------------------------------------


def roster_yaml(roster: Roster) -> str:
    """A whole staff document for this one roster, in the format of docs/rosters.md, that
    `parse_roster` reads back to an equal Roster: what GET shows for a roster loaded from
    the staff file (whose comments and layout the loader does not keep)."""
    section: dict[str, Any] = {"timezone": roster.timezone}
    minimum = _minimum(roster)
    if minimum:
        section["minimum"] = minimum
    section["staff"] = [_member(m, roster) for m in roster.staff.values()]
    if roster.shifts:
        section["shifts"] = [_shift(s, crew=False) for s in roster.shifts]
    if roster.overrides:
        section["overrides"] = [_override(o) for o in roster.overrides]
    body = yaml.dump(
        {"tenants": {roster.tenant: section}},
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=None,
        width=120,
    )
    return f"# The roster of {roster.tenant} from the staff file (docs/rosters.md).\n{body}"


class _Time(str):
    """A time of day, written "HH:MM" in double quotes as docs/rosters.md writes it (YAML
    1.1 readers would take an unquoted 23:00 for the number 1380)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Time, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, '"'))


def _minimum(roster: Roster) -> dict[str, Any]:
    by_role: dict[str, dict[str, int]] = {}
    for rule in roster.minimum:
        by_role.setdefault(rule.role.value, {})[rule.zone] = rule.count
    return {role: zones[ALL_ZONES] if list(zones) == [ALL_ZONES] else zones for role, zones in by_role.items()}


def _member(member: StaffMember, roster: Roster) -> dict[str, Any]:
    out: dict[str, Any] = {"id": member.staff_id, "name": member.name}
    roles = [r.value for r in member.roles]
    if len(roles) == 1:
        out["role"] = roles[0]
    else:
        out["roles"] = roles
    if member.zones != (ALL_ZONES,):
        if len(member.zones) == 1:
            out["zone"] = member.zones[0]
        else:
            out["zones"] = list(member.zones)
    if member.contacts != (Contact(Channel.HANDSET, member.staff_id),):
        out["contacts"] = [{c.channel.value: c.address} for c in member.contacts]
    if member.staff_id in roster.always:
        out["on_duty"] = True
    elif not roster.shifts:  # without shifts, leaving it out would mean always
        out["on_duty"] = False
    return out


def _shift(shift: Shift, crew: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": shift.name} if shift.name else {}
    if not crew:
        if shift.zone != ALL_ZONES:
            out["zone"] = shift.zone
        out["role"] = shift.role.value
        if shift.days != ALL_DAYS:
            out["days"] = [d.value for d in shift.days]
    out["from"] = _Time(f"{shift.starts:%H:%M}")
    out["to"] = _Time(f"{shift.ends:%H:%M}")
    out["staff"] = list(shift.staff)
    return out


def _dates(dates: DateRange) -> dict[str, Any]:
    if dates.first == dates.last:
        return {"date": dates.first.isoformat()}
    return {"dates": {"from": dates.first.isoformat(), "to": dates.last.isoformat()}}


def _override(override: Crew | Leave | Swap) -> dict[str, Any]:
    if isinstance(override, Crew):
        out: dict[str, Any] = {"type": "crew", **_dates(override.dates), "zone": override.zone}
        out["role"] = override.role.value
        if override.note:
            out["note"] = override.note
        out["shifts"] = [_shift(s, crew=True) for s in override.shifts]
        return out
    if isinstance(override, Leave):
        out = {"type": "leave", "staff": override.staff_id, **_dates(override.dates)}
    else:
        out = {"type": "swap", "out": override.out, "in": override.in_, **_dates(override.dates)}
        if override.zone:
            out["zone"] = override.zone
        if override.role is not None:
            out["role"] = override.role.value
    if override.note:
        out["note"] = override.note
    return out
