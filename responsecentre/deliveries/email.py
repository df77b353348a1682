"""E-mail over SMTP (aiosmtplib): the rendered page to `delivery.address`.

The receipt is the server's 250 at the end of DATA: the mail server has taken
responsibility for the message (aiosmtplib raises on any other answer). A 4xx is the server
saying "later" (greylisting, a full queue) and is retried; a 5xx (no such mailbox, sender
refused, bad login) is not. Connection failures and timeouts are retried.

The Message-ID is derived from the delivery id, so a retry after a lost 250 is the same
message to anything that de-duplicates; `Auto-Submitted` keeps out-of-office replies
from answering a page.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from email.message import EmailMessage
from email.utils import formatdate
from enum import StrEnum

import aiosmtplib

from responsecentre.clock import Clock, system_clock
from responsecentre.deliveries.base import (
    DeliveryError,
    Monotonic,
    delivered,
    elapsed_ms,
    render,
    send_timeout_s,
)
from responsecentre.escalation.delivery import Channel, Delivery, Receipt

TIMEOUT_S = 10.0


class SmtpSecurity(StrEnum):
    STARTTLS = "starttls"  # plain connection upgraded with STARTTLS, required (port 587)
    TLS = "tls"  # TLS from the first byte (port 465)
    NONE = "none"  # plain text: a relay on the same host or a test server only


class EmailNotifier:
    """Sends the page by SMTP, one connection per message (pages are few, and a
    connection held open is one more thing to fail between them)."""

    channel = Channel.EMAIL

    def __init__(
        self,
        host: str,
        port: int,
        from_address: str,
        security: SmtpSecurity = SmtpSecurity.STARTTLS,
        username: str = "",
        password: str = "",
        timeout_s: float = TIMEOUT_S,
        clock: Clock = system_clock,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        if not host or not from_address:
            raise ValueError("e-mail needs an SMTP host and a from address")
        self._host = host
        self._port = port
        self._from = from_address
        self._security = security
        self._username = username or None
        self._password = password or None
        self._timeout_s = timeout_s
        self._clock = clock
        self._monotonic = monotonic

    def message(self, delivery: Delivery) -> EmailMessage:
        subject, text = render(delivery.body)
        msg = EmailMessage()
        msg["From"] = self._from
        msg["To"] = delivery.address
        msg["Subject"] = subject
        msg["Date"] = formatdate(self._clock() / 1000, usegmt=True)
        domain = self._from.rpartition("@")[2] or "responsecentre"
        msg["Message-ID"] = f"<rc.{hashlib.sha256(delivery.id.encode()).hexdigest()[:32]}@{domain}>"
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-RC-Delivery"] = delivery.id
        msg.set_content(text)
        return msg

    async def send(self, delivery: Delivery) -> Receipt:
        message = self.message(delivery)
        timeout_s = send_timeout_s(delivery, self._timeout_s)
        started = self._monotonic()
        try:
            # aiosmtplib's own timeout is per operation; the outer one bounds the whole send.
            async with asyncio.timeout(timeout_s):
                await aiosmtplib.send(
                    message,
                    hostname=self._host,
                    port=self._port,
                    username=self._username,
                    password=self._password,
                    start_tls=self._security == SmtpSecurity.STARTTLS,
                    use_tls=self._security == SmtpSecurity.TLS,
                    timeout=timeout_s,
                )
        except TimeoutError as exc:  # also aiosmtplib's SMTPTimeoutError
            raise DeliveryError(f"timeout ({type(exc).__name__})", retryable=True) from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = sorted({r.code for r in exc.recipients})
            later = all(400 <= c < 500 for c in codes)
            raise DeliveryError(f"SMTP recipient refused {codes}", retryable=later) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(f"SMTP {exc.code}", retryable=400 <= exc.code < 500) from exc
        except OSError as exc:  # refused, reset, disconnected (aiosmtplib's included)
            raise DeliveryError(f"SMTP {type(exc).__name__}", retryable=True) from exc
        except aiosmtplib.SMTPException as exc:  # the server lacks what we require (STARTTLS, AUTH)
            raise DeliveryError(f"SMTP: {exc.message}"[:120], retryable=False) from exc
        return delivered(delivery, elapsed_ms(started, self._monotonic), "SMTP 250")
