"""Contract v1 validation: every way a message can be wrong has its own reason."""

from __future__ import annotations

import pytest

from responsecentre.contract import (
    Rejected,
    RejectReason,
    decode_event,
    decode_status,
    encode_event,
    nesting_depth,
    parse_ts,
)

T = "rc/v1/vestby/devices/h01-btn/events"


def test_a_good_event_round_trips() -> None:
    event = decode_event(T, encode_event("e1", "temperature", 1_732_240_000_123, 8.5, {"room": "kitchen"}))
    assert (event.tenant, event.device_id, event.id, event.type) == ("vestby", "h01-btn", "e1", "temperature")
    assert event.ts_ms == 1_732_240_000_123 and event.value == 8.5 and event.data == {"room": "kitchen"}


@pytest.mark.parametrize(
    ("ts", "ms"),
    [
        ("2026-11-22T03:12:45.120Z", 1795317165120),
        ("2026-11-22T04:12:45.120+01:00", 1795317165120),
        (1795317165120, 1795317165120),
    ],
)
def test_timestamps(ts: str | int, ms: int) -> None:
    assert parse_ts(ts) == ms


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (T, b"{", RejectReason.MALFORMED_JSON),
        (T, b"\xff\xfe", RejectReason.MALFORMED_JSON),
        (T, b"[]", RejectReason.SCHEMA),
        (T, b'{"type": "alarm.button", "ts": 1}', RejectReason.SCHEMA),
        (T, b'{"id": "a", "type": "alarm.button", "ts": 1, "value": "high"}', RejectReason.SCHEMA),
        (T, b'{"id": "", "type": "alarm.button", "ts": 1}', RejectReason.SCHEMA),
        (T, b'{"id": "a", "type": "temperature", "ts": 1}', RejectReason.SCHEMA),
        (T, b'{"id": "a", "type": "nope", "ts": 1}', RejectReason.UNKNOWN_TYPE),
        (T, b'{"id": "a", "type": "alarm.button", "ts": "2026-11-22T03:12:45"}', RejectReason.BAD_TIMESTAMP),
        (T, b'{"id": "a", "type": "alarm.button", "ts": -5}', RejectReason.BAD_TIMESTAMP),
        (T, b'{"id": "a", "type": "alarm.button", "ts": 1, "x": "' + b"y" * 5000 + b'"}', RejectReason.OVERSIZED),
        ("rc/v1/vestby/devices/h01-btn/status", b"{}", RejectReason.BAD_TOPIC),
        ("rc/v1/vestby/devices/a+b/events", b"{}", RejectReason.BAD_TOPIC),
        ("rc/v2/vestby/devices/x/events", b"{}", RejectReason.BAD_TOPIC),
    ],
)
def test_bad_messages_are_rejected_with_a_reason(topic: str, payload: bytes, reason: RejectReason) -> None:
    with pytest.raises(Rejected) as info:
        decode_event(topic, payload)
    assert info.value.reason == reason and info.value.detail


# Each of these once raised past `Rejected` (UnicodeDecodeError, RecursionError) and, at
# QoS 1, killed the service on every restart: a crash loop from one small message.
DEEP = b"{" + b'"a":{' * 1000 + b"}" * 1000 + b"}"
POISON = [
    b'{"id":"\xc3\x28","type":"alarm.button","ts":1}',
    b'{"id":"a","type":"alarm.\xc3\x28","ts":1}',
    b'{"id":"a","type":"alarm.button","ts":"2026-11-22T03:12:45\xc3\x28Z"}',
    b'{"id":"a","type":"alarm.button","ts":1,"data":{"room":"\xff"}}',
    b'{"id":"a","type":"alarm.button","ts":1,"unknown":"\xed\xa0\x80"}',
    b'{"id":"a","type":"alarm.button","ts":1,"data":' + b'{"a":' * 1000 + b"1" + b"}" * 1000 + b"}",
    b'{"id":"a","type":"alarm.button","ts":1,"data":{"a":' + b"[" * 1000 + b"]" * 1000 + b"}}",
    b'{"id":"a","type":"alarm.button","ts":1,"data":{"a":"\\ud800"}}',
    DEEP,
]


@pytest.mark.parametrize("payload", POISON, ids=range(len(POISON)))
def test_poison_events_are_rejected_not_raised(payload: bytes) -> None:
    with pytest.raises(Rejected) as info:
        decode_event(T, payload[:4096])
    assert info.value.reason in (RejectReason.MALFORMED_JSON, RejectReason.SCHEMA, RejectReason.OVERSIZED)


@pytest.mark.parametrize(
    "payload",
    [b'{"online":true,"ts":"\xc3\x28"}', b'{"online":true,"x":' + b"[" * 1000 + b"]" * 1000 + b"}", DEEP],
    ids=["utf8", "deep-array", "deep-object"],
)
def test_poison_statuses_are_rejected_not_raised(payload: bytes) -> None:
    with pytest.raises(Rejected):
        decode_status("rc/v1/vestby/devices/h01-btn/status", payload[:4096])


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59Z", -1])
def test_timestamps_outside_1970_to_2999_are_refused(ts: str | int) -> None:
    with pytest.raises(Rejected) as info:
        parse_ts(ts)
    assert info.value.reason == RejectReason.BAD_TIMESTAMP


def test_nesting_depth_skips_strings() -> None:
    assert nesting_depth('{"a": "[[[{{{\\"[[["}') == 1
    assert nesting_depth('{"a": [[{"b": []}]]}') == 5
