"""Users, credentials and the one place that checks a role.

Every route declares the roles it allows with `Depends(require(...))`. Three ways in:
- a browser: the console's server-side session (web/sessions.py), a random HttpOnly cookie,
  with a CSRF token it must echo in `X-CSRF-Token` on every state-changing request;
- an integration: `Authorization: Bearer rct_...`, an API token (web/tokens.py);
- HTTP Basic, kept for simple clients; each request costs a password check.

Whichever it is, the principal is built from the user's *current* record, so a role or
tenant change applies on the next request and a deleted user is out at once.

Every password check goes through `check_password`: the throttle first (web/throttle.py:
a refused attempt costs no hashing), then argon2 on its worker (web/passwords.py), then
the audit record of a failure and, once, of a lockout. Token failures are throttled per
client address and audited the same way.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import msgspec
import redis.asyncio as aioredis
from argon2 import PasswordHasher
from fastapi import HTTPException, Request, WebSocket
from starlette.requests import HTTPConnection

from responsecentre.alarms.view import iso
from responsecentre.store.keys import KEYS, Keys
from responsecentre.store.records import AUDIT_MAXLEN, audit_record
from responsecentre.web.passwords import PasswordChecksBusy, Passwords
from responsecentre.web.sessions import SESSION_MAX_AGE_S, end_all_sessions
from responsecentre.web.throttle import Refusal, attempted_name, client_address
from responsecentre.web.tokens import TokenStore, token_id_of

if TYPE_CHECKING:
    from responsecentre.web.context import AppContext

__all__ = ["SESSION_MAX_AGE_S"]  # re-exported for session.py

SESSION_COOKIE = "rc_session"
CSRF_COOKIE = "rc_csrf"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024


class Role(StrEnum):
    OPERATOR = "operator"  # works the console: sees and acts on every alarm, sees residents
    NURSE = "nurse"  # receives escalations; acts on alarms
    ADMIN = "admin"  # everything an operator can, plus configuration and users
    INTEGRATOR = "integrator"  # devices, events and alarm states; never resident data


class UserRecord(msgspec.Struct, frozen=True):
    username: str
    role: Role
    password_hash: str
    staff_id: str | None = None
    # The municipalities whose alarms, devices and residents this user may see; a user
    # with none sees nothing. Every route filters by these (see web/scope.py).
    tenants: tuple[str, ...] = ()


_user_decoder = msgspec.json.Decoder(UserRecord)


@dataclass(frozen=True, slots=True)
class Principal:
    username: str
    role: Role
    staff_id: str | None
    csrf: str | None  # set for cookie sessions, None for HTTP Basic and tokens
    tenants: frozenset[str] = frozenset()
    session_id: str | None = None  # the console session it came with (logout ends it)
    token_id: str | None = None  # the API token it came with

    @classmethod
    def of(
        cls, user: UserRecord, csrf: str | None = None, session_id: str | None = None, token_id: str | None = None
    ) -> Principal:
        """The principal of a user's current record, with the credential it came with."""
        return cls(user.username, user.role, user.staff_id, csrf, frozenset(user.tenants), session_id, token_id)


def password_problem(username: str, password: str) -> str | None:
    """Why a new password is refused, or None. Length is what makes a password strong;
    composition rules only make people write them down."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"the password must have at least {MIN_PASSWORD_CHARS} characters"
    if len(password) > MAX_PASSWORD_CHARS:
        return f"the password may have at most {MAX_PASSWORD_CHARS} characters"
    if password.lower() == username.lower():
        return "the password must not be the username"
    return None


class Users:
    """The user records (`rc:users`), and what must change with them: a new password or a
    deleted user ends the user's sessions; a deleted user's tokens and counts go too."""

    def __init__(self, redis: aioredis.Redis, keys: Keys = KEYS, passwords: Passwords | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.passwords = passwords or Passwords()

    @property
    def hasher(self) -> PasswordHasher:
        return self.passwords.hasher

    @hasher.setter
    def hasher(self, hasher: PasswordHasher) -> None:
        self.passwords.hasher = hasher

    async def add(
        self,
        username: str,
        password: str,
        role: Role | str,
        staff_id: str | None = None,
        tenants: Iterable[str] = (),
    ) -> UserRecord:
        """Create or replace a user; replacing ends the user's sessions (the password,
        role or tenants they were opened with may have changed)."""
        record = UserRecord(
            username, Role(role), await self.passwords.hash(password), staff_id, tuple(sorted(set(tenants)))
        )
        created = await self.redis.hset(self.keys.users(), username, msgspec.json.encode(record))
        if not created:
            await end_all_sessions(self.redis, username, self.keys)
        return record

    async def get(self, username: str) -> UserRecord | None:
        raw = await self.redis.hget(self.keys.users(), username)
        return decode_user(raw) if raw else None

    async def all(self) -> list[UserRecord]:
        records = [decode_user(raw) for raw in (await self.redis.hgetall(self.keys.users())).values()]
        return sorted((r for r in records if r is not None), key=lambda r: r.username)

    async def verify(self, username: str, password: str) -> UserRecord | None:
        """The user if the password is right. Raises PasswordChecksBusy when the checks are
        full. A hash with old parameters is replaced by one with ours on success."""
        record = await self.get(username)
        ok = await self.passwords.verify(record.password_hash if record else None, password)
        if record is None or not ok:
            return None
        if self.passwords.needs_rehash(record.password_hash):
            try:
                record = msgspec.structs.replace(record, password_hash=await self.passwords.hash(password))
            except PasswordChecksBusy:
                return record  # the next sign-in will do it; this one was right
            await self.redis.hset(self.keys.users(), username, msgspec.json.encode(record))
        return record

    async def set_password(self, username: str, password: str) -> int | None:
        """New password; ends every session of the user (how many), None if no such user.
        API tokens stay: they are separate credentials (see web/tokens.py)."""
        record = await self.get(username)
        if record is None:
            return None
        record = msgspec.structs.replace(record, password_hash=await self.passwords.hash(password))
        await self.redis.hset(self.keys.users(), username, msgspec.json.encode(record))
        return await end_all_sessions(self.redis, username, self.keys)

    async def delete(self, username: str) -> bool:
        """Remove the user with her sessions, tokens and failure counts."""
        removed = await self.redis.hdel(self.keys.users(), username)
        await end_all_sessions(self.redis, username, self.keys)
        await TokenStore(self.redis, self.keys).revoke_all(username)
        await self.redis.delete(self.keys.login_failures_user(attempted_name(username)))
        return bool(removed)


def decode_user(raw: bytes) -> UserRecord | None:
    try:
        return _user_decoder.decode(raw)
    except msgspec.DecodeError:
        return None


class LoginRefused(HTTPException):
    """Refused before any check: 429 (throttled, locked) or 503 (checks busy), with Retry-After."""

    def __init__(self, status: int, detail: str, retry_after_s: int, scope: str) -> None:
        super().__init__(status, detail, headers={"Retry-After": str(retry_after_s)})
        self.retry_after_s = retry_after_s
        self.scope = scope


def _ctx(conn: HTTPConnection) -> AppContext:
    return conn.app.state.ctx  # type: ignore[no-any-return]


async def audit_attempt(conn: HTTPConnection, user: str, action: str, **detail: str) -> None:
    """An audit record about a sign-in, with the client's address; never the password."""
    ctx = _ctx(conn)
    await ctx.redis.xadd(
        KEYS.audit(),
        audit_record(ctx.clock(), user, action, address=client_address(conn), **detail),
        maxlen=AUDIT_MAXLEN,
        approximate=True,
    )


def throttled(refusal: Refusal) -> LoginRefused:
    wait = refusal.retry_after_s
    if refusal.scope == "lockout":
        detail = f"this account is locked after too many failed sign-ins; an admin can unlock it, or wait {wait} s"
    else:
        detail = f"too many failed sign-ins; try again in {wait} s"
    return LoginRefused(429, detail, wait, refusal.scope)


async def check_password(conn: HTTPConnection, username: str, password: str, via: str) -> UserRecord | None:
    """The one password check: the user if right, None if wrong; raises LoginRefused when
    throttled, locked or busy (nothing checked then, and nothing audited: a flood must not
    push real records out of the capped audit stream; the refusals are counted in metrics)."""
    ctx = _ctx(conn)
    throttle = ctx.throttle
    address = client_address(conn)
    refusal = await throttle.admit(username, address, ctx.clock())
    if refusal is not None:
        ctx.metrics.logins_throttled.labels(refusal.scope).inc()
        raise throttled(refusal)
    try:
        user = await ctx.users.verify(username, password)
    except PasswordChecksBusy as busy:
        await throttle.cancel(username, address)
        ctx.metrics.password_checks.labels("busy").inc()
        raise LoginRefused(503, f"{busy}; try again in {busy.retry_after_s} s", busy.retry_after_s, "busy") from None
    if user is not None:
        await throttle.succeeded(username, address)
        ctx.metrics.password_checks.labels("ok").inc()
        return user
    known = await ctx.redis.hexists(KEYS.users(), username)
    ctx.metrics.password_checks.labels("wrong" if known else "unknown_user").inc()
    name = attempted_name(username)
    await audit_attempt(conn, name, "login_failed", via=via)
    failures = await throttle.failed(username, ctx.clock())
    if failures is not None:
        until = ctx.clock() + throttle.limits.lockout_s * 1000
        await audit_attempt(conn, name, "lockout", via=via, failures=str(failures), until=iso(until) or "")
    return None


async def _token_principal(conn: HTTPConnection, token: str) -> Principal | None:
    ctx = _ctx(conn)
    info = await ctx.tokens.check(token, ctx.clock())
    user = await ctx.users.get(info.username) if info is not None else None
    if info is not None and user is not None:
        return Principal.of(user, token_id=info.id)
    # A wrong token: counted per address only (a token id is no secret, so counting per
    # user would let anyone lock a user out); refused unchecked once over the limit.
    refusal = await ctx.throttle.admit_address(client_address(conn), ctx.clock())
    if refusal is not None:
        ctx.metrics.logins_throttled.labels(refusal.scope).inc()
        raise throttled(refusal)
    token_id = token_id_of(token) or ""
    owner = await ctx.tokens.get(token_id) if token_id else None  # a real id with a wrong secret
    await audit_attempt(conn, owner.username if owner else "", "login_failed", via="token", token=token_id)
    return None


async def authenticate(conn: Request | WebSocket) -> Principal | None:
    """Who is asking, or None. Raises LoginRefused (429/503) for a refused HTTP request;
    a WebSocket gets None instead (its handshake is closed with 4401)."""
    try:
        principal = await _authenticate(conn)
    except LoginRefused:
        if isinstance(conn, WebSocket):
            return None
        raise
    conn.state.principal = principal
    return principal


async def _authenticate(conn: HTTPConnection) -> Principal | None:
    token = conn.cookies.get(SESSION_COOKIE)
    if token:
        session = await _ctx(conn).sessions.read(token)
        user = decode_user(session.user_record) if session is not None else None
        if session is not None and user is not None:
            return Principal.of(user, csrf=session.csrf, session_id=session.session_id)
    header = conn.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer":
        return await _token_principal(conn, credentials.strip())
    if scheme.lower() == "basic":
        try:
            username, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user = await check_password(conn, username, password, via="basic")
        return Principal.of(user) if user is not None else None
    return None


async def still_valid(conn: HTTPConnection, principal: Principal) -> bool:
    """Do the credentials `principal` came with still hold? One Redis call (a session
    check also restarts its idle timeout). For HTTP Basic, only whether the user exists:
    re-checking the password would cost argon2 each time."""
    ctx = _ctx(conn)
    if principal.session_id is not None:
        return await ctx.sessions.read_id(principal.session_id) is not None
    if principal.token_id is not None:
        return await ctx.tokens.exists(principal.token_id) and await ctx.users.get(principal.username) is not None
    return await ctx.users.get(principal.username) is not None


def require(*roles: Role) -> Callable[[Request], Awaitable[Principal]]:
    """The dependency every protected HTTP route uses."""
    allowed = frozenset(roles)

    async def dependency(request: Request) -> Principal:
        principal = await authenticate(request)
        if principal is None:
            raise HTTPException(
                401, "login required", headers={"WWW-Authenticate": 'Session realm="responsecentre", Basic-allowed'}
            )
        if principal.role not in allowed:
            raise HTTPException(403, f"role {principal.role} may not do this")
        if (
            request.method in UNSAFE_METHODS
            and principal.csrf is not None
            # bytes: compare_digest refuses a str with non-ASCII characters (a TypeError, a 500)
            and not secrets.compare_digest(request.headers.get(CSRF_HEADER, "").encode(), principal.csrf.encode())
        ):
            raise HTTPException(403, "missing or wrong CSRF token")
        return principal

    return dependency


ALL_ROLES = tuple(Role)
ACTORS = (Role.OPERATOR, Role.NURSE, Role.ADMIN)
RESIDENT_READERS = (Role.OPERATOR, Role.ADMIN)
