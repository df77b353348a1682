"""Which alarms, devices and homes a user may see: the one place that decides it.

Two cuts, applied by every route and the /ws feed alike:
- tenants: a user sees only the municipalities on her record; an alarm, device or home of
  another tenant does not exist for her (404, never 403, so ids cannot be probed);
- nurses: a nurse sees and acts on only the alarms paged to her (the desk indexes each
  page by staff member, `Keys.staff_alarms`) or that she took herself.
Operators, admins and integrators see every alarm of their tenants; resident data is a
separate, role-checked cut (`auth.RESIDENT_READERS`).
"""

from __future__ import annotations

from collections.abc import Iterable

import redis.asyncio as aioredis

from responsecentre.alarms.model import Alarm
from responsecentre.store.keys import KEYS, Keys
from responsecentre.web.auth import Principal, Role


def tenants_of(who: Principal, wanted: str | None = None) -> list[str]:
    """The tenants a request may touch: all of the user's, or the one asked for if it is hers."""
    if wanted is not None:
        return [wanted] if wanted in who.tenants else []
    return sorted(who.tenants)


async def paged_to(redis: aioredis.Redis, who: Principal, alarms: Iterable[Alarm], keys: Keys = KEYS) -> set[str]:
    """Ids among `alarms` that were paged to `who`'s staff id (one pipelined round trip)."""
    alarms = list(alarms)
    if who.staff_id is None or not alarms:
        return set()
    async with redis.pipeline(transaction=False) as pipe:
        for alarm in alarms:
            pipe.zscore(keys.staff_alarms(alarm.tenant, who.staff_id), alarm.id)
        scores = await pipe.execute()
    return {alarm.id for alarm, score in zip(alarms, scores, strict=True) if score is not None}


async def visible(redis: aioredis.Redis, who: Principal, alarms: Iterable[Alarm], keys: Keys = KEYS) -> list[Alarm]:
    """`alarms` cut down to what `who` may see, in the order given."""
    mine = [a for a in alarms if a.tenant in who.tenants]
    if who.role != Role.NURSE:
        return mine
    paged = await paged_to(redis, who, mine, keys)
    return [a for a in mine if a.id in paged or a.acknowledged_by == who.username]


async def may_see(redis: aioredis.Redis, who: Principal, alarm: Alarm, keys: Keys = KEYS) -> bool:
    return bool(await visible(redis, who, [alarm], keys))
