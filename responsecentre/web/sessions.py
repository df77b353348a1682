"""Console sessions, kept server-side in Redis, so that they can end.

A signed cookie cannot be taken back: it stayed valid after /logout for its whole 12 hours.
Here the cookie is a random token and Redis keeps only sha256(token) -> (username, CSRF
token, created, expires); a copy of Redis (a backup, a replica) holds no usable cookie.

- Idle timeout: the key's TTL, refreshed on every use (each request, and once a second
  while the console's live feed is open: the queue on screen *is* the operator working,
  and a console that logged itself out in a quiet night would hide the next alarm).
- Absolute lifetime (12 h, a long shift): checked on every use whatever the activity;
  then the console shows the login page.
- Each user's session ids are in a sorted set, so logout ends one session and a password
  change, an admin's reset or the user's deletion end all of them.

Who the session belongs to is all it says: the role, staff id and tenants are read from
the user's record on every request (web/auth.py), so a change applies at once, and a
deleted user's session ends with its record.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from responsecentre.clock import Clock, system_clock
from responsecentre.store.keys import KEYS, Keys

log = logging.getLogger(__name__)

SESSION_IDLE_S = 30 * 60
SESSION_MAX_AGE_S = 12 * 3600
WATCH_EVERY_S = 1.0  # how often an open /ws re-checks its session
CLOSE_SESSION_ENDED = 4401  # as feed.py's CLOSE_UNAUTHENTICATED

# KEYS: session, users hash. ARGV: now_ms, idle_ms.
# Returns nil if the session is gone or past its lifetime (then deleted), or if its user
# no longer exists; else {username, csrf, user record}, with the idle TTL refreshed.
_READ = """
local s = redis.call('HMGET', KEYS[1], 'username', 'csrf', 'expires')
if not s[1] then return nil end
local left = tonumber(s[3] or 0) - tonumber(ARGV[1])
if left <= 0 then
  redis.call('DEL', KEYS[1])
  return nil
end
local user = redis.call('HGET', KEYS[2], s[1])
if not user then
  redis.call('DEL', KEYS[1])
  return nil
end
redis.call('PEXPIRE', KEYS[1], math.min(tonumber(ARGV[2]), left))
return {s[1], s[2], user}
"""


def session_id(token: str) -> str:
    """What Redis knows of a cookie: its sha256 (the token has 256 random bits; no salt needed)."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True, slots=True)
class SessionData:
    session_id: str
    username: str
    csrf: str
    user_record: bytes  # the user's record as stored in the users hash (web/auth.py decodes it)


class SessionStore:
    def __init__(
        self,
        redis: aioredis.Redis,
        idle_s: int = SESSION_IDLE_S,
        max_age_s: int = SESSION_MAX_AGE_S,
        clock: Clock = system_clock,
        keys: Keys = KEYS,
    ) -> None:
        self.redis = redis
        self.idle_s = idle_s
        self.max_age_s = max_age_s
        self.clock = clock
        self.keys = keys
        self._read = redis.register_script(_READ)

    async def issue(self, username: str) -> tuple[str, str]:
        """A new session: (cookie token, CSRF token). Only the token's hash is stored."""
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        sid = session_id(token)
        now = self.clock()
        expires = now + self.max_age_s * 1000
        index = self.keys.user_sessions(username)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self.keys.session(sid),
                mapping={"username": username, "csrf": csrf, "created": now, "expires": expires},
            )
            pipe.pexpire(self.keys.session(sid), min(self.idle_s, self.max_age_s) * 1000)
            pipe.zadd(index, {sid: expires})
            pipe.zremrangebyscore(index, "-inf", now)  # sessions past their lifetime
            pipe.pexpire(index, self.max_age_s * 1000)
            await pipe.execute()
        return token, csrf

    async def read(self, token: str) -> SessionData | None:
        """The live session for a cookie, its idle timeout restarted; None if it has ended."""
        return await self.read_id(session_id(token))

    async def read_id(self, sid: str) -> SessionData | None:
        reply = await self._read(
            keys=[self.keys.session(sid), self.keys.users()], args=[self.clock(), self.idle_s * 1000]
        )
        if not reply:
            return None
        username, csrf, record = reply
        return SessionData(sid, username.decode(), csrf.decode(), record)

    async def end(self, sid: str) -> str | None:
        """End one session (logout); the username it belonged to, if it was live."""
        key = self.keys.session(sid)
        username = await self.redis.hget(key, "username")
        await self.redis.delete(key)
        if username is None:
            return None
        name = username.decode()
        await self.redis.zrem(self.keys.user_sessions(name), sid)
        return name

    async def end_all(self, username: str) -> int:
        return await end_all_sessions(self.redis, username, self.keys)


async def end_all_sessions(redis: aioredis.Redis, username: str, keys: Keys = KEYS) -> int:
    """End every session of `username` (password change or reset, deletion); how many were live."""
    index = keys.user_sessions(username)
    sids = [s.decode() for s in await redis.zrange(index, 0, -1)]
    if not sids:
        return 0
    async with redis.pipeline(transaction=True) as pipe:
        for sid in sids:
            pipe.delete(keys.session(sid))
        pipe.delete(index)
        results = await pipe.execute()
    return sum(int(r) for r in results[:-1])


async def still_signed_in(websocket: WebSocket) -> None:
    """For a long-lived WebSocket: about once a second, check that the credentials it was
    opened with still hold (session not logged out, expired or revoked; token not revoked;
    user not deleted). If not, close it with 4401 and raise WebSocketDisconnect, which the
    feed treats as the client gone. Cheap: one Redis call a second, none in between.

    Call it in the feed's pump loop; `authenticate` (web/auth.py) left the principal on
    `websocket.state`. A session check also restarts the idle timeout (see the module doc).
    """
    now = time.monotonic()
    if now < getattr(websocket.state, "signed_in_checked", 0.0) + WATCH_EVERY_S:
        return
    websocket.state.signed_in_checked = now
    from responsecentre.web.auth import still_valid  # auth imports this module

    principal = getattr(websocket.state, "principal", None)
    if principal is not None and await still_valid(websocket, principal):
        return
    log.info("console feed: the session of %s ended; closing", getattr(principal, "username", "?"))
    await websocket.close(code=CLOSE_SESSION_ENDED)
    raise WebSocketDisconnect(CLOSE_SESSION_ENDED, "session ended")
