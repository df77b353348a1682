"""Each stored record has one encoder and one decoder; what one writes the other reads."""

from __future__ import annotations

import pytest

from responsecentre.store.records import EventRecord, StatusRecord, decode_status_record


def as_stream(fields: list) -> dict[bytes, bytes]:
    """What Redis gives back for XADD fields: bytes names and values."""
    pairs = zip(fields[::2], fields[1::2], strict=True)
    return {str(k).encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in pairs}


@pytest.mark.parametrize(
    "record",
    [
        EventRecord("h1-btn", "e1", "alarm.button", 1_795_000_000_000, 1_795_000_000_001, 1_795_000_000_002),
        EventRecord("h1-t", "ø-2", "temperature", 1, 2, 3, value=8.25, data=b'{"room":"kj\\u00f8kken"}'),
        EventRecord("h1-b", "3", "device.battery", 1, 2, 3, value=-0.0),
    ],
)
def test_an_event_record_round_trips(record: EventRecord) -> None:
    assert EventRecord.decode(as_stream(record.fields())) == record


def test_an_entry_that_is_no_event_record_is_refused() -> None:
    with pytest.raises(KeyError):
        EventRecord.decode({b"id": b"1", b"type": b"alarm.button", b"ts": b"1"})
    with pytest.raises(ValueError):
        EventRecord.decode({b"device": b"d", b"id": b"1", b"type": b"alarm.button", b"ts": b"soon"})


def test_a_status_record_round_trips() -> None:
    status = StatusRecord(online=False, battery=12, ts=None, recv=1_795_000_000_000)
    decoded = decode_status_record(status.encode())
    assert decoded == status and decoded.at_ms == 1_795_000_000_000
