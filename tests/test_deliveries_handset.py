"""Handset pages through a real mosquitto (the production config, the centre's
`rc-notifier` account): the PUBACK is the receipt, and no PUBACK in time is a failure
the caller falls back from at once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from responsecentre.broker import NOTIFIER
from responsecentre.config import MqttUrl
from responsecentre.contract import page_topic
from responsecentre.deliveries import DeliverySettings, Notifiers, RetryPolicy, deliver_with_retries
from responsecentre.deliveries.base import DeliveryError
from responsecentre.deliveries.handset import HandsetNotifier, PageLink
from responsecentre.escalation.delivery import Channel, Contact, Outcome, PageBody, Receipt
from tests.servers import Mosquitto, running
from tests.test_deliveries_retry import delivery
from tests.waiting import until, until_sync


@contextlib.asynccontextmanager
async def page_link(broker: Mosquitto) -> AsyncIterator[PageLink]:
    link = PageLink(MqttUrl(broker.host, broker.port, NOTIFIER, broker.credentials[NOTIFIER]), "rc-notifier")
    link.start()
    try:
        await asyncio.wait_for(link.connected.wait(), 10)
        yield link
    finally:
        link.stop()


@contextlib.contextmanager
def handset(broker: Mosquitto, topic: str) -> Iterator[list[bytes]]:
    """A handset listening on `topic` (a harness account: the test is about the centre)."""
    received: list[bytes] = []
    subscribed: list[object] = []
    client = broker.client()
    client.on_message = lambda _c, _u, msg: received.append(bytes(msg.payload))
    client.on_subscribe = lambda *_: subscribed.append(True)
    client.subscribe(topic, qos=1)
    until_sync(lambda: subscribed, 10, f"SUBACK for {topic}")
    try:
        yield received
    finally:
        client.disconnect()
        client.loop_stop()


async def test_a_page_is_delivered_when_its_puback_is_back(mosquitto: Mosquitto, tenant: str) -> None:
    d = delivery(Channel.HANDSET, "n1", tenant=tenant)
    with handset(mosquitto, page_topic(tenant, "n1")) as received:
        async with page_link(mosquitto) as link:
            receipt = await HandsetNotifier(link).send(d)
        assert (receipt.outcome, receipt.channel, receipt.address, receipt.detail) == (
            Outcome.DELIVERED,
            Channel.HANDSET,
            "n1",
            "PUBACK",
        )
        await until(lambda: received, 10, "the page on the handset")
    assert [msgspec.json.decode(p, type=PageBody) for p in received] == [d.body]


async def test_a_page_nobody_is_subscribed_to_is_not_counted_delivered(mosquitto: Mosquitto, tenant: str) -> None:
    """mosquitto acks it with "No matching subscribers": the handset is off and has no
    session to keep it, so nobody would read it. The person's next channel goes instead."""
    d = delivery(Channel.HANDSET, "n2", tenant=tenant, fallback=(Contact(Channel.SMS, "+4791234567"),))
    async with page_link(mosquitto) as link:
        receipts: list[Receipt] = []
        final = await deliver_with_retries(
            HandsetNotifier(link), d, RetryPolicy(attempts=5), random.Random(0), on_attempt=receipts.append
        )
    assert receipts == [final]  # not retried on the same channel
    assert (final.outcome, final.detail) == (Outcome.FELL_BACK, "no handset subscribed")


@pytest.mark.parametrize("staff_id", ["n1/#", "+", "", "n1/../n2"])
async def test_a_staff_id_that_would_name_another_topic_is_refused(
    mosquitto: Mosquitto, tenant: str, staff_id: str
) -> None:
    async with page_link(mosquitto) as link:
        with pytest.raises(DeliveryError) as caught:
            await HandsetNotifier(link).send(delivery(Channel.HANDSET, staff_id, tenant=tenant))
    assert not caught.value.retryable and caught.value.detail == "invalid handset address"


async def test_a_broker_that_stops_answering_gives_no_receipt_in_time_and_the_caller_falls_back(
    tmp_path: Path, tenant: str
) -> None:
    """The broker is frozen (SIGSTOP): the TCP connection stays up, the page goes out, no
    PUBACK comes. The try ends at the receipt window, not the channel's own 10 s, and is
    not retried. paho still holds the page: once the broker wakes up it is delivered,
    late, which the docs say (a late answer is checked like any other)."""
    fallback = (Contact(Channel.SMS, "+4791234567"),)
    d = delivery(Channel.HANDSET, "n1", tenant=tenant, receipt_within_ms=500, fallback=fallback)
    with running(Mosquitto, tmp_path / "broker") as broker:
        assert broker.proc is not None
        with handset(broker, page_topic(tenant, "n1")) as received:
            async with page_link(broker) as link:
                notifiers = Notifiers.from_settings(DeliverySettings(), link=link)
                os.kill(broker.proc.pid, signal.SIGSTOP)
                try:
                    started = time.monotonic()
                    receipts: list[Receipt] = []
                    final = await deliver_with_retries(
                        notifiers.for_channel(Channel.HANDSET),
                        d,
                        RetryPolicy(attempts=5),
                        random.Random(0),
                        on_attempt=receipts.append,
                    )
                    took = time.monotonic() - started
                finally:
                    os.kill(broker.proc.pid, signal.SIGCONT)
                assert receipts == [final]
                assert (final.outcome, final.detail) == (Outcome.FELL_BACK, "no PUBACK within 500 ms")
                assert 0.45 < took < 2.0 and 450 <= final.duration_ms < 2_000
                await until(lambda: received, 10, "the late page")


async def test_a_broker_that_is_gone_fails_the_page_at_once(tmp_path: Path, tenant: str) -> None:
    with running(Mosquitto, tmp_path / "broker") as broker:
        async with page_link(broker) as link:
            broker.stop()
            await until(lambda: not link.connected.is_set(), 10, "the link saw the broker go")
            started = time.monotonic()
            with pytest.raises(DeliveryError) as caught:
                await HandsetNotifier(link).send(delivery(Channel.HANDSET, "n1", tenant=tenant))
            assert time.monotonic() - started < 0.5
    assert not caught.value.retryable and caught.value.detail == "broker link down"


async def test_publish_receipted_returns_the_brokers_reason_code(mosquitto: Mosquitto, tenant: str) -> None:
    topic = page_topic(tenant, "n3")
    async with page_link(mosquitto) as link:
        nobody = await link.publish_receipted(topic, b"{}", 5.0)
        with handset(mosquitto, topic):
            somebody = await link.publish_receipted(topic, b"{}", 5.0)
    assert (nobody.value, str(nobody)) == (0x10, "No matching subscribers")
    assert (somebody.value, somebody.is_failure) == (0, False)
