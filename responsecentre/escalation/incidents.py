"""Incidents: many alarms of one kind in one tenant at once become one incident with one
escalation, not 300 pages (a power cut takes 300 devices offline; a broker outage). Pure.

Per (tenant, alarm kind) the state keeps the raise times of the recent open alarms that
are not yet in an incident (at most `min_alarms - 1` of them, none older than `within`)
and the open incident, if any. `decide()` is called when an alarm is raised:

- `Standalone`: fewer than `min_alarms` open alarms of the kind within `within`; the
  alarm escalates on its own, as before.
- `Open`: this alarm is the Nth within `within`: an incident opens with all N as members
  (the earlier ones join it: the shell stops their own escalations and starts the
  incident's one).
- `Join`: an incident of the kind is open; the alarm is a member, paged through it.

An incident closes (`Closed`) when every member is closed (`close_member`), when it is
closed as a whole (`close`: an operator resolved it), or after a quiet period with no new
member (`quiet`, default `within`): later alarms of the kind then count from zero again,
and may open a new incident. The shell calls `expire()` at `quiet_due_ms()` (or lets the
next `decide()` do it). What happens to members still open when an incident closes by
quiet is the desk's business: they stay with the incident's escalation.

An alarm closed before the threshold is reached no longer counts (`close_member`): an
alarm that is already over is not part of a mass event needing one escalation.

Incident ids are `tenant:kind:first-member-id`, so a replay of the same alarms yields the
same ids. Everything is a frozen msgspec struct; the state is bounded: `recent` by
`min_alarms`, an incident's listed members by MAX_MEMBERS (further members are counted
in `unlisted` and still join).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import msgspec

from responsecentre.escalation.chains import ChainError, parse_duration_ms

MAX_MEMBERS = 5_000  # members listed per incident; a power cut in a large municipality fits
MAX_MIN_ALARMS = 1_000  # a threshold beyond this would keep too much state per kind


class IncidentRule(msgspec.Struct, frozen=True):
    """`min_alarms` open alarms of `kind` raised within `within_ms` form an incident;
    it takes no new members after `quiet_ms` without one."""

    kind: str
    min_alarms: int
    within_ms: int
    quiet_ms: int


class IncidentConfig(msgspec.Struct, frozen=True):
    rules: dict[str, IncidentRule] = {}

    def rule(self, kind: str) -> IncidentRule | None:
        return self.rules.get(kind)


class Incident(msgspec.Struct, frozen=True):
    id: str
    tenant: str
    kind: str
    opened_ms: int
    last_join_ms: int
    members: tuple[str, ...]  # alarm ids in order of joining (at most MAX_MEMBERS)
    open: tuple[str, ...]  # the members not yet closed
    unlisted: int = 0  # members beyond MAX_MEMBERS: counted, not listed, not tracked


class GroupState(msgspec.Struct, frozen=True):
    """One (tenant, kind): recent open alarms outside an incident, and the open incident."""

    tenant: str
    kind: str
    recent: tuple[tuple[int, str], ...] = ()  # (raised_ms, alarm_id), oldest first
    incident: Incident | None = None

    @property
    def empty(self) -> bool:
        """Nothing to keep: the shell may drop the stored state."""
        return not self.recent and self.incident is None


class Standalone(msgspec.Struct, frozen=True, tag="standalone"):
    counted: int = 0  # open alarms of the kind within the window, this one included (0: not grouped)


class Open(msgspec.Struct, frozen=True, tag="open"):
    incident_id: str
    members: tuple[str, ...]  # the N alarms, oldest first, this one last
    opened_ms: int


class Join(msgspec.Struct, frozen=True, tag="join"):
    incident_id: str


class CloseReason(StrEnum):
    MEMBERS_CLOSED = "members_closed"  # every member alarm is closed
    QUIET = "quiet"  # no new member for the quiet period
    CLOSED = "closed"  # closed as a whole (an operator resolved it)


class Closed(msgspec.Struct, frozen=True, tag="closed"):
    incident_id: str
    reason: CloseReason
    closed_ms: int


Decision = Standalone | Open | Join


def incident_id(tenant: str, kind: str, first_member: str) -> str:
    return f"{tenant}:{kind}:{first_member}"


def decide(
    state: GroupState | None, alarm_id: str, kind: str, tenant: str, now_ms: int, config: IncidentConfig
) -> tuple[GroupState, Decision]:
    """An alarm of `kind` was raised in `tenant` at `now_ms`: alone, opening an incident,
    or joining the open one. A repeated call for the same alarm (a replay after a crash)
    changes nothing and answers as before for members (Join) or recent alarms (Standalone)."""
    if state is None:
        state = GroupState(tenant, kind)
    rule = config.rule(kind)
    if rule is None:
        return state, Standalone()
    state, _ = expire(state, config, now_ms)
    incident = state.incident
    if incident is not None:
        if alarm_id in incident.members:
            return state, Join(incident.id)
        if len(incident.members) < MAX_MEMBERS:
            grown = msgspec.structs.replace(
                incident,
                members=(*incident.members, alarm_id),
                open=(*incident.open, alarm_id),
                last_join_ms=max(incident.last_join_ms, now_ms),
            )
        else:
            grown = msgspec.structs.replace(
                incident, unlisted=incident.unlisted + 1, last_join_ms=max(incident.last_join_ms, now_ms)
            )
        return msgspec.structs.replace(state, incident=grown), Join(incident.id)
    recent = tuple(entry for entry in state.recent if now_ms - entry[0] <= rule.within_ms)
    if any(seen == alarm_id for _, seen in recent):
        return msgspec.structs.replace(state, recent=recent), Standalone(len(recent))
    recent = (*recent, (now_ms, alarm_id))
    if len(recent) < rule.min_alarms:
        return msgspec.structs.replace(state, recent=recent), Standalone(len(recent))
    members = tuple(alarm for _, alarm in recent)
    opened = Incident(
        id=incident_id(tenant, kind, members[0]),
        tenant=tenant,
        kind=kind,
        opened_ms=now_ms,
        last_join_ms=now_ms,
        members=members,
        open=members,
    )
    return GroupState(tenant, kind, (), opened), Open(opened.id, members, now_ms)


def close_member(state: GroupState, alarm_id: str, now_ms: int) -> tuple[GroupState, Closed | None]:
    """A member (or a recent alarm) was closed. The incident closes with its last open
    listed member, unless members beyond MAX_MEMBERS were counted (then it waits for quiet)."""
    recent = tuple(entry for entry in state.recent if entry[1] != alarm_id)
    incident = state.incident
    if incident is None or alarm_id not in incident.open:
        return msgspec.structs.replace(state, recent=recent), None
    still_open = tuple(member for member in incident.open if member != alarm_id)
    if not still_open and incident.unlisted == 0:
        closed = Closed(incident.id, CloseReason.MEMBERS_CLOSED, now_ms)
        return msgspec.structs.replace(state, recent=recent, incident=None), closed
    incident = msgspec.structs.replace(incident, open=still_open)
    return msgspec.structs.replace(state, recent=recent, incident=incident), None


def close(state: GroupState, incident: str, now_ms: int) -> tuple[GroupState, Closed | None]:
    """Close the open incident as a whole; a stale or unknown id changes nothing."""
    if state.incident is None or state.incident.id != incident:
        return state, None
    return msgspec.structs.replace(state, incident=None), Closed(incident, CloseReason.CLOSED, now_ms)


def quiet_due_ms(state: GroupState, config: IncidentConfig) -> int | None:
    """When the open incident stops taking members, for the shell's timer."""
    rule = config.rule(state.kind)
    if state.incident is None or rule is None:
        return None
    return state.incident.last_join_ms + rule.quiet_ms


def expire(state: GroupState, config: IncidentConfig, now_ms: int) -> tuple[GroupState, Closed | None]:
    """Close the open incident if no member joined for the quiet period (at its end
    exactly, it is closed), and forget recent alarms older than the window."""
    rule = config.rule(state.kind)
    if rule is None:
        return state, None
    recent = tuple(entry for entry in state.recent if now_ms - entry[0] <= rule.within_ms)
    due = quiet_due_ms(state, config)
    if state.incident is not None and due is not None and now_ms >= due:
        closed = Closed(state.incident.id, CloseReason.QUIET, now_ms)
        return msgspec.structs.replace(state, recent=recent, incident=None), closed
    if recent == state.recent:
        return state, None
    return msgspec.structs.replace(state, recent=recent), None


class IncidentConfigError(ValueError):
    pass


_RULE_KEYS = ("min_alarms", "within", "quiet")


def parse_incident_config(doc: Mapping[str, Any] | None) -> IncidentConfig:
    """The `incidents:` section of a YAML document (e.g. escalation/chains.yaml):

        incidents:
          device_offline: {min_alarms: 20, within: 5m}
          broker_unreachable: {min_alarms: 3, within: 1m, quiet: 10m}

    No section: no grouping (every alarm stands alone)."""
    section = (doc or {}).get("incidents")
    if section is None:
        return IncidentConfig()
    if not isinstance(section, Mapping):
        raise IncidentConfigError("incidents must be a mapping of alarm kind -> {min_alarms, within}")
    rules: dict[str, IncidentRule] = {}
    for kind, spec in section.items():
        where = f"incidents.{kind}"
        if not isinstance(spec, Mapping):
            raise IncidentConfigError(f"{where} must be a mapping like {{min_alarms: 20, within: 5m}}")
        unknown = sorted(str(key) for key in spec if key not in _RULE_KEYS)
        if unknown:
            raise IncidentConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(_RULE_KEYS)})")
        count = spec.get("min_alarms")
        if isinstance(count, bool) or not isinstance(count, int) or not 2 <= count <= MAX_MIN_ALARMS:
            raise IncidentConfigError(f"{where}: min_alarms must be a whole number from 2 to {MAX_MIN_ALARMS}")
        if "within" not in spec:
            raise IncidentConfigError(f"{where} is missing 'within' (e.g. within: 5m)")
        try:
            within = parse_duration_ms(spec["within"])
            quiet = parse_duration_ms(spec["quiet"]) if "quiet" in spec else within
        except ChainError as exc:
            raise IncidentConfigError(f"{where}: {exc}") from None
        rules[str(kind)] = IncidentRule(str(kind), count, within, quiet)
    return IncidentConfig(rules)
