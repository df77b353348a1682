"""End-to-end benchmark: broker -> ingest -> event log -> rule engine -> alarm -> console feed.

    .venv/bin/python bench/pipeline.py [--devices 2000] [--events 50000] [--publishers 2]
        [--alarms 200] [--repeats 3]

Starts its own mosquitto and redis-server (responsecentre.servers) on free loopback ports
and the service as a child process (`python -m responsecentre run ...`) on the default rule
pack and chains, then, `--repeats` times:

1. raw broker rate: `--publishers` paho clients (one process each, so the GIL does not make
   them one) publish `--events` QoS 1 messages to a topic outside the events subscription;
   one paho subscriber (QoS 1, in this process) counts them. Rate = messages / time until the
   subscriber has them all.
2. ingest rate: the same clients publish `--events` `device.heartbeat` events over all devices;
   timed until `responsecentre_events_stored_total` (durably stored, acked) and
   `responsecentre_events_processed_total` (through the rule engine) have grown by that many.
   If they stop short (no growth for STALL_S), the shortfall is reported as lost.
3. event -> alarm latency: `--alarms` `alarm.button` events, one at a time 20 ms apart, each
   to a different home; latency = just before `publish` to the alarm's first message on /ws.
   The server's own histogram `responsecentre_event_to_alarm_seconds` (receive -> stored) is
   read for comparison. The alarms are then resolved, so the next run raises new ones.

Every figure is a median over the runs. Prints a table and appends a dated section to
bench/RESULTS.md. Not part of the test suite: it takes a few minutes and wants a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import json
import math
import multiprocessing as mp
import os
import platform
import queue
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families
from report import append_results, cpu_name
from websockets.sync.client import connect as ws_connect

from responsecentre.broker import Access, Account, Grant
from responsecentre.contract import encode_event, events_topic
from responsecentre.servers import Centre, Mosquitto, Redis

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules" / "default.yaml"
CHAINS = ROOT / "escalation" / "chains.yaml"
TENANT = "bench"
OPERATOR = "bench-operator"
DEVICE_KINDS = ("safety_alarm", "fall_sensor", "medicine_dispenser", "door_sensor")
RAW_TOPIC = "bench/raw"  # not under rc/v1/+/devices/+/events: the service never sees it
INFLIGHT = 1000
ALARM_GAP_S = 0.020
POLL_S = 0.05
STALL_S = 5.0  # no counter growth for this long ends an ingest run
READY_TIMEOUT_S = 90.0
HISTOGRAM = "responsecentre_event_to_alarm_seconds"
METRICS_TOKEN = secrets.token_hex(16)  # the service's RC_METRICS_TOKEN; scrape() sends it


# -- set-up ------------------------------------------------------------------------------------


def write_config(workdir: Path, n_devices: int) -> tuple[Path, Path, list[str]]:
    """homes.yaml (4 devices per home, tenant `bench`) and staff.yaml; returns the device ids."""
    per_home = len(DEVICE_KINDS)
    n_homes = math.ceil(n_devices / per_home)
    homes = []
    devices: list[str] = []
    for h in range(n_homes):
        home_devices = []
        for d in range(min(per_home, n_devices - h * per_home)):
            device_id = f"h{h}-d{d}"
            home_devices.append({"id": device_id, "kind": DEVICE_KINDS[d]})
            devices.append(device_id)
        homes.append(
            {
                "id": f"h{h}",
                "zone": "north" if h % 2 else "south",
                "resident": {"name": f"Resident {h}", "address": f"Street {h}", "key_safe": "0000"},
                "devices": home_devices,
            }
        )
    staff = [
        {"id": "s-n1", "name": "Nurse North", "role": "nurse", "zone": "north", "on_duty": True},
        {"id": "s-n2", "name": "Nurse South", "role": "nurse", "zone": "south", "on_duty": True},
        {"id": "s-tl1", "name": "Team Lead", "role": "team_lead", "zone": "all", "on_duty": True},
        {"id": "s-tech1", "name": "Technician", "role": "technician", "zone": "all", "on_duty": True},
    ]
    homes_path = workdir / "homes.yaml"
    staff_path = workdir / "staff.yaml"
    homes_path.write_text(yaml.safe_dump({"tenants": {TENANT: {"homes": homes}}}))
    staff_path.write_text(yaml.safe_dump({"tenants": {TENANT: {"staff": staff}}}))
    return homes_path, staff_path, devices


def bench_accounts(publishers: int) -> list[Account]:
    """The bench's own broker accounts, one per client (the broker binds the client id to
    the account, so clients sharing one would throw each other off): each publisher, the
    raw subscriber and the alarm publisher may use the bench tenant's device topics and the
    raw topic. The service itself logs in with the centre's real accounts."""
    grants = (Grant(Access.READWRITE, f"rc/v1/{TENANT}/devices/#"), Grant(Access.READWRITE, f"{RAW_TOPIC}/#"))
    names = [f"bench-pub{i}" for i in range(publishers)] + ["bench-sub", "bench-alarms"]
    return [Account(name, grants) for name in names]


def seed_operator(redis_url: str, password: str) -> None:
    import redis.asyncio as aioredis

    from responsecentre.web.auth import Users

    async def go() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await Users(client).add(OPERATOR, password, "operator", tenants=[TENANT])
        finally:
            await client.aclose()

    asyncio.run(go())


class Service(Centre):
    """The service as a child process, logged in as the centre's accounts. `restart` keeps
    the account (the broker binds the session to it), so the new process resumes the
    persistent session and the broker redelivers what was left unacked."""

    def __init__(self, workdir: Path, broker: Mosquitto, redis: Redis, homes: Path, staff: Path) -> None:
        super().__init__(
            workdir=workdir,
            ready_timeout_s=READY_TIMEOUT_S,
            args=[
                "--broker",
                broker.url,
                "--redis",
                redis.url,
                "--rules",
                str(RULES),
                "--chains",
                str(CHAINS),
                "--homes",
                str(homes),
                "--staff",
                str(staff),
                "--mqtt-credentials",
                str(broker.credentials_path),
            ],
            env={
                "RC_METRICS_TOKEN": METRICS_TOKEN,
                "NUMBA_CACHE_DIR": str(ROOT / ".cache" / "numba"),
            },
        )

    def start(self) -> float:  # type: ignore[override]
        """Start and wait for /readyz; the seconds that took."""
        started = time.monotonic()
        super().start()
        return time.monotonic() - started

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"service exited with {self.proc.returncode}:\n{self.log_tail()}")


# -- MQTT ----------------------------------------------------------------------------------------


class Publishers:
    """K publisher processes, one paho client each (MQTT v5, QoS 1, async `publish` with
    max inflight raised). Processes, not threads: the GIL would make K threads one client.

    Each worker runs its client's network loop in the publishing thread (`loop(0)` every few
    publishes) rather than in paho's `loop_start` thread: with a second thread every publish
    wakes the loop through a socket pair and the two fight for the GIL, which halves a client's
    rate on this machine. Acks are awaited only at the end of a batch.
    """

    def __init__(self, broker: Mosquitto, devices: list[str], k: int) -> None:
        ctx = mp.get_context("spawn")
        self.outbox: Any = ctx.Queue()
        self.inboxes: list[Any] = [ctx.Queue() for _ in range(k)]
        self.procs = [
            ctx.Process(
                target=publisher_worker,
                args=(
                    i,
                    broker.host,
                    broker.port,
                    broker.credentials[f"bench-pub{i}"],
                    devices,
                    self.inboxes[i],
                    self.outbox,
                ),
                daemon=True,
            )
            for i in range(k)
        ]
        for proc in self.procs:
            proc.start()
        self._collect("connected", timeout=60)

    def _collect(self, what: str, timeout: float) -> list[tuple[Any, ...]]:
        replies: list[tuple[Any, ...]] = []
        deadline = time.monotonic() + timeout
        while len(replies) < len(self.procs):
            try:
                reply = self.outbox.get(timeout=max(0.01, min(1.0, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() > deadline or any(not p.is_alive() for p in self.procs):
                    raise RuntimeError(f"publishers: {len(replies)} of {len(self.procs)} {what}") from None
                continue
            if reply[0] == "error":
                raise RuntimeError(f"publisher {reply[1]}: {reply[2]}")
            if reply[0] != what:
                raise RuntimeError(f"publishers: expected {what}, got {reply!r}")
            replies.append(reply)
        return replies

    def publish(self, kind: str, tag: str, n: int, timeout: float, on_go: Callable[[], None] | None = None) -> float:
        """Worker i publishes messages i, i+K, ...: prepared first, then all start together.
        Returns the start (perf_counter, just before the go); `on_go` runs right after it."""
        for inbox in self.inboxes:
            inbox.put(("prepare", kind, tag, n, len(self.procs)))
        self._collect("ready", timeout=60)
        started = time.perf_counter()
        for inbox in self.inboxes:
            inbox.put(("go",))
        if on_go is not None:
            on_go()
        return started

    def finished(self, timeout: float) -> float:
        """Wait until every worker has all its PUBACKs; the time of the last one (perf_counter)."""
        return max(float(r[2]) for r in self._collect("done", timeout))

    def close(self) -> None:
        for inbox in self.inboxes:
            with contextlib.suppress(Exception):
                inbox.put(("stop",))
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


def worker_messages(kind: str, tag: str, n: int, index: int, k: int, devices: list[str]) -> list[tuple[str, bytes]]:
    now = int(time.time() * 1000)
    out = []
    for i in range(index, n, k):
        payload = encode_event(f"{tag}-{i}", "device.heartbeat", now)
        topic = f"{RAW_TOPIC}/{tag}/{index}" if kind == "raw" else events_topic(TENANT, devices[i % len(devices)])
        out.append((topic, payload))
    return out


def publisher_worker(
    index: int, host: str, port: int, password: str, devices: list[str], inbox: Any, outbox: Any
) -> None:
    """One publisher process: commands on `inbox`, replies on `outbox`."""
    try:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            protocol=mqtt.MQTTv5,
            client_id=f"bench-pub{index}",
        )
        client.username_pw_set(f"bench-pub{index}", password)
        client.max_inflight_messages_set(INFLIGHT)
        client.connect(host, port)
        deadline = time.monotonic() + 10
        while not client.is_connected():
            if time.monotonic() > deadline:
                raise RuntimeError("no CONNACK")
            client.loop(0.05)
        outbox.put(("connected", index))
        messages: list[tuple[str, bytes]] = []
        while True:
            try:
                cmd = inbox.get(timeout=0.5)
            except queue.Empty:
                client.loop(0)  # keepalive while idle
                continue
            if cmd[0] == "stop":
                break
            if cmd[0] == "prepare":
                _, kind, tag, n, k = cmd
                messages = worker_messages(kind, tag, n, index, k, devices)
                outbox.put(("ready", index))
                continue
            # "go"
            publish = client.publish
            infos = []
            for i, (topic, payload) in enumerate(messages):
                infos.append(publish(topic, payload, qos=1))
                if i % 32 == 31:
                    client.loop(0)
            deadline = time.monotonic() + max(120.0, len(messages) / 200)
            acked = 0
            while acked < len(infos):
                while acked < len(infos) and infos[acked].is_published():
                    acked += 1
                if acked < len(infos):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{len(infos) - acked} PUBACKs missing")
                    client.loop(0.01)
            outbox.put(("done", index, time.perf_counter()))
        client.disconnect()
    except BaseException as exc:
        outbox.put(("error", index, repr(exc)))


def mqtt_client(broker: Mosquitto, name: str) -> mqtt.Client:
    """An in-process client with paho's network thread (the raw subscriber, the alarm publisher)."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        protocol=mqtt.MQTTv5,
        client_id=name,
    )
    client.username_pw_set(name, broker.credentials[name])
    client.connect(broker.host, broker.port)
    client.loop_start()
    deadline = time.monotonic() + 10
    while not client.is_connected():
        if time.monotonic() > deadline:
            raise RuntimeError(f"MQTT client {name} did not connect")
        time.sleep(0.01)
    return client


# -- metrics -------------------------------------------------------------------------------------


def scrape(http: httpx.Client) -> dict[str, Any]:
    """Counter totals by sample name (summed over labels) and the latency histogram's buckets."""
    text = http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).raise_for_status().text
    totals: dict[str, float] = {}
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
            if sample.name == f"{HISTOGRAM}_bucket":
                buckets[float(sample.labels["le"])] = sample.value
    return {"totals": totals, "buckets": buckets}


def total(metrics: dict[str, Any], name: str) -> float:
    return float(metrics["totals"].get(name, 0.0))


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' estimate: linear interpolation inside the bucket (cumulative counts)."""
    count = buckets[-1][1]
    if count <= 0:
        return float("nan")
    rank = q * count
    lower, below = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return lower


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not done within {timeout:.0f} s")
        time.sleep(POLL_S)


# -- the three measurements --------------------------------------------------------------------


def raw_rate(broker: Mosquitto, publishers: Publishers, n: int, run: int) -> tuple[float, float]:
    """(delivered/s, acked/s): until the subscriber has all n; until the last PUBACK."""
    tag = f"raw{run}"
    lock = threading.Lock()
    state = {"count": 0, "done": 0.0}
    done = threading.Event()
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with lock:
            state["count"] += 1
            if state["count"] == n:
                state["done"] = time.perf_counter()
                done.set()

    subscriber = mqtt_client(broker, "bench-sub")
    try:
        subscriber.on_message = on_message
        subscriber.on_subscribe = lambda *_: subscribed.set()
        subscriber.subscribe(f"{RAW_TOPIC}/{tag}/#", qos=1)
        if not subscribed.wait(10):
            raise RuntimeError("no SUBACK for the raw subscriber")
        started = publishers.publish("raw", tag, n, timeout=60)
        acked = publishers.finished(timeout=max(120.0, n / 200))
        if not done.wait(max(30.0, n / 1000)):
            raise RuntimeError(f"the raw subscriber got {state['count']} of {n} messages")
        return n / (state["done"] - started), n / (acked - started)
    finally:
        subscriber.disconnect()
        subscriber.loop_stop()


def ingest_rate(http: httpx.Client, publishers: Publishers, n: int, run: int) -> dict[str, float]:
    """From the go until `stored` and `processed` grew by n (and until the last PUBACK).

    If the counters stop short of n and stay put for STALL_S, the shortfall is reported as
    lost (events the service never stored: they sit unacked at the broker) and the rates are
    taken over what was stored, up to its last growth.
    """
    before = scrape(http)
    stored0 = total(before, "responsecentre_events_stored_total")
    processed0 = total(before, "responsecentre_events_processed_total")
    started = publishers.publish("events", f"hb{run}", n, timeout=60)
    deadline = time.monotonic() + max(120.0, n / 200)
    last = {"stored": (0.0, started), "processed": (0.0, started)}  # count, perf_counter of its last growth
    changed = time.monotonic()
    while True:
        now = scrape(http)
        seen = time.perf_counter()
        counts = {
            "stored": total(now, "responsecentre_events_stored_total") - stored0,
            "processed": total(now, "responsecentre_events_processed_total") - processed0,
        }
        for key, count in counts.items():
            if count != last[key][0]:
                last[key] = (count, seen)
                changed = time.monotonic()
        if counts["stored"] >= n and counts["processed"] >= n:
            break
        if time.monotonic() - changed > STALL_S:
            print(
                f"  ingest stalled: stored {counts['stored']:,.0f} and processed {counts['processed']:,.0f} "
                f"of {n:,} for {STALL_S:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"ingest: {n} events not stored and processed in time; counters grew by {counts}")
        time.sleep(POLL_S)
    acked = publishers.finished(timeout=60)
    (stored, stored_t), (processed, processed_t) = last["stored"], last["processed"]
    return {
        "stored": stored / (stored_t - started),
        "processed": processed / (processed_t - started),
        "acked": n / (acked - started),
        "lost": n - stored,
    }


def recover(service: Service, http: httpx.Client, lost: float) -> dict[str, float]:
    """Restart the service (same client id) after an ingest run left events unstored, and count
    how many of them the broker redelivers and the new process stores; the next run then starts
    from a healthy link. The new process's counters start from zero."""
    started = time.monotonic()
    service.stop()
    service.start()
    last, changed = -1.0, time.monotonic()
    deadline = time.monotonic() + max(60.0, lost / 200)
    while time.monotonic() < deadline:
        stored = total(scrape(http), "responsecentre_events_stored_total")
        if stored >= lost:
            last = stored
            break
        if stored != last:
            last, changed = stored, time.monotonic()
        elif time.monotonic() - changed > STALL_S:
            break
        time.sleep(POLL_S)
    print(f"  restarted the service: {last:,.0f} of {lost:,.0f} unstored events stored after the restart", flush=True)
    return {"recovered": last, "restart_s": time.monotonic() - started}


def alarm_latency(
    base_url: str, password: str, http: httpx.Client, publisher: mqtt.Client, devices: list[str], n: int, run: int
) -> dict[str, Any]:
    """Publish n alarm.button events (one per home, ALARM_GAP_S apart); client-side latency to
    the alarm's first /ws message, and the server histogram's change over the same window."""
    homes = sorted({d.split("-")[0] for d in devices}, key=lambda h: int(h[1:]))
    if n > len(homes):
        raise RuntimeError(f"--alarms {n} needs as many homes, there are {len(homes)}")
    chosen = [homes[(run * n + i) % len(homes)] for i in range(n)]
    before = scrape(http)
    pending: dict[str, float] = {}
    latencies: dict[str, float] = {}
    seen_ids: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()
    auth = base64.b64encode(f"{OPERATOR}:{password}".encode()).decode()
    ws_url = base_url.replace("http://", "ws://") + "/ws"
    with ws_connect(ws_url, additional_headers={"Authorization": f"Basic {auth}"}, open_timeout=10) as ws:
        snapshot = json.loads(ws.recv(timeout=10))
        if snapshot.get("type") != "snapshot":
            raise RuntimeError(f"/ws did not start with a snapshot: {snapshot!r:.200}")
        seen_ids.update(a["id"] for a in snapshot["alarms"])

        def receive() -> None:
            while not stop.is_set():
                try:
                    raw = ws.recv(timeout=0.2)
                except TimeoutError:
                    continue
                except Exception:  # connection closed
                    return
                arrived = time.perf_counter()
                msg = json.loads(raw)
                if msg.get("type") != "alarm":
                    continue
                alarm = msg["alarm"]
                with lock:
                    if alarm["id"] in seen_ids:
                        continue
                    seen_ids.add(alarm["id"])
                    sent = pending.pop(alarm["home_id"], None)
                    if sent is not None and alarm["state"] == "raised":
                        latencies[alarm["home_id"]] = arrived - sent

        receiver = threading.Thread(target=receive, daemon=True)
        receiver.start()
        try:
            now_ms = int(time.time() * 1000)
            for i, home in enumerate(chosen):
                payload = encode_event(f"alarm-r{run}-{i}", "alarm.button", now_ms + int(i * ALARM_GAP_S * 1000))
                topic = events_topic(TENANT, f"{home}-d0")
                with lock:
                    pending[home] = time.perf_counter()
                info = publisher.publish(topic, payload, qos=1)
                info.wait_for_publish(5)
                time.sleep(ALARM_GAP_S)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                with lock:
                    if not pending:
                        break
                time.sleep(POLL_S)
        finally:
            stop.set()
            receiver.join(5)
    # The server observes after its transaction; give the last observation a moment.
    wait_until(
        lambda: total(scrape(http), f"{HISTOGRAM}_count") - total(before, f"{HISTOGRAM}_count") >= len(latencies),
        10,
        "server histogram",
    )
    after = scrape(http)
    bounds = sorted(after["buckets"])
    delta = [(b, after["buckets"][b] - before["buckets"].get(b, 0.0)) for b in bounds]
    count = total(after, f"{HISTOGRAM}_count") - total(before, f"{HISTOGRAM}_count")
    mean = (total(after, f"{HISTOGRAM}_sum") - total(before, f"{HISTOGRAM}_sum")) / count if count else float("nan")
    ms = [v * 1000 for v in latencies.values()]
    if not ms:
        raise RuntimeError("no alarm arrived on /ws")
    return {
        "received": len(ms),
        "missing": n - len(ms),
        "p50": percentile(ms, 0.50),
        "p95": percentile(ms, 0.95),
        "p99": percentile(ms, 0.99),
        "max": max(ms),
        "mean": statistics.fmean(ms),
        "server_count": count,
        "server_mean": mean * 1000,
        "server_p50": histogram_quantile(0.50, delta) * 1000,
        "server_p95": histogram_quantile(0.95, delta) * 1000,
        "server_p99": histogram_quantile(0.99, delta) * 1000,
    }


def resolve_open(base_url: str, password: str) -> int:
    """Close every open alarm, so the next run raises new ones (one login, then the session)."""
    resolved = 0
    with httpx.Client(base_url=base_url, timeout=10.0) as http:
        r = http.post("/login", data={"username": OPERATOR, "password": password, "next": "/api/me"})
        csrf = http.cookies.get("rc_csrf")
        if r.status_code >= 400 or not csrf:
            raise RuntimeError(f"login failed: {r.status_code}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            alarms = http.get("/api/alarms", params={"state": "open"}).raise_for_status().json()["alarms"]
            if not alarms:
                return resolved
            for alarm in alarms:
                r = http.post(
                    f"/api/alarms/{alarm['id']}/resolve",
                    json={"code": "false_alarm", "note": "benchmark"},
                    headers={"X-CSRF-Token": csrf},
                )
                resolved += r.status_code == 200
    raise RuntimeError("open alarms remained after 60 s")


# -- report --------------------------------------------------------------------------------------


def version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--alarms", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    if min(args.devices, args.events, args.publishers, args.alarms, args.repeats) < 1:
        parser.error("every count must be at least 1")

    password = secrets.token_urlsafe(16)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rc-bench-") as tmp:
        workdir = Path(tmp)
        homes_path, staff_path, devices = write_config(workdir, args.devices)
        broker = Mosquitto(workdir=workdir / "mosquitto", extra_accounts=bench_accounts(args.publishers))
        redis = Redis(workdir=workdir / "redis")
        service: Service | None = None
        publishers: Publishers | None = None
        alarm_client: mqtt.Client | None = None
        try:
            broker.start()
            redis.start()
            seed_operator(redis.url, password)
            service = Service(workdir, broker, redis, homes_path, staff_path)
            base_url = service.base_url
            ready_s = service.start()
            print(f"service ready in {ready_s:.1f} s; {len(devices):,} devices", flush=True)
            publishers = Publishers(broker, devices, args.publishers)
            alarm_client = mqtt_client(broker, "bench-alarms")
            with httpx.Client(base_url=base_url, timeout=10.0) as http:
                for run in range(args.repeats):
                    raw, raw_acked = raw_rate(broker, publishers, args.events, run)
                    ingest = ingest_rate(http, publishers, args.events, run)
                    ingest.update(recover(service, http, ingest["lost"]) if ingest["lost"] else {"recovered": 0.0})
                    latency = alarm_latency(base_url, password, http, alarm_client, devices, args.alarms, run)
                    resolve_open(base_url, password)
                    result = {"raw": raw, "raw_acked": raw_acked, **ingest, **latency}
                    runs.append(result)
                    print(
                        f"run {run + 1}: raw {raw:,.0f}/s, stored {ingest['stored']:,.0f}/s, "
                        f"processed {ingest['processed']:,.0f}/s ({ingest['lost']:,.0f} lost), "
                        f"alarm p50 {latency['p50']:.1f} ms p99 {latency['p99']:.1f} ms "
                        f"({latency['missing']} missing)",
                        flush=True,
                    )
                    service.check()
        except BaseException:
            kept = Path(tempfile.mkdtemp(prefix="rc-bench-failed-"))
            for log in (workdir / "service.log", broker.log_path, redis.log_path):
                with contextlib.suppress(OSError):
                    shutil.copy(log, kept / log.name)
            tail = service.log_tail() if service is not None else "(not started)"
            print(f"--- service log (tail; full logs in {kept}) ---\n{tail}", file=sys.stderr)
            raise
        finally:
            if alarm_client is not None:
                alarm_client.disconnect()
                alarm_client.loop_stop()
            if publishers is not None:
                publishers.close()
            if service is not None:
                service.stop()
            broker.stop()
            redis.stop()

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    def each(key: str, fmt: str) -> str:
        return " / ".join(format(r[key], fmt) for r in runs)

    for r in runs:
        r["ratio_stored"] = r["stored"] / r["raw"]
        r["ratio_processed"] = r["processed"] / r["raw"]
    rows = [
        ("raw broker, QoS 1 publish -> subscriber (msg/s)", "raw", ",.0f"),
        ("  raw broker, last PUBACK to the publishers (msg/s)", "raw_acked", ",.0f"),
        ("ingest, stored durably + acked (events/s)", "stored", ",.0f"),
        ("ingest, through the rule engine (events/s)", "processed", ",.0f"),
        ("  ingest, last PUBACK to the publishers (events/s)", "acked", ",.0f"),
        ("ingest, events left unstored and unacked (see notes)", "lost", ",.0f"),
        ("  of those, stored after a service restart", "recovered", ",.0f"),
        ("stored / raw broker (same run)", "ratio_stored", ".2f"),
        ("processed / raw broker (same run)", "ratio_processed", ".2f"),
        ("event -> alarm on /ws, p50 (ms)", "p50", ".1f"),
        ("event -> alarm on /ws, p95 (ms)", "p95", ".1f"),
        ("event -> alarm on /ws, p99 (ms)", "p99", ".1f"),
        ("event -> alarm on /ws, max (ms)", "max", ".1f"),
        ("event -> alarm on /ws, mean (ms)", "mean", ".1f"),
        ("alarms not seen on /ws within 15 s", "missing", "d"),
        ("server histogram receive -> stored, mean (ms)", "server_mean", ".1f"),
        ("server histogram p50, from buckets (ms)", "server_p50", ".1f"),
        ("server histogram p95, from buckets (ms)", "server_p95", ".1f"),
        ("server histogram p99, from buckets (ms)", "server_p99", ".1f"),
    ]
    figures = [(name, format(med(key), fmt if fmt != "d" else ".0f"), each(key, fmt)) for name, key, fmt in rows]
    width = max(len(name) for name, _, _ in figures)
    vwidth = max(len(v) for _, v, _ in [*figures, ("", "median", "")])
    header = (
        f"| {'figure'.ljust(width)} | {'median'.ljust(vwidth)} | runs |\n"
        f"|{'-' * (width + 2)}|{'-' * (vwidth + 2)}|------|"
    )
    table = "\n".join(f"| {n.ljust(width)} | {v.ljust(vwidth)} | {e} |" for n, v, e in figures)
    print()
    print(header)
    print(table)
    if args.no_record:
        return
    command = ".venv/bin/python bench/pipeline.py " + " ".join(sys.argv[1:])
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    homes = math.ceil(args.devices / len(DEVICE_KINDS))
    import paho.mqtt

    lost = sum(r["lost"] for r in runs)
    recovered = sum(r["recovered"] for r in runs)
    notes = (
        f"- **{lost:,.0f} of {args.events * args.repeats:,} ingest events were left unstored and unacked** in "
        f"{sum(1 for r in runs if r['lost'])} of {len(runs)} runs; the service logged `inbox full; message N left "
        "unacked for redelivery` (responsecentre/ingest/mqtt.py). With a backlog queued for it, this mosquitto sends "
        "more unacked messages than the service's Receive Maximum, the bounded inbox overflows, and a dropped "
        "message is not redelivered on the same connection; the dropped messages keep their in-flight slots, so "
        "ingest stalls. After such a run the bench restarts the service with the same client id: "
        f"{recovered:,.0f} of them were then redelivered and stored. Ingest rates count the stored events only, "
        "up to the counter's last growth\n"
        if lost
        else ""
    )
    section = f"""
## Pipeline (bench/pipeline.py) — {now}

- command: `{command.strip()}`
- {args.devices:,} devices in {homes:,} homes (tenant `{TENANT}`), rule pack `rules/default.yaml`, chains \
`escalation/chains.yaml`; {args.events:,} QoS 1 messages per rate run from {args.publishers} paho publishers \
(max inflight {INFLIGHT}); {args.alarms} `alarm.button` events {ALARM_GAP_S * 1000:.0f} ms apart, one per home; \
medians of {args.repeats} runs (per-run values after the median)
- everything on one machine over loopback: mosquitto, redis-server (appendfsync always), the service, the \
{args.publishers} publisher processes (paho network loop in the publishing thread) and the bench process (raw \
subscriber, /metrics poller, /ws client) share the CPUs
- raw broker: from the go to the publishers until one paho subscriber (QoS 1, paho's network thread, in the bench \
process) has all messages; ingest: from the go until the service's counters grew by the count (/metrics polled \
every {POLL_S * 1000:.0f} ms); /ws latency: just before `publish` to the alarm's first feed message; server \
histogram: ingest receive -> alarm transaction stored (quantiles interpolated within its buckets)
{notes}- machine: {cpu_name()}, {os.cpu_count()} CPUs; {platform.platform()}
- Python {platform.python_version()}, paho-mqtt {paho.mqtt.__version__}; {version([broker_binary(), "-h"])}; \
{version([redis_binary(), "--version"])}

{header}
{table}
"""
    append_results(section)


def broker_binary() -> str:
    from responsecentre.servers import find_binary

    return find_binary("mosquitto")


def redis_binary() -> str:
    from responsecentre.servers import find_binary

    return find_binary("redis-server")


if __name__ == "__main__":
    main()
