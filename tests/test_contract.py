"""Contract v1 validation: every way a message can be wrong has its own reason."""

from __future__ import annotations

import pytest

from responsecentre.contract import Rejected, RejectReason, decode_event, encode_event, parse_ts

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
