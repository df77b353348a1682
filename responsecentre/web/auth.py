"""Users, sessions and the one place that checks a role.

Every route declares the roles it allows with `Depends(require(...))`; a browser is
authenticated by a signed, HttpOnly session cookie (with a CSRF token it must echo in
`X-CSRF-Token` on every state-changing request), an API client by HTTP Basic.
Passwords are hashed with argon2.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

import msgspec
import redis.asyncio as aioredis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import HTTPException, Request, WebSocket
from itsdangerous import BadSignature, URLSafeTimedSerializer

from responsecentre.store.keys import KEYS, Keys

SESSION_COOKIE = "rc_session"
CSRF_COOKIE = "rc_csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_MAX_AGE_S = 12 * 3600
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Role(StrEnum):
    OPERATOR = "operator"  # works the console: sees and acts on every alarm, sees residents
    NURSE = "nurse"  # receives escalations; acts on alarms
    ADMIN = "admin"  # everything an operator can, plus configuration
    INTEGRATOR = "integrator"  # devices, events and alarm states; never resident data


class UserRecord(msgspec.Struct, frozen=True):
    username: str
    role: Role
    password_hash: str
    staff_id: str | None = None
    # The municipalities whose alarms, devices and residents this user may see; a user
    # with none sees nothing. Every route filters by these (see web/scope.py).
    tenants: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Principal:
    username: str
    role: Role
    staff_id: str | None
    csrf: str | None  # set for cookie sessions, None for HTTP Basic
    tenants: frozenset[str] = frozenset()


class Users:
    def __init__(self, redis: aioredis.Redis, keys: Keys = KEYS) -> None:
        self.redis = redis
        self.keys = keys
        self.hasher = PasswordHasher()
        self._verified: dict[tuple[str, str], float] = {}

    async def add(
        self,
        username: str,
        password: str,
        role: Role | str,
        staff_id: str | None = None,
        tenants: Iterable[str] = (),
    ) -> UserRecord:
        record = UserRecord(username, Role(role), self.hasher.hash(password), staff_id, tuple(sorted(set(tenants))))
        await self.redis.hset(self.keys.users(), username, msgspec.json.encode(record))
        return record

    async def get(self, username: str) -> UserRecord | None:
        raw = await self.redis.hget(self.keys.users(), username)
        return msgspec.json.decode(raw, type=UserRecord) if raw else None

    async def verify(self, username: str, password: str) -> UserRecord | None:
        record = await self.get(username)
        if record is None:
            self.hasher.hash(password)  # same cost whether or not the user exists
            return None
        try:
            self.hasher.verify(record.password_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        return record


class Sessions:
    def __init__(self, secret: str) -> None:
        self.serializer = URLSafeTimedSerializer(secret, salt="rc-session")

    def issue(self, user: UserRecord) -> tuple[str, str]:
        csrf = secrets.token_urlsafe(24)
        token = self.serializer.dumps(
            {"u": user.username, "r": str(user.role), "s": user.staff_id, "c": csrf, "t": list(user.tenants)}
        )
        return token, csrf

    def read(self, token: str) -> Principal | None:
        try:
            data = self.serializer.loads(token, max_age=SESSION_MAX_AGE_S)
            return Principal(data["u"], Role(data["r"]), data.get("s"), data["c"], frozenset(data.get("t", ())))
        except (BadSignature, KeyError, ValueError, TypeError):
            return None


async def authenticate(conn: Request | WebSocket) -> Principal | None:
    sessions: Sessions = conn.app.state.sessions
    users: Users = conn.app.state.users
    token = conn.cookies.get(SESSION_COOKIE)
    if token:
        principal = sessions.read(token)
        if principal is not None:
            return principal
    header = conn.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            username, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user = await users.verify(username, password)
        if user is not None:
            return Principal(user.username, user.role, user.staff_id, None, frozenset(user.tenants))
    return None


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
            and not secrets.compare_digest(request.headers.get(CSRF_HEADER, ""), principal.csrf)
        ):
            raise HTTPException(403, "missing or wrong CSRF token")
        return principal

    return dependency


ALL_ROLES = tuple(Role)
ACTORS = (Role.OPERATOR, Role.NURSE, Role.ADMIN)
RESIDENT_READERS = (Role.OPERATOR, Role.ADMIN)
