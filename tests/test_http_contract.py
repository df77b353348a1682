"""The API keeps its own document: schemathesis with every check, as every role.

Runs in-process against the ASGI app and a real Redis (no broker: HTTP does not need
one), with alarms in Redis so the detail, ack, resolve and note paths answer 200 and 409,
not only 404. Derandomized and bounded so it costs the same, and finds the same, each run.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from responsecentre.web.app import AppContext, create_app
from responsecentre.web.throttle import LoginLimits, Throttle
from tests.servers import Redis
from tests.service import PASSWORD
from tests.test_http_edges import ROLES, TENANT, make_context, prepare

EXAMPLES_PER_OPERATION = 30


@pytest.fixture(scope="module")
def seeded(redis_server: Redis) -> Iterator[list[str]]:
    """The ids of the alarms the run may look up and act on (fresh database)."""
    yield asyncio.run(prepare(redis_server.url))


class Deferred:
    """The app under test, bound once Redis is up. schemathesis reads the document when
    this module is imported, before any fixture; building the document needs no Redis, so
    an app on an unconnected client gives it until `app_on_redis` binds the real one."""

    def __init__(self) -> None:
        self.app = create_app(contract_context("redis://127.0.0.1:1/0"))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def contract_context(redis_url: str) -> AppContext:
    """The test app, with sign-in limits out of reach: the run sends thousands of requests
    with wrong credentials on purpose (and a random current password to /api/me/password),
    and a throttled user would answer 429 to everything after, testing nothing."""
    return replace_limits(make_context(redis_url), LoginLimits(10**9, 10**9, 10**9))


def replace_limits(ctx: AppContext, limits: LoginLimits) -> AppContext:
    ctx.login_limits = limits
    ctx.throttle = Throttle(ctx.redis, limits)
    return ctx


APP = Deferred()
# /openapi.json is for signed-in users, and the app has no Redis (so no users) yet: the
# document comes from the app itself, as the route would serve it (JSON round trip).
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(APP.app.openapi())))
schema.app = APP
schema.location = "/openapi.json"


@pytest.fixture(scope="module", autouse=True)
def app_on_redis(redis_server: Redis, seeded: list[str]) -> None:
    # The app's Redis client connects lazily, on schemathesis' own event-loop thread.
    APP.app = create_app(contract_context(redis_server.url))


def real_ids(case: Any, alarm_ids: list[str]) -> Any:
    """The same request aimed at an alarm and a home that exist, or None if it names neither.
    Generated ids are almost never real ones, and a contract run that only ever sees 404
    says nothing about the 200 and 409 answers."""
    params = dict(case.path_parameters or {})
    if "alarm_id" in params:
        params["alarm_id"] = alarm_ids[zlib.crc32(repr(case.body).encode()) % len(alarm_ids)]
    elif "home_id" in params:
        params.update(tenant=TENANT, home_id="h1")
    elif "device_id" in params:
        params.update(tenant=TENANT, device_id="h1-btn")
    else:
        return None
    return case.operation.Case(
        method=case.operation.method.upper(),
        path_parameters=params,
        headers=case.headers,
        cookies=case.cookies,
        query=case.query,
        body=case.body,
        media_type=case.media_type,
    )


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_answers_as_its_document_says(case: Any, seeded: list[str]) -> None:
    aimed = real_ids(case, seeded)  # before any call: checks may alter the case they probe with
    for role in ROLES:
        case.call_and_validate(auth=(role, PASSWORD))
        if aimed is not None:
            aimed.call_and_validate(auth=(role, PASSWORD))


def test_every_schemathesis_check_is_on() -> None:
    """`call_and_validate` runs the checks the configuration enables; a config file or a
    new schemathesis default that turned one off would quietly weaken the test above."""
    from schemathesis.checks import CHECKS, load_all_checks

    load_all_checks()
    config = schema.config.checks_config_for()
    names = CHECKS.get_all_names()
    assert len(names) >= 14
    assert [name for name in names if not config.get_by_name(name=name).enabled] == []
