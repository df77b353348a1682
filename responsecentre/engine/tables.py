"""A RulePack compiled to flat numpy tables, and the array types that go in and out.

The kernels cannot walk Python objects, so a pack becomes a handful of per-rule columns
plus a CSR index `type -> rules`: for an event of type t the rules to run are
`type_rules[type_ptr[t]:type_ptr[t + 1]]`, in pack order, each once even if t is in both
its `when` and its `unless`. Per-rule type sets are int64 bitmasks over contract type ids
(21 types fit), so "is t in when" is one AND.

`EventBatch` and `Triggers` live here, not in engine.py, because both engines speak them:
the reference interpreter must not pull in the numba module to share a dataclass.
"""

from __future__ import annotations

import hashlib
import numbers
import struct
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeAlias

import numpy as np

from responsecentre.contract import ENGINE_TYPES, TYPE_ID
from responsecentre.engine.kernels import (
    ACTION_CANCEL,
    ACTION_CLEAR,
    ACTION_RAISE,
    KIND_HYSTERESIS,
    KIND_MATCH,
    KIND_NOT_FOLLOWED,
    KIND_SUPERVISION,
    KIND_THRESHOLD,
    NO_DUE,
    NO_SEEN,
    OP_EQ,
    OP_GE,
    OP_GT,
    OP_LE,
    OP_LT,
    SCOPE_DEVICE,
    SCOPE_HOME,
)
from responsecentre.engine.rules import MAX_DURATION_MS, Op, RuleKind, RulePack

__all__ = [
    "ACTIONS",
    "INT64_MIN",
    "MAX_TS",
    "OFFLINE_TYPES",
    "EventBatch",
    "EventRow",
    "SnapshotState",
    "Tables",
    "TriggerRow",
    "Triggers",
    "check_device_home",
    "check_intervals",
    "check_now",
    "compile_tables",
    "decode_snapshot",
    "device_layout",
    "encode_snapshot",
    "slot_layout",
    "supervision_start",
]

# Event times are epoch milliseconds in [0, MAX_TS]. 2**53 ms is ~285,000 years: no real
# time is refused, and `ts + within` can never reach the kernels' NO_DUE sentinel.
MAX_TS = 2**53

_KIND = {RuleKind.MATCH: KIND_MATCH, RuleKind.THRESHOLD: KIND_THRESHOLD}
_KIND[RuleKind.NOT_FOLLOWED] = KIND_NOT_FOLLOWED
_KIND[RuleKind.HYSTERESIS] = KIND_HYSTERESIS
_KIND[RuleKind.SUPERVISION] = KIND_SUPERVISION

# The event types that make a supervise rule raise at once (a device's Last Will or its
# `online: false`); every other type is a sign of life. Kept in the rule's `unless_mask`.
OFFLINE_TYPES = ("device.offline",)
_ACTION = {"raise": ACTION_RAISE, "clear": ACTION_CLEAR}

# The `action` output column's codes by name, for the shell and for tests.
ACTIONS = {ACTION_RAISE: "raise", ACTION_CLEAR: "clear", ACTION_CANCEL: "cancel"}
_OP = {Op.LT: OP_LT, Op.LE: OP_LE, Op.GT: OP_GT, Op.GE: OP_GE, Op.EQ: OP_EQ}
_SCOPE = {"device": SCOPE_DEVICE, "home": SCOPE_HOME}

assert len(ENGINE_TYPES) <= 63, "type bitmasks are int64"


@dataclass(frozen=True, eq=False)
class Tables:
    """The compiled form of a RulePack: read-only arrays, one row per rule unless noted."""

    type_ptr: np.ndarray  # int32[n_types + 1]: CSR row pointers by event type id
    type_rules: np.ndarray  # int32[nnz]: rule indices, pack order within a type
    kind: np.ndarray  # int8: KIND_* code
    when_mask: np.ndarray  # int64: bit t set if type t is in `when`
    unless_mask: np.ndarray  # int64: bit t set if type t is in `unless` (supervision: OFFLINE_TYPES)
    op: np.ndarray  # int8: OP_* code (threshold rules; 0 otherwise)
    threshold: np.ndarray  # float64 (threshold rules; 0.0 otherwise)
    within_ms: np.ndarray  # int64 (not-followed rules; 0 otherwise)
    scope: np.ndarray  # int8: SCOPE_* code
    action: np.ndarray  # int8: ACTION_RAISE or ACTION_CLEAR, what a firing decides
    clear_op: np.ndarray  # int8: OP_* code of a hysteresis rule's clearing bound (0 otherwise)
    clear_threshold: np.ndarray  # float64 (hysteresis rules; 0.0 otherwise)
    cancel_mask: np.ndarray  # int64: bit t set if type t is the resident's cancel of the rule
    cancel_within_ms: np.ndarray  # int64 (rules with a cancel; 0 otherwise)
    max_rules_per_type: int  # sizes the process kernel's output buffer
    fingerprint: bytes  # sha256 of everything above: a snapshot belongs to one fingerprint

    @property
    def n_rules(self) -> int:
        return int(self.kind.shape[0])

    def kernel_args(self) -> tuple[np.ndarray, ...]:
        """The `tables` tuple of kernels.py, in its order."""
        return (
            self.type_ptr,
            self.type_rules,
            self.kind,
            self.when_mask,
            self.unless_mask,
            self.op,
            self.threshold,
            self.within_ms,
            self.scope,
            self.action,
            self.clear_op,
            self.clear_threshold,
            self.cancel_mask,
            self.cancel_within_ms,
        )


def compile_tables(pack: RulePack) -> Tables:
    """Flatten a pack into kernel tables (pure; the same pack gives the same fingerprint)."""
    n = len(pack.rules)
    kind = np.zeros(n, np.int8)
    when_mask = np.zeros(n, np.int64)
    unless_mask = np.zeros(n, np.int64)
    op = np.zeros(n, np.int8)
    threshold = np.zeros(n, np.float64)
    within_ms = np.zeros(n, np.int64)
    scope = np.zeros(n, np.int8)
    action = np.zeros(n, np.int8)
    clear_op = np.zeros(n, np.int8)
    clear_threshold = np.zeros(n, np.float64)
    cancel_mask = np.zeros(n, np.int64)
    cancel_within_ms = np.zeros(n, np.int64)
    by_type: list[list[int]] = [[] for _ in ENGINE_TYPES]
    for r, rule in enumerate(pack.rules):
        kind[r] = _KIND[rule.kind]
        when_mask[r] = _mask(rule.when)
        unless_mask[r] = _mask(OFFLINE_TYPES if rule.kind is RuleKind.SUPERVISION else rule.unless)
        if rule.op is not None and rule.threshold is not None:
            op[r] = _OP[rule.op]
            threshold[r] = rule.threshold
        within_ms[r] = rule.within_ms
        scope[r] = _SCOPE[rule.scope]
        action[r] = _ACTION[rule.action]
        if rule.clear_op is not None and rule.clear_threshold is not None:
            clear_op[r] = _OP[rule.clear_op]
            clear_threshold[r] = rule.clear_threshold
        cancel_mask[r] = _mask(rule.cancel_by)
        cancel_within_ms[r] = rule.cancel_within_ms
        for name in rule.types:
            by_type[TYPE_ID[name]].append(r)
    counts = np.array([len(rules) for rules in by_type], np.int32)
    type_ptr = np.zeros(len(ENGINE_TYPES) + 1, np.int32)
    np.cumsum(counts, out=type_ptr[1:])
    type_rules = np.array([r for rules in by_type for r in rules], np.int32)
    arrays = {
        "type_ptr": type_ptr,
        "type_rules": type_rules,
        "kind": kind,
        "when_mask": when_mask,
        "unless_mask": unless_mask,
        "op": op,
        "threshold": threshold,
        "within_ms": within_ms,
        "scope": scope,
        "action": action,
        "clear_op": clear_op,
        "clear_threshold": clear_threshold,
        "cancel_mask": cancel_mask,
        "cancel_within_ms": cancel_within_ms,
    }
    digest = hashlib.sha256(b"responsecentre-engine-tables-v3\n")
    digest.update("\n".join(ENGINE_TYPES).encode())
    for name, array in arrays.items():
        digest.update(f"\n{name}:{array.dtype.str}:{array.shape}\n".encode())
        digest.update(array.tobytes())
        array.flags.writeable = False
    return Tables(
        **arrays,
        max_rules_per_type=int(counts.max(initial=0)),
        fingerprint=digest.digest(),
    )


def slot_layout(tables: Tables, n_devices: int, n_homes: int) -> tuple[np.ndarray, np.ndarray]:
    """(slot_offset, slot_count) per rule: each not-followed rule owns a block of slots,
    one per device or per home, in rule order; other rules own none.

    The layout depends on the directory's size, not only on the pack, which is why it is
    not part of `Tables` and is rebuilt on `Engine.resize`.
    """
    count = np.where(
        tables.kind == KIND_NOT_FOLLOWED,
        np.where(tables.scope == SCOPE_HOME, n_homes, n_devices),
        0,
    ).astype(np.int64)
    return _offsets(count), count


def device_layout(owns: np.ndarray, n_devices: int) -> tuple[np.ndarray, np.ndarray]:
    """(offset, count) per rule for per-device state: a block of `n_devices` entries for
    each rule where `owns` is true (hysteresis flags, cancel windows), none for others."""
    count = np.where(owns, n_devices, 0).astype(np.int64)
    return _offsets(count), count


def _offsets(count: np.ndarray) -> np.ndarray:
    offset = np.zeros(count.shape[0], np.int64)
    if count.shape[0]:
        np.cumsum(count[:-1], out=offset[1:])
    return offset


INT64_MIN = int(np.iinfo(np.int64).min)


def check_intervals(intervals: np.ndarray | None, n_devices: int) -> np.ndarray:
    """Validate the supervision interval per device (ms, 0: not supervised); return a
    read-only int64 copy the engine owns. None means no device is supervised."""
    if intervals is None:
        owned = np.zeros(n_devices, np.int64)
    else:
        if not isinstance(intervals, np.ndarray) or intervals.ndim != 1:
            raise TypeError("supervision_ms must be a 1-D numpy integer array")
        if intervals.dtype.kind not in "iu":
            raise TypeError(f"supervision_ms must be an integer array, not {intervals.dtype}")
        if intervals.shape[0] != n_devices:
            raise ValueError(f"supervision_ms has {intervals.shape[0]} entries for {n_devices} devices")
        if n_devices and (intervals.min() < 0 or intervals.max() > MAX_DURATION_MS):
            raise ValueError("supervision_ms holds an interval outside 0..365d")
        owned = np.array(intervals, dtype=np.int64, copy=True)
    owned.flags.writeable = False
    return owned


def supervision_start(now: int) -> int:
    """Where a sweep at `now` starts the silence clock of a device never heard from: now,
    clamped into the range of event times (so that `start + interval` cannot overflow)."""
    return max(0, min(now, MAX_TS))


def check_device_home(device_home: np.ndarray, at_least: int = 0) -> np.ndarray:
    """Validate the device -> home map; return a read-only int32 copy the engine owns.

    A copy, so that the caller mutating its array cannot change homes behind the engine's
    back; read-only, so that the kernels see a single array type (numba compiles one
    specialisation per type).
    """
    if not isinstance(device_home, np.ndarray) or device_home.ndim != 1:
        raise TypeError("device_home must be a 1-D numpy integer array")
    if device_home.dtype.kind not in "iu":
        raise TypeError(f"device_home must be an integer array, not {device_home.dtype}")
    if device_home.shape[0] < at_least:
        raise ValueError(
            f"device_home has {device_home.shape[0]} devices; the engine already has "
            f"{at_least} and cannot forget devices that may hold state"
        )
    if device_home.shape[0] and (device_home.min() < 0 or device_home.max() >= np.iinfo(np.int32).max):
        raise ValueError("device_home holds a home index outside 0..2**31-2")
    owned = np.array(device_home, dtype=np.int32, copy=True)
    owned.flags.writeable = False
    return owned


def check_now(now_ms: int) -> int:
    """Validate a sweep time; clamp it into the range the kernels compare against."""
    if isinstance(now_ms, bool) or not isinstance(now_ms, numbers.Integral):
        raise TypeError(f"now_ms must be an integer (epoch milliseconds), not {now_ms!r}")
    return max(INT64_MIN, min(int(now_ms), NO_DUE - 1))


def _mask(names: tuple[str, ...]) -> int:
    mask = 0
    for name in names:
        mask |= 1 << TYPE_ID[name]
    return mask


# (type name or id, device, ts, value or None, seq): one event, for EventBatch.of.
EventRow: TypeAlias = tuple[str | int, int, int, float | None, int]

_BATCH_DTYPES: dict[str, tuple[np.dtype[Any], ...]] = {
    "type_id": (np.dtype(np.int16), np.dtype(np.int32)),
    "device": (np.dtype(np.int32),),
    "ts": (np.dtype(np.int64),),
    "value": (np.dtype(np.float64),),
    "has_value": (np.dtype(np.bool_),),
    "seq": (np.dtype(np.int64),),
}


@dataclass(frozen=True, eq=False)
class EventBatch:
    """Events in the order the engine must see them, one column per field.

    `type_id` indexes contract.EVENT_TYPES, `device` is the engine's device index (its home
    comes from the engine's `device_home`), `ts` is epoch ms, `value` counts only where
    `has_value`, and `seq` is the shell's opaque, unique id of the event (it comes back as
    a trigger's `origin`).
    """

    type_id: np.ndarray  # int16 or int32
    device: np.ndarray  # int32
    ts: np.ndarray  # int64
    value: np.ndarray  # float64
    has_value: np.ndarray  # bool
    seq: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.type_id)

    @classmethod
    def of(cls, rows: Sequence[EventRow]) -> EventBatch:
        """Build a batch from (type name or id, device, ts, value or None, seq) rows."""
        types = [TYPE_ID[t] if isinstance(t, str) else t for t, *_ in rows]
        return cls(
            type_id=np.array(types, np.int32),
            device=np.array([row[1] for row in rows], np.int32),
            ts=np.array([row[2] for row in rows], np.int64),
            value=np.array([0.0 if row[3] is None else row[3] for row in rows], np.float64),
            has_value=np.array([row[3] is not None for row in rows], np.bool_),
            seq=np.array([row[4] for row in rows], np.int64),
        )

    def checked(self, n_devices: int) -> tuple[np.ndarray, ...]:
        """Validate against an engine with `n_devices` devices; return the kernel tuple.

        The kernels do no bounds checks (that is what makes them fast), so everything that
        would index out of range or overflow is refused here: TypeError for a wrong dtype
        or shape, ValueError for mismatched lengths or values out of range.
        """
        columns = []
        for field in fields(self):
            array = getattr(self, field.name)
            if not isinstance(array, np.ndarray) or array.ndim != 1:
                raise TypeError(f"EventBatch.{field.name} must be a 1-D numpy array")
            allowed = _BATCH_DTYPES[field.name]
            if array.dtype not in allowed:
                names = " or ".join(str(d) for d in allowed)
                raise TypeError(f"EventBatch.{field.name} must be {names}, not {array.dtype}")
            columns.append(np.ascontiguousarray(array))
        n = columns[0].shape[0]
        if any(column.shape[0] != n for column in columns):
            lengths = {f.name: c.shape[0] for f, c in zip(fields(self), columns, strict=True)}
            raise ValueError(f"EventBatch columns differ in length: {lengths}")
        type_id, device, ts = columns[0].astype(np.int32, copy=False), columns[1], columns[2]
        if n:
            if type_id.min() < 0 or type_id.max() >= len(ENGINE_TYPES):
                raise ValueError(f"EventBatch.type_id outside 0..{len(ENGINE_TYPES) - 1}")
            if device.min() < 0 or device.max() >= n_devices:
                raise ValueError(f"EventBatch.device outside 0..{n_devices - 1}")
            if ts.min() < 0 or ts.max() > MAX_TS:
                raise ValueError(f"EventBatch.ts outside 0..{MAX_TS} (epoch milliseconds)")
        return (type_id, device, ts, columns[3], columns[4], columns[5])


_TRIGGER_DTYPES = {
    "rule": np.int32,
    "device": np.int32,
    "home": np.int32,
    "ts": np.int64,
    "origin": np.int64,
    "event": np.int32,
    "action": np.int8,
}

TriggerRow: TypeAlias = tuple[int, int, int, int, int, int, int]


@dataclass(frozen=True, eq=False)
class Triggers:
    """Rule firings, one row per trigger, in the order the engine produced them.

    `rule` indexes `pack.rules`; `device` is -1 for a home-scoped deadline; `ts` is the
    event's time, or the deadline for a deadline; `origin` is the `seq` of the event that
    matched or armed the deadline (the shell's idempotency key); `event` is the row in the
    processed batch, or -1 for a deadline; `action` is ACTION_RAISE, ACTION_CLEAR or
    ACTION_CANCEL (names in `ACTIONS`).
    """

    rule: np.ndarray  # int32
    device: np.ndarray  # int32
    home: np.ndarray  # int32
    ts: np.ndarray  # int64
    origin: np.ndarray  # int64
    event: np.ndarray  # int32
    action: np.ndarray  # int8

    def __len__(self) -> int:
        return int(self.rule.shape[0])

    @classmethod
    def allocate(cls, n: int) -> Triggers:
        """Uninitialised columns for `n` rows: a kernel output buffer."""
        return cls(**{name: np.empty(n, dtype) for name, dtype in _TRIGGER_DTYPES.items()})

    @classmethod
    def from_rows(cls, rows: list[TriggerRow]) -> Triggers:
        """Build from (rule, device, home, ts, origin, event, action) tuples."""
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in _TRIGGER_DTYPES]
        return cls(
            **{
                name: np.array(column, dtype)
                for (name, dtype), column in zip(_TRIGGER_DTYPES.items(), columns, strict=True)
            }
        )

    def columns(self) -> tuple[np.ndarray, ...]:
        """The `out` tuple of kernels.py."""
        return (self.rule, self.device, self.home, self.ts, self.origin, self.event, self.action)

    def head(self, n: int) -> Triggers:
        """A copy of the first `n` rows (the buffer they come from is reused)."""
        return Triggers(*(column[:n].copy() for column in self.columns()))

    def rows(self) -> list[TriggerRow]:
        """Plain (rule, device, home, ts, origin, event, action) tuples, for tests and logs."""
        return list(zip(*(column.tolist() for column in self.columns()), strict=True))


# -- snapshots ----------------------------------------------------------------------------
#
# Both engines write the same bytes for the same state (the differential test compares
# them), so either can restore the other's snapshot. Layout, little-endian:
#   header: magic (8 bytes), table fingerprint (32), n_devices (i64), n_homes (i64),
#           n pending (i64), n raised (i64), n last (i64)
#   pending slots in slot order, as four columns: rule (i32), entity (i32), due (i64),
#     origin (i64); entity is a device index or a home index (the rule's scope);
#   raised hysteresis flags in (rule, device) order: rule (i32), device (i32);
#   cancel windows in (rule, device) order: rule (i32), device (i32), last trigger ts (i64);
#   supervision in (rule, device) order, every device heard from or offline: rule (i32),
#     device (i32), last seen (i64, NO_SEEN if never), origin (i64), offline (u8).
# The supervision intervals are not in it: the shell gives them (directory and catalogue),
# so a changed interval applies to a restored engine at once.
# Sparse rather than dense: the set entries are few, and the format outlives the layouts,
# which change whenever devices are added.

_MAGIC = b"RCENGST3"
_HEADER = struct.Struct("<8s32sqqqqqq")


@dataclass(frozen=True, eq=False)
class SnapshotState:
    """The engine state a snapshot holds, as sparse columns (rule, entity or device, ...)."""

    rule: np.ndarray  # pending deadlines
    entity: np.ndarray
    due: np.ndarray
    origin: np.ndarray
    raised_rule: np.ndarray  # hysteresis rules in their raised state, per device
    raised_device: np.ndarray
    last_rule: np.ndarray  # the last trigger a resident's cancel may still refer to
    last_device: np.ndarray
    last_ts: np.ndarray
    sup_rule: np.ndarray  # supervision, per device heard from (or offline)
    sup_device: np.ndarray
    sup_last: np.ndarray
    sup_origin: np.ndarray
    sup_flag: np.ndarray


def encode_snapshot(tables: Tables, n_devices: int, n_homes: int, state: SnapshotState) -> bytes:
    """Sparse state columns (each group of equal length, in order) -> snapshot bytes."""
    n, n_raised, n_last = len(state.rule), len(state.raised_rule), len(state.last_rule)
    n_sup = len(state.sup_rule)
    return b"".join(
        (
            _HEADER.pack(_MAGIC, tables.fingerprint, n_devices, n_homes, n, n_raised, n_last, n_sup),
            np.asarray(state.rule, "<i4").tobytes(),
            np.asarray(state.entity, "<i4").tobytes(),
            np.asarray(state.due, "<i8").tobytes(),
            np.asarray(state.origin, "<i8").tobytes(),
            np.asarray(state.raised_rule, "<i4").tobytes(),
            np.asarray(state.raised_device, "<i4").tobytes(),
            np.asarray(state.last_rule, "<i4").tobytes(),
            np.asarray(state.last_device, "<i4").tobytes(),
            np.asarray(state.last_ts, "<i8").tobytes(),
            np.asarray(state.sup_rule, "<i4").tobytes(),
            np.asarray(state.sup_device, "<i4").tobytes(),
            np.asarray(state.sup_last, "<i8").tobytes(),
            np.asarray(state.sup_origin, "<i8").tobytes(),
            np.asarray(state.sup_flag, "u1").tobytes(),
        )
    )


def decode_snapshot(blob: bytes, tables: Tables, n_devices: int, n_homes: int) -> SnapshotState:
    """Snapshot bytes -> sparse state columns (int64), checked against `tables`.

    Raises ValueError when the snapshot belongs to other tables (a changed rule pack), is
    damaged, or names a device or home this engine does not have: restoring it would
    fire deadlines of rules that no longer mean the same thing.
    """
    if len(blob) < _HEADER.size:
        raise ValueError("engine snapshot is truncated")
    magic, fingerprint, _, _, n, n_raised, n_last, n_sup = _HEADER.unpack_from(blob)
    if magic != _MAGIC:
        raise ValueError("not an engine snapshot (bad magic)")
    if fingerprint != tables.fingerprint:
        raise ValueError("engine snapshot was taken with different rule tables")
    size = _HEADER.size + n * 24 + n_raised * 8 + n_last * 16 + n_sup * 25
    if min(n, n_raised, n_last, n_sup) < 0 or len(blob) != size:
        raise ValueError("engine snapshot is truncated or has trailing bytes")
    at = _HEADER.size

    def take(dtype: str, count: int) -> np.ndarray:
        nonlocal at
        column = np.frombuffer(blob, dtype, count, at).astype(np.int64)
        at += column.shape[0] * np.dtype(dtype).itemsize
        return column

    state = SnapshotState(
        rule=take("<i4", n),
        entity=take("<i4", n),
        due=take("<i8", n),
        origin=take("<i8", n),
        raised_rule=take("<i4", n_raised),
        raised_device=take("<i4", n_raised),
        last_rule=take("<i4", n_last),
        last_device=take("<i4", n_last),
        last_ts=take("<i8", n_last),
        sup_rule=take("<i4", n_sup),
        sup_device=take("<i4", n_sup),
        sup_last=take("<i8", n_sup),
        sup_origin=take("<i8", n_sup),
        sup_flag=take("u1", n_sup),
    )
    rule, entity, due = state.rule, state.entity, state.due
    if n:
        _check_rules(rule, tables, tables.kind == KIND_NOT_FOLLOWED)
        size = np.where(tables.scope[rule] == SCOPE_HOME, n_homes, n_devices)
        if entity.min() < 0 or np.any(entity >= size):
            raise ValueError("engine snapshot names a device or home this engine does not have")
        if due.min() < 0 or due.max() >= np.iinfo(np.int64).max:
            raise ValueError("engine snapshot holds an impossible deadline")
        _check_order(rule, entity)
    if n_raised:
        _check_rules(state.raised_rule, tables, tables.kind == KIND_HYSTERESIS)
        _check_devices(state.raised_device, n_devices)
        _check_order(state.raised_rule, state.raised_device)
    if n_last:
        _check_rules(state.last_rule, tables, tables.cancel_mask != 0)
        _check_devices(state.last_device, n_devices)
        _check_order(state.last_rule, state.last_device)
        if state.last_ts.min() < 0 or state.last_ts.max() > MAX_TS:
            raise ValueError("engine snapshot holds an impossible trigger time")
    if n_sup:
        _check_rules(state.sup_rule, tables, tables.kind == KIND_SUPERVISION)
        _check_devices(state.sup_device, n_devices)
        _check_order(state.sup_rule, state.sup_device)
        last, flag = state.sup_last, state.sup_flag
        if np.any((last != NO_SEEN) & ((last < 0) | (last > MAX_TS))):
            raise ValueError("engine snapshot holds an impossible last-seen time")
        if flag.max() > 1 or np.any((last == NO_SEEN) & (flag == 0)):
            raise ValueError("engine snapshot holds an impossible supervision entry")
    return state


def _check_rules(rule: np.ndarray, tables: Tables, stateful: np.ndarray) -> None:
    if rule.min() < 0 or rule.max() >= tables.n_rules:
        raise ValueError("engine snapshot names a rule the tables do not have")
    if not np.all(stateful[rule]):
        raise ValueError("engine snapshot holds state for a rule without state")


def _check_devices(device: np.ndarray, n_devices: int) -> None:
    if device.min() < 0 or device.max() >= n_devices:
        raise ValueError("engine snapshot names a device or home this engine does not have")


def _check_order(rule: np.ndarray, entity: np.ndarray) -> None:
    key = rule * (2**32) + entity
    if np.any(key[1:] <= key[:-1]):
        raise ValueError("engine snapshot slots are not in slot order")
