"""Hot reload in one process: `GET /api/rules`, `POST /api/rules/reload` and the CLI's
`rules reload` through Redis, all through rules_admin.py, against a real engine and Redis.

The rule processor's part (swapping at a batch boundary, the snapshot) is stood in for by
`Direct`, which swaps at once; tests/test_e2e_reload.py runs the whole service.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from responsecentre.cli import main
from responsecentre.config import Settings
from responsecentre.engine import Engine, RulePack
from responsecentre.engine.conditions import Conditions
from responsecentre.engine.homes import HomeParams
from responsecentre.rules_admin import RulesAdmin, ask_service, prepare_text
from responsecentre.store.keys import KEYS
from responsecentre.web.app import create_app
from tests.servers import Redis
from tests.service import PASSWORD, TEST_RULES
from tests.test_http_edges import ROLES, TENANT, make_context

CHANGED = TEST_RULES.replace("within: 2s", "within: 3s")  # medication-not-taken changes meaning
BROKEN = TEST_RULES.replace("when: alarm.button", "when: alarm.buton")
BROKEN_LINE = 1 + TEST_RULES.splitlines().index("    when: alarm.button")


@dataclass
class Direct:
    """The processor's side of a reload, without a processor: swap the engine's pack now."""

    engine: Engine
    calls: int = 0

    def request_reload(
        self, pack: RulePack, homes: HomeParams, supervision_ms: np.ndarray | None, conditions: Conditions
    ) -> asyncio.Future[Any]:
        self.calls += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(self.engine.reload(pack, homes=homes, supervision_ms=supervision_ms))
        return future


@dataclass
class Bench:
    http: httpx.AsyncClient
    admin: RulesAdmin
    rules_path: Path
    redis_url: str
    reloader: Direct

    async def audit(self) -> list[dict[str, str]]:
        entries = await self.admin.redis.xrange(KEYS.audit())
        return [{k.decode(): v.decode() for k, v in f.items()} for _, f in entries if f[b"action"] == b"rules_reload"]


@pytest.fixture
async def bench(redis_server: Redis, tmp_path: Path) -> AsyncIterator[Bench]:
    ctx = make_context(redis_server.url)
    await ctx.redis.flushdb()
    for role in ROLES:
        await ctx.users.add(role, PASSWORD, role, "n1" if role == "nurse" else None, [TENANT])
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(TEST_RULES)
    settings = Settings(rules_path=rules_path, homes_path=tmp_path / "homes.yaml")
    chains = ctx.desk.chains
    prepared = prepare_text(TEST_RULES, str(rules_path), ctx.directory, chains, settings)
    engine = Engine(prepared.pack, ctx.directory.device_home(), prepared.supervision_ms, homes=prepared.homes)
    admin = RulesAdmin.at_start(prepared, settings, ctx.directory, chains, ctx.redis, ctx.metrics, ctx.clock)
    admin.processor = reloader = Direct(engine)
    ctx.rules = admin
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://rc") as http:
        yield Bench(http, admin, rules_path, redis_server.url, reloader)
    await ctx.redis.aclose()


async def test_the_pack_in_force_is_shown_to_admins_operators_and_integrators_only(bench: Bench) -> None:
    for role in ("admin", "operator", "integrator"):
        r = await bench.http.get("/api/rules", auth=(role, PASSWORD))
        assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"] == str(bench.rules_path) and body["loaded_by"] == "start"
    assert body["sha256"] == bench.admin.active.sha256 and len(body["sha256"]) == 64
    names = [rule["name"] for rule in body["rules"]]
    assert names == ["assistance-button", "fall-not-cancelled", "medication-not-taken", "low-battery"]
    fall = body["rules"][1]
    assert fall["kind"] == "not_followed" and fall["alarm"] == "fall" and fall["priority"] == "critical"
    assert len(fall["meaning"]) == 16
    assert (await bench.http.get("/api/rules", auth=("nurse", PASSWORD))).status_code == 403
    assert (await bench.http.get("/api/rules")).status_code == 401


async def test_a_reload_over_http_swaps_the_pack_keeps_unchanged_rules_and_is_audited(bench: Bench) -> None:
    before = (await bench.http.get("/api/rules", auth=("admin", PASSWORD))).json()
    bench.rules_path.write_text(CHANGED)
    assert (await bench.http.post("/api/rules/reload", auth=("operator", PASSWORD))).status_code == 403
    r = await bench.http.post("/api/rules/reload", auth=("admin", PASSWORD))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["previous_sha256"] == before["sha256"] and body["sha256"] != before["sha256"]
    assert body["rules"] == 4 and body["reset"] == ["medication-not-taken"]
    assert body["kept"] == ["assistance-button", "fall-not-cancelled", "low-battery"]
    assert body["added"] == [] and body["removed"] == [] and body["seconds"] >= 0
    after = (await bench.http.get("/api/rules", auth=("integrator", PASSWORD))).json()
    assert after["sha256"] == body["sha256"] and after["loaded_by"] == "http"
    meaning = {rule["name"]: rule["meaning"] for rule in after["rules"]}
    old = {rule["name"]: rule["meaning"] for rule in before["rules"]}
    assert [n for n in meaning if meaning[n] != old[n]] == ["medication-not-taken"]
    (record,) = await bench.audit()
    assert record["user"] == "admin" and record["role"] == "admin" and record["outcome"] == "applied"
    assert record["sha256"] == body["sha256"] and record["previous"] == before["sha256"]
    assert record["reset"] == "medication-not-taken" and record["trigger"] == "http"


async def test_a_broken_pack_is_refused_with_file_and_line_and_the_old_one_stays(bench: Bench) -> None:
    sha = bench.admin.active.sha256
    bench.rules_path.write_text(BROKEN)
    r = await bench.http.post("/api/rules/reload", auth=("admin", PASSWORD))
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error.startswith(f"{bench.rules_path}:{BROKEN_LINE}: unknown event type 'alarm.buton'"), error
    assert bench.reloader.calls == 0 and bench.admin.active.sha256 == sha
    assert (await bench.http.get("/api/rules", auth=("admin", PASSWORD))).json()["sha256"] == sha
    (record,) = await bench.audit()
    assert record["outcome"] == "refused" and record["previous"] == sha and "alarm.buton" in record["errors"]
    bench.rules_path.unlink()
    r = await bench.http.post("/api/rules/reload", auth=("admin", PASSWORD))
    assert r.status_code == 422 and "cannot be read" in r.json()["errors"][0]


async def test_a_pack_naming_an_unknown_chain_is_refused(bench: Bench) -> None:
    bench.rules_path.write_text(TEST_RULES.replace("chain: urgent}\n  - name: fall", "chain: slow}\n  - name: fall"))
    r = await bench.http.post("/api/rules/reload", auth=("admin", PASSWORD))
    assert r.status_code == 422
    assert r.json()["errors"] == ["rules name chains that escalation/chains.yaml does not define: slow"]


async def test_the_cli_reloads_through_redis_and_prints_what_was_kept(
    bench: Bench, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serving = asyncio.create_task(bench.admin.serve_requests())
    await asyncio.wait_for(bench.admin.serving.wait(), 5)
    try:
        other = tmp_path / "other.yaml"
        other.write_text(CHANGED)
        argv = ["rules", "reload", "--rules", str(other), "--redis", bench.redis_url]
        assert await asyncio.to_thread(main, argv) == 0
        out = capsys.readouterr().out
        assert f"{other}: 4 rules OK" in out
        assert f"loaded: sha256 {bench.admin.active.sha256}" in out
        assert "  reset      1  medication-not-taken" in out
        assert bench.admin.active.source == str(other) and bench.admin.active.trigger == "cli"
        # Refused by the service (a chain it lacks), after the local check passed.
        other.write_text(CHANGED.replace("chain: urgent}\n  - name: fall", "chain: slow}\n  - name: fall"))
        assert await asyncio.to_thread(main, argv) == 1
        err = capsys.readouterr().err
        assert "the service refused the pack" in err and "does not define: slow" in err
        records = await bench.audit()
        assert [r["outcome"] for r in records] == ["applied", "refused"]
        assert records[0]["user"].startswith("cli:") and records[0]["trigger"] == "cli"
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)


async def test_the_cli_checks_locally_first_and_says_when_no_service_answers(
    bench: Bench, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN)
    argv = ["rules", "reload", "--redis", bench.redis_url, "--timeout", "0.5"]
    assert await asyncio.to_thread(main, [*argv, "--rules", str(broken)]) == 1
    assert f"error: {broken}:{BROKEN_LINE}: unknown event type" in capsys.readouterr().err
    assert await bench.admin.redis.xlen(KEYS.rules_reload_requests()) == 0  # nothing was sent
    assert await asyncio.to_thread(main, [*argv, "--rules", str(bench.rules_path)]) == 1  # nobody serves
    assert "no service answered within 0.5 s" in capsys.readouterr().err
    assert await bench.admin.redis.xlen(KEYS.rules_reload_requests()) == 0  # withdrawn
    # A service that starts later does not apply a request made before it.
    serving = asyncio.create_task(bench.admin.serve_requests())
    await asyncio.wait_for(bench.admin.serving.wait(), 5)
    try:
        answer = await ask_service(bench.admin.redis, CHANGED, "late.yaml", "tester", timeout_s=5)
        assert answer is not None and answer["ok"] and answer["reset"] == ["medication-not-taken"]
        assert bench.reloader.calls == 1
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
