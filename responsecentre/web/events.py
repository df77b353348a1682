"""/api/events and /api/dead-letters: what an integrator needs to see her devices arrive.

Both read the newest entries first and scan a bounded number of them (SCAN_MAX): a
request never walks a tenant's whole event log. Dead letters are one stream for all
tenants; an entry belongs to the tenant its topic names (`rc/v1/{tenant}/...`), and one
whose topic names no tenant is shown to nobody here (it may be anyone's). Neither
carries resident data: events name devices, never people.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Query

from responsecentre.alarms.view import iso
from responsecentre.contract import PREFIX
from responsecentre.store.keys import KEYS
from responsecentre.store.records import EventRecord
from responsecentre.web.auth import Principal, Role, require
from responsecentre.web.context import AppContext, context
from responsecentre.web.models import PROTECTED, DeadLetterList, EventList, problem

router = APIRouter(prefix="/api", tags=["events"])

Ctx = Annotated[AppContext, Depends(context)]
SCAN_MAX = 5_000  # newest entries looked at per request, whatever the filter
CHUNK = 500
EVENT_READERS = (Role.OPERATOR, Role.ADMIN, Role.INTEGRATOR)
DEAD_LETTER_READERS = (Role.ADMIN, Role.INTEGRATOR)
Limit = Annotated[int, Query(ge=1, le=1000, description="at most this many, newest first")]


async def _newest(ctx: AppContext, key: str) -> Any:
    """(id, fields) pairs of a stream, newest first, at most SCAN_MAX of them, in chunks."""
    top = "+"
    seen = 0
    while seen < SCAN_MAX:
        chunk = await ctx.redis.xrevrange(key, max=top, min="-", count=CHUNK)
        if not chunk:
            return
        for entry_id, fields in chunk:
            yield entry_id.decode(), fields
        seen += len(chunk)
        if len(chunk) < CHUNK:
            return
        top = "(" + chunk[-1][0].decode()


@router.get(
    "/events/{tenant}",
    response_model=EventList,
    responses={**PROTECTED, 404: problem("No such tenant among the user's")},
)
async def list_events(
    tenant: str,
    ctx: Ctx,
    who: Annotated[Principal, Depends(require(*EVENT_READERS))],
    device: Annotated[str | None, Query(max_length=128, description="only this device's events")] = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    """The tenant's newest stored events (of the last 5,000), optionally one device's."""
    if tenant not in who.tenants:
        raise HTTPException(404, f"no tenant {tenant[:64]!r}")
    events: list[dict[str, Any]] = []
    async for entry_id, fields in _newest(ctx, KEYS.events(tenant)):
        try:
            record = EventRecord.decode(fields)
        except (KeyError, ValueError):
            continue
        if device is not None and record.device != device:
            continue
        events.append(
            {
                "position": entry_id,
                "device_id": record.device,
                "event_id": record.id,
                "type": record.type,
                "ts": iso(record.dts),
                "received_at": iso(record.recv) if record.recv else None,
                "value": record.value,
                "data": msgspec.json.decode(record.data) if record.data else None,
            }
        )
        if len(events) >= limit:
            break
    return {"events": events}


def topic_tenant(topic: str) -> str | None:
    """The tenant a topic names, if it is under our prefix at all."""
    parts = topic.split("/")
    head = PREFIX.split("/")
    return parts[len(head)] if parts[: len(head)] == head and len(parts) > len(head) and parts[len(head)] else None


@router.get("/dead-letters", response_model=DeadLetterList, responses=PROTECTED)
async def list_dead_letters(
    ctx: Ctx,
    who: Annotated[Principal, Depends(require(*DEAD_LETTER_READERS))],
    tenant: Annotated[str | None, Query(max_length=128, description="only this tenant's")] = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    """Messages the centre refused (of the last 5,000), with the reason, for the user's
    tenants: how an integrator finds out why her device's events do not arrive."""
    wanted = who.tenants if tenant is None else who.tenants & {tenant}
    letters: list[dict[str, Any]] = []
    async for entry_id, fields in _newest(ctx, KEYS.dead_letters()):
        topic = fields.get(b"topic", b"").decode("utf-8", "replace")
        if topic_tenant(topic) not in wanted:
            continue
        letters.append(
            {
                "position": entry_id,
                "topic": topic,
                "reason": fields.get(b"reason", b"").decode("utf-8", "replace"),
                "detail": fields.get(b"detail", b"").decode("utf-8", "replace"),
                "size": int(fields.get(b"size", b"0") or 0),
                "sample": fields.get(b"sample", b"").decode("utf-8", "replace"),
                "received_at": iso(int(fields[b"recv"])) if fields.get(b"recv") else None,
            }
        )
        if len(letters) >= limit:
            break
    return {"dead_letters": letters}
