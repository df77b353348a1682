"""End to end through real mosquitto, Redis and the service: the resident's cancel and
hysteresis with auto-clear (rule engine, part 2).

The service runs this module's rule pack; the chain `urgent` of tests/service.py has two
steps of 2 s each and no repeat.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.service import Api, Publisher, ServiceProcess
from tests.waiting import until

RULES = """
version: 1
alarms:
  low_battery: {auto_clear: true}
rules:
  - name: assistance-button
    when: alarm.button
    cancel: {by: alarm.cancel, within: 2m}
    raise: {kind: assistance, priority: critical, chain: urgent}
  - name: low-battery
    when: device.battery
    value: {below: 15, clear_above: 25}
    raise: {kind: low_battery, priority: low, chain: urgent}
"""


@pytest.fixture
def service_rules() -> str:
    """conftest's `service` (and so `api`) runs this module's rules."""
    return RULES


def of_kind(kind: str):  # type: ignore[no-untyped-def]
    return lambda alarms: [a for a in alarms if a["kind"] == kind]


async def until_timeline_has(api: Api, alarm_id: str, what: str, timeout: float = 5.0) -> dict[str, Any]:
    """The alarm's detail once its timeline has an entry `what`."""

    async def check() -> dict[str, Any] | None:
        detail = await api.alarm(alarm_id)
        return detail if any(e["what"] == what for e in detail["timeline"]) else None

    return await until(check, timeout, f"a {what!r} entry on the timeline of {alarm_id}")


async def test_button_then_cancel_closes_as_cancelled_by_resident(
    service: ServiceProcess, api: Api, publisher: Publisher, tenant: str
) -> None:
    publisher.event(tenant, "h1-btn", "press-1", "alarm.button")
    (alarm,) = of_kind("assistance")(await api.wait_for(of_kind("assistance"), timeout=5))
    assert alarm["state"] == "raised" and alarm["step"] == 1
    publisher.event(tenant, "h1-btn", "cancel-1", "alarm.cancel")
    detail = await until_timeline_has(api, alarm["id"], "cancelled")
    assert detail["state"] == "cancelled" and detail["closing_code"] == "cancelled_by_resident"
    assert not of_kind("assistance")(await api.alarms())
    # The chain has stopped: step 1's deadline passes, the timer loop looks past it, and
    # nobody else is notified.
    await api.swept_past("responsecentre_timers_swept_until_seconds", alarm["next_step_due"])
    timeline = (await api.alarm(alarm["id"]))["timeline"]
    whats = [e["what"] for e in timeline]
    assert "escalated" not in whats and "unhandled" not in whats
    # The timeline keeps both events: the press that raised it and the cancel.
    raised = next(e for e in timeline if e["what"] == "raised")
    cancelled = next(e for e in timeline if e["what"] == "cancelled")
    assert raised["detail"]["event"] == "press-1" and cancelled["detail"]["event"] == "cancel-1"
    assert cancelled["by"] == "assistance-button" and cancelled["detail"]["type"] == "alarm.cancel"
    metrics = (await api.client.get("/metrics")).text
    assert 'responsecentre_clears_total{action="cancel",outcome="closed"} 1.0' in metrics


async def test_button_ack_then_cancel_stays_open_with_the_cancel_on_its_timeline(
    service: ServiceProcess, api: Api, publisher: Publisher, tenant: str
) -> None:
    publisher.event(tenant, "h2-btn", "press-2", "alarm.button")
    (alarm,) = of_kind("assistance")(await api.wait_for(of_kind("assistance"), timeout=5))
    r = await api.client.post(f"/api/alarms/{alarm['id']}/ack", json={})
    assert r.status_code == 200 and r.json()["state"] == "acknowledged"
    publisher.event(tenant, "h2-btn", "cancel-2", "alarm.cancel")
    detail = await until_timeline_has(api, alarm["id"], "cancel_ignored")
    assert detail["state"] == "acknowledged" and detail["closing_code"] is None
    entry = next(e for e in detail["timeline"] if e["what"] == "cancel_ignored")
    assert entry["detail"]["event"] == "cancel-2" and "left open" in entry["detail"]["reason"]
    assert [a["id"] for a in of_kind("assistance")(await api.alarms())] == [alarm["id"]]


async def test_battery_10_12_30_gives_one_alarm_then_a_clear(
    service: ServiceProcess, api: Api, publisher: Publisher, tenant: str
) -> None:
    publisher.event(tenant, "h3-btn", "bat-1", "device.battery", value=10)
    (alarm,) = of_kind("low_battery")(await api.wait_for(of_kind("low_battery"), timeout=5))
    publisher.event(tenant, "h3-btn", "bat-2", "device.battery", value=12)
    publisher.event(tenant, "h3-btn", "bat-3", "device.battery", value=30)
    detail = await until_timeline_has(api, alarm["id"], "cleared")
    assert detail["state"] == "cancelled" and detail["closing_code"] == "auto_cleared"
    assert detail["triggers"] == 1, "the reading of 12 neither raised nor joined"
    whats = [e["what"] for e in detail["timeline"]]
    assert whats.count("raised") == 1 and "trigger" not in whats
    cleared = next(e for e in detail["timeline"] if e["what"] == "cleared")
    assert cleared["detail"]["event"] == "bat-3"
    assert not of_kind("low_battery")(await api.alarms())
    # All three readings went through the engine; exactly one raise and one clear.
    await api.metric_reaches("responsecentre_events_processed_total", 3)
    metrics = (await api.client.get("/metrics")).text
    assert 'responsecentre_clears_total{action="clear",outcome="closed"} 1.0' in metrics
    assert 'responsecentre_alarms_raised_total{kind="low_battery",priority="low"} 1.0' in metrics
