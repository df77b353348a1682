"""The nurse's answers end to end, through real mosquitto, Redis and the service: she
accepts over MQTT, goes en route and on site from her handset, reads the key safe over
the API (audited; nobody else of her role may), and resolves over HTTP. Replies that are
not hers to give get a clear rejection on .../replies/outcome and a timeline entry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from responsecentre.contract import page_topic, replies_topic, reply_outcome_topic
from tests.servers import Mosquitto
from tests.service import Api, Publisher, ServiceProcess
from tests.test_e2e import Listener
from tests.waiting import until

# Long enough that step 1 (the nurse's page) is still live while the test answers it.
CHAINS = {
    "chains": {
        "urgent": {
            "repeat": 0,
            "steps": [
                {"targets": ["console", {"role": "nurse"}], "channels": ["console", "mqtt"], "ack_within": "60s"},
                {"targets": ["console", {"role": "team_lead"}], "channels": ["console", "mqtt"], "ack_within": "60s"},
            ],
        }
    }
}


@pytest.fixture
def service(tmp_path: Path, tenant: str, mosquitto: Mosquitto, redis_url: str) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(
        tenant=tenant, workdir=tmp_path / "service", broker=mosquitto, redis_url=redis_url, chains=CHAINS
    )
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


class Handset:
    """Nurse n1's handset: reads her pages and the outcomes of her replies, sends replies."""

    def __init__(self, mosquitto: Mosquitto, tenant: str) -> None:
        self.tenant = tenant
        self.listener = Listener(mosquitto, page_topic(tenant, "n1"), reply_outcome_topic(tenant, "n1"))

    def pages(self) -> list[dict]:
        return [json.loads(p) for t, p in self.listener.messages if t.endswith("/pages")]

    def outcomes(self) -> list[dict]:
        return [json.loads(p) for t, p in self.listener.messages if t.endswith("/outcome")]

    def reply(self, publisher: Publisher, **body: object) -> None:
        raw = body.pop("raw", None)
        payload = raw if isinstance(raw, bytes) else json.dumps(body).encode()
        assert not publisher.raw(replies_topic(self.tenant, "n1"), payload).is_failure

    async def outcome(self, reply_id: str) -> dict:
        await until(lambda: any(o.get("reply_id") == reply_id for o in self.outcomes()), 10, f"outcome of {reply_id}")
        return next(o for o in self.outcomes() if o.get("reply_id") == reply_id)


async def test_accept_over_mqtt_en_route_on_site_then_resolve_over_http(
    service: ServiceProcess, api: Api, publisher: Publisher, mosquitto: Mosquitto, tenant: str, redis_url: str
) -> None:
    handset = Handset(mosquitto, tenant)
    nurse = Api(service.base_url, "nurse")  # user `nurse` is staff n1 (tests/conftest.py)
    try:
        await handset.listener.subscribed()
        publisher.event(tenant, "h1-btn", "b-1", "alarm.button")
        await until(lambda: handset.pages(), 10, "the page to n1")
        (page,) = handset.pages()
        alarm_id, page_id = page["alarm_id"], page["page_id"]
        assert page["reply_topic"] == replies_topic(tenant, "n1") and "resident" not in page

        # Before she accepts, the key safe is not hers to read.
        assert (await nurse.client.get(f"/api/alarms/{alarm_id}/resident")).status_code == 409

        handset.reply(publisher, alarm_id=alarm_id, page_id=page_id, answer="accept", reply_id="r1")
        taken = await handset.outcome("r1")
        assert (taken["outcome"], taken["state"]) == ("taken", "acknowledged")
        alarm = await api.alarm(alarm_id)
        assert alarm["accepted_by"] == "n1" and alarm["acknowledged_by"] == "staff:n1"

        # Only once: the same page again is turned away, with why, and the timeline says so.
        handset.reply(publisher, alarm_id=alarm_id, page_id=page_id, answer="accept", reply_id="r2")
        twice = await handset.outcome("r2")
        assert twice["outcome"] == "already_answered" and page_id in twice["reason"]

        handset.reply(publisher, alarm_id=alarm_id, answer="en_route", reply_id="r3")
        assert (await handset.outcome("r3"))["state"] == "en_route"
        handset.reply(publisher, alarm_id=alarm_id, answer="on_site", reply_id="r4")
        assert (await handset.outcome("r4"))["state"] == "on_site"

        # Now she may read the key safe; each read is audited.
        r = await nurse.client.get(f"/api/alarms/{alarm_id}/resident")
        assert r.status_code == 200 and r.json()["key_safe"] == "1234"
        r = await api.client.get(f"/api/alarms/{alarm_id}/resident")  # the operator too
        assert r.status_code == 200

        r = await nurse.client.post(f"/api/alarms/{alarm_id}/resolve", json={"code": "assisted", "note": "all well"})
        assert r.status_code == 200 and r.json()["state"] == "resolved"

        detail = await api.alarm(alarm_id)
        whats = [e["what"] for e in detail["timeline"]]
        for what in ("accepted", "reply_rejected", "en_route", "on_site", "resolved"):
            assert what in whats, whats
        rejected = next(e for e in detail["timeline"] if e["what"] == "reply_rejected")
        assert rejected["detail"]["code"] == "already_answered" and rejected["detail"]["via"] == "mqtt"
        assert detail["en_route_at"] and detail["on_site_at"]

        client = aioredis.Redis.from_url(redis_url)
        try:
            audit = [
                {k.decode(): v.decode() for k, v in fields.items()}
                for _, fields in await client.xrange("rc:audit", "-", "+")
            ]
        finally:
            await client.aclose()
        reads = [a for a in audit if a.get("action") == "view_resident" and a.get("alarm") == alarm_id]
        assert {a["user"] for a in reads} == {"nurse", "operator"}
    finally:
        handset.listener.close()
        await nurse.close()


async def test_bad_replies_are_answered_and_change_nothing(
    service: ServiceProcess, api: Api, publisher: Publisher, mosquitto: Mosquitto, tenant: str
) -> None:
    handset = Handset(mosquitto, tenant)
    try:
        await handset.listener.subscribed()
        handset.reply(publisher, raw=b"{not json")
        handset.reply(publisher, alarm_id="no-such-alarm", answer="accept", reply_id="u1")
        handset.reply(publisher, alarm_id="x", answer="resolve", reply_id="s1")  # no closing code
        await until(lambda: len(handset.outcomes()) >= 3, 10, "three outcomes")
        by_outcome = {o["outcome"]: o for o in handset.outcomes()}
        assert set(by_outcome) == {"malformed_json", "unknown_alarm", "schema"}
        assert "closing code" in by_outcome["schema"]["reason"]
        assert await api.metric('responsecentre_replies_total{answer="accept",outcome="unknown_alarm"}') == 1

        # The centre still takes a good reply after the bad ones.
        publisher.event(tenant, "h2-btn", "b-2", "alarm.button")
        await until(lambda: handset.pages(), 10, "the page to n1")
        page = handset.pages()[0]
        handset.reply(publisher, alarm_id=page["alarm_id"], answer="decline", reply_id="d1")
        assert (await handset.outcome("d1"))["outcome"] == "taken"
        detail = await api.alarm(page["alarm_id"])
        assert any(e["what"] == "declined" for e in detail["timeline"])
    finally:
        handset.listener.close()
