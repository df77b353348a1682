"""End to end through real mosquitto, Redis and the service: a short planned silence.

An event during the silence is stored and counted but raises nothing; a "not followed by"
deadline armed during it that falls due after it has ended does not fire (nothing stale);
the same deadline in a home without a silence does fire; after the silence a button press
raises as usual.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from responsecentre.alarms.view import iso
from tests.service import Api, Publisher, ServiceProcess

DEADLINE_S = 3.0
SILENCE_S = 2.0  # shorter than the deadline: the deadline falls due after the silence ends

RULES = f"""
version: 1
rules:
  - name: assistance-button
    when: alarm.button
    raise: {{kind: assistance, priority: critical, chain: urgent}}
  - name: medication-not-taken
    when: medication.due
    unless: {{followed_by: medication.taken, within: {DEADLINE_S:g}s}}
    raise: {{kind: missed_dose, priority: medium, chain: urgent}}
"""

SWEPT = "responsecentre_engine_swept_until_seconds"
VERSION = "responsecentre_suppression_version "


async def applied(api: Api, changes: int) -> None:
    """Until the rule processor applies the suppression settings after `changes` API changes."""
    await api.metric_reaches(VERSION, changes)


@pytest.fixture
def service_rules() -> str:
    """conftest's `service` (and so `api`) runs this module's rules."""
    return RULES


def in_home(home: str, kind: str):  # type: ignore[no-untyped-def]
    return lambda alarms: [a for a in alarms if a["home_id"] == home and a["kind"] == kind]


async def test_a_silence_holds_back_its_alarms_and_nothing_stale_fires_after_it(
    service: ServiceProcess, api: Api, publisher: Publisher, tenant: str
) -> None:
    start = time.time()
    body: dict[str, Any] = {
        "tenant": tenant,
        "scope": "home",
        "target": "h1",
        "end": iso(int((start + SILENCE_S) * 1000)),
        "reason": "e2e",
    }
    r = await api.client.post("/api/silences", json=body)
    assert r.status_code == 201, r.text
    silence = r.json()
    assert silence["active"] is True
    await applied(api, 1)

    publisher.event(tenant, "h1-btn", "press-silenced", "alarm.button")
    publisher.event(tenant, "h1-med", "due-silenced", "medication.due")
    publisher.event(tenant, "h2-med", "due-control", "medication.due")
    armed = time.time()
    assert armed < start + SILENCE_S, "the events must arrive during the silence (a very slow machine?)"

    # Stored and counted, not raised.
    await api.metric_reaches('responsecentre_events_suppressed_total{reason="silence"}', 2)
    await api.metric_reaches('responsecentre_alarms_suppressed_total{kind="assistance",reason="silence"}', 1)
    r = await api.client.get(f"/api/events/{tenant}", params={"device": "h1-btn"})
    assert [e["event_id"] for e in r.json()["events"]] == ["press-silenced"]
    assert not in_home("h1", "assistance")(await api.alarms())

    # The control home's deadline fires; h1's, armed in the silence and due after its end,
    # does not.
    await api.wait_for(in_home("h2", "missed_dose"), timeout=DEADLINE_S + 5)
    assert armed + DEADLINE_S > start + SILENCE_S
    await api.swept_past(SWEPT, armed + DEADLINE_S)
    await api.metric_reaches('responsecentre_alarms_suppressed_total{kind="missed_dose",reason="silence"}', 1)
    assert not in_home("h1", "missed_dose")(await api.alarms(state="all"))
    assert (await api.client.get("/api/silences")).json()["silences"] == [], "the silence is over"

    # After the silence the same button raises.
    publisher.event(tenant, "h1-btn", "press-after", "alarm.button")
    (alarm,) = in_home("h1", "assistance")(await api.wait_for(in_home("h1", "assistance"), timeout=5))
    assert alarm["state"] == "raised"
    detail = await api.alarm(alarm["id"])
    assert [e["detail"].get("event") for e in detail["timeline"] if e["what"] == "raised"] == ["press-after"]
    metrics = (await api.client.get("/metrics")).text
    assert 'responsecentre_events_suppressed_total{reason="silence"} 2.0' in metrics, "the later press is not counted"


async def test_an_away_home_still_raises_nothing_but_a_device_in_maintenance_neither(
    service: ServiceProcess, api: Api, publisher: Publisher, tenant: str
) -> None:
    """Status and maintenance set over the API reach the processor the same way."""
    r = await api.client.put(f"/api/homes/{tenant}/h3/status", json={"status": "away"})
    assert r.status_code == 200 and r.json()["status"] == "away"
    r = await api.client.put(f"/api/devices/{tenant}/h2-btn/maintenance", json={"maintenance": True})
    assert r.status_code == 200 and r.json()["maintenance"] is True
    await applied(api, 2)
    publisher.event(tenant, "h3-btn", "press-away", "alarm.button")
    publisher.event(tenant, "h2-btn", "press-test", "alarm.button")
    publisher.event(tenant, "h1-btn", "press-normal", "alarm.button")
    await api.wait_for(in_home("h1", "assistance"), timeout=5)
    await api.metric_reaches("responsecentre_alarms_suppressed_total{", 2)
    metrics = (await api.client.get("/metrics")).text
    assert 'responsecentre_alarms_suppressed_total{kind="assistance",reason="away"} 1.0' in metrics
    assert 'responsecentre_alarms_suppressed_total{kind="assistance",reason="maintenance"} 1.0' in metrics
    alarms = await api.alarms()
    assert not in_home("h3", "assistance")(alarms) and not in_home("h2", "assistance")(alarms)

    # Back home: the next press raises.
    r = await api.client.put(f"/api/homes/{tenant}/h3/status", json={"status": "normal"})
    assert r.status_code == 200 and r.json()["status"] == "normal"
    await applied(api, 3)
    publisher.event(tenant, "h3-btn", "press-home", "alarm.button")
    await api.wait_for(in_home("h3", "assistance"), timeout=5)
