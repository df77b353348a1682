"""End to end through real mosquitto, Redis and the service: hot reload of the rule pack.

Under a steady stream of events, `POST /api/rules/reload` swaps in a pack with one changed
rule: no event is lost (all stored, all processed), the changed rule applies at once, and
a "not followed by" deadline armed before the reload fires at its own time after it. A
broken pack is refused with file:line and the running one keeps working. SIGHUP and
`responsecentre rules reload` (through Redis) reload the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from responsecentre.cli import main
from responsecentre.contract import encode_event, events_topic
from responsecentre.processor import stream_seq
from responsecentre.store.keys import KEYS
from responsecentre.web.auth import Users
from tests.service import PASSWORD, Api, Publisher, ServiceProcess
from tests.waiting import until

RULES = """
version: 1
rules:
  - name: assistance-button
    when: alarm.button
    raise: {kind: assistance, priority: critical, chain: urgent}
  - name: fall-not-cancelled
    when: fall.detected
    unless: {followed_by: fall.cancelled, within: 1s}
    raise: {kind: fall, priority: critical, chain: urgent}
  - name: medication-not-taken
    when: medication.due
    unless: {followed_by: medication.taken, within: 6s}
    raise: {kind: missed_dose, priority: medium, chain: urgent}
  - name: low-battery
    when: device.battery
    value: {below: 15}
    raise: {kind: low_battery, priority: low, chain: urgent}
"""
CHANGED = RULES.replace("value: {below: 15}", "value: {below: 20}")  # one rule changes its meaning
BROKEN = RULES.replace("when: alarm.button", "when: alarm.buton")
BROKEN_LINE = 1 + RULES.splitlines().index("    when: alarm.button")
CHUNK = 100  # events of the steady stream published back to back, then their PUBACKs awaited
MAX_CHUNKS = 200  # the stream's bound, should the test never say stop


@pytest.fixture
def service_rules() -> str:
    return RULES


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
async def admin(service: ServiceProcess, redis_url: str, tenant: str) -> AsyncIterator[Api]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        await Users(client).add("admin", PASSWORD, "admin", None, [tenant])
    finally:
        await client.aclose()
    api = Api(service.base_url, username="admin")
    try:
        yield api
    finally:
        await api.close()


def rules_file(service: ServiceProcess) -> Path:
    return service.workdir / "rules.yaml"  # the file the service was started with


async def in_force(api: Api) -> dict[str, Any]:
    r = await api.client.get("/api/rules")
    r.raise_for_status()
    return r.json()  # type: ignore[no-any-return]


def steady_stream(publisher: Publisher, tenant: str, stop: threading.Event) -> int:
    """Heartbeats from two homes, chunk by chunk (each chunk's PUBACKs awaited), until
    `stop` and then two chunks more, so traffic runs on across the swap; how many were sent."""
    devices = ["h2-btn", "h3-btn", "h2-fall", "h3-fall"]
    ts = int(time.time() * 1000)
    sent, after_stop = 0, 0
    for _ in range(MAX_CHUNKS):
        if stop.is_set():
            if after_stop == 2:
                break
            after_stop += 1
        infos = [
            publisher.client.publish(
                events_topic(tenant, devices[i % len(devices)]), encode_event(f"hb-{i}", "device.heartbeat", ts), qos=1
            )
            for i in range(sent, sent + CHUNK)
        ]
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published()
        sent += CHUNK
    return sent


async def test_a_reload_under_traffic_loses_no_event_and_keeps_a_pending_deadline(
    service: ServiceProcess, api: Api, admin: Api, publisher: Publisher, tenant: str, redis_url: str
) -> None:
    due_ts = int(time.time() * 1000)
    publisher.event(tenant, "h1-med", "dose-1", "medication.due", ts_ms=due_ts)  # armed now, due in 6 s
    await api.metric_reaches("responsecentre_events_processed_total", 1)
    before = await in_force(admin)
    rules_file(service).write_text(CHANGED)
    stop = threading.Event()
    traffic = asyncio.create_task(asyncio.to_thread(steady_stream, publisher, tenant, stop))
    try:
        await api.metric_reaches("responsecentre_events_processed_total", 1 + CHUNK, timeout=10)  # the stream is on
        r = await admin.client.post("/api/rules/reload")
        reloaded_at = time.time() * 1000
    finally:
        stop.set()
        sent = await traffic
    assert r.status_code == 200, r.text
    report = r.json()
    assert sent >= 3 * CHUNK and sent < MAX_CHUNKS * CHUNK
    assert reloaded_at < due_ts + 6000, "the reload came after the deadline: the test proves nothing"
    assert report["previous_sha256"] == before["sha256"] and report["sha256"] == sha(CHANGED)
    assert report["reset"] == ["low-battery"] and report["added"] == [] and report["removed"] == []
    assert report["kept"] == ["assistance-button", "fall-not-cancelled", "medication-not-taken"]
    # No event lost: every one stored once, and every one run through the engine once.
    total = 1 + sent
    await api.metric_reaches("responsecentre_events_processed_total", total, timeout=20)
    assert await api.metric("responsecentre_events_processed_total") == total
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert await client.xlen(KEYS.events(tenant)) == total
        (first_id, _), *_ = await client.xrange(KEYS.events(tenant), count=1)
        origin = stream_seq(first_id.decode())
        # The deadline armed before the reload fires at its own time, once, with its own cause.
        missed = await api.wait_for(lambda a: [x for x in a if x["kind"] == "missed_dose"], timeout=10)
        (alarm,) = [x for x in missed if x["kind"] == "missed_dose"]
        assert await client.exists(KEYS.cause(tenant, f"medication-not-taken:h1-med:{origin}")) == 1
    finally:
        await client.aclose()
    raised = next(e for e in (await api.alarm(alarm["id"]))["timeline"] if e["what"] == "raised")
    assert abs(raised["detail"]["event_ts_ms"] - (due_ts + 6000)) <= 1
    assert raised["detail"]["event"] is None  # fired by the sweep, not by an event
    # The changed rule applies at once: 18 was not low before, it is now.
    publisher.event(tenant, "h2-btn", "bat-1", "device.battery", value=18)
    alarms = await api.wait_for(lambda a: [x for x in a if x["kind"] == "low_battery"], timeout=5)
    assert [x["home_id"] for x in alarms if x["kind"] == "low_battery"] == ["h2"]
    assert (await in_force(api))["sha256"] == sha(CHANGED)


async def test_a_broken_pack_is_refused_with_file_and_line_and_the_old_one_keeps_working(
    service: ServiceProcess, api: Api, admin: Api, publisher: Publisher, tenant: str
) -> None:
    rules_file(service).write_text(BROKEN)
    r = await admin.client.post("/api/rules/reload")
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error.startswith(f"{rules_file(service)}:{BROKEN_LINE}: unknown event type 'alarm.buton'"), error
    assert (await api.client.post("/api/rules/reload")).status_code == 403  # operators may not
    shown = await in_force(api)
    assert shown["sha256"] == sha(RULES) and shown["loaded_by"] == "start"
    publisher.event(tenant, "h1-btn", "press-1", "alarm.button")
    await api.wait_for(lambda a: [x for x in a if x["kind"] == "assistance"], timeout=5)


async def test_sighup_and_the_cli_reload_the_running_service(
    service: ServiceProcess, api: Api, publisher: Publisher, tenant: str, redis_url: str, tmp_path: Path
) -> None:
    assert service.proc is not None
    rules_file(service).write_text(CHANGED)
    service.proc.send_signal(signal.SIGHUP)

    async def loaded(digest: str, by: str) -> bool:
        shown = await in_force(api)
        return shown["sha256"] == digest and shown["loaded_by"] == by

    await until(lambda: loaded(sha(CHANGED), "signal"), 10, "the SIGHUP reload")
    assert service.proc.poll() is None  # SIGHUP no longer stops the service
    # A broken file on SIGHUP is refused and logged; the pack in force stays.
    rules_file(service).write_text(BROKEN)
    service.proc.send_signal(signal.SIGHUP)
    await until(lambda: "refused" in service.log_tail(200), 10, "the refusal in the service's log")
    assert f"{rules_file(service)}:{BROKEN_LINE}:" in service.log_tail(200)
    assert (await in_force(api))["sha256"] == sha(CHANGED) and service.proc.poll() is None
    # The CLI: checked here, sent through Redis, answered by the service.
    third = tmp_path / "third.yaml"
    third.write_text(RULES.replace("within: 6s", "within: 7s"))
    argv = ["rules", "reload", "--rules", str(third), "--redis", redis_url]
    assert await asyncio.to_thread(main, argv) == 0
    shown = await in_force(api)
    assert shown["sha256"] == sha(third.read_text()) and shown["loaded_by"] == "cli"
    assert shown["source"] == str(third)
    publisher.event(tenant, "h1-btn", "press-1", "alarm.button")
    await api.wait_for(lambda a: [x for x in a if x["kind"] == "assistance"], timeout=5)
    # SIGTERM still stops it.
    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(15) == 0
