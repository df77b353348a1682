"""What the escalation core hands to the deliveries: frozen types, no I/O.

The pure planner (`escalation.planner`) turns a chain step and the people on duty into
`Delivery` records; the alarm desk stores them in the outbox in the same transaction as
the alarm change; the `responsecentre.deliveries` package sends each one over its
`Channel` and reports a `Receipt`. Keeping these types here, below both, lets the
imports run one way: service -> desk/deliveries -> escalation core.

Page bodies carry no resident data (no name, address, key-safe code or care notes): a
page travels over MQTT, SMS and e-mail, which are not places for health data. The nurse
who accepts reads the rest over the audited API.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec


class Channel(StrEnum):
    """How a person (or a system) is reached. Values are what the YAML and the timeline say."""

    CONSOLE = "console"  # the live console (WebSocket feed); every operator
    HANDSET = "handset"  # a page over MQTT to rc/v1/{tenant}/staff/{staff_id}/pages, receipted by PUBACK
    SMS = "sms"  # through the SMS gateway adapter
    EMAIL = "email"  # over SMTP
    WEBHOOK = "webhook"  # an HMAC-signed HTTP POST

    @classmethod
    def _missing_(cls, value: object) -> Channel | None:
        """`Channel("mqtt")` (and msgspec decoding a stored chain) reads the old alias."""
        return CHANNEL_ALIASES.get(value) if isinstance(value, str) else None


# Older chains.yaml files and stored chain snapshots name the handset channel "mqtt".
CHANNEL_ALIASES: dict[str, Channel] = {"mqtt": Channel.HANDSET}


def parse_channel(value: str) -> Channel:
    """A channel name from YAML or a stored record, accepting the old alias."""
    alias = CHANNEL_ALIASES.get(value)
    return alias if alias is not None else Channel(value)


class Contact(msgspec.Struct, frozen=True):
    """One way to reach a person: the channel and its address (staff id for a handset,
    a phone number in E.164 for SMS, an e-mail address, a URL for a webhook)."""

    channel: Channel
    address: str


class PageBody(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a person is told. Resident-free on purpose (see the module docstring)."""

    alarm_id: str
    tenant: str
    kind: str
    priority: str
    home_id: str
    zone: str
    step: int  # 1-based, as people count
    round: int  # 0 for the first time through the chain
    ts_ms: int
    page_id: str  # what a reply must quote: the page it answers
    reply_topic: str = ""  # for handsets: where to publish accept/decline/en_route/on_site/resolve
    dispatched: bool = False  # an operator's dispatch outside the chain
    incident_id: str = ""  # set when the alarm is one of an incident's members


class Delivery(msgspec.Struct, frozen=True, omit_defaults=True):
    """One message to one recipient over one channel, with where to go next if it is
    not receipted in time. `id` is deterministic (alarm, step, round, turn, recipient,
    channel), so re-planning after a crash yields the same ids and the outbox and the
    timeline can de-duplicate by it."""

    id: str
    page_id: str  # shared by every channel of one recipient's page (fallbacks included)
    alarm_id: str
    tenant: str
    channel: Channel
    address: str
    recipient: str  # a staff id, "relative:<index>", "webhook:<index>" or "console"
    body: PageBody
    receipt_within_ms: int  # no receipt by then: fall back to `fallback[0]`
    fallback: tuple[Contact, ...] = ()  # the recipient's further contacts, in their order
    attempt: int = 0  # 0 for the first channel, 1 for the first fallback, ...


class Outcome(StrEnum):
    DELIVERED = "delivered"  # the peer confirmed it (PUBACK, 2xx, 250, gateway accepted)
    FAILED = "failed"  # this try failed; it may be retried
    DEAD = "dead"  # the last try failed; dead-lettered
    FELL_BACK = "fell_back"  # no receipt in time: the next channel was used
    CANCELLED = "cancelled"  # no longer wanted (the alarm was taken, cleared or moved on): not sent


class Receipt(msgspec.Struct, frozen=True, omit_defaults=True):
    """One attempt, as the timeline records it: channel, address, outcome, duration."""

    delivery_id: str
    channel: Channel
    address: str
    outcome: Outcome
    duration_ms: int
    attempt: int = 0
    detail: str = ""  # the peer's answer or the error, without personal data
