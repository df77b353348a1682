"""`Engine`: the Python face of the numba kernels.

It is the only caller of kernels.py. It compiles the pack once, owns the state arrays and
the output buffer, checks every input in numpy (the kernels trust their arguments and do
no bounds checks), and copies results out of the reused buffer. It does no I/O and never
reads the clock for its decisions: time comes in as event `ts` and as `now_ms` of `sweep`
(only a reload's report says how long it took).

State (tables.Layout says where each rule's fields are): per-entity state lives in two
tables of fixed-width records, one row per device and one per home, each row holding the
fields of every rule that keeps state for that entity; the process kernel is bound by
memory latency, and an event then touches about one cache line of its device and one of
its home instead of one per rule. A supervise rule keeps per device (last seen, its
event's seq, iv), int64 each, where iv is the device's interval from the shell (0:
unsupervised), negated while the device is offline; an inactivity rule per home (last
activity, its seq, the cached deadline), int64 each; a not-followed rule of home scope per
home (due, origin), int64 each; a hysteresis rule one byte per device (raised or not); a
rule with a resident's cancel one int64 per device (its last trigger, NO_LAST if none or
already cancelled). Count rules and not-followed rules of device scope keep an int32 per
device or home pointing into a shared pool, claimed on first use (a ring of 1 + n int64,
or a (due, origin) pair): most devices never send most counted or deadline-arming types.
Match and threshold rules without a cancel keep nothing. Per home the engine also keeps
its profile (int32) and time zone (int16) (homes.py). The records are carved out of one
allocation (`_Store`): large allocations get transparent huge pages, and the process
kernel prefetches the records and pool entries an event will touch a few events ahead
(`_plan`).

State is keyed by rule (homes.rule_keys: name and meaning in every home), so `reload`
swaps the pack keeping the state of every rule that still means the same, and `restore`
takes a snapshot of another pack the same way (snapshot.py).

Not thread-safe: one engine is driven by one task. The kernels release the GIL, so
several engines (e.g. one per shard) can run on several cores.
"""

from __future__ import annotations

import time
from dataclasses import fields

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

__all__ = ["Engine", "ReloadReport"]

# The kernels' views of a record table: int64, int32 and int8 columns, by field width.
_VIEW = {8: 0, 4: 1, 1: 2}


def _home_count(device_home: np.ndarray, at_least: int = 0) -> int:
    return max(at_least, int(device_home.max()) + 1 if device_home.shape[0] else 0)


def _readonly(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


class _Store:
    """The engine's mutable state: the device and home record tables (each as its int64,
    int32 and int8 views), the pool of count rings and pooled deadlines, the pool's first
    free entry (`top`), and the supervision and inactivity bounds (`bound`).

    Both tables are carved out of one allocation, each starting on a cache line. Large
    allocations get transparent huge pages (numpy advises them), and the kernels' random
    accesses over megabytes of state then miss the TLB far less (under virtualisation a
    miss costs a nested walk).
    """

    def __init__(self, lay: Layout, n_devices: int, n_homes: int, pool_size: int) -> None:
        sizes = (n_devices * lay.dev_width, n_homes * lay.home_width)
        starts = (0, -(-sizes[0] // 64) * 64)
        self.buffer = np.empty(starts[1] + sizes[1] + 64, np.uint8)
        self.buffer[:] = 0
        skip = -self.buffer.ctypes.data % 64
        self.tables: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        shapes = ((n_devices, lay.dev_width), (n_homes, lay.home_width))
        for start, size, (rows, width) in zip(starts, sizes, shapes, strict=True):
            raw = self.buffer[skip + start : skip + start + size]
            self.tables.append(tuple(raw.view(t).reshape(rows, width // np.dtype(t).itemsize) for t in _TYPES))
        self.pool = np.zeros(pool_size, np.int64)
        self.top = np.zeros(1, np.int64)
        self.bound = np.full(2, NO_DUE, np.int64)

    @property
    def dev(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.tables[0]

    @property
    def home(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.tables[1]

    def field(self, lay: Layout, r: int, k: int = 0) -> np.ndarray:
        """Field k of rule r across its table's rows (a column view)."""
        table = self.tables[1 if lay.home[r] else 0]
        return table[_VIEW[int(lay.width[r])]][:, int(lay.col[r]) + k]

    def cancel(self, lay: Layout, r: int) -> np.ndarray:
        """Rule r's cancel window per device (a column view)."""
        return self.dev[0][:, int(lay.ca_col[r])]

    @property
    def nbytes(self) -> tuple[int, int, int]:
        """Bytes of (device records, home records, pool)."""
        return int(self.dev[2].nbytes), int(self.home[2].nbytes), int(self.pool.nbytes)


_TYPES = (np.int64, np.int32, np.int8)


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
        self._out_columns = self._out.columns()
        self._out_rows = 0
        self._n_homes = 0
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
    def state_parts(self) -> dict[str, int]:
        """Bytes of engine state by part, for capacity planning: the device and home
        records, the pool (count rings, pooled deadlines), each home's profile and zone,
        and the supervision intervals if no rule keeps them."""
        dev, home, pool = self._store.nbytes
        parts = {
            "device records": dev,
            "home records": home,
            "pool": pool,
            "home profile and zone": int(self._hargs[1].nbytes) + int(self._hargs[2].nbytes),
        }
        if self._interval_store is not None:
            parts["supervision intervals"] = int(self._interval_store.nbytes)
        return parts

    @property
    def state_nbytes(self) -> int:
        """Bytes of engine state (records, pool, per-home profile and zone), for capacity
        planning."""
        return sum(self.state_parts.values())

    @property
    def supervision_ms(self) -> np.ndarray:
        """The supervision interval per device (read-only; 0: not supervised)."""
        if self._interval_store is not None:
            return self._interval_store
        iv = self._sup_field(2)
        interval = np.where(iv == OFFLINE_UNSUPERVISED, 0, np.abs(iv))
        interval.flags.writeable = False
        return interval

    def process(self, batch: EventBatch) -> Triggers:
        """Run `batch` in array order against the pack; return its triggers in order."""
        columns = tuple([_readonly(c) for c in batch.checked(self._device_home.shape[0])])
        n_events = columns[0].shape[0]
        if self._out_rows < n_events * self._tables.max_rules_per_type:
            self._allocate_out(n_events * self._tables.max_rules_per_type)
        out = self._out_columns
        at, n = process_batch(self._targs, self._pargs, self._sargs, self._hargs, columns, out, self._plan, 0, 0)
        while at < n_events:
            self._grow(int(self._layout.need[columns[0][at:]].sum()))
            at, n = process_batch(self._targs, self._pargs, self._sargs, self._hargs, columns, out, self._plan, at, n)
        return self._out.head(n)

    def sweep(self, now_ms: int) -> Triggers:
        """Fire every pending deadline with due <= now_ms, raise every supervised device
        silent for its interval and every home inactive for its rule's time, in slot
        order (rule, entity)."""
        now = check_now(now_ms)
        start = supervision_start(now)
        # Sized exactly by a counting pass rather than one row per slot: the count is
        # fast, and no per-slot buffer has to live in memory.
        per_rule = np.zeros(self._tables.n_rules, np.int64)
        total = sweep_count(self._targs, self._pargs, self._sargs, self._hargs, now, start, per_rule)
        out = Triggers.allocate(int(total))
        cursor = np.concatenate([[0], np.cumsum(per_rule)[:-1]]).astype(np.int64)
        n = sweep_due(self._targs, self._pargs, self._sargs, self._hargs, now, start, out.columns(), cursor)
        assert n == len(out), "sweep kernel and its count disagree"
        return out

    def next_due(self) -> int | None:
        """When the shell should sweep next (epoch ms), or None: the earliest pending
        deadline, or the supervision or inactivity bound if earlier (docs/rules.md:
        exact after a sweep or a restore, possibly early after events, never late)."""
        earliest = int(self._store.bound.min())
        for r in np.flatnonzero(self._tables.kind == KIND_NOT_FOLLOWED).tolist():
            due = self._slots(r)[1]
            if due.shape[0]:
                earliest = min(earliest, int(due.min()))
        return None if earliest == NO_DUE else earliest

    def pending(self) -> dict[tuple[int, int], tuple[int, int]]:
        """{(rule, entity): (due, origin)} of every pending deadline, for tests and tools."""
        found: dict[tuple[int, int], tuple[int, int]] = {}
        for r in np.flatnonzero(self._tables.kind == KIND_NOT_FOLLOWED).tolist():
            entity, due, origin = self._slots(r)
            for e, d, o in zip(entity.tolist(), due.tolist(), origin.tolist(), strict=True):
                found[(r, e)] = (d, o)
        return found

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
        self._set_store(self._scatter(mapped))
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
        lay = layout(tables)
        if carry:
            source, names = classify(self._keys, keys)
            store = self._carry(source, tables, lay, device_home.shape[0], n_homes, interval)
        else:
            store = _fresh(tables, lay, device_home.shape[0], n_homes, interval, 0)
            names = ((), (), tuple(name for name, _ in keys), ())
        self._pack, self._homes, self._tables, self._keys, self._layout = pack, homes, tables, keys, lay
        self._targs, self._pargs = tables.kernel_args()
        self._device_home, self._n_homes = device_home, n_homes
        self._interval_store = None if (tables.kind == KIND_SUPERVISION).any() else interval
        self._hargs = (device_home, homes.profile, homes.timezone, *homes.zones.args())
        kind = tables.kind
        in_sweep = (kind == KIND_SUPERVISION) | (kind == KIND_INACTIVE) | (kind == KIND_NOT_FOLLOWED)
        self._sweep_rules = tuple(
            _readonly(np.flatnonzero(in_sweep & (lay.home == home)).astype(np.int64)) for home in (False, True)
        )
        self._plan = _plan(tables, lay)
        self._set_store(store)
        self._recompute_next()
        return names

    def _set_store(self, store: _Store) -> None:
        """Swap in a store and rebuild the kernels' `state` tuple of it."""
        self._store = store
        lay = self._layout
        self._sargs = (lay.col, lay.ca_col, lay.pooled, *self._sweep_rules, *store.dev, *store.home)
        self._sargs += (store.pool, store.top, store.bound)

    def _carry(
        self, source: np.ndarray, tables: Tables, lay: Layout, n_devices: int, n_homes: int, interval: np.ndarray
    ) -> _Store:
        """A fresh store for the new layout holding each kept rule's state from the current
        one (numpy column copies; a table only grows, at its end, when devices or homes
        were added). Pooled entries are gathered into a fresh, compact pool."""
        old, old_lay, old_tables = self._store, self._layout, self._tables
        kept = [(new, int(src)) for new, src in enumerate(source.tolist()) if src >= 0]
        # Pooled entries: gather each kept rule's claimed, non-idle entries.
        pieces: list[tuple[int, np.ndarray, np.ndarray, int, int]] = []  # rule, entities, old starts, width, chunk
        total = 0
        for new, src in kept:
            if not lay.pooled[new]:
                continue
            ptr = old.field(old_lay, src)
            used = np.flatnonzero(ptr != NO_RING)
            starts = ptr[used].astype(np.int64)
            live = old.pool[starts] != (0 if tables.kind[new] == KIND_COUNT else NO_DUE)
            chunk = int(lay.chunk[new])
            width = min(chunk, int(old_lay.chunk[src]))
            pieces.append((new, used[live], starts[live], width, chunk))
            total += int(live.sum()) * chunk
        store = _fresh(tables, lay, n_devices, n_homes, interval, total)
        at = 0
        for new, entities, starts, width, chunk in pieces:
            begin = at + np.arange(entities.shape[0], dtype=np.int64) * chunk
            store.field(lay, new)[entities] = begin
            offsets = np.arange(width, dtype=np.int64)
            store.pool[(begin[:, None] + offsets).ravel()] = old.pool[(starts[:, None] + offsets).ravel()]
            at += entities.shape[0] * chunk
        store.top[0] = total
        # Record fields: column by column.
        for new, src in kept:
            if old_tables.cancel_mask[src] != 0:
                column = old.cancel(old_lay, src)
                store.cancel(lay, new)[: column.shape[0]] = column
            if old_lay.col[src] < 0 or old_lay.pooled[src]:
                continue
            for k in range(int(old_lay.fields[src])):
                column = old.field(old_lay, src, k)
                store.field(lay, new, k)[: column.shape[0]] = column
            if tables.kind[new] == KIND_SUPERVISION:  # the intervals are the new ones; offline stays offline
                size = old.dev[0].shape[0]
                iv = store.field(lay, new, 2)
                iv[:size] = _iv(interval[:size], old.field(old_lay, src, 2) < 0)
        return store

    def _allocate_out(self, rows: int) -> None:
        """A larger output buffer for process (kept and reused: it only grows)."""
        self._out = Triggers.allocate(max(rows, 2 * self._out_rows))
        self._out_columns = self._out.columns()
        self._out_rows = len(self._out)

    def _grow(self, need: int) -> None:
        """Grow the pool so that `need` more entries fit (the kernel cannot allocate; it
        stops before an event that might not fit, and this runs between its calls)."""
        store = self._store
        used = int(store.top[0])
        # A quarter more than needed: entries are claimed once per device or home, so the
        # pool settles, and slack is memory that every device pays for.
        grown = np.zeros(max(used + need, (used + need) * 5 // 4, 1024), np.int64)
        grown[:used] = store.pool[:used]
        store.pool = grown
        self._set_store(store)

    def _sup_field(self, k: int) -> np.ndarray:
        """Field k (0: last seen, 1: origin, 2: iv) of the supervise rule, per device."""
        rule = int(np.flatnonzero(self._tables.kind == KIND_SUPERVISION)[0])
        return self._store.field(self._layout, rule, k)

    def _slots(self, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(entity, due, origin) of not-followed rule r's pending deadlines, by entity."""
        store, lay = self._store, self._layout
        if lay.pooled[r]:
            ptr = store.field(lay, r)
            claimed = np.flatnonzero(ptr != NO_RING)
            at = ptr[claimed].astype(np.int64)
            due = store.pool[at]
            pending = due != NO_DUE
            return claimed[pending], due[pending], store.pool[at[pending] + 1]
        due = store.field(lay, r)
        entity = np.flatnonzero(due != NO_DUE)
        return entity, due[entity], store.field(lay, r, 1)[entity]

    def _home_of(self, rule: np.ndarray, entity: np.ndarray) -> np.ndarray:
        """The home of each (rule, entity): the entity itself for home-scoped rules."""
        if not entity.shape[0]:
            return np.zeros(0, np.int64)
        device = np.minimum(entity, max(self.n_devices - 1, 0))
        home_of_device = self._device_home[device] if self.n_devices else entity
        return np.where(self._tables.scope[rule] == SCOPE_HOME, entity, home_of_device)

    def _sparse_state(self) -> SnapshotState:
        """The state as snapshot.py's sparse columns, in (rule, entity) order."""
        store, lay, tables = self._store, self._layout, self._tables
        kind = tables.kind
        cols: dict[str, list[np.ndarray]] = {f.name: [] for f in fields(SnapshotState)}

        def add(**columns: np.ndarray) -> None:
            for name, column in columns.items():
                cols[name].append(np.asarray(column, np.int64))

        for r in range(tables.n_rules):
            rule = np.int64(r)
            if kind[r] == KIND_NOT_FOLLOWED:
                entity, due, origin = self._slots(r)
                add(rule=np.full(entity.shape[0], rule), entity=entity, due=due, origin=origin)
            elif kind[r] == KIND_HYSTERESIS:
                raised = np.flatnonzero(store.field(lay, r))
                add(raised_rule=np.full(raised.shape[0], rule), raised_device=raised)
            elif kind[r] == KIND_SUPERVISION:
                last, origin, iv = (store.field(lay, r, k) for k in range(3))
                seen = np.flatnonzero((last != NO_SEEN) | (iv < 0))
                add(
                    sup_rule=np.full(seen.shape[0], rule),
                    sup_device=seen,
                    sup_last=last[seen],
                    sup_origin=origin[seen],
                    sup_flag=iv[seen] < 0,
                )
            elif kind[r] == KIND_INACTIVE:
                last, origin, code = (store.field(lay, r, k) for k in range(3))
                active = np.flatnonzero(last != NO_SEEN)
                add(
                    ia_rule=np.full(active.shape[0], rule),
                    ia_home=active,
                    ia_last=last[active],
                    ia_origin=origin[active],
                    ia_fired=code[active] == NO_DUE,
                )
            elif kind[r] == KIND_COUNT:
                ptr = store.field(lay, r)
                rings = np.flatnonzero(ptr != NO_RING)
                at = ptr[rings].astype(np.int64)
                code = store.pool[at]
                holding = code != 0
                rings, at, code = rings[holding], at[holding], code[holding]
                rules = np.full(rings.shape[0], rule)
                n = tables.count_n[self._homes.profile[self._home_of(rules, rings)], r]
                full = code >= n
                held = np.where(full, n, code)
                head = np.where(full, code - n, 0)
                j = ranges(np.zeros(held.shape[0], np.int64), held)
                position = (np.repeat(head, held) + j) % np.repeat(n, held)
                add(
                    count_rule=rules,
                    count_entity=rings,
                    count_held=held,
                    count_ts=store.pool[np.repeat(at, held) + 1 + position],
                )
            if tables.cancel_mask[r] != 0:
                last_ts = store.cancel(lay, r)
                last = np.flatnonzero(last_ts != NO_LAST)
                add(last_rule=np.full(last.shape[0], rule), last_device=last, last_ts=last_ts[last])
        return SnapshotState(
            **{name: np.concatenate(parts) if parts else np.zeros(0, np.int64) for name, parts in cols.items()}
        )

    def _scatter(self, saved: SnapshotState) -> _Store:
        """A fresh store holding `saved` (rules and entities in this engine's indices)."""
        lay, tables = self._layout, self._tables
        kind = tables.kind
        held = saved.count_held
        pooled_nf = lay.pooled[saved.rule] != 0
        chunk = 1 + tables.ring_cap[saved.count_rule]
        starts = np.concatenate([[0], np.cumsum(chunk)])[:-1].astype(np.int64)
        rings = int(chunk.sum())
        slot_starts = rings + 2 * np.arange(int(pooled_nf.sum()), dtype=np.int64)
        store = _fresh(tables, lay, self.n_devices, self._n_homes, self.supervision_ms, rings + 2 * slot_starts.size)
        pool = store.pool
        store.top[0] = pool.shape[0]
        for r in np.unique(saved.rule).tolist():
            mine = saved.rule == r
            if lay.pooled[r]:
                at = slot_starts[mine[pooled_nf]]
                store.field(lay, r)[saved.entity[mine]] = at
                pool[at] = saved.due[mine]
                pool[at + 1] = saved.origin[mine]
            else:
                store.field(lay, r, 0)[saved.entity[mine]] = saved.due[mine]
                store.field(lay, r, 1)[saved.entity[mine]] = saved.origin[mine]
        for r in np.unique(saved.raised_rule).tolist():
            store.field(lay, r)[saved.raised_device[saved.raised_rule == r]] = 1
        for r in np.unique(saved.last_rule).tolist():
            mine = saved.last_rule == r
            store.cancel(lay, r)[saved.last_device[mine]] = saved.last_ts[mine]
        for r in np.unique(saved.sup_rule).tolist():
            mine = saved.sup_rule == r
            device = saved.sup_device[mine]
            store.field(lay, r, 0)[device] = saved.sup_last[mine]
            store.field(lay, r, 1)[device] = saved.sup_origin[mine]
            iv = store.field(lay, r, 2)
            iv[device] = _iv(iv[device], saved.sup_flag[mine] != 0)
        for r in np.unique(saved.count_rule).tolist():
            mine = saved.count_rule == r
            store.field(lay, r)[saved.count_entity[mine]] = starts[mine]
        pool[starts] = held  # v = held: fewer than n, or n with the oldest at 0
        pool[np.repeat(starts, held) + 1 + ranges(np.zeros(held.shape[0], np.int64), held)] = saved.count_ts
        for r in np.unique(saved.ia_rule).tolist():
            mine = saved.ia_rule == r
            home = saved.ia_home[mine]
            store.field(lay, r, 0)[home] = saved.ia_last[mine]
            store.field(lay, r, 1)[home] = saved.ia_origin[mine]
            bound = saved.ia_last[mine] + tables.min_inactive_ms[r]
            store.field(lay, r, 2)[home] = np.where(saved.ia_fired[mine] != 0, NO_DUE, bound)
        assert all(kind[r] == KIND_NOT_FOLLOWED for r in np.unique(saved.rule).tolist())
        return store

    def _recompute_next(self) -> None:
        """The exact supervision bound (the earliest `last seen + interval` of a supervised
        device that is not offline, 0 if one has never been heard from: a sweep starts its
        clock) and the inactivity bound (the earliest cached deadline). Only on
        construction, restore, reload and resize; the kernels keep them otherwise."""
        store, lay, kind = self._store, self._layout, self._tables.kind
        earliest = NO_DUE
        for r in np.flatnonzero(kind == KIND_SUPERVISION).tolist():
            iv = store.field(lay, r, 2)
            watched = iv > 0
            last = store.field(lay, r, 0)[watched]
            if (last == NO_SEEN).any():
                earliest = 0
            seen = last != NO_SEEN
            if seen.any():
                earliest = min(earliest, int((last[seen] + iv[watched][seen]).min()))
        quietest = NO_DUE
        for r in np.flatnonzero(kind == KIND_INACTIVE).tolist():
            code = store.field(lay, r, 2)
            waiting = code[code != NO_DUE]
            if waiting.shape[0]:
                quietest = min(quietest, int(np.where(waiting < 0, ~waiting, waiting).min()))
        store.bound[0] = earliest
        store.bound[1] = quietest

    def _warm(self) -> None:
        """Run both kernels once on an empty state of the same types: a sweep of the real
        state would start the supervision clocks."""
        empty = _fresh(self._tables, self._layout, 0, 0, check_intervals(None, 0), 0)
        lay = self._layout
        sargs = (lay.col, lay.ca_col, lay.pooled, *self._sweep_rules, *empty.dev, *empty.home)
        sargs += (empty.pool, empty.top, empty.bound)
        hargs = (
            check_device_home(np.zeros(0, np.int32)),
            self._homes.profile[:0],
            self._homes.timezone[:0],
            *self._homes.zones.args(),
        )
        columns = tuple(_readonly(c) for c in EventBatch.of([]).checked(0))
        out = Triggers.allocate(0).columns()
        per_rule = np.zeros(self._tables.n_rules, np.int64)
        process_batch(self._targs, self._pargs, sargs, hargs, columns, out, self._plan, 0, 0)
        sweep_count(self._targs, self._pargs, sargs, hargs, INT64_MIN, 0, per_rule)
        sweep_due(self._targs, self._pargs, sargs, hargs, INT64_MIN, 0, out, per_rule)


def _plan(tables: Tables, lay: Layout) -> tuple[np.ndarray, ...]:
    """kernels.process_batch's plan: per event type, the pool entries its rules may claim,
    and the pool entries behind their pointers (to prefetch)."""
    n_types = tables.type_ptr.shape[0] - 1
    ptr = np.zeros(n_types + 1, np.int64)
    home_of: list[bool] = []
    column: list[int] = []
    last: list[int] = []
    for t in range(n_types):
        for r in tables.type_rules[tables.type_ptr[t] : tables.type_ptr[t + 1]].tolist():
            if lay.pooled[r]:
                home_of.append(bool(lay.home[r]))
                column.append(int(lay.col[r]))
                last.append(int(lay.chunk[r]) - 1)
        ptr[t + 1] = len(column)
    arrays = (lay.need, ptr, np.array(home_of, np.bool_), np.array(column, np.int64))
    return tuple(_readonly(a) for a in (*arrays, np.array(last, np.int64)))


def _iv(interval: np.ndarray, offline: np.ndarray) -> np.ndarray:
    """The `iv` column of supervision rows: the interval, negated while offline."""
    return np.where(offline, np.where(interval > 0, -interval, OFFLINE_UNSUPERVISED), interval)


def _fresh(tables: Tables, lay: Layout, n_devices: int, n_homes: int, interval: np.ndarray, pool_size: int) -> _Store:
    """A fresh, idle store for the layout and intervals."""
    store = _Store(lay, n_devices, n_homes, pool_size)
    for r in range(tables.n_rules):
        k = int(tables.kind[r])
        if lay.pooled[r]:
            store.field(lay, r)[:] = NO_RING
        elif k == KIND_SUPERVISION:
            store.field(lay, r, 0)[:] = NO_SEEN
            store.field(lay, r, 1)[:] = NO_ORIGIN
            store.field(lay, r, 2)[:] = interval
        elif k == KIND_INACTIVE:
            store.field(lay, r, 0)[:] = NO_SEEN
            store.field(lay, r, 1)[:] = NO_ORIGIN
            store.field(lay, r, 2)[:] = NO_DUE
        elif k == KIND_NOT_FOLLOWED:
            store.field(lay, r, 0)[:] = NO_DUE
        if lay.ca_col[r] >= 0:
            store.cancel(lay, r)[:] = NO_LAST
    return store
