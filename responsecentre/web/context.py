"""What every router needs from the running service, handed over once in `create_app`.

Routers live in their own modules and cannot close over `create_app`'s locals, so they
reach the shared clients through `request.app.state.ctx` (the `context` dependency).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from starlette.requests import HTTPConnection

from responsecentre.alarms.desk import AlarmDesk
from responsecentre.clock import Clock, system_clock
from responsecentre.directory import Directory
from responsecentre.metrics import Metrics
from responsecentre.store.keys import KEYS
from responsecentre.store.records import AUDIT_MAXLEN, audit_record
from responsecentre.web.auth import Principal, Users
from responsecentre.web.sessions import SESSION_IDLE_S, SessionStore
from responsecentre.web.throttle import LoginLimits, Throttle
from responsecentre.web.tokens import TokenStore

if TYPE_CHECKING:
    from responsecentre.rules_admin import RulesAdmin

ReadyCheck = Callable[[], tuple[bool, str]]


@dataclass
class AppContext:
    redis: aioredis.Redis
    desk: AlarmDesk
    directory: Directory
    metrics: Metrics
    users: Users
    secure_cookies: bool = False
    # Each returns (ok, why); `why` starts with the dependency's name ("broker: not connected")
    # so /readyz can say which dependency holds readiness back.
    ready_checks: list[ReadyCheck] = field(default_factory=list)
    # The service's one clock (see clock.py): every time the API writes comes from it.
    clock: Clock = system_clock
    # /metrics wants `Authorization: Bearer <this>`; empty: /metrics answers 403 (set RC_METRICS_TOKEN).
    metrics_token: str = ""
    login_limits: LoginLimits = field(default_factory=LoginLimits)
    session_idle_s: int = SESSION_IDLE_S
    # The rule pack in force and its reload (rules_admin.py); None where no rule engine
    # runs in this process (the API's own tests): /api/rules then answers 409.
    rules: RulesAdmin | None = None
    # Built from the above (web/throttle.py, sessions.py, tokens.py).
    throttle: Throttle = field(init=False)
    sessions: SessionStore = field(init=False)
    tokens: TokenStore = field(init=False)

    def __post_init__(self) -> None:
        self.throttle = Throttle(self.redis, self.login_limits)
        self.sessions = SessionStore(self.redis, self.session_idle_s, clock=lambda: self.clock())
        self.tokens = TokenStore(self.redis)


def context(conn: HTTPConnection) -> AppContext:
    """The dependency routers use; works for HTTP requests and WebSockets alike."""
    return conn.app.state.ctx  # type: ignore[no-any-return]


async def audit(ctx: AppContext, principal: Principal, action: str, **detail: str) -> None:
    """Who did what to which alarm or resident, kept apart from the alarms so it survives them."""
    await ctx.redis.xadd(
        KEYS.audit(),
        audit_record(ctx.clock(), principal.username, action, str(principal.role), **detail),
        maxlen=AUDIT_MAXLEN,
        approximate=True,
    )
