"""The engine's snapshot format (RCENGST4), and how saved state maps onto a pack.

Both engines write the same bytes for the same state (the differential test compares
them), so either can restore the other's snapshot. State is keyed by each rule's key
(homes.rule_keys: its name and its meaning in every home), not by its index or a
fingerprint of the whole pack: a snapshot taken under another pack restores the state of
every rule whose key it holds, and the other rules start idle. So a restart with a changed
pack, or a hot reload, keeps what still means the same (docs/rules.md, State).

Layout, little-endian:
  header: magic (8 bytes), n_devices, n_homes, n_keys, and the length of each section
          below (i64 each: pending, raised, last, supervision, counts, count times,
          inactivity);
  keys: per rule of the pack that wrote it, in its order: name and key, each as a u16
        length and UTF-8 bytes; the sections' `rule` columns index this list;
  pending not-followed slots: rule (i32), entity (i32), due (i64), origin (i64); entity is
    a device or a home index (the rule's scope);
  raised hysteresis flags: rule (i32), device (i32);
  cancel windows: rule (i32), device (i32), last trigger ts (i64);
  supervision, every device heard from or offline: rule (i32), device (i32), last seen
    (i64, NO_SEEN if never), origin (i64), offline (u8);
  count rings that hold something: rule (i32), entity (i32), held (u8); then all their
    timestamps (i64), ring by ring, oldest arrival first;
  inactivity, every home active since the engine started: rule (i32), home (i32), last
    activity (i64), its origin (i64), fired (u8).
Each section is in (rule, entity) order, as columns. The supervision intervals are not in
it (the shell gives them), nor the cached in-window deadlines of inactivity (recomputed).
Sparse rather than dense: the set entries are few, and the format outlives the layouts,
which change whenever devices are added.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields

import numpy as np

from responsecentre.engine.homes import HomeParams
from responsecentre.engine.kernels import (
    KIND_COUNT,
    KIND_HYSTERESIS,
    KIND_INACTIVE,
    KIND_NOT_FOLLOWED,
    KIND_SUPERVISION,
    NO_SEEN,
    SCOPE_HOME,
)
from responsecentre.engine.rules import MAX_COUNT
from responsecentre.engine.tables import MAX_TS, ReloadReport, Tables

__all__ = [
    "SavedState",
    "SnapshotState",
    "classify",
    "decode_snapshot",
    "encode_snapshot",
    "map_snapshot",
    "ranges",
    "report",
]

RuleKeys = tuple[tuple[str, str], ...]

_MAGIC = b"RCENGST4"
_HEADER = struct.Struct("<8s10q")
_LENGTH = struct.Struct("<H")
_NO_DUE = np.iinfo(np.int64).max


@dataclass(frozen=True, eq=False)
class SnapshotState:
    """Engine state as sparse int64 columns, one group per kind of state."""

    rule: np.ndarray  # pending not-followed deadlines
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
    count_rule: np.ndarray  # count rings holding something
    count_entity: np.ndarray
    count_held: np.ndarray
    count_ts: np.ndarray  # flat: sum(count_held) times, ring by ring, oldest first
    ia_rule: np.ndarray  # inactivity, per home active since the start
    ia_home: np.ndarray
    ia_last: np.ndarray
    ia_origin: np.ndarray
    ia_fired: np.ndarray

    @staticmethod
    def empty() -> SnapshotState:
        return SnapshotState(*(np.zeros(0, np.int64) for _ in fields(SnapshotState)))


# (section columns, dtypes) in file order; the count times follow the count section.
_SECTIONS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("rule", "entity", "due", "origin"), ("<i4", "<i4", "<i8", "<i8")),
    (("raised_rule", "raised_device"), ("<i4", "<i4")),
    (("last_rule", "last_device", "last_ts"), ("<i4", "<i4", "<i8")),
    (("sup_rule", "sup_device", "sup_last", "sup_origin", "sup_flag"), ("<i4", "<i4", "<i8", "<i8", "u1")),
    (("count_rule", "count_entity", "count_held"), ("<i4", "<i4", "u1")),
    (("count_ts",), ("<i8",)),
    (("ia_rule", "ia_home", "ia_last", "ia_origin", "ia_fired"), ("<i4", "<i4", "<i8", "<i8", "u1")),
)


def encode_snapshot(keys: RuleKeys, n_devices: int, n_homes: int, state: SnapshotState) -> bytes:
    """Rule keys and sparse state columns (in order, rules indexing `keys`) -> bytes."""
    lengths = [len(getattr(state, names[0])) for names, _ in _SECTIONS]
    parts = [_HEADER.pack(_MAGIC, n_devices, n_homes, len(keys), *lengths)]
    for name, key in keys:
        for text in (name, key):
            raw = text.encode()
            parts += [_LENGTH.pack(len(raw)), raw]
    for names, dtypes in _SECTIONS:
        parts += [np.asarray(getattr(state, name), dtype).tobytes() for name, dtype in zip(names, dtypes, strict=True)]
    return b"".join(parts)


@dataclass(frozen=True, eq=False)
class SavedState:
    """A decoded snapshot: the keys of the pack that wrote it and its state (rules index keys)."""

    keys: RuleKeys
    n_devices: int
    n_homes: int
    state: SnapshotState


def decode_snapshot(blob: bytes) -> SavedState:
    """Snapshot bytes -> SavedState; ValueError if damaged (truncated, trailing bytes,
    impossible values, slots out of order)."""
    if len(blob) < _HEADER.size:
        raise ValueError("engine snapshot is truncated")
    magic, n_devices, n_homes, n_keys, *lengths = _HEADER.unpack_from(blob)
    if magic != _MAGIC:
        raise ValueError("not an engine snapshot (bad magic)")
    if min(n_devices, n_homes, n_keys, *lengths) < 0 or n_keys > 65_536:
        raise ValueError("engine snapshot is truncated or has trailing bytes")
    at = _HEADER.size
    keys: list[tuple[str, str]] = []
    try:
        for _ in range(n_keys):
            texts = []
            for _ in range(2):
                (size,) = _LENGTH.unpack_from(blob, at)
                raw = blob[at + 2 : at + 2 + size]
                if len(raw) != size:
                    raise ValueError("engine snapshot is truncated")
                texts.append(raw.decode())
                at += 2 + size
            keys.append((texts[0], texts[1]))
    except (struct.error, UnicodeDecodeError):
        raise ValueError("engine snapshot is truncated or damaged") from None
    if len({name for name, _ in keys}) != len(keys):
        raise ValueError("engine snapshot names a rule twice")
    size = at
    for (_, dtypes), count in zip(_SECTIONS, lengths, strict=True):
        size += count * sum(np.dtype(dtype).itemsize for dtype in dtypes)
    if len(blob) != size:
        raise ValueError("engine snapshot is truncated or has trailing bytes")
    columns: dict[str, np.ndarray] = {}
    for (names, dtypes), count in zip(_SECTIONS, lengths, strict=True):
        for name, dtype in zip(names, dtypes, strict=True):
            columns[name] = np.frombuffer(blob, dtype, count, at).astype(np.int64)
            at += count * np.dtype(dtype).itemsize
    state = SnapshotState(**columns)
    _check(state, n_keys)
    return SavedState(tuple(keys), n_devices, n_homes, state)


def _check(state: SnapshotState, n_keys: int) -> None:
    """What can be checked without the engine: ranges and order."""
    groups = (
        (state.rule, state.entity),
        (state.raised_rule, state.raised_device),
        (state.last_rule, state.last_device),
        (state.sup_rule, state.sup_device),
        (state.count_rule, state.count_entity),
        (state.ia_rule, state.ia_home),
    )
    for rule, entity in groups:
        if not rule.shape[0]:
            continue
        if rule.min() < 0 or rule.max() >= n_keys:
            raise ValueError("engine snapshot names a rule it does not list")
        if entity.min() < 0:
            raise ValueError("engine snapshot names a device or home this engine does not have")
        key = rule * (2**32) + entity
        if np.any(key[1:] <= key[:-1]):
            raise ValueError("engine snapshot slots are not in slot order")
    if state.due.shape[0] and (state.due.min() < 0 or state.due.max() >= _NO_DUE):
        raise ValueError("engine snapshot holds an impossible deadline")
    if state.last_ts.shape[0] and (state.last_ts.min() < 0 or state.last_ts.max() > MAX_TS):
        raise ValueError("engine snapshot holds an impossible trigger time")
    last, flag = state.sup_last, state.sup_flag
    if np.any((last != NO_SEEN) & ((last < 0) | (last > MAX_TS))):
        raise ValueError("engine snapshot holds an impossible last-seen time")
    if flag.shape[0] and (flag.max() > 1 or np.any((last == NO_SEEN) & (flag == 0))):
        raise ValueError("engine snapshot holds an impossible supervision entry")
    held = state.count_held
    if held.shape[0] and (held.min() < 1 or held.max() > MAX_COUNT):
        raise ValueError("engine snapshot holds an impossible count")
    if int(held.sum()) != state.count_ts.shape[0]:
        raise ValueError("engine snapshot's count times do not add up")
    if state.count_ts.shape[0] and (state.count_ts.min() < 0 or state.count_ts.max() > MAX_TS):
        raise ValueError("engine snapshot holds an impossible count time")
    if state.ia_last.shape[0] and (state.ia_last.min() < 0 or state.ia_last.max() > MAX_TS):
        raise ValueError("engine snapshot holds an impossible activity time")
    if state.ia_fired.shape[0] and state.ia_fired.max() > 1:
        raise ValueError("engine snapshot holds an impossible inactivity entry")


def classify(old: RuleKeys, new: RuleKeys) -> tuple[np.ndarray, tuple[tuple[str, ...], ...]]:
    """(old index per new rule, -1 if its state starts idle), and (kept, reset, added,
    removed) rule names: kept = same key; reset = same name, another meaning."""
    where = {key: i for i, key in enumerate(old)}
    old_names = {name for name, _ in old}
    new_names = {name for name, _ in new}
    source = np.array([where.get(key, -1) for key in new], np.int64)
    kept = tuple(name for (name, _), s in zip(new, source.tolist(), strict=True) if s >= 0)
    reset = tuple(name for (name, _), s in zip(new, source.tolist(), strict=True) if s < 0 and name in old_names)
    added = tuple(name for name, _ in new if name not in old_names)
    removed = tuple(name for name, _ in old if name not in new_names)
    return source, (kept, reset, added, removed)


def map_snapshot(
    saved: SavedState,
    keys: RuleKeys,
    tables: Tables,
    homes: HomeParams,
    device_home: np.ndarray,
    n_homes: int,
) -> tuple[SnapshotState, tuple[tuple[str, ...], ...]]:
    """The saved state of the rules whose keys this engine has, re-indexed to its rules
    (the rest dropped), checked against the engine; and the (kept, reset, added, removed)
    names. ValueError if it names devices or homes the engine lacks, or holds a kind of
    state its rule does not keep (damaged)."""
    source, names = classify(saved.keys, keys)
    target = np.full(len(saved.keys), -1, np.int64)
    target[source[source >= 0]] = np.flatnonzero(source >= 0)
    n_devices = device_home.shape[0]
    kind, scope = tables.kind, tables.scope
    per_scope = np.where(scope == SCOPE_HOME, n_homes, n_devices)
    state = saved.state
    out: dict[str, np.ndarray] = {}

    def take(prefix: tuple[str, ...], rule_name: str, entity_name: str, stateful: np.ndarray, size: np.ndarray) -> None:
        rule = target[getattr(state, rule_name)] if getattr(state, rule_name).shape[0] else np.zeros(0, np.int64)
        keep = rule >= 0
        rule = rule[keep]
        entity = getattr(state, entity_name)[keep]
        if rule.shape[0]:
            if not np.all(stateful[rule]):
                raise ValueError("engine snapshot holds state for a rule without state")
            if np.any(entity >= size[rule]):
                raise ValueError("engine snapshot names a device or home this engine does not have")
        for name in prefix:
            out[name] = getattr(state, name)[keep]
        out[rule_name] = rule
        out[entity_name] = entity

    devices = np.full(tables.n_rules, n_devices, np.int64)
    homes_size = np.full(tables.n_rules, n_homes, np.int64)
    take(("due", "origin"), "rule", "entity", kind == KIND_NOT_FOLLOWED, per_scope)
    take((), "raised_rule", "raised_device", kind == KIND_HYSTERESIS, devices)
    take(("last_ts",), "last_rule", "last_device", tables.cancel_mask != 0, devices)
    take(("sup_last", "sup_origin", "sup_flag"), "sup_rule", "sup_device", kind == KIND_SUPERVISION, devices)
    take(("ia_last", "ia_origin", "ia_fired"), "ia_rule", "ia_home", kind == KIND_INACTIVE, homes_size)
    # Count rings: their times follow in one flat column.
    held = state.count_held
    starts = np.concatenate([[0], np.cumsum(held)]).astype(np.int64)
    rule = target[state.count_rule] if held.shape[0] else np.zeros(0, np.int64)
    keep = rule >= 0
    rule, entity, held, starts = rule[keep], state.count_entity[keep], held[keep], starts[:-1][keep]
    if rule.shape[0]:
        if not np.all(kind[rule] == KIND_COUNT):
            raise ValueError("engine snapshot holds state for a rule without state")
        if np.any(entity >= per_scope[rule]):
            raise ValueError("engine snapshot names a device or home this engine does not have")
        home = np.where(scope[rule] == SCOPE_HOME, entity, device_home[np.minimum(entity, max(n_devices - 1, 0))])
        if np.any(held > tables.count_n[homes.profile[home], rule]):
            raise ValueError("engine snapshot holds an impossible count")
    out["count_rule"], out["count_entity"], out["count_held"] = rule, entity, held
    out["count_ts"] = state.count_ts[ranges(starts, held)]
    return SnapshotState(**out), names


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of arange(s, s + n) for each (s, n), vectorised."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(lengths)
    index = np.arange(total, dtype=np.int64)
    return index - np.repeat(ends - lengths, lengths) + np.repeat(starts, lengths)


def report(names: tuple[tuple[str, ...], ...], seconds: float) -> ReloadReport:
    """The ReloadReport of `classify`'s names."""
    kept, reset, added, removed = names
    return ReloadReport(kept=kept, reset=reset, added=added, removed=removed, seconds=seconds)
