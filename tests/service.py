"""The real service as a child process, for end-to-end and crash tests.

Each test gets its own tenant, homes, staff, rules and chains (written to a temp dir),
a fresh MQTT session and a flushed Redis database. The service logs in with the broker's
real centre accounts (`rc-ingest`, `rc-notifier`), so the centre's ACLs are the ones
tested; the test's devices and listeners use harness accounts (tests/servers.py).
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from responsecentre import servers
from responsecentre.broker import INGEST
from responsecentre.contract import encode_event, events_topic
from responsecentre.servers import Centre
from tests.servers import Mosquitto
from tests.waiting import until, until_sync

ROOT = Path(__file__).resolve().parent.parent

TEST_RULES = """
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
    unless: {followed_by: medication.taken, within: 2s}
    raise: {kind: missed_dose, priority: medium, chain: urgent}
  - name: low-battery
    when: device.battery
    value: {below: 15}
    raise: {kind: low_battery, priority: low, chain: urgent}
"""

# Short steps so escalation is observable in a test: step 1 has 2 s, step 2 has 2 s.
TEST_CHAINS = {
    "chains": {
        "urgent": {
            "repeat": 0,
            "steps": [
                {"targets": ["console", {"role": "nurse"}], "channels": ["console", "mqtt"], "ack_within": "2s"},
                {"targets": ["console", {"role": "team_lead"}], "channels": ["console", "mqtt"], "ack_within": "2s"},
            ],
        }
    }
}

PASSWORD = "test-password"
METRICS_TOKEN = "test-metrics-token"  # the service's RC_METRICS_TOKEN; Api sends it to /metrics


def homes_doc(tenant: str) -> dict[str, Any]:
    return {
        "tenants": {
            tenant: {
                "homes": [
                    {
                        "id": f"h{i}",
                        "zone": "north",
                        "resident": {"name": f"Resident {i}", "address": f"Street {i}", "key_safe": "1234"},
                        "devices": [
                            {"id": f"h{i}-btn", "kind": "safety_alarm"},
                            {"id": f"h{i}-fall", "kind": "fall_sensor"},
                            {"id": f"h{i}-med", "kind": "medicine_dispenser"},
                        ],
                    }
                    for i in range(1, 4)
                ]
            }
        }
    }


def staff_doc(tenant: str) -> dict[str, Any]:
    return {
        "tenants": {
            tenant: {
                "staff": [
                    {"id": "n1", "name": "Nurse", "role": "nurse", "zone": "north", "on_duty": True},
                    {"id": "tl1", "name": "Lead", "role": "team_lead", "zone": "all", "on_duty": True},
                ]
            }
        }
    }


def forget_session(broker: servers.Mosquitto, username: str = INGEST) -> None:
    """Discard the broker's persistent session of `username` (a clean start with no expiry).

    The broker binds the session to the account (`use_username_as_clientid`), so every
    test's service resumes the one `rc-ingest` session: without this a service would get the
    events that earlier tests published after their service had stopped."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(username, broker.credentials[username])
    answers: list[object] = []
    client.on_connect = lambda *args: answers.append(args[3])
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    client.connect(broker.host, broker.port, clean_start=True, properties=props)
    client.loop_start()
    try:
        until_sync(lambda: answers, 10, f"the CONNACK for {username}")
    finally:
        client.disconnect()
        client.loop_stop()


@dataclass(kw_only=True)
class ServiceProcess(Centre):
    """The service for one test: its tenant's homes, staff, rules and chains in `workdir`,
    the broker's centre accounts (from its credentials file), a fresh MQTT session on the
    first start (kept across restarts), short sweep and snapshot periods."""

    tenant: str
    broker: servers.Mosquitto
    redis_url: str
    rules: str = TEST_RULES
    chains: dict[str, Any] = field(default_factory=lambda: TEST_CHAINS)
    staff: dict[str, Any] | None = None  # the staff file (rosters); default: staff_doc(tenant)
    homes: dict[str, Any] | None = None  # the homes file; default: homes_doc(tenant)
    _fresh: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        files = {
            "rules": self.rules,
            "chains": yaml.safe_dump(self.chains),
            "homes": yaml.safe_dump(self.homes or homes_doc(self.tenant)),
            "staff": yaml.safe_dump(self.staff or staff_doc(self.tenant)),
        }
        for flag, text in files.items():
            (self.workdir / f"{flag}.yaml").write_text(text)
            self.args += [f"--{flag}", str(self.workdir / f"{flag}.yaml")]
        self.args += ["--broker", self.broker.url, "--redis", self.redis_url]
        self.args += ["--mqtt-credentials", str(self.broker.credentials_path)]
        self.env.update(
            RC_METRICS_TOKEN=METRICS_TOKEN,
            RC_SNAPSHOT_S="0.5",
            RC_SWEEP_MS="100",
            NUMBA_CACHE_DIR=str(ROOT / ".cache" / "numba"),
        )

    def start(self) -> None:
        if not self._fresh:
            forget_session(self.broker)
            self._fresh = True
        super().start()


class Publisher:
    """A device-side MQTT client (QoS 1, waits for the broker's PUBACK), on a harness
    account unless given a device's `account` (username, password)."""

    def __init__(self, broker: Mosquitto, account: tuple[str, str] | None = None) -> None:
        self.client = broker.client(account, inflight=1000)
        self.reasons: dict[int, ReasonCode] = {}  # PUBACK reason codes by mid
        self.client.on_publish = lambda _c, _u, mid, reason, _p: self.reasons.__setitem__(mid, reason)

    def raw(self, topic: str, payload: bytes, retain: bool = False) -> ReasonCode:
        """The broker's PUBACK reason ("Success", or "Not authorized" for an ACL refusal)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published(), f"no PUBACK for {topic}"
        return self.reasons.pop(info.mid)

    def event(
        self, tenant: str, device: str, event_id: str, type_: str, value: float | None = None, ts_ms: int | None = None
    ) -> None:
        ts = ts_ms if ts_ms is not None else int(time.time() * 1000)
        reason = self.raw(events_topic(tenant, device), encode_event(event_id, type_, ts, value))
        assert not reason.is_failure, f"the broker refused {event_id}: {reason}"

    def burst(self, tenant: str, devices: list[str], n: int, type_: str = "device.heartbeat", tag: str = "") -> None:
        """n QoS 1 events as fast as the broker takes them, waiting for every PUBACK."""
        ts = int(time.time() * 1000)
        infos = [
            self.client.publish(
                events_topic(tenant, devices[i % len(devices)]), encode_event(f"burst{tag}-{i}", type_, ts), qos=1
            )
            for i in range(n)
        ]
        for info in infos:
            info.wait_for_publish(30)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def metric_sum(text: str, prefix: str) -> float:
    """The sum of every sample in a /metrics text whose line starts with `prefix`."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


class ApiAuth(httpx.Auth):
    """HTTP Basic for the API, and for /metrics the bearer token Prometheus would send."""

    def __init__(self, username: str, password: str = PASSWORD, metrics_token: str = METRICS_TOKEN) -> None:
        self.basic = httpx.BasicAuth(username, password)
        self.metrics_token = metrics_token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if request.url.path == "/metrics":
            request.headers["Authorization"] = f"Bearer {self.metrics_token}"
            yield request
        else:
            yield from self.basic.auth_flow(request)


class Api:
    def __init__(self, base_url: str, username: str = "operator") -> None:
        self.client = httpx.AsyncClient(base_url=base_url, auth=ApiAuth(username), timeout=10.0)

    async def alarms(self, state: str = "open") -> list[dict[str, Any]]:
        r = await self.client.get("/api/alarms", params={"state": state})
        if r.status_code == 503:  # storage restarting: the API says retry, as a console would
            return []
        r.raise_for_status()
        return r.json()["alarms"]

    async def alarm(self, alarm_id: str) -> dict[str, Any]:
        r = await self.client.get(f"/api/alarms/{alarm_id}")
        r.raise_for_status()
        return r.json()

    async def wait_for(self, predicate: Any, timeout: float = 10.0, state: str = "open") -> list[dict[str, Any]]:
        """The alarm list once `predicate(alarms)` holds; bounded by `timeout`."""
        seen: list[dict[str, Any]] = []

        async def check() -> bool:
            seen[:] = await self.alarms(state)
            return bool(predicate(seen))

        try:
            await until(check, timeout, "the alarm condition")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; alarms: {seen}") from None
        return list(seen)

    async def metric(self, prefix: str) -> float:
        return metric_sum((await self.client.get("/metrics")).text, prefix)

    async def metric_reaches(self, prefix: str, n: float, timeout: float = 5.0) -> float:
        """Until the metric's sum is at least `n`; returns it."""

        async def reached() -> float | None:
            value = await self.metric(prefix)
            return value if value >= n else None

        return await until(reached, timeout, f"{prefix} reaching {n}")

    async def swept_past(self, gauge: str, when: str | float, timeout: float = 10.0) -> None:
        """Until a sweep gauge (epoch seconds) is past `when` (RFC 3339 or epoch seconds):
        then whatever was due by `when` has happened, and what has not will not."""
        at = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp() if isinstance(when, str) else when

        async def past() -> bool:
            return await self.metric(gauge + " ") > at

        await until(past, timeout, f"{gauge} past {when}")

    async def ready(self) -> tuple[int, dict[str, Any]]:
        r = await self.client.get("/readyz")
        return r.status_code, r.json()

    async def ready_problem(self, dependency: str) -> str | None:
        """Why /readyz says `dependency` is not ready; None while it is."""
        status, body = await self.ready()
        why = body.get("checks", {}).get(dependency, "ok")
        return None if status == 200 or why == "ok" else str(why)

    async def close(self) -> None:
        await self.client.aclose()
