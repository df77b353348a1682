"""Webhooks against a real HTTP receiver: uvicorn and Starlette on a free loopback port,
started by the test, checking the signature the way an integration would.

`serving(app)` is also the SMS gateway's server (tests/test_deliveries_sms.py)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field

import msgspec
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from responsecentre.clock import ManualClock, system_clock
from responsecentre.deliveries import DeliverySettings, Notifiers, RetryPolicy, deadletter, deliver_with_retries
from responsecentre.deliveries.base import DeliveryError
from responsecentre.deliveries.http import client
from responsecentre.deliveries.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookNotifier,
    signed_headers,
    verify_signature,
)
from responsecentre.escalation.delivery import Channel, Contact, Outcome, PageBody, Receipt
from responsecentre.servers import free_port
from tests.test_deliveries_retry import delivery
from tests.waiting import until

SECRET = "whsec-test-7f3a"
FAST = RetryPolicy(attempts=4, base_ms=20, factor=2.0, cap_ms=200)


class _Server(uvicorn.Server):
    """Signals belong to the test runner, not to uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """`app` on a free loopback port, in this event loop; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", log_config=None)
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started or task.done(), 10, "uvicorn started", every=0.01)
    assert not task.done(), "uvicorn did not start"
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@dataclass
class Receiver:
    """An integration's endpoint: verifies every request, then answers the next scripted
    status (the last one for ever). A request that fails verification gets 401."""

    statuses: list[int] = field(default_factory=lambda: [200])
    requests: list[tuple[dict[str, str], bytes, bool]] = field(default_factory=list)
    hang: asyncio.Event | None = None  # set: requests wait for it (a receiver that hangs)

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        ok = verify_signature(SECRET, request.headers, body, time.time())
        self.requests.append((dict(request.headers), body, ok))
        if self.hang is not None:
            await self.hang.wait()
        if not ok:
            return Response(status_code=401)
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return Response(status_code=status)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.endpoint, methods=["POST"])])


@contextlib.asynccontextmanager
async def receiver(*statuses: int) -> AsyncIterator[tuple[Receiver, str]]:
    peer = Receiver(list(statuses or (200,)))
    async with serving(peer.app()) as base:
        yield peer, f"{base}/hook"


@contextlib.asynccontextmanager
async def notifier(clock: ManualClock | None = None) -> AsyncIterator[WebhookNotifier]:
    async with client(5.0) as http:
        yield WebhookNotifier(SECRET, http, timeout_s=5.0, clock=clock or system_clock)


class Tries:
    """What `deliver_with_retries` reports and how long it was told to wait."""

    def __init__(self) -> None:
        self.receipts: list[Receipt] = []
        self.delays_s: list[float] = []

    def on_attempt(self, receipt: Receipt) -> None:
        self.receipts.append(receipt)

    async def sleep(self, seconds: float) -> None:
        """Records the backoff instead of waiting it out: the delays are what is checked."""
        self.delays_s.append(seconds)
        await asyncio.sleep(0)

    @property
    def outcomes(self) -> list[Outcome]:
        return [r.outcome for r in self.receipts]


async def test_a_signed_page_is_delivered_on_2xx_and_verifies_at_the_receiver() -> None:
    async with receiver(204) as (peer, url), notifier() as hook:
        d = delivery(Channel.WEBHOOK, url)
        receipt = await hook.send(d)
    assert (receipt.outcome, receipt.channel, receipt.address, receipt.delivery_id) == (
        Outcome.DELIVERED,
        Channel.WEBHOOK,
        url,
        d.id,
    )
    assert receipt.detail == "HTTP 204" and receipt.duration_ms >= 0
    [(headers, body, ok)] = peer.requests
    assert ok
    assert headers[DELIVERY_HEADER.lower()] == d.id
    assert headers["content-type"] == "application/json"
    assert headers[SIGNATURE_HEADER.lower()].startswith("v1=")
    assert abs(int(headers[TIMESTAMP_HEADER.lower()]) - time.time()) < 60
    assert msgspec.json.decode(body, type=PageBody) == d.body


async def test_a_request_signed_too_long_ago_is_refused_as_a_replay_and_not_retried() -> None:
    """A sender whose clock says ten minutes ago stands for a captured request played back."""
    stale = ManualClock(int((time.time() - 600) * 1000))
    async with receiver() as (peer, url), notifier(stale) as hook:
        tries = Tries()
        final = await deliver_with_retries(
            hook, delivery(Channel.WEBHOOK, url), FAST, random.Random(1), tries.sleep, tries.on_attempt
        )
    assert [ok for _, _, ok in peer.requests] == [False]
    assert (final.outcome, final.detail, final.attempt) == (Outcome.DEAD, "HTTP 401", 0)
    assert tries.outcomes == [Outcome.DEAD] and tries.delays_s == []


def test_verify_signature_accepts_only_the_signed_body_fresh_and_with_the_secret() -> None:
    body = b'{"alarm_id":"a1"}'
    now = 1_795_317_225
    headers = signed_headers(SECRET, "d1", body, now)
    assert verify_signature(SECRET, headers, body, now)
    assert verify_signature(SECRET.encode(), {k.upper(): v for k, v in headers.items()}, body, now + 299)
    assert verify_signature(SECRET, headers, body, now - 299)  # a receiver's clock a little behind
    assert not verify_signature(SECRET, headers, body, now + 301)  # replayed later
    assert not verify_signature(SECRET, headers, body + b" ", now)  # tampered
    assert not verify_signature("another-secret", headers, body, now)
    assert not verify_signature(SECRET, {**headers, TIMESTAMP_HEADER: str(now + 1)}, body, now)  # re-stamped
    assert not verify_signature(SECRET, {**headers, TIMESTAMP_HEADER: "١٧٩٥٣١٧٢٢٥"}, body, now)  # not ASCII
    assert not verify_signature(SECRET, {DELIVERY_HEADER: "d1"}, body, now)
    assert verify_signature(SECRET, headers, body, now + 1_000, tolerance_s=1_000)


async def test_500s_are_retried_with_backoff_until_the_receiver_takes_it() -> None:
    async with receiver(500, 502, 200) as (peer, url), notifier() as hook:
        tries = Tries()
        d = delivery(Channel.WEBHOOK, url)
        final = await deliver_with_retries(hook, d, FAST, random.Random(5), tries.sleep, tries.on_attempt)
    assert tries.outcomes == [Outcome.FAILED, Outcome.FAILED, Outcome.DELIVERED]
    assert [r.attempt for r in tries.receipts] == [0, 1, 2]
    assert [r.detail for r in tries.receipts] == ["HTTP 500", "HTTP 502", "HTTP 200"]
    assert final == tries.receipts[-1]
    expected = random.Random(5)
    assert tries.delays_s == [FAST.delay_ms(0, expected) / 1000, FAST.delay_ms(1, expected) / 1000]
    # Every try is a fresh signature over the same body, with the same delivery id.
    assert [ok for _, _, ok in peer.requests] == [True, True, True]
    assert {h[DELIVERY_HEADER.lower()] for h, _, _ in peer.requests} == {d.id}
    assert len({b for _, b, _ in peer.requests}) == 1


async def test_a_receiver_that_keeps_failing_is_dead_after_the_last_try_and_can_be_dead_lettered() -> None:
    async with receiver(503) as (peer, url), notifier() as hook:
        tries = Tries()
        d = delivery(Channel.WEBHOOK, url)
        final = await deliver_with_retries(hook, d, FAST, random.Random(2), tries.sleep, tries.on_attempt)
    assert tries.outcomes == [Outcome.FAILED] * 3 + [Outcome.DEAD]
    assert len(peer.requests) == FAST.attempts and len(tries.delays_s) == FAST.attempts - 1
    assert (final.outcome, final.attempt, final.detail) == (Outcome.DEAD, 3, "HTTP 503")
    letter = deadletter.decode(deadletter.encode(deadletter.dead_letter(d, final)))
    assert letter.delivery == d and letter.receipt == final


async def test_a_delivery_with_a_next_channel_falls_back_instead_of_dying() -> None:
    async with receiver(503) as (_, url), notifier() as hook:
        d = delivery(Channel.WEBHOOK, url, fallback=(Contact(Channel.EMAIL, "oncall@example.org"),))
        final = await deliver_with_retries(hook, d, RetryPolicy(attempts=2, base_ms=1, cap_ms=1), random.Random(0))
    assert final.outcome == Outcome.FELL_BACK


async def test_cancelling_a_delivery_stops_its_retries_at_once() -> None:
    """An ack or a clear cancels the alarm's deliveries: the one waiting out its backoff
    ends there, and no try goes out after the cancel."""
    async with receiver(503) as (peer, url), notifier() as hook:
        tries = Tries()
        slow = RetryPolicy(attempts=5, base_ms=60_000, factor=1.0, cap_ms=60_000)
        task = asyncio.create_task(
            deliver_with_retries(
                hook, delivery(Channel.WEBHOOK, url), slow, random.Random(4), on_attempt=tries.on_attempt
            )
        )
        await until(lambda: tries.receipts, 5, "the first try")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert tries.outcomes == [Outcome.FAILED] and len(peer.requests) == 1


@pytest.mark.parametrize(
    ("status", "requests"), [(400, 1), (404, 1), (410, 1), (302, 1), (408, 2), (429, 2), (500, 2), (503, 2)]
)
async def test_which_answers_are_retried(status: int, requests: int) -> None:
    async with receiver(status, 200) as (peer, url), notifier() as hook:
        tries = Tries()
        await deliver_with_retries(
            hook, delivery(Channel.WEBHOOK, url), FAST, random.Random(0), tries.sleep, tries.on_attempt
        )
    assert len(peer.requests) == requests
    assert tries.outcomes == ([Outcome.DEAD] if requests == 1 else [Outcome.FAILED, Outcome.DELIVERED])


async def test_a_receiver_that_is_not_there_is_a_retryable_failure() -> None:
    async with notifier() as hook:
        with pytest.raises(DeliveryError) as caught:
            await hook.send(delivery(Channel.WEBHOOK, f"http://127.0.0.1:{free_port()}/hook"))
    assert caught.value.retryable and caught.value.detail.startswith("connection failed")


async def test_a_hanging_receiver_costs_its_own_delivery_a_timeout_and_blocks_no_other() -> None:
    """One receiver hangs; another is paged at once meanwhile, and the hung delivery ends
    within its receipt window as a retryable timeout."""
    hang = asyncio.Event()
    slow = Receiver(hang=hang)
    async with serving(slow.app()) as slow_base, receiver() as (quick, quick_url), notifier() as hook:
        try:
            started = time.monotonic()
            stuck = asyncio.create_task(
                hook.send(delivery(Channel.WEBHOOK, f"{slow_base}/hook", receipt_within_ms=1_500))
            )
            await until(lambda: slow.requests, 5, "the slow receiver got its request")
            fine = await hook.send(delivery(Channel.WEBHOOK, quick_url, delivery_id="d-2"))
            assert fine.outcome == Outcome.DELIVERED and not stuck.done()
            with pytest.raises(DeliveryError) as caught:
                await stuck
            assert caught.value.retryable and caught.value.detail.startswith("timeout")
            assert 1.4 < time.monotonic() - started < 4.0
            assert len(quick.requests) == 1
        finally:
            hang.set()


async def test_an_unconfigured_channel_fails_at_once_so_the_caller_falls_back() -> None:
    notifiers = Notifiers.from_settings(DeliverySettings())
    assert dict(notifiers) == {}
    final = await deliver_with_retries(
        notifiers.for_channel(Channel.SMS),
        delivery(Channel.SMS, "+4791234567", fallback=(Contact(Channel.EMAIL, "a@example.org"),)),
        FAST,
        random.Random(0),
    )
    assert (final.outcome, final.detail) == (Outcome.FELL_BACK, "channel sms is not configured")
