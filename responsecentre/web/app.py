"""The HTTP face: API, console, login, health and metrics, as one ASGI app.

The routes live in a module per concept (alarms, devices, session, health, feed, pages);
this module puts them together with what applies to every request: the body cap, the
error shapes and the security the API document declares. OpenAPI is served at /docs
and /openapi.json, to signed-in users only (pages.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from swagger_ui_bundle import swagger_ui_path

from responsecentre.web import (
    alarms,
    devices,
    events,
    feed,
    health,
    incidents,
    pages,
    rosters,
    rules,
    session,
    silences,
    users,
)
from responsecentre.web.auth import CSRF_HEADER, SESSION_COOKIE
from responsecentre.web.context import AppContext
from responsecentre.web.pages import STATIC
from responsecentre.web.passwords import PasswordChecksBusy

__all__ = ["MAX_BODY_BYTES", "AppContext", "BodyLimit", "create_app"]

# Our largest legitimate body is a 2000-character note; 64 KiB leaves room and keeps a
# client from making us buffer (and validate, and echo) megabytes.
MAX_BODY_BYTES = 64 * 1024
TOO_LARGE_DETAIL = f"request body too large; the limit is {MAX_BODY_BYTES // 1024} KiB"
MAX_MESSAGE_CHARS = 300
# pydantic's wording where a person needs a plainer one. JSON may carry a lone surrogate
# ("\\ud800") that Python decodes but UTF-8 (and so Redis, and the response) cannot hold.
CLEARER_MESSAGES = {
    "string_unicode": "must be valid Unicode text; it contains a lone surrogate (\\ud800-\\udfff)",
}

SECURITY_SCHEMES = {
    "token": {
        "type": "http",
        "scheme": "bearer",
        "description": "API clients: a token `rct_...` an admin made for the user (POST /api/users/{username}/tokens)",
    },
    "basic": {
        "type": "http",
        "scheme": "basic",
        "description": "Username and password; each request costs a password check, so prefer a token",
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": SESSION_COOKIE,
        "description": f"The console's session from POST /login; a POST also needs the {CSRF_HEADER} header",
    },
}


class BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(413, TOO_LARGE_DETAIL)


class BodyLimit:
    """Refuse a request body over `max_bytes` with 413 before anyone buffers it.

    Content-Length is checked up front; a chunked body (no length) is counted as it
    streams in, so it is cut off at the limit too.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refuse(send)
                return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge()
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            # Only reached if no exception handler turned it into a response on the way out.
            if started:
                raise
            await self._refuse(send)

    @staticmethod
    async def _refuse(send: Send) -> None:
        response = JSONResponse({"detail": TOO_LARGE_DETAIL}, status_code=413, headers={"Connection": "close"})
        await response({"type": "http"}, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


def _printable(value: Any) -> str:
    """Text for an error body that is valid UTF-8 whatever the client sent (no lone surrogates)."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")[:MAX_MESSAGE_CHARS]


def field_problems(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Where and why, without pydantic's `input` and `ctx`: echoing the input back hands a
    client its megabytes again, copies personal data into logs and proxies, and can
    itself be unencodable."""
    return [
        {
            "loc": [p if isinstance(p, int) else _printable(p) for p in error.get("loc", ())],
            "msg": CLEARER_MESSAGES.get(error.get("type", ""), _printable(error.get("msg", ""))),
            "type": _printable(error.get("type", "")),
        }
        for error in exc.errors()
    ]


async def single_valued_query(conn: HTTPConnection) -> None:
    """None of our query parameters is a list, but FastAPI quietly keeps the last of
    `?tenant=a&tenant=b`; a client that sends two means something we would not do."""
    query = conn.query_params
    repeated = sorted({key for key in query if len(query.getlist(key)) > 1})
    if repeated:
        raise RequestValidationError(
            [
                {"loc": ("query", key), "msg": "given more than once; send it once", "type": "repeated"}
                for key in repeated
            ]
        )


def allowed_methods(request: Request) -> str:
    """Every method some route on this path takes, for a 405's Allow header."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def create_app(ctx: AppContext) -> FastAPI:
    app = FastAPI(
        title="responsecentre",
        version="0.1.0",
        description="Alarms from welfare technology, escalated until someone acts.",
        docs_url=None,  # served by pages.py from local assets: the centre works offline
        openapi_url=None,  # served by pages.py too, to signed-in users only
        redoc_url=None,
        dependencies=[Depends(single_valued_query)],
    )
    app.state.ctx = ctx

    @app.exception_handler(RedisError)
    async def storage_unavailable(request: Request, exc: RedisError) -> JSONResponse:
        """Redis down or restarting: say so (503, retry) rather than a bare 500."""
        return JSONResponse(
            {"detail": "alarm storage is unavailable; retry shortly"}, status_code=503, headers={"Retry-After": "1"}
        )

    @app.exception_handler(PasswordChecksBusy)
    async def passwords_busy(request: Request, exc: PasswordChecksBusy) -> JSONResponse:
        """Hashing a new password found the argon2 queue full (web/passwords.py): retry shortly."""
        return JSONResponse(
            {"detail": f"{exc}; try again in {exc.retry_after_s} s"},
            status_code=503,
            headers={"Retry-After": str(exc.retry_after_s)},
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_problem(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            # FastAPI's "There was an error parsing the body" does not say what to fix.
            exc = HTTPException(400, "the body must be JSON encoded as UTF-8")
        if exc.status_code == 405:
            # Starlette names only the first route on the path; GET and POST /api/users are two.
            exc = HTTPException(405, exc.detail, headers={"Allow": allowed_methods(request)})
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": field_problems(exc)}, status_code=422)

    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")
    for module in (pages, session, health, alarms, incidents, devices, events, silences, rosters, rules, users, feed):
        app.include_router(module.router)

    def openapi() -> dict[str, Any]:
        """The generated document plus the auth it cannot see: `require` reads the credentials
        itself, so every operation that can answer 401 is marked as needing Basic or a session."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            for operations in schema["paths"].values():
                for operation in operations.values():
                    if "401" in operation.get("responses", {}):
                        operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
