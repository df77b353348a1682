"""A RulePack compiled to flat numpy tables, and the array types that go in and out.

The kernels cannot walk Python objects, so a pack becomes a handful of per-rule columns
plus a CSR index `type -> rules`: for an event of type t the rules to run are
`type_rules[type_ptr[t]:type_ptr[t + 1]]`, in pack order, each once even if t is in both
its `when` and its `unless`. Per-rule type sets are int64 bitmasks over contract type ids
(21 types fit), so "is t in when" is one AND; a rule's `where` is a bitmask over the
pack's conditions, tested against the event's `cond` column the same way.

What a home may override (numbers, delays, counts, windows; homes.py) is not a column but
a 2-D array [profile, rule]: the kernels look up the event's home's profile once per event
and read `threshold[p, r]`. What decides the kind of state a rule keeps (its kind, scope,
types, comparison words, `where`) is the same in every profile and stays 1-D.

`EventBatch` and `Triggers` live here, not in engine.py, because both engines speak them:
the reference interpreter must not pull in the numba module to share a dataclass.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from responsecentre.contract import ENGINE_TYPES, TYPE_ID
from responsecentre.engine.kernels import (
    ACTION_CANCEL,
    ACTION_CLEAR,
    ACTION_RAISE,
    DO_ALIVE,
    DO_CANCEL,
    DO_COUNT,
    DO_HYSTERESIS,
    DO_INACTIVE,
    DO_MATCH,
    DO_NOT_FOLLOWED,
    DO_OFFLINE,
    DO_THRESHOLD,
    KIND_COUNT,
    KIND_HYSTERESIS,
    KIND_INACTIVE,
    KIND_MATCH,
    KIND_NOT_FOLLOWED,
    KIND_SUPERVISION,
    KIND_THRESHOLD,
    NO_DUE,
    OP_EQ,
    OP_GE,
    OP_GT,
    OP_LE,
    OP_LT,
    SCOPE_DEVICE,
    SCOPE_HOME,
)
from responsecentre.engine.rules import MAX_DURATION_MS, Op, Rule, RuleKind, RulePack

__all__ = [
    "ACTIONS",
    "INT64_MIN",
    "MAX_TS",
    "OFFLINE_TYPES",
    "EventBatch",
    "EventRow",
    "Layout",
    "ReloadReport",
    "Tables",
    "TriggerRow",
    "Triggers",
    "check_device_home",
    "check_intervals",
    "check_now",
    "compile_tables",
    "layout",
    "supervision_start",
]

# Event times are epoch milliseconds in [0, MAX_TS]. 2**53 ms is ~285,000 years: no real
# time is refused, and `ts + within` can never reach the kernels' NO_DUE sentinel.
MAX_TS = 2**53

_KIND = {
    RuleKind.MATCH: KIND_MATCH,
    RuleKind.THRESHOLD: KIND_THRESHOLD,
    RuleKind.NOT_FOLLOWED: KIND_NOT_FOLLOWED,
    RuleKind.HYSTERESIS: KIND_HYSTERESIS,
    RuleKind.SUPERVISION: KIND_SUPERVISION,
    RuleKind.COUNT: KIND_COUNT,
    RuleKind.INACTIVE: KIND_INACTIVE,
}

# The event types that make a supervise rule raise at once (a device's Last Will or its
# `online: false`); every other type is a sign of life. Kept in the rule's `unless_mask`.
OFFLINE_TYPES = ("device.offline",)
_ACTION = {"raise": ACTION_RAISE, "clear": ACTION_CLEAR}

# The `action` output column's codes by name, for the shell and for tests.
ACTIONS = {ACTION_RAISE: "raise", ACTION_CLEAR: "clear", ACTION_CANCEL: "cancel"}
_OP = {Op.LT: OP_LT, Op.LE: OP_LE, Op.GT: OP_GT, Op.GE: OP_GE, Op.EQ: OP_EQ}
_SCOPE = {"device": SCOPE_DEVICE, "home": SCOPE_HOME}

assert len(ENGINE_TYPES) <= 63, "type bitmasks are int64"

INT64_MIN = int(np.iinfo(np.int64).min)


@dataclass(frozen=True)
class ReloadReport:
    """What a reload (or a restore) did with each rule's state, by rule name: `kept` (same
    name and meaning: its state carried over), `reset` (same name, another meaning: starts
    idle), `added` (new name), `removed` (gone, with its state); and how long it took."""

    kept: tuple[str, ...]
    reset: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]
    seconds: float


@dataclass(frozen=True, eq=False)
class Tables:
    """The compiled form of a RulePack and its per-home profiles: read-only arrays.

    1-D columns have one entry per rule; 2-D ones are [profile, rule] (profile 0: the pack
    as written), for everything a home may override.
    """

    type_ptr: np.ndarray  # int32[n_types + 1]: CSR row pointers by event type id
    type_rules: np.ndarray  # int32[nnz]: rule indices, pack order within a type
    type_op: np.ndarray  # int8[nnz]: what an event of the type does to the rule (DO_* code)
    kind: np.ndarray  # int8: KIND_* code
    when_mask: np.ndarray  # int64: bit t set if type t is in `when`
    unless_mask: np.ndarray  # int64: bit t set if type t is in `unless` (supervision: OFFLINE_TYPES)
    op: np.ndarray  # int8: OP_* code (threshold rules; 0 otherwise)
    scope: np.ndarray  # int8: SCOPE_* code (whose slot: not-followed and count rules)
    action: np.ndarray  # int8: ACTION_RAISE or ACTION_CLEAR, what a firing decides
    clear_op: np.ndarray  # int8: OP_* code of a hysteresis rule's clearing bound (0 otherwise)
    cancel_mask: np.ndarray  # int64: bit t set if type t is the resident's cancel of the rule
    cond_mask: np.ndarray  # int64: the bits of the rule's `where` conditions (0: none)
    threshold: np.ndarray  # float64[p, r] (threshold and hysteresis rules; 0.0 otherwise)
    clear_threshold: np.ndarray  # float64[p, r] (hysteresis rules; 0.0 otherwise)
    within_ms: np.ndarray  # int64[p, r] (not-followed rules)
    cancel_within_ms: np.ndarray  # int64[p, r] (rules with a cancel)
    count_n: np.ndarray  # int64[p, r] (count rules)
    count_within_ms: np.ndarray  # int64[p, r] (count rules)
    inactive_ms: np.ndarray  # int64[p, r] (inactive rules)
    has_window: np.ndarray  # int8[p, r]: 1 if the rule has a `during` window in that profile
    win_from: np.ndarray  # int64[p, r]: ms of the local day
    win_to: np.ndarray  # int64[p, r]
    win_days: np.ndarray  # int64[p, r]: bit 0 = Monday
    ring_cap: np.ndarray  # int64: count rules: the largest n of any profile (ring length)
    varies: np.ndarray  # int8: 1 if some profile's parameters of the rule differ from the pack's
    min_inactive_ms: np.ndarray  # int64: inactive rules: the shortest `for` of any profile
    max_rules_per_type: int  # sizes the process kernel's output buffer

    @property
    def n_rules(self) -> int:
        return int(self.kind.shape[0])

    @property
    def n_profiles(self) -> int:
        return int(self.threshold.shape[0])

    def kernel_args(self) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
        """The `tables` and `params` tuples of kernels.py, in their order."""
        return (
            (
                self.type_ptr,
                self.type_rules,
                self.kind,
                self.when_mask,
                self.unless_mask,
                self.op,
                self.scope,
                self.action,
                self.clear_op,
                self.cancel_mask,
                self.cond_mask,
                self.ring_cap,
                self.varies,
                self.min_inactive_ms,
                self.type_op,
            ),
            (
                self.threshold,
                self.clear_threshold,
                self.within_ms,
                self.cancel_within_ms,
                self.count_n,
                self.count_within_ms,
                self.inactive_ms,
                self.has_window,
                self.win_from,
                self.win_to,
                self.win_days,
            ),
        )


def compile_tables(pack: RulePack, profiles: Sequence[tuple[Rule, ...]] | None = None) -> Tables:
    """Flatten a pack (and its per-home profiles, homes.py; default: the pack alone) into
    kernel tables. Pure. The profiles must differ from the pack only in what a home may
    override (homes.check_home_params)."""
    rows = tuple(profiles) if profiles is not None else (pack.rules,)
    n, n_profiles = len(pack.rules), len(rows)
    kind = np.zeros(n, np.int8)
    when_mask = np.zeros(n, np.int64)
    unless_mask = np.zeros(n, np.int64)
    op = np.zeros(n, np.int8)
    scope = np.zeros(n, np.int8)
    action = np.zeros(n, np.int8)
    clear_op = np.zeros(n, np.int8)
    cancel_mask = np.zeros(n, np.int64)
    cond_mask = np.zeros(n, np.int64)
    by_type: list[list[int]] = [[] for _ in ENGINE_TYPES]
    for r, rule in enumerate(pack.rules):
        kind[r] = _KIND[rule.kind]
        when_mask[r] = _mask(rule.when)
        unless_mask[r] = _mask(OFFLINE_TYPES if rule.kind is RuleKind.SUPERVISION else rule.unless)
        if rule.op is not None:
            op[r] = _OP[rule.op]
        scope[r] = _SCOPE[rule.scope]
        action[r] = _ACTION[rule.action]
        if rule.clear_op is not None:
            clear_op[r] = _OP[rule.clear_op]
        cancel_mask[r] = _mask(rule.cancel_by)
        cond_mask[r] = pack.condition_mask(rule)
        for name in rule.types:
            by_type[TYPE_ID[name]].append(r)
    shape = (n_profiles, n)
    params: dict[str, np.ndarray] = {
        "threshold": np.zeros(shape, np.float64),
        "clear_threshold": np.zeros(shape, np.float64),
        "within_ms": np.zeros(shape, np.int64),
        "cancel_within_ms": np.zeros(shape, np.int64),
        "count_n": np.zeros(shape, np.int64),
        "count_within_ms": np.zeros(shape, np.int64),
        "inactive_ms": np.zeros(shape, np.int64),
        "has_window": np.zeros(shape, np.int8),
        "win_from": np.zeros(shape, np.int64),
        "win_to": np.zeros(shape, np.int64),
        "win_days": np.zeros(shape, np.int64),
    }
    for p, rules in enumerate(rows):
        for r, rule in enumerate(rules):
            params["threshold"][p, r] = rule.threshold if rule.threshold is not None else 0.0
            params["clear_threshold"][p, r] = rule.clear_threshold if rule.clear_threshold is not None else 0.0
            params["within_ms"][p, r] = rule.within_ms
            params["cancel_within_ms"][p, r] = rule.cancel_within_ms
            params["count_n"][p, r] = rule.count_n
            params["count_within_ms"][p, r] = rule.count_within_ms
            params["inactive_ms"][p, r] = rule.inactive_ms
            if rule.during is not None:
                params["has_window"][p, r] = 1
                params["win_from"][p, r] = rule.during.from_ms
                params["win_to"][p, r] = rule.during.to_ms
                params["win_days"][p, r] = rule.during.days
    ring_cap = np.where(kind == KIND_COUNT, params["count_n"].max(axis=0, initial=0), 0).astype(np.int64)
    varies = np.zeros(n, np.int8)
    for array in params.values():
        varies |= np.any(array != array[:1], axis=0)
    min_inactive_ms = params["inactive_ms"].min(axis=0, initial=np.iinfo(np.int64).max) if n_profiles else np.zeros(n)
    min_inactive_ms = np.where(kind == KIND_INACTIVE, min_inactive_ms, 0).astype(np.int64)
    counts = np.array([len(rules) for rules in by_type], np.int32)
    type_ptr = np.zeros(len(ENGINE_TYPES) + 1, np.int32)
    np.cumsum(counts, out=type_ptr[1:])
    type_rules = np.array([r for rules in by_type for r in rules], np.int32)
    type_op = np.array(
        [
            _op_of(int(kind[r]), t, int(unless_mask[r]), int(cancel_mask[r]))
            for t, rules in enumerate(by_type)
            for r in rules
        ],
        np.int8,
    )
    arrays = {
        "type_ptr": type_ptr,
        "type_rules": type_rules,
        "type_op": type_op,
        "kind": kind,
        "when_mask": when_mask,
        "unless_mask": unless_mask,
        "op": op,
        "scope": scope,
        "action": action,
        "clear_op": clear_op,
        "cancel_mask": cancel_mask,
        "cond_mask": cond_mask,
        **params,
        "ring_cap": ring_cap,
        "varies": varies,
        "min_inactive_ms": min_inactive_ms,
    }
    for array in arrays.values():
        array.flags.writeable = False
    return Tables(**arrays, max_rules_per_type=int(counts.max(initial=0)))


def _op_of(kind: int, t: int, unless_mask: int, cancel_mask: int) -> int:
    """What an event of type t does to a rule of `kind` (kernels.DO_*): decided here once,
    so that the kernel branches once per rule instead of testing kind and type masks."""
    if kind == KIND_SUPERVISION:
        return DO_OFFLINE if unless_mask >> t & 1 else DO_ALIVE
    if cancel_mask >> t & 1 and kind in (KIND_MATCH, KIND_THRESHOLD, KIND_HYSTERESIS):
        # A cancel type is never a `when` type of its rule.
        return DO_CANCEL
    return {
        KIND_MATCH: DO_MATCH,
        KIND_THRESHOLD: DO_THRESHOLD,
        KIND_NOT_FOLLOWED: DO_NOT_FOLLOWED,
        KIND_HYSTERESIS: DO_HYSTERESIS,
        KIND_COUNT: DO_COUNT,
        KIND_INACTIVE: DO_INACTIVE,
    }[kind]


def _mask(names: tuple[str, ...]) -> int:
    mask = 0
    for name in names:
        mask |= 1 << TYPE_ID[name]
    return mask


# -- state layout ----------------------------------------------------------------------------

# Record fields by kind: (number of fields, bytes each). Int64 fields come first in a record,
# then int32 pool pointers, then int8 flags, so that every field is aligned.
_I64, _I32, _I8 = 8, 4, 1


@dataclass(frozen=True, eq=False)
class Layout:
    """Where each rule's state lives (engine.py describes the state itself).

    Per-entity state sits in two tables of fixed-width records: one row per device and one
    per home, each row holding the fields of every rule that keeps state for that entity,
    so that an event touches about one cache line of each rather than one per rule. Rule
    r's fields start at column `col[r]` of its record (`home[r]`: the home's, else the
    device's), counted in units of the field's width: int64 for supervision, inactivity
    and the deadlines of not-followed rules kept in place; int32 for a pointer into the
    pool (`pooled[r]`: count rules, and not-followed rules of device scope, which most
    devices never arm); int8 for a hysteresis flag. `ca_col[r]` is the int64 column of a
    rule's cancel window (the device's last trigger), -1 if it has none. `chunk[r]` is how
    many int64 a pooled rule claims per entity, and `need[t]` what one event of type t may
    claim in all. Records are padded to 8 bytes; `dev_width`, `home_width` in bytes.

    The layout depends on the pack only; it is rebuilt with the tables.
    """

    col: np.ndarray  # int64[rule], -1: no record field
    ca_col: np.ndarray  # int64[rule], -1: no cancel window
    home: np.ndarray  # bool[rule]
    pooled: np.ndarray  # int8[rule]
    width: np.ndarray  # int64[rule]: bytes of one field of the rule (8, 4 or 1), 0: none
    fields: np.ndarray  # int64[rule]: how many such fields
    chunk: np.ndarray  # int64[rule]
    need: np.ndarray  # int64[n_types]
    dev_width: int
    home_width: int


def pooled_rule(kind: int, scope: int) -> bool:
    """Whether a rule's per-entity state lives in the pool behind an int32 pointer: count
    rings always (n timestamps), not-followed deadlines of device scope (only the devices of
    the kind that sends the trigger ever arm one); not-followed of home scope stay in place."""
    return kind == KIND_COUNT or (kind == KIND_NOT_FOLLOWED and scope == SCOPE_DEVICE)


def layout(tables: Tables) -> Layout:
    """The record layout of `tables`."""
    n = tables.n_rules
    kind, scope = tables.kind, tables.scope
    col = np.full(n, -1, np.int64)
    ca_col = np.full(n, -1, np.int64)
    home = np.zeros(n, np.bool_)
    pooled = np.zeros(n, np.int8)
    width = np.zeros(n, np.int64)
    fields = np.zeros(n, np.int64)
    chunk = np.zeros(n, np.int64)
    for r in range(n):
        k = int(kind[r])
        home[r] = k == KIND_INACTIVE or (k in (KIND_NOT_FOLLOWED, KIND_COUNT) and scope[r] == SCOPE_HOME)
        if pooled_rule(k, int(scope[r])):
            pooled[r], width[r], fields[r] = 1, _I32, 1
            chunk[r] = 1 + int(tables.ring_cap[r]) if k == KIND_COUNT else 2
        elif k in (KIND_SUPERVISION, KIND_INACTIVE):
            width[r], fields[r] = _I64, 3
        elif k == KIND_NOT_FOLLOWED:
            width[r], fields[r] = _I64, 2
        elif k == KIND_HYSTERESIS:
            width[r], fields[r] = _I8, 1
    # Bytes used so far per record; int64 fields first (supervision and inactivity, touched
    # by most events, at the very start), then pointers, then flags.
    used = {False: 0, True: 0}
    order = sorted(range(n), key=lambda r: int(kind[r]) not in (KIND_SUPERVISION, KIND_INACTIVE))
    for size in (_I64, _I32, _I8):
        for r in order:
            if width[r] == size:
                col[r] = used[bool(home[r])] // size
                used[bool(home[r])] += int(fields[r]) * size
            if size == _I64 and tables.cancel_mask[r] != 0:
                ca_col[r] = used[False] // size
                used[False] += size
    need = np.zeros(tables.type_ptr.shape[0] - 1, np.int64)
    for t in range(need.shape[0]):
        for r in tables.type_rules[tables.type_ptr[t] : tables.type_ptr[t + 1]].tolist():
            if pooled[r] and (kind[r] == KIND_COUNT or tables.when_mask[r] >> t & 1):
                need[t] += chunk[r]
    arrays = (col, ca_col, home, pooled, width, fields, chunk, need)
    for array in arrays:
        array.flags.writeable = False
    pad = {h: -(-used[h] // 8) * 8 for h in used}
    return Layout(*arrays, dev_width=pad[False], home_width=pad[True])


# -- input checks ----------------------------------------------------------------------------


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


# -- batches in, triggers out -----------------------------------------------------------------

# (type name or id, device, ts, value or None, seq[, cond]): one event, for EventBatch.of.
EventRow: TypeAlias = tuple[str | int, int, int, float | None, int] | tuple[str | int, int, int, float | None, int, int]

_BATCH_DTYPES: dict[str, tuple[np.dtype[Any], ...]] = {
    "type_id": (np.dtype(np.int16), np.dtype(np.int32)),
    "device": (np.dtype(np.int32),),
    "ts": (np.dtype(np.int64),),
    "value": (np.dtype(np.float64),),
    "has_value": (np.dtype(np.bool_),),
    "seq": (np.dtype(np.int64),),
    "cond": (np.dtype(np.int64),),
}


@dataclass(frozen=True, eq=False)
class EventBatch:
    """Events in the order the engine must see them, one column per field.

    `type_id` indexes contract.EVENT_TYPES, `device` is the engine's device index (its home
    comes from the engine's `device_home`), `ts` is epoch ms, `value` counts only where
    `has_value`, and `seq` is the shell's opaque, unique id of the event (it comes back as
    a trigger's `origin`). `cond` holds the event's `where` condition bits (bit c:
    condition c of `pack.conditions` holds; the shell evaluates them on `data`); None is
    all zeros, for a pack without conditions.
    """

    type_id: np.ndarray  # int16 or int32
    device: np.ndarray  # int32
    ts: np.ndarray  # int64
    value: np.ndarray  # float64
    has_value: np.ndarray  # bool
    seq: np.ndarray  # int64
    cond: np.ndarray | None = None  # int64

    def __len__(self) -> int:
        return len(self.type_id)

    @classmethod
    def of(cls, rows: Sequence[EventRow]) -> EventBatch:
        """Build a batch from (type name or id, device, ts, value or None, seq[, cond]) rows."""
        types = [TYPE_ID[t] if isinstance(t, str) else t for t, *_ in rows]
        return cls(
            type_id=np.array(types, np.int32),
            device=np.array([row[1] for row in rows], np.int32),
            ts=np.array([row[2] for row in rows], np.int64),
            value=np.array([0.0 if row[3] is None else row[3] for row in rows], np.float64),
            has_value=np.array([row[3] is not None for row in rows], np.bool_),
            seq=np.array([row[4] for row in rows], np.int64),
            cond=np.array([row[5] if len(row) > 5 else 0 for row in rows], np.int64),  # type: ignore[misc]
        )

    def checked(self, n_devices: int) -> tuple[np.ndarray, ...]:
        """Validate against an engine with `n_devices` devices; return the kernel tuple
        (C-contiguous columns; type_id as int32).

        The kernels do no bounds checks (that is what makes them fast), so everything that
        would index out of range or overflow is refused here: TypeError for a wrong dtype
        or shape, ValueError for mismatched lengths or values out of range. The range
        checks take one maximum per column, over its bits read as unsigned: a negative
        value reads as one above every bound (this runs once per batch, and its cost is
        the engine's per-batch overhead).
        """
        columns = []
        for name, allowed in _BATCH_DTYPES.items():
            array = getattr(self, name)
            if array is None and name == "cond":
                array = np.zeros(len(self.type_id) if isinstance(self.type_id, np.ndarray) else 0, np.int64)
            if not isinstance(array, np.ndarray) or array.ndim != 1:
                raise TypeError(f"EventBatch.{name} must be a 1-D numpy array")
            if array.dtype not in allowed:
                names = " or ".join(str(d) for d in allowed)
                raise TypeError(f"EventBatch.{name} must be {names}, not {array.dtype}")
            columns.append(array if array.flags.c_contiguous else np.ascontiguousarray(array))
        n = columns[0].shape[0]
        if any(column.shape[0] != n for column in columns):
            lengths = {name: c.shape[0] for name, c in zip(_BATCH_DTYPES, columns, strict=True)}
            raise ValueError(f"EventBatch columns differ in length: {lengths}")
        type_id, device, ts = columns[0].astype(np.int32, copy=False), columns[1], columns[2]
        if n:
            if type_id.view(np.uint32).max() >= len(ENGINE_TYPES):
                raise ValueError(f"EventBatch.type_id outside 0..{len(ENGINE_TYPES) - 1}")
            if device.view(np.uint32).max() >= n_devices:
                raise ValueError(f"EventBatch.device outside 0..{n_devices - 1}")
            if ts.view(np.uint64).max() > MAX_TS:
                raise ValueError(f"EventBatch.ts outside 0..{MAX_TS} (epoch milliseconds)")
        return (type_id, device, ts, columns[3], columns[4], columns[5], columns[6])


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
