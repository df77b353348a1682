"""/api/incidents: many alarms of one kind at once, grouped and escalated as one.

The console shows an incident as one row with its members; an operator resolves it as a
whole with one closing code (each member's timeline says so, and the action is audited).
Operators and admins, in their own tenants: another tenant's incident does not exist for
them (404).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException

from responsecentre.alarms.desk import AlarmNotFound
from responsecentre.alarms.view import iso
from responsecentre.web import scope
from responsecentre.web.auth import Principal, Role, require
from responsecentre.web.context import AppContext, audit, context
from responsecentre.web.models import BODY_ERRORS, PROTECTED, IncidentList, IncidentResolved, ResolveBody, problem

router = APIRouter(prefix="/api", tags=["incidents"])

Ctx = Annotated[AppContext, Depends(context)]
Operators = Annotated[Principal, Depends(require(Role.OPERATOR, Role.ADMIN))]
NOT_FOUND = {404: problem("No open incident has this id in this tenant")}


@router.get("/incidents", response_model=IncidentList, responses=PROTECTED)
async def list_incidents(ctx: Ctx, who: Operators) -> dict[str, Any]:
    """The open incidents of the user's tenants, with their members (alarm ids, in the
    order they joined) and the member whose chain is the incident's escalation."""
    out: list[dict[str, Any]] = []
    for group in await ctx.desk.open_incidents(scope.tenants_of(who)):
        incident = group.incident
        if incident is None:
            continue
        lead = None
        for alarm in await ctx.desk.alarms_by_id(incident.tenant, list(incident.open)):
            if alarm.incident_lead and alarm.is_open:
                lead = alarm.id
        out.append(
            {
                "id": incident.id,
                "tenant": incident.tenant,
                "kind": incident.kind,
                "opened_at": iso(incident.opened_ms),
                "last_join_at": iso(incident.last_join_ms),
                "members": list(incident.members),
                "open": list(incident.open),
                "lead": lead,
                "unlisted": incident.unlisted,
            }
        )
    return {"incidents": out}


@router.post(
    "/incidents/{tenant}/{incident_id}/resolve",
    response_model=IncidentResolved,
    responses={**PROTECTED, **BODY_ERRORS, **NOT_FOUND},
)
async def resolve_incident(
    tenant: str, incident_id: str, body: ResolveBody, ctx: Ctx, who: Operators
) -> dict[str, Any]:
    """Close the incident and resolve every member still open with one closing code."""
    if not scope.tenants_of(who, tenant):
        raise HTTPException(404, f"no open incident {incident_id[:120]!r}")
    code = str(body.code)
    try:
        resolved = await ctx.desk.resolve_incident(tenant, incident_id, who.username, code, body.note, ctx.clock())
    except AlarmNotFound:
        raise HTTPException(404, f"no open incident {incident_id[:120]!r}") from None
    members = str(len(resolved))
    await audit(ctx, who, "resolve_incident", tenant=tenant, incident=incident_id, code=code, members=members)
    return {"resolved": resolved}
