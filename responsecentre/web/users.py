"""/api/users: an admin manages the users of her own municipalities.

Tenant-scoped like everything else: an admin sees and manages only users all of whose
tenants are among her own, and grants only tenants she has. A user outside her scope
does not exist for her (404, never 403), so usernames of other municipalities cannot be
probed; only creating a name that is taken anywhere says so (409), as names are global.

Every change is audited with the admin as the actor and the user as `target`. Passwords
are never stored or logged in clear; a token is shown once, in the answer that creates it.

- A password reset ends the user's sessions (whoever holds them must sign in again) but
  not her API tokens, which are separate credentials: revoke those one by one.
- Deleting a user ends her sessions and deletes her tokens and failure counts.
- Unlocking lifts a lockout after failed sign-ins and forgets the failures.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response
from fastapi.exceptions import RequestValidationError

from responsecentre.alarms.view import iso
from responsecentre.web.auth import Principal, Role, UserRecord, password_problem, require
from responsecentre.web.context import AppContext, audit, context
from responsecentre.web.models import (
    BODY_ERRORS,
    PROTECTED,
    PasswordChanged,
    PasswordSet,
    TokenCreate,
    TokenCreated,
    TokenList,
    UserCreate,
    UserList,
    UserView,
    problem,
)
from responsecentre.web.throttle import Throttle
from responsecentre.web.tokens import TokenInfo

router = APIRouter(prefix="/api", tags=["users"])

Ctx = Annotated[AppContext, Depends(context)]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
NOT_FOUND = {404: problem("No such user among those of your municipalities")}
USER_ERRORS = {**PROTECTED, **NOT_FOUND}


def in_scope(admin: Principal, user: UserRecord) -> bool:
    return set(user.tenants) <= admin.tenants


def not_found(username: str) -> HTTPException:
    return HTTPException(404, f"no user {username[:64]!r} among those of your municipalities")


async def user_of(ctx: AppContext, admin: Principal, username: str) -> UserRecord:
    user = await ctx.users.get(username)
    if user is None or not in_scope(admin, user):
        raise not_found(username)
    return user


async def user_view(ctx: AppContext, throttle: Throttle, user: UserRecord) -> dict[str, Any]:
    locked = await throttle.locked_until(user.username, ctx.clock())
    return {
        "username": user.username,
        "role": str(user.role),
        "staff_id": user.staff_id,
        "tenants": list(user.tenants),
        "locked_until": iso(locked) if locked else None,
    }


def token_view(info: TokenInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "username": info.username,
        "label": info.label,
        "created_at": iso(info.created_ms),
        "last_used_at": iso(info.last_used_ms) if info.last_used_ms else None,
    }


def weak(field: str, why: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", field), "msg": why, "type": "weak_password"}])


@router.get("/users", response_model=UserList, responses=PROTECTED)
async def list_users(ctx: Ctx, who: Admin) -> dict[str, Any]:
    """The users of your municipalities (all of whose tenants are yours), with any lockout."""
    users = [u for u in await ctx.users.all() if in_scope(who, u)]
    return {"users": [await user_view(ctx, ctx.throttle, u) for u in users]}


@router.post(
    "/users",
    status_code=201,
    response_model=UserView,
    responses={
        **PROTECTED,
        **BODY_ERRORS,
        403: problem("Not an admin, a tenant that is not yours, or the CSRF token is missing"),
        409: problem("The username is taken"),
    },
)
async def create_user(body: UserCreate, ctx: Ctx, who: Admin) -> dict[str, Any]:
    """Create a user with a role and tenants (each one of yours). 409 if the name is taken."""
    foreign = sorted(set(body.tenants) - who.tenants)
    if foreign:
        raise HTTPException(403, f"you may grant only your own tenants: {', '.join(sorted(who.tenants)) or 'none'}")
    why = password_problem(body.username, body.password)
    if why is not None:
        raise weak("password", why)
    if await ctx.users.get(body.username) is not None:
        raise HTTPException(409, f"the username {body.username!r} is taken")
    user = await ctx.users.add(body.username, body.password, body.role, body.staff_id, body.tenants)
    await audit(
        ctx, who, "user_create", target=user.username, target_role=str(user.role), tenants=",".join(user.tenants)
    )
    return await user_view(ctx, ctx.throttle, user)


@router.put(
    "/users/{username}/password",
    response_model=PasswordChanged,
    responses={**USER_ERRORS, **BODY_ERRORS},
)
async def reset_password(username: str, body: PasswordSet, ctx: Ctx, who: Admin) -> dict[str, Any]:
    """Set a user's password: ends all her sessions; her API tokens stay valid."""
    user = await user_of(ctx, who, username)
    why = password_problem(user.username, body.password)
    if why is not None:
        raise weak("password", why)
    ended = await ctx.users.set_password(user.username, body.password) or 0
    await audit(ctx, who, "password_reset", target=user.username, sessions_ended=str(ended))
    return {"sessions_ended": ended}


@router.post("/users/{username}/unlock", response_model=UserView, responses=USER_ERRORS)
async def unlock_user(username: str, ctx: Ctx, who: Admin) -> dict[str, Any]:
    """Lift a lockout after failed sign-ins (and forget the failures): she can sign in at once."""
    user = await user_of(ctx, who, username)
    was_locked = await ctx.throttle.locked_until(user.username, ctx.clock()) is not None
    await ctx.throttle.unlock(user.username)
    await audit(ctx, who, "unlock", target=user.username, was_locked=str(was_locked).lower())
    return await user_view(ctx, ctx.throttle, user)


@router.post(
    "/users/{username}/tokens",
    status_code=201,
    response_model=TokenCreated,
    responses={**USER_ERRORS, **BODY_ERRORS},
)
async def create_token(username: str, ctx: Ctx, who: Admin, body: TokenCreate | None = None) -> dict[str, Any]:
    """A new API token acting as the user. The token is in this answer only; Redis keeps a hash."""
    user = await user_of(ctx, who, username)
    token, info = await ctx.tokens.create(user.username, body.label if body else "", ctx.clock())
    await audit(ctx, who, "token_create", target=user.username, token=info.id)
    return {**token_view(info), "token": token}


@router.get("/users/{username}/tokens", response_model=TokenList, responses=USER_ERRORS)
async def list_tokens(username: str, ctx: Ctx, who: Admin) -> dict[str, Any]:
    """The user's API tokens: ids, labels, when made and last used; never the secrets."""
    user = await user_of(ctx, who, username)
    return {"tokens": [token_view(t) for t in await ctx.tokens.of_user(user.username)]}


@router.delete(
    "/users/{username}/tokens/{token_id}",
    status_code=204,
    response_class=Response,
    responses={**PROTECTED, 404: problem("No such user among yours, or she has no token with this id")},
)
async def revoke_token(username: str, token_id: str, ctx: Ctx, who: Admin) -> Response:
    """Revoke a token at once: the next request with it is a 401."""
    user = await user_of(ctx, who, username)
    info = await ctx.tokens.get(token_id)
    if info is None or info.username != user.username:
        raise HTTPException(404, f"{user.username!r} has no token {token_id[:64]!r}")
    await ctx.tokens.revoke(token_id)
    await audit(ctx, who, "token_revoke", target=user.username, token=token_id)
    return Response(status_code=204)


@router.delete(
    "/users/{username}",
    status_code=204,
    response_class=Response,
    responses={**USER_ERRORS, 409: problem("You cannot delete yourself")},
)
async def delete_user(username: str, ctx: Ctx, who: Admin) -> Response:
    """Delete a user: her sessions end, her API tokens and failure counts go with her."""
    user = await user_of(ctx, who, username)
    if user.username == who.username:
        raise HTTPException(409, "you cannot delete yourself; another admin (or the CLI) can")
    await ctx.users.delete(user.username)
    await audit(ctx, who, "user_delete", target=user.username)
    return Response(status_code=204)
