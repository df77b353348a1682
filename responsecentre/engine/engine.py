"""`Engine`: the Python face of the numba kernels.

It is the only caller of kernels.py. It compiles the pack once, owns the state arrays and
the output buffer, checks every input in numpy (the kernels trust their arguments and do
no bounds checks), and copies results out of the reused buffer. It does no I/O and never
reads the clock: time comes in as event `ts` and as `now_ms` of `sweep`.

State: each not-followed rule owns one slot per device (scope device) or per home (scope
home) in two int64 columns, `due` (NO_DUE when idle) and `origin`: 16 bytes per slot.
Each hysteresis rule owns one byte per device (`flags`: raised or not), each rule with a
resident's cancel one int64 per device (`last_ts`: its last trigger, NO_LAST if none or
already cancelled). The supervise rule owns per device its last-seen time and that event's
seq (int64 each) and an offline flag (int8): 17 bytes; the supervision interval per device
(int64, 0 for an unsupervised device) comes from the shell. Match and threshold rules
without a cancel own nothing.

Not thread-safe: one engine is driven by one task. The kernels release the GIL, so
several engines (e.g. one per shard) can run on several cores.
"""

from __future__ import annotations

import numpy as np

from responsecentre.engine.kernels import (
    KIND_HYSTERESIS,
    KIND_SUPERVISION,
    NO_DUE,
    NO_LAST,
    NO_ORIGIN,
    NO_SEEN,
    process_batch,
    sweep_count,
    sweep_due,
)
from responsecentre.engine.rules import RulePack
from responsecentre.engine.tables import (
    INT64_MIN,
    EventBatch,
    SnapshotState,
    Tables,
    Triggers,
    check_device_home,
    check_intervals,
    check_now,
    compile_tables,
    decode_snapshot,
    device_layout,
    encode_snapshot,
    slot_layout,
    supervision_start,
)

State = tuple[np.ndarray, ...]  # kernels.py's `state`, in its order

__all__ = ["Engine"]


def _home_count(device_home: np.ndarray, at_least: int = 0) -> int:
    return max(at_least, int(device_home.max()) + 1 if device_home.shape[0] else 0)


def _readonly(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


class Engine:
    """Evaluates a RulePack over event batches with numba kernels (see docs/rules.md)."""

    def __init__(self, pack: RulePack, device_home: np.ndarray, supervision_ms: np.ndarray | None = None) -> None:
        """Compile the tables, allocate the state and warm the kernels.

        `supervision_ms` is each device's supervision interval (0 or None: unsupervised);
        the shell computes it from the catalogue and the homes (docs/rules.md).
        Warming runs both kernels on empty input, so the JIT compile (or the load from
        numba's on-disk cache) happens here and not inside the first real batch.
        """
        self._pack = pack
        self._tables = compile_tables(pack)
        self._targs = self._tables.kernel_args()
        self._device_home = check_device_home(device_home)
        self._n_homes = _home_count(self._device_home)
        self._interval = check_intervals(supervision_ms, self._device_home.shape[0])
        self._state = self._layout(self._device_home.shape[0], self._n_homes)
        self._recompute_sup_next()
        self._out = Triggers.allocate(0)
        self._warm()

    # -- public API ------------------------------------------------------------------------

    @property
    def pack(self) -> RulePack:
        return self._pack

    @property
    def tables(self) -> Tables:
        return self._tables

    @property
    def n_devices(self) -> int:
        return int(self._device_home.shape[0])

    @property
    def n_homes(self) -> int:
        return self._n_homes

    @property
    def state_nbytes(self) -> int:
        """Bytes of engine state (layouts, slots, flags, cancel windows), for capacity planning."""
        return sum(int(array.nbytes) for array in self._state)

    def process(self, batch: EventBatch) -> Triggers:
        """Run `batch` in array order against the pack; return its triggers in order."""
        columns = tuple(_readonly(c) for c in batch.checked(self.n_devices))
        need = columns[0].shape[0] * self._tables.max_rules_per_type
        if len(self._out) < need:
            self._out = Triggers.allocate(max(need, 2 * len(self._out)))
        n = process_batch(self._targs, self._state, self._device_home, columns, self._out.columns())
        return self._out.head(n)

    @property
    def supervision_ms(self) -> np.ndarray:
        """The supervision interval per device (read-only; 0: not supervised)."""
        return self._interval

    def sweep(self, now_ms: int) -> Triggers:
        """Fire every pending deadline with due <= now_ms and raise every supervised device
        silent for its interval, in slot order (rule, entity)."""
        now = check_now(now_ms)
        start = supervision_start(now)
        # Sized exactly by a counting pass rather than one row per slot: the count is
        # fast, and no per-slot buffer has to live in memory.
        out = Triggers.allocate(sweep_count(self._targs, self._state, now, start))
        n = sweep_due(self._targs, self._state, self._device_home, now, start, out.columns())
        assert n == len(out), "sweep kernel and its count disagree"
        return out

    def next_due(self) -> int | None:
        """When the shell should sweep next (epoch ms), or None: the earliest pending
        deadline, or the supervision bound if earlier (docs/rules.md, Supervision: exact
        after a sweep or a restore, possibly early after events; 0 while a supervised
        device has never been heard from, since any sweep starts its clock)."""
        due = self._state[2]
        earliest = int(due.min()) if due.shape[0] else NO_DUE
        earliest = min(earliest, int(self._state[13][0]))
        return None if earliest == NO_DUE else earliest

    def pending(self) -> dict[tuple[int, int], tuple[int, int]]:
        """{(rule, entity): (due, origin)} of every pending deadline, for tests and tools."""
        rule, entity, due, origin = self._pending_columns()
        return {
            (r, e): (d, o)
            for r, e, d, o in zip(rule.tolist(), entity.tolist(), due.tolist(), origin.tolist(), strict=True)
        }

    def snapshot(self) -> bytes:
        """All state (deadlines, hysteresis flags, cancel windows) and the tables'
        fingerprint (format: tables.py)."""
        rule, entity, due, origin = self._pending_columns()
        _, _, _, _, flag_offset, flags, last_offset, last_ts = self._state[:8]
        sup_offset, _, sup_last, sup_origin, sup_flag, _ = self._state[8:]
        raised_rule, raised_device = _sparse(flag_offset, np.flatnonzero(flags))
        last_slots = np.flatnonzero(last_ts != NO_LAST)
        last_rule, last_device = _sparse(last_offset, last_slots)
        sup_slots = np.flatnonzero((sup_last != NO_SEEN) | (sup_flag != 0))
        sup_rule, sup_device = _sparse(sup_offset, sup_slots)
        state = SnapshotState(
            rule,
            entity,
            due,
            origin,
            raised_rule,
            raised_device,
            last_rule,
            last_device,
            last_ts[last_slots],
            sup_rule,
            sup_device,
            sup_last[sup_slots],
            sup_origin[sup_slots],
            sup_flag[sup_slots],
        )
        return encode_snapshot(self._tables, self.n_devices, self._n_homes, state)

    def restore(self, blob: bytes) -> None:
        """Replace the state by a snapshot's; ValueError if it belongs to other tables."""
        saved = decode_snapshot(blob, self._tables, self.n_devices, self._n_homes)
        state = self._layout(self.n_devices, self._n_homes)
        slots = state[0][saved.rule] + saved.entity
        state[2][slots] = saved.due
        state[3][slots] = saved.origin
        state[5][state[4][saved.raised_rule] + saved.raised_device] = 1
        state[7][state[6][saved.last_rule] + saved.last_device] = saved.last_ts
        sup_slots = state[8][saved.sup_rule] + saved.sup_device
        state[10][sup_slots] = saved.sup_last
        state[11][sup_slots] = saved.sup_origin
        state[12][sup_slots] = saved.sup_flag
        self._state = state
        self._recompute_sup_next()

    def resize(self, device_home: np.ndarray, supervision_ms: np.ndarray | None = None) -> None:
        """Take a longer device -> home map (devices added at run time), keeping all state.

        Devices may move between homes; devices and homes are never dropped (a shorter map
        is a ValueError), since they may hold pending deadlines. `supervision_ms` gives
        every device's interval anew; None keeps the known devices' and leaves the new
        ones unsupervised.
        """
        new_home = check_device_home(device_home, at_least=self.n_devices)
        n_homes = _home_count(new_home, at_least=self._n_homes)
        if supervision_ms is None:
            supervision_ms = np.zeros(new_home.shape[0], np.int64)
            supervision_ms[: self.n_devices] = self._interval
        interval = check_intervals(supervision_ms, new_home.shape[0])
        old = self._state
        old_n_devices = self.n_devices
        self._interval = interval
        state = self._layout(new_home.shape[0], n_homes)
        # Each rule's old block goes to the start of its new, longer block; the entries of
        # the new devices and homes stay idle. Blocks: (offset, count) -> columns.
        owns_flags = self._tables.kind == KIND_HYSTERESIS
        owns_last = self._tables.cancel_mask != 0
        owns_sup = self._tables.kind == KIND_SUPERVISION
        blocks = (
            (0, old[1], (2, 3)),
            (4, device_layout(owns_flags, old_n_devices)[1], (5,)),
            (6, device_layout(owns_last, old_n_devices)[1], (7,)),
            (8, device_layout(owns_sup, old_n_devices)[1], (10, 11, 12)),
        )
        for offset_at, old_count, columns in blocks:
            for r in range(self._tables.n_rules):
                src = slice(old[offset_at][r], old[offset_at][r] + old_count[r])
                dst = slice(state[offset_at][r], state[offset_at][r] + old_count[r])
                for c in columns:
                    state[c][dst] = old[c][src]
        self._device_home, self._n_homes, self._state = new_home, n_homes, state
        self._recompute_sup_next()

    # -- internals -------------------------------------------------------------------------

    def _layout(self, n_devices: int, n_homes: int) -> State:
        """A fresh, idle state tuple (kernels.py's `state`) for the sizes."""
        offset, count = slot_layout(self._tables, n_devices, n_homes)
        n_slots = int(count.sum())
        due = np.full(n_slots, NO_DUE, np.int64)
        origin = np.zeros(n_slots, np.int64)
        flag_offset, flag_count = device_layout(self._tables.kind == KIND_HYSTERESIS, n_devices)
        flags = np.zeros(int(flag_count.sum()), np.int8)
        last_offset, last_count = device_layout(self._tables.cancel_mask != 0, n_devices)
        last_ts = np.full(int(last_count.sum()), NO_LAST, np.int64)
        sup_offset, sup_count = device_layout(self._tables.kind == KIND_SUPERVISION, n_devices)
        n_sup = int(sup_count.sum())
        sup_last = np.full(n_sup, NO_SEEN, np.int64)
        sup_origin = np.full(n_sup, NO_ORIGIN, np.int64)
        sup_flag = np.zeros(n_sup, np.int8)
        sup_next = np.full(1, NO_DUE, np.int64)
        for array in (offset, count, flag_offset, last_offset, sup_offset):
            array.flags.writeable = False
        return (
            offset,
            count,
            due,
            origin,
            flag_offset,
            flags,
            last_offset,
            last_ts,
            sup_offset,
            self._interval,
            sup_last,
            sup_origin,
            sup_flag,
            sup_next,
        )

    def _recompute_sup_next(self) -> None:
        """The exact supervision bound: the earliest `last seen + interval` of a supervised
        device that is not offline, 0 if one has never been heard from (a sweep starts
        its clock), NO_DUE if none. Only on construction, restore and resize; the kernels
        keep it (sweep exactly, events as a lower bound)."""
        sup_offset, interval, sup_last, _, sup_flag, sup_next = self._state[8:]
        earliest = NO_DUE
        for r in np.flatnonzero(self._tables.kind == KIND_SUPERVISION):
            block = slice(int(sup_offset[r]), int(sup_offset[r]) + self.n_devices)
            watched = (interval != 0) & (sup_flag[block] == 0)
            if not watched.any():
                continue
            last = sup_last[block][watched]
            if (last == NO_SEEN).any():
                earliest = min(earliest, 0)
            seen = last != NO_SEEN
            if seen.any():
                earliest = min(earliest, int((last[seen] + interval[watched][seen]).min()))
        sup_next[0] = earliest

    def _pending_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        offset, count, due, origin = self._state[:4]
        slots = np.flatnonzero(due != NO_DUE)
        rule = np.searchsorted(offset + count, slots, side="right")
        return rule, slots - offset[rule], due[slots], origin[slots]

    def _warm(self) -> None:
        """Run both kernels once on an empty state of the same types: a sweep of the real
        state would start the supervision clocks."""
        state, home, interval = self._state, self._device_home, self._interval
        try:
            self._interval = check_intervals(None, 0)
            self._device_home = check_device_home(np.zeros(0, np.int32))
            self._state = self._layout(0, 0)
            self.process(EventBatch.of([]))
            self.sweep(INT64_MIN)
        finally:
            self._state, self._device_home, self._interval = state, home, interval


def _sparse(offset: np.ndarray, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices into a per-device layout -> (rule, device) columns."""
    if not slots.shape[0]:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rule = np.searchsorted(offset, slots, side="right") - 1
    return rule, slots - offset[rule]
