"""The broker is closed: accounts, ACLs, client ids bound to accounts, TLS, reloads.

A real mosquitto with the config `responsecentre.broker` generates for a directory of two
tenants (the harness accounts of tests/servers.py come on top, as the "ingest-side"
observer: it reads what `rc-ingest` reads). Each attack from the issue is made for real and
must be refused, and the centre (the service, on its real accounts) must not lose an event.

"Never receives" is shown without sleeping: the forbidden messages are published first,
then one the subscriber may receive. mosquitto routes a message to its subscribers before
it acks it, and delivers to each subscriber in order, so once the allowed one has arrived,
every earlier one that was going to arrive has.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import redis.asyncio as aioredis
import yaml
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from responsecentre import broker, cli, contract
from responsecentre.broker import (
    INGEST,
    NOTIFIER,
    REPLIES,
    SIMULATOR,
    device_username,
    handset_username,
    integrator_username,
    load_credentials,
    replies_topic,
)
from responsecentre.directory import build_directory
from responsecentre.servers import free_port
from responsecentre.sim.homes import build_homes
from responsecentre.sim.mqtt import run_simulator, sentinel_topic
from responsecentre.sim.simulator import Simulator
from tests.servers import Mosquitto, running
from tests.service import ROOT, Publisher, ServiceProcess, homes_doc, staff_doc
from tests.waiting import until, until_sync

A, B = "asker", "baerum"  # two tenants; both have homes h1-h3 (devices h1-btn, ...) and staff n1, tl1
NOT_AUTHORIZED = "Not authorized"


def two_tenants() -> tuple[dict[str, Any], dict[str, Any]]:
    homes = {"tenants": {**homes_doc(A)["tenants"], **homes_doc(B)["tenants"]}}
    staff = {"tenants": {**staff_doc(A)["tenants"], **staff_doc(B)["tenants"]}}
    return homes, staff


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """This module's broker (it overrides the suite's): two tenants, the simulator's
    account, a TLS listener, and the harness accounts."""
    with running(
        Mosquitto,
        tmp_path_factory.mktemp("secure-mosquitto"),
        directory=build_directory(*two_tenants()),
        simulator=True,
        tls_port=free_port(),
    ) as server:
        yield server


@pytest.fixture
def tenant() -> str:
    """The service fixture's tenant: one the broker's directory knows."""
    return A


def device(t: str, d: str) -> str:
    return device_username(t, d)


class Inbox:
    """A subscriber that keeps what it receives, and the broker's SUBACK answers."""

    def __init__(self, broker_: Mosquitto, account: tuple[str, str] | None, *filters: str, protocol: int = 5) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.granted: list[ReasonCode] = []
        self.client = broker_.client(account, protocol=mqtt.MQTTv5 if protocol == 5 else mqtt.MQTTv311)
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload), bool(m.retain)))
        self.client.on_subscribe = lambda _c, _u, _mid, reasons, _p: self.granted.extend(reasons)
        self.client.subscribe([(f, 1) for f in filters])
        until_sync(lambda: len(self.granted) == len(filters), 10, "the SUBACK")

    def topics(self) -> list[str]:
        """What arrived live (not the retained messages that came with the subscription:
        other tests of this module leave retained statuses, as real devices do)."""
        return [t for t, _, retained in self.messages if not retained]

    def retained(self) -> list[str]:
        return [t for t, _, retained in self.messages if retained]

    def wait_for(self, topic: str, payload: bytes) -> None:
        until_sync(lambda: any(m[:2] == (topic, payload) for m in self.messages), 10, f"{topic} arriving")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def publishers(broker_: Mosquitto, *usernames: str) -> Iterator[dict[str, Publisher]]:
    """A connected publisher per account (an account has one connection at a time)."""
    made: dict[str, Publisher] = {}
    try:
        for name in usernames:
            made[name] = Publisher(broker_, broker_.account(name))
        yield made
    finally:
        for pub in made.values():
            pub.close()


def connack(broker_: Mosquitto, username: str | None, password: str | None, protocol: int) -> ReasonCode:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=protocol)
    if username is not None:
        client.username_pw_set(username, password)
    answers: list[ReasonCode] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: answers.append(reason)
    client.connect(broker_.host, broker_.port)
    client.loop_start()
    try:
        return until_sync(lambda: answers[0] if answers else None, 10, f"a CONNACK for {username}")
    finally:
        client.disconnect()
        client.loop_stop()


# -- who may connect ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["mqtt5", "mqtt311"])
def test_anonymous_made_up_and_wrong_password_clients_are_refused(mosquitto: Mosquitto, protocol: int) -> None:
    dev = device(A, "h1-btn")
    refused = {
        "anonymous": connack(mosquitto, None, None, protocol),
        "made-up user": connack(mosquitto, "someone", "secret", protocol),
        "wrong password": connack(mosquitto, INGEST, "guess", protocol),
        "another device's password": connack(mosquitto, dev, mosquitto.credentials[device(A, "h2-btn")], protocol),
    }
    assert {why: reason.is_failure for why, reason in refused.items()} == dict.fromkeys(refused, True), refused
    assert not connack(mosquitto, dev, mosquitto.credentials[dev], protocol).is_failure


# -- devices speak only for themselves -----------------------------------------------------------


def test_a_device_cannot_publish_as_another_device(mosquitto: Mosquitto) -> None:
    """Impersonation: device h1-btn of asker publishing on another device's topics (in its
    tenant, in another tenant with the same device id, or a topic outside the contract) is
    refused with "not authorized", and the ingest-side subscriber never gets it."""
    observer = Inbox(mosquitto, None, contract.DEVICES_SUBSCRIPTION)
    me = device(A, "h1-btn")
    v3 = mosquitto.client(mosquitto.account(device(A, "h3-btn")), protocol=mqtt.MQTTv311)
    try:
        with publishers(mosquitto, me) as pub:
            forged = [
                contract.events_topic(A, "h2-btn"),
                contract.events_topic(B, "h1-btn"),
                contract.status_topic(A, "h2-btn"),
                contract.events_topic(A, "h1-btn") + "/extra",
                f"rc/v1/{A}/devices/h1-btn/nonsense",
            ]
            answers = {topic: str(pub[me].raw(topic, b'{"forged": true}')) for topic in forged}
            assert answers == dict.fromkeys(forged, NOT_AUTHORIZED)
            # MQTT 3.1.1 has no reason codes: the broker acks and drops.
            v3.publish(contract.events_topic(A, "h2-btn"), b'{"forged": "v3"}', qos=1).wait_for_publish(10)
            own = contract.encode_event("own-1", "alarm.button", 1_795_317_165_120)
            assert not pub[me].raw(contract.events_topic(A, "h1-btn"), own).is_failure
            observer.wait_for(contract.events_topic(A, "h1-btn"), own)
        assert observer.topics() == [contract.events_topic(A, "h1-btn")], observer.messages
    finally:
        v3.disconnect()
        v3.loop_stop()
        observer.close()


# -- nobody eavesdrops ---------------------------------------------------------------------------


def test_subscribing_to_everything_yields_only_what_the_account_may_read(mosquitto: Mosquitto) -> None:
    """A device, a handset and an integrator each subscribe to `rc/#` and `#`; the centre
    then publishes pages, alarm states and a command, and devices their events and statuses.
    Each receives exactly what its ACL grants, nothing else."""
    me, nurse, integ = device(A, "h1-btn"), handset_username(A, "n1"), integrator_username(A)
    inboxes = {name: Inbox(mosquitto, mosquitto.account(name), "rc/#", "#") for name in (me, nurse, integ)}
    forbidden = [
        (NOTIFIER, contract.page_topic(A, "tl1")),
        (NOTIFIER, contract.page_topic(B, "n1")),
        (NOTIFIER, contract.alarm_topic(B, "b-1")),
        (NOTIFIER, f"rc/v1/{B}/devices/h1-btn/commands"),
        (device(A, "h2-btn"), contract.events_topic(A, "h2-btn")),
        (device(B, "h1-btn"), contract.status_topic(B, "h1-btn")),
    ]
    allowed = {  # published last, each to be received by exactly one of the subscribers
        me: (NOTIFIER, f"rc/v1/{A}/devices/h1-btn/commands"),
        nurse: (NOTIFIER, contract.page_topic(A, "n1")),
        integ: (NOTIFIER, contract.alarm_topic(A, "a-1")),
    }
    senders = {NOTIFIER, device(A, "h2-btn"), device(B, "h1-btn")}
    try:
        with publishers(mosquitto, *senders) as pub:
            for sender, topic in forbidden:
                assert not pub[sender].raw(topic, b"{}").is_failure, topic  # the sender may: only readers are limited
            status = contract.status_topic(A, "h2-btn")  # the integrator of A reads A's statuses
            assert not pub[device(A, "h2-btn")].raw(status, b'{"online": true}').is_failure
            for sender, topic in allowed.values():
                assert not pub[sender].raw(topic, b"{}").is_failure
        for name, (_, topic) in allowed.items():
            inboxes[name].wait_for(topic, b"{}")
        # (A copy per matching subscription: `rc/#` and `#` overlap.)
        assert set(inboxes[me].topics()) == {allowed[me][1]}
        assert set(inboxes[nurse].topics()) == {allowed[nurse][1]}
        assert set(inboxes[integ].topics()) == {status, allowed[integ][1]}
        # What was retained before they subscribed: also only theirs to read.
        assert set(inboxes[me].retained()) <= {contract.status_topic(A, "h1-btn")}
        assert inboxes[nurse].retained() == []
        assert all(mqtt.topic_matches_sub(contract.status_topic(A, "+"), t) for t in inboxes[integ].retained())
    finally:
        for inbox in inboxes.values():
            inbox.close()


# -- only the centre pages and publishes alarm states -------------------------------------------


def test_forged_pages_alarm_states_and_statuses_are_refused_and_nothing_is_retained(mosquitto: Mosquitto) -> None:
    nurse_inbox = Inbox(mosquitto, mosquitto.account(handset_username(A, "n1")), contract.page_topic(A, "n1"))
    forgers = [device(A, "h1-btn"), handset_username(A, "tl1"), integrator_username(A), device(B, "h1-btn")]
    forged = [
        (contract.page_topic(A, "n1"), False),
        (contract.alarm_topic(A, "forged"), True),
        (contract.status_topic(A, "h2-btn"), True),
        (replies_topic(A, "n1"), False),
        (f"rc/v1/{A}/devices/h2-btn/commands", False),
    ]
    try:
        with publishers(mosquitto, *forgers) as pub:
            answers = {
                (who, topic): str(pub[who].raw(topic, b'{"forged": true}', retain=retain))
                for who in forgers
                for topic, retain in forged
            }
        assert answers == dict.fromkeys(answers, NOT_AUTHORIZED)
        # A later subscriber gets no retained forgery: retained messages come with the
        # subscription, before the centre's marker below.
        late = Inbox(mosquitto, None, f"rc/v1/{A}/alarms/#", contract.status_topic(A, "h2-btn"), f"rc/v1/{A}/staff/#")
        try:
            with publishers(mosquitto, NOTIFIER) as pub:
                assert not pub[NOTIFIER].raw(contract.alarm_topic(A, "marker"), b"{}").is_failure
                assert not pub[NOTIFIER].raw(contract.page_topic(A, "n1"), b'{"real": true}').is_failure
            late.wait_for(contract.page_topic(A, "n1"), b'{"real": true}')
            assert late.topics() == [contract.alarm_topic(A, "marker"), contract.page_topic(A, "n1")], late.messages
            assert not [m for m in late.messages if m[1] == b'{"forged": true}'], late.messages
        finally:
            late.close()
        nurse_inbox.wait_for(contract.page_topic(A, "n1"), b'{"real": true}')
        assert [p for _, p, retained in nurse_inbox.messages if not retained] == [b'{"real": true}']
    finally:
        nurse_inbox.close()


def test_a_handset_reads_only_its_own_pages_and_writes_only_its_own_replies(mosquitto: Mosquitto) -> None:
    me = handset_username(A, "n1")
    pages = Inbox(mosquitto, mosquitto.account(me), "rc/v1/+/staff/+/pages")
    replies = Inbox(mosquitto, mosquitto.account(REPLIES), "rc/v1/+/staff/+/replies")  # the centre's reply desk
    try:
        with publishers(mosquitto, NOTIFIER) as pub:
            for topic in (contract.page_topic(A, "tl1"), contract.page_topic(B, "n1")):  # B's n1: the same staff id
                pub[NOTIFIER].raw(topic, b'{"not": "mine"}')
            pub[NOTIFIER].raw(contract.page_topic(A, "n1"), b'{"mine": true}')
        pages.wait_for(contract.page_topic(A, "n1"), b'{"mine": true}')
        assert pages.topics() == [contract.page_topic(A, "n1")]
        with publishers(mosquitto, me) as pub:
            assert str(pub[me].raw(replies_topic(A, "tl1"), b'{"accept": true}')) == NOT_AUTHORIZED
            assert str(pub[me].raw(replies_topic(B, "n1"), b'{"accept": true}')) == NOT_AUTHORIZED
            assert not pub[me].raw(replies_topic(A, "n1"), b'{"accept": true}').is_failure
        replies.wait_for(replies_topic(A, "n1"), b'{"accept": true}')
        assert replies.topics() == [replies_topic(A, "n1")]
    finally:
        pages.close()
        replies.close()


def test_a_handset_reads_only_its_own_reply_outcomes_and_only_the_centre_writes_them(mosquitto: Mosquitto) -> None:
    """The outcome of a reply (taken, or why not) goes to the replier alone; nobody but the
    centre's notifier can forge one, and the reply desk's account reads replies only."""
    me = handset_username(A, "n1")
    with publishers(mosquitto, me, REPLIES, handset_username(A, "tl1")) as pub:  # before `me` subscribes:
        for forger in (me, REPLIES, handset_username(A, "tl1")):  # one account is one connection
            answer = str(pub[forger].raw(contract.reply_outcome_topic(A, "n1"), b'{"forged": true}'))
            assert answer == NOT_AUTHORIZED, forger
        assert str(pub[REPLIES].raw(contract.page_topic(A, "n1"), b"{}")) == NOT_AUTHORIZED
    outcomes = Inbox(mosquitto, mosquitto.account(me), "rc/v1/+/staff/+/replies/outcome", "rc/#")
    try:
        with publishers(mosquitto, NOTIFIER) as pub:
            pub[NOTIFIER].raw(contract.reply_outcome_topic(A, "tl1"), b'{"not": "mine"}')
            pub[NOTIFIER].raw(contract.reply_outcome_topic(A, "n1"), b'{"mine": true}')
        outcomes.wait_for(contract.reply_outcome_topic(A, "n1"), b'{"mine": true}')
        assert set(outcomes.topics()) == {contract.reply_outcome_topic(A, "n1")}
        assert not [m for m in outcomes.messages if m[1] != b'{"mine": true}']
    finally:
        outcomes.close()


def test_an_integrator_receives_its_own_tenants_alarm_states_only(mosquitto: Mosquitto) -> None:
    integ = integrator_username(A)
    inbox = Inbox(mosquitto, mosquitto.account(integ), "rc/v1/+/alarms/#", "rc/v1/+/devices/+/status")
    try:
        with publishers(mosquitto, NOTIFIER, device(B, "h2-btn"), device(A, "h3-btn")) as pub:
            pub[NOTIFIER].raw(contract.alarm_topic(B, "b-2"), b'{"tenant": "B"}')
            pub[device(B, "h2-btn")].raw(contract.status_topic(B, "h2-btn"), b'{"online": true}')
            pub[device(A, "h3-btn")].raw(contract.status_topic(A, "h3-btn"), b'{"online": true}')
            pub[NOTIFIER].raw(contract.alarm_topic(A, "a-2"), b'{"tenant": "A"}')
        inbox.wait_for(contract.alarm_topic(A, "a-2"), b'{"tenant": "A"}')
        assert inbox.topics() == [contract.status_topic(A, "h3-btn"), contract.alarm_topic(A, "a-2")]
    finally:
        inbox.close()


# -- the centre's session cannot be taken over ---------------------------------------------------

CONNECTED_AS = re.compile(r"New client connected from \S+ as (\S+) \(p\d, c\d, k\d+, u'([^']*)'\)")


async def test_naming_the_centres_client_id_takes_over_nothing(
    service: ServiceProcess, mosquitto: Mosquitto, redis_url: str
) -> None:
    """While devices publish N events, other accounts connect again and again with the
    centre's client ids (clean start, MQTT 5 and 3.1.1, plain and TLS), which on an open
    broker discarded the centre's session and acked its events. The broker names each
    client after its account instead: the centre is never disconnected, stays ready, and
    stores every event."""
    n = 300
    attackers = [mosquitto.harness(), mosquitto.account(device(A, "h1-btn")), mosquitto.account(integrator_username(A))]
    attempts: list[str] = []
    done = threading.Event()

    def attack() -> None:
        while not done.is_set():
            for account in attackers:
                for client_id in (INGEST, NOTIFIER, "responsecentre-ingest"):
                    for protocol, tls in ((mqtt.MQTTv5, False), (mqtt.MQTTv311, False), (mqtt.MQTTv5, True)):
                        client = mosquitto.client(account, client_id=client_id, protocol=protocol, tls=tls)
                        attempts.append(client_id)
                        client.disconnect()
                        client.loop_stop()

    not_ready: list[int] = []
    polls = [0]

    def poll_ready() -> None:
        with httpx.Client(base_url=service.base_url, timeout=5.0) as http:
            while not done.wait(0.05):
                status = http.get("/readyz").status_code
                polls[0] += 1
                if status != 200:
                    not_ready.append(status)

    def publish() -> None:
        with publishers(mosquitto, device(A, "h2-btn")) as pub:
            for i in range(n):
                pub[device(A, "h2-btn")].event(A, "h2-btn", f"takeover-{i}", "device.heartbeat")
                if i % 50 == 0:  # let the attackers and the poller in between
                    want = (i // 10 + 1, i // 50 + 1)
                    until_sync(lambda w=want: len(attempts) >= w[0] and polls[0] >= w[1], 30, "attacks under way")

    threads = [threading.Thread(target=attack, daemon=True), threading.Thread(target=poll_ready, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        await asyncio.to_thread(publish)
        client = aioredis.Redis.from_url(redis_url)
        try:

            async def stored() -> int | None:
                count = int(await client.xlen(f"rc:{A}:events"))
                return count if count >= n else None

            assert await until(stored, 20, f"all {n} events stored") == n
        finally:
            await client.aclose()
    finally:
        done.set()
        for thread in threads:
            thread.join(30)
    assert len(attempts) >= 18, attempts
    assert polls[0] > 5 and not_ready == [], not_ready
    assert "disconnected from the broker" not in service.log_path.read_text(), service.log_tail()
    named = CONNECTED_AS.findall(mosquitto.log_path.read_text())
    assert named and all(client_id == user for client_id, user in named), [x for x in named if x[0] != x[1]]


async def test_the_notifiers_link_returns_only_once_the_broker_took_the_page(mosquitto: Mosquitto) -> None:
    """The outbox counts a page delivered when `PublishLink.publish` returns, which is on
    the broker's PUBACK. A refusal (an account whose ACL does not allow it) and a dead link
    raise instead, so the entry is retried and in the end parked, where it shows."""
    from responsecentre.config import MqttUrl
    from responsecentre.ingest.mqtt import PublishLink

    def as_account(name: str) -> MqttUrl:
        return MqttUrl(mosquitto.host, mosquitto.port, name, mosquitto.credentials[name])

    inbox = Inbox(mosquitto, mosquitto.account(handset_username(A, "n1")), contract.page_topic(A, "n1"))
    links = {
        "centre": PublishLink(as_account(NOTIFIER), "any-client-id"),
        "device": PublishLink(as_account(device(A, "h1-btn")), "any-client-id"),
        "dead": PublishLink(MqttUrl("127.0.0.1", free_port(), NOTIFIER, "x"), "any-client-id"),
    }
    for link in links.values():
        link.start()
    try:
        await asyncio.wait_for(links["centre"].connected.wait(), 10)
        await asyncio.wait_for(links["device"].connected.wait(), 10)
        page = contract.page_topic(A, "n1")
        await links["centre"].publish(page, b'{"page": 1}')
        with pytest.raises(PermissionError, match="Not authorized"):
            await links["device"].publish(page, b'{"page": "forged"}')
        with pytest.raises(ConnectionError):
            await links["dead"].publish(page, b'{"page": 2}')
        await asyncio.to_thread(inbox.wait_for, page, b'{"page": 1}')
        assert [p for _, p, _ in inbox.messages] == [b'{"page": 1}']
    finally:
        for link in links.values():
            link.stop()
        inbox.close()


# -- TLS -----------------------------------------------------------------------------------------


def test_tls_works_with_the_generated_ca_and_fails_without_it(mosquitto: Mosquitto, tmp_path: Path) -> None:
    me = mosquitto.account(device(A, "h3-btn"))
    client = mosquitto.client(me, tls=True)
    try:
        payload = contract.encode_event("tls-1", "device.heartbeat", 1_795_317_165_120)
        info = client.publish(contract.events_topic(A, "h3-btn"), payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()
    cert = x509.load_pem_x509_certificate((mosquitto.ca_path.parent / "server.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(n.value) for n in names} >= {"127.0.0.1", "::1", "localhost"}

    other = broker.BrokerFiles(tmp_path)  # a CA that did not sign this broker's certificate
    broker.ensure_tls(other)
    assert mosquitto.tls_port is not None
    for ca in (None, other.ca_cert):  # the system's CAs, then a stranger's
        stranger = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        stranger.username_pw_set(*me)
        stranger.tls_set(ca_certs=None if ca is None else str(ca))
        with pytest.raises(ssl.SSLCertVerificationError):
            stranger.connect("localhost", mosquitto.tls_port)
    # By name, as the certificate says, with the right CA.
    named = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    named.username_pw_set(*me)
    named.tls_set(ca_certs=str(mosquitto.ca_path))
    named.connect("localhost", mosquitto.tls_port)
    named.disconnect()


# -- the simulator's account ----------------------------------------------------------------------


def test_the_simulator_publishes_on_its_own_account_and_a_device_cannot_run_it(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    homes, _ = two_tenants()
    catalog = yaml.safe_load((ROOT / "devices" / "catalog.yaml").read_text())
    sim_homes = build_homes(homes, catalog)
    observer = Inbox(mosquitto, None, contract.EVENTS_SUBSCRIPTION, "rc/v1/+/simulator/status")
    try:
        stats = run_simulator(
            mosquitto.url,
            sim_homes,
            7,
            600.0,
            1.0,
            600.0,
            None,
            log=lambda _: None,
            account=mosquitto.account(SIMULATOR),
        )
        assert stats.events > 20 and stats.failed == 0 and stats.refused == 0
        assert stats.acked == stats.published
        until_sync(lambda: len([t for t in observer.topics() if t.endswith("/events")]) >= stats.events, 10, "events")
        assert sentinel_topic(A) in observer.topics()
        # A device's own account may run the simulator only for itself: the rest is refused.
        stats = run_simulator(
            mosquitto.url, sim_homes[:1], 7, 600.0, 0.5, 600.0, None, log=lambda _: None,
            account=mosquitto.account(device(A, "h1-btn")),
        )  # fmt: skip
        assert stats.refused > 0 and stats.acked == stats.published
    finally:
        observer.close()


def test_the_simulator_account_grants_exactly_what_the_simulator_publishes() -> None:
    homes, _ = two_tenants()
    sim_homes = build_homes(homes, yaml.safe_load((ROOT / "devices" / "catalog.yaml").read_text()))
    account = broker.simulator_account([A, B])
    assert all(g.access == broker.Access.WRITE for g in account.grants)  # it subscribes to nothing
    sim = Simulator(sim_homes, 3, 1_795_317_165_120, 600.0, events_per_hour_per_home=60)
    topics = {m.topic for m in sim.step(1_795_317_165_120 + 60_000)} | {sentinel_topic(A), sentinel_topic(B)}
    assert any(t.endswith("/status") for t in topics) and any(t.endswith("/events") for t in topics)
    for topic in topics:
        assert any(mqtt.topic_matches_sub(g.topic, topic) for g in account.grants), topic
    for grant in account.grants:  # and each grant is used
        assert any(mqtt.topic_matches_sub(grant.topic, t) for t in topics), grant


# -- regenerating: devices added and removed ------------------------------------------------------


def test_a_device_added_then_reloaded_connects_and_a_removed_one_is_shut_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    homes, staff = homes_doc(A), staff_doc(A)
    with running(Mosquitto, tmp_path / "broker", directory=build_directory(homes, staff)) as own:
        new, kept, doomed = device(A, "h9-btn"), device(A, "h1-btn"), device(A, "h2-btn")
        kept_password = own.credentials[kept]
        with pytest.raises(ConnectionRefusedError):
            own.client((new, "guess"))
        staying = own.client(own.account(kept))
        leaving = own.client(own.account(doomed))
        try:
            # An operator adds a home with a device and applies it with the CLI.
            homes["tenants"][A]["homes"].append(
                {"id": "h9", "zone": "north", "devices": [{"id": "h9-btn", "kind": "safety_alarm"}]}
            )
            (tmp_path / "homes.yaml").write_text(yaml.safe_dump(homes))
            (tmp_path / "staff.yaml").write_text(yaml.safe_dump(staff))
            code = cli.main(
                ["broker", "config", "--out", str(own.workdir), "--homes", str(tmp_path / "homes.yaml"),
                 "--staff", str(tmp_path / "staff.yaml"), "--port", str(own.port), "--reload"]
            )  # fmt: skip
            assert code == 0, capsys.readouterr().err
            assert "told to reload" in capsys.readouterr().out
            credentials = load_credentials(own.credentials_path)
            assert credentials[kept] == kept_password  # provisioned devices keep their password
            arrived = until_sync(lambda: _connects(own, (new, credentials[new])), 10, "the new device connecting")
            arrived.disconnect()
            arrived.loop_stop()
            # A device removed from the directory: disconnected at once, refused from now on.
            homes["tenants"][A]["homes"][1]["devices"] = [{"id": "h2-fall", "kind": "fall_sensor"}]
            own.reload(build_directory(homes, staff))
            until_sync(lambda: not leaving.is_connected(), 10, "the removed device disconnected")
            assert doomed not in load_credentials(own.credentials_path)
            with pytest.raises(ConnectionRefusedError):
                own.client((doomed, credentials[doomed]))
            assert staying.is_connected()
        finally:
            for client in (staying, leaving):
                client.disconnect()
                client.loop_stop()
    # With no broker running on the directory, --reload says so.
    assert cli.main(["broker", "config", "--out", str(tmp_path / "nothing"), "--reload"]) == 1
    assert "not reloaded" in capsys.readouterr().err


def _connects(own: Mosquitto, account: tuple[str, str]) -> mqtt.Client | None:
    with contextlib.suppress(ConnectionRefusedError):
        return own.client(account)
    return None


# -- the files ------------------------------------------------------------------------------------


def test_the_generated_files_hold_hashes_and_scoped_grants_only(tmp_path: Path) -> None:
    import base64
    import hashlib

    directory = build_directory(*two_tenants())
    accounts = broker.directory_accounts(directory)
    config = broker.write_config(tmp_path, accounts, tls_port=free_port())
    files = config.files
    for path in (files.credentials, files.passwd, files.acl, files.ca_key, files.server_key):
        assert path.stat().st_mode & 0o777 == 0o600, path
    lines = dict(line.split(":", 1) for line in files.passwd.read_text().splitlines())
    assert set(lines) == set(config.credentials) == {a.username for a in accounts}
    public = files.passwd.read_text() + files.acl.read_text() + files.conf.read_text()
    for name, password in config.credentials.items():
        assert password not in public
        _, _, rounds, salt, digest = lines[name].split("$")  # mosquitto 2.0's $7$: PBKDF2-SHA512
        assert hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(rounds), 64) == (
            base64.b64decode(digest)
        )
    assert (
        f"user {device(A, 'h1-btn')}\n"
        + (
            f"topic write rc/v1/{A}/devices/h1-btn/events\n"
            f"topic readwrite rc/v1/{A}/devices/h1-btn/status\n"
            f"topic read rc/v1/{A}/devices/h1-btn/commands\n"
        )
        in files.acl.read_text()
    )
    conf = files.conf.read_text()
    assert "allow_anonymous false" in conf and conf.count("use_username_as_clientid true") == 2
    # Regenerating keeps the passwords of the accounts that remain, drops the others.
    fewer = build_directory(homes_doc(A), staff_doc(A))
    again = broker.write_config(tmp_path, broker.directory_accounts(fewer))
    assert again.credentials == {k: v for k, v in config.credentials.items() if k in again.credentials}
    assert not any(B in name for name in again.credentials)
    assert B not in files.acl.read_text()
    if os.geteuid() == 0:  # a rewritten file keeps its owner (the broker's user must still read it)
        os.chown(files.passwd, 4321, 4321)
        broker.write_config(tmp_path, broker.directory_accounts(fewer))
        assert (files.passwd.stat().st_uid, files.passwd.stat().st_gid) == (4321, 4321)
    # An id that would widen a grant or inject an ACL line is refused.
    for bad in ("h1+", "#", "a/b", "x\ntopic readwrite #", ""):
        with pytest.raises(ValueError):
            broker.device_account(A, bad)
    with pytest.raises(ValueError):
        broker.check_accounts([broker.Account("a b", ())])
