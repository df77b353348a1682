"""One interface for every channel: `Notifier.send(delivery) -> Receipt`.

A notifier does one try and says how it went: a DELIVERED `Receipt` once the peer
confirmed it (PUBACK, 2xx, 250, gateway accepted), or a `DeliveryError` that says whether
trying the same channel again could help. Retries, backoff, fallback to the person's next
channel and dead-lettering are decided above it (`deliveries.retry` and the shell), so a
channel module holds only what is particular to its peer.

Every try is bounded in time (`send_timeout_s`): a channel whose peer hangs costs its own
deliveries a timeout, never the other channels' (each delivery runs in its own task, and
each HTTP channel has its own connection pool).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from responsecentre.escalation.delivery import Channel, Delivery, Outcome, PageBody, Receipt

Monotonic = Callable[[], float]  # seconds; time.monotonic, or a test's own


class DeliveryError(Exception):
    """A try that did not get a receipt. `detail` goes on the timeline, so it names the
    peer's answer or the kind of failure and never carries personal data (no page body,
    no response body). `retryable` says whether the same channel may work a moment later
    (a 503, a timeout) or will not (a 400, a wrong token, a handset that is not there)."""

    def __init__(self, detail: str, retryable: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retryable = retryable


class Notifier(Protocol):
    """Sends one delivery over one channel, once."""

    channel: Channel

    async def send(self, delivery: Delivery) -> Receipt:
        """A DELIVERED receipt (with the try's duration) once the peer confirmed it;
        raises `DeliveryError` otherwise, within a bounded time."""
        ...


def send_timeout_s(delivery: Delivery, channel_timeout_s: float) -> float:
    """How long one try may take: the channel's own limit, and never longer than the
    delivery's receipt window, after which the person's next channel is due anyway."""
    if delivery.receipt_within_ms > 0:
        return min(channel_timeout_s, delivery.receipt_within_ms / 1000)
    return channel_timeout_s


def elapsed_ms(started_s: float, monotonic: Monotonic = time.monotonic) -> int:
    return max(0, round((monotonic() - started_s) * 1000))


def delivered(delivery: Delivery, duration_ms: int, detail: str = "") -> Receipt:
    return Receipt(
        delivery_id=delivery.id,
        channel=delivery.channel,
        address=delivery.address,
        outcome=Outcome.DELIVERED,
        duration_ms=duration_ms,
        detail=detail,
    )


def render(body: PageBody) -> tuple[str, str]:
    """(subject, text) for the human channels, SMS and e-mail.

    Short enough for one SMS in the usual case, and resident-free like every page: kind,
    priority, the home's opaque id and zone, the step, and the page id a reply quotes. The
    nurse answers in the handset app or the console, where the rest is behind a login."""
    what = f"{body.priority.upper()} {body.kind}"
    step = f"step {body.step}" + (f" (round {body.round + 1})" if body.round else "")
    lead = "Dispatched: " if body.dispatched else ""
    incident = f" Incident {body.incident_id}." if body.incident_id else ""
    subject = f"{lead}{what} - home {body.home_id}, zone {body.zone}, {step}"
    text = (
        f"{lead}{what}, home {body.home_id}, zone {body.zone}, {step}.{incident} "
        f"Page {body.page_id}. Answer in the handset app or the console."
    )
    return subject, text
