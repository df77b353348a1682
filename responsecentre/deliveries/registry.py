"""Every channel's notifier, built from one settings value in one place (the service).

A channel whose settings are empty is left out: a delivery for it fails at once, not
retryable, so the person's next channel is used (`Notifiers.for_channel`). The console is
not here: it is the live feed, which the alarm desk writes itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import httpx

from responsecentre.clock import Clock, system_clock
from responsecentre.deliveries import email, http, sms, webhook
from responsecentre.deliveries.base import DeliveryError, Monotonic, Notifier
from responsecentre.deliveries.email import EmailNotifier, SmtpSecurity
from responsecentre.deliveries.handset import HandsetNotifier, PageLink
from responsecentre.deliveries.sms import SmsNotifier
from responsecentre.deliveries.webhook import WebhookNotifier
from responsecentre.escalation.delivery import Channel, Delivery, Receipt


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """The channels' settings; empty strings leave a channel out. Secrets are not shown
    in `repr`, so the settings can be logged."""

    webhook_secret: str = field(default="", repr=False)
    webhook_timeout_s: float = webhook.TIMEOUT_S
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_from: str = ""
    smtp_security: SmtpSecurity = SmtpSecurity.STARTTLS
    smtp_username: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_timeout_s: float = email.TIMEOUT_S
    sms_base_url: str = ""
    sms_token: str = field(default="", repr=False)
    sms_timeout_s: float = sms.TIMEOUT_S


class Notifiers(Mapping[Channel, Notifier]):
    """Channel -> notifier, and the HTTP clients they own (closed by `aclose`)."""

    def __init__(self, notifiers: list[Notifier], clients: list[httpx.AsyncClient] | None = None) -> None:
        self._by_channel = {n.channel: n for n in notifiers}
        self._clients = list(clients or [])

    @classmethod
    def from_settings(
        cls,
        settings: DeliverySettings,
        link: PageLink | None = None,
        clock: Clock = system_clock,
        monotonic: Monotonic = time.monotonic,
    ) -> Notifiers:
        """Build what is configured. `link` is the started `PageLink` (handsets); each HTTP
        channel gets an `httpx.AsyncClient` of its own so one receiver that hangs cannot
        take the other's connections."""
        notifiers: list[Notifier] = []
        clients: list[httpx.AsyncClient] = []
        if link is not None:
            notifiers.append(HandsetNotifier(link, monotonic=monotonic))
        if settings.webhook_secret:
            client = http.client(settings.webhook_timeout_s)
            clients.append(client)
            notifiers.append(
                WebhookNotifier(settings.webhook_secret, client, settings.webhook_timeout_s, clock, monotonic)
            )
        if settings.sms_base_url and settings.sms_token:
            client = http.client(settings.sms_timeout_s)
            clients.append(client)
            notifiers.append(
                SmsNotifier(settings.sms_base_url, settings.sms_token, client, settings.sms_timeout_s, monotonic)
            )
        if settings.smtp_host and settings.smtp_from:
            notifiers.append(
                EmailNotifier(
                    settings.smtp_host,
                    settings.smtp_port,
                    settings.smtp_from,
                    settings.smtp_security,
                    settings.smtp_username,
                    settings.smtp_password,
                    settings.smtp_timeout_s,
                    clock,
                    monotonic,
                )
            )
        return cls(notifiers, clients)

    def __getitem__(self, channel: Channel) -> Notifier:
        return self._by_channel[channel]

    def __iter__(self) -> Iterator[Channel]:
        return iter(self._by_channel)

    def __len__(self) -> int:
        return len(self._by_channel)

    def for_channel(self, channel: Channel) -> Notifier:
        """The channel's notifier, or one that fails at once (not retryable) when the
        channel is not configured, so the caller falls back the usual way."""
        notifier = self._by_channel.get(channel)
        return notifier if notifier is not None else _Unconfigured(channel)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


class _Unconfigured:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    async def send(self, delivery: Delivery) -> Receipt:
        raise DeliveryError(f"channel {self.channel} is not configured", retryable=False)
