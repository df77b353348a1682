"""End to end through real mosquitto, Redis and the service: device supervision.

A device client on its own device account, with a Last Will `{"online": false}` retained
on its status topic, loses its socket (closed without DISCONNECT, so the broker sends the
Will): `device_offline` is raised within 2 s, and auto-cleared when the device is back.
And silence: with a catalogue of ~1 s intervals, a device that sends nothing raises; one
event clears it; a per-home override keeps another home's device quiet.

The module has its own broker (a fixed tenant, so that the broker's directory holds the
device accounts) and writes a catalogue beside the service's homes file, where the
service looks for it.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from responsecentre.broker import device_username
from responsecentre.contract import encode_status, status_topic
from responsecentre.directory import build_directory
from tests.servers import Mosquitto, running
from tests.service import Api, Publisher, ServiceProcess, homes_doc, staff_doc
from tests.waiting import until, until_sync

T = "supv"

RULES = """
version: 1
alarms:
  device_offline: {auto_clear: true}
rules:
  - name: assistance-button
    when: alarm.button
    raise: {kind: assistance, priority: critical, chain: urgent}
  - name: device-offline
    supervise: {grace: 2}
    raise: {kind: device_offline, priority: medium, chain: urgent}
"""

# Safety alarms every 500 ms x grace 2 = 1 s; the other kinds effectively unsupervised here.
FAST = {
    "kinds": {
        "safety_alarm": {"events": ["alarm.button", "device.heartbeat"], "heartbeat_every": "500ms"},
        "fall_sensor": {"events": ["fall.detected"], "heartbeat_every": "5m", "supervision": "1h"},
        "medicine_dispenser": {"events": ["medication.due"], "heartbeat_every": "1h"},
    }
}
SLOW = {"kinds": {kind: {**spec, "heartbeat_every": "1h"} for kind, spec in FAST["kinds"].items()}}


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """This module's broker: the suite's config for a directory with tenant T, so that
    each device has its own account."""
    directory = build_directory(homes_doc(T), staff_doc(T))
    with running(Mosquitto, tmp_path_factory.mktemp("supervision-mosquitto"), directory=directory) as server:
        yield server


@pytest.fixture
def tenant() -> str:
    return T


@contextlib.contextmanager
def centre(
    tmp_path: Path, mosquitto: Mosquitto, redis_url: str, catalog: dict[str, Any], overrides: dict[str, Any]
) -> Iterator[ServiceProcess]:
    """The service with this module's rules, `catalog` beside its homes, and per-home
    `supervision` overrides ({home id: {kind: duration}})."""
    svc = ServiceProcess(tenant=T, workdir=tmp_path / "service", broker=mosquitto, redis_url=redis_url, rules=RULES)
    homes = homes_doc(T)
    for home in homes["tenants"][T]["homes"]:
        if home["id"] in overrides:
            home["supervision"] = overrides[home["id"]]
    (svc.workdir / "homes.yaml").write_text(yaml.safe_dump(homes))
    (svc.workdir / "catalog.yaml").write_text(yaml.safe_dump(catalog))
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


def offline(alarms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in alarms if a["kind"] == "device_offline"]


class Device:
    """A device's own MQTT v5 connection with the contract's Last Will."""

    def __init__(self, broker: Mosquitto, device_id: str) -> None:
        self.topic = status_topic(T, device_id)
        user, password = broker.account(device_username(T, device_id))
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user, password)
        self.client.will_set(self.topic, msgspec.json.encode({"online": False}), qos=1, retain=True)
        answers: list[ReasonCode] = []
        self.client.on_connect = lambda _c, _u, _f, reason, _p: answers.append(reason)
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        until_sync(lambda: answers, 10, f"the CONNACK for {user}")
        assert not answers[0].is_failure, answers[0]

    def online(self) -> None:
        info = self.client.publish(self.topic, encode_status(True, 90, int(time.time() * 1000)), qos=1, retain=True)
        info.wait_for_publish(10)

    def cut(self) -> None:
        """Lose the connection as a device does when its power or radio goes: the socket
        closes with no DISCONNECT, so the broker publishes the Will."""
        self.client.loop_stop()
        sock = self.client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def until_cleared(api: Api, alarm_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        detail = await api.alarm(alarm_id)
        return detail if detail["state"] == "cancelled" else None

    detail = await until(check, 5.0, f"{alarm_id} auto-cleared")
    assert detail["closing_code"] == "auto_cleared"
    assert any(e["what"] == "cleared" for e in detail["timeline"])
    return detail


async def test_last_will_raises_at_once_and_coming_back_clears(
    tmp_path: Path, mosquitto: Mosquitto, redis_url: str, publisher: Publisher
) -> None:
    with centre(tmp_path, mosquitto, redis_url, SLOW, {}) as svc:
        api = Api(svc.base_url)
        device = Device(mosquitto, "h1-btn")
        try:
            device.online()
            await api.metric_reaches("responsecentre_events_processed_total", 1)  # device.online
            assert not offline(await api.alarms())
            cut_at = time.monotonic()
            device.cut()
            (alarm,) = offline(await api.wait_for(offline, timeout=2.0))
            assert time.monotonic() - cut_at < 2.0
            assert alarm["priority"] == "medium" and alarm["state"] == "raised"
            detail = await api.alarm(alarm["id"])
            raised = next(e for e in detail["timeline"] if e["what"] == "raised")
            assert raised["detail"]["type"] == "device.offline", raised
            # Back: a new connection (same account) publishes its retained online: true.
            device = Device(mosquitto, "h1-btn")
            device.online()
            await until_cleared(api, alarm["id"])
            assert not offline(await api.alarms())
            text = (await api.client.get("/metrics")).text
            assert f'responsecentre_device_status_changes_total{{online="false",tenant="{T}"}} 1.0' in text
        finally:
            device.close()
            publisher.raw(status_topic(T, "h1-btn"), b"", retain=True)  # no retained Will for the next test
            await api.close()


async def test_silence_raises_an_event_clears_and_a_home_override_holds(
    tmp_path: Path, mosquitto: Mosquitto, redis_url: str, publisher: Publisher
) -> None:
    """1 s for safety alarms; home h2 overrides it to an hour."""
    with centre(tmp_path, mosquitto, redis_url, FAST, {"h2": {"safety_alarm": "1h"}}) as svc:
        api = Api(svc.base_url)
        try:
            started = time.time()
            alarms = await api.wait_for(lambda a: len(offline(a)) == 2, timeout=5.0)
            assert sorted(a["home_id"] for a in offline(alarms)) == ["h1", "h3"]
            first = next(a for a in offline(alarms) if a["home_id"] == "h1")
            # The sweep has looked well past h2-btn's would-be second; still nothing there.
            await api.swept_past("responsecentre_engine_swept_until_seconds", started + 2.5)
            assert sorted(a["home_id"] for a in offline(await api.alarms())) == ["h1", "h3"]
            # One event from h1-btn: its alarm clears; silence again raises a new one.
            publisher.event(T, "h1-btn", "hb-1", "device.heartbeat")
            await until_cleared(api, first["id"])
            again = await api.wait_for(lambda a: any(x["home_id"] == "h1" for x in offline(a)), timeout=5.0)
            second = next(a for a in offline(again) if a["home_id"] == "h1")
            assert second["id"] != first["id"]
        finally:
            await api.close()
