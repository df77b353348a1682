"""Suppression set over the API, kept in Redis per tenant, merged with the YAML at every load.

Each change is written in one transaction with a bump of a global version counter; the
rule processor GETs the counter once per sweep and rebuilds its index only when it moved.
Records are msgspec JSON of the frozen types in `responsecentre/suppression.py`.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
import redis.asyncio as aioredis

from responsecentre.directory import Directory
from responsecentre.store.keys import KEYS, Keys
from responsecentre.suppression import KEEP_ENDED_MS, HomeStatus, Maintenance, Silence, Suppressions

_silence = msgspec.json.Decoder(Silence)
_status = msgspec.json.Decoder(HomeStatus)
_maintenance = msgspec.json.Decoder(Maintenance)


class SuppressionStore:
    def __init__(self, redis: aioredis.Redis, directory: Directory, keys: Keys = KEYS) -> None:
        self.redis = redis
        self.directory = directory
        self.keys = keys

    async def version(self) -> int:
        raw = await self.redis.get(self.keys.suppression_version())
        return int(raw) if raw is not None else 0

    async def load(self, tenants: Iterable[str] | None = None, now_ms: int | None = None) -> Suppressions:
        """The index of the YAML plus everything set over the API for `tenants` (default all)."""
        tenants = list(self.directory.tenants if tenants is None else tenants)
        async with self.redis.pipeline(transaction=False) as pipe:
            for t in tenants:
                pipe.hvals(self.keys.silences(t))
                pipe.hvals(self.keys.home_statuses(t))
                pipe.hvals(self.keys.maintenance(t))
            replies = await pipe.execute()
        silences: list[Silence] = []
        statuses: list[HomeStatus] = []
        maintenance: list[Maintenance] = []
        for i in range(len(tenants)):
            silences += [_silence.decode(v) for v in replies[3 * i]]
            statuses += [_status.decode(v) for v in replies[3 * i + 1]]
            maintenance += [_maintenance.decode(v) for v in replies[3 * i + 2]]
        wanted = set(tenants)
        config = self.directory.suppression
        index = config.merged(silences, statuses, maintenance, now_ms)
        if tenants != self.directory.tenants:
            index = Suppressions(
                [s for s in index.silences if s.tenant in wanted],
                [s for s in index.statuses.values() if s.tenant in wanted],
                [m for m in index.maintenance.values() if m.tenant in wanted],
                config.exempt_kinds,
            )
        return index

    async def silence(self, tenants: Iterable[str], silence_id: str) -> Silence | None:
        """The silence with this id among `tenants`' (API and YAML), or None."""
        for t in tenants:
            raw = await self.redis.hget(self.keys.silences(t), silence_id)
            if raw is not None:
                return _silence.decode(raw)
            for s in self.directory.suppression.silences:
                if s.tenant == t and s.id == silence_id:
                    return s
        return None

    async def put_silence(self, silence: Silence, now_ms: int) -> None:
        """Store a silence, and forget the tenant's silences that ended long ago (KEEP_ENDED_MS)."""
        key = self.keys.silences(silence.tenant)
        stale = [
            s.id
            for s in (_silence.decode(v) for v in await self.redis.hvals(key))
            if s.end_ms <= now_ms - KEEP_ENDED_MS
        ]
        async with self.redis.pipeline(transaction=True) as pipe:
            if stale:
                pipe.hdel(key, *stale)
            pipe.hset(key, silence.id, msgspec.json.encode(silence))
            pipe.incr(self.keys.suppression_version())
            await pipe.execute()

    async def drop_silence(self, silence: Silence) -> None:
        """A planned silence cancelled before it began: it never held anything back."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.silences(silence.tenant), silence.id)
            pipe.incr(self.keys.suppression_version())
            await pipe.execute()

    async def home_status(self, tenant: str, home_id: str) -> HomeStatus | None:
        raw = await self.redis.hget(self.keys.home_statuses(tenant), home_id)
        if raw is not None:
            return _status.decode(raw)
        return self.directory.suppression.statuses.get((tenant, home_id))

    async def put_home_status(self, status: HomeStatus) -> None:
        await self._write(self.keys.home_statuses(status.tenant), status.home_id, msgspec.json.encode(status))

    async def device_maintenance(self, tenant: str, device_id: str) -> Maintenance | None:
        raw = await self.redis.hget(self.keys.maintenance(tenant), device_id)
        if raw is not None:
            return _maintenance.decode(raw)
        return self.directory.suppression.maintenance.get((tenant, device_id))

    async def put_maintenance(self, m: Maintenance) -> None:
        await self._write(self.keys.maintenance(m.tenant), m.device_id, msgspec.json.encode(m))

    async def _write(self, key: str, field: str, value: bytes) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, field, value)
            pipe.incr(self.keys.suppression_version())
            await pipe.execute()
