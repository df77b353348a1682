"""Retries with exponential backoff and full jitter, and the loop that records every try.

The policy is pure (the random source is handed in), so its bounds are tested exactly. The
loop, `deliver_with_retries`, is the one place a delivery is tried again: it hands each try
to `on_attempt` so the timeline shows every one (channel, address, outcome, duration),
and returns the last receipt. Cancelling the task that runs it (an ack or a clear of the
alarm) stops the retries at once: the sleep and the send are both cancellation points.

Full jitter (a delay drawn uniformly from 0 to the exponential ceiling) spreads the
retries of many deliveries that failed together, say every webhook of a tenant whose
receiver restarted, so they do not come back as one burst.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec

from responsecentre.deliveries.base import DeliveryError, Monotonic, Notifier, elapsed_ms
from responsecentre.escalation.delivery import Delivery, Outcome, Receipt

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
OnAttempt = Callable[[Receipt], Awaitable[None] | None]

TRY_CEILING_S = 120.0  # a safety net over the notifiers' own bounds, for a notifier with a bug


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`attempts` tries in all (1: no retry). The delay after failed try `n` (0 for the
    first) is drawn from [0, min(cap_ms, base_ms * factor**n)]."""

    attempts: int = 5
    base_ms: int = 500
    factor: float = 2.0
    cap_ms: int = 30_000

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {self.attempts}")
        if self.base_ms < 0 or self.cap_ms < 0:
            raise ValueError("base_ms and cap_ms must not be negative")
        if self.factor < 1:
            raise ValueError(f"factor must be at least 1, not {self.factor}")

    def ceiling_ms(self, attempt: int) -> int:
        """The longest delay after failed try `attempt`."""
        try:
            grown = self.base_ms * self.factor**attempt
        except OverflowError:  # far past the cap anyway
            return self.cap_ms
        return int(min(self.cap_ms, grown))

    def delay_ms(self, attempt: int, rng: random.Random) -> int:
        """How long to wait after failed try `attempt` before the next one."""
        if attempt < 0:
            raise ValueError(f"attempt must not be negative, not {attempt}")
        return rng.randint(0, self.ceiling_ms(attempt))

    def exhausted(self, attempt: int) -> bool:
        """Whether try `attempt` (0 for the first) was the last one allowed."""
        return attempt + 1 >= self.attempts


def final_outcome(delivery: Delivery) -> Outcome:
    """What a delivery that got no receipt becomes: FELL_BACK when the person has a next
    channel (the caller sends `delivery.fallback[0]`), else DEAD (the caller dead-letters
    it; see `deliveries.deadletter`)."""
    return Outcome.FELL_BACK if delivery.fallback else Outcome.DEAD


async def deliver_with_retries(
    notifier: Notifier,
    delivery: Delivery,
    policy: RetryPolicy,
    rng: random.Random,
    sleep: Sleep = asyncio.sleep,
    on_attempt: OnAttempt | None = None,
    monotonic: Monotonic = time.monotonic,
) -> Receipt:
    """Try `delivery` until it is receipted, fails for good (not retryable) or the policy
    is exhausted, and return the last receipt: DELIVERED, or FELL_BACK/DEAD (see
    `final_outcome`). Every try is handed to `on_attempt` first (FAILED for a try that
    will be retried), with `Receipt.attempt` counting the tries from 0."""
    attempt = 0
    while True:
        started = monotonic()
        try:
            async with asyncio.timeout(TRY_CEILING_S):
                receipt = await notifier.send(delivery)
            receipt = msgspec.structs.replace(receipt, attempt=attempt)
        except DeliveryError as exc:
            receipt = _failed(delivery, attempt, elapsed_ms(started, monotonic), exc, policy)
        except Exception as exc:  # a bug in one channel must cost its delivery, not the caller
            log.exception("notifier %s raised unexpectedly", delivery.channel)
            error = DeliveryError(f"internal error: {type(exc).__name__}", retryable=False)
            receipt = _failed(delivery, attempt, elapsed_ms(started, monotonic), error, policy)
        if on_attempt is not None:
            done = on_attempt(receipt)
            if inspect.isawaitable(done):
                await done
        if receipt.outcome != Outcome.FAILED:
            return receipt
        await sleep(policy.delay_ms(attempt, rng) / 1000)
        attempt += 1


def _failed(delivery: Delivery, attempt: int, duration_ms: int, exc: DeliveryError, policy: RetryPolicy) -> Receipt:
    last = not exc.retryable or policy.exhausted(attempt)
    return Receipt(
        delivery_id=delivery.id,
        channel=delivery.channel,
        address=delivery.address,
        outcome=final_outcome(delivery) if last else Outcome.FAILED,
        duration_ms=duration_ms,
        attempt=attempt,
        detail=exc.detail,
    )
