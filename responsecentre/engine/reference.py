"""`ReferenceEngine`: the rule semantics of docs/rules.md in plain Python.

This is the specification that runs. It reads the `Rule` objects directly (each home's,
with its overrides: `HomeParams.profiles`), not the compiled tables; keeps its state in
dicts keyed by (rule index, device or home); reads windows with `localtime.py_in_window`
and `py_window_due`, which work from `zoneinfo` and the zone's name, not from the offset
tables the kernels use; and loops. It is written to be obviously right, not fast.
tests/test_engine_differential.py drives it and the numba `Engine` with the same random
packs, homes and streams and demands identical triggers and identical snapshots, which
checks the kernels, the table compiler and the time zone tables at once.

It shares with `Engine` only what is not semantics: input validation
(`EventBatch.checked`, `check_home_params`), the `Triggers` type, the rule keys and the
snapshot format (snapshot.py), so that each engine restores the other's snapshots.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from responsecentre.contract import ENGINE_TYPES
from responsecentre.engine.homes import (
    HomeParams,
    check_home_params,
    default_home_params,
    extend_home_params,
    rule_keys,
)
from responsecentre.engine.kernels import ACTION_CANCEL, ACTION_CLEAR, ACTION_RAISE, NO_DUE, NO_ORIGIN, NO_SEEN
from responsecentre.engine.localtime import py_in_window, py_window_due
from responsecentre.engine.rules import Op, Rule, RuleKind, RulePack
from responsecentre.engine.snapshot import (
    SnapshotState,
    classify,
    decode_snapshot,
    encode_snapshot,
    map_snapshot,
    report,
)
from responsecentre.engine.tables import (
    OFFLINE_TYPES,
    EventBatch,
    ReloadReport,
    TriggerRow,
    Triggers,
    check_device_home,
    check_intervals,
    check_now,
    compile_tables,
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


@dataclass
class _Quiet:
    """A home watched by an inactivity rule: its last activity (and that event's seq); the
    deadline, a lower bound (last + for) until a sweep past it settles the exact one; and
    whether it has fired since."""

    last: int
    origin: int
    due: int
    exact: bool
    fired: bool


class ReferenceEngine:
    """Same API and same results as `Engine`, in dicts and loops."""

    def __init__(
        self,
        pack: RulePack,
        device_home: np.ndarray,
        supervision_ms: np.ndarray | None = None,
        homes: HomeParams | None = None,
    ) -> None:
        owned = check_device_home(device_home)
        n_homes = max(owned.tolist(), default=-1) + 1
        interval = check_intervals(supervision_ms, owned.shape[0]).tolist()
        self._n_homes = 0
        # (rule index, entity) -> (due, origin); entity is a device or a home index.
        self._pending: dict[tuple[int, int], tuple[int, int]] = {}
        # (rule index, device) of every hysteresis rule that has raised and not cleared.
        self._raised: set[tuple[int, int]] = set()
        # (rule index, device) -> ts of the last trigger a resident's cancel may refer to.
        self._last: dict[tuple[int, int], int] = {}
        # Supervision: (rule, device) -> (last seen, the seq of the device's latest event)
        # for every device heard from or whose clock a sweep started; the (rule, device)
        # pairs that are offline (raised).
        self._seen: dict[tuple[int, int], tuple[int, int]] = {}
        self._offline: set[tuple[int, int]] = set()
        # Counts: (rule, device or home) -> the counted times, oldest arrival first (<= n).
        self._counts: dict[tuple[int, int], list[int]] = {}
        # Inactivity: (rule, home) -> its clock, for every home active since the start.
        self._quiet: dict[tuple[int, int], _Quiet] = {}
        self._keys: tuple[tuple[str, str], ...] = ()
        self._install(pack, default_home_params(pack, n_homes) if homes is None else homes, owned, interval, False)

    @property
    def pack(self) -> RulePack:
        return self._pack

    @property
    def homes(self) -> HomeParams:
        return self._homes

    @property
    def rule_keys(self) -> tuple[tuple[str, str], ...]:
        return self._keys

    @property
    def n_devices(self) -> int:
        return len(self._device_home)

    @property
    def n_homes(self) -> int:
        return self._n_homes

    @property
    def supervision_ms(self) -> np.ndarray:
        return np.array(self._interval, np.int64)

    # -- events ---------------------------------------------------------------------------

    def process(self, batch: EventBatch) -> Triggers:
        type_ids, devices, times, values, has_values, seqs, conds = (
            column.tolist() for column in batch.checked(self.n_devices)
        )
        out: list[Row] = []
        for i, type_id in enumerate(type_ids):
            event_type = ENGINE_TYPES[type_id]
            device = devices[i]
            home = self._device_home[device]
            rules = self._rules_of(home)
            ts, seq = times[i], seqs[i]
            for index in self._rules_for[event_type]:
                rule = rules[index]  # the home's version of the rule (its overrides)
                key = (index, device)
                # `where`: all the rule's condition bits set (it gates `when` events only).
                mask = self._cond_mask[index]
                passes = conds[i] & mask == mask
                if rule.kind is RuleKind.SUPERVISION:
                    self._supervise(index, event_type, device, home, ts, seq, i, out)
                elif rule.kind is RuleKind.NOT_FOLLOWED:
                    self._not_followed(index, rule, event_type, device, home, ts, seq, passes, out)
                elif rule.kind is RuleKind.INACTIVE:
                    if passes:
                        self._active(index, home, ts, seq)
                elif rule.kind is RuleKind.COUNT:
                    if passes and self._in_window(rule, home, ts):
                        self._count(index, rule, device, home, ts, seq, i, out)
                elif event_type in rule.cancel_by:
                    # The resident's cancel: within the window after the device's last
                    # trigger of this rule (not before it), and once; never gated.
                    last = self._last.get(key)
                    if last is not None and last <= ts <= last + rule.cancel_within_ms:
                        out.append((index, device, home, ts, seq, i, ACTION_CANCEL))
                        del self._last[key]
                elif not passes:
                    continue
                elif rule.kind is RuleKind.HYSTERESIS:
                    if not has_values[i]:
                        continue
                    if key not in self._raised:
                        # Outside the window a reading may clear, but not raise.
                        if self._passes(rule.op, rule.threshold, values[i]) and self._in_window(rule, home, ts):
                            out.append((index, device, home, ts, seq, i, ACTION_RAISE))
                            self._raised.add(key)
                    elif self._passes(rule.clear_op, rule.clear_threshold, values[i]):
                        out.append((index, device, home, ts, seq, i, ACTION_CLEAR))
                        self._raised.discard(key)
                elif rule.kind is RuleKind.MATCH or (
                    has_values[i] and self._passes(rule.op, rule.threshold, values[i])
                ):
                    if not self._in_window(rule, home, ts):
                        continue
                    out.append((index, device, home, ts, seq, i, _ACTION[rule.action]))
                    if rule.cancel_by:
                        self._last[key] = ts
        return Triggers.from_rows(out)

    def _rules_of(self, home: int) -> tuple[Rule, ...]:
        return self._homes.profiles[self._profile[home]]

    def _zone(self, home: int) -> str:
        return self._homes.zones.names[self._timezone[home]]

    def _in_window(self, rule: Rule, home: int, ts: int) -> bool:
        """Whether `ts` is inside the rule's `during` on the home's wall clock (no window: yes)."""
        window = rule.during
        return window is None or py_in_window(self._zone(home), ts, window.from_ms, window.to_ms, window.days)

    def _not_followed(
        self,
        index: int,
        rule: Rule,
        event_type: str,
        device: int,
        home: int,
        ts: int,
        seq: int,
        passes: bool,
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
        # b. A follow-up in time cancels the deadline, at any hour.
        if event_type in rule.unless and pending is not None:
            del self._pending[key]
            pending = None
        # c. A trigger that passes `where` and is inside `during` arms an idle slot; a
        #    pending deadline keeps its clock.
        if event_type in rule.when and pending is None and passes and self._in_window(rule, home, ts):
            self._pending[key] = (ts + rule.within_ms, seq)

    def _count(self, index: int, rule: Rule, device: int, home: int, ts: int, seq: int, i: int, out: list[Row]) -> None:
        """Keep the last n counted times; n of them within `within` fire and start afresh."""
        key = (index, home if rule.scope == "home" else device)
        held = self._counts.setdefault(key, [])
        held.append(ts)
        if len(held) > rule.count_n:
            del held[0]
        if len(held) == rule.count_n and max(held) - min(held) <= rule.count_within_ms:
            out.append((index, device, home, ts, seq, i, _ACTION[rule.action]))
            del self._counts[key]

    def _active(self, index: int, home: int, ts: int, seq: int) -> None:
        """Activity: the silence restarts from the latest activity seen; not fired."""
        quiet = self._quiet.get((index, home))
        last, origin = (ts, seq) if quiet is None or ts >= quiet.last else (quiet.last, quiet.origin)
        due = last + self._shortest[index]  # a lower bound of the deadline, settled by a sweep
        self._quiet[(index, home)] = _Quiet(last, origin, due, exact=False, fired=False)
        self._quiet_next = min(self._quiet_next, due)

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

    @staticmethod
    def _passes(op: Op | None, threshold: float | None, value: float) -> bool:
        assert op is not None and threshold is not None
        return _COMPARE[op](value, threshold)

    # -- time -----------------------------------------------------------------------------

    def sweep(self, now_ms: int) -> Triggers:
        now = check_now(now_ms)
        out: list[Row] = []
        earliest = NO_DUE
        quietest = NO_DUE
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
            if rule.kind is RuleKind.INACTIVE:
                for key in sorted(k for k in self._quiet if k[0] == index):
                    quiet = self._quiet[key]
                    if quiet.fired:
                        continue
                    home = key[1]
                    if not quiet.exact and quiet.due <= now:
                        # The bound has passed: when is `for` (of in-window time) over?
                        there = self._rules_of(home)[index]
                        window = there.during
                        if window is None:
                            quiet.due = quiet.last + there.inactive_ms
                        else:
                            quiet.due = py_window_due(
                                self._zone(home),
                                quiet.last,
                                there.inactive_ms,
                                window.from_ms,
                                window.to_ms,
                                window.days,
                            )
                        quiet.exact = True
                    if quiet.due <= now:
                        out.append((index, -1, home, quiet.due, quiet.origin, -1, _ACTION[rule.action]))
                        quiet.fired = True
                    else:
                        quietest = min(quietest, quiet.due)
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
        self._quiet_next = quietest
        return Triggers.from_rows(out)

    def next_due(self) -> int | None:
        earliest = min([due for due, _ in self._pending.values()] + [self._sup_next, self._quiet_next])
        return None if earliest == NO_DUE else earliest

    def pending(self) -> dict[tuple[int, int], tuple[int, int]]:
        return dict(self._pending)

    # -- state ----------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        keys = sorted(self._pending)
        raised = sorted(self._raised)
        last = sorted(self._last)
        sup = sorted(set(self._seen) | self._offline)
        counts = sorted(self._counts)
        quiet = sorted(self._quiet)
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
            count_rule=np.array([rule for rule, _ in counts], np.int64),
            count_entity=np.array([entity for _, entity in counts], np.int64),
            count_held=np.array([len(self._counts[key]) for key in counts], np.int64),
            count_ts=np.array([ts for key in counts for ts in self._counts[key]], np.int64),
            ia_rule=np.array([rule for rule, _ in quiet], np.int64),
            ia_home=np.array([home for _, home in quiet], np.int64),
            ia_last=np.array([self._quiet[key].last for key in quiet], np.int64),
            ia_origin=np.array([self._quiet[key].origin for key in quiet], np.int64),
            ia_fired=np.array([self._quiet[key].fired for key in quiet], np.int64),
        )
        return encode_snapshot(self._keys, self.n_devices, self._n_homes, state)

    def restore(self, blob: bytes) -> ReloadReport:
        started = time.perf_counter()
        saved = decode_snapshot(blob)
        device_home = np.array(self._device_home, np.int32)
        state, names = map_snapshot(saved, self._keys, self._tables, self._homes, device_home, self._n_homes)
        cols = {name: getattr(state, name).tolist() for name in SnapshotState.__dataclass_fields__}
        self._pending = {
            (rule, entity): (due, origin)
            for rule, entity, due, origin in zip(cols["rule"], cols["entity"], cols["due"], cols["origin"], strict=True)
        }
        self._raised = set(zip(cols["raised_rule"], cols["raised_device"], strict=True))
        self._last = dict(zip(zip(cols["last_rule"], cols["last_device"], strict=True), cols["last_ts"], strict=True))
        self._seen, self._offline = {}, set()
        for rule, device, last, origin, flag in zip(
            cols["sup_rule"], cols["sup_device"], cols["sup_last"], cols["sup_origin"], cols["sup_flag"], strict=True
        ):
            if last != NO_SEEN:
                self._seen[(rule, device)] = (last, origin)
            if flag:
                self._offline.add((rule, device))
        self._counts = {}
        at = 0
        for rule, entity, held in zip(cols["count_rule"], cols["count_entity"], cols["count_held"], strict=True):
            self._counts[(rule, entity)] = cols["count_ts"][at : at + held]
            at += held
        self._quiet = {}
        for rule, home, last, origin, fired in zip(
            cols["ia_rule"], cols["ia_home"], cols["ia_last"], cols["ia_origin"], cols["ia_fired"], strict=True
        ):
            due = NO_DUE if fired else last + self._shortest[rule]
            self._quiet[(rule, home)] = _Quiet(last, origin, due, exact=False, fired=bool(fired))
        self._recompute_next()
        return report(names, time.perf_counter() - started)

    def reload(
        self, pack: RulePack, homes: HomeParams | None = None, supervision_ms: np.ndarray | None = None
    ) -> ReloadReport:
        started = time.perf_counter()
        interval = (
            self._interval if supervision_ms is None else check_intervals(supervision_ms, self.n_devices).tolist()
        )
        if homes is None:
            profile = np.zeros(self._homes.n_homes, np.int32)
            profile.flags.writeable = False
            homes = HomeParams(self._homes.timezone, profile, self._homes.zones, (pack.rules,))
        names = self._install(pack, homes, np.array(self._device_home, np.int32), interval, True)
        return report(names, time.perf_counter() - started)

    def resize(
        self, device_home: np.ndarray, supervision_ms: np.ndarray | None = None, homes: HomeParams | None = None
    ) -> ReloadReport:
        started = time.perf_counter()
        new_home = check_device_home(device_home, at_least=self.n_devices)
        if supervision_ms is None:
            interval = self._interval + [0] * (new_home.shape[0] - self.n_devices)
        else:
            interval = check_intervals(supervision_ms, new_home.shape[0]).tolist()
        n_homes = max(self._n_homes, max(new_home.tolist(), default=-1) + 1)
        homes = extend_home_params(self._homes, n_homes) if homes is None else homes
        names = self._install(self._pack, homes, new_home, interval, True)
        return report(names, time.perf_counter() - started)

    def _install(
        self, pack: RulePack, homes: HomeParams, device_home: np.ndarray, interval: list[int], carry: bool
    ) -> tuple[tuple[str, ...], ...]:
        """Take `pack` and `homes`; keep the state of each rule whose key did not change
        (renumbered to its new index) if `carry`, else start idle."""
        n_homes = max(max(device_home.tolist(), default=-1) + 1, homes.n_homes, self._n_homes)
        homes = check_home_params(homes, pack, n_homes)
        keys = rule_keys(pack, homes)
        # Only for validating snapshots against (map_snapshot); the semantics read the rules.
        tables = compile_tables(pack, homes.profiles)
        cond_mask = [pack.condition_mask(rule) for rule in pack.rules]
        # An inactivity deadline is first known as a lower bound: activity + the rule's
        # shortest `for` in any profile (a sweep past it settles the home's exact one).
        shortest = [min(profile[index].inactive_ms for profile in homes.profiles) for index in range(len(pack.rules))]
        if carry:
            source, names = classify(self._keys, keys)
            new_index = {old: new for new, old in enumerate(source.tolist()) if old >= 0}

            def moved(key: tuple[int, int]) -> tuple[int, int] | None:
                return (new_index[key[0]], key[1]) if key[0] in new_index else None

            self._pending = {moved(k): v for k, v in self._pending.items() if moved(k)}  # type: ignore[misc]
            self._raised = {moved(k) for k in self._raised if moved(k)}  # type: ignore[misc]
            self._last = {moved(k): v for k, v in self._last.items() if moved(k)}  # type: ignore[misc]
            self._seen = {moved(k): v for k, v in self._seen.items() if moved(k)}  # type: ignore[misc]
            self._offline = {moved(k) for k in self._offline if moved(k)}  # type: ignore[misc]
            self._counts = {moved(k): v for k, v in self._counts.items() if moved(k)}  # type: ignore[misc]
            self._quiet = {moved(k): v for k, v in self._quiet.items() if moved(k)}  # type: ignore[misc]
        else:
            names = ((), (), tuple(name for name, _ in keys), ())
        self._pack, self._homes, self._keys, self._tables, self._cond_mask = pack, homes, keys, tables, cond_mask
        self._shortest = shortest
        self._device_home: list[int] = device_home.tolist()
        self._n_homes = n_homes
        self._interval: list[int] = list(interval)
        self._profile: list[int] = homes.profile.tolist()
        self._timezone: list[int] = homes.timezone.tolist()
        # event type name -> indices of the rules it involves, in pack order, each once.
        self._rules_for: dict[str, list[int]] = {name: [] for name in ENGINE_TYPES}
        for index, rule in enumerate(pack.rules):
            for name in rule.types:
                self._rules_for[name].append(index)
        self._recompute_next()
        return names

    def _recompute_next(self) -> None:
        """The exact supervision and inactivity bounds (after a restore, reload or resize)."""
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
        self._sup_next = earliest
        self._quiet_next = min([q.due for q in self._quiet.values() if not q.fired], default=NO_DUE)
