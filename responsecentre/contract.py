"""The MQTT contract (v1) in one place.

Ingest validation, the simulator, the docs and the tests all read these names, so a
device that the simulator can drive is by construction a device that ingest accepts.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

import msgspec

PREFIX = "rc/v1"
MAX_PAYLOAD_BYTES = 4096
MAX_ID_LENGTH = 64
MAX_TOKEN_LENGTH = 64
# Deeper JSON than this is refused before it is decoded: a device has no use for it, and
# a recursive decoder given ~1,000 levels raises RecursionError instead of an answer.
MAX_NESTING = 16
# Epoch milliseconds the contract accepts, for integers and RFC 3339 strings alike.
MIN_TS_MS = 0  # 1970-01-01
MAX_TS_MS = 32503680000000 - 1  # the last millisecond of year 2999

# Every event type of contract v1. The order is part of the engine's compiled tables
# (type ids index into it): append new types at the end, never reorder.
EVENT_TYPES: tuple[str, ...] = (
    "alarm.button",
    "alarm.cancel",
    "fall.detected",
    "fall.cancelled",
    "door.opened",
    "door.closed",
    "bed.exit",
    "bed.enter",
    "motion.detected",
    "medication.due",
    "medication.taken",
    "medication.missed",
    "medication.empty",
    "smoke.detected",
    "water.leak",
    "temperature",
    "seizure.detected",
    "geofence.exit",
    "device.heartbeat",
    "device.battery",
    "device.tamper",
)
# Event types the centre itself writes into a tenant's event log, never a device: ingest
# records a change of a device's retained status (`online` true/false, or the Last Will)
# as one of these, in the same write, so that the rule engine sees status in log order
# and a replay after a crash sees it again. A device that sends one in an events payload
# is dead-lettered as `unknown_type`, like any type outside contract v1.
INTERNAL_TYPES: tuple[str, ...] = ("device.online", "device.offline")
# What the engine indexes: the contract's types, then the internal ones (ids appended,
# so the ids of the contract's types never move).
ENGINE_TYPES: tuple[str, ...] = EVENT_TYPES + INTERNAL_TYPES
TYPE_ID: dict[str, int] = {name: i for i, name in enumerate(ENGINE_TYPES)}
_DEVICE_TYPES = frozenset(EVENT_TYPES)

# Types whose `value` is required and numeric (the engine's thresholds read it).
VALUE_REQUIRED = frozenset({"temperature", "device.battery"})


class RejectReason(StrEnum):
    """Why an inbound message went to the dead-letter stream (a metric label, so few)."""

    OVERSIZED = "oversized"  # payload above MAX_PAYLOAD_BYTES
    MALFORMED_JSON = "malformed_json"  # not UTF-8 JSON at all
    SCHEMA = "schema"  # JSON, but a field is missing or of the wrong type
    UNKNOWN_TYPE = "unknown_type"  # `type` is not an event type of the contract
    BAD_TIMESTAMP = "bad_timestamp"  # `ts` is neither RFC 3339 nor epoch milliseconds
    BAD_TOPIC = "bad_topic"  # topic outside rc/v1/{tenant}/devices/{device_id}/events
    UNKNOWN_DEVICE = "unknown_device"  # topic names a device the centre does not know
    INTERNAL = "internal"  # our own failure on this message (a bug): kept, counted, loop goes on


class StatusPayload(msgspec.Struct, forbid_unknown_fields=False):
    """The retained body a device publishes on `.../status`; its Last Will sets online false."""

    online: bool
    ts: str | int | None = None
    battery: int | None = None


_status_decoder = msgspec.json.Decoder(StatusPayload)


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    tenant: str
    device_id: str
    online: bool
    battery: int | None
    ts_ms: int | None


class EventPayload(msgspec.Struct, forbid_unknown_fields=False):
    """The JSON body a device publishes on `.../events`."""

    id: str | int
    type: str
    ts: str | int
    value: float | None = None
    data: dict[str, Any] | None = None


_decoder = msgspec.json.Decoder(EventPayload)


@dataclass(frozen=True, slots=True)
class EventTopic:
    tenant: str
    device_id: str


@dataclass(frozen=True, slots=True)
class Event:
    """A validated device event. Tenant and device come from the topic, never the payload."""

    tenant: str
    device_id: str
    id: str
    type: str
    ts_ms: int  # the device's own time, epoch milliseconds
    value: float | None
    data: dict[str, Any] | None


class Rejected(Exception):
    """An inbound message that breaks the contract; `reason` is a metric label."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def events_topic(tenant: str, device_id: str) -> str:
    return f"{PREFIX}/{tenant}/devices/{device_id}/events"


def status_topic(tenant: str, device_id: str) -> str:
    return f"{PREFIX}/{tenant}/devices/{device_id}/status"


def alarm_topic(tenant: str, alarm_id: str) -> str:
    return f"{PREFIX}/{tenant}/alarms/{alarm_id}"


def page_topic(tenant: str, staff_id: str) -> str:
    return f"{PREFIX}/{tenant}/staff/{staff_id}/pages"


def replies_topic(tenant: str, staff_id: str) -> str:
    """A handset's answers to its pages (accept, decline, en_route, on_site, resolve)."""
    return f"{PREFIX}/{tenant}/staff/{staff_id}/replies"


def reply_outcome_topic(tenant: str, staff_id: str) -> str:
    """The centre's answer to each reply: taken, or rejected with the reason."""
    return f"{PREFIX}/{tenant}/staff/{staff_id}/replies/outcome"


REPLIES_SUBSCRIPTION = f"{PREFIX}/+/staff/+/replies"


EVENTS_SUBSCRIPTION = f"{PREFIX}/+/devices/+/events"
STATUS_SUBSCRIPTION = f"{PREFIX}/+/devices/+/status"
# What ingest subscribes to: everything under devices/, so a message on a malformed
# device topic (an extra level, say) is dead-lettered as bad_topic instead of vanishing.
DEVICES_SUBSCRIPTION = f"{PREFIX}/+/devices/#"


def _valid_token(token: str) -> bool:
    return 0 < len(token) <= MAX_TOKEN_LENGTH and token.isascii() and all(c.isalnum() or c in "-_." for c in token)


def parse_device_topic(topic: str, leaf: str) -> EventTopic:
    """rc/v1/{tenant}/devices/{device_id}/{leaf} -> tenant and device, or `Rejected`."""
    parts = topic.split("/")
    if (
        len(parts) != 6
        or f"{parts[0]}/{parts[1]}" != PREFIX
        or parts[3] != "devices"
        or parts[5] != leaf
        or not _valid_token(parts[2])
        or not _valid_token(parts[4])
    ):
        raise Rejected(
            RejectReason.BAD_TOPIC, f"topic {topic[:200]!r} is not {PREFIX}/{{tenant}}/devices/{{device_id}}/{leaf}"
        )
    return EventTopic(parts[2], parts[4])


def parse_events_topic(topic: str) -> EventTopic:
    return parse_device_topic(topic, "events")


def parse_status_topic(topic: str) -> EventTopic:
    return parse_device_topic(topic, "status")


def parse_ts(ts: str | int) -> int:
    """RFC 3339 string or epoch milliseconds -> epoch milliseconds."""
    if isinstance(ts, bool):
        raise Rejected(RejectReason.BAD_TIMESTAMP, "ts must be RFC 3339 or epoch milliseconds")
    if isinstance(ts, int):
        ms = ts
    else:
        try:
            text = ts.strip()
            if text.endswith(("Z", "z")):
                text = text[:-1] + "+00:00"
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            raise Rejected(RejectReason.BAD_TIMESTAMP, f"ts {ts[:40]!r} is not RFC 3339") from None
        if parsed.tzinfo is None:
            raise Rejected(RejectReason.BAD_TIMESTAMP, "ts must carry a UTC offset (e.g. Z)")
        try:
            ms = int(parsed.timestamp() * 1000)
        except (OverflowError, ValueError):  # year 1 with a positive offset lies before year 1
            raise Rejected(RejectReason.BAD_TIMESTAMP, f"ts {ts[:40]!r} is out of range") from None
    if not MIN_TS_MS <= ms <= MAX_TS_MS:
        raise Rejected(RejectReason.BAD_TIMESTAMP, f"ts {str(ts)[:40]} is out of range (years 1970 to 2999)")
    return ms


def decode_event(topic: str, payload: bytes) -> Event:
    """Validate one inbound message against contract v1; raise `Rejected` with the reason."""
    where = parse_events_topic(topic)
    body: EventPayload = _decode_body(payload, _decoder)
    if isinstance(body.id, bool) or body.id == "" or len(str(body.id)) > MAX_ID_LENGTH:
        raise Rejected(
            RejectReason.SCHEMA, f"id must be a non-empty string or integer of at most {MAX_ID_LENGTH} characters"
        )
    if body.type not in _DEVICE_TYPES:
        raise Rejected(RejectReason.UNKNOWN_TYPE, f"type {body.type[:60]!r} is not an event type of contract v1")
    value: float | None = None
    if body.value is not None:
        value = float(body.value)
        if not math.isfinite(value):
            raise Rejected(RejectReason.SCHEMA, "value must be a finite number")
    elif body.type in VALUE_REQUIRED:
        raise Rejected(RejectReason.SCHEMA, f"{body.type} requires a numeric value")
    return Event(
        tenant=where.tenant,
        device_id=where.device_id,
        id=str(body.id),
        type=body.type,
        ts_ms=parse_ts(body.ts),
        value=value,
        data=body.data,
    )


def format_ts(ts_ms: int) -> str:
    """Epoch milliseconds -> RFC 3339 UTC with milliseconds, the form the centre writes."""
    stamp = dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def encode_event(
    event_id: str | int,
    type_: str,
    ts_ms: int,
    value: float | None = None,
    data: dict[str, Any] | None = None,
) -> bytes:
    """The payload a device (or the simulator) publishes; `ts` as RFC 3339 UTC."""
    body: dict[str, Any] = {"id": event_id, "type": type_, "ts": format_ts(ts_ms)}
    if value is not None:
        body["value"] = value
    if data:
        body["data"] = data
    return msgspec.json.encode(body)


def nesting_depth(text: str) -> int:
    """How deep objects and arrays nest, skipping string contents; a flat scan, so a
    hostile payload costs one pass instead of a recursion per level."""
    depth = deepest = 0
    in_string = escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def _decode_body(payload: bytes, decoder: msgspec.json.Decoder[Any]) -> Any:
    """Size, then UTF-8 of the whole payload (unknown fields included: the contract says
    UTF-8 JSON, and msgspec would otherwise raise UnicodeDecodeError from deep inside or
    skip the bad bytes of a field it ignores), then depth, then the schema."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Rejected(RejectReason.OVERSIZED, f"payload is {len(payload)} bytes, the limit is {MAX_PAYLOAD_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(RejectReason.MALFORMED_JSON, f"payload is not UTF-8 (byte {exc.start})") from None
    if text.count("[") + text.count("{") > MAX_NESTING and nesting_depth(text) > MAX_NESTING:
        raise Rejected(RejectReason.SCHEMA, f"JSON nests deeper than {MAX_NESTING} levels")
    try:
        return decoder.decode(text)
    except msgspec.ValidationError as exc:
        raise Rejected(RejectReason.SCHEMA, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise Rejected(RejectReason.MALFORMED_JSON, str(exc)) from None
    except (RecursionError, UnicodeError, OverflowError) as exc:  # belt and braces: never an escape
        raise Rejected(RejectReason.MALFORMED_JSON, f"{type(exc).__name__}: {exc}"[:200]) from None


def decode_status(topic: str, payload: bytes) -> DeviceStatus:
    """Validate a retained device status; raise `Rejected` with the reason."""
    where = parse_device_topic(topic, "status")
    body: StatusPayload = _decode_body(payload, _status_decoder)
    if body.battery is not None and not 0 <= body.battery <= 100:
        raise Rejected(RejectReason.SCHEMA, "battery must be 0-100")
    ts = parse_ts(body.ts) if body.ts is not None else None
    return DeviceStatus(where.tenant, where.device_id, body.online, body.battery, ts)


def encode_status(online: bool, battery: int | None, ts_ms: int) -> bytes:
    """The retained status body of contract v1 (`battery` left out when unknown)."""
    body: dict[str, Any] = {"online": online}
    if battery is not None:
        body["battery"] = battery
    body["ts"] = format_ts(ts_ms)
    return msgspec.json.encode(body)


# -- a handset's answers to its pages ----------------------------------------------------

REPLY_ANSWERS = ("accept", "decline", "en_route", "on_site", "resolve")


class ReplyPayload(msgspec.Struct, forbid_unknown_fields=True):
    """What a handset publishes on rc/v1/{tenant}/staff/{staff_id}/replies. The person is
    the topic's (the broker lets a handset write only its own), never the payload's. No
    free-text note: it may describe the resident, and MQTT payloads carry no personal
    data; notes are written through the API."""

    alarm_id: str
    answer: Literal["accept", "decline", "en_route", "on_site", "resolve"]
    page_id: str | None = None  # the page answered (accept/decline); default: the latest to this person
    code: str | None = None  # closing code, for resolve
    reply_id: str | None = None  # echoed in the outcome, so a handset can match it to its reply


@dataclass(frozen=True, slots=True)
class Reply:
    tenant: str
    staff_id: str
    body: ReplyPayload


_reply_decoder = msgspec.json.Decoder(ReplyPayload)


def parse_replies_topic(topic: str) -> tuple[str, str]:
    """rc/v1/{tenant}/staff/{staff_id}/replies -> (tenant, staff id), or `Rejected`."""
    parts = topic.split("/")
    if (
        len(parts) != 6
        or f"{parts[0]}/{parts[1]}" != PREFIX
        or parts[3] != "staff"
        or parts[5] != "replies"
        or not _valid_token(parts[2])
        or not _valid_token(parts[4])
    ):
        raise Rejected(
            RejectReason.BAD_TOPIC, f"topic {topic[:200]!r} is not {PREFIX}/{{tenant}}/staff/{{staff_id}}/replies"
        )
    return parts[2], parts[4]


def decode_reply(topic: str, payload: bytes) -> Reply:
    """Validate a handset's reply; raise `Rejected` with the reason."""
    tenant, staff_id = parse_replies_topic(topic)
    body: ReplyPayload = _decode_body(payload, _reply_decoder)
    for name, value in (("alarm_id", body.alarm_id), ("page_id", body.page_id), ("reply_id", body.reply_id)):
        if value is not None and not 0 < len(value) <= 200:
            raise Rejected(RejectReason.SCHEMA, f"{name} must have 1-200 characters")
    if body.answer == "resolve" and not body.code:
        raise Rejected(RejectReason.SCHEMA, "a resolve needs a closing code (`code`)")
    return Reply(tenant, staff_id, body)


def encode_reply_outcome(
    alarm_id: str | None,
    answer: str | None,
    outcome: str,
    reason: str,
    ts_ms: int,
    reply_id: str | None = None,
    state: str | None = None,
) -> bytes:
    """The centre's answer on .../replies/outcome: `outcome` is `taken` or the code of the
    rejection (not_paged, already_answered, already_taken, not_live, not_yours, closed, bad_state,
    unknown_alarm, malformed_json, schema, oversized, error); `reason` is for a person."""
    body: dict[str, Any] = {"outcome": outcome, "reason": reason, "ts": format_ts(ts_ms)}
    for key, value in (("alarm_id", alarm_id), ("answer", answer), ("reply_id", reply_id), ("state", state)):
        if value is not None:
            body[key] = value
    return msgspec.json.encode(body)
