"""/api/silences, a home's status and a device's maintenance: what holds alarms back.

Operators and admins set them (each change audited), for their own tenants only: another
tenant's home, device or silence does not exist for them (404, scope.py). They land in
Redis (store/suppressions.py) with a version bump; the rule processor picks them up within
a sweep (~0.2 s). Times that do not fit the clock (an end in the past, a silence longer
than 90 days) are a 409, not a 422: the body is well formed, the moment is wrong.

Ending a status, a maintenance or a silence keeps its interval with the new end instead
of deleting it, so a deadline armed during it does not fire when it ends.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.exceptions import RequestValidationError

from responsecentre.alarms.view import iso
from responsecentre.store.suppressions import SuppressionStore
from responsecentre.suppression import MAX_SILENCE_MS, MAX_UNTIL_MS, HomeStatus, Maintenance, Silence
from responsecentre.web import scope
from responsecentre.web.auth import Principal, Role, require
from responsecentre.web.context import AppContext, audit, context
from responsecentre.web.models import (
    BODY_ERRORS,
    PROTECTED,
    HomeStatusBody,
    HomeStatusView,
    MaintenanceBody,
    MaintenanceView,
    SilenceCreate,
    SilenceView,
    SuppressionList,
    problem,
)

router = APIRouter(prefix="/api", tags=["suppression"])

Ctx = Annotated[AppContext, Depends(context)]
Setter = Annotated[Principal, Depends(require(Role.OPERATOR, Role.ADMIN))]
TIMES = {409: problem("The times do not fit the clock: an end in the past, or too far ahead, or too long")}
WRITE_ERRORS = {**PROTECTED, **BODY_ERRORS, **TIMES}


def store(ctx: AppContext) -> SuppressionStore:
    return SuppressionStore(ctx.redis, ctx.directory)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def until_ms(until: datetime | None, now: int) -> int | None:
    if until is None:
        return None
    at = ms(until)
    if at <= now:
        raise HTTPException(409, "until is not in the future")
    if at > now + MAX_UNTIL_MS:
        raise HTTPException(409, f"until is more than {MAX_UNTIL_MS // 86_400_000} days ahead")
    return at


def silence_view(s: Silence, now: int) -> dict[str, Any]:
    return {
        "id": s.id,
        "tenant": s.tenant,
        "scope": s.scope,
        "target": s.target,
        "start": iso(s.start_ms),
        "end": iso(s.end_ms),
        "reason": s.reason,
        "created_by": s.created_by,
        "source": s.source,
        "active": s.covers(now),
    }


def status_view(tenant: str, home_id: str, s: HomeStatus | None, now: int) -> dict[str, Any]:
    active = s is not None and s.active(now)
    return {
        "tenant": tenant,
        "home_id": home_id,
        "status": s.status if s is not None and active else "normal",
        "since": iso(s.since_ms) if s is not None and s.since_ms else None,
        "until": iso(s.until_ms) if s is not None else None,
        "set_by": s.set_by if s is not None else "",
        "source": s.source if s is not None else "none",
    }


def maintenance_view(tenant: str, device_id: str, home_id: str, m: Maintenance | None, now: int) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "device_id": device_id,
        "home_id": home_id,
        "maintenance": m is not None and m.active(now),
        "since": iso(m.since_ms) if m is not None and m.since_ms else None,
        "until": iso(m.until_ms) if m is not None else None,
        "set_by": m.set_by if m is not None else "",
        "source": m.source if m is not None else "none",
    }


@router.get("/silences", response_model=SuppressionList, responses=PROTECTED)
async def list_suppressions(ctx: Ctx, who: Setter, tenant: str | None = None) -> dict[str, Any]:
    """Silences in force or planned, homes away or in hospital, and devices in maintenance,
    of the user's tenants (or the one asked for: another tenant's is an empty list)."""
    now = ctx.clock()
    tenants = scope.tenants_of(who, tenant)
    index = await store(ctx).load(tenants, now) if tenants else None
    if index is None:
        return {"silences": [], "homes": [], "devices": []}
    silences = sorted((s for s in index.silences if s.end_ms > now), key=lambda s: (s.start_ms, s.id))
    homes = [s for s in index.statuses.values() if s.active(now)]
    devices = [m for m in index.maintenance.values() if m.active(now)]
    return {
        "silences": [silence_view(s, now) for s in silences],
        "homes": [status_view(s.tenant, s.home_id, s, now) for s in sorted(homes, key=lambda s: (s.tenant, s.home_id))],
        "devices": [
            maintenance_view(m.tenant, m.device_id, _home_of(ctx, m.tenant, m.device_id), m, now)
            for m in sorted(devices, key=lambda m: (m.tenant, m.device_id))
        ],
    }


def _home_of(ctx: AppContext, tenant: str, device_id: str) -> str:
    device = ctx.directory.device(tenant, device_id)
    return device.home_id if device is not None else ""


@router.post(
    "/silences",
    status_code=201,
    response_model=SilenceView,
    responses={**WRITE_ERRORS, 404: problem("No such tenant, home or device among yours")},
)
async def create_silence(body: SilenceCreate, ctx: Ctx, who: Setter) -> dict[str, Any]:
    """Plan a silence of a tenant, home, device or alarm kind, from `start` (default now)
    to `end` (at most 90 days). Events are still stored and counted; alarms are not raised,
    also not later, from deadlines armed during it. Home- and tenant-wide silences let the
    exempt kinds (fire, water_leak) through; device and kind silences do not."""
    now = ctx.clock()
    if body.tenant not in who.tenants:
        raise HTTPException(404, f"no tenant {body.tenant[:64]!r}")
    target = "" if body.scope == "tenant" else body.target
    if body.scope == "home" and ctx.directory.home(body.tenant, target) is None:
        raise HTTPException(404, f"no home {target!r} in tenant {body.tenant!r}")
    if body.scope == "device" and ctx.directory.device(body.tenant, target) is None:
        raise HTTPException(404, f"no device {target!r} in tenant {body.tenant!r}")
    if body.scope == "kind" and not target:
        raise RequestValidationError([{"loc": ("body", "target"), "msg": "name the alarm kind", "type": "missing"}])
    start = max(now, ms(body.start)) if body.start is not None else now
    end = ms(body.end)
    if start > now + MAX_UNTIL_MS:
        raise HTTPException(409, f"the start is more than {MAX_UNTIL_MS // 86_400_000} days ahead")
    if end <= start:
        raise HTTPException(409, "the end is not after the start (or is in the past)")
    if end - start > MAX_SILENCE_MS:
        raise HTTPException(409, f"a silence lasts at most {MAX_SILENCE_MS // 86_400_000} days")
    silence = Silence(
        f"sil-{uuid.uuid4().hex[:16]}", body.tenant, body.scope, target, start, end, body.reason, who.username
    )
    await store(ctx).put_silence(silence, now)
    await audit(
        ctx, who, "silence_create", tenant=silence.tenant, silence=silence.id, scope=silence.scope,
        target=silence.target, start=iso(start) or "", end=iso(end) or "",
    )  # fmt: skip
    return silence_view(silence, now)


@router.delete(
    "/silences/{silence_id}",
    response_model=SilenceView,
    responses={
        **PROTECTED,
        404: problem("No silence has this id among your tenants'"),
        409: problem("The silence is set in devices/homes.yaml: remove it there"),
    },
)
async def end_silence(silence_id: str, ctx: Ctx, who: Setter) -> dict[str, Any]:
    """End a silence now; a planned one that has not begun is cancelled (its end becomes
    its start). One that has already ended is left as it is."""
    now = ctx.clock()
    st = store(ctx)
    silence = await st.silence(scope.tenants_of(who), silence_id)
    if silence is None:
        raise HTTPException(404, f"no silence with id {silence_id[:64]!r}")
    if silence.source == "yaml":
        raise HTTPException(409, f"silence {silence_id!r} is set in devices/homes.yaml: remove it there")
    if silence.end_ms <= now:
        return silence_view(silence, now)
    if silence.start_ms > now:
        ended = Silence(**{**_fields(silence), "end_ms": silence.start_ms})
        await st.drop_silence(silence)
    else:
        ended = Silence(**{**_fields(silence), "end_ms": now})
        await st.put_silence(ended, now)
    await audit(ctx, who, "silence_end", tenant=silence.tenant, silence=silence.id, end=iso(ended.end_ms) or "")
    return silence_view(ended, now)


def _fields(s: Silence) -> dict[str, Any]:
    return {name: getattr(s, name) for name in Silence.__slots__}


@router.put(
    "/homes/{tenant}/{home_id}/status",
    response_model=HomeStatusView,
    responses={**WRITE_ERRORS, 404: problem("No such home in this tenant")},
)
async def set_home_status(tenant: str, home_id: str, body: HomeStatusBody, ctx: Ctx, who: Setter) -> dict[str, Any]:
    """Mark a home `away` or `in_hospital` (optionally until a time), or back to `normal`.
    While away or in hospital its events are stored but raise nothing, except the exempt
    kinds (fire, water_leak)."""
    now = ctx.clock()
    if tenant not in who.tenants or ctx.directory.home(tenant, home_id) is None:
        raise HTTPException(404, f"no home {home_id[:64]!r} in tenant {tenant[:64]!r}")
    st = store(ctx)
    current = await st.home_status(tenant, home_id)
    active = current is not None and current.active(now)
    if body.status == "normal":
        if body.until is not None:
            raise HTTPException(409, "normal has no until")
        new = (
            HomeStatus(tenant, home_id, current.status, current.since_ms, now, who.username)
            if active and current is not None
            else None
        )
    else:
        until = until_ms(body.until, now)
        since = current.since_ms if active and current is not None else now
        new = HomeStatus(tenant, home_id, body.status, since, until, who.username)
    if new is not None:
        await st.put_home_status(new)
    await audit(
        ctx, who, "home_status", tenant=tenant, home=home_id, status=body.status,
        until=iso(new.until_ms) or "" if new is not None and body.status != "normal" else "",
    )  # fmt: skip
    return status_view(tenant, home_id, new if new is not None else current, now)


@router.put(
    "/devices/{tenant}/{device_id}/maintenance",
    response_model=MaintenanceView,
    responses={**WRITE_ERRORS, 404: problem("No such device in this tenant")},
)
async def set_maintenance(tenant: str, device_id: str, body: MaintenanceBody, ctx: Ctx, who: Setter) -> dict[str, Any]:
    """Put a device in maintenance (optionally until a time) or take it out. In maintenance
    its events are stored but raise nothing, whatever the kind (a technician's test press)."""
    now = ctx.clock()
    device = ctx.directory.device(tenant, device_id) if tenant in who.tenants else None
    if device is None:
        raise HTTPException(404, f"no device {device_id[:64]!r} in tenant {tenant[:64]!r}")
    st = store(ctx)
    current = await st.device_maintenance(tenant, device_id)
    active = current is not None and current.active(now)
    if not body.maintenance:
        if body.until is not None:
            raise HTTPException(409, "until goes with maintenance: true")
        new = Maintenance(tenant, device_id, current.since_ms, now, who.username) if active and current else None
    else:
        until = until_ms(body.until, now)
        new = Maintenance(tenant, device_id, current.since_ms if active and current else now, until, who.username)
    if new is not None:
        await st.put_maintenance(new)
    await audit(
        ctx, who, "device_maintenance", tenant=tenant, device=device_id, maintenance=str(body.maintenance).lower(),
        until=iso(new.until_ms) or "" if new is not None and body.maintenance else "",
    )  # fmt: skip
    return maintenance_view(tenant, device_id, device.home_id, new if new is not None else current, now)
