"""/ws: the console's live queue.

A snapshot of the open alarms, then every change from the `rc:feed` stream. The feed
position is read before the snapshot, so a reconnecting console never misses an update
(at worst it sees one twice). The feed is one stream for all tenants; each connection
passes on only what its user may see (scope.py): her tenants, and for a nurse the alarms
paged to her or taken by her.

Consoles drop all the time (a laptop lid, a Wi-Fi hand-over, a closed tab), at any point:
during the handshake, while the snapshot is sent, while waiting for the feed. None of that
is a fault of the centre, so it is logged at INFO and never as an error with a traceback;
an ERROR in this module means the centre itself failed (Redis, a bug).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from redis.exceptions import RedisError
from starlette.websockets import WebSocketDisconnected

from responsecentre.alarms.view import alarm_view
from responsecentre.store.keys import KEYS
from responsecentre.store.records import feed_alarm_json
from responsecentre.web import scope
from responsecentre.web.auth import Principal, Role, authenticate
from responsecentre.web.context import AppContext, context
from responsecentre.web.sessions import still_signed_in

log = logging.getLogger(__name__)

router = APIRouter()

# How the server side sees a client that is gone: Starlette's disconnect, a send into a closed
# socket (uvicorn's ClientDisconnected is an OSError), or a use after Starlette saw the close.
CLIENT_GONE = (WebSocketDisconnect, WebSocketDisconnected, OSError)
FEED_BLOCK_MS = 1000
FEED_BATCH = 500
CLOSE_FORBIDDEN = 4403
CLOSE_UNAUTHENTICATED = 4401
CLOSE_SERVER_ERROR = 1011


@router.websocket("/ws")
async def feed(websocket: WebSocket) -> None:
    """Snapshot of the open alarms, then every change; refuses a cross-origin handshake."""
    try:
        await _serve(websocket, context(websocket))
    except CLIENT_GONE:
        log.info("console feed: client %s went away", _peer(websocket))
    except RedisError as exc:
        log.warning("console feed: alarm storage unavailable (%s); closing %s", exc, _peer(websocket))
        with contextlib.suppress(*CLIENT_GONE):
            await websocket.close(code=CLOSE_SERVER_ERROR)


def _peer(websocket: WebSocket) -> str:
    client = websocket.client
    return f"{client.host}:{client.port}" if client else "?"


async def _serve(websocket: WebSocket, ctx: AppContext) -> None:
    origin = websocket.headers.get("origin")
    if origin and origin.split("://", 1)[-1] != websocket.headers.get("host"):
        await websocket.close(code=CLOSE_FORBIDDEN)
        return
    who = await authenticate(websocket)
    if who is None:
        await websocket.close(code=CLOSE_UNAUTHENTICATED)
        return
    await websocket.accept()
    last = await ctx.redis.xrevrange(KEYS.feed(), count=1)
    position = last[0][0].decode() if last else "0-0"
    alarms = await scope.visible(ctx.redis, who, await ctx.desk.open_alarms(scope.tenants_of(who)))
    await websocket.send_json({"type": "snapshot", "position": position, "alarms": [alarm_view(a) for a in alarms]})

    # The client sends nothing we need, but only reading tells us it left; the feed pump
    # would otherwise notice only on its next send, which may be long after.
    pump = asyncio.create_task(_pump(websocket, ctx, FeedFilter(ctx, who), position), name="ws-pump")
    watch = asyncio.create_task(_until_disconnect(websocket), name="ws-watch")
    try:
        done, _ = await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pump, watch):
            task.cancel()
        # Retrieve both outcomes so no "Task exception was never retrieved" reaches the log.
        outcomes = dict(zip((pump, watch), await asyncio.gather(pump, watch, return_exceptions=True), strict=True))
    # Neither task ends without an exception: the watcher raises when the client leaves,
    # the pump when a send or Redis fails. Whichever ended first says why.
    for task in done:
        outcome = outcomes[task]
        if isinstance(outcome, BaseException):
            raise outcome


async def _until_disconnect(websocket: WebSocket) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))


class _FeedAlarm(msgspec.Struct):
    """The fields of a feed entry's alarm view that decide who may see it."""

    id: str
    tenant: str
    acknowledged_by: str | None = None


_feed_alarm = msgspec.json.Decoder(_FeedAlarm)


class FeedFilter:
    """Decides per feed entry whether this connection's user may see the alarm.

    A nurse's alarm becomes visible once it is paged to her (the page's index entry is
    written in the same transaction as the feed entry) and stays visible; ids seen once
    are remembered so a busy alarm costs one Redis lookup, not one per change.
    """

    def __init__(self, ctx: AppContext, who: Principal) -> None:
        self.ctx = ctx
        self.who = who
        self.known: set[str] = set()

    async def allows(self, alarm_json: str) -> bool:
        try:
            alarm = _feed_alarm.decode(alarm_json)
        except msgspec.DecodeError:
            return False
        if alarm.tenant not in self.who.tenants:
            return False
        if self.who.role != Role.NURSE or alarm.id in self.known or alarm.acknowledged_by == self.who.username:
            return True
        if self.who.staff_id is None:
            return False
        score = await self.ctx.redis.zscore(KEYS.staff_alarms(alarm.tenant, self.who.staff_id), alarm.id)
        if score is None:
            return False
        self.known.add(alarm.id)
        return True


async def _pump(websocket: WebSocket, ctx: AppContext, allowed: FeedFilter, position: str) -> None:
    while True:
        await still_signed_in(websocket)  # logged out, expired, revoked: close 4401 (about once a second)
        reply = await ctx.redis.xread({KEYS.feed(): position}, count=FEED_BATCH, block=FEED_BLOCK_MS)
        for _, entries in reply or []:
            for entry_id, fields in entries:
                position = entry_id.decode()
                alarm_json = feed_alarm_json(fields)
                if await allowed.allows(alarm_json):
                    await websocket.send_text(f'{{"type":"alarm","position":"{position}","alarm":{alarm_json}}}')
