"""Deliveries: one `Notifier` interface for every channel (handset, webhook, SMS, e-mail).

    notifiers = Notifiers.from_settings(DeliverySettings(...), link=page_link)
    receipt = await deliver_with_retries(
        notifiers.for_channel(delivery.channel), delivery, RetryPolicy(), rng, on_attempt=timeline
    )

See docs/channels.md for each channel's receipt, retries and fallback.
"""

from responsecentre.deliveries.base import DeliveryError, Notifier, render
from responsecentre.deliveries.deadletter import DeadLetter, dead_letter
from responsecentre.deliveries.registry import DeliverySettings, Notifiers
from responsecentre.deliveries.retry import RetryPolicy, deliver_with_retries, final_outcome

__all__ = [
    "DeadLetter",
    "DeliveryError",
    "DeliverySettings",
    "Notifier",
    "Notifiers",
    "RetryPolicy",
    "dead_letter",
    "deliver_with_retries",
    "final_outcome",
    "render",
]
