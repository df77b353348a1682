"""SMS through a small HTTP gateway adapter that a municipality puts in front of its provider.

The request (documented in docs/channels.md, so an adapter can be written for any provider):

    POST {base_url}/v1/messages
    Authorization: Bearer <token>
    Content-Type: application/json

    {"to": "+4791234567", "text": "...", "reference": "<delivery id>"}

The gateway answers 200 or 202 with `{"id": "<its message id>"}` once it has taken the
message: that is the receipt (taken by the gateway, not yet read on the phone). The
reference is the same on every retry, so a gateway that de-duplicates by it never sends a
text twice. Failures split like the webhook's (`deliveries.http`): a wrong token (401) or
an unknown number (400/422) is not retried, a 503 or a timeout is.
"""

from __future__ import annotations

import time

import httpx
import msgspec

from responsecentre.deliveries import http
from responsecentre.deliveries.base import DeliveryError, Monotonic, delivered, elapsed_ms, render, send_timeout_s
from responsecentre.escalation.delivery import Channel, Delivery, Receipt

PATH = "/v1/messages"
TIMEOUT_S = 10.0


class SmsRequest(msgspec.Struct, frozen=True):
    to: str  # E.164, as the contact's address
    text: str
    reference: str  # the delivery id


class SmsAccepted(msgspec.Struct):
    id: str


_accepted = msgspec.json.Decoder(SmsAccepted)


class SmsNotifier:
    """Sends `render(body)`'s text to `delivery.address` through the gateway."""

    channel = Channel.SMS

    def __init__(
        self,
        base_url: str,
        token: str,
        client: httpx.AsyncClient,
        timeout_s: float = TIMEOUT_S,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        if not base_url or not token:
            raise ValueError("the SMS gateway needs a base URL and a token")
        self._url = base_url.rstrip("/") + PATH
        self._auth = {"Authorization": f"Bearer {token}"}
        self._client = client
        self._timeout_s = timeout_s
        self._monotonic = monotonic

    async def send(self, delivery: Delivery) -> Receipt:
        _subject, text = render(delivery.body)
        body = msgspec.json.encode(SmsRequest(to=delivery.address, text=text, reference=delivery.id))
        started = self._monotonic()
        response = await http.post(self._client, self._url, body, self._auth, send_timeout_s(delivery, self._timeout_s))
        try:
            accepted = _accepted.decode(response.content)
        except msgspec.DecodeError as exc:
            # Taken or not? Unknown: not retried, so a text is never sent twice; the
            # person's next channel goes instead.
            raise DeliveryError(f"HTTP {response.status_code} without a message id", retryable=False) from exc
        return delivered(delivery, elapsed_ms(started, self._monotonic), f"gateway id {accepted.id[:64]}")
