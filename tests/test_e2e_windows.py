"""End to end through real mosquitto, Redis and the service: the rule language's part 2.

An inactivity rule (no motion or door for 2 s, counted inside a daily window placed
around the present moment in the home's zone) and a count rule (3 presses within 5 s)
fire through the real service with short windows; a `where` rule raises on the right
`data`, and an event whose `data` lacks the field neither raises nor breaks anything: it
is counted in responsecentre_condition_missing_total{rule}.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from responsecentre.contract import encode_event, events_topic, parse_ts
from tests.service import Api, Publisher, ServiceProcess

ZONE = ZoneInfo("Europe/Oslo")  # the homes of tests/service.py name no zone: the default


def around_now(hours: int = 3) -> tuple[str, str]:
    """A daily window from `hours` before to `hours` after now, local time (it may cross midnight)."""
    now = datetime.now(ZONE)
    return (now - timedelta(hours=hours)).strftime("%H:%M"), (now + timedelta(hours=hours)).strftime("%H:%M")


@pytest.fixture
def service_rules() -> str:
    start, end = around_now()
    return f"""
version: 1
rules:
  - name: assistance-button
    when: alarm.button
    raise: {{kind: assistance, priority: critical, chain: urgent}}
  - name: repeated-presses
    when: alarm.button
    count: {{n: 3, within: 5s}}
    raise: {{kind: repeated_presses, priority: high, chain: urgent}}
  - name: no-movement
    when: [motion.detected, door.*]
    inactive: {{for: 2s}}
    during: {{from: "{start}", to: "{end}"}}
    raise: {{kind: inactivity, priority: high, chain: urgent}}
  - name: bathroom-visit
    when: motion.detected
    where: {{room: bathroom}}
    raise: {{kind: bathroom_visit, priority: low, chain: urgent}}
"""


def of_kind(kind: str) -> Any:
    return lambda alarms: [a for a in alarms if a["kind"] == kind]


async def raised_detail(api: Api, alarm_id: str) -> dict[str, Any]:
    detail = await api.alarm(alarm_id)
    return next(e for e in detail["timeline"] if e["what"] == "raised")["detail"]


def motion(publisher: Publisher, tenant: str, device: str, event_id: str, data: dict[str, Any] | None) -> int:
    """A motion event from `device` with `data`; returns its ts."""
    ts = int(time.time() * 1000)
    reason = publisher.raw(events_topic(tenant, device), encode_event(event_id, "motion.detected", ts, data=data))
    assert not reason.is_failure, reason
    return ts


async def test_inactivity_in_a_window_raises_once_the_home_is_quiet_for_its_time(
    service: ServiceProcess, api: Api, publisher: Publisher, tenant: str
) -> None:
    ts = motion(publisher, tenant, "h1-fall", "m-1", {"room": "kitchen"})
    (alarm,) = of_kind("inactivity")(await api.wait_for(of_kind("inactivity"), timeout=10.0))
    assert alarm["home_id"] == "h1" and alarm["rule"] == "no-movement" and alarm["priority"] == "high"
    detail = await raised_detail(api, alarm["id"])
    # The moment the home had been quiet for 2 s (the device's RFC 3339 time may lose 1 ms).
    assert abs(detail["event_ts_ms"] - (ts + 2000)) <= 1
    assert detail["device"] is None  # a home's silence, not a device's
    raised = parse_ts(alarm["raised_at"])
    assert raised >= ts + 1999
    # Homes never heard from are not watched: only h1 raised, and only once.
    await api.swept_past("responsecentre_engine_swept_until_seconds", (ts + 4000) / 1000)
    assert [a["home_id"] for a in of_kind("inactivity")(await api.alarms())] == ["h1"]


async def test_three_presses_within_the_window_raise_a_count_alarm_two_do_not(
    service: ServiceProcess, api: Api, publisher: Publisher, tenant: str
) -> None:
    publisher.event(tenant, "h2-btn", "p-1", "alarm.button")
    publisher.event(tenant, "h2-btn", "p-2", "alarm.button")
    # Each press raises or joins the assistance alarm: once both have, both were decided on.
    alarms = await api.wait_for(lambda a: [x for x in of_kind("assistance")(a) if x["triggers"] == 2], timeout=5.0)
    assert not of_kind("repeated_presses")(alarms)
    publisher.event(tenant, "h2-btn", "p-3", "alarm.button")
    (alarm,) = of_kind("repeated_presses")(await api.wait_for(of_kind("repeated_presses"), timeout=5.0))
    assert alarm["home_id"] == "h2" and alarm["rule"] == "repeated-presses"
    detail = await raised_detail(api, alarm["id"])
    assert detail["event"] == "p-3" and detail["device"] == "h2-btn"


async def test_a_where_rule_needs_its_field_and_a_missing_one_is_counted_not_raised(
    service: ServiceProcess, api: Api, publisher: Publisher, tenant: str
) -> None:
    motion(publisher, tenant, "h3-fall", "m-none", None)  # no data at all
    motion(publisher, tenant, "h3-fall", "m-other", {"level": 3})  # data without `room`
    motion(publisher, tenant, "h3-fall", "m-kitchen", {"room": "kitchen"})  # the field, another value
    missing = 'responsecentre_condition_missing_total{rule="bathroom-visit"}'
    await api.metric_reaches("responsecentre_events_processed_total", 3)  # counted before it is processed
    assert await api.metric(missing) == 2
    motion(publisher, tenant, "h3-fall", "m-bath", {"room": "bathroom"})
    (alarm,) = of_kind("bathroom_visit")(await api.wait_for(of_kind("bathroom_visit"), timeout=5.0))
    assert alarm["home_id"] == "h3"
    # Only the bathroom event raised it: the three before it, in the log first, did not.
    assert alarm["triggers"] == 1 and (await raised_detail(api, alarm["id"]))["event"] == "m-bath"
    assert await api.metric(missing) == 2
    assert await api.metric("responsecentre_internal_errors_total") == 0  # nothing parked
