"""/api/rules: which rule pack is in force, and reloading it without a restart.

`GET /api/rules` (admins, operators, integrators; a nurse has no use for it) names the
pack's file, its sha256 and when it was loaded, and per rule what it decides and the hash
of its meaning: the engine keeps a rule's state across a reload while that hash stays.

`POST /api/rules/reload` (admins) re-reads the service's rules file and swaps it in
through rules_admin.py, the same path as SIGHUP and `responsecentre rules reload`: a
broken pack, or one that does not fit the chains, the homes' overrides or the catalogue,
is a 422 with every error (file:line first) and the running pack stays. Each attempt is
audited (`rules_reload`, with the new and the previous sha256 and what was kept).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from responsecentre.alarms.view import iso
from responsecentre.rules_admin import PackRefused, RulesAdmin
from responsecentre.web.auth import Principal, Role, require
from responsecentre.web.context import AppContext, context
from responsecentre.web.models import PROTECTED, ValidationProblem, problem

router = APIRouter(prefix="/api", tags=["rules"])

Ctx = Annotated[AppContext, Depends(context)]
Reader = Annotated[Principal, Depends(require(Role.ADMIN, Role.OPERATOR, Role.INTEGRATOR))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
NO_ENGINE = {409: problem("No rule engine runs in this process (the API is served without the service)")}


class RuleSummary(BaseModel):
    name: str
    kind: str = Field(description="match, threshold, not_followed, hysteresis, supervision, count or inactive")
    action: str = Field(description="raise or clear")
    alarm: str = Field(description="the alarm kind it raises or clears")
    priority: str
    chain: str
    meaning: str = Field(description="hash of what decides the rule's state; a reload keeps the state while it stays")


class RulesView(BaseModel):
    source: str = Field(description="the file the pack in force was loaded from")
    sha256: str = Field(description="sha256 of that file's text")
    loaded_at: str
    loaded_by: str = Field(description="start, http, signal (SIGHUP) or cli (`responsecentre rules reload`)")
    rules: list[RuleSummary]


class ReloadView(BaseModel):
    sha256: str = Field(description="sha256 of the pack now in force")
    previous_sha256: str
    source: str
    rules: int = Field(description="how many rules the new pack has")
    kept: list[str] = Field(description="rules whose state was carried over (same name and meaning)")
    reset: list[str] = Field(description="rules whose meaning changed: they start idle")
    added: list[str]
    removed: list[str]
    seconds: float = Field(description="how long the engine took to swap the pack")


class PackRefusedView(BaseModel):
    """A refused pack: the running pack stays."""

    detail: str
    errors: list[str] = Field(description='each mistake, e.g. "rules/x.yaml:12: unknown key ..."')


def admin_of(ctx: AppContext) -> RulesAdmin:
    if ctx.rules is None:
        raise HTTPException(409, "no rule engine runs in this process")
    return ctx.rules


@router.get("/rules", response_model=RulesView, responses={**PROTECTED, **NO_ENGINE})
async def rules_in_force(ctx: Ctx, who: Reader) -> dict[str, Any]:
    """The rule pack in force: its file, sha256, when and how it was loaded, and its rules."""
    view = admin_of(ctx).view()
    view["loaded_at"] = iso(view.pop("loaded_at_ms"))
    return view


@router.post(
    "/rules/reload",
    response_model=ReloadView,
    responses={
        **PROTECTED,
        **NO_ENGINE,
        422: {
            "model": PackRefusedView | ValidationProblem,
            "description": "The pack was refused (its errors, file:line first); the running pack stays",
        },
    },
)
async def reload_rules(ctx: Ctx, who: Admin) -> Any:
    """Re-read the service's rules file and swap it in without a restart; rules whose
    name and meaning did not change keep their state (pending deadlines, counts, ...)."""
    admin = admin_of(ctx)
    try:
        outcome = await admin.reload("http", who.username, str(who.role))
    except PackRefused as refused:
        return JSONResponse(
            {"detail": "the rule pack was refused; the running pack stays", "errors": list(refused.errors)},
            status_code=422,
        )
    return outcome.summary()
