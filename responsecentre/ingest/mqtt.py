"""The broker link: paho-mqtt 2.x with manual acks, bridged into asyncio.

aiomqtt acks a QoS 1 message as soon as it is handed over; we need the PUBACK to go out
only after the event is stored in Redis, so we use paho's `manual_ack` directly. paho's
network thread puts messages on an asyncio queue; acks and publishes are thread-safe
calls back into paho.

The session is persistent (clean_start=False, a long session expiry, a fixed client id;
on our broker config the session is the account's, `rc-ingest`): whatever arrives while
the service is down waits in the broker and is redelivered, and every message received but
not acked before a crash is sent again.

The centre publishes (pages, alarm states) on a connection of its own, `PublishLink`, with
an account of its own (`rc-notifier`): the broker's ACL lets the ingest account only read
device topics and the notifier account only write the centre's, so neither can be used for
the other's job (see responsecentre/broker.py). With the broker's
`use_username_as_clientid`, one account is one session: two connections on one account
would throw each other off, which is one more reason for two.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from responsecentre.clock import Clock, system_clock
from responsecentre.config import MqttUrl
from responsecentre.contract import DEVICES_SUBSCRIPTION
from responsecentre.metrics import Metrics

log = logging.getLogger(__name__)

RECEIVE_MAXIMUM = 1000  # unacked messages the broker may have in flight to us
PUBACK_TIMEOUT_S = 5.0  # a publish not acked by then counts as failed (the outbox retries)


def new_client(url: MqttUrl, client_id: str, manual_ack: bool = False) -> mqtt.Client:
    """A paho MQTT v5 client that logs in as the URL's account and reconnects by itself."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    if url.username:
        client.username_pw_set(url.username, url.password)
    if url.tls:
        client.tls_set()
    client.reconnect_delay_set(min_delay=1, max_delay=5)
    # A bug in a callback is logged by paho and the network thread goes on; the default
    # re-raises it there, which would silently end the connection's work.
    client.suppress_exceptions = True
    return client


@dataclass(frozen=True, slots=True)
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # which connection it came on; acks never cross connections
    received_ms: int


class BrokerLink:
    def __init__(
        self,
        url: MqttUrl,
        client_id: str,
        session_expiry_s: int,
        metrics: Metrics,
        queue_size: int = RECEIVE_MAXIMUM * 4,
        clock: Clock = system_clock,
        subscription: str = DEVICES_SUBSCRIPTION,
    ) -> None:
        self.url = url
        self.subscription = subscription  # ingest: devices/#; the reply desk: staff/+/replies
        self._clock = clock
        self.metrics = metrics
        self.session_expiry_s = session_expiry_s
        self.inbox: asyncio.Queue[Inbound] = asyncio.Queue()  # bounded by _slots
        self._slots = threading.Semaphore(queue_size)
        self.connected = asyncio.Event()
        self.subscribed = asyncio.Event()  # the broker confirmed the subscription (SUBACK)
        self._loop = asyncio.get_running_loop()
        self._generation = 0
        self._stopping = False
        self._client = new_client(url, client_id, manual_ack=True)
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(100_000)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        self._client.connect_async(self.url.host, self.url.port, keepalive=15, clean_start=False, properties=props)
        self._client.loop_start()

    def stop(self) -> None:
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()

    # -- paho thread callbacks -------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("broker refused the connection: %s", reason)
            return
        self._generation += 1
        client.subscribe([(self.subscription, 1)])
        if self.subscription == DEVICES_SUBSCRIPTION:  # the gauge is ingest's
            self.metrics.mqtt_connected.set(1)
        self._loop.call_soon_threadsafe(self.connected.set)
        log.info(
            "connected to mqtt://%s:%s (session present: %s)",
            self.url.host,
            self.url.port,
            getattr(flags, "session_present", "?"),
        )

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        if self.subscription == DEVICES_SUBSCRIPTION:
            self.metrics.mqtt_connected.set(0)
        self._loop.call_soon_threadsafe(self.connected.clear)
        self._loop.call_soon_threadsafe(self.subscribed.clear)
        log.warning("disconnected from the broker (%s); paho reconnects", reason)

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, reasons: object, props: object) -> None:
        self._loop.call_soon_threadsafe(self.subscribed.set)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        """Hand the message to asyncio, waiting while the inbox is full.

        Waiting here is the flow control: paho stops reading the socket, TCP pushes back,
        and the broker holds the rest. (mosquitto does not always keep to our Receive
        Maximum, so the inbox can fill; a message is never dropped here, because a
        dropped unacked message is not resent while the connection stays up, and it
        would hold one of the broker's in-flight slots for good.)"""
        # An exception here would end paho's network thread and with it all ingest, so
        # nothing in this callback may raise: the topic is decoded leniently (the broker
        # enforces UTF-8 topics, but we do not bet the centre on it) and validated later.
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = bytes(msg._topic).decode("utf-8", "replace")
        item = Inbound(topic, bytes(msg.payload), msg.mid, msg.qos, self._generation, self._clock())
        while not self._slots.acquire(timeout=0.5):
            if self._stopping:  # unacked: the broker resends it to the next session
                return
        try:
            self._loop.call_soon_threadsafe(self.inbox.put_nowait, item)
        except RuntimeError:  # the event loop is gone: shutting down, unacked
            return

    # -- called from asyncio ----------------------------------------------------------------

    def taken(self, n: int) -> None:
        """The consumer took `n` messages off the inbox: room for `n` more."""
        self._slots.release(n)

    def ack(self, item: Inbound) -> None:
        """PUBACK, once the event is durably stored. A message from an earlier
        connection is not acked here: the broker has redelivered it on this one."""
        if item.qos > 0 and item.generation == self._generation:
            self._client.ack(item.mid, item.qos)


class PublishLink:
    """The centre's publishing connection (pages, alarm states), as account `rc-notifier`.

    `publish` returns once the broker has acked the message (QoS 1) and raises otherwise:
    on a dead link, when the broker refuses it (a PUBACK reason code such as "not
    authorized": an ACL that does not fit), or when no ack comes within PUBACK_TIMEOUT_S.
    The outbox then keeps the entry and tries again, so a page is never counted delivered
    before the broker has it. paho reconnects by itself; a message in flight when the link
    dropped is resent by paho, and may arrive twice (pages are at least once)."""

    def __init__(self, url: MqttUrl, client_id: str) -> None:
        self.url = url
        self.connected = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._waiting: dict[int, asyncio.Future[ReasonCode]] = {}
        self._client = new_client(url, client_id)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0  # nothing to resume: the outbox is the queue
        self._client.connect_async(self.url.host, self.url.port, keepalive=15, clean_start=True, properties=props)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("broker refused the notifier's connection: %s", reason)
            return
        self._loop.call_soon_threadsafe(self.connected.set)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        self._loop.call_soon_threadsafe(self.connected.clear)
        log.warning("notifier disconnected from the broker (%s); paho reconnects", reason)

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason: ReasonCode, props: object) -> None:
        self._loop.call_soon_threadsafe(self._settle, mid, reason)

    def _settle(self, mid: int, reason: ReasonCode) -> None:
        # In the event loop, like `publish`: a future is always registered before its
        # PUBACK can be settled here.
        future = self._waiting.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(reason)

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        if not self.connected.is_set():
            raise ConnectionError("the notifier is not connected to the broker")
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"publish on {topic} failed: {mqtt.error_string(info.rc)}")
        if qos == 0:
            return
        future: asyncio.Future[ReasonCode] = self._loop.create_future()
        self._waiting[info.mid] = future
        try:
            reason = await asyncio.wait_for(future, PUBACK_TIMEOUT_S)
        finally:
            self._waiting.pop(info.mid, None)
        if reason.is_failure:
            raise PermissionError(f"the broker refused a publish on {topic}: {reason}")
