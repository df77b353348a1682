"""The simulator's I/O shell: drive a `Simulator` against a real broker over MQTT v5.

One client connection carries every simulated device (QoS 1). A real device sets a Last
Will of its own on its own connection (`{"online": false}` on its status topic); one
connection can carry only one will, so the simulator's connection sets its will on a
topic of its own beside the devices, `rc/v1/{tenant}/simulator/status` of the first tenant
(outside `devices/`, so the centre does not take the simulator for an unknown device):
if the simulator dies, that topic says so. On a clean stop the shell publishes the same offline
status itself (a will is not sent on a clean disconnect).

A stop (SIGTERM, SIGINT, SIGHUP or `stop_event`) is honoured within a tick in every phase,
also while the broker cannot be reached: `responsecentre demo` stops the simulator when its
broker has died, and a simulator that sat in a TCP connect, a CONNACK wait or a wait for
acks that no broker will send would hold the demo's shutdown (or be killed without its
offline status). So the first connect runs in a thread of its own that a stop abandons, and
the final wait for acks is skipped when nobody is connected to send them.

    responsecentre sim --homes 5 --broker mqtt://127.0.0.1:1883 --credentials DIR/credentials.json

It logs in as `rc-sim` (the account `responsecentre broker config --simulator` makes, whose
ACL allows exactly what the simulator publishes), from `--credentials` or from the URL's
`user:password@`. With that broker config the client id is the username: two simulators
on one account throw each other off, so run one per broker.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from responsecentre import contract
from responsecentre.broker import SIMULATOR, load_credentials
from responsecentre.sim.homes import SimHome, default_homes_path, load_homes
from responsecentre.sim.simulator import Simulator, format_ts, status_payload


def sentinel_topic(tenant: str) -> str:
    """Where the simulator's own online status (and Last Will) goes."""
    return f"{contract.PREFIX}/{tenant}/simulator/status"


TICK_S = 0.1
REPORT_EVERY_S = 10.0
CONNECT_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_broker_url(url: str) -> BrokerAddress:
    """`mqtt://host:port` (default port 1883), `mqtts://host:port` (TLS, 8883);
    `tcp://` is taken as `mqtt://`, a bare `host:port` too; `user:pass@` is honoured."""
    text = url.strip()
    if "://" not in text:
        text = f"mqtt://{text}"
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("mqtt", "tcp", "mqtts", "ssl"):
        raise ValueError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts://")
    tls = scheme in ("mqtts", "ssl")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"broker URL {url!r}: the port is not a number in 1-65535") from None
    if not parts.hostname:
        raise ValueError(f"broker URL {url!r} names no host")
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _sim_password(path: Path) -> str:
    if not path.is_file():
        raise ValueError(f"credentials file {path} does not exist")
    try:
        return load_credentials(path)[SIMULATOR]
    except KeyError:
        raise ValueError(f"{path} has no {SIMULATOR} account (make it with `broker config --simulator`)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: {exc}") from None


@dataclass
class RunStats:
    """What a run sent: events by type, statuses, and how many the broker acknowledged."""

    events_by_type: Counter[str] = field(default_factory=Counter)
    statuses: int = 0
    published: int = 0
    acked: int = 0
    failed: int = 0  # publish calls paho refused outright (queue full, bad topic, ...)
    refused: int = 0  # acked with a failure reason: the broker's ACL does not allow the topic
    elapsed_s: float = 0.0
    sim_ms: int = 0  # sim time reached, epoch ms

    @property
    def events(self) -> int:
        return sum(self.events_by_type.values())


def _format_counts(counts: Counter[str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "-"


def run_simulator(
    broker_url: str,
    homes: Sequence[SimHome],
    seed: int,
    speed: float = 1.0,
    duration_s: float | None = None,
    rate: float = 2.0,
    stop_event: threading.Event | None = None,
    *,
    start_ms: int | None = None,
    report_every_s: float = REPORT_EVERY_S,
    log: Callable[[str], None] | None = None,
    account: tuple[str, str] | None = None,
) -> RunStats:
    """Publish the simulated homes' traffic until `duration_s` (wall seconds) has passed or
    `stop_event` is set; then wait (bounded) for the broker's acks and disconnect.

    `start_ms` pins the sim clock's start (default: now); `account` (username, password)
    overrides the URL's user. Raises ConnectionError when the
    broker cannot be reached. A `stop_event` set while connecting ends the run at once; one
    set before the call runs one step (connect, first statuses) and stops.
    """
    if not homes:
        raise ValueError("no homes to simulate")
    say = log or (lambda line: print(line, flush=True))
    stop = stop_event or threading.Event()
    one_step = stop.is_set()
    address = parse_broker_url(broker_url)
    wall_start_ms = int(time.time() * 1000)
    sim_start = wall_start_ms if start_ms is None else int(start_ms)
    # Event numbers start at the run's wall-clock start, so a second run does not reuse
    # the ids (and get deduplicated away) of an earlier one.
    sim = Simulator(
        homes,
        seed,
        sim_start,
        speed,
        events_per_hour_per_home=rate,
        first_event_number=wall_start_ms,
    )
    sentinel = sentinel_topic(homes[0].tenant)

    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"rc-sim-{seed}-{secrets.token_hex(4)}",
        protocol=mqtt.MQTTv5,
    )
    if account is not None:
        client.username_pw_set(*account)
    elif address.username is not None:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set()
    client.will_set(sentinel, status_payload(False, None, sim_start), qos=1, retain=True)
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)  # unbounded: the loop below is the only producer
    client.reconnect_delay_set(min_delay=1, max_delay=10)

    stats = RunStats()
    lock = threading.Lock()
    connected = threading.Event()
    closing = threading.Event()
    refused: list[str] = []

    def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            refused.append(str(reason))
        else:
            connected.set()

    def on_disconnect(_c: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        if connected.is_set() and not closing.is_set():
            say(f"sim: disconnected from the broker ({reason}); reconnecting")
        connected.clear()

    def on_publish(_c: mqtt.Client, _u: object, _mid: int, reason: object, _p: object) -> None:
        with lock:
            stats.acked += 1
            if getattr(reason, "is_failure", False):
                stats.refused += 1

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_publish = on_publish

    connect_props = Properties(PacketTypes.CONNECT)
    connect_props.SessionExpiryInterval = 0
    connect_failed: list[OSError] = []
    tcp_done = threading.Event()

    def connect() -> None:
        try:
            client.connect(address.host, address.port, keepalive=30, clean_start=True, properties=connect_props)
        except OSError as exc:
            connect_failed.append(exc)
        finally:
            tcp_done.set()

    # A host that does not answer holds connect() for paho's connect timeout; a stop must not.
    threading.Thread(target=connect, name="sim-connect", daemon=True).start()
    while not tcp_done.wait(0.05):
        if stop.is_set() and not one_step:
            say(f"sim: stopped before {broker_url} answered")
            return stats
    if connect_failed:
        raise ConnectionError(f"cannot reach the broker at {broker_url}: {connect_failed[0]}") from connect_failed[0]
    client.loop_start()
    try:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while not connected.wait(0.05):
            if refused:
                raise ConnectionError(f"the broker at {broker_url} refused the connection: {refused[0]}")
            if stop.is_set() and not one_step:
                say(f"sim: stopped before {broker_url} answered")
                return stats
            if time.monotonic() > deadline:
                raise ConnectionError(f"no CONNACK from {broker_url} within {CONNECT_TIMEOUT_S:.0f} s")

        def publish(topic: str, payload: bytes, qos: int, retain: bool) -> None:
            info = client.publish(topic, payload, qos=qos, retain=retain)
            # With QoS 1 paho queues the message even while disconnected and sends it on
            # reconnect; anything else is a refusal we count and report.
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                stats.failed += 1
            else:
                stats.published += 1

        publish(sentinel, status_payload(True, None, sim_start), 1, True)
        stats.statuses += 1
        devices = sum(len(h.devices) for h in homes)
        say(
            f"sim: {len(homes)} homes, {devices} devices -> {broker_url} "
            f"(seed {seed}, speed {speed:g}x, {rate:g} incidents/h/home"
            + (f", for {duration_s:g} s)" if duration_s is not None else ", until stopped)")
        )

        mono_start = time.monotonic()
        next_report = mono_start + report_every_s
        window: Counter[str] = Counter()
        while True:
            elapsed = time.monotonic() - mono_start
            if duration_s is not None and elapsed >= duration_s:
                elapsed = duration_s
            for msg in sim.step(sim_start + int(elapsed * 1000)):
                publish(msg.topic, msg.payload, msg.qos, msg.retain)
                if msg.event_type is None:
                    stats.statuses += 1
                else:
                    stats.events_by_type[msg.event_type] += 1
                    window[msg.event_type] += 1
            now = time.monotonic()
            if now >= next_report:
                say(
                    f"sim: {now - mono_start:6.1f} s, sim {format_ts(sim.sim_now)}, "
                    f"{sum(window.values())} events in the last {report_every_s:g} s: " + _format_counts(window)
                )
                window.clear()
                next_report += report_every_s
            if stop.is_set() or (duration_s is not None and elapsed >= duration_s):
                break
            wait = TICK_S - (time.monotonic() - now)
            if duration_s is not None:
                wait = min(wait, duration_s - (time.monotonic() - mono_start))
            if wait > 0:
                stop.wait(wait)

        stats.elapsed_s = time.monotonic() - mono_start
        stats.sim_ms = sim.sim_now
        publish(sentinel, status_payload(False, None, sim.sim_now), 1, True)
        stats.statuses += 1
        # Let the broker acknowledge everything queued (bounded).
        drain_deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < drain_deadline:
            with lock:
                if stats.acked >= stats.published:
                    break
            if stop.is_set() and not connected.is_set():
                break  # stopped while the broker is away: no ack will come, do not make the stop wait
            time.sleep(0.02)
        unacked = stats.published - stats.acked
        say(
            f"sim: done after {stats.elapsed_s:.1f} s: "
            f"{stats.events} events, {stats.statuses} statuses"
            + (f", {unacked} NOT acknowledged by the broker" if unacked > 0 else "")
            + (f", {stats.failed} refused by the client" if stats.failed else "")
            + (f", {stats.refused} refused by the broker (not authorized?)" if stats.refused else "")
            + f"; by type: {_format_counts(stats.events_by_type)}"
        )
        return stats
    finally:
        closing.set()
        with contextlib.suppress(Exception):
            client.disconnect()
        client.loop_stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="responsecentre sim",
        description="Simulate the demo homes' devices and publish their traffic over MQTT (contract v1).",
    )
    parser.add_argument(
        "--homes",
        type=int,
        default=None,
        metavar="N",
        help="simulate the first N homes of the file (default: all)",
    )
    parser.add_argument(
        "--broker",
        default="mqtt://127.0.0.1:1883",
        help="broker URL, mqtt://host:port (default %(default)s)",
    )
    parser.add_argument(
        "--credentials",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"credentials.json of `responsecentre broker config --simulator`: log in as {SIMULATOR}",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=1,
        help="random seed: the same seed gives the same stream (default %(default)s)",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="sim time per wall time; 60 plays an hour a minute (default %(default)s)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="stop after S wall-clock seconds (default: run until Ctrl-C)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=2.0,
        metavar="R",
        help="incidents per hour (sim time) per home (default %(default)s)",
    )
    parser.add_argument(
        "--homes-file",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"homes file (default {default_homes_path()})",
    )
    parser.add_argument(
        "--catalog",
        type=Path,
        default=None,
        metavar="PATH",
        help="device catalogue (default: catalog.yaml beside the homes file)",
    )
    parser.add_argument(
        "--start",
        default=None,
        metavar="TS",
        help="sim start time, RFC 3339 or epoch ms (default: now)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`responsecentre sim ...`; returns the exit status (0 ok, 1 broker trouble, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.speed <= 0:
        parser.error("--speed must be positive")
    if args.rate < 0:
        parser.error("--rate cannot be negative")
    if args.duration is not None and args.duration < 0:
        parser.error("--duration cannot be negative")
    if args.homes is not None and args.homes < 1:
        parser.error("--homes must be at least 1")
    account = None
    try:
        parse_broker_url(args.broker)
        if args.credentials is not None:
            account = (SIMULATOR, _sim_password(args.credentials))
        homes = load_homes(args.homes_file, args.catalog, args.homes)
        start_ms = None
        if args.start is not None:
            start_ms = contract.parse_ts(int(args.start) if args.start.isdigit() else args.start)
    except (OSError, ValueError, contract.Rejected) as exc:
        parser.error(str(exc))
    if not homes:
        parser.error("the homes file has no homes")

    stop = threading.Event()
    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        run_simulator(
            args.broker,
            homes,
            args.seed,
            args.speed,
            args.duration,
            args.rate,
            stop,
            start_ms=start_ms,
            account=account,
        )
    except ConnectionError as exc:
        print(f"sim: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
