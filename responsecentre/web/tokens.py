"""API tokens: what an integration sends instead of a password on every request.

A token is `rct_<id>_<secret>`: the id (public: listings, audit, revocation name it) and
256 random bits. Redis keeps only sha256(secret), so a copy of Redis holds no usable
token. A token is random, not chosen by a person, so a fast hash is enough (nobody can
guess 256 bits, salted or not) and checking one costs no argon2: an integration polling
the API does not occupy the password worker, as HTTP Basic does.

Tokens are created by an admin (POST /api/users/{name}/tokens, or `responsecentre users
token create NAME`), shown once, revocable, and act as their user: the role and tenants
are read from the user's current record on every request. A password change leaves them
(they are separate credentials, listed and revoked one by one); deleting the user
deletes them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

import redis.asyncio as aioredis

from responsecentre.store.keys import KEYS, Keys

PREFIX = "rct_"
TOKEN_RE = re.compile(r"rct_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
LAST_USED_EVERY_MS = 60_000  # last use is kept to the minute, not written per request
MAX_LABEL = 200


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_id_of(token: str) -> str | None:
    """The id part of something that looks like a token, else None."""
    match = TOKEN_RE.fullmatch(token)
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: str
    username: str
    label: str
    created_ms: int
    last_used_ms: int | None


class TokenStore:
    def __init__(self, redis: aioredis.Redis, keys: Keys = KEYS) -> None:
        self.redis = redis
        self.keys = keys

    async def create(self, username: str, label: str, now_ms: int) -> tuple[str, TokenInfo]:
        """A new token for `username`: (the token, shown only now; what is kept of it)."""
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        info = TokenInfo(token_id, username, label[:MAX_LABEL], now_ms, None)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self.keys.api_token(token_id),
                mapping={"username": username, "label": info.label, "sha256": _digest(secret), "created": now_ms},
            )
            pipe.sadd(self.keys.user_tokens(username), token_id)
            await pipe.execute()
        return f"{PREFIX}{token_id}_{secret}", info

    async def check(self, token: str, now_ms: int) -> TokenInfo | None:
        """The token's record if `token` is a live token, compared in constant time."""
        match = TOKEN_RE.fullmatch(token)
        if match is None:
            return None
        token_id, secret = match.groups()
        fields = await self.redis.hgetall(self.keys.api_token(token_id))
        stored = fields.get(b"sha256", b"").decode()
        if not stored or not hmac.compare_digest(stored, _digest(secret)):
            return None
        info = _info(token_id, fields)
        if info.last_used_ms is None or now_ms - info.last_used_ms >= LAST_USED_EVERY_MS:
            await self.redis.hset(self.keys.api_token(token_id), "last_used", now_ms)
        return info

    async def get(self, token_id: str) -> TokenInfo | None:
        fields = await self.redis.hgetall(self.keys.api_token(token_id))
        return _info(token_id, fields) if fields.get(b"username") else None

    async def exists(self, token_id: str) -> bool:
        return bool(await self.redis.exists(self.keys.api_token(token_id)))

    async def of_user(self, username: str) -> list[TokenInfo]:
        ids = sorted(i.decode() for i in await self.redis.smembers(self.keys.user_tokens(username)))
        infos = [await self.get(i) for i in ids]
        return sorted((i for i in infos if i is not None), key=lambda i: i.created_ms)

    async def revoke(self, token_id: str) -> TokenInfo | None:
        """Delete the token; what it was, or None if there was no such token."""
        info = await self.get(token_id)
        if info is None:
            return None
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.api_token(token_id))
            pipe.srem(self.keys.user_tokens(info.username), token_id)
            await pipe.execute()
        return info

    async def revoke_all(self, username: str) -> int:
        ids = [i.decode() for i in await self.redis.smembers(self.keys.user_tokens(username))]
        async with self.redis.pipeline(transaction=True) as pipe:
            for token_id in ids:
                pipe.delete(self.keys.api_token(token_id))
            pipe.delete(self.keys.user_tokens(username))
            await pipe.execute()
        return len(ids)


def _info(token_id: str, fields: dict[bytes, bytes]) -> TokenInfo:
    last = fields.get(b"last_used")
    return TokenInfo(
        id=token_id,
        username=fields.get(b"username", b"").decode(),
        label=fields.get(b"label", b"").decode(),
        created_ms=int(fields.get(b"created", 0)),
        last_used_ms=int(last) if last else None,
    )
