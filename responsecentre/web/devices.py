"""/api/devices and /api/homes: what is installed where, and who lives there.

Kept apart from the alarms because the two have different readers: integrators see
devices, but resident data (name, address, key safe) only operators and admins, and
each such view is written to the audit log.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException

from responsecentre.alarms.view import iso
from responsecentre.store.keys import KEYS
from responsecentre.store.records import decode_status_record
from responsecentre.web import scope
from responsecentre.web.auth import ALL_ROLES, RESIDENT_READERS, Principal, require
from responsecentre.web.context import AppContext, audit, context
from responsecentre.web.models import PROTECTED, DeviceList, HomeView, problem

router = APIRouter(prefix="/api")

Ctx = Annotated[AppContext, Depends(context)]


@router.get("/devices", tags=["devices"], response_model=DeviceList, responses=PROTECTED)
async def list_devices(
    ctx: Ctx, who: Annotated[Principal, Depends(require(*ALL_ROLES))], tenant: str | None = None
) -> dict[str, Any]:
    """Registered devices of the user's tenants with their latest retained status (no
    resident data). A tenant that is unknown or not the user's has no devices: an empty
    list, not an error, so a probe learns nothing about which tenants exist."""
    tenants = scope.tenants_of(who, tenant)
    status: dict[tuple[str, str], dict[str, Any]] = {}
    for t in tenants:
        for device_id, raw in (await ctx.redis.hgetall(KEYS.device_status(t))).items():
            status[(t, device_id.decode())] = decode_status_record(raw)
    devices = []
    for d in ctx.directory.device_list:
        if d.tenant not in tenants:
            continue
        s = status.get((d.tenant, d.device_id))
        devices.append(
            {
                "tenant": d.tenant,
                "device_id": d.device_id,
                "kind": d.kind,
                "home_id": d.home_id,
                "online": s.online if s else None,
                "battery": s.battery if s else None,
                "status_at": iso(s.at_ms) if s else None,
            }
        )
    return {"devices": devices}


@router.get(
    "/homes/{tenant}/{home_id}",
    tags=["homes"],
    response_model=HomeView,
    responses={**PROTECTED, 404: problem("No such home in this tenant")},
)
async def get_home(
    tenant: str, home_id: str, ctx: Ctx, who: Annotated[Principal, Depends(require(*RESIDENT_READERS))]
) -> dict[str, Any]:
    """The home and its resident. Health data: every view is written to the audit log."""
    home = ctx.directory.home(tenant, home_id) if tenant in who.tenants else None
    if home is None:
        raise HTTPException(404, f"no home {home_id[:64]!r} in tenant {tenant[:64]!r}")
    await audit(ctx, who, "view_resident", tenant=tenant, home=home_id)
    return {
        "tenant": tenant,
        "home_id": home_id,
        "zone": home.zone,
        "devices": list(home.device_ids),
        "resident": dataclasses.asdict(home.resident),
    }
