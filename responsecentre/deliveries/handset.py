"""Handset pages over MQTT: `rc/v1/{tenant}/staff/{staff_id}/pages`, QoS 1.

The receipt is the broker's PUBACK, waited for no longer than the delivery's receipt
window. Every failure here is final for this channel (`retryable=False`): the handset's
fallback is the person's next channel, not the same broker again, so the caller moves on
at once. That covers:

- no PUBACK in time (a broker that hangs, a link that dropped mid-flight);
- the link is down (`ConnectionError`);
- the broker refused the publish (a PUBACK reason code >= 0x80, e.g. "not authorized");
- the broker took it but has nobody to give it to ("No matching subscribers", 0x10):
  the handset is not connected and has no session that would keep the page, so nobody
  would ever read it. `PublishLink.publish` counts that as delivered; we do not.

`PageLink` is `ingest.mqtt.PublishLink` with a publish that waits as long as it is told
(PublishLink's own wait is a fixed PUBACK_TIMEOUT_S) and returns the broker's reason code.

A page given up on may still leave paho's queue later (paho keeps a QoS 1 message until
its PUBACK, and resends it after a reconnect), so a handset can see a page after its
fallback went out; the reply check (only the paged person, once, while the step is live)
makes a late answer harmless.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from responsecentre.contract import page_topic
from responsecentre.deliveries.base import DeliveryError, Monotonic, delivered, elapsed_ms, send_timeout_s
from responsecentre.escalation.delivery import Channel, Delivery, PageBody, Receipt
from responsecentre.ingest.mqtt import PublishLink

TIMEOUT_S = 10.0  # when a delivery has no receipt window of its own
NO_MATCHING_SUBSCRIBERS = 0x10
_TOPIC_UNSAFE = frozenset("/+#\0")


class PageLink(PublishLink):
    """The notifier's MQTT connection (account `rc-notifier`), with a receipted publish."""

    async def publish_receipted(self, topic: str, payload: bytes, timeout_s: float) -> ReasonCode:
        """Publish at QoS 1 and return the PUBACK's reason code; `ConnectionError` when the
        link is down, `TimeoutError` when no PUBACK comes within `timeout_s`."""
        if not self.connected.is_set():
            raise ConnectionError("the notifier is not connected to the broker")
        info = self._client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"publish failed: {mqtt.error_string(info.rc)}")
        # Registered before the first await, so `_settle` (run in the event loop) finds it.
        future: asyncio.Future[ReasonCode] = self._loop.create_future()
        self._waiting[info.mid] = future
        try:
            async with asyncio.timeout(timeout_s):
                return await future
        finally:
            self._waiting.pop(info.mid, None)


def encode_page(body: PageBody) -> bytes:
    return msgspec.json.encode(body)


class HandsetNotifier:
    """Pages `delivery.address` (a staff id) on its handset topic."""

    channel = Channel.HANDSET

    def __init__(
        self,
        link: PageLink,
        encode: Callable[[PageBody], bytes] = encode_page,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        self._link = link
        self._encode = encode
        self._monotonic = monotonic

    async def send(self, delivery: Delivery) -> Receipt:
        if not _topic_safe(delivery.tenant) or not _topic_safe(delivery.address):
            # A '/' or wildcard would publish the page on someone else's topic.
            raise DeliveryError("invalid handset address", retryable=False)
        timeout_s = send_timeout_s(delivery, TIMEOUT_S)
        topic = page_topic(delivery.tenant, delivery.address)
        started = self._monotonic()
        try:
            reason = await self._link.publish_receipted(topic, self._encode(delivery.body), timeout_s)
        except TimeoutError as exc:
            raise DeliveryError(f"no PUBACK within {round(timeout_s * 1000)} ms", retryable=False) from exc
        except ConnectionError as exc:
            raise DeliveryError("broker link down", retryable=False) from exc
        if reason.is_failure:
            raise DeliveryError(f"broker refused the page: {reason}", retryable=False)
        if reason.value == NO_MATCHING_SUBSCRIBERS:
            raise DeliveryError("no handset subscribed", retryable=False)
        return delivered(delivery, elapsed_ms(started, self._monotonic), "PUBACK")


def _topic_safe(level: str) -> bool:
    return bool(level) and not (_TOPIC_UNSAFE & set(level))
