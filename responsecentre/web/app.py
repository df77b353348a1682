"""The HTTP face: API, console, login, health and metrics, as one ASGI app.

Routes stay thin: they check the role (`require`), call the alarm desk, and turn its
results into JSON. OpenAPI is served at /docs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, Form, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from redis.exceptions import RedisError
from swagger_ui_bundle import swagger_ui_path

from responsecentre.alarms.desk import AlarmDesk, AlarmNotFound
from responsecentre.alarms.model import CLOSING_CODES, TransitionError
from responsecentre.alarms.view import alarm_view, entry_view, iso
from responsecentre.directory import Directory
from responsecentre.metrics import Metrics
from responsecentre.store.keys import KEYS
from responsecentre.web.auth import (
    ACTORS,
    ALL_ROLES,
    CSRF_COOKIE,
    RESIDENT_READERS,
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    Principal,
    Sessions,
    Users,
    authenticate,
    require,
)

STATIC = Path(__file__).resolve().parent / "static"

# The console and login pages load only our own scripts and styles and talk only to us.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@dataclass
class AppContext:
    redis: aioredis.Redis
    desk: AlarmDesk
    directory: Directory
    metrics: Metrics
    users: Users
    secret_key: str
    secure_cookies: bool = False
    ready_checks: list[Any] = field(default_factory=list)  # callables -> (ok, why)


class AckBody(BaseModel):
    note: str = Field(default="", max_length=2000)


class ResolveBody(BaseModel):
    code: str = Field(description="one of GET /api/closing-codes")
    note: str = Field(default="", max_length=2000)


class NoteBody(BaseModel):
    text: str = Field(min_length=1, max_length=2000)


def now_ms() -> int:
    return int(time.time() * 1000)


def create_app(ctx: AppContext) -> FastAPI:
    app = FastAPI(
        title="responsecentre",
        version="0.1.0",
        description="Alarms from welfare technology, escalated until someone acts.",
        docs_url=None,  # served below from local assets: the centre works offline
        redoc_url=None,
    )
    app.state.ctx = ctx

    @app.exception_handler(RedisError)
    async def storage_unavailable(request: Request, exc: RedisError) -> JSONResponse:
        """Redis down or restarting: say so (503, retry) rather than a bare 500."""
        return JSONResponse(
            {"detail": "alarm storage is unavailable; retry shortly"}, status_code=503, headers={"Retry-After": "1"}
        )

    app.state.users = ctx.users
    app.state.sessions = Sessions(ctx.secret_key)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")
    desk = ctx.desk

    async def audit(principal: Principal, action: str, **detail: str) -> None:
        await ctx.redis.xadd(
            KEYS.audit(),
            {"ts": now_ms(), "user": principal.username, "role": str(principal.role), "action": action, **detail},
            maxlen=1_000_000,
            approximate=True,
        )

    async def load(alarm_id: str) -> Any:
        try:
            return await desk.get(alarm_id)
        except AlarmNotFound:
            raise HTTPException(404, f"no alarm {alarm_id}") from None

    # -- pages -----------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/console")

    @app.get("/login", include_in_schema=False)
    async def login_page() -> FileResponse:
        return FileResponse(STATIC / "login.html", headers=PAGE_HEADERS)

    @app.post("/login", include_in_schema=False)
    async def login(username: str = Form(...), password: str = Form(...), next: str = Form("/console")) -> Response:
        user = await ctx.users.verify(username, password)
        target = next if next.startswith("/") and not next.startswith("//") else "/console"
        if user is None:
            return RedirectResponse(f"/login?error=1&next={target}", status_code=303)
        token, csrf = app.state.sessions.issue(user)
        await ctx.redis.xadd(KEYS.audit(), {"ts": now_ms(), "user": user.username, "action": "login"})
        response = RedirectResponse(target, status_code=303)
        common = {"max_age": SESSION_MAX_AGE_S, "samesite": "strict", "secure": ctx.secure_cookies}
        response.set_cookie(SESSION_COOKIE, token, httponly=True, **common)  # type: ignore[arg-type]
        response.set_cookie(CSRF_COOKIE, csrf, httponly=False, **common)  # type: ignore[arg-type]
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        response.delete_cookie(CSRF_COOKIE)
        return response

    @app.get("/console", include_in_schema=False)
    async def console(request: Request) -> Response:
        principal = await authenticate(request)
        if principal is None:
            return RedirectResponse("/login?next=/console", status_code=303)
        return FileResponse(STATIC / "console.html", headers={**PAGE_HEADERS, "Cache-Control": "no-store"})

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="responsecentre API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    # -- health ----------------------------------------------------------------------------

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is alive (its event loop answers)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        """Ready to take traffic: Redis answers, the broker is connected, the backlog is replayed."""
        problems: list[str] = []
        try:
            await asyncio.wait_for(ctx.redis.ping(), 1.0)
        except (RedisError, OSError, TimeoutError) as exc:
            problems.append(f"redis: {exc}")
        for check in ctx.ready_checks:
            ok, why = check()
            if not ok:
                problems.append(why)
        return JSONResponse(
            {"status": "ready" if not problems else "not ready", "problems": problems},
            status_code=200 if not problems else 503,
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        ctx.metrics.open_alarms.set(await desk.count_open())
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/me", tags=["session"])
    async def me(who: Principal = Depends(require(*ALL_ROLES))) -> dict[str, str | None]:
        """Who is logged in, for the console's header."""
        return {"username": who.username, "role": str(who.role), "staff_id": who.staff_id}

    # -- alarms ----------------------------------------------------------------------------

    @app.get("/api/alarms", tags=["alarms"])
    async def list_alarms(
        state: str = "open", limit: int = 200, _: Principal = Depends(require(*ALL_ROLES))
    ) -> dict[str, Any]:
        """Open alarms in queue order (UNHANDLED, priority, longest waiting), or with
        `state=all` the most recently raised, open or closed."""
        if state == "open":
            alarms = await desk.open_alarms()
        elif state == "all":
            alarms = await desk.recent_alarms(limit=max(1, min(limit, 1000)))
        else:
            raise HTTPException(422, "state must be open or all")
        return {"alarms": [alarm_view(a) for a in alarms]}

    @app.get("/api/alarms/{alarm_id}", tags=["alarms"])
    async def get_alarm(alarm_id: str, _: Principal = Depends(require(*ALL_ROLES))) -> dict[str, Any]:
        """One alarm with its timeline: every trigger, notification and transition."""
        alarm = await load(alarm_id)
        view = alarm_view(alarm)
        view["timeline"] = [entry_view(e) for e in await desk.timeline(alarm)]
        return view

    async def act(alarm_id: str, fn: Any) -> dict[str, Any]:
        try:
            alarm = await fn()
        except AlarmNotFound:
            raise HTTPException(404, f"no alarm {alarm_id}") from None
        except TransitionError as exc:
            raise HTTPException(409, str(exc)) from None
        return alarm_view(alarm)

    @app.post("/api/alarms/{alarm_id}/ack", tags=["alarms"])
    async def ack_alarm(
        alarm_id: str, body: AckBody | None = None, who: Principal = Depends(require(*ACTORS))
    ) -> dict[str, Any]:
        """Take the alarm: stops its alert chain."""
        result = await act(alarm_id, lambda: desk.acknowledge(alarm_id, who.username, now_ms()))
        if body is not None and body.note:
            await desk.note(alarm_id, who.username, body.note, now_ms())
        await audit(who, "ack", alarm=alarm_id)
        return result

    @app.post("/api/alarms/{alarm_id}/resolve", tags=["alarms"])
    async def resolve_alarm(
        alarm_id: str, body: ResolveBody, who: Principal = Depends(require(*ACTORS))
    ) -> dict[str, Any]:
        """Close the alarm with a closing code (GET /api/closing-codes)."""
        result = await act(alarm_id, lambda: desk.resolve(alarm_id, who.username, body.code, body.note, now_ms()))
        await audit(who, "resolve", alarm=alarm_id, code=body.code)
        return result

    @app.post("/api/alarms/{alarm_id}/note", tags=["alarms"])
    async def note_alarm(alarm_id: str, body: NoteBody, who: Principal = Depends(require(*ACTORS))) -> dict[str, Any]:
        result = await act(alarm_id, lambda: desk.note(alarm_id, who.username, body.text, now_ms()))
        await audit(who, "note", alarm=alarm_id)
        return result

    @app.get("/api/closing-codes", tags=["alarms"])
    async def closing_codes(_: Principal = Depends(require(*ALL_ROLES))) -> dict[str, Any]:
        return {"codes": [{"code": c, "label": label} for c, label in CLOSING_CODES.items()]}

    # -- devices and homes -------------------------------------------------------------------

    @app.get("/api/devices", tags=["devices"])
    async def list_devices(tenant: str | None = None, _: Principal = Depends(require(*ALL_ROLES))) -> dict[str, Any]:
        """Registered devices with their latest retained status (no resident data)."""
        tenants = [tenant] if tenant is not None else ctx.directory.tenants
        status: dict[tuple[str, str], dict[str, Any]] = {}
        for t in tenants:
            for device_id, raw in (await ctx.redis.hgetall(KEYS.device_status(t))).items():
                status[(t, device_id.decode())] = msgspec.json.decode(raw)
        devices = []
        for d in ctx.directory.device_list:
            if d.tenant not in tenants:
                continue
            s = status.get((d.tenant, d.device_id))
            devices.append(
                {
                    "tenant": d.tenant,
                    "device_id": d.device_id,
                    "kind": d.kind,
                    "home_id": d.home_id,
                    "online": s["online"] if s else None,
                    "battery": s["battery"] if s else None,
                    "status_at": iso(s["ts"] or s["recv"]) if s else None,
                }
            )
        return {"devices": devices}

    @app.get("/api/homes/{tenant}/{home_id}", tags=["homes"])
    async def get_home(
        tenant: str, home_id: str, who: Principal = Depends(require(*RESIDENT_READERS))
    ) -> dict[str, Any]:
        """The home and its resident. Health data: every view is written to the audit log."""
        home = ctx.directory.home(tenant, home_id)
        if home is None:
            raise HTTPException(404, f"no home {tenant}/{home_id}")
        await audit(who, "view_resident", tenant=tenant, home=home_id)
        return {
            "tenant": tenant,
            "home_id": home_id,
            "zone": home.zone,
            "devices": list(home.device_ids),
            "resident": dataclasses.asdict(home.resident),
        }

    # -- live feed ---------------------------------------------------------------------------

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        """Snapshot of the open alarms, then every change. The snapshot is taken after the
        feed position is read, so a reconnecting console never misses an update."""
        origin = websocket.headers.get("origin")
        if origin and origin.split("://", 1)[-1] != websocket.headers.get("host"):
            await websocket.close(code=4403)
            return
        principal = await authenticate(websocket)
        if principal is None:
            await websocket.close(code=4401)
            return
        await websocket.accept()
        feed = ctx.redis
        last = await feed.xrevrange(KEYS.feed(), count=1)
        position = last[0][0].decode() if last else "0-0"
        alarms = await desk.open_alarms()
        await websocket.send_json({"type": "snapshot", "position": position, "alarms": [alarm_view(a) for a in alarms]})
        closed = asyncio.Event()

        async def watch_close() -> None:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                while True:
                    await websocket.receive_text()
            closed.set()

        watcher = asyncio.create_task(watch_close())
        try:
            while not closed.is_set():
                reply = await feed.xread({KEYS.feed(): position}, count=500, block=1000)
                for _, entries in reply or []:
                    for entry_id, fields in entries:
                        position = entry_id.decode()
                        alarm_json = fields[b"alarm"].decode()
                        await websocket.send_text(f'{{"type":"alarm","position":"{position}","alarm":{alarm_json}}}')
        except (WebSocketDisconnect, RuntimeError, RedisError, OSError):
            pass
        finally:
            watcher.cancel()
            with contextlib.suppress(RuntimeError):
                await websocket.close()

    return app
