"""The numba kernels of the rule engine, and the integer codes they share with tables.py.

Only arrays and tuples of arrays cross this boundary: `Engine` (engine.py) validates the
input, owns the state and output buffers and wraps the results; these functions only loop.
They never allocate, so the caller sizes the output (and the pool) for the worst case and
the kernel returns how many rows it wrote.

The argument tuples (built by tables.py and engine.py, documented there):

    tables = (type_ptr, type_rules, kind, when_mask, unless_mask, op, scope, action,
              clear_op, cancel_mask, cond_mask, ring_cap, varies,
              min_inactive_ms, type_op)                              # [rule]
    params = (threshold, clear_threshold, within_ms, cancel_within_ms, count_n,
              count_within_ms, inactive_ms, has_window, win_from, win_to,
              win_days)                                              # [profile, rule]
    homes  = (device_home, home_profile, home_tz, tz_ptr, tz_trans, tz_off)
    state  = (col, ca_col, pooled, sweep_dev, sweep_home,            # [rule], tables.Layout
              dev64, dev32, dev8, home64, home32, home8, pool, top, bound)
    batch  = (type_id, device, ts, value, has_value, seq, cond)
    out    = (rule, device, home, ts, origin, event, action)
    plan   = (need, pool_ptr, pool_home, pool_col, pool_last)

Per-entity state is two tables of records, one row per device (dev*) and one per home
(home*), each table seen through three views of the same bytes (int64, int32 and int8
columns); rule r's fields start at column col[r] of its table, in units of the field's
width (tables.Layout). sweep_dev and sweep_home list the rules whose device or home fields
a sweep reads. The fields by kind:

    supervision (device, int64 x 3): last seen, its event, iv; iv is the interval, negated
        while offline (0: unsupervised, OFFLINE_UNSUPERVISED: both)
    inactivity (home, int64 x 3): last activity, its event, code; code is the deadline's
        lower bound (>= 0), ~exact deadline (< 0), or NO_DUE (not waiting)
    not-followed in place (home scope, int64 x 2): due, origin
    not-followed pooled (device scope, int32): the start of (due, origin) in `pool`, or
        NO_RING if the device never armed one (then: idle)
    count (int32): the start of its ring in `pool` (NO_RING: none yet)
    hysteresis (device, int8): raised or not
    cancel window (device, int64 at ca_col[r]): the last trigger's ts, or NO_LAST

`top` is int64[1], the pool's first free entry; `bound` is int64[2], lower bounds of the
earliest supervision silence and the earliest inactivity deadline.

A count ring in `pool` is `1 + ring_cap[r]` int64: first its position code v (v < n: v
timestamps held, the next goes to v; v >= n: n held, the oldest at v - n), then the
timestamps. The engine grows the pool before a batch so that every entry the batch may
claim fits.

The semantics are written down in docs/rules.md and implemented a second time, for
clarity, in reference.py; tests/test_engine_differential.py holds the two together. The
codes below are compile-time constants of the kernels: they live in this file so that a
change to them invalidates numba's on-disk cache, which is keyed on this file. (The cache
is not invalidated by a change to localtime.py alone: clear `__pycache__` after editing it.)
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from responsecentre.engine.localtime import wall_in_window, window_due, zone_segment

# Rule kinds (tables.kind).
KIND_MATCH = 0
KIND_THRESHOLD = 1
KIND_NOT_FOLLOWED = 2
KIND_HYSTERESIS = 3
KIND_SUPERVISION = 4
KIND_COUNT = 5
KIND_INACTIVE = 6

# What an event of a type does to a rule (tables.type_op, one per type_rules entry).
DO_MATCH = 0
DO_THRESHOLD = 1
DO_NOT_FOLLOWED = 2  # a trigger, a follow-up, or both: the kernel tests the masks
DO_HYSTERESIS = 3
DO_ALIVE = 4  # supervision: a sign of life
DO_OFFLINE = 5  # supervision: the device says it is offline
DO_COUNT = 6
DO_INACTIVE = 7
DO_CANCEL = 8  # the resident's cancel of a rule's last trigger

# What a decision asks of the alarm desk (tables.action, and the `action` output column).
ACTION_RAISE = 0  # raise an alarm, or join the open one of (home, kind)
ACTION_CLEAR = 1  # the condition went away: close the home's open alarm of the kind
ACTION_CANCEL = 2  # the resident cancelled within the window: close it as cancelled

# Threshold comparisons (tables.op): value <op> threshold.
OP_LT = 0
OP_LE = 1
OP_GT = 2
OP_GE = 3
OP_EQ = 4

# Whose state slot a NOT_FOLLOWED or COUNT rule uses (tables.scope).
SCOPE_DEVICE = 0
SCOPE_HOME = 1

# `due` of a slot with no pending deadline. The largest int64 makes "earliest deadline"
# a plain minimum and "due <= now" false for idle slots.
NO_DUE = np.iinfo(np.int64).max

# `last_ts` of a device with no trigger that a cancel could still refer to (event times
# are >= 0).
NO_LAST = -1

# `sup_last` of a device not heard from since the engine started; the next sweep starts
# its clock. `sup_origin` of such a device is NO_ORIGIN. Also an inactivity slot's `last`
# before the home's first activity (it is not watched).
NO_SEEN = np.iinfo(np.int64).min
NO_ORIGIN = -1

# A count slot with no ring in the pool yet.
NO_RING = -1

# The `iv` of a device that is offline and (now) unsupervised: it raises and clears
# nothing until an interval is given again, and is still offline then.
OFFLINE_UNSUPERVISED = np.iinfo(np.int64).min


# How many events ahead the process kernel prefetches the records an event will use, and
# how many ahead it reads their pool pointers (by then in cache) to prefetch the pool
# entries behind them. The kernel is bound by memory latency: its branches depend on the
# state it loads, so the CPU cannot run ahead to the next event's loads by itself.
PREFETCH_AHEAD = 16
POOL_AHEAD = 6


@intrinsic
def _prefetch(typingctx, array, row, column):  # type: ignore[no-untyped-def]
    """Hint the CPU to fetch the cache line of array[row] (1-D; `column` ignored) or
    array[row, column] (2-D); no effect on the result, never faults (an index out of range
    is skipped by the caller anyway)."""
    signature = types.void(array, row, column)

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        array_type = sig.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        index = [context.cast(builder, args[1], sig.args[1], types.intp)]
        if array_type.ndim == 2:
            index.append(context.cast(builder, args[2], sig.args[2], types.intp))
        pointer = cgutils.get_item_pointer(context, builder, array_type, view, index, wraparound=False)
        byte = ir.IntType(8).as_pointer()
        int32 = ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte, int32, int32, int32]), "llvm.prefetch.p0i8"
        )
        # read, high locality, data cache
        builder.call(function, [builder.bitcast(pointer, byte), int32(0), int32(3), int32(1)])
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def _u(typingctx, x):  # type: ignore[no-untyped-def]
    """x (an integer the caller knows is >= 0) as an unsigned index: numba then indexes
    without the negative-index wraparound (a compare and a select per subscript, which
    add up in the process kernel's hot loop)."""
    signature = types.uintp(x)

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return context.cast(builder, args[0], sig.args[0], types.intp)

    return signature, codegen


@njit(cache=True, nogil=True)
def _passes(value, op, threshold):  # type: ignore[no-untyped-def]
    if op == OP_LT:
        return value < threshold
    if op == OP_LE:
        return value <= threshold
    if op == OP_GT:
        return value > threshold
    if op == OP_GE:
        return value >= threshold
    return value == threshold


@njit(cache=True, nogil=True)
def _zone(tz_ptr, tz_trans, tz_off, tz, ts, c_tz, c_lo, c_hi, c_off):  # type: ignore[no-untyped-def]
    """(c_tz, c_lo, c_hi, c_off) for zone `tz` at `ts`: the cached offset of zone c_tz over
    [c_lo, c_hi) if it covers them, else the one localtime.zone_segment looks up."""
    if tz == c_tz and c_lo <= ts < c_hi:
        return c_tz, c_lo, c_hi, c_off
    lo, hi, off = zone_segment(tz_ptr, tz_trans, tz_off, tz, ts)
    return np.int64(tz), lo, hi, off


@njit(cache=True, nogil=True)
def _emit(out, n, rule, device, home, ts, origin, event, action):  # type: ignore[no-untyped-def]
    out_rule, out_device, out_home, out_ts, out_origin, out_event, out_action = out
    out_rule[n] = rule
    out_device[n] = device
    out_home[n] = home
    out_ts[n] = ts
    out_origin[n] = origin
    out_event[n] = event
    out_action[n] = action
    return n + 1


@njit(cache=True, nogil=True)
def process_batch(tables, params, state, homes, batch, out, plan, first, n):  # type: ignore[no-untyped-def]
    """Run the events of a batch from row `first` on, in array order, writing triggers to
    `out` from row `n` on; returns (the row it stopped at, the rows of `out` in use). It
    stops early, before an event whose rules might claim more pool than is free (need[t]),
    for the caller to grow the pool and call again from there.

    `plan` = (need, pool_ptr, pool_home, pool_col, pool_last): an event touches its
    device's record and (most types) its home's: both prefetched PREFETCH_AHEAD events
    ahead; and the pool entries behind the int32 pointers at column
    pool_col[k] of its home's (pool_home[k]) or device's record, spanning pool_last[k] + 1
    int64, for k in pool_ptr[t]..pool_ptr[t + 1], prefetched POOL_AHEAD events ahead
    (engine.py builds it).

    `out` must hold len(batch) * (most rules of any one type) rows: each (event, rule)
    pair emits at most one decision (a cancel type is never a `when` type of its rule).
    """
    type_ptr, type_rules, _, when_mask, unless_mask, op, scope, action = tables[:8]
    clear_op, cancel_mask, cond_mask, ring_cap, varies, min_inactive_ms, type_op = tables[8:]
    threshold, clear_threshold, within_ms, cancel_within_ms = params[0], params[1], params[2], params[3]
    count_n, count_within_ms = params[4], params[5]
    has_window, win_from, win_to, win_days = params[7], params[8], params[9], params[10]
    device_home, home_profile, home_tz, tz_ptr, tz_trans, tz_off = homes
    col, ca_col, pooled = state[0], state[1], state[2]
    dev64, dev32, dev8, home64, home32, home8, pool, top, bound = state[5:]
    type_id, device, ts, value, has_value, seq, cond = batch
    need, pool_ptr, pool_home, pool_col, pool_last = plan
    n_events = type_id.shape[0]
    dev_last = dev8.shape[1] - 1
    home_last = home8.shape[1] - 1
    dev_mid = min(64, dev_last)
    home_mid = min(64, home_last)
    free = pool.shape[0] - top[0]  # pool entries free, less what the events so far claimed
    # The UTC offset of zone c_tz over [c_lo, c_hi) (`_zone`): homes mostly share a zone
    # and a batch spans minutes, so a window test rarely has to look the offset up.
    c_tz, c_lo, c_hi, c_off = -1, 0, 0, 0
    for i in range(first, n_events):
        t = type_id[_u(i)]
        if need[_u(t)] > free:
            return i, n
        # Prefetch the records of the event PREFETCH_AHEAD on (the first byte, the 64th and
        # the last of each: a record may straddle two cache lines or, past 64 bytes,
        # three, as an 88-byte home record does in a quarter of the rows), the home index
        # of the one after it, and the pool entries of the event POOL_AHEAD on (its
        # records are in cache by now, so reading their pointers does not stall). The
        # home's record is fetched whatever the type: a test of the type here would be a
        # branch on a random event's type, mispredicted about every other event, which
        # costs more than the needless fetches (heartbeats) it saves.
        ahead = i + PREFETCH_AHEAD
        if ahead + PREFETCH_AHEAD < n_events:
            _prefetch(device_home, device[_u(ahead + PREFETCH_AHEAD)], 0)
        if ahead < n_events:
            da = device[_u(ahead)]
            _prefetch(dev8, da, 0)
            _prefetch(dev8, da, dev_mid)
            _prefetch(dev8, da, dev_last)
            ha = device_home[_u(da)]
            _prefetch(home8, ha, 0)
            _prefetch(home8, ha, home_mid)
            _prefetch(home8, ha, home_last)
        near = i + POOL_AHEAD
        if near < n_events:
            tn = type_id[_u(near)]
            for k in range(pool_ptr[_u(tn)], pool_ptr[_u(tn + 1)]):
                dn = device[_u(near)]
                at = (
                    home32[_u(device_home[_u(dn)]), _u(pool_col[_u(k)])]
                    if pool_home[_u(k)]
                    else dev32[_u(dn), _u(pool_col[_u(k)])]
                )
                if at != NO_RING:
                    _prefetch(pool, at, 0)
                    _prefetch(pool, at + pool_last[_u(k)], 0)
        free -= need[_u(t)]
        bit = np.int64(1) << t
        d = device[_u(i)]
        h = device_home[_u(d)]
        p = -1  # the home's profile: loaded only when a rule that varies by home needs it
        now = ts[_u(i)]
        c = cond[_u(i)]
        for k in range(type_ptr[_u(t)], type_ptr[_u(t + 1)]):
            r = type_rules[_u(k)]
            o = type_op[_u(k)]
            f = col[_u(r)]
            if o == DO_ALIVE:
                # Any event but an offline one is a sign of life: the silence clock
                # restarts (at the latest time seen), and an offline device is back.
                iv = dev64[_u(d), _u(f + 2)]
                if iv == 0 or iv == OFFLINE_UNSUPERVISED:  # not supervised
                    continue
                last = dev64[_u(d), _u(f)]
                if now > last:
                    last = now
                    dev64[_u(d), _u(f)] = now
                dev64[_u(d), _u(f + 1)] = seq[_u(i)]
                if iv < 0:
                    n = _emit(out, n, r, d, h, now, seq[_u(i)], i, ACTION_CLEAR)
                    iv = -iv
                    dev64[_u(d), _u(f + 2)] = iv
                if last + iv < bound[0]:
                    bound[0] = last + iv
                continue
            if o == DO_INACTIVE:
                # Activity, at any hour: the home's silence starts again from the latest.
                # The deadline cached is a lower bound (the rule's shortest `for` in any
                # home); a sweep past it settles the exact one.
                if (c & cond_mask[_u(r)]) == cond_mask[_u(r)]:
                    last = home64[_u(h), _u(f)]
                    if now >= last:
                        last = now
                        home64[_u(h), _u(f)] = now
                        home64[_u(h), _u(f + 1)] = seq[_u(i)]
                    due = last + min_inactive_ms[_u(r)]
                    home64[_u(h), _u(f + 2)] = due
                    if due < bound[1]:
                        bound[1] = due
                continue
            if o == DO_OFFLINE:
                # device.offline (a Last Will, or online: false): raise at once, once.
                iv = dev64[_u(d), _u(f + 2)]
                if iv > 0:
                    n = _emit(out, n, r, d, h, now, seq[_u(i)], i, ACTION_RAISE)
                    dev64[_u(d), _u(f + 2)] = -iv
                continue
            # `where` gates the `when` events only (never a follow-up or a cancel).
            passes = (c & cond_mask[_u(r)]) == cond_mask[_u(r)]
            q = 0  # the profile whose parameters apply: 0 unless the rule varies by home
            if varies[_u(r)] != 0:
                if p < 0:
                    p = home_profile[_u(h)]
                q = p
            if o == DO_NOT_FOLLOWED:
                home_scope = scope[_u(r)] == SCOPE_HOME
                e = h if home_scope else d
                # The slot (due, origin): in the pool behind a pointer, or in the record.
                at = NO_RING
                if pooled[_u(r)] != 0:
                    at = home32[_u(e), _u(f)] if home_scope else dev32[_u(e), _u(f)]
                    due = NO_DUE if at == NO_RING else pool[_u(at)]
                else:
                    due = home64[_u(e), _u(f)] if home_scope else dev64[_u(e), _u(f)]
                # a: the deadline passed before this event; it fires first.
                if due != NO_DUE and due < now:
                    origin = (
                        pool[_u(at + 1)]
                        if pooled[_u(r)] != 0
                        else home64[_u(e), _u(f + 1)]
                        if home_scope
                        else dev64[_u(e), _u(f + 1)]
                    )
                    n = _emit(out, n, r, -1 if home_scope else d, h, due, origin, -1, ACTION_RAISE)
                    due = NO_DUE
                # b: a follow-up in time cancels (at any hour).
                if (unless_mask[_u(r)] & bit) != 0:
                    due = NO_DUE
                # c: a trigger arms an idle slot (a pending one keeps its clock), if it
                # passes `where` and is inside `during`.
                arm = (when_mask[_u(r)] & bit) != 0 and due == NO_DUE and passes
                if arm and has_window[_u(q), _u(r)] != 0:
                    c_tz, c_lo, c_hi, c_off = _zone(
                        tz_ptr, tz_trans, tz_off, home_tz[_u(h)], now, c_tz, c_lo, c_hi, c_off
                    )
                    arm = wall_in_window(
                        now + c_off, win_from[_u(q), _u(r)], win_to[_u(q), _u(r)], win_days[_u(q), _u(r)]
                    )
                if arm:
                    due = now + within_ms[_u(q), _u(r)]
                    if pooled[_u(r)] != 0:
                        if at == NO_RING:  # the entity's first deadline: claim its slot
                            at = top[0]
                            top[0] = at + 2
                            if home_scope:
                                home32[_u(e), _u(f)] = at
                            else:
                                dev32[_u(e), _u(f)] = at
                        pool[_u(at + 1)] = seq[_u(i)]
                    elif home_scope:
                        home64[_u(e), _u(f + 1)] = seq[_u(i)]
                    else:
                        dev64[_u(e), _u(f + 1)] = seq[_u(i)]
                if pooled[_u(r)] != 0:
                    if at != NO_RING:
                        pool[_u(at)] = due
                elif home_scope:
                    home64[_u(e), _u(f)] = due
                else:
                    dev64[_u(e), _u(f)] = due
                continue
            if o == DO_COUNT:
                counts = passes
                if counts and has_window[_u(q), _u(r)] != 0:
                    c_tz, c_lo, c_hi, c_off = _zone(
                        tz_ptr, tz_trans, tz_off, home_tz[_u(h)], now, c_tz, c_lo, c_hi, c_off
                    )
                    counts = wall_in_window(
                        now + c_off, win_from[_u(q), _u(r)], win_to[_u(q), _u(r)], win_days[_u(q), _u(r)]
                    )
                if counts:
                    # Push `now` into the slot's ring (claimed from the pool on first use); n
                    # held within `within` fire and empty it. Written out here, not in a
                    # helper: a call with array arguments costs reference counting.
                    home_scope = scope[_u(r)] == SCOPE_HOME
                    e = h if home_scope else d
                    at = home32[_u(e), _u(f)] if home_scope else dev32[_u(e), _u(f)]
                    if at == NO_RING:
                        at = top[0]
                        top[0] = at + 1 + ring_cap[_u(r)]
                        if home_scope:
                            home32[_u(e), _u(f)] = at
                        else:
                            dev32[_u(e), _u(f)] = at
                        pool[_u(at)] = 0
                    held = count_n[_u(q), _u(r)]
                    v = pool[_u(at)]
                    if v < held:
                        pool[_u(at + 1 + v)] = now
                        v += 1  # v == held: full, the oldest at 0
                    else:
                        head = v - held
                        pool[_u(at + 1 + head)] = now
                        head += 1
                        if head == held:
                            head = 0
                        v = held + head
                    if v >= held:
                        lo = pool[_u(at + 1)]
                        hi = lo
                        for j in range(at + 2, at + 1 + held):
                            x = pool[_u(j)]
                            if x < lo:
                                lo = x
                            elif x > hi:
                                hi = x
                        if hi - lo <= count_within_ms[_u(q), _u(r)]:
                            n = _emit(out, n, r, d, h, now, seq[_u(i)], i, action[_u(r)])
                            v = 0
                    pool[_u(at)] = v
                continue
            if o == DO_CANCEL:
                # The resident's cancel: counts within the window after the device's last
                # trigger of this rule, once. Never gated by `where` or `during`.
                g = ca_col[_u(r)]
                last = dev64[_u(d), _u(g)]
                if last != NO_LAST and last <= now and now - last <= cancel_within_ms[_u(q), _u(r)]:
                    n = _emit(out, n, r, d, h, now, seq[_u(i)], i, ACTION_CANCEL)
                    dev64[_u(d), _u(g)] = NO_LAST
                continue
            if not passes:
                continue
            if o == DO_HYSTERESIS:
                if has_value[_u(i)]:
                    if dev8[_u(d), _u(f)] == 0:
                        # Outside the window a reading may clear, but not raise.
                        raise_ = _passes(value[_u(i)], op[_u(r)], threshold[_u(q), _u(r)])
                        if raise_ and has_window[_u(q), _u(r)] != 0:
                            c_tz, c_lo, c_hi, c_off = _zone(
                                tz_ptr, tz_trans, tz_off, home_tz[_u(h)], now, c_tz, c_lo, c_hi, c_off
                            )
                            raise_ = wall_in_window(
                                now + c_off, win_from[_u(q), _u(r)], win_to[_u(q), _u(r)], win_days[_u(q), _u(r)]
                            )
                        if raise_:
                            n = _emit(out, n, r, d, h, now, seq[_u(i)], i, ACTION_RAISE)
                            dev8[_u(d), _u(f)] = 1
                    elif _passes(value[_u(i)], clear_op[_u(r)], clear_threshold[_u(q), _u(r)]):
                        n = _emit(out, n, r, d, h, now, seq[_u(i)], i, ACTION_CLEAR)
                        dev8[_u(d), _u(f)] = 0
            elif o == DO_MATCH or (has_value[_u(i)] and _passes(value[_u(i)], op[_u(r)], threshold[_u(q), _u(r)])):
                if has_window[_u(q), _u(r)] != 0:
                    c_tz, c_lo, c_hi, c_off = _zone(
                        tz_ptr, tz_trans, tz_off, home_tz[_u(h)], now, c_tz, c_lo, c_hi, c_off
                    )
                    if not wall_in_window(
                        now + c_off, win_from[_u(q), _u(r)], win_to[_u(q), _u(r)], win_days[_u(q), _u(r)]
                    ):
                        continue
                n = _emit(out, n, r, d, h, now, seq[_u(i)], i, action[_u(r)])
                if cancel_mask[_u(r)] != 0:
                    dev64[_u(d), _u(ca_col[_u(r)])] = now
    return n_events, n


@njit(cache=True, nogil=True)
def _settle(params, homes, r, h, last):  # type: ignore[no-untyped-def]
    """The exact inactivity deadline of rule r in home h after activity at `last`: when
    `for` (of in-window time, with a window: window_due) has passed."""
    p = homes[1][h]
    if params[7][p, r] == 0:
        return last + params[6][p, r]
    return window_due(
        homes[3],
        homes[4],
        homes[5],
        homes[2][h],
        last,
        params[6][p, r],
        params[8][p, r],
        params[9][p, r],
        params[10][p, r],
    )


# Rows of a record table a sweep takes at a time: it walks each table once, block by block,
# and runs every rule's loop over the block while the block is in cache.
SWEEP_BLOCK = 256


@njit(cache=True, nogil=True)
def sweep_count(tables, params, state, homes, now, start, per_rule):  # type: ignore[no-untyped-def]
    """How many rows `sweep_due(now, start)` will emit, per rule into `per_rule` (zeroed
    first); returns the total. Sizes sweep_due's output exactly, and places each rule's
    rows in it.

    Settles the inactivity bounds that have passed (a cache, so sweep_due finds them
    settled): the only state it changes.
    """
    kind = tables[2]
    col, pooled, sweep_dev, sweep_home = state[0], state[2], state[3], state[4]
    dev64, dev32, home64, home32, pool = state[5], state[6], state[8], state[9], state[11]
    n_devices = homes[0].shape[0]
    n_homes = homes[1].shape[0]
    per_rule[:] = 0
    for lo in range(0, n_devices, SWEEP_BLOCK):
        hi = min(lo + SWEEP_BLOCK, n_devices)
        for k in range(sweep_dev.shape[0]):
            r = sweep_dev[_u(k)]
            f = _u(col[_u(r)])
            found = 0
            if kind[_u(r)] == KIND_SUPERVISION:
                for d in range(lo, hi):
                    iv = dev64[_u(d), f + 2]
                    if iv > 0:
                        last = dev64[_u(d), f]
                        if last == NO_SEEN:
                            last = start
                        if last + iv <= now:
                            found += 1
            elif pooled[_u(r)] != 0:
                for d in range(lo, hi):
                    at = dev32[_u(d), f]
                    if at != NO_RING and pool[_u(at)] <= now:
                        found += 1
            else:
                for d in range(lo, hi):
                    if dev64[_u(d), f] <= now:  # NO_DUE never is
                        found += 1
            per_rule[_u(r)] += found
    for lo in range(0, n_homes, SWEEP_BLOCK):
        hi = min(lo + SWEEP_BLOCK, n_homes)
        for k in range(sweep_home.shape[0]):
            r = sweep_home[_u(k)]
            f = _u(col[_u(r)])
            found = 0
            if kind[_u(r)] == KIND_INACTIVE:
                for h in range(lo, hi):
                    code = home64[_u(h), f + 2]
                    if 0 <= code <= now and code != NO_DUE:
                        code = ~_settle(params, homes, r, h, home64[_u(h), f])
                        home64[_u(h), f + 2] = code
                    if code < 0 and ~code <= now:
                        found += 1
            elif pooled[_u(r)] != 0:
                for h in range(lo, hi):
                    at = home32[_u(h), f]
                    if at != NO_RING and pool[_u(at)] <= now:
                        found += 1
            else:
                for h in range(lo, hi):
                    if home64[_u(h), f] <= now:
                        found += 1
            per_rule[_u(r)] += found
    return per_rule.sum()


@njit(cache=True, nogil=True)
def sweep_due(tables, params, state, homes, now, start, out, cursor):  # type: ignore[no-untyped-def]
    """Fire and clear every pending slot with due <= now, raise every supervised device
    silent since `now - interval` or longer and every home silent (in its window) for its
    rule's `for`; rule r's rows go to `out` from cursor[r] on (sweep_count's per-rule
    counts, summed before r), so the output is in slot order (rule, then entity) though
    the tables are walked block by block. A device never heard from starts its clock at
    `start` (now, clamped to event times). Recomputes the supervision and inactivity
    bounds exactly (of the cached deadlines). Returns the rows written.
    """
    kind, action = tables[2], tables[7]
    col, pooled, sweep_dev, sweep_home = state[0], state[2], state[3], state[4]
    dev64, dev32, home64, home32 = state[5], state[6], state[8], state[9]
    pool, bound = state[11], state[13]
    device_home = homes[0]
    n_devices = device_home.shape[0]
    n_homes = homes[1].shape[0]
    written = 0
    earliest = NO_DUE
    quietest = NO_DUE
    for lo in range(0, n_devices, SWEEP_BLOCK):
        hi = min(lo + SWEEP_BLOCK, n_devices)
        for k in range(sweep_dev.shape[0]):
            r = sweep_dev[_u(k)]
            f = _u(col[_u(r)])
            n = cursor[_u(r)]
            if kind[_u(r)] == KIND_SUPERVISION:
                for d in range(lo, hi):
                    iv = dev64[_u(d), f + 2]
                    if iv <= 0:  # unsupervised, or offline already
                        continue
                    if dev64[_u(d), f] == NO_SEEN:
                        dev64[_u(d), f] = start
                    silent_at = dev64[_u(d), f] + iv
                    if silent_at <= now:
                        origin = dev64[_u(d), f + 1]
                        n = _emit(out, n, r, d, device_home[_u(d)], silent_at, origin, -1, ACTION_RAISE)
                        dev64[_u(d), f + 2] = -iv
                    elif silent_at < earliest:
                        earliest = silent_at
            elif pooled[_u(r)] != 0:
                for d in range(lo, hi):
                    at = dev32[_u(d), f]
                    if at != NO_RING and pool[_u(at)] <= now:
                        n = _emit(out, n, r, d, device_home[_u(d)], pool[_u(at)], pool[_u(at + 1)], -1, ACTION_RAISE)
                        pool[_u(at)] = NO_DUE
            else:
                for d in range(lo, hi):
                    due = dev64[_u(d), f]
                    if due <= now:  # NO_DUE never is
                        n = _emit(out, n, r, d, device_home[_u(d)], due, dev64[_u(d), f + 1], -1, ACTION_RAISE)
                        dev64[_u(d), f] = NO_DUE
            written += n - cursor[_u(r)]
            cursor[_u(r)] = n
    for lo in range(0, n_homes, SWEEP_BLOCK):
        hi = min(lo + SWEEP_BLOCK, n_homes)
        for k in range(sweep_home.shape[0]):
            r = sweep_home[_u(k)]
            f = _u(col[_u(r)])
            n = cursor[_u(r)]
            if kind[_u(r)] == KIND_INACTIVE:
                for h in range(lo, hi):
                    code = home64[_u(h), f + 2]
                    if code == NO_DUE:  # not waiting
                        continue
                    if 0 <= code <= now:
                        code = ~_settle(params, homes, r, h, home64[_u(h), f])
                        home64[_u(h), f + 2] = code
                    due = ~code if code < 0 else code
                    if due <= now:
                        n = _emit(out, n, r, -1, h, due, home64[_u(h), f + 1], -1, action[_u(r)])
                        home64[_u(h), f + 2] = NO_DUE
                    elif due < quietest:
                        quietest = due
            elif pooled[_u(r)] != 0:
                for h in range(lo, hi):
                    at = home32[_u(h), f]
                    if at != NO_RING and pool[_u(at)] <= now:
                        n = _emit(out, n, r, -1, h, pool[_u(at)], pool[_u(at + 1)], -1, ACTION_RAISE)
                        pool[_u(at)] = NO_DUE
            else:
                for h in range(lo, hi):
                    due = home64[_u(h), f]
                    if due <= now:
                        n = _emit(out, n, r, -1, h, due, home64[_u(h), f + 1], -1, ACTION_RAISE)
                        home64[_u(h), f] = NO_DUE
            written += n - cursor[_u(r)]
            cursor[_u(r)] = n
    bound[0] = earliest
    bound[1] = quietest
    return written
