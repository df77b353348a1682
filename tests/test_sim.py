"""The device simulator: the pure core (determinism, contract, timing) and the MQTT shell
against a real broker."""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
from collections import Counter, defaultdict

import msgspec
import paho.mqtt.client as mqtt
import pytest

from responsecentre import contract
from responsecentre.contract import decode_event
from responsecentre.sim.homes import (
    SimDevice,
    SimHome,
    build_homes,
    load_homes,
    parse_duration_ms,
    with_tenant,
)
from responsecentre.sim.mqtt import main, parse_broker_url, run_simulator, sentinel_topic
from responsecentre.sim.simulator import Publish, Simulator
from tests.servers import Mosquitto
from tests.waiting import until_sync

START = 1_795_000_000_000  # 2026-11-18, a fixed start so runs compare
HOUR = 3_600_000


@pytest.fixture(scope="module")
def homes() -> tuple[SimHome, ...]:
    return load_homes()


def run_for(sim: Simulator, hours: float, tick_ms: int = 100) -> list[Publish]:
    """Drive `step` like the shell does (wall ticks at speed 1) for `hours` of sim time."""
    out: list[Publish] = []
    end = START + int(hours * HOUR)
    now = START
    while now < end:  # bounded: `now` strictly increases to `end`
        now = min(end, now + tick_ms)
        out.extend(sim.step(now))
    return out


def events_of(publishes: list[Publish]) -> list[tuple[str, contract.Event]]:
    return [(p.topic, decode_event(p.topic, p.payload)) for p in publishes if not p.retain]


# -- homes -------------------------------------------------------------------------------


def test_load_homes_reads_the_demo_files(homes: tuple[SimHome, ...]) -> None:
    assert len(homes) == 20
    first = homes[0]
    assert (first.tenant, first.home_id) == ("vestby", "h01")
    kinds = {d.kind for d in first.devices}
    assert {"safety_alarm", "fall_sensor", "door_sensor", "medicine_dispenser"} <= kinds
    button = next(d for d in first.devices if d.kind == "safety_alarm")
    assert "alarm.button" in button.events and button.heartbeat_every_ms == 5 * 60_000
    assert load_homes(limit=3) == homes[:3]
    with pytest.raises(ValueError, match="20 homes"):
        load_homes(limit=21)


def test_build_homes_rejects_unknown_kinds_and_event_types() -> None:
    catalog = {"kinds": {"x": {"events": ["alarm.button"], "heartbeat_every": "1m"}}}
    with pytest.raises(ValueError, match="kind 'y'"):
        build_homes(
            {"tenants": {"t": {"homes": [{"id": "h", "devices": [{"id": "d", "kind": "y"}]}]}}},
            catalog,
        )
    with pytest.raises(ValueError, match="outside contract"):
        build_homes({}, {"kinds": {"x": {"events": ["alarm.pressed"]}}})


def test_parse_duration() -> None:
    assert parse_duration_ms("5m") == 300_000
    assert parse_duration_ms("15m") == 900_000
    assert parse_duration_ms("30s") == 30_000
    assert parse_duration_ms("1h") == HOUR
    assert parse_duration_ms(2) == 2000
    with pytest.raises(ValueError):
        parse_duration_ms("soon")


# -- the pure core -----------------------------------------------------------------------


def test_same_seed_same_stream_and_other_seed_another(homes: tuple[SimHome, ...]) -> None:
    a = run_for(Simulator(homes, 7, START, events_per_hour_per_home=6), hours=3)
    b = run_for(Simulator(homes, 7, START, events_per_hour_per_home=6), hours=3)
    c = run_for(Simulator(homes, 8, START, events_per_hour_per_home=6), hours=3)
    assert len(a) > 1000
    assert a == b
    assert a != c


def test_stream_does_not_depend_on_how_step_is_called(homes: tuple[SimHome, ...]) -> None:
    fine = run_for(Simulator(homes, 3, START), hours=2, tick_ms=100)
    coarse = run_for(Simulator(homes, 3, START), hours=2, tick_ms=7 * 60_000)
    one_go = Simulator(homes, 3, START).step(START + 2 * HOUR)
    assert fine == coarse == one_go


def test_a_home_stream_does_not_depend_on_the_other_homes(homes: tuple[SimHome, ...]) -> None:
    def h01(publishes: list[Publish]) -> list[Publish]:
        return [p for p in publishes if "/h01-" in p.topic]

    alone = run_for(Simulator(homes[:1], 5, START), hours=2, tick_ms=60_000)
    among = run_for(Simulator(homes, 5, START), hours=2, tick_ms=60_000)
    assert h01(alone) == h01(among) != []


def test_speed_compresses_sim_time(homes: tuple[SimHome, ...]) -> None:
    sim = Simulator(homes[:2], 1, START, speed=60)
    out = sim.step(START + 60_000)  # one wall minute at 60x is one sim hour
    assert sim.sim_now == START + HOUR
    assert max(e.ts_ms for _, e in events_of(out)) <= START + HOUR
    assert Counter(e.type for _, e in events_of(out))["device.heartbeat"] >= 2 * 4 * 11


def test_every_publish_is_valid_contract_v1(homes: tuple[SimHome, ...]) -> None:
    sim = Simulator(homes, 11, START, speed=1, events_per_hour_per_home=20)
    out = sim.step_sim(START + 12 * HOUR)
    statuses = [p for p in out if p.retain]
    device_ids = {(h.tenant, d.device_id): d for h in homes for d in h.devices}
    # One retained status per device, first, at the start.
    assert len(statuses) == len(device_ids)
    assert out[: len(statuses)] == statuses
    for p in statuses:
        body = json.loads(p.payload)
        assert body["online"] is True and 1 <= body["battery"] <= 100
        assert contract.parse_ts(body["ts"]) == START
        assert p.qos == 1
    seen_ids: set[tuple[str, str]] = set()
    types: Counter[str] = Counter()
    for topic, event in events_of(out):
        assert topic == contract.events_topic(event.tenant, event.device_id)
        device = device_ids[(event.tenant, event.device_id)]
        assert event.type in device.events, f"{device.kind} may not send {event.type}"
        assert START <= event.ts_ms <= START + 12 * HOUR
        assert event.id.startswith(f"{event.device_id}-")
        assert (event.device_id, event.id) not in seen_ids
        seen_ids.add((event.device_id, event.id))
        types[event.type] += 1
    for p in out:
        assert p.qos == 1 and len(p.payload) <= contract.MAX_PAYLOAD_BYTES
        if not p.retain:
            assert p.event_type == json.loads(p.payload)["type"]
    expected = {
        "device.heartbeat", "device.battery", "temperature", "alarm.button", "alarm.cancel",
        "fall.detected", "fall.cancelled", "door.opened", "door.closed", "medication.due",
        "medication.taken",
    }  # fmt: skip
    assert expected <= set(types), f"missing: {expected - set(types)}"


def test_heartbeat_spacing_follows_the_catalogue(homes: tuple[SimHome, ...]) -> None:
    sim = Simulator(homes, 2, START)
    beats: dict[str, list[int]] = defaultdict(list)
    for _, event in events_of(run_for(sim, hours=2, tick_ms=1000)):
        if event.type == "device.heartbeat":
            beats[event.device_id].append(event.ts_ms)
    every = {d.device_id: d.heartbeat_every_ms for h in homes for d in h.devices}
    assert set(beats) == set(every)
    phases = set()
    for device_id, times in beats.items():
        gaps = {b - a for a, b in itertools.pairwise(times)}
        assert gaps == {every[device_id]}, device_id
        assert START <= times[0] < START + every[device_id]  # the first within one period
        phases.add(times[0] - START)
    assert len(phases) > len(beats) // 2  # spread, not all at once


def test_incident_sequences(homes: tuple[SimHome, ...]) -> None:
    sim = Simulator(homes, 4, START, events_per_hour_per_home=10)
    events = [e for _, e in events_of(sim.step_sim(START + 24 * HOUR))]
    by_device: dict[str, list[contract.Event]] = defaultdict(list)
    for e in events:
        if not e.type.startswith("device.") and e.type != "temperature":
            by_device[e.device_id].append(e)
    fall_cancel_delays, fall_uncancelled, door_open_s, med_never = [], 0, [], 0
    for stream in by_device.values():
        for i, e in enumerate(stream):
            nxt = stream[i + 1] if i + 1 < len(stream) else None
            if e.type == "fall.detected":
                assert e.data and e.data["room"]
                if nxt is not None and nxt.type == "fall.cancelled":
                    fall_cancel_delays.append(nxt.ts_ms - e.ts_ms)
                else:
                    fall_uncancelled += 1
            if e.type == "door.opened" and nxt is not None:
                assert nxt.type == "door.closed"  # never opened twice before closing
                door_open_s.append((nxt.ts_ms - e.ts_ms) / 1000)
            if e.type == "medication.due" and (nxt is None or nxt.type != "medication.taken"):
                med_never += 1
    assert fall_cancel_delays and max(fall_cancel_delays) <= 20_000
    assert fall_uncancelled > 0
    assert door_open_s and min(door_open_s) >= 10 and max(door_open_s) <= 15 * 60
    assert med_never > 0


def test_battery_drains_and_temperature_is_plausible() -> None:
    dev = SimDevice("t-temp", "thermometer", ("temperature", "device.heartbeat", "device.battery"), 900_000)
    homes = [SimHome("t", "h", (dev,))]
    readings = []
    for seed in range(20):
        sim = Simulator(homes, seed, START, events_per_hour_per_home=0)
        events = [e for _, e in events_of(sim.step_sim(START + 24 * HOUR))]
        levels = [e.value for e in events if e.type == "device.battery"]
        assert len(levels) >= 20
        assert all(b <= a for a, b in itertools.pairwise(levels) if b < 99)  # drains (or replaced)
        readings += [e.value for e in events if e.type == "temperature"]
        assert not [e for e in events if e.type not in ("temperature", "device.heartbeat", "device.battery")]
    assert all(-10 < t < 35 for t in readings)
    assert 18 < sum(readings) / len(readings) < 24


def test_rate_zero_means_only_supervision_traffic(homes: tuple[SimHome, ...]) -> None:
    out = Simulator(homes, 1, START, events_per_hour_per_home=0).step_sim(START + 6 * HOUR)
    assert {p.event_type for p in out} <= {
        None,
        "device.heartbeat",
        "device.battery",
        "temperature",
    }


def test_parse_broker_url() -> None:
    a = parse_broker_url("mqtt://127.0.0.1:1884")
    assert (a.host, a.port, a.tls) == ("127.0.0.1", 1884, False)
    assert parse_broker_url("mqtt://broker").port == 1883
    assert parse_broker_url("localhost:1999").port == 1999
    s = parse_broker_url("mqtts://u:p%40ss@example.org")
    assert (s.port, s.tls, s.username, s.password) == (8883, True, "u", "p@ss")
    for bad in ("http://x:1", "mqtt://:1883", "mqtt://h:99999"):
        with pytest.raises(ValueError):
            parse_broker_url(bad)


# -- the MQTT shell against a real broker -------------------------------------------------


def subscriber(broker: Mosquitto, tenant: str) -> tuple[mqtt.Client, list[tuple[str, bytes]]]:
    received: list[tuple[str, bytes]] = []
    subscribed = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if contract.parse_events_topic(msg.topic).tenant == tenant:  # the broker is shared
            received.append((msg.topic, msg.payload))

    client = broker.client()
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = on_message
    client.subscribe(contract.EVENTS_SUBSCRIPTION, qos=1)
    if not subscribed.wait(10):
        client.loop_stop()
        raise AssertionError("subscriber got no SUBACK within 10 s")
    return client, received


def wait_for(predicate, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    with contextlib.suppress(AssertionError):  # the caller asserts, with its own message
        until_sync(predicate, timeout_s, "the condition", every=0.02)
    return bool(predicate())


def test_shell_publishes_to_a_real_broker(mosquitto, tenant: str, homes: tuple[SimHome, ...]) -> None:  # type: ignore[no-untyped-def]
    sim_homes = with_tenant(homes[:3], tenant)
    client, received = subscriber(mosquitto, tenant)
    lines: list[str] = []
    try:
        began = time.monotonic()
        stats = run_simulator(
            mosquitto.url_for(mosquitto.harness()),  # the test's own tenant: no rc-sim grant covers it
            sim_homes,
            42,
            600.0,
            2.0,
            600.0,
            None,
            report_every_s=1.0,
            log=lines.append,
        )
        assert time.monotonic() - began < 8
        assert stats.events > 50 and stats.failed == 0
        assert stats.acked == stats.published
        assert wait_for(lambda: len(received) >= stats.events, 10), (len(received), stats.events)
    finally:
        client.disconnect()
        client.loop_stop()
    decoded = [decode_event(topic, payload) for topic, payload in received]
    assert {e.tenant for e in decoded} == {tenant}
    assert {e.device_id for e in decoded} <= {d.device_id for h in sim_homes for d in h.devices}
    # QoS 1 may redeliver; by event id nothing is missing and nothing is extra.
    assert len({(e.device_id, e.id) for e in decoded}) == stats.events
    assert Counter(e.type for e in {(e.device_id, e.id): e for e in decoded}.values()) == stats.events_by_type
    assert any("events in the last" in line for line in lines)
    assert "done after" in lines[-1]


def test_shell_status_is_retained_and_sentinel_goes_offline(mosquitto, tenant: str, homes: tuple[SimHome, ...]) -> None:  # type: ignore[no-untyped-def]
    sim_homes = with_tenant(homes[:1], tenant)
    stop = threading.Event()
    stop.set()  # one step, then stop
    run_simulator(mosquitto.url, sim_homes, 1, 1.0, None, 2.0, stop, log=lambda _: None, account=mosquitto.harness())
    # A later subscriber gets the retained statuses.
    got: dict[str, dict[str, object]] = {}
    done = threading.Event()
    wanted = {contract.status_topic(tenant, d.device_id) for d in sim_homes[0].devices}
    wanted.add(sentinel_topic(tenant))

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        got[msg.topic] = msgspec.json.decode(msg.payload)
        if wanted <= set(got):
            done.set()

    client = mosquitto.client()
    client.on_message = on_message
    client.subscribe([(f"{contract.PREFIX}/{tenant}/devices/+/status", 1), (sentinel_topic(tenant), 1)])
    try:
        assert done.wait(10), sorted(got)
    finally:
        client.disconnect()
        client.loop_stop()
    assert got[sentinel_topic(tenant)]["online"] is False
    for device in sim_homes[0].devices:
        assert got[contract.status_topic(tenant, device.device_id)]["online"] is True


def test_main_runs_the_cli(mosquitto, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    code = main(
        [
            "--homes",
            "2",
            "--broker",
            mosquitto.url_for(mosquitto.harness()),  # user:password@ in the URL
            "--seed",
            "3",
            "--speed",
            "300",
            "--duration",
            "0.5",
            "--rate",
            "60",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "2 homes" in out and "done after" in out


def test_main_reports_a_refused_login(mosquitto, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    assert main(["--homes", "1", "--broker", mosquitto.url, "--duration", "1"]) == 1  # anonymous
    assert "refused the connection: Not authorized" in capsys.readouterr().err
    (tmp_path / "credentials.json").write_text('{"rc-sim": "not-its-password"}')
    args = ["--homes", "1", "--broker", mosquitto.url, "--credentials", str(tmp_path / "credentials.json")]
    assert main([*args, "--duration", "1"]) == 1
    assert "refused the connection: Not authorized" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--homes", "1", "--credentials", str(tmp_path / "nothing.json")])
    assert "does not exist" in capsys.readouterr().err


def test_main_reports_an_unreachable_broker(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["--homes", "1", "--broker", f"mqtt://127.0.0.1:{port}", "--duration", "1"])
    assert code == 1
    assert "cannot reach the broker" in capsys.readouterr().err


def test_main_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--homes", "999", "--broker", "mqtt://127.0.0.1:1"])
    assert exc.value.code == 2
    assert "999" in capsys.readouterr().err
