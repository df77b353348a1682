"""E-mail over SMTP against aiosmtpd on a free loopback port (its own thread and loop)."""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from responsecentre.deliveries import DeliverySettings, Notifiers, RetryPolicy, deliver_with_retries
from responsecentre.deliveries.base import DeliveryError
from responsecentre.deliveries.email import EmailNotifier, SmtpSecurity
from responsecentre.escalation.delivery import Channel, Outcome, Receipt
from responsecentre.servers import free_port
from tests.test_deliveries_retry import delivery

FROM = "centre@rc.example.org"
TO = "n1@example.org"
FAST = RetryPolicy(attempts=3, base_ms=20, factor=2.0, cap_ms=100)


@dataclass
class Mailbox:
    """aiosmtpd's handler: keeps what it accepted; answers RCPT with the next scripted
    reply (None: accept) so a test can play greylisting or an unknown mailbox."""

    rcpt_replies: list[str | None] = field(default_factory=list)
    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        reply = self.rcpt_replies.pop(0) if self.rcpt_replies else None
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"centre", b"s3cret")
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@contextlib.contextmanager
def smtp_server(*rcpt_replies: str | None, auth: bool = False) -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox(list(rcpt_replies))
    extra: dict[str, Any] = {"auth_require_tls": False, "authenticator": _authenticator}
    controller = Controller(box, hostname="127.0.0.1", port=free_port(), **(extra if auth else {}))
    controller.start()
    try:
        yield box, controller.port
    finally:
        controller.stop()


def plain(port: int, **kwargs: Any) -> EmailNotifier:
    return EmailNotifier("127.0.0.1", port, FROM, SmtpSecurity.NONE, timeout_s=5.0, **kwargs)


async def test_the_servers_250_is_the_receipt_and_the_mail_is_resident_free() -> None:
    with smtp_server() as (box, port):
        d = delivery(Channel.EMAIL, TO)
        receipt = await plain(port).send(d)
    assert (receipt.outcome, receipt.channel, receipt.address, receipt.detail) == (
        Outcome.DELIVERED,
        Channel.EMAIL,
        TO,
        "SMTP 250",
    )
    [(sender, recipients, msg)] = box.messages
    assert (sender, recipients) == (FROM, [TO])
    assert (msg["From"], msg["To"], msg["Auto-Submitted"], msg["X-RC-Delivery"]) == (
        FROM,
        TO,
        "auto-generated",
        d.id,
    )
    assert msg["Message-ID"].endswith("@rc.example.org>")
    assert "CRITICAL fall" in msg["Subject"] and "h01" in msg["Subject"]
    text = msg.get_content()
    assert d.body.page_id in text and "zone north" in text and "Answer in" in text


async def test_a_retry_is_the_same_message_to_anything_that_deduplicates() -> None:
    d = delivery(Channel.EMAIL, TO)
    with smtp_server() as (box, port):
        await plain(port).send(d)
        await plain(port).send(d)
    assert len({m["Message-ID"] for _, _, m in box.messages}) == 1


async def test_a_greylisting_server_is_tried_again_and_takes_it() -> None:
    with smtp_server("451 4.7.1 Greylisted, try again later") as (box, port):
        receipts: list[Receipt] = []
        final = await deliver_with_retries(
            plain(port), delivery(Channel.EMAIL, TO), FAST, random.Random(0), on_attempt=receipts.append
        )
    assert [r.outcome for r in receipts] == [Outcome.FAILED, Outcome.DELIVERED]
    assert receipts[0].detail == "SMTP recipient refused [451]"
    assert final.outcome == Outcome.DELIVERED and len(box.messages) == 1


async def test_an_unknown_mailbox_is_not_retried() -> None:
    with smtp_server("550 5.1.1 No such user", "550 5.1.1 No such user") as (box, port):
        receipts: list[Receipt] = []
        final = await deliver_with_retries(
            plain(port), delivery(Channel.EMAIL, TO), FAST, random.Random(0), on_attempt=receipts.append
        )
    assert receipts == [final]
    assert (final.outcome, final.detail) == (Outcome.DEAD, "SMTP recipient refused [550]")
    assert box.messages == []


async def test_a_server_that_is_not_there_is_a_retryable_failure() -> None:
    with pytest.raises(DeliveryError) as caught:
        await plain(free_port()).send(delivery(Channel.EMAIL, TO))
    assert caught.value.retryable and caught.value.detail.startswith("SMTP ")


async def test_required_starttls_is_never_skipped_for_a_server_without_it() -> None:
    """Pages stay off plain text on a network unless the settings say so."""
    with smtp_server() as (box, port):
        notifier = EmailNotifier("127.0.0.1", port, FROM, SmtpSecurity.STARTTLS, timeout_s=5.0)
        with pytest.raises(DeliveryError) as caught:
            await notifier.send(delivery(Channel.EMAIL, TO))
    assert not caught.value.retryable and "STARTTLS" in caught.value.detail and box.messages == []


async def test_login_from_the_settings() -> None:
    with smtp_server(auth=True) as (box, port):
        good = DeliverySettings(
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_from=FROM,
            smtp_security=SmtpSecurity.NONE,
            smtp_username="centre",
            smtp_password="s3cret",
        )
        assert "s3cret" not in repr(good)
        receipt = await Notifiers.from_settings(good)[Channel.EMAIL].send(delivery(Channel.EMAIL, TO))
        assert receipt.outcome == Outcome.DELIVERED
        wrong = Notifiers.from_settings(dataclasses.replace(good, smtp_password="nope"))
        with pytest.raises(DeliveryError) as caught:
            await wrong[Channel.EMAIL].send(delivery(Channel.EMAIL, TO))
    assert not caught.value.retryable and caught.value.detail == "SMTP 535"
    assert len(box.messages) == 1
