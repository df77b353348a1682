"""The numba kernels of the rule engine, and the integer codes they share with tables.py.

Only arrays and tuples of arrays cross this boundary: `Engine` (engine.py) validates the
input, owns the state and output buffers and wraps the results; these functions only loop.
They never allocate, so the caller sizes the output for the worst case (see engine.py) and
the kernel returns how many rows it wrote.

The argument tuples (built by tables.py and engine.py, documented there):

    tables = (type_ptr, type_rules, kind, when_mask, unless_mask, op, threshold,
              within_ms, scope, action, clear_op, clear_threshold, cancel_mask,
              cancel_within_ms)
    state  = (slot_offset, slot_count, due, origin,      # not-followed deadlines
              flag_offset, flags,                        # hysteresis: raised or not
              last_offset, last_ts,                      # cancel: the last trigger's ts
              sup_offset, sup_interval,                  # supervision: per-rule blocks, and
                                                         #   the interval per device (0: none)
              sup_last, sup_origin, sup_flag,            #   last seen, its event, offline
              sup_next)                                  #   int64[1]: a lower bound of the
                                                         #   earliest silence deadline
    batch  = (type_id, device, ts, value, has_value, seq)
    out    = (rule, device, home, ts, origin, event, action)

The semantics are written down in docs/rules.md and implemented a second time, for
clarity, in reference.py; tests/test_engine_differential.py holds the two together. The
codes below are compile-time constants of the kernels: they live in this file so that a
change to them invalidates numba's on-disk cache, which is keyed on this file.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Rule kinds (tables.kind).
KIND_MATCH = 0
KIND_THRESHOLD = 1
KIND_NOT_FOLLOWED = 2
KIND_HYSTERESIS = 3
KIND_SUPERVISION = 4

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

# Whose state slot a NOT_FOLLOWED rule uses (tables.scope).
SCOPE_DEVICE = 0
SCOPE_HOME = 1

# `due` of a slot with no pending deadline. The largest int64 makes "earliest deadline"
# a plain minimum and "due <= now" false for idle slots.
NO_DUE = np.iinfo(np.int64).max

# `last_ts` of a device with no trigger that a cancel could still refer to (event times
# are >= 0).
NO_LAST = -1

# `sup_last` of a device not heard from since the engine started; the next sweep starts
# its clock. `sup_origin` of such a device is NO_ORIGIN.
NO_SEEN = np.iinfo(np.int64).min
NO_ORIGIN = -1


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
def process_batch(tables, state, device_home, batch, out):  # type: ignore[no-untyped-def]
    """Run a batch of events in array order; returns the number of triggers in `out`.

    `out` must hold len(batch) * (most rules of any one type) rows: each (event, rule)
    pair emits at most one decision (a cancel type is never a `when` type of its rule).
    """
    (
        type_ptr,
        type_rules,
        kind,
        when_mask,
        unless_mask,
        op,
        threshold,
        within_ms,
        scope,
        action,
        clear_op,
        clear_threshold,
        cancel_mask,
        cancel_within_ms,
    ) = tables
    slot_offset, _slot_count, due, origin, flag_offset, flags, last_offset, last_ts = state[:8]
    sup_offset, sup_interval, sup_last, sup_origin, sup_flag, sup_next = state[8:]
    type_id, device, ts, value, has_value, seq = batch
    n = 0
    for i in range(type_id.shape[0]):
        t = type_id[i]
        bit = np.int64(1) << t
        d = device[i]
        h = device_home[d]
        now = ts[i]
        for k in range(type_ptr[t], type_ptr[t + 1]):
            r = type_rules[k]
            rule_kind = kind[r]
            if rule_kind == KIND_SUPERVISION:
                interval = sup_interval[d]
                if interval == 0:  # not supervised
                    continue
                s = sup_offset[r] + d
                if (unless_mask[r] & bit) != 0:
                    # device.offline (a Last Will, or online: false): raise at once, once.
                    if sup_flag[s] == 0:
                        n = _emit(out, n, r, d, h, now, seq[i], i, ACTION_RAISE)
                        sup_flag[s] = 1
                    continue
                # Any other event is a sign of life: the silence clock restarts (at the
                # latest time seen), and an offline device is back.
                if now > sup_last[s]:
                    sup_last[s] = now
                sup_origin[s] = seq[i]
                if sup_flag[s] != 0:
                    n = _emit(out, n, r, d, h, now, seq[i], i, ACTION_CLEAR)
                    sup_flag[s] = 0
                if sup_last[s] + interval < sup_next[0]:
                    sup_next[0] = sup_last[s] + interval
                continue
            if rule_kind == KIND_NOT_FOLLOWED:
                home_scope = scope[r] == SCOPE_HOME
                s = slot_offset[r] + (h if home_scope else d)
                # a: the deadline passed before this event; it fires first.
                if due[s] != NO_DUE and due[s] < now:
                    n = _emit(out, n, r, -1 if home_scope else d, h, due[s], origin[s], -1, ACTION_RAISE)
                    due[s] = NO_DUE
                # b: a follow-up in time cancels.
                if (unless_mask[r] & bit) != 0 and due[s] != NO_DUE:
                    due[s] = NO_DUE
                # c: a trigger arms an idle slot (a pending one keeps its clock).
                if (when_mask[r] & bit) != 0 and due[s] == NO_DUE:
                    due[s] = now + within_ms[r]
                    origin[s] = seq[i]
                continue
            cancels = cancel_mask[r] != 0
            if cancels and (cancel_mask[r] & bit) != 0:
                # The resident's cancel: counts within the window after the device's last
                # trigger of this rule, once.
                s = last_offset[r] + d
                if last_ts[s] != NO_LAST and last_ts[s] <= now and now - last_ts[s] <= cancel_within_ms[r]:
                    n = _emit(out, n, r, d, h, now, seq[i], i, ACTION_CANCEL)
                    last_ts[s] = NO_LAST
                continue
            if rule_kind == KIND_HYSTERESIS:
                if has_value[i]:
                    s = flag_offset[r] + d
                    if flags[s] == 0:
                        if _passes(value[i], op[r], threshold[r]):
                            n = _emit(out, n, r, d, h, now, seq[i], i, ACTION_RAISE)
                            flags[s] = 1
                    elif _passes(value[i], clear_op[r], clear_threshold[r]):
                        n = _emit(out, n, r, d, h, now, seq[i], i, ACTION_CLEAR)
                        flags[s] = 0
            elif rule_kind == KIND_MATCH or (has_value[i] and _passes(value[i], op[r], threshold[r])):
                n = _emit(out, n, r, d, h, now, seq[i], i, action[r])
                if cancels:
                    last_ts[last_offset[r] + d] = now
    return n


@njit(cache=True, nogil=True)
def sweep_count(tables, state, now, start):  # type: ignore[no-untyped-def]
    """How many rows `sweep_due(now, start)` will emit (it sizes the output exactly)."""
    kind = tables[2]
    slot_offset, slot_count, due = state[0], state[1], state[2]
    sup_offset, sup_interval, sup_last, sup_flag = state[8], state[9], state[10], state[12]
    n = 0
    for r in range(kind.shape[0]):
        if kind[r] == KIND_NOT_FOLLOWED:
            base = slot_offset[r]
            for s in range(base, base + slot_count[r]):
                if due[s] <= now and due[s] != NO_DUE:
                    n += 1
        elif kind[r] == KIND_SUPERVISION:
            base = sup_offset[r]
            for d in range(sup_interval.shape[0]):
                s = base + d
                if sup_interval[d] != 0 and sup_flag[s] == 0:
                    last = start if sup_last[s] == NO_SEEN else sup_last[s]
                    if last + sup_interval[d] <= now:
                        n += 1
    return n


@njit(cache=True, nogil=True)
def sweep_due(tables, state, device_home, now, start, out):  # type: ignore[no-untyped-def]
    """Fire and clear every pending slot with due <= now, and raise every supervised
    device silent since `now - interval` or longer, in slot order (rule, then entity);
    returns the count. A device never heard from starts its clock at `start` (now,
    clamped to event times). Recomputes `sup_next` exactly.

    `out` must hold `sweep_count(...)` rows.
    """
    kind = tables[2]
    scope = tables[8]
    slot_offset, slot_count, due, origin = state[0], state[1], state[2], state[3]
    sup_offset, sup_interval, sup_last, sup_origin, sup_flag, sup_next = state[8:]
    n = 0
    earliest = NO_DUE
    for r in range(kind.shape[0]):
        if kind[r] == KIND_SUPERVISION:
            base = sup_offset[r]
            for d in range(sup_interval.shape[0]):
                interval = sup_interval[d]
                s = base + d
                if interval == 0 or sup_flag[s] != 0:
                    continue
                if sup_last[s] == NO_SEEN:
                    sup_last[s] = start
                silent_at = sup_last[s] + interval
                if silent_at <= now:
                    n = _emit(out, n, r, d, device_home[d], silent_at, sup_origin[s], -1, ACTION_RAISE)
                    sup_flag[s] = 1
                elif silent_at < earliest:
                    earliest = silent_at
            continue
        if kind[r] != KIND_NOT_FOLLOWED:
            continue
        home_scope = scope[r] == SCOPE_HOME
        base = slot_offset[r]
        for e in range(slot_count[r]):
            s = base + e
            if due[s] <= now and due[s] != NO_DUE:
                if home_scope:
                    n = _emit(out, n, r, -1, e, due[s], origin[s], -1, ACTION_RAISE)
                else:
                    n = _emit(out, n, r, e, device_home[e], due[s], origin[s], -1, ACTION_RAISE)
                due[s] = NO_DUE
    sup_next[0] = earliest
    return n
