"""End to end through real mosquitto, Redis and the service as a child process.

The test chain `urgent` has two steps of 2 s each and no repeat (tests/service.py).
"""

from __future__ import annotations

import time

import pytest
import redis.asyncio as aioredis

from tests.servers import Mosquitto
from tests.service import Api, Publisher, ServiceProcess
from tests.waiting import until


def of_kind(kind: str):
    return lambda alarms: [a for a in alarms if a["kind"] == kind]


class Listener:
    """Subscribes like a nurse's handset and an integration would."""

    def __init__(self, mosquitto: Mosquitto, *topics: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.client = mosquitto.client()  # a harness account: it may read every tenant's topics
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.acked: set[int] = set()  # mids of the SUBACKs received
        self.client.on_subscribe = lambda c, u, mid, *rest: self.acked.add(mid)
        self.mids = [self.client.subscribe(t, qos=1)[1] for t in topics]

    async def subscribed(self) -> None:
        await until(lambda: set(self.mids) <= self.acked, 5, "the listener's SUBACKs")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def test_fall_escalates_then_ack_stops_it_and_resolve_closes_it(
    service: ServiceProcess, api: Api, publisher: Publisher, mosquitto: Mosquitto, tenant: str
) -> None:
    listener = Listener(mosquitto, f"rc/v1/{tenant}/staff/+/pages", f"rc/v1/{tenant}/alarms/+")
    try:
        await listener.subscribed()
        sent = time.time()
        publisher.event(tenant, "h1-fall", "f-1", "fall.detected")
        # Not cancelled within 1 s -> a critical fall alarm, chain step 1.
        (alarm,) = of_kind("fall")(await api.wait_for(of_kind("fall"), timeout=10))
        assert alarm["priority"] == "critical" and alarm["state"] == "raised" and alarm["step"] == 1
        assert alarm["home_id"] == "h1" and time.time() - sent >= 1.0
        # No ack within 2 s -> step 2.
        at_step_2 = await api.wait_for(lambda al: any(a["id"] == alarm["id"] and a["step"] == 2 for a in al), 6)
        step_2_due = next(a for a in at_step_2 if a["id"] == alarm["id"])["next_step_due"]
        r = await api.client.post(f"/api/alarms/{alarm['id']}/ack", json={})
        assert r.status_code == 200 and r.json()["state"] == "acknowledged"
        # Step 2's deadline passes and the timer loop has looked past it: an acked alarm
        # must not have moved on.
        await api.swept_past("responsecentre_timers_swept_until_seconds", step_2_due)
        after = await api.alarm(alarm["id"])
        assert after["state"] == "acknowledged" and after["step"] == 2 and not after["unhandled"]
        r = await api.client.post(f"/api/alarms/{alarm['id']}/resolve", json={"code": "no-such-code"})
        assert r.status_code == 422 and "assisted" in r.text  # names the valid codes
        r = await api.client.post(f"/api/alarms/{alarm['id']}/resolve", json={"code": "assisted", "note": "helped up"})
        assert r.status_code == 200 and r.json()["state"] == "resolved"
        assert not of_kind("fall")(await api.alarms())
        detail = await api.alarm(alarm["id"])
        whats = [e["what"] for e in detail["timeline"]]
        assert whats[0] == "raised"
        for what in ("notified", "paged", "escalated", "acknowledged", "resolved"):
            assert what in whats, whats
        assert whats.index("escalated") < whats.index("acknowledged") < whats.index("resolved")
        # The nurse (step 1) and the team lead (step 2) were paged over MQTT; integrations saw each state.
        await until(lambda: any(t.endswith("/tl1/pages") for t, _ in listener.messages), 5, "the team lead's page")
        topics = {t for t, _ in listener.messages}
        assert f"rc/v1/{tenant}/staff/n1/pages" in topics and f"rc/v1/{tenant}/staff/tl1/pages" in topics
        assert f"rc/v1/{tenant}/alarms/{alarm['id']}" in topics
        assert all(b"Resident" not in p for _, p in listener.messages)  # no personal data on MQTT
    finally:
        listener.close()


async def test_exhausted_chain_marks_the_alarm_unhandled(
    service: ServiceProcess, api: Api, publisher: Publisher, tenant: str
) -> None:
    publisher.event(tenant, "h2-btn", "b-1", "alarm.button")
    (alarm,) = of_kind("assistance")(await api.wait_for(of_kind("assistance"), timeout=5))
    alarms = await api.wait_for(lambda al: any(a["unhandled"] for a in al), timeout=8)
    assert alarms[0]["id"] == alarm["id"]  # UNHANDLED sorts first
    timeline = [e["what"] for e in (await api.alarm(alarm["id"]))["timeline"]]
    assert timeline.count("escalated") == 1 and timeline[-1] == "unhandled"


async def test_a_cancelled_fall_raises_nothing(
    service: ServiceProcess, api: Api, publisher: Publisher, tenant: str
) -> None:
    sent_ms = int(time.time() * 1000)
    publisher.event(tenant, "h1-fall", "f-2", "fall.detected", ts_ms=sent_ms)
    publisher.event(tenant, "h1-fall", "f-3", "fall.cancelled")
    publisher.event(tenant, "h3-btn", "b-9", "alarm.button")  # a marker that processing has moved on
    await api.wait_for(of_kind("assistance"), timeout=5)
    # The rule engine has swept past the end of the 1 s window: had the cancel not
    # counted, the fall alarm would be raised by now.
    await api.swept_past("responsecentre_engine_swept_until_seconds", (sent_ms + 1000) / 1000)
    assert not of_kind("fall")(await api.alarms())


async def test_a_redelivered_event_triggers_once_and_others_join_the_open_alarm(
    service: ServiceProcess, api: Api, publisher: Publisher, tenant: str
) -> None:
    publisher.event(tenant, "h1-btn", "same-id", "alarm.button")
    publisher.event(tenant, "h1-btn", "same-id", "alarm.button")
    (alarm,) = of_kind("assistance")(await api.wait_for(of_kind("assistance"), timeout=5))
    publisher.event(tenant, "h3-btn", "marker", "alarm.button")  # another home: its own alarm
    await api.wait_for(lambda al: len(of_kind("assistance")(al)) == 2, timeout=5)
    assert (await api.alarm(alarm["id"]))["triggers"] == 1
    publisher.event(tenant, "h1-btn", "next-id", "alarm.button")
    await api.wait_for(lambda al: any(a["id"] == alarm["id"] and a["triggers"] == 2 for a in al), timeout=5)
    assert len(of_kind("assistance")(await api.alarms())) == 2  # joined, not a second alarm for h1


@pytest.mark.parametrize(
    ("topic_device", "payload", "reason"),
    [
        ("h1-btn", b"{not json", "malformed_json"),
        ("h1-btn", b'{"id": "x1", "type": "alarm.button", "ts": true}', "schema"),
        ("h1-btn", b'{"id": "x2", "type": 7, "ts": 1732240000000}', "schema"),
        ("h1-btn", b'{"id": "x3", "ts": 1732240000000}', "schema"),
        ("h1-btn", b'{"id": "x4", "type": "alarm.explode", "ts": 1732240000000}', "unknown_type"),
        ("h1-btn", b'{"id": "x5", "type": "alarm.button", "ts": "yesterday"}', "bad_timestamp"),
        ("nobody", b'{"id": "x6", "type": "alarm.button", "ts": 1732240000000}', "unknown_device"),
        ("h1-btn", b'{"id": "x7", "type": "alarm.button", "ts": 1, "pad": "' + b"x" * (1 << 20) + b'"}', "oversized"),
    ],
)
async def test_bad_input_is_dead_lettered_and_the_next_good_event_is_processed(
    service: ServiceProcess, api: Api, publisher: Publisher, tenant: str, topic_device: str, payload: bytes, reason: str
) -> None:
    publisher.raw(f"rc/v1/{tenant}/devices/{topic_device}/events", payload)
    publisher.event(tenant, "h2-btn", "good-1", "alarm.button")
    await api.wait_for(of_kind("assistance"), timeout=5)
    client = aioredis.Redis.from_url(service.redis_url)
    try:
        letters = await client.xrange("rc:deadletters")
    finally:
        await client.aclose()
    assert [f[b"reason"].decode() for _, f in letters] == [reason]
    record = letters[0][1]
    assert record[b"detail"] and int(record[b"size"]) == len(payload) and len(record[b"sample"]) <= 1024
    metrics = (await api.client.get("/metrics")).text
    assert f'responsecentre_events_rejected_total{{reason="{reason}"}} 1.0' in metrics
    assert (await api.client.get("/healthz")).status_code == 200


async def test_sigkill_mid_chain_resumes_at_the_right_step_and_time(
    tmp_path, tenant: str, mosquitto: Mosquitto, redis_url: str, publisher: Publisher
) -> None:
    chains = {
        "chains": {
            "urgent": {
                "repeat": 0,
                "steps": [
                    {"targets": ["console"], "channels": ["console"], "ack_within": "8s"},
                    {"targets": ["console", {"role": "nurse"}], "channels": ["console", "mqtt"], "ack_within": "3s"},
                ],
            }
        }
    }
    svc = ServiceProcess(tenant=tenant, workdir=tmp_path / "svc", broker=mosquitto, redis_url=redis_url, chains=chains)
    svc.start()
    api = Api(svc.base_url)
    try:
        publisher.event(tenant, "h1-btn", "k-1", "alarm.button")
        (alarm,) = await api.wait_for(of_kind("assistance"), timeout=5)
        # A dose falls due and is never taken; the engine holds its 2 s deadline when the
        # service dies: the pending deadline must survive (snapshot + replay of the log).
        publisher.event(tenant, "h3-med", "m-0", "medication.due")
        await api.metric_reaches("responsecentre_events_processed_total", 2)  # the dose is in the engine
        svc.kill()  # mid step 1 of the button alarm, with the dose's deadline pending
        # While it is down, another dose falls due: the broker keeps it for our session.
        publisher.event(tenant, "h2-med", "m-1", "medication.due")
        svc.start()
        detail = await api.alarm(alarm["id"])
        assert detail["step"] == 1 and detail["state"] == "raised"
        await api.wait_for(lambda al: any(a["id"] == alarm["id"] and a["step"] == 2 for a in al), timeout=14)
        doses = await api.wait_for(lambda al: len(of_kind("missed_dose")(al)) == 2, timeout=10)
        assert {a["home_id"] for a in of_kind("missed_dose")(doses)} == {"h2", "h3"}
        await api.wait_for(lambda al: any(a["id"] == alarm["id"] and a["unhandled"] for a in al), timeout=8)
        timeline = (await api.alarm(alarm["id"]))["timeline"]
        raised = next(e for e in timeline if e["what"] == "raised")
        escalated = [e for e in timeline if e["what"] == "escalated"]
        assert len(escalated) == 1 and escalated[0]["detail"]["step"] == 2  # nothing skipped or repeated
        from datetime import datetime

        def ts(e: dict) -> float:
            return datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp()

        late = ts(escalated[0]) - ts(raised) - 8.0
        assert 0 <= late < 1.0, f"step 2 began {late:.2f}s after its planned time"
        assert [e["what"] for e in timeline].count("unhandled") == 1
    finally:
        await api.close()
        svc.stop()


async def test_retained_device_status_is_stored_and_shown_and_a_bad_one_dead_lettered(
    service: ServiceProcess, api: Api, publisher: Publisher, tenant: str
) -> None:
    from responsecentre.contract import encode_status, format_ts, status_topic

    publisher.client.publish(status_topic(tenant, "h1-fall"), encode_status(True, 64, 1_795_000_000_000), 1, True)
    publisher.raw(status_topic(tenant, "h1-btn"), b'{"online": "yes"}')

    async def devices_once_stored() -> dict[str, dict] | None:
        devices = {d["device_id"]: d for d in (await api.client.get("/api/devices")).json()["devices"]}
        return devices if devices["h1-fall"]["online"] is not None else None

    devices = await until(devices_once_stored, 5, "the retained status stored")
    assert devices["h1-fall"]["online"] is True and devices["h1-fall"]["battery"] == 64
    assert devices["h1-fall"]["status_at"] == format_ts(1_795_000_000_000)
    assert devices["h1-btn"]["online"] is None
    metrics = (await api.client.get("/metrics")).text
    assert 'responsecentre_events_rejected_total{reason="schema"} 1.0' in metrics
    # Clear the retained status (an empty retained message), so no later subscriber of the
    # shared test broker gets it; ingest takes the clearing as such, not as a bad message.
    publisher.client.publish(status_topic(tenant, "h1-fall"), b"", 1, True).wait_for_publish(5)
    await api.metric_reaches("responsecentre_device_statuses_total ", 2)  # the clearing is taken
    metrics = (await api.client.get("/metrics")).text
    assert 'reason="malformed_json"' not in metrics
