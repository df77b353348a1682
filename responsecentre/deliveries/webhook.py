"""Webhooks: the page as a signed JSON POST to an integration's URL.

The body is the `PageBody` as JSON (resident-free, like every page). Three headers:

    X-RC-Timestamp: <unix seconds when signed>
    X-RC-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.".encode() + body)>
    X-RC-Delivery:  <delivery id>

The timestamp is inside the signed bytes, so a receiver that checks it against its own
clock (`verify_signature`, default tolerance 5 minutes) refuses a captured request played
back later. The delivery id is the same on every retry of a delivery, so a receiver that
got a request but whose 2xx was lost can drop the repeat. A 2xx is the receipt; see
`deliveries.http` for which failures are worth retrying.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

import httpx
import msgspec

from responsecentre.clock import Clock, system_clock
from responsecentre.deliveries import http
from responsecentre.deliveries.base import Monotonic, delivered, elapsed_ms, send_timeout_s
from responsecentre.escalation.delivery import Channel, Delivery, Receipt

TIMESTAMP_HEADER = "X-RC-Timestamp"
SIGNATURE_HEADER = "X-RC-Signature"
DELIVERY_HEADER = "X-RC-Delivery"
SCHEME = "v1"
TOLERANCE_S = 300
TIMEOUT_S = 10.0


def _key(secret: bytes | str) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def signature(secret: bytes | str, timestamp: str, body: bytes) -> str:
    """`v1=<hex>` over the timestamp exactly as it travels in its header, a dot, and the body."""
    mac = hmac.new(_key(secret), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def signed_headers(secret: bytes | str, delivery_id: str, body: bytes, now_s: int) -> dict[str, str]:
    timestamp = str(now_s)
    return {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(secret, timestamp, body),
        DELIVERY_HEADER: delivery_id,
    }


def verify_signature(
    secret: bytes | str, headers: Mapping[str, str], body: bytes, now_s: float, tolerance_s: float = TOLERANCE_S
) -> bool:
    """For receivers: whether `body` was signed with `secret` within `tolerance_s` of
    `now_s` (either way, for clocks a little apart). Header names are matched without
    regard to case; the digest is compared in constant time."""
    lower = {name.lower(): value for name, value in headers.items()}
    timestamp = lower.get(TIMESTAMP_HEADER.lower(), "")
    given = lower.get(SIGNATURE_HEADER.lower(), "")
    if not (timestamp.isascii() and timestamp.isdigit()) or not given:
        return False
    if abs(now_s - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body).encode(), given.encode())


class WebhookNotifier:
    """POSTs the page to `delivery.address`, signed with the centre's webhook secret."""

    channel = Channel.WEBHOOK

    def __init__(
        self,
        secret: bytes | str,
        client: httpx.AsyncClient,
        timeout_s: float = TIMEOUT_S,
        clock: Clock = system_clock,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        if not secret:
            raise ValueError("a webhook needs a secret to sign with")
        self._secret = _key(secret)
        self._client = client
        self._timeout_s = timeout_s
        self._clock = clock
        self._monotonic = monotonic

    async def send(self, delivery: Delivery) -> Receipt:
        body = msgspec.json.encode(delivery.body)
        headers = signed_headers(self._secret, delivery.id, body, self._clock() // 1000)
        started = self._monotonic()
        response = await http.post(
            self._client, delivery.address, body, headers, send_timeout_s(delivery, self._timeout_s)
        )
        return delivered(delivery, elapsed_ms(started, self._monotonic), f"HTTP {response.status_code}")
