"""One encoder and one decoder per stored record, used by its writer and its reader alike.

A record written in one module and picked apart by hand in another drifts: a field
renamed on one side is a KeyError on the other, found in production. Each record kept in
Redis by more than one module is defined here once, with the reason for its shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

AUDIT_MAXLEN = 1_000_000


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An entry of a tenant's event log (`rc:{tenant}:events`): flat stream fields, so
    the rule processor reads a batch without a JSON decode per event."""

    device: str
    id: str
    type: str
    ts: int  # the engine's time for the event (see ingest.pipeline.engine_time)
    dts: int  # the device's own time
    recv: int  # when the centre received it
    value: float | None = None
    data: bytes | None = None  # the `data` object as JSON, kept as sent

    def fields(self) -> list[Any]:
        """Stream fields as a flat name, value list (the shape XADD and our Lua take)."""
        out: list[Any] = ["device", self.device, "id", self.id, "type", self.type]
        out += ["ts", self.ts, "dts", self.dts, "recv", self.recv]
        if self.value is not None:
            out += ["value", repr(self.value)]
        if self.data:
            out += ["data", self.data]
        return out

    @classmethod
    def decode(cls, fields: dict[bytes, bytes]) -> EventRecord:
        """Raises KeyError or ValueError for an entry that is not an event record."""
        value = fields.get(b"value")
        return cls(
            device=fields[b"device"].decode(),
            id=fields[b"id"].decode(),
            type=fields[b"type"].decode(),
            ts=int(fields[b"ts"]),
            dts=int(fields.get(b"dts", fields[b"ts"])),
            recv=int(fields.get(b"recv", 0)),
            value=float(value) if value is not None else None,
            data=fields.get(b"data"),
        )


class StatusRecord(msgspec.Struct, frozen=True):
    """A device's latest retained status in `rc:{tenant}:device-status` (a hash field)."""

    online: bool
    battery: int | None
    ts: int | None  # the device's time of the status, if it sent one
    recv: int

    def encode(self) -> bytes:
        return msgspec.json.encode(self)

    @property
    def at_ms(self) -> int:
        return self.ts or self.recv


_status_decoder = msgspec.json.Decoder(StatusRecord)


def decode_status_record(raw: bytes) -> StatusRecord:
    return _status_decoder.decode(raw)


def feed_entry(alarm_view_json: bytes) -> dict[str, bytes]:
    """An alarm change for the console feed (`rc:feed`): the alarm's view, as JSON."""
    return {"alarm": alarm_view_json}


def feed_alarm_json(fields: dict[bytes, bytes]) -> str:
    return fields[b"alarm"].decode()


def audit_record(ts_ms: int, user: str, action: str, role: str | None = None, **detail: str) -> dict[str, Any]:
    """An audit entry (`rc:audit`): who did what, when; `detail` names the alarm or home."""
    record: dict[str, Any] = {"ts": ts_ms, "user": user, "action": action}
    if role is not None:
        record["role"] = role
    return {**record, **detail}
