"""Failed sign-ins: exponential delay per username and per client address, then lockout.

Counted in Redis, so a restart forgets nothing and several instances share the counts.
Every attempt first takes a reservation (one Lua script, atomic): if the username or the
address is inside its wait, or the account is locked, the attempt is refused with 429 and
Retry-After *before* any password check, so a flood costs a Redis round trip, not argon2.
Otherwise the attempt is counted as a failure up front; a success takes it back. Counting
first is what keeps 32 parallel guesses from all slipping through before the first one
has failed.

- After `free_per_user` failures of a username (`free_per_address` of an address) each
  further attempt must wait 2^(n - free) s after the last failure, at most `max_delay_s`.
- After `lockout_after` failures of a username the account is locked for `lockout_s`,
  or until an admin unlocks it (POST /api/users/{name}/unlock, `responsecentre users
  unlock NAME`). Usernames that do not exist are counted and locked the same way, so the
  answers do not tell which exist.
- A success resets the user's count, not the address's: one valid account must not let a
  guesser wipe the count of the address it guesses from.
- Counts are forgotten `forget_s` after the last failure.

The address is `request.client.host` as the socket saw it (uvicorn's proxy headers are
off in service.py): X-Forwarded-For is whatever the client wants it to be. An IPv6 client
is counted per /64, the block one subscriber gets.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
from starlette.requests import HTTPConnection

from responsecentre.config import Settings
from responsecentre.store.keys import KEYS, Keys

Scope = Literal["user", "address", "lockout"]
MAX_NAME_CHARS = 128  # attempted usernames beyond this are cut: they cannot exist anyway


@dataclass(frozen=True, slots=True)
class LoginLimits:
    """The sign-in limits; Settings' login_* fields (env RC_LOGIN_*)."""

    free_per_user: int = 5
    free_per_address: int = 20
    lockout_after: int = 10
    lockout_s: int = 30 * 60
    max_delay_s: int = 15 * 60
    forget_s: int = 60 * 60

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginLimits:
        return cls(
            free_per_user=settings.login_free_per_user,
            free_per_address=settings.login_free_per_address,
            lockout_after=settings.login_lockout_after,
            lockout_s=settings.login_lockout_s,
            max_delay_s=settings.login_max_delay_s,
            forget_s=settings.login_forget_s,
        )


@dataclass(frozen=True, slots=True)
class Refusal:
    """Not checked: wait `retry_after_s`; `scope` says which limit (metrics label)."""

    scope: Scope
    retry_after_s: int


# KEYS: the counts to consult (a user's first, if any; only a user's has `locked`).
# ARGV: now_ms, max_delay_ms, forget_ms, then each key's free failures.
# Returns {scope index or 0, wait_ms}: 0 when the attempt may be checked (it is counted
# then); else the 1-based index of the key whose wait is longest (-1: locked).
_ADMIT = """
local now = tonumber(ARGV[1])
local max_delay = tonumber(ARGV[2])
local longest, which = 0, 0
for i, key in ipairs(KEYS) do
  local v = redis.call('HMGET', key, 'n', 'last', 'locked')
  local locked = tonumber(v[3] or 0)
  if locked > 0 then
    if now < locked then return {-1, locked - now} end
    redis.call('DEL', key)
  else
    local n = tonumber(v[1] or 0)
    local free = tonumber(ARGV[3 + i])
    if n >= free then
      local delay = math.min(2 ^ math.min(n - free, 40) * 1000, max_delay)
      local left = math.ceil(tonumber(v[2] or 0) + delay - now)
      if left > longest then longest, which = left, i end
    end
  end
end
if which > 0 then return {which, longest} end
for _, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, 'n', 1)
  redis.call('HSET', key, 'last', now)
  if redis.call('PTTL', key) < tonumber(ARGV[3]) then redis.call('PEXPIRE', key, ARGV[3]) end
end
return {0, 0}
"""

# KEYS: user. ARGV: now_ms, lockout_after, lockout_ms, forget_ms. Returns the failure
# count if this failure locked the account, else 0 (so the lockout is audited once).
_FAILED = """
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or 0)
if n >= tonumber(ARGV[2]) and tonumber(redis.call('HGET', KEYS[1], 'locked') or 0) == 0 then
  redis.call('HSET', KEYS[1], 'locked', tonumber(ARGV[1]) + tonumber(ARGV[3]))
  redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[3]), tonumber(ARGV[4])))
  return n
end
return 0
"""

# KEYS: the counts to take one back from (a success, or an attempt never checked).
_TAKE_BACK = """
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('HGET', key, 'n') or 0) > 0 then redis.call('HINCRBY', key, 'n', -1) end
end
return 0
"""


def client_address(conn: HTTPConnection) -> str:
    """Who is knocking, as the socket saw it; IPv6 by /64."""
    host = conn.client.host if conn.client else ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:64] or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


def attempted_name(username: str) -> str:
    return username[:MAX_NAME_CHARS]


class Throttle:
    def __init__(self, redis: aioredis.Redis, limits: LoginLimits | None = None, keys: Keys = KEYS) -> None:
        self.redis = redis
        self.limits = limits or LoginLimits()
        self.keys = keys
        self._admit = redis.register_script(_ADMIT)
        self._failed = redis.register_script(_FAILED)
        self._take_back = redis.register_script(_TAKE_BACK)

    def _counts(self, username: str, address: str) -> list[tuple[Scope, str, int]]:
        return [
            ("user", self.keys.login_failures_user(attempted_name(username)), self.limits.free_per_user),
            ("address", self.keys.login_failures_address(address), self.limits.free_per_address),
        ]

    async def admit(self, username: str, address: str, now_ms: int) -> Refusal | None:
        """None: go ahead and check the password (the attempt is counted as a failure
        until `succeeded`); else the refusal, with nothing checked and nothing counted."""
        return await self._try(self._counts(username, address), now_ms)

    async def admit_address(self, address: str, now_ms: int) -> Refusal | None:
        """For a failure that cost nothing to find (a wrong API token): count it against
        the address, or refuse it if the address is inside its wait."""
        return await self._try(self._counts("", address)[1:], now_ms)

    async def _try(self, counts: list[tuple[Scope, str, int]], now_ms: int) -> Refusal | None:
        lim = self.limits
        which, wait_ms = await self._admit(
            keys=[key for _, key, _ in counts],
            args=[now_ms, lim.max_delay_s * 1000, lim.forget_s * 1000, *(free for _, _, free in counts)],
        )
        if int(which) == 0:
            return None
        scope: Scope = "lockout" if int(which) < 0 else counts[int(which) - 1][0]
        return Refusal(scope, max(1, -(-int(wait_ms) // 1000)))

    async def failed(self, username: str, now_ms: int) -> int | None:
        """After a wrong password: the failure count if this one locked the account."""
        lim = self.limits
        locked: Any = await self._failed(
            keys=[self.keys.login_failures_user(attempted_name(username))],
            args=[now_ms, lim.lockout_after, lim.lockout_s * 1000, lim.forget_s * 1000],
        )
        return int(locked) or None

    async def succeeded(self, username: str, address: str) -> None:
        """The right password: the user's count starts again; the address's loses this attempt."""
        await self.redis.delete(self.keys.login_failures_user(attempted_name(username)))
        await self._take_back(keys=[self.keys.login_failures_address(address)])

    async def cancel(self, username: str, address: str) -> None:
        """The attempt was admitted but never checked (the checks were busy)."""
        await self._take_back(keys=[key for _, key, _ in self._counts(username, address)])

    async def unlock(self, username: str) -> bool:
        """Lift a lockout and forget the user's failures; False if there were none."""
        return bool(await self.redis.delete(self.keys.login_failures_user(attempted_name(username))))

    async def unlock_address(self, address: str) -> bool:
        """Forget an address's failures (a centre behind one NAT address that a typo storm slowed)."""
        return bool(await self.redis.delete(self.keys.login_failures_address(address)))

    async def locked_until(self, username: str, now_ms: int) -> int | None:
        """Epoch ms the user's lockout ends, or None if not locked."""
        raw = await self.redis.hget(self.keys.login_failures_user(attempted_name(username)), "locked")
        until = int(raw or 0)
        return until if until > now_ms else None
