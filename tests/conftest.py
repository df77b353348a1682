from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.servers import Mosquitto, Redis, running
from tests.service import TEST_RULES, Api, Publisher, ServiceProcess

os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".cache" / "numba"))


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """The production broker config (the centre's accounts and ACLs) plus harness accounts."""
    with running(Mosquitto, tmp_path_factory.mktemp("mosquitto")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    with running(Redis, tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def tenant() -> str:
    """A tenant name of its own per test: its topics and Redis keys touch nobody else's."""
    return f"t{uuid.uuid4().hex[:10]}"


async def seed(url: str, tenant: str) -> None:
    """Empty the database and create one user per role of `tenant` (password tests.service.PASSWORD)."""
    import redis.asyncio as aioredis

    from responsecentre.web.auth import Users
    from tests.service import PASSWORD

    client = aioredis.Redis.from_url(url)
    try:
        await client.flushdb()
        users = Users(client)
        for name, role in (("operator", "operator"), ("nurse", "nurse"), ("integrator", "integrator")):
            await users.add(name, PASSWORD, role, "n1" if role == "nurse" else None, [tenant])
    finally:
        await client.aclose()


@pytest.fixture
async def redis_url(redis_server: Redis, tenant: str) -> str:
    """The test Redis, emptied: every test starts from no keys."""
    await seed(redis_server.url, tenant)
    return redis_server.url


@pytest.fixture
def service_env() -> dict[str, str]:
    """Settings (RC_*) of the `service` fixture beyond tests/service.py's; a module overrides it."""
    return {}


@pytest.fixture
def service_rules() -> str:
    """The rule pack of the `service` fixture; a module overrides it to test its own rules."""
    return TEST_RULES


@pytest.fixture
def service(
    tmp_path: Path,
    tenant: str,
    mosquitto: Mosquitto,
    redis_url: str,
    service_env: dict[str, str],
    service_rules: str,
) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(
        tenant=tenant, workdir=tmp_path / "service", broker=mosquitto, redis_url=redis_url, rules=service_rules
    )
    svc.env.update(service_env)
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture
def publisher(mosquitto: Mosquitto) -> Iterator[Publisher]:
    pub = Publisher(mosquitto)  # on a harness account (tests/servers.py)
    try:
        yield pub
    finally:
        pub.close()


@pytest.fixture
async def api(service: ServiceProcess) -> AsyncIterator[Api]:
    client = Api(service.base_url)
    try:
        yield client
    finally:
        await client.close()
