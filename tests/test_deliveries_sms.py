"""SMS through the gateway adapter, against a small gateway server started by the test
(uvicorn and Starlette on a free loopback port) that speaks docs/channels.md's format."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from responsecentre.deliveries import DeliverySettings, Notifiers, RetryPolicy, deliver_with_retries
from responsecentre.deliveries.base import DeliveryError
from responsecentre.escalation.delivery import Channel, Contact, Outcome, Receipt
from tests.test_deliveries_retry import delivery
from tests.test_deliveries_webhook import SECRET, Receiver, serving
from tests.waiting import until

TOKEN = "sms-token-3c1d"
NUMBER = "+4791234567"
FAST = RetryPolicy(attempts=3, base_ms=20, factor=2.0, cap_ms=100)


@dataclass
class Gateway:
    """A municipality's adapter: checks the token and the request, then answers the next
    scripted status (the last one for ever); 200/202 come with a message id."""

    statuses: list[int] = field(default_factory=lambda: [202])
    messages: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0

    async def endpoint(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            self.refused += 1
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        message = await request.json()
        assert request.headers["content-type"] == "application/json"
        assert set(message) == {"to", "text", "reference"}, message
        self.messages.append(message)
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if status in (200, 202):
            return JSONResponse({"id": f"m-{len(self.messages)}"}, status_code=status)
        return Response(status_code=status)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/messages", self.endpoint, methods=["POST"])])


@contextlib.asynccontextmanager
async def gateway(*statuses: int, token: str = TOKEN) -> AsyncIterator[tuple[Gateway, Notifiers]]:
    peer = Gateway(list(statuses or (202,)))
    async with serving(peer.app()) as base:
        notifiers = Notifiers.from_settings(DeliverySettings(sms_base_url=base + "/", sms_token=token))
        try:
            yield peer, notifiers
        finally:
            await notifiers.aclose()


@pytest.mark.parametrize("status", [200, 202])
async def test_the_gateway_taking_the_message_is_the_receipt(status: int) -> None:
    async with gateway(status) as (peer, notifiers):
        d = delivery(Channel.SMS, NUMBER)
        receipt = await notifiers[Channel.SMS].send(d)
    assert (receipt.outcome, receipt.channel, receipt.address, receipt.detail) == (
        Outcome.DELIVERED,
        Channel.SMS,
        NUMBER,
        "gateway id m-1",
    )
    [message] = peer.messages
    assert message["to"] == NUMBER and message["reference"] == d.id
    assert d.body.page_id in message["text"] and "home h01" in message["text"]
    assert len(message["text"]) <= 160


async def test_a_wrong_token_is_not_retried() -> None:
    async with gateway(token="not-the-token") as (peer, notifiers):
        receipts: list[Receipt] = []
        final = await deliver_with_retries(
            notifiers[Channel.SMS], delivery(Channel.SMS, NUMBER), FAST, random.Random(0), on_attempt=receipts.append
        )
    assert peer.refused == 1 and peer.messages == []
    assert (final.outcome, final.detail) == (Outcome.DEAD, "HTTP 401")
    assert receipts == [final]


async def test_a_busy_gateway_is_retried_with_the_same_reference() -> None:
    async with gateway(503, 503, 202) as (peer, notifiers):
        receipts: list[Receipt] = []
        d = delivery(Channel.SMS, NUMBER)
        final = await deliver_with_retries(
            notifiers[Channel.SMS], d, FAST, random.Random(3), on_attempt=receipts.append
        )
    assert [r.outcome for r in receipts] == [Outcome.FAILED, Outcome.FAILED, Outcome.DELIVERED]
    assert final.detail == "gateway id m-3"
    assert [m["reference"] for m in peer.messages] == [d.id] * 3


async def test_a_gateway_down_for_good_falls_back_to_the_next_channel() -> None:
    async with gateway(503) as (peer, notifiers):
        d = delivery(Channel.SMS, NUMBER, fallback=(Contact(Channel.EMAIL, "n1@example.org"),))
        final = await deliver_with_retries(notifiers[Channel.SMS], d, FAST, random.Random(0))
    assert (final.outcome, final.attempt) == (Outcome.FELL_BACK, FAST.attempts - 1)
    assert len(peer.messages) == FAST.attempts


async def test_a_2xx_without_a_message_id_is_not_retried_so_no_text_goes_twice() -> None:
    async with gateway(204) as (peer, notifiers):
        with pytest.raises(DeliveryError) as caught:
            await notifiers[Channel.SMS].send(delivery(Channel.SMS, NUMBER))
    assert not caught.value.retryable and caught.value.detail == "HTTP 204 without a message id"
    assert len(peer.messages) == 1


async def test_a_webhook_that_hangs_never_holds_up_an_sms() -> None:
    """Two channels, one down in the worst way (accepts the connection, never answers):
    the SMS goes out at once, and the webhook ends within its own receipt window."""
    hang = asyncio.Event()
    stuck_receiver = Receiver(hang=hang)
    sms_gateway = Gateway()
    async with serving(stuck_receiver.app()) as hook_base, serving(sms_gateway.app()) as sms_base:
        settings = DeliverySettings(webhook_secret=SECRET, sms_base_url=sms_base, sms_token=TOKEN)
        notifiers = Notifiers.from_settings(settings)
        try:
            started = time.monotonic()
            hook = asyncio.create_task(
                notifiers[Channel.WEBHOOK].send(delivery(Channel.WEBHOOK, f"{hook_base}/hook", receipt_within_ms=1_500))
            )
            await until(lambda: stuck_receiver.requests, 5, "the webhook receiver got its request")
            sms = await notifiers[Channel.SMS].send(delivery(Channel.SMS, NUMBER, delivery_id="d-sms"))
            assert sms.outcome == Outcome.DELIVERED and not hook.done()
            with pytest.raises(DeliveryError) as caught:
                await hook
            assert caught.value.retryable and 1.4 < time.monotonic() - started < 4.0
        finally:
            hang.set()
            await notifiers.aclose()
    assert [m["reference"] for m in sms_gateway.messages] == ["d-sms"]
    assert msgspec.json.decode(stuck_receiver.requests[0][1])["page_id"]
