"""Hostile messages through the real broker: the centre stays up and accounts for each.

Hypothesis (fixed seed, a bounded budget) writes at least FUZZ_MESSAGES messages at QoS
0 and 1: random bytes, invalid UTF-8 in every string and in unknown fields, valid
non-ASCII text, deep nesting, huge numbers, NaN and Infinity, far-future and negative
timestamps, long and odd ids, extra topic levels and odd names, unknown tenants and
devices, retained events and empty payloads; then 1 MiB and 10 MiB payloads. A witness
subscriber counts what the broker delivered; the service must have stored, de-duplicated
or dead-lettered exactly that many, never have been down, and raise the next good
event's alarm within 2 s.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import redis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from responsecentre.contract import EVENT_TYPES
from tests.servers import Mosquitto, running
from tests.service import ApiAuth, ServiceProcess, metric_sum
from tests.waiting import until_sync

FUZZ_MESSAGES = 10_000
PER_EXAMPLE = 100

BAD_UTF8 = [b"\xc3\x28", b"\xff", b"\xed\xa0\x80", b"\xe2\x82", b"\xf0\x28\x8c\xbc", b"\xc0\xaf", b"\x80"]


def quoted(raw: bytes) -> bytes:
    return b'"' + raw + b'"'


text = st.text(max_size=24)  # any valid Unicode: non-ASCII, controls, emoji
json_text = text.map(lambda s: json.dumps(s, ensure_ascii=False).encode())
bad_text = st.tuples(text, st.sampled_from(BAD_UTF8), text).map(
    lambda t: quoted(json.dumps(t[0])[1:-1].encode() + t[1] + json.dumps(t[2])[1:-1].encode())
)
any_string = st.one_of(json_text, bad_text)
numbers = st.one_of(
    st.integers(-(2**70), 2**70).map(lambda n: str(n).encode()),
    st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"1e308", b"5e-324", b"-0"]),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: repr(f).encode()),
)
ids = st.one_of(
    st.integers(0, 10**6).map(lambda n: json.dumps(f"fz-{n}").encode()),
    any_string,
    st.text(min_size=60, max_size=200).map(lambda s: json.dumps(s).encode()),  # long
    numbers,
    st.sampled_from([b'""', b"true", b"null", b"[]", b"{}"]),
)
types = st.one_of(st.sampled_from(EVENT_TYPES).map(lambda t: json.dumps(t).encode()), any_string, numbers)
timestamps = st.one_of(
    st.integers(1_700_000_000_000, 1_900_000_000_000).map(lambda n: str(n).encode()),
    st.integers(-(2**63), 2**63).map(lambda n: str(n).encode()),  # negative, far future, huge
    st.datetimes(timezones=st.timezones()).map(lambda d: json.dumps(d.isoformat()).encode()),
    st.sampled_from([b'"0001-01-01T00:00:00Z"', b'"9999-12-31T23:59:59Z"', b'"2026-11-22T03:12:45.120Z"']),
    any_string,
)
leaf = st.one_of(any_string, numbers, st.sampled_from([b"true", b"null"]))
data = st.one_of(
    st.recursive(
        leaf, lambda inner: st.lists(inner, max_size=3).map(lambda xs: b"[" + b",".join(xs) + b"]"), max_leaves=4
    ),
    st.integers(1, 3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),  # deep nesting
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.dictionaries(st.text(max_size=8), leaf, max_size=4).map(
        lambda d: b"{" + b",".join(json.dumps(k).encode() + b":" + v for k, v in d.items()) + b"}"
    ),
)


@st.composite
def event_payload(draw: st.DrawFn) -> bytes:
    fields: list[tuple[bytes, bytes]] = []
    for name, strategy in ((b"id", ids), (b"type", types), (b"ts", timestamps)):
        if draw(st.integers(0, 9)):  # now and then a required field is missing
            fields.append((name, draw(strategy)))
    if draw(st.booleans()):
        fields.append((b"value", draw(st.one_of(numbers, any_string))))
    if draw(st.booleans()):
        fields.append((b"data", draw(data)))
    if draw(st.booleans()):  # an unknown field, often with invalid UTF-8
        fields.append((draw(st.sampled_from([b'"x"', b'"\xff"', b'"n\xc3\x28"'])), draw(any_string)))
    return b"{" + b",".join(k if k.startswith(b'"') else b'"' + k + b'"' + b":" + v for k, v in fields) + b"}"


def topic_for(tenant: str) -> st.SearchStrategy[str]:
    devices = st.sampled_from(["h1-btn", "h2-btn", "h3-fall", "h1-med"])
    odd = st.one_of(
        # Any name the broker lets through (it refuses control characters, surrogates and
        # non-characters in a topic by dropping the client: not our input to handle).
        st.text(
            st.characters(exclude_categories=("Cc", "Cs", "Co", "Cn"), exclude_characters="/+#"),
            min_size=1,
            max_size=30,
        ),
        st.sampled_from(["nobody", "dévice", "h1-btn.", "x" * 200, "-", "h1 btn"]),
    )
    return st.one_of(
        devices.map(lambda d: f"rc/v1/{tenant}/devices/{d}/events"),
        devices.map(lambda d: f"rc/v1/{tenant}/devices/{d}/status"),
        odd.map(lambda d: f"rc/v1/{tenant}/devices/{d}/events"),
        devices.map(lambda d: f"rc/v1/other-{tenant}/devices/{d}/events"),  # unknown tenant
        devices.map(lambda d: f"rc/v1/{tenant}/devices/{d}/events/extra"),  # extra level
        devices.map(lambda d: f"rc/v1/{tenant}/devices/{d}/nonsense"),
        devices.map(lambda d: f"rc/v1/{tenant}/devices/{d}+/events"),  # wildcards: refused client-side
    )


payloads = st.one_of(
    event_payload(),
    event_payload(),
    st.binary(max_size=300),
    st.just(b""),
    st.sampled_from([b"[]", b"null", b"1", b'"x"', b"{", b'{"online": true}', b'{"online": false, "battery": 999}']),
)


class Witness:
    """Counts every message the broker delivers under rc/v1/+/devices/#, as ingest sees them."""

    def __init__(self, broker: Mosquitto) -> None:
        self.count = 0
        self.markers: set[str] = set()  # ids of the marker events seen (see `marker`)
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = broker.client()  # a harness account: it reads what ingest reads
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.subscribe("rc/v1/+/devices/#", qos=1)
        assert self.subscribed.wait(5)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.count += 1
        for marker in ("fuzz-end", "good-after-fuzz"):
            if f'"id": "{marker}"'.encode() in msg.payload:
                self.markers.add(marker)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Health:
    """Polls /healthz every 100 ms in the background; records every failure."""

    def __init__(self, base_url: str) -> None:
        self.failures: list[str] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(base_url,), daemon=True)
        self._thread.start()

    def _run(self, base_url: str) -> None:
        with httpx.Client(base_url=base_url, timeout=2.0) as client:
            while not self._stop.wait(0.1):
                try:
                    if client.get("/healthz").status_code != 200:
                        self.failures.append("status")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self.polls += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def alarm_shows(api: httpx.Client, home: str, event_id: str) -> bool:
    """An open assistance alarm of `home` has `event_id` on its timeline (raised or joined)."""
    for alarm in api.get("/api/alarms").json()["alarms"]:
        if alarm["home_id"] == home and alarm["kind"] == "assistance":
            timeline = api.get(f"/api/alarms/{alarm['id']}").json()["timeline"]
            if any((e.get("detail") or {}).get("event") == event_id for e in timeline):
                return True
    return False


@pytest.fixture
def own_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    with running(Mosquitto, tmp_path / "mosquitto") as server:
        yield server


def test_hostile_messages_never_stop_the_centre_and_each_is_accounted_for(
    tmp_path: Path, tenant: str, own_mosquitto: Mosquitto, redis_url: str
) -> None:
    svc = ServiceProcess(tenant=tenant, workdir=tmp_path / "svc", broker=own_mosquitto, redis_url=redis_url)
    svc.start()
    witness = Witness(own_mosquitto)
    health = Health(svc.base_url)
    # A harness account, not a device's: the fuzz is for ingest, past any ACL (which would
    # refuse most of these topics at the broker; tests/test_broker_security.py tests that).
    device = own_mosquitto.client(inflight=200)
    published = {"qos0": 0, "qos1": 0, "refused_by_client": 0}

    @seed(20261123)
    @settings(
        max_examples=FUZZ_MESSAGES // PER_EXAMPLE + 20,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        st.lists(
            st.tuples(topic_for(tenant), payloads, st.sampled_from([0, 1]), st.booleans()),
            min_size=PER_EXAMPLE,
            max_size=PER_EXAMPLE,
        )
    )
    def publish(messages: list[tuple[str, bytes, int, bool]]) -> None:
        infos = []
        for topic, payload, qos, retain in messages:
            try:
                infos.append(device.publish(topic, payload, qos=qos, retain=retain and qos == 1))
            except ValueError:  # a wildcard in a topic name: paho will not send it
                published["refused_by_client"] += 1
                continue
            published[f"qos{qos}"] += 1
        for info in infos:
            info.wait_for_publish(10)

    try:
        publish()
        sent = published["qos0"] + published["qos1"]
        assert sent >= FUZZ_MESSAGES, published
        # The payloads past the contract's size: 1 MiB reaches us (oversized), 10 MiB is
        # over the broker's packet limit (it drops the sender); neither may hurt us.
        for size in (1 << 20, 10 << 20):
            big = own_mosquitto.client()
            big.publish(f"rc/v1/{tenant}/devices/h1-btn/events", b"{" + b" " * size + b"}", qos=1).wait_for_publish(10)
            big.disconnect()
            big.loop_stop()

        with httpx.Client(base_url=svc.base_url, auth=ApiAuth("operator"), timeout=5.0) as api:

            def marker(event_id: str) -> float:
                """Send a good button press after everything else from this connection; the
                broker and ingest keep its order, so once its alarm shows, all before it are in.
                Returns the seconds from publish to the alarm."""
                payload = json.dumps({"id": event_id, "type": "alarm.button", "ts": int(time.time() * 1000)})
                started = time.monotonic()
                device.publish(f"rc/v1/{tenant}/devices/h3-btn/events", payload, qos=1).wait_for_publish(5)
                until_sync(lambda: alarm_shows(api, "h3", event_id), 60, f"the alarm of {event_id}")
                took = time.monotonic() - started
                until_sync(lambda: event_id in witness.markers, 10, f"the witness seeing {event_id}")
                return took

            marker("fuzz-end")
            text = api.get("/metrics").text
            received = metric_sum(text, "responsecentre_mqtt_messages_total{")
            assert received == witness.count, (received, witness.count, published)
            stored = metric_sum(text, "responsecentre_events_stored_total{")
            duplicate = metric_sum(text, "responsecentre_events_duplicate_total{")
            rejected = metric_sum(text, "responsecentre_events_rejected_total{")
            statuses = metric_sum(text, "responsecentre_device_statuses_total ")
            assert stored + duplicate + rejected + statuses == received, text
            assert metric_sum(text, 'responsecentre_events_rejected_total{reason="internal"}') == 0
            r = redis.Redis.from_url(redis_url)
            try:
                assert r.xlen("rc:deadletters") == rejected
                # A change of a device's online flag is logged too (device.online/offline).
                changes = metric_sum(text, "responsecentre_device_status_changes_total{")
                assert r.xlen(f"rc:{tenant}:events") == stored + changes
            finally:
                r.close()
            # The next good event becomes an alarm (or joins the home's open one) within 2 s.
            assert marker("good-after-fuzz") < 2.0
        assert health.polls > 10 and not health.failures, health.failures
        assert svc.proc is not None and svc.proc.poll() is None, svc.log_tail()
    finally:
        health.stop()
        device.disconnect()
        device.loop_stop()
        witness.close()
        svc.stop()
