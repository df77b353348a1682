"""The numba kernels of the rule engine, and the integer codes they share with tables.py.

Only arrays and tuples of arrays cross this boundary: `Engine` (engine.py) validates the
input, owns the state and output buffers and wraps the results; these functions only loop.
They never allocate, so the caller sizes the output (and the count rings' pool) for the
worst case and the kernel returns how many rows it wrote.

The argument tuples (built by tables.py and engine.py, documented there):

    tables = (type_ptr, type_rules, kind, when_mask, unless_mask, op, scope, action,
              clear_op, cancel_mask, cond_mask, ring_cap, varies,
              min_inactive_ms)                                       # [rule]
    params = (threshold, clear_threshold, within_ms, cancel_within_ms, count_n,
              count_within_ms, inactive_ms, has_window, win_from, win_to,
              win_days)                                              # [profile, rule]
    homes  = (device_home, home_profile, home_tz, tz_ptr, tz_trans, tz_off)
    state  = (nf, hy, ca, su, co, ia), each a tuple:
      nf = (offset, count, slot)                 not-followed deadlines, per device or
                                                   home: slot[s] = (due, origin)
      hy = (offset, flags)                       hysteresis: raised or not, per device
      ca = (offset, last_ts)                     cancel: the last trigger's ts, per device
      su = (offset, sup, next)                   supervision per device: sup[s] = (last
                                                   seen, its event, iv); iv is the interval,
                                                   negated while offline (0: unsupervised,
                                                   OFFLINE_UNSUPERVISED: both); next:
                                                   int64[1], a lower bound of the earliest
                                                   silence
      co = (offset, ptr, pool, top)              count: per device or home the start of
                                                   its ring in `pool` (-1: none yet);
                                                   top: int64[1], the pool's first free
      ia = (offset, quiet, next)                 inactivity per home: quiet[s] = (last
                                                   activity, its event, code); code is the
                                                   deadline's lower bound (>= 0), ~exact
                                                   deadline (< 0), or NO_DUE (not
                                                   waiting); next as su's
    batch  = (type_id, device, ts, value, has_value, seq, cond)
    out    = (rule, device, home, ts, origin, event, action)
    plan   = (arena, ptr, base, stride, home)                what to prefetch, per event type

Each slot's fields sit in one row of a 2-D array (one cache line), not in parallel
columns: the kernels are bound by memory latency, one random access per rule and event.

A count ring in `pool` is `1 + ring_cap[r]` int64: first its position code v (v < n: v
timestamps held, the next goes to v; v >= n: n held, the oldest at v - n), then the
timestamps. The engine grows the pool before a batch so that every ring the batch may
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

from responsecentre.engine.localtime import in_window, window_due

# Rule kinds (tables.kind).
KIND_MATCH = 0
KIND_THRESHOLD = 1
KIND_NOT_FOLLOWED = 2
KIND_HYSTERESIS = 3
KIND_SUPERVISION = 4
KIND_COUNT = 5
KIND_INACTIVE = 6

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


# How many events ahead the process kernel prefetches the state an event will use. The
# kernel is bound by memory latency: its branches depend on the state it loads, so the CPU
# cannot run ahead to the next event's loads by itself.
PREFETCH_AHEAD = 16


@intrinsic
def _prefetch(typingctx, array, row):  # type: ignore[no-untyped-def]
    """Hint the CPU to fetch the cache line of array[row] (or array[row, 0]); no effect on
    the result, never faults (an index out of range is skipped by the caller anyway)."""
    signature = types.void(array, row)

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        array_type = sig.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        index = [context.cast(builder, args[1], sig.args[1], types.intp)] + [zero] * (array_type.ndim - 1)
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
def process_batch(tables, params, state, homes, batch, out, plan):  # type: ignore[no-untyped-def]
    """Run a batch of events in array order; returns the number of triggers in `out`.

    `plan` = (arena, ptr, base, stride, home): for an event of type t and entities
    (device d, home h), the state it will touch starts at byte base[k] + (h if home[k]
    else d) * stride[k] of `arena` (the buffer all per-entity state lives in), for k in
    ptr[t]..ptr[t + 1]; the kernel prefetches it a few events ahead (engine.py builds it).

    `out` must hold len(batch) * (most rules of any one type) rows: each (event, rule)
    pair emits at most one decision (a cancel type is never a `when` type of its rule).
    The count pool must have room for every ring the batch may claim.
    """
    type_ptr, type_rules, kind, when_mask, unless_mask, op, scope, action = tables[:8]
    clear_op, cancel_mask, cond_mask, ring_cap, varies, min_inactive_ms = tables[8:]
    threshold, clear_threshold, within_ms, cancel_within_ms = params[0], params[1], params[2], params[3]
    count_n, count_within_ms = params[4], params[5]
    has_window, win_from, win_to, win_days = params[7], params[8], params[9], params[10]
    device_home, home_profile, home_tz, tz_ptr, tz_trans, tz_off = homes
    nf, hy, ca, su, co, ia = state
    slot_offset, slot = nf[0], nf[2]
    flag_offset, flags = hy
    last_offset, last_ts = ca
    sup_offset, sup, sup_next = su
    co_offset, co_ptr, pool, top = co
    ia_offset, quiet, ia_next = ia
    type_id, device, ts, value, has_value, seq, cond = batch
    arena, plan_ptr, plan_base, plan_stride, plan_home = plan
    n = 0
    n_events = type_id.shape[0]
    for i in range(n_events):
        # Prefetch the state of the event PREFETCH_AHEAD on (its rules' slots, from the
        # plan: byte offsets into the arena that holds all per-entity state), and the
        # home index of the one after it.
        ahead = i + PREFETCH_AHEAD
        if ahead + PREFETCH_AHEAD < n_events:
            _prefetch(device_home, device[ahead + PREFETCH_AHEAD])
        if ahead < n_events:
            da = device[ahead]
            ha = device_home[da]
            ta = type_id[ahead]
            for k in range(plan_ptr[ta], plan_ptr[ta + 1]):
                _prefetch(arena, plan_base[k] + (ha if plan_home[k] else da) * plan_stride[k])
        t = type_id[i]
        bit = np.int64(1) << t
        d = device[i]
        h = device_home[d]
        p = -1  # the home's profile: loaded only when a rule that varies by home needs it
        now = ts[i]
        c = cond[i]
        for k in range(type_ptr[t], type_ptr[t + 1]):
            r = type_rules[k]
            rule_kind = kind[r]
            if rule_kind == KIND_SUPERVISION:
                s = sup_offset[r] + d
                iv = sup[s, 2]
                if iv == 0 or iv == OFFLINE_UNSUPERVISED:  # not supervised
                    continue
                if (unless_mask[r] & bit) != 0:
                    # device.offline (a Last Will, or online: false): raise at once, once.
                    if iv > 0:
                        n = _emit(out, n, r, d, h, now, seq[i], i, ACTION_RAISE)
                        sup[s, 2] = -iv
                    continue
                # Any other event is a sign of life: the silence clock restarts (at the
                # latest time seen), and an offline device is back.
                if now > sup[s, 0]:
                    sup[s, 0] = now
                sup[s, 1] = seq[i]
                if iv < 0:
                    n = _emit(out, n, r, d, h, now, seq[i], i, ACTION_CLEAR)
                    iv = -iv
                    sup[s, 2] = iv
                if sup[s, 0] + iv < sup_next[0]:
                    sup_next[0] = sup[s, 0] + iv
                continue
            # `where` gates the `when` events only (never a follow-up or a cancel).
            passes = (c & cond_mask[r]) == cond_mask[r]
            if rule_kind == KIND_INACTIVE:
                # Activity, at any hour: the home's silence starts again from the latest.
                # The deadline cached is a lower bound (the rule's shortest `for` in any
                # home); a sweep past it settles the exact one.
                if passes:
                    s = ia_offset[r] + h
                    if now >= quiet[s, 0]:
                        quiet[s, 0] = now
                        quiet[s, 1] = seq[i]
                    bound = quiet[s, 0] + min_inactive_ms[r]
                    quiet[s, 2] = bound
                    if bound < ia_next[0]:
                        ia_next[0] = bound
                continue
            q = 0  # the profile whose parameters apply: 0 unless the rule varies by home
            if varies[r] != 0:
                if p < 0:
                    p = home_profile[h]
                q = p
            if rule_kind == KIND_NOT_FOLLOWED:
                home_scope = scope[r] == SCOPE_HOME
                s = slot_offset[r] + (h if home_scope else d)
                due = slot[s, 0]
                # a: the deadline passed before this event; it fires first.
                if due != NO_DUE and due < now:
                    n = _emit(out, n, r, -1 if home_scope else d, h, due, slot[s, 1], -1, ACTION_RAISE)
                    due = NO_DUE
                # b: a follow-up in time cancels (at any hour).
                if (unless_mask[r] & bit) != 0:
                    due = NO_DUE
                # c: a trigger arms an idle slot (a pending one keeps its clock), if it
                # passes `where` and is inside `during`.
                if (
                    (when_mask[r] & bit) != 0
                    and due == NO_DUE
                    and passes
                    and (
                        has_window[q, r] == 0
                        or in_window(
                            tz_ptr, tz_trans, tz_off, home_tz[h], now, win_from[q, r], win_to[q, r], win_days[q, r]
                        )
                    )
                ):
                    due = now + within_ms[q, r]
                    slot[s, 1] = seq[i]
                slot[s, 0] = due
                continue
            if rule_kind == KIND_COUNT:
                if passes and (
                    has_window[q, r] == 0
                    or in_window(
                        tz_ptr, tz_trans, tz_off, home_tz[h], now, win_from[q, r], win_to[q, r], win_days[q, r]
                    )
                ):
                    # Push `now` into the slot's ring (claimed from the pool on first use); n
                    # held within `within` fire and empty it. Written out here, not in a
                    # helper: a call with array arguments costs reference counting.
                    s = co_offset[r] + (h if scope[r] == SCOPE_HOME else d)
                    at = co_ptr[s]
                    if at == NO_RING:
                        at = top[0]
                        top[0] = at + 1 + ring_cap[r]
                        co_ptr[s] = at
                        pool[at] = 0
                    held = count_n[q, r]
                    v = pool[at]
                    if v < held:
                        pool[at + 1 + v] = now
                        v += 1  # v == held: full, the oldest at 0
                    else:
                        head = v - held
                        pool[at + 1 + head] = now
                        head += 1
                        if head == held:
                            head = 0
                        v = held + head
                    if v >= held:
                        lo = pool[at + 1]
                        hi = lo
                        for j in range(at + 2, at + 1 + held):
                            x = pool[j]
                            if x < lo:
                                lo = x
                            elif x > hi:
                                hi = x
                        if hi - lo <= count_within_ms[q, r]:
                            n = _emit(out, n, r, d, h, now, seq[i], i, action[r])
                            v = 0
                    pool[at] = v
                continue
            cancels = cancel_mask[r] != 0
            if cancels and (cancel_mask[r] & bit) != 0:
                # The resident's cancel: counts within the window after the device's last
                # trigger of this rule, once. Never gated by `where` or `during`.
                s = last_offset[r] + d
                if last_ts[s] != NO_LAST and last_ts[s] <= now and now - last_ts[s] <= cancel_within_ms[q, r]:
                    n = _emit(out, n, r, d, h, now, seq[i], i, ACTION_CANCEL)
                    last_ts[s] = NO_LAST
                continue
            if not passes:
                continue
            if rule_kind == KIND_HYSTERESIS:
                if has_value[i]:
                    s = flag_offset[r] + d
                    if flags[s] == 0:
                        # Outside the window a reading may clear, but not raise.
                        if _passes(value[i], op[r], threshold[q, r]) and (
                            has_window[q, r] == 0
                            or in_window(
                                tz_ptr, tz_trans, tz_off, home_tz[h], now, win_from[q, r], win_to[q, r], win_days[q, r]
                            )
                        ):
                            n = _emit(out, n, r, d, h, now, seq[i], i, ACTION_RAISE)
                            flags[s] = 1
                    elif _passes(value[i], clear_op[r], clear_threshold[q, r]):
                        n = _emit(out, n, r, d, h, now, seq[i], i, ACTION_CLEAR)
                        flags[s] = 0
            elif rule_kind == KIND_MATCH or (has_value[i] and _passes(value[i], op[r], threshold[q, r])):
                if has_window[q, r] != 0 and not in_window(
                    tz_ptr, tz_trans, tz_off, home_tz[h], now, win_from[q, r], win_to[q, r], win_days[q, r]
                ):
                    continue
                n = _emit(out, n, r, d, h, now, seq[i], i, action[r])
                if cancels:
                    last_ts[last_offset[r] + d] = now
    return n


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


@njit(cache=True, nogil=True)
def sweep_count(tables, params, state, homes, now, start):  # type: ignore[no-untyped-def]
    """How many rows `sweep_due(now, start)` will emit (it sizes the output exactly).

    Settles the inactivity bounds that have passed (a cache, so sweep_due finds them
    settled): the only state it changes.
    """
    kind = tables[2]
    nf, _hy, _ca, su, _co, ia = state
    slot_offset, slot_count, slot = nf
    sup_offset, sup = su[0], su[1]
    ia_offset, quiet = ia[0], ia[1]
    n_devices = homes[0].shape[0]
    n_homes = homes[1].shape[0]
    n = 0
    for r in range(kind.shape[0]):
        if kind[r] == KIND_NOT_FOLLOWED:
            base = slot_offset[r]
            for s in range(base, base + slot_count[r]):
                if slot[s, 0] <= now:  # NO_DUE never is
                    n += 1
        elif kind[r] == KIND_SUPERVISION:
            base = sup_offset[r]
            for s in range(base, base + n_devices):
                iv = sup[s, 2]
                if iv > 0:
                    last = start if sup[s, 0] == NO_SEEN else sup[s, 0]
                    if last + iv <= now:
                        n += 1
        elif kind[r] == KIND_INACTIVE:
            base = ia_offset[r]
            for h in range(n_homes):
                s = base + h
                code = quiet[s, 2]
                if 0 <= code <= now and code != NO_DUE:
                    code = ~_settle(params, homes, r, h, quiet[s, 0])
                    quiet[s, 2] = code
                if code < 0 and ~code <= now:
                    n += 1
    return n


@njit(cache=True, nogil=True)
def sweep_due(tables, params, state, homes, now, start, out):  # type: ignore[no-untyped-def]
    """Fire and clear every pending slot with due <= now, raise every supervised device
    silent since `now - interval` or longer and every home silent (in its window) for its
    rule's `for`, in slot order (rule, then entity); returns the count. A device never
    heard from starts its clock at `start` (now, clamped to event times). Recomputes the
    supervision and inactivity bounds exactly (of the cached deadlines).

    `out` must hold `sweep_count(...)` rows.
    """
    kind, scope, action = tables[2], tables[6], tables[7]
    nf, _hy, _ca, su, _co, ia = state
    slot_offset, slot_count, slot = nf
    sup_offset, sup, sup_next = su
    ia_offset, quiet, ia_next = ia
    device_home = homes[0]
    n_devices = device_home.shape[0]
    n_homes = homes[1].shape[0]
    n = 0
    earliest = NO_DUE
    quietest = NO_DUE
    for r in range(kind.shape[0]):
        if kind[r] == KIND_SUPERVISION:
            base = sup_offset[r]
            for d in range(n_devices):
                s = base + d
                iv = sup[s, 2]
                if iv <= 0:  # unsupervised, or offline already
                    continue
                if sup[s, 0] == NO_SEEN:
                    sup[s, 0] = start
                silent_at = sup[s, 0] + iv
                if silent_at <= now:
                    n = _emit(out, n, r, d, device_home[d], silent_at, sup[s, 1], -1, ACTION_RAISE)
                    sup[s, 2] = -iv
                elif silent_at < earliest:
                    earliest = silent_at
            continue
        if kind[r] == KIND_INACTIVE:
            base = ia_offset[r]
            for h in range(n_homes):
                s = base + h
                code = quiet[s, 2]
                if code == NO_DUE:  # not waiting
                    continue
                if 0 <= code <= now:
                    code = ~_settle(params, homes, r, h, quiet[s, 0])
                    quiet[s, 2] = code
                due = ~code if code < 0 else code
                if due <= now:
                    n = _emit(out, n, r, -1, h, due, quiet[s, 1], -1, action[r])
                    quiet[s, 2] = NO_DUE
                elif due < quietest:
                    quietest = due
            continue
        if kind[r] != KIND_NOT_FOLLOWED:
            continue
        home_scope = scope[r] == SCOPE_HOME
        base = slot_offset[r]
        for e in range(slot_count[r]):
            s = base + e
            due = slot[s, 0]
            if due <= now:  # NO_DUE never is
                if home_scope:
                    n = _emit(out, n, r, -1, e, due, slot[s, 1], -1, ACTION_RAISE)
                else:
                    n = _emit(out, n, r, e, device_home[e], due, slot[s, 1], -1, ACTION_RAISE)
                slot[s, 0] = NO_DUE
    sup_next[0] = earliest
    ia_next[0] = quietest
    return n
