"""Signing in and out of the console, /api/me and changing one's own password.

The login form is outside the API document: browsers use it; API clients send an API
token (or HTTP Basic) with every request instead and never hold a session.

A refused sign-in (too many failures, a locked account, too many checks in progress) is
answered 429 or 503 with Retry-After, as a page a person can read when a browser asks,
else as JSON; a wrong password sends the browser back to the form.
"""

from __future__ import annotations

import html
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from responsecentre.web.auth import (
    ALL_ROLES,
    CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    LoginRefused,
    Principal,
    audit_attempt,
    check_password,
    password_problem,
    require,
)
from responsecentre.web.context import AppContext, audit, context
from responsecentre.web.models import BODY_ERRORS, PROTECTED, Me, PasswordChange, PasswordChanged, problem
from responsecentre.web.pages import PAGE_HEADERS, STATIC
from responsecentre.web.sessions import session_id

router = APIRouter()

Ctx = Annotated[AppContext, Depends(context)]

REFUSED_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Sign in — Response centre</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/static/console.css">
</head>
<body class="login-page">
  <main class="login-box">
    <p class="login-product">Response centre</p>
    <h1>Sign in</h1>
    <p class="login-error" role="alert">{message}</p>
    <p><a href="/login?next={next}">Back to sign in</a></p>
  </main>
</body>
</html>
"""


def safe_target(next_path: str) -> str:
    """Only a path on this site: a login link must not bounce the operator elsewhere."""
    return next_path if next_path.startswith("/") and not next_path.startswith(("//", "/\\")) else "/console"


def set_session_cookies(response: Response, token: str, csrf: str, secure: bool) -> None:
    common: dict[str, Any] = {"max_age": SESSION_MAX_AGE_S, "samesite": "strict", "secure": secure, "path": "/"}
    response.set_cookie(SESSION_COOKIE, token, httponly=True, **common)
    response.set_cookie(CSRF_COOKIE, csrf, httponly=False, **common)


def refused(request: Request, refusal: LoginRefused, target: str) -> Response:
    headers = {**(refusal.headers or {}), "Cache-Control": "no-store"}
    if "text/html" in request.headers.get("accept", ""):
        page = REFUSED_PAGE.format(message=html.escape(str(refusal.detail)), next=quote(target, safe="/"))
        return HTMLResponse(page, status_code=refusal.status_code, headers={**PAGE_HEADERS, **headers})
    return JSONResponse({"detail": refusal.detail}, status_code=refusal.status_code, headers=headers)


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
    target = safe_target(next)
    try:
        user = await check_password(request, username, password, via="form")
    except LoginRefused as refusal:
        return refused(request, refusal, target)
    if user is None:
        return RedirectResponse(f"/login?error=1&next={quote(target, safe='/')}", status_code=303)
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:  # a fresh session id on every sign-in: no fixation, no stale session left
        await ctx.sessions.end(session_id(previous))
    token, csrf = await ctx.sessions.issue(user.username)
    await audit_attempt(request, user.username, "login", role=str(user.role))
    response = RedirectResponse(target, status_code=303)
    set_session_cookies(response, token, csrf, ctx.secure_cookies)
    return response


@router.post("/logout", include_in_schema=False)
async def logout(request: Request, ctx: Ctx) -> Response:
    """Ends the session on the server, not only the cookie in this browser."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        username = await ctx.sessions.end(session_id(token))
        if username is not None:
            await audit_attempt(request, username, "logout")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


@router.get("/api/me", tags=["session"], response_model=Me, responses=PROTECTED)
async def me(who: Annotated[Principal, Depends(require(*ALL_ROLES))]) -> dict[str, Any]:
    """Who is logged in, for the console's header."""
    return {"username": who.username, "role": str(who.role), "staff_id": who.staff_id}


@router.post(
    "/api/me/password",
    tags=["session"],
    response_model=PasswordChanged,
    responses={
        **PROTECTED,
        **BODY_ERRORS,
        403: problem("The current password is wrong, the role may not do this, or the CSRF token is missing"),
    },
)
async def change_password(
    body: PasswordChange,
    request: Request,
    response: Response,
    ctx: Ctx,
    who: Annotated[Principal, Depends(require(*ALL_ROLES))],
) -> dict[str, Any]:
    """Change your own password (the current one is checked, and counted like a sign-in).
    Ends every session of yours, on every device; the console that asked gets a new one in
    this response, so it stays signed in. API tokens stay valid (revoke them apart)."""
    why = password_problem(who.username, body.new_password)
    if why is not None:
        raise RequestValidationError([{"loc": ("body", "new_password"), "msg": why, "type": "weak_password"}])
    if await check_password(request, who.username, body.current_password, via="password_change") is None:
        raise HTTPException(403, "the current password is wrong")
    ended = await ctx.users.set_password(who.username, body.new_password) or 0
    await audit(ctx, who, "password_change", sessions_ended=str(ended))
    if who.session_id is not None:
        token, csrf = await ctx.sessions.issue(who.username)
        set_session_cookies(response, token, csrf, ctx.secure_cookies)
    return {"sessions_ended": ended}
