"""`Engine`: the Python face of the numba kernels.

It is the only caller of kernels.py. It compiles the pack once, owns the state arrays and
the output buffer, checks every input in numpy (the kernels trust their arguments and do
no bounds checks), and copies results out of the reused buffer. It does no I/O and never
reads the clock: time comes in as event `ts` and as `now_ms` of `sweep`.

State: each not-followed rule owns one slot per device (scope device) or per home (scope
home) in two int64 columns, `due` (NO_DUE when idle) and `origin`. That is 16 bytes per
slot, nothing per match or threshold rule.

Not thread-safe: one engine is driven by one task. The kernels release the GIL, so
several engines (e.g. one per shard) can run on several cores.
"""

from __future__ import annotations

import numpy as np

from responsecentre.engine.kernels import NO_DUE, process_batch, sweep_due
from responsecentre.engine.rules import RulePack
from responsecentre.engine.tables import (
    INT64_MIN,
    EventBatch,
    Tables,
    Triggers,
    check_device_home,
    check_now,
    compile_tables,
    decode_snapshot,
    encode_snapshot,
    slot_layout,
)

__all__ = ["Engine"]


def _home_count(device_home: np.ndarray, at_least: int = 0) -> int:
    return max(at_least, int(device_home.max()) + 1 if device_home.shape[0] else 0)


def _readonly(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


class Engine:
    """Evaluates a RulePack over event batches with numba kernels (see docs/rules.md)."""

    def __init__(self, pack: RulePack, device_home: np.ndarray) -> None:
        """Compile the tables, allocate the state and warm the kernels.

        Warming runs both kernels on empty input, so the JIT compile (or the load from
        numba's on-disk cache) happens here and not inside the first real batch.
        """
        self._pack = pack
        self._tables = compile_tables(pack)
        self._targs = self._tables.kernel_args()
        self._device_home = check_device_home(device_home)
        self._n_homes = _home_count(self._device_home)
        self._state = self._layout(self._device_home.shape[0], self._n_homes)
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
        """Bytes of engine state (slot layout and slots), for capacity planning."""
        return sum(int(array.nbytes) for array in self._state)

    def process(self, batch: EventBatch) -> Triggers:
        """Run `batch` in array order against the pack; return its triggers in order."""
        columns = tuple(_readonly(c) for c in batch.checked(self.n_devices))
        need = columns[0].shape[0] * self._tables.max_rules_per_type
        if len(self._out) < need:
            self._out = Triggers.allocate(max(need, 2 * len(self._out)))
        n = process_batch(self._targs, self._state, self._device_home, columns, self._out.columns())
        return self._out.head(n)

    def sweep(self, now_ms: int) -> Triggers:
        """Fire every pending deadline with due <= now_ms, in slot order (rule, entity)."""
        now = check_now(now_ms)
        due = self._state[2]
        # Sized exactly (idle slots hold NO_DUE > now) rather than one row per slot: a
        # count is a fast vector pass, and no per-slot buffer has to live in memory.
        out = Triggers.allocate(int(np.count_nonzero(due <= now)))
        n = sweep_due(self._targs, self._state, self._device_home, now, out.columns())
        assert n == len(out), "sweep kernel and its count disagree"
        return out

    def next_due(self) -> int | None:
        """The earliest pending deadline (epoch ms), or None: when the shell should sweep."""
        due = self._state[2]
        earliest = int(due.min()) if due.shape[0] else NO_DUE
        return None if earliest == NO_DUE else earliest

    def pending(self) -> dict[tuple[int, int], tuple[int, int]]:
        """{(rule, entity): (due, origin)} of every pending deadline, for tests and tools."""
        rule, entity, due, origin = self._pending_columns()
        return {
            (r, e): (d, o)
            for r, e, d, o in zip(rule.tolist(), entity.tolist(), due.tolist(), origin.tolist(), strict=True)
        }

    def snapshot(self) -> bytes:
        """The pending deadlines and the tables' fingerprint (format: tables.py)."""
        return encode_snapshot(self._tables, self.n_devices, self._n_homes, *self._pending_columns())

    def restore(self, blob: bytes) -> None:
        """Replace the state by a snapshot's; ValueError if it belongs to other tables."""
        rule, entity, due, origin = decode_snapshot(blob, self._tables, self.n_devices, self._n_homes)
        state = self._layout(self.n_devices, self._n_homes)
        slots = state[0][rule] + entity
        state[2][slots] = due
        state[3][slots] = origin
        self._state = state

    def resize(self, device_home: np.ndarray) -> None:
        """Take a longer device -> home map (devices added at run time), keeping all state.

        Devices may move between homes; devices and homes are never dropped (a shorter map
        is a ValueError), since they may hold pending deadlines.
        """
        new_home = check_device_home(device_home, at_least=self.n_devices)
        n_homes = _home_count(new_home, at_least=self._n_homes)
        old_offset, old_count, old_due, old_origin = self._state
        state = self._layout(new_home.shape[0], n_homes)
        new_offset, _, new_due, new_origin = state
        for r in range(self._tables.n_rules):
            old = slice(old_offset[r], old_offset[r] + old_count[r])
            new = slice(new_offset[r], new_offset[r] + old_count[r])
            new_due[new] = old_due[old]
            new_origin[new] = old_origin[old]
        self._device_home, self._n_homes, self._state = new_home, n_homes, state

    # -- internals -------------------------------------------------------------------------

    def _layout(self, n_devices: int, n_homes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """A fresh, idle state tuple (slot_offset, slot_count, due, origin) for the sizes."""
        offset, count = slot_layout(self._tables, n_devices, n_homes)
        n_slots = int(count.sum())
        due = np.full(n_slots, NO_DUE, np.int64)
        origin = np.zeros(n_slots, np.int64)
        offset.flags.writeable = False
        count.flags.writeable = False
        return offset, count, due, origin

    def _pending_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        offset, count, due, origin = self._state
        slots = np.flatnonzero(due != NO_DUE)
        rule = np.searchsorted(offset + count, slots, side="right")
        return rule, slots - offset[rule], due[slots], origin[slots]

    def _warm(self) -> None:
        self.process(EventBatch.of([]))
        self.sweep(INT64_MIN)
