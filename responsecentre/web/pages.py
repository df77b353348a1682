"""The console page and the API docs: files and redirects for a browser, not in the API document.

Swagger UI is served from the bundled assets because a response centre must keep working
when its internet link is down. The docs and the document itself are for signed-in users
(any role): they map the whole attack surface, so a stranger gets a login page (/docs)
or a 401 (/openapi.json), as for the console.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, RedirectResponse, Response

from responsecentre.web.auth import ALL_ROLES, Principal, authenticate, require

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

router = APIRouter(include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/console")


@router.get("/console")
async def console(request: Request) -> Response:
    if await authenticate(request) is None:
        return RedirectResponse("/login?next=/console", status_code=303)
    return FileResponse(STATIC / "console.html", headers={**PAGE_HEADERS, "Cache-Control": "no-store"})


@router.get("/docs")
async def docs(request: Request) -> Response:
    if await authenticate(request) is None:
        return RedirectResponse("/login?next=/docs", status_code=303)
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="responsecentre API",
        swagger_js_url="/docs-assets/swagger-ui-bundle.js",
        swagger_css_url="/docs-assets/swagger-ui.css",
        swagger_favicon_url="/docs-assets/favicon-32x32.png",
    )


@router.get("/openapi.json")
async def openapi_document(request: Request, _: Annotated[Principal, Depends(require(*ALL_ROLES))]) -> dict[str, Any]:
    return request.app.openapi()  # type: ignore[no-any-return]
