"""/api/rosters: a tenant's roster read and written over HTTP, and who is on duty.

- `GET /api/rosters/{tenant}` (admins, operators): the roster in force as YAML, a whole
  staff document naming only this tenant (the one written over the API, else the staff
  file's re-serialised), with its version, sha256 and where it comes from. It holds staff
  phone numbers and e-mail addresses, so each read is audited (`view_roster`).
- `PUT /api/rosters/{tenant}` (admins): a JSON body `{"yaml": "..."}` with such a document;
  optionally `If-Match: "<version>"` (409 when the roster moved on). A mistake is a 422 with
  the loader's `api:{tenant}:line: ...` and the running roster stays. Stored in Redis
  (store/rosters.py), applied to this process at once and to the others by `sync_rosters`,
  audited (`update_roster`; a refusal `update_roster_refused`).
- `GET /api/rosters/{tenant}/who?zone=&role=&at=` (operators, admins): who is on duty, in
  roster order, with coverage against the minimum: `responsecentre roster who` over HTTP.
  Staff ids and names only, no contacts; not audited (the console may poll it).

Another tenant's roster does not exist for the user (404, web/scope.py). docs/rosters.md,
"Over the API", is the user's side of this.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from responsecentre.alarms.view import iso
from responsecentre.escalation.people import StaffRole
from responsecentre.escalation.roster import RosterError
from responsecentre.roster_cli import BadTime, parse_at
from responsecentre.store.rosters import (
    RosterStore,
    VersionConflict,
    applied_version,
    apply_roster,
    parse_tenant_roster,
    roster_yaml,
    sha256_of,
)
from responsecentre.web.auth import Principal, Role, require
from responsecentre.web.context import AppContext, audit, context
from responsecentre.web.models import BODY_ERRORS, PROTECTED, ValidationProblem, problem

router = APIRouter(prefix="/api", tags=["rosters"])

Ctx = Annotated[AppContext, Depends(context)]
Reader = Annotated[Principal, Depends(require(Role.ADMIN, Role.OPERATOR))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
NO_ROSTER = {404: problem("No such tenant among yours, or it has no roster")}
ZONE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
IF_MATCH = re.compile(r'"?([0-9]{1,18})"?')
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_MS = (datetime(9000, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1)


class RosterBody(BaseModel):
    yaml: str = Field(
        description="a whole staff document (docs/rosters.md) whose `tenants:` names only this tenant, "
        "as GET answers it; at most 64 KiB with the JSON around it"
    )


class RosterMeta(BaseModel):
    tenant: str
    version: int = Field(description="bumped by each write; 0: nothing written over the API, the file's is in force")
    sha256: str = Field(description="sha256 of the YAML text")
    source: Literal["file", "api"] = Field(description="file: escalation/staff.yaml; api: written with PUT")
    updated_by: str | None = Field(description="who wrote it (source api)")
    updated_at: str | None = Field(description="when it was written (source api)")
    staff: int = Field(description="how many people it names")


class RosterView(RosterMeta):
    yaml: str = Field(description="the roster in force; PUT it back changed (the file's loses its comments)")


class RosterRefused(BaseModel):
    """A refused roster: the one in force stays."""

    detail: str
    errors: list[str] = Field(description='each mistake, e.g. "api:vestby:12: unknown staff id ..."')


class DutyView(BaseModel):
    staff_id: str
    name: str
    roles: list[str]
    source: Literal["pattern", "override", "always"] = Field(
        description="pattern: a weekly shift; override: a crew or a swap; always: on_duty: true"
    )
    shift: str = Field(description='the shift\'s name and hours, e.g. "night 23:00-07:00"; empty for always')
    until: str | None = Field(description="when this stretch of the shift ends; null for always")
    note: str = Field(description="the override's note, e.g. a crew's or 'swap for s-n1'")


class CoverageView(BaseModel):
    on_duty: int
    minimum: int
    short: bool = Field(description="fewer than the minimum on duty: the console warns")


class WhoView(BaseModel):
    tenant: str
    zone: str
    role: StaffRole
    at: str = Field(description="the moment asked about (UTC)")
    local: str = Field(description="the same on the tenant's wall clock, e.g. 2027-12-25 06:00 CET")
    timezone: str
    people: list[DutyView] = Field(description="on duty, in roster order (the order a round robin pages them)")
    coverage: CoverageView
    notes: list[str] = Field(
        description="a local time that happens twice (the first is used); a zone the roster never names"
    )


def in_scope(who: Principal, tenant: str) -> None:
    if tenant not in who.tenants:
        raise HTTPException(404, f"no roster for tenant {tenant[:64]!r}")


def expected_version(if_match: str | None) -> int | None:
    """`If-Match: "3"` (or 3) -> 3; absent or `*` -> None (write whatever is stored).
    Checked here, after the tenant, not by the parameter's schema: a stranger's request
    learns nothing from it."""
    if if_match is None or if_match.strip() == "*":
        return None
    match = IF_MATCH.fullmatch(if_match.strip())
    if match is None:  # no version can match it: the precondition fails like a stale version
        raise HTTPException(409, f'If-Match {if_match[:40]!r} names no version; send one as GET gives it, e.g. "3"')
    return int(match.group(1))


def moment(text: str, tz: ZoneInfo, notes: list[str]) -> int:
    """`at` as epoch ms (roster_cli.parse_at: the tenant's wall clock without an offset);
    a 422 for a time that is not one, or that the clocks skip."""
    try:
        at_ms, note = parse_at(text, tz)
        if not 0 <= at_ms < LATEST_MS:
            raise BadTime(f"{text!r} is out of range: from 1970 to 9000")
    except (BadTime, OverflowError) as exc:
        message = str(exc).removeprefix("--at ") if isinstance(exc, BadTime) else f"{text!r} is out of range"
        raise RequestValidationError([{"loc": ("query", "at"), "msg": message, "type": "value_error"}]) from None
    if note:
        notes.append(note)
    return at_ms


def meta(tenant: str, staff: int, version: int, digest: str, by: str | None, at_ms: int | None) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "version": version,
        "sha256": digest,
        "source": "api" if version else "file",
        "updated_by": by,
        "updated_at": iso(at_ms),
        "staff": staff,
    }


async def staff_count(ctx: AppContext, tenant: str, version: int, text: str) -> int:
    """How many people a stored roster names: this process's if it runs that version
    already (it may not have synced yet), else read from the text."""
    running = ctx.directory.rosters.get(tenant)
    if running is not None and applied_version(ctx.directory, tenant) == version:
        return len(running.staff)
    try:
        return len((await parse_tenant_roster(text, tenant)).staff)
    except RosterError:
        return 0


@router.get("/rosters/{tenant}", response_model=RosterView, responses={**PROTECTED, **NO_ROSTER})
async def get_roster(tenant: str, ctx: Ctx, who: Reader, response: Response) -> dict[str, Any]:
    """The tenant's roster in force, as YAML, with its version (also the ETag, for If-Match)."""
    in_scope(who, tenant)
    stored = await RosterStore(ctx.redis).get(tenant)
    running = ctx.directory.rosters.get(tenant)
    if stored is not None:
        staff = await staff_count(ctx, tenant, stored.version, stored.yaml)
        view = meta(tenant, staff, stored.version, stored.sha256, stored.updated_by, stored.updated_ms)
        view["yaml"] = stored.yaml
    elif running is not None:
        text = roster_yaml(running)
        view = meta(tenant, len(running.staff), 0, sha256_of(text), None, None)
        view["yaml"] = text
    else:
        raise HTTPException(404, f"tenant {tenant!r} has no roster")
    await audit(ctx, who, "view_roster", tenant=tenant, version=str(view["version"]), source=view["source"])
    response.headers["ETag"] = f'"{view["version"]}"'
    return view


@router.put(
    "/rosters/{tenant}",
    response_model=RosterMeta,
    responses={
        **PROTECTED,
        **BODY_ERRORS,
        404: problem("Not one of your tenants"),
        409: problem("If-Match names another version than the one stored: someone wrote the roster since"),
        422: {
            "model": RosterRefused | ValidationProblem,
            "description": "The roster was refused (its mistake as api:{tenant}:line: ...); the one in force stays",
        },
    },
)
async def put_roster(
    tenant: str,
    body: RosterBody,
    ctx: Ctx,
    who: Admin,
    response: Response,
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            max_length=40,
            description='the version you read, e.g. "3" ("0": none written over the API yet), or *; '
            "a 409 if the roster moved on since",
        ),
    ] = None,
) -> Any:
    """Replace the tenant's roster. It takes effect at once in this process and within a
    few seconds in the others; a refused one changes nothing."""
    in_scope(who, tenant)
    expected = expected_version(if_match)
    try:
        roster = await parse_tenant_roster(body.yaml, tenant)
    except RosterError as exc:
        await audit(ctx, who, "update_roster_refused", tenant=tenant, why="invalid", line=str(exc.line))
        return JSONResponse(
            {"detail": "the roster was refused; the roster in force stays", "errors": [str(exc)]}, status_code=422
        )
    try:
        stored = await RosterStore(ctx.redis).put(tenant, body.yaml, who.username, ctx.clock(), expected)
    except VersionConflict as conflict:
        await audit(
            ctx, who, "update_roster_refused", tenant=tenant, why="conflict",
            expected=str(conflict.expected), version=str(conflict.current),
        )  # fmt: skip
        raise HTTPException(
            409,
            f"the roster of {tenant} is at version {conflict.current}, not {conflict.expected}: "
            "someone wrote it since you read it; GET it again and make your change on that",
        ) from None
    apply_roster(ctx.directory, tenant, roster, stored.version)
    await audit(
        ctx, who, "update_roster", tenant=tenant, version=str(stored.version),
        previous_version=str(stored.version - 1), sha256=stored.sha256, staff=str(len(roster.staff)),
    )  # fmt: skip
    response.headers["ETag"] = f'"{stored.version}"'
    return meta(tenant, len(roster.staff), stored.version, stored.sha256, stored.updated_by, stored.updated_ms)


@router.get("/rosters/{tenant}/who", response_model=WhoView, responses={**PROTECTED, **NO_ROSTER})
async def who_is_on_duty(
    tenant: str,
    ctx: Ctx,
    who: Reader,
    zone: Annotated[str, Query(pattern=ZONE_PATTERN, description="the home's zone, e.g. north")],
    role: Annotated[StaffRole, Query(description="the staff role")],
    at: Annotated[
        str | None,
        Query(
            max_length=64,
            description="ISO 8601; without an offset the tenant's wall clock (2027-03-28T06:30), with one that "
            "instant (2027-10-31T01:30Z); default now",
        ),
    ] = None,
) -> dict[str, Any]:
    """Who of `role` is on duty for homes in `zone` at `at`, in roster order, and whether
    that is fewer than the roster's minimum: the answer of `responsecentre roster who`."""
    in_scope(who, tenant)
    roster = ctx.directory.rosters.get(tenant)
    if roster is None:
        raise HTTPException(404, f"tenant {tenant!r} has no roster")
    tz = ZoneInfo(roster.timezone)
    notes: list[str] = []
    at_ms = ctx.clock() if at is None else moment(at, tz, notes)
    duties = roster.duty(zone, role, at_ms)
    known = roster.zones()
    if not duties and zone not in known:
        notes.append(
            f"zone {zone!r} is not named in the roster" + (f"; zones named there: {', '.join(known)}" if known else "")
        )
    coverage = roster.coverage(zone, role, at_ms)
    return {
        "tenant": tenant,
        "zone": zone,
        "role": role,
        "at": iso(at_ms),
        "local": (_EPOCH + timedelta(milliseconds=at_ms)).astimezone(tz).strftime("%Y-%m-%d %H:%M %Z"),
        "timezone": roster.timezone,
        "people": [
            {
                "staff_id": d.member.staff_id,
                "name": d.member.name,
                "roles": [r.value for r in d.member.roles],
                "source": d.source.value,
                "shift": d.shift,
                "until": iso(d.until_ms),
                "note": d.note,
            }
            for d in duties
        ],
        "coverage": {"on_duty": coverage.on_duty, "minimum": coverage.minimum, "short": coverage.short},
        "notes": notes,
    }
