"""Poison messages: no single message may stop the centre, now or after a restart.

Before the fix each of these killed the service in under a second, and at QoS 1 the
message stayed in the broker session and killed it again after every restart.
"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from tests.service import Api, Publisher, ServiceProcess
from tests.test_contract import POISON
from tests.waiting import until

STATUS_POISON = [b'{"online":true,"ts":"\xc3\x28"}', b'{"online":true,"x":' + b"[" * 1000 + b"]" * 1000 + b"}"]


async def dead_letters(url: str) -> list[dict[bytes, bytes]]:
    client = aioredis.Redis.from_url(url)
    try:
        return [fields for _, fields in await client.xrange("rc:deadletters")]
    finally:
        await client.aclose()


def send_poison(publisher: Publisher, tenant: str) -> int:
    """Every poison payload as an event and every status poison, at QoS 0 and QoS 1."""
    sent = 0
    for qos in (0, 1):
        for payload in POISON:
            publisher.client.publish(f"rc/v1/{tenant}/devices/h1-btn/events", payload[:4096], qos=qos).wait_for_publish(
                5
            )
            sent += 1
        for payload in STATUS_POISON:
            publisher.client.publish(f"rc/v1/{tenant}/devices/h1-btn/status", payload, qos=qos).wait_for_publish(5)
            sent += 1
    return sent


async def wait_letters(url: str, n: int, timeout: float = 10.0) -> list[dict[bytes, bytes]]:
    async def enough() -> list[dict[bytes, bytes]] | None:
        letters = await dead_letters(url)
        return letters if len(letters) >= n else None

    return await until(enough, timeout, f"{n} dead letters")


async def test_poison_messages_are_dead_lettered_and_the_centre_goes_on(
    service: ServiceProcess, api: Api, publisher: Publisher, tenant: str
) -> None:
    sent = send_poison(publisher, tenant)
    publisher.event(tenant, "h2-btn", "after-poison", "alarm.button")
    started = time.monotonic()
    await api.wait_for(lambda al: [a for a in al if a["home_id"] == "h2"], timeout=5)
    assert time.monotonic() - started < 2.0
    letters = await wait_letters(service.redis_url, sent)
    assert len(letters) == sent
    assert {f[b"reason"].decode() for f in letters} <= {"malformed_json", "schema", "oversized"}
    assert service.proc is not None and service.proc.poll() is None, service.log_tail()
    assert (await api.client.get("/readyz")).status_code == 200

    # The poison was acked once its dead letter was stored: a restart on the same broker
    # session gets none of it back (no crash loop, no second dead letter).
    service.stop()
    service.start()
    publisher.event(tenant, "h3-btn", "after-restart", "alarm.button")
    await api.wait_for(lambda al: [a for a in al if a["home_id"] == "h3"], timeout=10)
    assert len(await dead_letters(service.redis_url)) == sent


async def test_a_bug_on_one_message_is_dead_lettered_as_internal_and_acked(
    tmp_path, tenant: str, mosquitto, redis_url: str, publisher: Publisher
) -> None:
    """A fault of our own (here a directory that fails on one device, standing in for any
    bug) costs that message only: dead-lettered as `internal` with the exception's class,
    acked, reported by /readyz's fault record, and the next message is stored."""
    import dataclasses

    import yaml

    from responsecentre.config import Settings
    from responsecentre.directory import Directory, load_directory
    from responsecentre.faults import Faults
    from responsecentre.ingest.log import EventLog
    from responsecentre.ingest.mqtt import BrokerLink
    from responsecentre.ingest.pipeline import Ingest
    from responsecentre.metrics import Metrics
    from responsecentre.service import mqtt_accounts
    from tests.service import forget_session, homes_doc, staff_doc

    (tmp_path / "homes.yaml").write_text(yaml.safe_dump(homes_doc(tenant)))
    (tmp_path / "staff.yaml").write_text(yaml.safe_dump(staff_doc(tenant)))
    real = load_directory(tmp_path / "homes.yaml", tmp_path / "staff.yaml")

    class Buggy(Directory):
        def device(self, t: str, device_id: str):  # type: ignore[no-untyped-def]
            if device_id == "h1-btn":
                raise KeyError("a bug for this device")
            return real.device(t, device_id)

    directory = Buggy(**{f.name: getattr(real, f.name) for f in dataclasses.fields(real)})
    settings = Settings(mqtt_url=mosquitto.url, redis_url=redis_url, mqtt_credentials=mosquitto.credentials_path)
    ingest_url, _, _ = mqtt_accounts(settings)  # the centre's real account and ACL
    forget_session(mosquitto)  # nothing left over from earlier tests in the rc-ingest session
    metrics, faults = Metrics(), Faults()
    redis = aioredis.Redis.from_url(redis_url)
    link = BrokerLink(ingest_url, settings.client_id, 60, metrics)
    ingest = Ingest(link, EventLog(redis), directory, metrics, settings, faults)
    link.start()
    task = asyncio.create_task(ingest.run())
    try:
        await asyncio.wait_for(link.subscribed.wait(), 10)
        publisher.event(tenant, "h1-btn", "bug-1", "alarm.button")
        (letter,) = await wait_letters(redis_url, 1)
        assert letter[b"reason"] == b"internal" and letter[b"detail"].startswith(b"KeyError")
        assert "ingest" in faults.failing(int(time.time() * 1000))
        publisher.event(tenant, "h2-btn", "fine-1", "alarm.button")
        await until(lambda: redis.xlen(f"rc:{tenant}:events"), 5, "the next event stored")
        assert await redis.xlen(f"rc:{tenant}:events") == 1
        assert not faults.failing(int(time.time() * 1000))
        assert not task.done()
    finally:
        task.cancel()
        link.stop()
        await redis.aclose()
    # Acked: the same session, connected again, gets nothing back. The broker sends a
    # session's queued messages before new ones, so the first to arrive after a marker is
    # published must be the marker itself.
    link2 = BrokerLink(ingest_url, settings.client_id, 60, Metrics())
    link2.start()
    try:
        await asyncio.wait_for(link2.subscribed.wait(), 10)
        publisher.event(tenant, "h3-btn", "marker", "alarm.button")
        first = await asyncio.wait_for(link2.inbox.get(), 10)
        assert b'"marker"' in first.payload, first
    finally:
        link2.stop()
