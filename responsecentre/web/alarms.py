"""/api/alarms: the queue, one alarm's story, and the three things a person does to it.

Routes stay thin: check the role, call the alarm desk, turn its result into the view.
The desk's two refusals map to fixed statuses so a client can tell them apart: an id we
never issued is 404, an action the alarm's state forbids (ack a resolved alarm) is 409.
An alarm the user may not see (another tenant's; for a nurse, one not paged to her) is a
404 as well: to her it does not exist (see scope.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from responsecentre.alarms.desk import AlarmNotFound
from responsecentre.alarms.model import CLOSING_CODES, Alarm, Answer, TransitionError
from responsecentre.alarms.view import alarm_view, entry_view
from responsecentre.web import scope
from responsecentre.web.auth import ACTORS, ALL_ROLES, Principal, Role, require
from responsecentre.web.context import AppContext, audit, context
from responsecentre.web.models import (
    BODY_ERRORS,
    PROTECTED,
    AckBody,
    AlarmDetail,
    AlarmList,
    AlarmView,
    ClosingCodes,
    DispatchableList,
    DispatchBody,
    NoteBody,
    PageAnswerBody,
    ResidentView,
    ResolveBody,
    problem,
)

router = APIRouter(prefix="/api", tags=["alarms"])

Ctx = Annotated[AppContext, Depends(context)]
NOT_FOUND = {404: problem("No alarm has this id")}
CONFLICT = {409: problem("The alarm's state does not allow this (e.g. it is already resolved)")}
ACTION_ERRORS = {**PROTECTED, **BODY_ERRORS, **NOT_FOUND, **CONFLICT}


def not_found(alarm_id: str) -> HTTPException:
    # The id is echoed so a person can spot a typo, but cut short: it came from the URL.
    return HTTPException(404, f"no alarm with id {alarm_id[:64]!r}")


@router.get("/alarms", response_model=AlarmList, responses=PROTECTED)
async def list_alarms(
    ctx: Ctx,
    who: Annotated[Principal, Depends(require(*ALL_ROLES))],
    state: Annotated[Literal["open", "all"], Query(description="open: the queue; all: most recently raised")] = "open",
    limit: Annotated[int, Query(ge=1, le=1000, description="at most this many (with state=all)")] = 200,
) -> dict[str, Any]:
    """Open alarms in queue order (UNHANDLED, priority, longest waiting), or with
    `state=all` the most recently raised, open or closed. Only the user's tenants; a nurse
    gets the alarms paged to her or taken by her."""
    tenants = scope.tenants_of(who)
    if state == "open":
        alarms = await ctx.desk.open_alarms(tenants)
    else:
        alarms = await ctx.desk.recent_alarms(limit=limit, tenants=tenants)
    return {"alarms": [alarm_view(a) for a in await scope.visible(ctx.redis, who, alarms)]}


@router.get("/alarms/{alarm_id}", response_model=AlarmDetail, responses={**PROTECTED, **NOT_FOUND})
async def get_alarm(alarm_id: str, ctx: Ctx, who: Annotated[Principal, Depends(require(*ALL_ROLES))]) -> dict[str, Any]:
    """One alarm with its timeline: every trigger, notification and transition."""
    alarm = await visible_alarm(ctx, who, alarm_id)
    view = alarm_view(alarm)
    view["timeline"] = [entry_view(e) for e in await ctx.desk.timeline(alarm)]
    return view


async def visible_alarm(ctx: AppContext, who: Principal, alarm_id: str) -> Alarm:
    try:
        alarm = await ctx.desk.get(alarm_id)
    except AlarmNotFound:
        raise not_found(alarm_id) from None
    if not await scope.may_see(ctx.redis, who, alarm):
        raise not_found(alarm_id)
    return alarm


async def act(ctx: AppContext, who: Principal, alarm_id: str, change: Callable[[], Awaitable[Alarm]]) -> dict[str, Any]:
    await visible_alarm(ctx, who, alarm_id)
    try:
        alarm = await change()
    except AlarmNotFound:
        raise not_found(alarm_id) from None
    except TransitionError as exc:
        raise HTTPException(409, str(exc)) from None
    return alarm_view(alarm)


@router.post("/alarms/{alarm_id}/ack", response_model=AlarmView, responses=ACTION_ERRORS)
async def ack_alarm(
    alarm_id: str,
    ctx: Ctx,
    who: Annotated[Principal, Depends(require(*ACTORS))],
    body: AckBody | None = None,
) -> dict[str, Any]:
    """Take the alarm: stops its alert chain. 409 if it is already acknowledged or closed.
    A nurse's ack is her accept of the page she got (see /accept)."""
    if who.role == Role.NURSE:
        result = await act(ctx, who, alarm_id, lambda: _answer(ctx, who, alarm_id, Answer.ACCEPT))
    else:
        result = await act(ctx, who, alarm_id, lambda: ctx.desk.acknowledge(alarm_id, who.username, ctx.clock()))
    if body is not None and body.note:
        result = await act(ctx, who, alarm_id, lambda: ctx.desk.note(alarm_id, who.username, body.note, ctx.clock()))
    await audit(ctx, who, "ack", alarm=alarm_id)
    return result


@router.post("/alarms/{alarm_id}/resolve", response_model=AlarmView, responses=ACTION_ERRORS)
async def resolve_alarm(
    alarm_id: str, body: ResolveBody, ctx: Ctx, who: Annotated[Principal, Depends(require(*ACTORS))]
) -> dict[str, Any]:
    """Close the alarm with a closing code (GET /api/closing-codes; any other code is a 422).
    409 if it is already closed."""
    code = str(body.code)
    result = await act(
        ctx, who, alarm_id, lambda: _answer(ctx, who, alarm_id, Answer.RESOLVE, code=code, note=body.note)
    )
    await audit(ctx, who, "resolve", alarm=alarm_id, code=code)
    return result


def _staff_id(who: Principal) -> str | None:
    """A nurse answers as herself (her staff id); operators and admins on her behalf."""
    if who.role != Role.NURSE:
        return None
    if who.staff_id is None:
        raise HTTPException(409, f"user {who.username} has no staff id, so no page can be hers")
    return who.staff_id


async def _answer(
    ctx: AppContext,
    who: Principal,
    alarm_id: str,
    answer: Answer,
    page_id: str | None = None,
    code: str = "",
    note: str = "",
) -> Alarm:
    return await ctx.desk.answer(
        alarm_id, _staff_id(who), who.username, answer, ctx.clock(), page_id=page_id, code=code, note=note
    )


@router.post("/alarms/{alarm_id}/accept", response_model=AlarmView, responses=ACTION_ERRORS)
async def accept_alarm(
    alarm_id: str,
    ctx: Ctx,
    who: Annotated[Principal, Depends(require(Role.NURSE))],
    body: PageAnswerBody | None = None,
) -> dict[str, Any]:
    """A paged nurse takes the alarm: the chain stops and she may read the key safe. 409
    when she was not paged, has answered this page already, or its step is over."""
    page_id = body.page_id if body is not None else None
    result = await act(ctx, who, alarm_id, lambda: _answer(ctx, who, alarm_id, Answer.ACCEPT, page_id))
    await audit(ctx, who, "accept", alarm=alarm_id)
    return result


@router.post("/alarms/{alarm_id}/decline", response_model=AlarmView, responses=ACTION_ERRORS)
async def decline_alarm(
    alarm_id: str,
    ctx: Ctx,
    who: Annotated[Principal, Depends(require(Role.NURSE))],
    body: PageAnswerBody | None = None,
) -> dict[str, Any]:
    """A paged nurse cannot take it: the chain moves on at once (the next person in a
    round robin; the next step once everyone paged in this one has declined)."""
    page_id = body.page_id if body is not None else None
    result = await act(ctx, who, alarm_id, lambda: _answer(ctx, who, alarm_id, Answer.DECLINE, page_id))
    await audit(ctx, who, "decline", alarm=alarm_id)
    return result


@router.post("/alarms/{alarm_id}/en-route", response_model=AlarmView, responses=ACTION_ERRORS)
async def en_route_alarm(
    alarm_id: str, ctx: Ctx, who: Annotated[Principal, Depends(require(*ACTORS))]
) -> dict[str, Any]:
    """The nurse who accepted is on her way (an operator may record it for her)."""
    result = await act(ctx, who, alarm_id, lambda: _answer(ctx, who, alarm_id, Answer.EN_ROUTE))
    await audit(ctx, who, "en_route", alarm=alarm_id)
    return result


@router.post("/alarms/{alarm_id}/on-site", response_model=AlarmView, responses=ACTION_ERRORS)
async def on_site_alarm(
    alarm_id: str, ctx: Ctx, who: Annotated[Principal, Depends(require(*ACTORS))]
) -> dict[str, Any]:
    """The nurse who accepted is with the resident (an operator may record it for her)."""
    result = await act(ctx, who, alarm_id, lambda: _answer(ctx, who, alarm_id, Answer.ON_SITE))
    await audit(ctx, who, "on_site", alarm=alarm_id)
    return result


@router.get(
    "/alarms/{alarm_id}/resident",
    response_model=ResidentView,
    responses={**PROTECTED, **NOT_FOUND, 409: problem("A nurse reads the resident only after accepting the alarm")},
)
async def alarm_resident(
    alarm_id: str, ctx: Ctx, who: Annotated[Principal, Depends(require(*ACTORS))]
) -> dict[str, Any]:
    """The resident of the alarm's home with the key-safe code and care notes: for
    operators, admins, and the nurse who accepted this alarm while it is open. Health
    data: every read is audited."""
    alarm = await visible_alarm(ctx, who, alarm_id)
    if who.role == Role.NURSE and (alarm.accepted_by is None or alarm.accepted_by != who.staff_id or not alarm.is_open):
        raise HTTPException(409, "only the nurse who accepted this open alarm may read its resident; accept it first")
    home = ctx.directory.home(alarm.tenant, alarm.home_id)
    if home is None:
        raise not_found(alarm_id)
    await audit(ctx, who, "view_resident", tenant=alarm.tenant, home=alarm.home_id, alarm=alarm_id)
    return dataclasses.asdict(home.resident)


@router.post("/alarms/{alarm_id}/note", response_model=AlarmView, responses=ACTION_ERRORS)
async def note_alarm(
    alarm_id: str, body: NoteBody, ctx: Ctx, who: Annotated[Principal, Depends(require(*ACTORS))]
) -> dict[str, Any]:
    """Add a line to the alarm's timeline, open or closed: the record is what is audited later."""
    result = await act(ctx, who, alarm_id, lambda: ctx.desk.note(alarm_id, who.username, body.text, ctx.clock()))
    await audit(ctx, who, "note", alarm=alarm_id)
    return result


@router.get("/alarms/{alarm_id}/dispatchable", response_model=DispatchableList, responses={**PROTECTED, **NOT_FOUND})
async def dispatchable(
    alarm_id: str, ctx: Ctx, who: Annotated[Principal, Depends(require(Role.OPERATOR, Role.ADMIN))]
) -> dict[str, Any]:
    """Whom the operator may dispatch now: everyone on duty in the alarm's zone (not
    operators), each role in roster order. Names and roles only, no contact details."""
    alarm = await visible_alarm(ctx, who, alarm_id)
    staff = ctx.desk.dispatchable(alarm, ctx.clock())
    return {
        "zone": alarm.zone,
        "staff": [{"staff_id": m.staff_id, "name": m.name, "role": str(role)} for m, role in staff],
    }


@router.post("/alarms/{alarm_id}/dispatch", response_model=AlarmView, responses=ACTION_ERRORS)
async def dispatch_alarm(
    alarm_id: str,
    body: DispatchBody,
    ctx: Ctx,
    who: Annotated[Principal, Depends(require(Role.OPERATOR, Role.ADMIN))],
) -> dict[str, Any]:
    """Page a chosen person outside the chain (GET .../dispatchable lists who may be
    chosen). She answers like any page; while she has accepted, the chain waits. 409 when
    she is not on duty in the zone, is already dispatched and has not declined, or the
    alarm is closed or someone is on site."""
    staff_id = body.staff_id
    result = await act(ctx, who, alarm_id, lambda: ctx.desk.dispatch(alarm_id, staff_id, who.username, ctx.clock()))
    await audit(ctx, who, "dispatch", alarm=alarm_id, staff=body.staff_id)
    return result


@router.get("/closing-codes", response_model=ClosingCodes, responses=PROTECTED)
async def closing_codes(_: Annotated[Principal, Depends(require(*ALL_ROLES))]) -> dict[str, Any]:
    """The codes a resolve may use, with the labels the console shows."""
    return {"codes": [{"code": c, "label": label} for c, label in CLOSING_CODES.items()]}
