"""`ReferenceEngine`: the rule semantics of docs/rules.md in plain Python.

This is the specification that runs. It reads the `Rule` objects directly (not the
compiled tables), keeps pending deadlines in a dict, and loops; it is written to be
obviously right, not fast. tests/test_engine_differential.py drives it and the numba
`Engine` with the same random packs and streams and demands identical triggers and
identical state, which checks the kernels and the table compiler at once.

It shares with `Engine` only what is not semantics: input validation
(`EventBatch.checked`), the `Triggers` type, and the snapshot format, so that each engine
restores the other's snapshots.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import numpy as np

from responsecentre.contract import ENGINE_TYPES
from responsecentre.engine.kernels import ACTION_CANCEL, ACTION_CLEAR, ACTION_RAISE, NO_DUE, NO_ORIGIN, NO_SEEN
from responsecentre.engine.rules import Op, Rule, RuleKind, RulePack
from responsecentre.engine.tables import (
    OFFLINE_TYPES,
    EventBatch,
    SnapshotState,
    TriggerRow,
    Triggers,
    check_device_home,
    check_intervals,
    check_now,
    compile_tables,
    decode_snapshot,
    encode_snapshot,
    supervision_start,
)

__all__ = ["ReferenceEngine"]

_COMPARE: dict[Op, Callable[[float, float], bool]] = {
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.GT: operator.gt,
    Op.GE: operator.ge,
    Op.EQ: operator.eq,
}

Row = TriggerRow  # rule, device, home, ts, origin, event, action
_ACTION = {"raise": ACTION_RAISE, "clear": ACTION_CLEAR}


class ReferenceEngine:
    """Same API and same results as `Engine`, in dicts and loops."""

    def __init__(self, pack: RulePack, device_home: np.ndarray, supervision_ms: np.ndarray | None = None) -> None:
        self._pack = pack
        # Only for the snapshot header: a snapshot is tied to the compiled tables.
        self._tables = compile_tables(pack)
        self._device_home: list[int] = check_device_home(device_home).tolist()
        self._n_homes = max(self._device_home, default=-1) + 1
        # (rule index, entity) -> (due, origin); entity is a device or a home index.
        self._pending: dict[tuple[int, int], tuple[int, int]] = {}
        # (rule index, device) of every hysteresis rule that has raised and not cleared.
        self._raised: set[tuple[int, int]] = set()
        # (rule index, device) -> ts of the last trigger a resident's cancel may refer to.
        self._last: dict[tuple[int, int], int] = {}
        # Supervision: device -> interval (0: unsupervised); (rule, device) -> (last seen,
        # the seq of the device's latest event) for every device heard from or whose clock
        # a sweep started; the (rule, device) pairs that are offline (raised).
        self._interval: list[int] = check_intervals(supervision_ms, self.n_devices).tolist()
        self._seen: dict[tuple[int, int], tuple[int, int]] = {}
        self._offline: set[tuple[int, int]] = set()
        self._sup_next = self._exact_sup_next()
        # event type name -> indices of the rules it involves, in pack order, each once.
        self._rules_for: dict[str, list[int]] = {name: [] for name in ENGINE_TYPES}
        for index, rule in enumerate(pack.rules):
            for name in rule.types:
                self._rules_for[name].append(index)

    @property
    def pack(self) -> RulePack:
        return self._pack

    @property
    def n_devices(self) -> int:
        return len(self._device_home)

    @property
    def n_homes(self) -> int:
        return self._n_homes

    def process(self, batch: EventBatch) -> Triggers:
        type_ids, devices, times, values, has_values, seqs = (
            column.tolist() for column in batch.checked(self.n_devices)
        )
        out: list[Row] = []
        for i, type_id in enumerate(type_ids):
            event_type = ENGINE_TYPES[type_id]
            device = devices[i]
            home = self._device_home[device]
            ts = times[i]
            for index in self._rules_for[event_type]:
                rule = self._pack.rules[index]
                key = (index, device)
                if rule.kind is RuleKind.SUPERVISION:
                    self._supervise(index, event_type, device, home, ts, seqs[i], i, out)
                elif rule.kind is RuleKind.NOT_FOLLOWED:
                    self._not_followed(index, rule, event_type, device, home, ts, seqs[i], out)
                elif event_type in rule.cancel_by:
                    # The resident's cancel: within the window after the device's last
                    # trigger of this rule (not before it), and once.
                    last = self._last.get(key)
                    if last is not None and last <= ts <= last + rule.cancel_within_ms:
                        out.append((index, device, home, ts, seqs[i], i, ACTION_CANCEL))
                        del self._last[key]
                elif rule.kind is RuleKind.HYSTERESIS:
                    if not has_values[i]:
                        continue
                    if key not in self._raised:
                        if self._passes(rule.op, rule.threshold, values[i]):
                            out.append((index, device, home, ts, seqs[i], i, ACTION_RAISE))
                            self._raised.add(key)
                    elif self._passes(rule.clear_op, rule.clear_threshold, values[i]):
                        out.append((index, device, home, ts, seqs[i], i, ACTION_CLEAR))
                        self._raised.discard(key)
                elif rule.kind is RuleKind.MATCH or (
                    has_values[i] and self._passes(rule.op, rule.threshold, values[i])
                ):
                    out.append((index, device, home, ts, seqs[i], i, _ACTION[rule.action]))
                    if rule.cancel_by:
                        self._last[key] = ts
        return Triggers.from_rows(out)

    def _not_followed(
        self,
        index: int,
        rule: Rule,
        event_type: str,
        device: int,
        home: int,
        ts: int,
        seq: int,
        out: list[Row],
    ) -> None:
        key = (index, home if rule.scope == "home" else device)
        pending = self._pending.get(key)
        # a. The deadline passed before this event: it fires, at its own time.
        if pending is not None and pending[0] < ts:
            due, origin = pending
            out.append((index, -1 if rule.scope == "home" else device, home, due, origin, -1, ACTION_RAISE))
            del self._pending[key]
            pending = None
        # b. A follow-up in time cancels the deadline.
        if event_type in rule.unless and pending is not None:
            del self._pending[key]
            pending = None
        # c. A trigger arms an idle slot; a pending deadline keeps its clock.
        if event_type in rule.when and pending is None:
            self._pending[key] = (ts + rule.within_ms, seq)

    def _supervise(
        self, index: int, event_type: str, device: int, home: int, ts: int, seq: int, i: int, out: list[Row]
    ) -> None:
        interval = self._interval[device]
        if interval == 0:
            return  # not supervised
        key = (index, device)
        if event_type in OFFLINE_TYPES:
            # Offline (a Last Will, or online: false): raise at once, once.
            if key not in self._offline:
                out.append((index, device, home, ts, seq, i, ACTION_RAISE))
                self._offline.add(key)
            return
        # Any other event is a sign of life: the clock restarts at the latest time seen.
        last = max(self._seen.get(key, (NO_SEEN, NO_ORIGIN))[0], ts)
        self._seen[key] = (last, seq)
        if key in self._offline:
            out.append((index, device, home, ts, seq, i, ACTION_CLEAR))
            self._offline.discard(key)
        # next_due is a lower bound between sweeps: an event can only lower it.
        self._sup_next = min(self._sup_next, last + interval)

    def _exact_sup_next(self) -> int:
        earliest = NO_DUE
        for index, rule in enumerate(self._pack.rules):
            if rule.kind is not RuleKind.SUPERVISION:
                continue
            for device, interval in enumerate(self._interval):
                key = (index, device)
                if interval == 0 or key in self._offline:
                    continue
                # A device never heard from is due at 0: any sweep starts its clock.
                earliest = min(earliest, self._seen[key][0] + interval if key in self._seen else 0)
        return earliest

    @staticmethod
    def _passes(op: Op | None, threshold: float | None, value: float) -> bool:
        assert op is not None and threshold is not None
        return _COMPARE[op](value, threshold)

    def sweep(self, now_ms: int) -> Triggers:
        now = check_now(now_ms)
        out: list[Row] = []
        earliest = NO_DUE
        for index, rule in enumerate(self._pack.rules):  # slot order: rule, then entity
            if rule.kind is RuleKind.SUPERVISION:
                for device, interval in enumerate(self._interval):
                    key = (index, device)
                    if interval == 0 or key in self._offline:
                        continue
                    if key not in self._seen:  # never heard from: its clock starts now
                        self._seen[key] = (supervision_start(now), NO_ORIGIN)
                    last, origin = self._seen[key]
                    silent_at = last + interval
                    if silent_at <= now:
                        out.append((index, device, self._device_home[device], silent_at, origin, -1, ACTION_RAISE))
                        self._offline.add(key)
                    else:
                        earliest = min(earliest, silent_at)
                continue
            for key in sorted(k for k in self._pending if k[0] == index):
                due, origin = self._pending[key]
                if due <= now:
                    entity = key[1]
                    if rule.scope == "home":
                        out.append((index, -1, entity, due, origin, -1, ACTION_RAISE))
                    else:
                        out.append((index, entity, self._device_home[entity], due, origin, -1, ACTION_RAISE))
                    del self._pending[key]
        self._sup_next = earliest  # exact after a sweep
        return Triggers.from_rows(out)

    def next_due(self) -> int | None:
        earliest = min([due for due, _ in self._pending.values()] + [self._sup_next])
        return None if earliest == NO_DUE else earliest

    def pending(self) -> dict[tuple[int, int], tuple[int, int]]:
        return dict(self._pending)

    def snapshot(self) -> bytes:
        keys = sorted(self._pending)
        raised = sorted(self._raised)
        last = sorted(self._last)
        sup = sorted(set(self._seen) | self._offline)
        state = SnapshotState(
            rule=np.array([rule for rule, _ in keys], np.int64),
            entity=np.array([entity for _, entity in keys], np.int64),
            due=np.array([self._pending[key][0] for key in keys], np.int64),
            origin=np.array([self._pending[key][1] for key in keys], np.int64),
            raised_rule=np.array([rule for rule, _ in raised], np.int64),
            raised_device=np.array([device for _, device in raised], np.int64),
            last_rule=np.array([rule for rule, _ in last], np.int64),
            last_device=np.array([device for _, device in last], np.int64),
            last_ts=np.array([self._last[key] for key in last], np.int64),
            sup_rule=np.array([rule for rule, _ in sup], np.int64),
            sup_device=np.array([device for _, device in sup], np.int64),
            sup_last=np.array([self._seen.get(key, (NO_SEEN, NO_ORIGIN))[0] for key in sup], np.int64),
            sup_origin=np.array([self._seen.get(key, (NO_SEEN, NO_ORIGIN))[1] for key in sup], np.int64),
            sup_flag=np.array([key in self._offline for key in sup], np.int64),
        )
        return encode_snapshot(self._tables, self.n_devices, self._n_homes, state)

    def restore(self, blob: bytes) -> None:
        saved = decode_snapshot(blob, self._tables, self.n_devices, self._n_homes)
        rules, entities, dues, origins = (c.tolist() for c in (saved.rule, saved.entity, saved.due, saved.origin))
        self._pending = {
            (rule, entity): (due, origin)
            for rule, entity, due, origin in zip(rules, entities, dues, origins, strict=True)
        }
        self._raised = set(zip(saved.raised_rule.tolist(), saved.raised_device.tolist(), strict=True))
        self._last = dict(
            zip(
                zip(saved.last_rule.tolist(), saved.last_device.tolist(), strict=True),
                saved.last_ts.tolist(),
                strict=True,
            )
        )
        self._seen, self._offline = {}, set()
        for rule, device, last, origin, flag in zip(
            *(c.tolist() for c in (saved.sup_rule, saved.sup_device, saved.sup_last, saved.sup_origin, saved.sup_flag)),
            strict=True,
        ):
            if last != NO_SEEN:
                self._seen[(rule, device)] = (last, origin)
            if flag:
                self._offline.add((rule, device))
        self._sup_next = self._exact_sup_next()

    def resize(self, device_home: np.ndarray, supervision_ms: np.ndarray | None = None) -> None:
        new_home = check_device_home(device_home, at_least=self.n_devices).tolist()
        if supervision_ms is None:
            interval = self._interval + [0] * (len(new_home) - self.n_devices)
        else:
            interval = check_intervals(supervision_ms, len(new_home)).tolist()
        self._device_home, self._interval = new_home, interval
        self._n_homes = max(self._n_homes, max(self._device_home, default=-1) + 1)
        self._sup_next = self._exact_sup_next()
