"""Alert chains end to end over every channel, through real mosquitto, Redis, the service
and real peers on loopback: aiosmtpd, a webhook receiver that checks the HMAC signature,
and the SMS gateway adapter.

One urgent alarm walks a round-robin step (the first nurse's handset is not connected,
so her page falls back to SMS; she declines and the next nurse is paged at once), then a
step that tells the team lead by e-mail, the resident's relative by SMS and two webhooks,
one of which keeps answering 503. The operator's ack stops that webhook's retries. Every
try is on the timeline with its channel, address, outcome and duration.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from responsecentre.contract import page_topic
from tests.servers import Mosquitto
from tests.service import Api, Publisher, ServiceProcess, homes_doc
from tests.test_deliveries_email import Mailbox, smtp_server
from tests.test_deliveries_sms import TOKEN, Gateway
from tests.test_deliveries_webhook import SECRET, Receiver, serving
from tests.test_e2e import Listener
from tests.waiting import until

RELATIVE_PHONE = "+4790000099"
N1_PHONE = "+4790000001"


def staff(tenant: str) -> dict[str, Any]:
    return {
        "tenants": {
            tenant: {
                "staff": [
                    {
                        "id": "n1",
                        "name": "Nurse One",
                        "role": "nurse",
                        "zone": "north",
                        "on_duty": True,
                        "contacts": [{"handset": "n1"}, {"sms": N1_PHONE}],
                    },
                    {"id": "n2", "name": "Nurse Two", "role": "nurse", "zone": "north", "on_duty": True},
                    {
                        "id": "tl1",
                        "name": "Lead",
                        "role": "team_lead",
                        "zone": "all",
                        "on_duty": True,
                        "contacts": [{"email": "tl1@example.org"}],
                    },
                ]
            }
        }
    }


def homes(tenant: str) -> dict[str, Any]:
    doc = homes_doc(tenant)
    doc["tenants"][tenant]["homes"][0]["relatives"] = [{"name": "Daughter", "contacts": [{"sms": RELATIVE_PHONE}]}]
    return doc


def chains(good_hook: str, bad_hook: str) -> dict[str, Any]:
    return {
        "chains": {
            "urgent": {
                "repeat": 0,
                "steps": [
                    {
                        "notify": "round_robin",
                        "targets": ["console", {"role": "nurse", "ack_within": "20s"}],
                        "channels": ["console", "handset", "sms"],
                        "ack_within": "20s",
                    },
                    {
                        "targets": [
                            "console",
                            {"role": "team_lead"},
                            "relatives",
                            {"webhook": good_hook},
                            {"webhook": bad_hook},
                        ],
                        "channels": ["console", "email", "sms"],
                        "ack_within": "60s",
                    },
                ],
            }
        }
    }


class Peers:
    def __init__(self, mailbox: Mailbox) -> None:
        self.hook = Receiver([200])
        self.broken = Receiver([503])
        self.gateway = Gateway([202])
        self.mailbox = mailbox


@pytest.fixture
async def peers() -> AsyncIterator[tuple[Peers, dict[str, str]]]:
    with smtp_server() as (mailbox, smtp_port):
        found = Peers(mailbox)
        async with (
            serving(found.hook.app()) as hook,
            serving(found.broken.app()) as broken,
            serving(found.gateway.app()) as sms,
        ):
            yield (
                found,
                {
                    "hook": f"{hook}/hook",
                    "broken": f"{broken}/hook",
                    "RC_SMS_BASE_URL": sms + "/",
                    "RC_SMTP_PORT": str(smtp_port),
                },
            )


async def timeline(api: Api, alarm_id: str, what: str) -> list[dict[str, Any]]:
    return [e for e in (await api.alarm(alarm_id))["timeline"] if e["what"] == what]


async def test_round_robin_fallback_decline_then_email_sms_and_webhooks_and_ack_stops_retries(
    tmp_path: Path,
    tenant: str,
    mosquitto: Mosquitto,
    redis_url: str,
    publisher: Publisher,
    peers: tuple[Peers, dict[str, str]],
) -> None:
    peer, where = peers
    service = ServiceProcess(
        tenant=tenant,
        workdir=tmp_path / "service",
        broker=mosquitto,
        redis_url=redis_url,
        chains=chains(where["hook"], where["broken"]),
        staff=staff(tenant),
        homes=homes(tenant),
    )
    service.env.update(
        RC_WEBHOOK_SECRET=SECRET,
        RC_SMS_BASE_URL=where["RC_SMS_BASE_URL"],
        RC_SMS_TOKEN=TOKEN,
        RC_SMTP_HOST="127.0.0.1",
        RC_SMTP_PORT=where["RC_SMTP_PORT"],
        RC_SMTP_FROM="centre@rc.example.org",
        RC_SMTP_SECURITY="none",
    )
    handset_n2 = Listener(mosquitto, page_topic(tenant, "n2"))  # n1's handset is off: nobody reads hers
    service.start()
    api = Api(service.base_url)
    nurse = Api(service.base_url, "nurse")  # staff n1
    try:
        await handset_n2.subscribed()
        publisher.event(tenant, "h1-btn", "b-1", "alarm.button")
        (alarm,) = await api.wait_for(lambda al: len(al) == 1, 15)
        alarm_id = alarm["id"]

        # n1 first (roster order): her handset page finds nobody subscribed, so it falls
        # back to her SMS; the gateway gets the text, with no resident data in it.
        await until(lambda: any(m["to"] == N1_PHONE for m in peer.gateway.messages), 15, "n1's SMS")
        text = next(m["text"] for m in peer.gateway.messages if m["to"] == N1_PHONE)
        assert "Resident" not in text and "Street" not in text and alarm_id in text
        tries = await timeline(api, alarm_id, "delivery")
        handset_try = next(e["detail"] for e in tries if e["detail"]["channel"] == "handset")
        assert handset_try["outcome"] == "fell_back" and handset_try["fallback"] == "sms"
        assert handset_try["address"] == "n1" and "duration_ms" in handset_try
        sms_try = next(e["detail"] for e in tries if e["detail"]["channel"] == "sms")
        assert sms_try["outcome"] == "delivered" and sms_try["address"] == N1_PHONE
        assert not handset_n2.messages, "round robin: n2 waits for her turn"

        # n1 declines: the round robin moves to n2 at once, on her handset.
        r = await nurse.client.post(f"/api/alarms/{alarm_id}/decline", json={})
        assert r.status_code == 200, r.text
        await until(lambda: handset_n2.messages, 10, "n2's page")
        page = json.loads(handset_n2.messages[0][1])
        assert page["alarm_id"] == alarm_id and page["step"] == 1 and page["reply_topic"].endswith("/n2/replies")
        assert (await api.alarm(alarm_id))["turn"] == 2

        # n2 declines too (over MQTT): step 2 at once. E-mail to the lead, SMS to the
        # relative, both webhooks (signed); the broken one keeps being retried.
        n2_reply = {"alarm_id": alarm_id, "page_id": page["page_id"], "answer": "decline", "reply_id": "x1"}
        assert not publisher.raw(f"rc/v1/{tenant}/staff/n2/replies", json.dumps(n2_reply).encode()).is_failure
        mailbox = peer.mailbox
        await until(lambda: mailbox.messages, 15, "the lead's e-mail")
        _, rcpt, mail = mailbox.messages[0]
        assert rcpt == ["tl1@example.org"] and alarm_id in mail.get_content()
        await until(lambda: any(m["to"] == RELATIVE_PHONE for m in peer.gateway.messages), 10, "the relative's SMS")
        await until(lambda: peer.hook.requests, 10, "the webhook")
        assert all(ok for _, _, ok in peer.hook.requests), "every webhook request carries a valid signature"
        assert json.loads(peer.hook.requests[0][1])["alarm_id"] == alarm_id
        await until(lambda: len(peer.broken.requests) >= 2, 10, "the broken webhook retried")

        # The operator takes it: the broken webhook's retries stop, and the timeline says so.
        r = await api.client.post(f"/api/alarms/{alarm_id}/ack", json={})
        assert r.status_code == 200

        async def cancelled() -> list[dict[str, Any]]:
            tries = await timeline(api, alarm_id, "delivery")
            return [e for e in tries if e["detail"]["outcome"] == "cancelled"]

        stopped = await until(cancelled, 5, "the broken webhook's delivery cancelled")
        assert stopped[0]["detail"]["address"] == where["broken"]
        seen = len(peer.broken.requests)
        await asyncio.sleep(3.0)  # longer than the backoff between its tries so far
        assert len(peer.broken.requests) == seen, "no try after the ack"

        tries = [e["detail"] for e in await timeline(api, alarm_id, "delivery")]
        failed = [t for t in tries if t["address"] == where["broken"] and t["outcome"] == "failed"]
        assert failed and all("503" in t.get("detail", "") for t in failed)
        channels = {t["channel"] for t in tries if t["outcome"] == "delivered"}
        assert channels == {"sms", "handset", "email", "webhook"}, tries
    finally:
        handset_n2.close()
        await api.close()
        await nurse.close()
        service.stop()
