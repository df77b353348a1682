"""The JSON shape of an alarm for the API, the console feed and MQTT integrations.

It carries no resident data: name, address, key-safe code and care notes are served only
by the resident endpoints, behind a role check and an audit record.
"""

from __future__ import annotations

from typing import Any

from responsecentre.alarms.model import Alarm, Entry
from responsecentre.contract import format_ts


def iso(ms: int | None) -> str | None:
    return None if ms is None else format_ts(ms)


def alarm_view(alarm: Alarm) -> dict[str, Any]:
    esc = alarm.escalation
    return {
        "id": alarm.id,
        "tenant": alarm.tenant,
        "home_id": alarm.home_id,
        "zone": alarm.zone,
        "kind": alarm.kind,
        "priority": alarm.priority,
        "rule": alarm.rule,
        "state": str(alarm.state),
        "unhandled": alarm.unhandled,
        "chain": esc.chain.name,
        "step": esc.step + 1,
        "steps": len(esc.chain.steps),
        "round": esc.round,
        "next_step_due": iso(esc.due_ms),
        "raised_at": iso(alarm.raised_ms),
        "updated_at": iso(alarm.updated_ms),
        "acknowledged_at": iso(alarm.acknowledged_ms),
        "acknowledged_by": alarm.acknowledged_by,
        "accepted_by": alarm.accepted_by,
        "en_route_at": iso(alarm.en_route_ms),
        "on_site_at": iso(alarm.on_site_ms),
        "closed_at": iso(alarm.closed_ms),
        "closed_by": alarm.closed_by,
        "closing_code": alarm.closing_code,
        "triggers": alarm.triggers,
        "paused": esc.paused,
        "turn": esc.turn + 1,
        "dispatches": [{"staff_id": d.staff_id, "status": str(d.status)} for d in esc.dispatches],
        "incident_id": alarm.incident_id or None,
        "incident_lead": alarm.incident_lead,
    }


def entry_view(entry: Entry) -> dict[str, Any]:
    return {"ts": iso(entry.ts_ms), "what": entry.what, "by": entry.by, "detail": entry.detail}


def integration_view(alarm: Alarm) -> dict[str, Any]:
    """What goes on rc/v1/{tenant}/alarms/{id}: state, no personal data."""
    return {
        "id": alarm.id,
        "home_id": alarm.home_id,
        "kind": alarm.kind,
        "priority": alarm.priority,
        "state": str(alarm.state),
        "unhandled": alarm.unhandled,
        "step": alarm.escalation.step + 1,
        "ts": iso(alarm.updated_ms),
    }
