"""Logging in and out of the console, and /api/me.

The login form is outside the API document: browsers use it, API clients send HTTP Basic
with every request instead and never hold a session.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from responsecentre.store.keys import KEYS
from responsecentre.store.records import AUDIT_MAXLEN, audit_record
from responsecentre.web.auth import ALL_ROLES, CSRF_COOKIE, SESSION_COOKIE, SESSION_MAX_AGE_S, Principal, require
from responsecentre.web.context import AppContext, context
from responsecentre.web.models import PROTECTED, Me
from responsecentre.web.pages import PAGE_HEADERS, STATIC

router = APIRouter()

Ctx = Annotated[AppContext, Depends(context)]


@router.get("/login", include_in_schema=False)
async def login_page() -> FileResponse:
    return FileResponse(STATIC / "login.html", headers=PAGE_HEADERS)


@router.post("/login", include_in_schema=False)
async def login(
    request: Request,
    ctx: Ctx,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/console",
) -> Response:
    user = await ctx.users.verify(username, password)
    # Only a path on this site: a login link must not bounce the operator elsewhere.
    target = next if next.startswith("/") and not next.startswith("//") else "/console"
    if user is None:
        return RedirectResponse(f"/login?error=1&next={target}", status_code=303)
    token, csrf = request.app.state.sessions.issue(user)
    await ctx.redis.xadd(
        KEYS.audit(),
        audit_record(ctx.clock(), user.username, "login", str(user.role)),
        maxlen=AUDIT_MAXLEN,
        approximate=True,
    )
    response = RedirectResponse(target, status_code=303)
    common = {"max_age": SESSION_MAX_AGE_S, "samesite": "strict", "secure": ctx.secure_cookies}
    response.set_cookie(SESSION_COOKIE, token, httponly=True, **common)  # type: ignore[arg-type]
    response.set_cookie(CSRF_COOKIE, csrf, httponly=False, **common)  # type: ignore[arg-type]
    return response


@router.post("/logout", include_in_schema=False)
async def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    response.delete_cookie(CSRF_COOKIE)
    return response


@router.get("/api/me", tags=["session"], response_model=Me, responses=PROTECTED)
async def me(who: Annotated[Principal, Depends(require(*ALL_ROLES))]) -> dict[str, Any]:
    """Who is logged in, for the console's header."""
    return {"username": who.username, "role": str(who.role), "staff_id": who.staff_id}
