"""/healthz, /readyz and /metrics: what a supervisor, a load balancer and Prometheus ask.

/healthz only says the event loop answers (restart me if not); /readyz says whether to send
traffic here, and names each dependency that says no, so whoever is paged at night reads
"broker: not connected" in the probe's output instead of guessing. Neither says more
than that, so both stay open.

/metrics tells a great deal (alarm rates per tenant, sign-in failures, what is failing),
so it wants `Authorization: Bearer <RC_METRICS_TOKEN>`, a secret for the scraper only;
with no token configured it is closed (403) rather than open.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from responsecentre.web.context import AppContext, ReadyCheck, context
from responsecentre.web.models import Health, Readiness

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

Ctx = Annotated[AppContext, Depends(context)]
REDIS_PING_TIMEOUT_S = 1.0


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    """The process is alive (its event loop answers)."""
    return {"status": "ok"}


def run_check(check: ReadyCheck) -> tuple[str, str | None]:
    """(dependency name, None if ready else why). The name is the part of `why` before ": "
    so a check can name itself in the one string it already returns; a check that raises
    is a failing check, not a failing probe."""
    fallback = getattr(check, "__name__", "check").removesuffix("_ready")
    try:
        ok, why = check()
    except Exception as exc:
        log.warning("readiness check %s raised", fallback, exc_info=True)
        return fallback, f"check failed: {type(exc).__name__}"
    name, sep, reason = why.partition(": ")
    if not sep:
        name, reason = fallback, why
    return name, None if ok else reason


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready: `checks` names each failing dependency"}},
)
async def readyz(ctx: Ctx) -> Any:
    """Ready to take traffic: Redis answers, the broker is connected, the backlog is replayed."""
    results: list[tuple[str, str | None]] = []
    try:
        await asyncio.wait_for(ctx.redis.ping(), REDIS_PING_TIMEOUT_S)
        results.append(("redis", None))
    except TimeoutError:
        results.append(("redis", f"no answer within {REDIS_PING_TIMEOUT_S:g} s"))
    except (RedisError, OSError) as exc:
        results.append(("redis", str(exc) or type(exc).__name__))
    results += [run_check(check) for check in ctx.ready_checks]
    checks = {name: "ok" if why is None else why for name, why in results}
    problems = [f"{name}: {why}" for name, why in results if why is not None]
    body = {"status": "not ready" if problems else "ready", "checks": checks, "problems": problems}
    return JSONResponse(body, status_code=503 if problems else 200)


def check_metrics_token(request: Request, ctx: AppContext) -> None:
    """401 without the right bearer token (compared in constant time), 403 when none is set."""
    if not ctx.metrics_token:
        raise HTTPException(403, "/metrics is closed: set RC_METRICS_TOKEN and give Prometheus the same bearer token")
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.strip().encode(), ctx.metrics_token.encode()):
        raise HTTPException(
            401, "/metrics wants Authorization: Bearer <RC_METRICS_TOKEN>", headers={"WWW-Authenticate": "Bearer"}
        )


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, ctx: Ctx) -> Response:
    check_metrics_token(request, ctx)
    ctx.metrics.open_alarms.set(await ctx.desk.count_open())
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)
