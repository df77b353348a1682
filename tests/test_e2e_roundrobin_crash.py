"""SIGKILL of the service in the middle of a round-robin step, with a decline pending at
the broker: after each restart no step or turn is skipped or repeated, and the timers fire
within 1 s of their plan.

The chain asks n1, then n2, one by one (each with their own ack_within), then the team
lead. n1 declines over MQTT while the service is down: the reply waits in the reply
desk's persistent session and is taken after the restart, so n2 is paged once. The
service is killed again during n2's turn; her turn still ends when planned, and the team
lead is paged once.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from responsecentre.contract import page_topic, replies_topic
from tests.servers import Mosquitto
from tests.service import Api, Publisher, ServiceProcess
from tests.test_e2e import Listener
from tests.waiting import until

N2_ACK_S = 8.0

CHAINS: dict[str, Any] = {
    "chains": {
        "urgent": {
            "repeat": 0,
            "steps": [
                {
                    "notify": "round_robin",
                    "targets": [
                        "console",
                        {"staff": "n1", "ack_within": "60s"},
                        {"staff": "n2", "ack_within": f"{N2_ACK_S:.0f}s"},
                    ],
                    "channels": ["console", "handset"],
                    "ack_within": "60s",
                },
                {
                    "targets": ["console", {"role": "team_lead"}],
                    "channels": ["console", "handset"],
                    "ack_within": "60s",
                },
            ],
        }
    }
}

STAFF = {
    "staff": [
        {"id": "n1", "name": "Nurse One", "role": "nurse", "zone": "north", "on_duty": True},
        {"id": "n2", "name": "Nurse Two", "role": "nurse", "zone": "north", "on_duty": True},
        {"id": "tl1", "name": "Lead", "role": "team_lead", "zone": "all", "on_duty": True},
    ]
}


async def test_sigkill_mid_round_robin_with_a_decline_pending_skips_and_repeats_nothing(
    tmp_path: Path, tenant: str, mosquitto: Mosquitto, redis_url: str, publisher: Publisher
) -> None:
    service = ServiceProcess(
        tenant=tenant,
        workdir=tmp_path / "service",
        broker=mosquitto,
        redis_url=redis_url,
        chains=CHAINS,
        staff={"tenants": {tenant: STAFF}},
    )
    handsets = Listener(mosquitto, *(page_topic(tenant, s) for s in ("n1", "n2", "tl1")))
    arrived: dict[str, list[float]] = {"n1": [], "n2": [], "tl1": []}
    record = handsets.client.on_message

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        record(client, userdata, message)
        arrived[message.topic.split("/")[-2]].append(time.time())

    handsets.client.on_message = on_message
    service.start()
    api = Api(service.base_url)
    try:
        await handsets.subscribed()
        publisher.event(tenant, "h1-btn", "b-1", "alarm.button")
        await until(lambda: arrived["n1"], 15, "n1's page")
        page = json.loads(next(p for t, p in handsets.messages if t.endswith("/n1/pages")))
        alarm_id = page["alarm_id"]

        # Crash; n1 declines while the service is down (the reply waits at the broker).
        await api.close()
        service.kill()
        reply = {"alarm_id": alarm_id, "page_id": page["page_id"], "answer": "decline", "reply_id": "d1"}
        assert not publisher.raw(replies_topic(tenant, "n1"), json.dumps(reply).encode()).is_failure
        service.start()
        api = Api(service.base_url)
        await until(lambda: arrived["n2"], 20, "n2's page after the restart")
        n2_paged = arrived["n2"][0]

        # Crash again during n2's turn and come straight back: her turn ends on plan.
        await api.close()
        service.kill()
        service.start()
        api = Api(service.base_url)
        await until(lambda: arrived["tl1"], N2_ACK_S + 15, "the team lead's page")
        lateness = arrived["tl1"][0] - (n2_paged + N2_ACK_S)
        assert -0.5 <= lateness <= 1.0, f"step 2 came {lateness:+.2f} s off plan"

        await asyncio.sleep(1.0)  # anything repeated would have arrived by now
        assert [len(arrived[s]) for s in ("n1", "n2", "tl1")] == [1, 1, 1], arrived
        alarm = await api.alarm(alarm_id)
        assert (alarm["state"], alarm["step"], alarm["turn"]) == ("raised", 2, 1)
        entries = alarm["timeline"]
        paged = [e["detail"]["recipient"] for e in entries if e["what"] == "paged"]
        assert paged == ["n1", "n2", "tl1"], paged
        escalated = [(e["detail"]["step"], e["detail"].get("turn")) for e in entries if e["what"] == "escalated"]
        assert escalated == [(1, 2), (2, None)], escalated
        (declined,) = [e for e in entries if e["what"] == "declined"]
        assert declined["detail"]["staff"] == "n1" and declined["detail"]["via"] == "mqtt"
    finally:
        handsets.close()
        await api.close()
        service.stop()
