"""`Engine`: the Python face of the numba kernels.

It is the only caller of kernels.py. It compiles the pack once, owns the state arrays and
the output buffer, checks every input in numpy (the kernels trust their arguments and do
no bounds checks), and copies results out of the reused buffer. It does no I/O and never
reads the clock for its decisions: time comes in as event `ts` and as `now_ms` of `sweep`
(only a reload's report says how long it took).

State (tables.Layout says where each rule's block is; each slot's fields are one row, so
that a rule's work on an event touches one cache line): each not-followed rule owns one
slot per device (scope device) or per home (scope home), (due, origin), int64 each: 16
bytes per slot. Each hysteresis rule owns one byte per device (raised or not), each rule
with a resident's cancel one int64 per device (its last trigger, NO_LAST if none or
already cancelled). The supervise rule owns per device (last seen, its event's seq, iv),
int64 each, where iv is the device's interval from the shell (0: unsupervised), negated
while the device is offline. Each count rule owns an int32 per device or home pointing to
its ring in a shared pool, claimed on the first counted event (1 + n int64): most devices
never send most counted types. Each inactivity rule owns per home (last activity, its
seq, the cached deadline), int64 each. Match and threshold rules without a cancel own
nothing. Per home the engine also keeps its profile (int32) and time zone (int16)
(homes.py). All per-entity state is carved out of one allocation (`_Arena`): large
allocations get transparent huge pages, and the process kernel prefetches the slots an
event will touch a few events ahead (`_plan`), since it is bound by memory latency.

State is keyed by rule (homes.rule_keys: name and meaning in every home), so `reload`
swaps the pack keeping the state of every rule that still means the same, and `restore`
takes a snapshot of another pack the same way (snapshot.py).

Not thread-safe: one engine is driven by one task. The kernels release the GIL, so
several engines (e.g. one per shard) can run on several cores.
"""

from __future__ import annotations

import time

import numpy as np

from responsecentre.engine.homes import (
    HomeParams,
    check_home_params,
    default_home_params,
    extend_home_params,
    rule_keys,
)
from responsecentre.engine.kernels import (
    KIND_COUNT,
    KIND_HYSTERESIS,
    KIND_INACTIVE,
    KIND_NOT_FOLLOWED,
    KIND_SUPERVISION,
    NO_DUE,
    NO_LAST,
    NO_ORIGIN,
    NO_RING,
    NO_SEEN,
    OFFLINE_UNSUPERVISED,
    SCOPE_HOME,
    process_batch,
    sweep_count,
    sweep_due,
)
from responsecentre.engine.rules import RulePack
from responsecentre.engine.snapshot import (
    SnapshotState,
    classify,
    decode_snapshot,
    encode_snapshot,
    map_snapshot,
    ranges,
    report,
)
from responsecentre.engine.tables import (
    INT64_MIN,
    EventBatch,
    Layout,
    ReloadReport,
    Tables,
    Triggers,
    check_device_home,
    check_intervals,
    check_now,
    compile_tables,
    layout,
    supervision_start,
)

# kernels.py's `state`: (nf, hy, ca, su, co, ia), each a tuple of arrays.
State = tuple[tuple[np.ndarray, ...], ...]

__all__ = ["Engine", "ReloadReport"]

# (group, index in the state tuple, index of its per-entity array) of the state that a
# reload or resize copies block by block. The count group's pool is handled on its own.
_GROUPS = (("nf", 0, 2), ("hy", 1, 1), ("ca", 2, 1), ("su", 3, 1), ("ia", 5, 1))
_CO = 4


def _home_count(device_home: np.ndarray, at_least: int = 0) -> int:
    return max(at_least, int(device_home.max()) + 1 if device_home.shape[0] else 0)


def _readonly(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


class Engine:
    """Evaluates a RulePack over event batches with numba kernels (see docs/rules.md)."""

    def __init__(
        self,
        pack: RulePack,
        device_home: np.ndarray,
        supervision_ms: np.ndarray | None = None,
        homes: HomeParams | None = None,
    ) -> None:
        """Compile the tables, allocate the state and warm the kernels.

        `supervision_ms` is each device's supervision interval (0 or None: unsupervised);
        the shell computes it from the catalogue and the homes (docs/rules.md). `homes`
        gives each home's time zone and rule overrides (homes.home_params); None: every
        home in Europe/Oslo with the pack as written.
        Warming runs both kernels on empty input, so the JIT compile (or the load from
        numba's on-disk cache) happens here and not inside the first real batch.
        """
        owned = check_device_home(device_home)
        n_homes = _home_count(owned)
        interval = check_intervals(supervision_ms, owned.shape[0])
        homes = default_home_params(pack, n_homes) if homes is None else homes
        self._out = Triggers.allocate(0)
        self._install(pack, homes, owned, interval, carry=False)
        self._warm()

    # -- public API ------------------------------------------------------------------------

    @property
    def pack(self) -> RulePack:
        return self._pack

    @property
    def homes(self) -> HomeParams:
        """Each home's time zone and profile (rule overrides) in force."""
        return self._homes

    @property
    def rule_keys(self) -> tuple[tuple[str, str], ...]:
        """(name, meaning in every home) per rule: what a reload or restore matches state by."""
        return self._keys

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
        """Bytes of engine state (slots, flags, cancel windows, supervision, count rings,
        inactivity, per-home profile and zone), for capacity planning."""
        total = sum(int(array.nbytes) for group in self._state for array in group)
        if self._interval_store is not None:
            total += int(self._interval_store.nbytes)
        return total + int(self._hargs[1].nbytes) + int(self._hargs[2].nbytes)

    @property
    def supervision_ms(self) -> np.ndarray:
        """The supervision interval per device (read-only; 0: not supervised)."""
        if self._interval_store is not None:
            return self._interval_store
        iv = self._sup_rows()[:, 2]
        interval = np.where(iv == OFFLINE_UNSUPERVISED, 0, np.abs(iv))
        interval.flags.writeable = False
        return interval

    def process(self, batch: EventBatch) -> Triggers:
        """Run `batch` in array order against the pack; return its triggers in order."""
        columns = tuple(_readonly(c) for c in batch.checked(self.n_devices))
        need = columns[0].shape[0] * self._tables.max_rules_per_type
        if len(self._out) < need:
            self._out = Triggers.allocate(max(need, 2 * len(self._out)))
        if self._max_need:
            self._reserve(columns[0])
        n = process_batch(self._targs, self._pargs, self._state, self._hargs, columns, self._out.columns(), self._plan)
        return self._out.head(n)

    def sweep(self, now_ms: int) -> Triggers:
        """Fire every pending deadline with due <= now_ms, raise every supervised device
        silent for its interval and every home inactive for its rule's time, in slot
        order (rule, entity)."""
        now = check_now(now_ms)
        start = supervision_start(now)
        # Sized exactly by a counting pass rather than one row per slot: the count is
        # fast, and no per-slot buffer has to live in memory.
        out = Triggers.allocate(sweep_count(self._targs, self._pargs, self._state, self._hargs, now, start))
        n = sweep_due(self._targs, self._pargs, self._state, self._hargs, now, start, out.columns())
        assert n == len(out), "sweep kernel and its count disagree"
        return out

    def next_due(self) -> int | None:
        """When the shell should sweep next (epoch ms), or None: the earliest pending
        deadline, or the supervision or inactivity bound if earlier (docs/rules.md:
        exact after a sweep or a restore, possibly early after events, never late)."""
        due = self._state[0][2][:, 0]
        earliest = int(due.min()) if due.shape[0] else NO_DUE
        earliest = min(earliest, int(self._state[3][2][0]), int(self._state[5][2][0]))
        return None if earliest == NO_DUE else earliest

    def pending(self) -> dict[tuple[int, int], tuple[int, int]]:
        """{(rule, entity): (due, origin)} of every pending deadline, for tests and tools."""
        offset, count, slot = self._state[0]
        slots = np.flatnonzero(slot[:, 0] != NO_DUE)
        rule = np.searchsorted(offset + count, slots, side="right")
        entity = slots - offset[rule]
        return {
            (r, e): (d, o)
            for r, e, d, o in zip(
                rule.tolist(), entity.tolist(), slot[slots, 0].tolist(), slot[slots, 1].tolist(), strict=True
            )
        }

    def snapshot(self) -> bytes:
        """All state, keyed by the rules' keys (format: snapshot.py)."""
        return encode_snapshot(self._keys, self.n_devices, self._n_homes, self._sparse_state())

    def restore(self, blob: bytes) -> ReloadReport:
        """Replace the state by a snapshot's: each rule whose key the snapshot holds gets
        its saved state, the others start idle (a snapshot of another pack restores what
        still means the same). ValueError, state untouched, if the snapshot is damaged or
        names devices or homes this engine lacks."""
        started = time.perf_counter()
        saved = decode_snapshot(blob)
        mapped, names = map_snapshot(saved, self._keys, self._tables, self._homes, self._device_home, self._n_homes)
        self._state = self._scatter(mapped)
        self._plan = _plan(self._tables, self._layout, self._state)
        self._recompute_next()
        return report(names, time.perf_counter() - started)

    def reload(
        self, pack: RulePack, homes: HomeParams | None = None, supervision_ms: np.ndarray | None = None
    ) -> ReloadReport:
        """Swap in another pack, keeping the state of each rule whose key (name, meaning in
        every home) is unchanged; the others start idle. `homes` are the homes' params for
        the new pack (None: the zones in force, every home with the pack as written);
        `supervision_ms` None keeps the intervals. Nothing changes if it raises."""
        started = time.perf_counter()
        interval = self.supervision_ms if supervision_ms is None else check_intervals(supervision_ms, self.n_devices)
        if homes is None:
            homes = HomeParams(
                timezone=self._homes.timezone,
                profile=_readonly(np.zeros(self._homes.n_homes, np.int32)),
                zones=self._homes.zones,
                profiles=(pack.rules,),
            )
        names = self._install(pack, homes, self._device_home, interval, carry=True)
        return report(names, time.perf_counter() - started)

    def resize(
        self, device_home: np.ndarray, supervision_ms: np.ndarray | None = None, homes: HomeParams | None = None
    ) -> ReloadReport:
        """Take a longer device -> home map (devices added at run time), keeping all state.

        Devices may move between homes; devices and homes are never dropped (a shorter map
        is a ValueError), since they may hold pending deadlines. `supervision_ms` gives
        every device's interval anew; None keeps the known devices' and leaves the new
        ones unsupervised. `homes` gives the params of the longer home list; None keeps
        the known homes' and gives new ones Europe/Oslo and the pack as written. A rule
        whose key changes with the new homes' params starts idle (as in a reload).
        """
        started = time.perf_counter()
        new_home = check_device_home(device_home, at_least=self.n_devices)
        n_homes = _home_count(new_home, at_least=self._n_homes)
        if supervision_ms is None:
            supervision_ms = np.zeros(new_home.shape[0], np.int64)
            supervision_ms[: self.n_devices] = self.supervision_ms
        interval = check_intervals(supervision_ms, new_home.shape[0])
        homes = extend_home_params(self._homes, n_homes) if homes is None else homes
        names = self._install(self._pack, homes, new_home, interval, carry=True)
        return report(names, time.perf_counter() - started)

    # -- internals -------------------------------------------------------------------------

    def _install(
        self, pack: RulePack, homes: HomeParams, device_home: np.ndarray, interval: np.ndarray, carry: bool
    ) -> tuple[tuple[str, ...], ...]:
        """Compile `pack` for `homes` and the directory, lay out fresh state, carry over the
        state of every rule whose key is unchanged (if `carry`), and only then swap it all
        in; returns classify's names."""
        n_homes = max(_home_count(device_home), homes.n_homes, self._n_homes if carry else 0)
        homes = check_home_params(homes, pack, n_homes)
        tables = compile_tables(pack, homes.profiles)
        keys = rule_keys(pack, homes)
        lay = layout(tables, device_home.shape[0], n_homes)
        state = _fresh(lay, interval, 0)
        if carry:
            source, names = classify(self._keys, keys)
            state = self._carry(source, tables, lay, state, interval)
        else:
            names = ((), (), tuple(name for name, _ in keys), ())
        self._pack, self._homes, self._tables, self._keys, self._layout = pack, homes, tables, keys, lay
        self._targs, self._pargs = tables.kernel_args()
        self._device_home, self._n_homes = device_home, n_homes
        self._interval_store = None if (tables.kind == KIND_SUPERVISION).any() else interval
        self._hargs = (device_home, homes.profile, homes.timezone, *homes.zones.args())
        self._max_need = int(tables.count_need.max(initial=0))
        self._state = state
        self._plan = _plan(tables, lay, state)
        self._recompute_next()
        return names

    def _carry(self, source: np.ndarray, tables: Tables, lay: Layout, state: State, interval: np.ndarray) -> State:
        """Copy each kept rule's blocks from the current state into `state` (numpy block
        copies; a block only grows, at its end, when devices or homes were added)."""
        old, old_lay = self._state, self._layout
        kept = [(new, int(src)) for new, src in enumerate(source.tolist()) if src >= 0]
        for name, g, column in _GROUPS:
            old_offset, old_count = old_lay.group(name)
            new_offset, new_count = lay.group(name)
            for new, src in kept:
                size = int(old_count[src])
                if size == 0:
                    continue
                assert size <= new_count[new], "a kept rule's block shrank"
                a, b = int(old_offset[src]), int(new_offset[new])
                state[g][column][b : b + size] = old[g][column][a : a + size]
                if name == "su":  # the intervals are the new ones; offline stays offline
                    rows = state[g][column][b : b + size]
                    rows[:, 2] = _iv(interval[:size], old[g][column][a : a + size, 2] < 0)
        # Count rings: gather each kept rule's rings into a fresh, compact pool.
        old_co, old_cap = old[_CO], self._tables.ring_cap
        pieces: list[tuple[np.ndarray, np.ndarray, int, int]] = []  # new ptr slots, old starts, width, chunk
        total = 0
        for new, src in kept:
            if tables.kind[new] != KIND_COUNT:
                continue
            a, size = int(old_lay.co_offset[src]), int(old_lay.co_count[src])
            ptr = old_co[1][a : a + size]
            used = np.flatnonzero(ptr != NO_RING)
            chunk = 1 + int(tables.ring_cap[new])
            width = min(chunk, 1 + int(old_cap[src]))
            pieces.append((lay.co_offset[new] + used, ptr[used].astype(np.int64), width, chunk))
            total += used.shape[0] * chunk
        pool = np.zeros(total, np.int64)
        ptr_new = state[_CO][1]
        at = 0
        for slots, starts, width, chunk in pieces:
            begin = at + np.arange(slots.shape[0], dtype=np.int64) * chunk
            ptr_new[slots] = begin
            offsets = np.arange(width, dtype=np.int64)
            pool[(begin[:, None] + offsets).ravel()] = old_co[2][(starts[:, None] + offsets).ravel()]
            at += slots.shape[0] * chunk
        top = np.array([total], np.int64)
        return (*state[:_CO], (state[_CO][0], ptr_new, pool, top), *state[_CO + 1 :])

    def _reserve(self, type_id: np.ndarray) -> None:
        """Grow the count pool so that every ring this batch may claim fits (the kernel
        cannot allocate). Cheap when there is room for the worst case."""
        offset, ptr, pool, top = self._state[_CO]
        used = int(top[0])
        free = pool.shape[0] - used
        if free >= type_id.shape[0] * self._max_need:
            return
        need = int(self._tables.count_need[type_id].sum())
        if free >= need:
            return
        # A quarter more than needed: rings are claimed once per device or home, so the
        # pool settles, and slack is memory that every device pays for.
        grown = np.zeros(max(used + need, (used + need) * 5 // 4, 1024), np.int64)
        grown[:used] = pool[:used]
        self._state = (*self._state[:_CO], (offset, ptr, grown, top), *self._state[_CO + 1 :])

    def _sup_rows(self) -> np.ndarray:
        """The supervise rule's rows (last, origin, iv) per device (a view)."""
        rule = int(np.flatnonzero(self._tables.kind == KIND_SUPERVISION)[0])
        start = int(self._layout.su_offset[rule])
        return self._state[3][1][start : start + self.n_devices]

    def _home_of(self, rule: np.ndarray, entity: np.ndarray) -> np.ndarray:
        """The home of each (rule, entity): the entity itself for home-scoped rules."""
        if not entity.shape[0]:
            return np.zeros(0, np.int64)
        device = np.minimum(entity, max(self.n_devices - 1, 0))
        home_of_device = self._device_home[device] if self.n_devices else entity
        return np.where(self._tables.scope[rule] == SCOPE_HOME, entity, home_of_device)

    def _sparse_state(self) -> SnapshotState:
        """The state as snapshot.py's sparse columns, in (rule, entity) order."""
        nf, hy, ca, su, co, ia = self._state
        lay, tables = self._layout, self._tables

        def locate(name: str, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            offset, count = lay.group(name)
            rule = np.searchsorted(offset + count, slots, side="right")
            return rule, slots - offset[rule]

        slot, sup, quiet = nf[2], su[1], ia[1]
        pending = np.flatnonzero(slot[:, 0] != NO_DUE)
        raised = np.flatnonzero(hy[1])
        last = np.flatnonzero(ca[1] != NO_LAST)
        seen = np.flatnonzero((sup[:, 0] != NO_SEEN) | (sup[:, 2] < 0))
        active = np.flatnonzero(quiet[:, 0] != NO_SEEN)
        rings = np.flatnonzero(co[1] != NO_RING)
        at = co[1][rings].astype(np.int64)
        code = co[2][at]
        holding = code != 0
        rings, at, code = rings[holding], at[holding], code[holding]
        count_rule, count_entity = locate("co", rings)
        n = tables.count_n[self._homes.profile[self._home_of(count_rule, count_entity)], count_rule]
        full = code >= n
        held = np.where(full, n, code)
        head = np.where(full, code - n, 0)
        j = ranges(np.zeros(held.shape[0], np.int64), held)
        position = (np.repeat(head, held) + j) % np.repeat(n, held)
        count_ts = co[2][np.repeat(at, held) + 1 + position]
        return SnapshotState(
            *locate("nf", pending),
            slot[pending, 0],
            slot[pending, 1],
            *locate("hy", raised),
            *locate("ca", last),
            ca[1][last],
            *locate("su", seen),
            sup[seen, 0],
            sup[seen, 1],
            (sup[seen, 2] < 0).astype(np.int64),
            count_rule,
            count_entity,
            held,
            count_ts,
            *locate("ia", active),
            quiet[active, 0],
            quiet[active, 1],
            (quiet[active, 2] == NO_DUE).astype(np.int64),
        )

    def _scatter(self, saved: SnapshotState) -> State:
        """A fresh state holding `saved` (rules and entities in this engine's indices)."""
        lay, tables = self._layout, self._tables
        held = saved.count_held
        chunk = 1 + tables.ring_cap[saved.count_rule]
        starts = np.concatenate([[0], np.cumsum(chunk)])[:-1].astype(np.int64)
        total = int(chunk.sum())
        state = _fresh(lay, self.supervision_ms, total)
        nf, hy, ca, su, co, ia = state
        rows = lay.nf_offset[saved.rule] + saved.entity
        nf[2][rows, 0] = saved.due
        nf[2][rows, 1] = saved.origin
        hy[1][lay.hy_offset[saved.raised_rule] + saved.raised_device] = 1
        ca[1][lay.ca_offset[saved.last_rule] + saved.last_device] = saved.last_ts
        rows = lay.su_offset[saved.sup_rule] + saved.sup_device
        su[1][rows, 0] = saved.sup_last
        su[1][rows, 1] = saved.sup_origin
        su[1][rows, 2] = _iv(su[1][rows, 2], saved.sup_flag != 0)
        co[1][lay.co_offset[saved.count_rule] + saved.count_entity] = starts
        co[2][starts] = held  # v = held: fewer than n, or n with the oldest at 0
        co[2][np.repeat(starts, held) + 1 + ranges(np.zeros(held.shape[0], np.int64), held)] = saved.count_ts
        co[3][0] = total
        rows = lay.ia_offset[saved.ia_rule] + saved.ia_home
        ia[1][rows, 0] = saved.ia_last
        ia[1][rows, 1] = saved.ia_origin
        bound = saved.ia_last + tables.min_inactive_ms[saved.ia_rule]
        ia[1][rows, 2] = np.where(saved.ia_fired != 0, NO_DUE, bound)
        return state

    def _recompute_next(self) -> None:
        """The exact supervision bound (the earliest `last seen + interval` of a supervised
        device that is not offline, 0 if one has never been heard from: a sweep starts its
        clock) and the inactivity bound (the earliest cached deadline). Only on
        construction, restore, reload and resize; the kernels keep them otherwise."""
        sup, sup_next = self._state[3][1], self._state[3][2]
        watched = sup[:, 2] > 0
        last = sup[watched, 0]
        earliest = NO_DUE
        if (last == NO_SEEN).any():
            earliest = 0
        seen = last != NO_SEEN
        if seen.any():
            earliest = min(earliest, int((last[seen] + sup[watched, 2][seen]).min()))
        sup_next[0] = earliest
        code = self._state[5][1][:, 2]
        waiting = code != NO_DUE
        due = np.where(code[waiting] < 0, ~code[waiting], code[waiting])
        self._state[5][2][0] = int(due.min()) if due.shape[0] else NO_DUE

    def _warm(self) -> None:
        """Run both kernels once on an empty state of the same types: a sweep of the real
        state would start the supervision clocks."""
        empty = layout(self._tables, 0, 0)
        state = _fresh(empty, check_intervals(None, 0), 0)
        hargs = (
            check_device_home(np.zeros(0, np.int32)),
            self._homes.profile[:0],
            self._homes.timezone[:0],
            *self._homes.zones.args(),
        )
        columns = tuple(_readonly(c) for c in EventBatch.of([]).checked(0))
        out = Triggers.allocate(0).columns()
        process_batch(self._targs, self._pargs, state, hargs, columns, out, _plan(self._tables, empty, state))
        sweep_count(self._targs, self._pargs, state, hargs, INT64_MIN, 0)
        sweep_due(self._targs, self._pargs, state, hargs, INT64_MIN, 0, out)


def _plan(tables: Tables, lay: Layout, state: State) -> tuple[np.ndarray, ...]:
    """kernels.process_batch's prefetch plan: per event type, for each of its rules with
    per-entity state, where that state starts in the arena (bytes), its row size, and
    whether it is per home (else per device)."""
    buffer = state[0][2]
    while isinstance(buffer.base, np.ndarray):
        buffer = buffer.base
    origin = buffer.ctypes.data

    def at(array: np.ndarray, offset: int, size: int) -> int:
        return int(array.ctypes.data - origin) + offset * size if array.size else 0

    nf, hy, ca, su, co, ia = state
    kind, scope = tables.kind, tables.scope
    targets: dict[int, tuple[int, int, bool]] = {}
    for r in range(tables.n_rules):
        home = bool(scope[r] == SCOPE_HOME)
        if kind[r] == KIND_SUPERVISION:
            targets[r] = (at(su[1], int(lay.su_offset[r]), 24), 24, False)
        elif kind[r] == KIND_INACTIVE:
            targets[r] = (at(ia[1], int(lay.ia_offset[r]), 24), 24, True)
        elif kind[r] == KIND_NOT_FOLLOWED:
            targets[r] = (at(nf[2], int(lay.nf_offset[r]), 16), 16, home)
        elif kind[r] == KIND_COUNT:
            targets[r] = (at(co[1], int(lay.co_offset[r]), 4), 4, home)
        elif kind[r] == KIND_HYSTERESIS:
            targets[r] = (at(hy[1], int(lay.hy_offset[r]), 1), 1, False)
        elif tables.cancel_mask[r] != 0:
            targets[r] = (at(ca[1], int(lay.ca_offset[r]), 8), 8, False)
    ptr = np.zeros(tables.type_ptr.shape[0], np.int64)
    base: list[int] = []
    stride: list[int] = []
    home_of: list[bool] = []
    for t in range(tables.type_ptr.shape[0] - 1):
        for r in tables.type_rules[tables.type_ptr[t] : tables.type_ptr[t + 1]].tolist():
            if r in targets:
                b, size, home = targets[r]
                base.append(b)
                stride.append(size)
                home_of.append(home)
        ptr[t + 1] = len(base)
    return (buffer, ptr, np.array(base, np.int64), np.array(stride, np.int64), np.array(home_of, np.bool_))


def _iv(interval: np.ndarray, offline: np.ndarray) -> np.ndarray:
    """The `iv` column of supervision rows: the interval, negated while offline."""
    return np.where(offline, np.where(interval > 0, -interval, OFFLINE_UNSUPERVISED), interval)


class _Arena:
    """Carves the state arrays out of one allocation. Large allocations get transparent
    huge pages (numpy advises them), and the kernels' random accesses over megabytes of
    state then miss the TLB far less (under virtualisation a miss costs a nested walk)."""

    def __init__(self, nbytes: int) -> None:
        self._buffer = np.empty(max(nbytes, 1), np.uint8)
        self._buffer[:] = 0
        self._at = 0

    def take(self, shape: tuple[int, ...], dtype: type, fill: int) -> np.ndarray:
        itemsize = np.dtype(dtype).itemsize
        size = int(np.prod(shape)) * itemsize
        array = self._buffer[self._at : self._at + size].view(dtype).reshape(shape)
        self._at += -(-size // 64) * 64
        if fill:
            array[...] = fill
        return array


def _fresh(lay: Layout, interval: np.ndarray, pool_size: int) -> State:
    """A fresh, idle state (kernels.py's `state`) for the layout and intervals."""
    n = {name: int(lay.group(name)[1].sum()) for name in ("nf", "hy", "ca", "su", "co", "ia")}
    nbytes = n["nf"] * 16 + n["hy"] + n["ca"] * 8 + n["su"] * 24 + n["co"] * 4 + n["ia"] * 24 + 64 * 8
    arena = _Arena(nbytes)
    slot = arena.take((n["nf"], 2), np.int64, 0)
    slot[:, 0] = NO_DUE
    sup = arena.take((n["su"], 3), np.int64, 0)
    sup[:, 0] = NO_SEEN
    sup[:, 1] = NO_ORIGIN
    if n["su"]:  # one block per supervise rule (a pack has at most one), each every device
        sup[:, 2] = np.tile(interval, n["su"] // max(interval.shape[0], 1))
    quiet = arena.take((n["ia"], 3), np.int64, 0)
    quiet[:, 0] = NO_SEEN
    quiet[:, 1] = NO_ORIGIN
    quiet[:, 2] = NO_DUE
    return (
        (lay.nf_offset, lay.nf_count, slot),
        (lay.hy_offset, arena.take((n["hy"],), np.int8, 0)),
        (lay.ca_offset, arena.take((n["ca"],), np.int64, NO_LAST)),
        (lay.su_offset, sup, np.full(1, NO_DUE, np.int64)),
        (
            lay.co_offset,
            arena.take((n["co"],), np.int32, NO_RING),
            np.zeros(pool_size, np.int64),
            np.zeros(1, np.int64),
        ),
        (lay.ia_offset, quiet, np.full(1, NO_DUE, np.int64)),
    )
