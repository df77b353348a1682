"""The numba Engine against the plain-Python ReferenceEngine, on random everything.

Hypothesis draws a rule pack (as YAML, through the real loader), homes (each in Oslo or New
York, with random per-home overrides), a device -> home map, an event stream with few types,
few devices and a narrow time range (so that deadlines, counts, cancels, duplicate
timestamps and out-of-order events collide often), and a script that cuts the stream into
batches with sweeps, snapshot swaps, directory growth and hot reloads to a mutated pack in
between. Both engines must return the same triggers at every step and end in the same state.

The packs use every construct: match, threshold, not-followed-by, hysteresis, clear rules,
the resident's cancel, counts (per device and per home), inactivity, device supervision
(with drawn per-device intervals and the internal `device.online`/`device.offline` types in
the stream), `during` windows and `where` conditions (random condition bits in the
stream). A world's clock runs in milliseconds from 1970, or in minutes or ten-minute steps
from just before a DST change of 2027 in Oslo or New York, so that windows open and close,
and across the skipped or repeated hour, while the stream runs. The engine reads time zones
from its offset tables and the reference from zoneinfo, so this also checks the tables.
Snapshots are compared byte for byte, and so is `next_due` after every call.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from responsecentre.engine import Engine, EventBatch, ReferenceEngine, RuleKind, RulePack, home_params, parse_rules
from responsecentre.engine.homes import HomeParams
from responsecentre.engine.kernels import ACTION_CANCEL, ACTION_CLEAR
from responsecentre.engine.tables import EventRow

TYPES = (
    "alarm.button",
    "alarm.cancel",
    "fall.detected",
    "fall.cancelled",
    "door.opened",
    "door.closed",
    "temperature",
    "motion.detected",
    "device.online",
    "device.offline",
)
REFS = (*TYPES, "alarm.*", "fall.*", "door.*")
VALUES = (None, None, -10.0, -3.0, 0.0, 10.0, 10.5, 20.0, 25.0, 30.0, math.nan)
THRESHOLDS = (-3, 0, 10, 10.5)
WORDS = ("below", "at_most", "above", "at_least", "equals")
CLEAR_WORDS = {"below": "clear_above", "at_most": "clear_above", "above": "clear_below", "at_least": "clear_below"}
KINDS = ("k0", "k1")
# What a drawn rule is; the newer constructs weigh more than the older ones.
CONSTRUCTS = ("match", "threshold", *("clear", "count", "inactive") * 2, *("not_followed", "hysteresis", "cancel") * 3)
CONDITIONS = ({"room": "bathroom"}, {"room": {"in": ["bathroom", "toilet"]}}, {"level": {"above": 3}})
TIMES = ("22:00", "23:30", "00:30", "01:30", "02:00", "02:30", "03:00", "03:30", "06:00", "07:00")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ZONES = ("Europe/Oslo", "America/New_York")
N_HOMES = 4


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text + "+00:00").timestamp() * 1000)


# (first ts, ms per step): milliseconds from 0, or minutes and ten minutes from shortly
# before the 2027 DST changes (Oslo at 01:00Z on 03-28 and 10-31; New York at 07:00Z on
# 03-14 and 06:00Z on 11-07).
CLOCKS = (
    (0, 1),
    (0, 1),
    (utc("2027-03-27T23:00"), 60_000),
    (utc("2027-03-27T21:00"), 600_000),
    (utc("2027-10-30T23:30"), 60_000),
    (utc("2027-10-30T21:00"), 600_000),
    (utc("2027-03-14T04:00"), 600_000),
    (utc("2027-11-07T04:30"), 60_000),
)
SEEN = (
    "event",
    "deadline_in_process",
    "deadline_in_sweep",
    "clear",
    "hysteresis_clear",
    "cancel",
    "offline_at_once",
    "silent_in_sweep",
    "back_online",
    "count",
    "inactive",
    "windowed",
    "reload_kept",
    "reload_reset",
)
SUPERVISE = {"name": "sup", "supervise": {}, "raise": {"kind": "k0", "priority": "medium", "chain": "c"}}

type_refs = st.one_of(st.sampled_from(REFS), st.lists(st.sampled_from(REFS), min_size=1, max_size=3))


def expanded(refs: object) -> set[str]:
    """The event types a `when`-style value names (families expanded over TYPES)."""
    items = refs if isinstance(refs, list) else [refs]
    out: set[str] = set()
    for ref in items:
        assert isinstance(ref, str)
        out |= {t for t in TYPES if t.startswith(ref[:-1])} if ref.endswith(".*") else {ref}
    return out


def duration(draw: st.DrawFn, scale: int, high: int) -> str:
    return f"{draw(st.integers(1, high)) * scale}ms"


def weekly_ms(window: dict[str, Any]) -> int:
    """How much time a window holds in a week: an inactivity `for` may not be longer."""
    start, end = (int(window[w][:2]) * 60 + int(window[w][3:]) for w in ("from", "to"))
    return (end - start) % 1440 * 60_000 * len(window.get("days", DAYS))


def fitted(for_ms: str, window: dict[str, Any] | None) -> str:
    """An inactivity `for` shortened to what its window holds in a week."""
    return for_ms if window is None else f"{min(int(for_ms[:-2]), weekly_ms(window))}ms"


@st.composite
def windows(draw: st.DrawFn) -> dict[str, object]:
    start, end = draw(st.lists(st.sampled_from(TIMES), min_size=2, max_size=2, unique=True))
    window: dict[str, object] = {"from": start, "to": end}
    if draw(st.integers(0, 3)) == 0:
        window["days"] = draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=4, unique=True))
    return window


@st.composite
def rules(draw: st.DrawFn, name: str, scale: int) -> dict[str, Any]:
    """One rule (not a supervise rule) as a YAML mapping; a clear rule's kind is fixed by `finish`."""
    rule: dict[str, Any] = {"name": name, "when": draw(type_refs)}
    kind = draw(st.sampled_from(CONSTRUCTS))
    if kind in ("threshold", "clear", "cancel") and draw(st.booleans()):
        rule["value"] = {draw(st.sampled_from(WORDS)): draw(st.sampled_from(THRESHOLDS))}
    if kind == "hysteresis":
        # Several types: a flag needs a raise and then a clear from the same device.
        rule["when"] = draw(st.lists(st.sampled_from(REFS), min_size=2, max_size=4))
        rule["value"] = hysteresis_value(draw)
    elif kind == "not_followed":
        rule["unless"] = {"followed_by": draw(type_refs), "within": duration(draw, scale, 40)}
        scope = draw(st.sampled_from((None, "device", "home")))
        if scope is not None:
            rule["scope"] = scope
    elif kind == "cancel":
        # The cancel types must not be `when` types of the same rule (a pack error).
        free = sorted(set(TYPES) - expanded(rule["when"]))
        if free:
            by = draw(st.lists(st.sampled_from(free), min_size=1, max_size=2, unique=True))
            rule["cancel"] = {"by": by if len(by) > 1 else by[0], "within": duration(draw, scale, 120)}
    elif kind == "count":
        rule["count"] = {"n": draw(st.integers(1, 4)), "within": duration(draw, scale, 30)}
        scope = draw(st.sampled_from((None, "device", "home")))
        if scope is not None:
            rule["scope"] = scope
    elif kind == "inactive":
        rule["inactive"] = {"for": duration(draw, scale, 40)}
    if draw(st.integers(0, 3)) == 0:
        rule["during"] = draw(windows())
    if draw(st.integers(0, 4)) == 0:
        rule["where"] = dict(draw(st.sampled_from(CONDITIONS)))
    if "inactive" in rule:
        rule["inactive"]["for"] = fitted(rule["inactive"]["for"], rule.get("during"))
    if kind == "clear":
        rule["clear"] = {"kind": draw(st.sampled_from(KINDS))}
    else:
        rule["raise"] = {"kind": draw(st.sampled_from(KINDS)), "priority": "high", "chain": "c"}
    return rule


def hysteresis_value(draw: st.DrawFn) -> dict[str, float]:
    word = draw(st.sampled_from(tuple(CLEAR_WORDS)))
    threshold = draw(st.sampled_from(THRESHOLDS))
    gap = draw(st.sampled_from((0, 0.5, 5, 10)))
    bound = threshold + gap if CLEAR_WORDS[word] == "clear_above" else threshold - gap
    return {word: threshold, CLEAR_WORDS[word]: bound}


def finish(spec: list[dict[str, Any]]) -> RulePack:
    """The pack of `spec` (rules as YAML mappings), after making each clear rule name a kind
    that some rule raises (or turning it into a raising rule if none does)."""
    rules = copy.deepcopy(spec)
    raised = sorted({r["raise"]["kind"] for r in rules if "raise" in r})
    for rule in rules:
        if "clear" not in rule:
            continue
        if not raised:
            del rule["clear"]
            rule["raise"] = {"kind": "k0", "priority": "high", "chain": "c"}
        elif rule["clear"]["kind"] not in raised:
            rule["clear"] = {"kind": raised[0]}
    alarms = {kind: {"auto_clear": True} for kind in KINDS}
    return parse_rules(yaml.safe_dump({"version": 1, "alarms": alarms, "rules": rules}, sort_keys=False))


@st.composite
def specs(draw: st.DrawFn, scale: int) -> list[dict[str, Any]]:
    spec = [draw(rules(f"r{i}", scale)) for i in range(draw(st.integers(1, 5)))]
    if draw(st.booleans()):  # a pack supervises devices once, anywhere in the order
        spec.insert(draw(st.integers(0, len(spec))), dict(SUPERVISE))
    return spec


@st.composite
def overrides(draw: st.DrawFn, spec: list[dict[str, Any]], scale: int) -> dict[str, Any]:
    """A home's overrides of some of the rules' numbers and windows."""
    out: dict[str, Any] = {}
    for rule in spec:
        if "supervise" in rule or draw(st.integers(0, 3)) != 0:
            continue
        change: dict[str, Any] = {}
        if "value" in rule and "clear" not in rule and draw(st.booleans()):
            words = list(rule["value"])
            change["value"] = (
                hysteresis_value(draw) if len(words) == 2 else {words[0]: draw(st.sampled_from(THRESHOLDS))}
            )
            if len(words) == 2 and list(change["value"]) != words:
                del change["value"]  # another comparison: not an override
        if "unless" in rule and draw(st.booleans()):
            change["unless"] = {"within": duration(draw, scale, 40)}
        if "cancel" in rule and draw(st.booleans()):
            change["cancel"] = {"within": duration(draw, scale, 120)}
        if "count" in rule and draw(st.booleans()):
            change["count"] = {"n": draw(st.integers(1, 4))}
        if "inactive" in rule and draw(st.booleans()):
            change["inactive"] = {"for": duration(draw, scale, 40)}
        if draw(st.booleans()):
            change["during"] = draw(windows())
        if "inactive" in rule:
            for_ms = change.get("inactive", rule["inactive"])["for"]
            if fitted(for_ms, change.get("during", rule.get("during"))) != for_ms:
                change["inactive"] = {"for": fitted(for_ms, change.get("during", rule.get("during")))}
        if change:
            out[rule["name"]] = change
    return out


@st.composite
def homes(draw: st.DrawFn, spec: list[dict[str, Any]], scale: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        (draw(st.sampled_from(ZONES)), draw(overrides(spec, scale)) if draw(st.booleans()) else {})
        for _ in range(N_HOMES)
    ]


@st.composite
def mutations(draw: st.DrawFn, spec: list[dict[str, Any]], scale: int) -> list[dict[str, Any]]:
    """The spec after a hot-reload's worth of editing: a rule changed, added, dropped,
    renamed, moved or only re-prioritised, or nothing at all."""
    new = copy.deepcopy(spec)
    what = draw(st.sampled_from(("change", "add", "drop", "rename", "shuffle", "priority", "none")))
    plain = [i for i, rule in enumerate(new) if "supervise" not in rule]
    if what == "change" and plain:
        i = draw(st.sampled_from(plain))
        new[i] = draw(rules(new[i]["name"], scale))
    elif what == "add":
        name = f"n{len(new)}"
        while name in {rule["name"] for rule in new}:
            name += "x"
        new.insert(draw(st.integers(0, len(new))), draw(rules(name, scale)))
    elif what == "drop" and len(new) > 1:
        del new[draw(st.integers(0, len(new) - 1))]
    elif what == "rename" and plain:
        rule = new[draw(st.sampled_from(plain))]
        taken = {other["name"] for other in new}
        rule["name"] += "x"
        while rule["name"] in taken:
            rule["name"] += "x"
    elif what == "shuffle":
        new = draw(st.permutations(new))
    elif what == "priority" and plain:
        i = draw(st.sampled_from(plain))
        if "raise" in new[i]:
            new[i]["raise"]["priority"] = "low"
    return new


@dataclass(frozen=True)
class World:
    spec: list[dict[str, Any]]
    homes: list[tuple[str, dict[str, Any]]]
    device_home: np.ndarray  # the full directory; engines start with a prefix of it
    intervals: np.ndarray  # supervision interval per device, 0: unsupervised
    initial: int  # devices known at the start
    events: list[EventRow]
    script: list[tuple[str, Any]]
    start: int
    scale: int

    @property
    def pack(self) -> RulePack:
        return finish(self.spec)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    start, scale = draw(st.sampled_from(CLOCKS))
    spec = draw(specs(scale))
    n_devices = draw(st.integers(1, 5))
    device_home = np.array(
        draw(st.lists(st.integers(0, N_HOMES - 1), min_size=n_devices, max_size=n_devices)), np.int32
    )
    sup_intervals = st.lists(
        st.sampled_from((0, 5 * scale, 20 * scale, 60 * scale)), min_size=n_devices, max_size=n_devices
    )
    intervals = np.array(draw(sup_intervals), np.int64)
    initial = draw(st.integers(1, n_devices))
    # An explicit length: left alone, hypothesis's lists are mostly two or three long.
    n_events = draw(st.integers(1, 80))
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from((*TYPES, "bed.exit")),
                st.integers(0, n_devices - 1),
                st.integers(-4, 12),
                st.sampled_from(VALUES),
                st.integers(0, 7),
            ),
            min_size=n_events,
            max_size=n_events,
        )
    )
    # Time mostly moves forward in small steps; a step of 0 is a duplicate timestamp and
    # a negative step an out-of-order event. seq is unique but not the position, so an
    # origin/event mix-up would show.
    events: list[EventRow] = []
    ts = start
    for i, (type_, device, step, value, cond) in enumerate(rows):
        ts = max(0, ts + step * scale)
        events.append((type_, device, ts, value, 1000 + 7 * i, cond))
    script: list[tuple[str, Any]] = []
    current = spec
    for _ in range(draw(st.integers(0, 20))):
        action = draw(st.sampled_from(("batch", "batch", "batch", "sweep", "sweep", "swap", "grow", "reload")))
        if action == "batch":
            script.append(("batch", draw(st.integers(0, 15))))
        elif action == "sweep":
            script.append(("sweep", start + draw(st.integers(-10, 200)) * scale))
        elif action == "grow":
            script.append(("grow", draw(st.integers(1, 3))))
        elif action == "swap":
            script.append(("swap", None))
        else:
            current = draw(mutations(current, scale))
            new_intervals = draw(st.one_of(st.none(), sup_intervals))
            new_homes = draw(homes(current, scale)) if draw(st.booleans()) else None
            script.append(("reload", (current, new_homes, new_intervals)))
    world_homes = draw(homes(spec, scale))
    return World(spec, world_homes, device_home, intervals, initial, events, script, start, scale)


def params_of(pack: RulePack, spec_homes: list[tuple[str, dict[str, Any]]]) -> HomeParams:
    return home_params(pack, spec_homes)


class Pair:
    """Both engines, driven in lock step, compared after every call."""

    def __init__(self, world: World) -> None:
        self.pack = world.pack
        self.homes = params_of(self.pack, world.homes)
        self.full = world.device_home
        self.intervals = world.intervals
        self.n = world.initial
        self.engine = self.make(Engine)
        self.reference = self.make(ReferenceEngine)
        self.seen = dict.fromkeys(SEEN, 0)

    def make(self, cls: type[Engine] | type[ReferenceEngine]) -> Engine | ReferenceEngine:
        return cls(self.pack, self.full[: self.n], self.intervals[: self.n], homes=self.homes)

    def same_state(self) -> None:
        assert self.engine.next_due() == self.reference.next_due()
        assert self.engine.pending() == self.reference.pending()
        assert self.engine.snapshot() == self.reference.snapshot()

    def count(self, rows: list[tuple[int, ...]], in_sweep: bool) -> None:
        rules = self.pack.rules
        kinds = [rules[row[0]].kind for row in rows]
        supervision = [row for row, kind in zip(rows, kinds, strict=True) if kind is RuleKind.SUPERVISION]
        self.seen["count"] += sum(1 for kind in kinds if kind is RuleKind.COUNT)
        self.seen["inactive"] += sum(1 for kind in kinds if kind is RuleKind.INACTIVE)
        self.seen["windowed"] += sum(1 for row in rows if self.homes.rules_of(row[2])[row[0]].during is not None)
        if in_sweep:
            self.seen["silent_in_sweep"] += len(supervision)
            self.seen["deadline_in_sweep"] += sum(1 for kind in kinds if kind is RuleKind.NOT_FOLLOWED)
            return
        deadlines = sum(1 for row in rows if row[5] < 0)
        self.seen["deadline_in_process"] += deadlines
        self.seen["event"] += len(rows) - deadlines - len(supervision)
        clears = [row for row in rows if row[6] == ACTION_CLEAR and row not in supervision]
        hysteresis = sum(1 for row in clears if rules[row[0]].kind is RuleKind.HYSTERESIS)
        self.seen["hysteresis_clear"] += hysteresis
        self.seen["clear"] += len(clears) - hysteresis
        self.seen["cancel"] += sum(1 for row in rows if row[6] == ACTION_CANCEL)
        self.seen["offline_at_once"] += sum(1 for row in supervision if row[6] != ACTION_CLEAR)
        self.seen["back_online"] += sum(1 for row in supervision if row[6] == ACTION_CLEAR)

    def process(self, rows: list[EventRow]) -> None:
        needed = max((row[1] + 1 for row in rows), default=0)
        if needed > self.n:
            self.grow(needed - self.n)
        batch = EventBatch.of(rows)
        got = self.engine.process(batch).rows()
        assert got == self.reference.process(batch).rows()
        self.count(got, in_sweep=False)
        assert self.engine.next_due() == self.reference.next_due()

    def sweep(self, now: int) -> None:
        got = self.engine.sweep(now).rows()
        assert got == self.reference.sweep(now).rows()
        self.count(got, in_sweep=True)
        assert self.engine.next_due() == self.reference.next_due()

    def swap(self) -> None:
        """Restart both from each other's snapshot: the format and the restore agree."""
        self.same_state()
        from_engine, from_reference = self.engine.snapshot(), self.reference.snapshot()
        self.engine, self.reference = self.make(Engine), self.make(ReferenceEngine)
        self.engine.restore(from_reference)
        self.reference.restore(from_engine)
        self.same_state()

    def grow(self, k: int) -> None:
        self.n = min(len(self.full), self.n + k)
        self.engine.resize(self.full[: self.n], self.intervals[: self.n])
        self.reference.resize(self.full[: self.n], self.intervals[: self.n])
        self.same_state()

    def reload(self, spec: list[dict[str, Any]], spec_homes: Any, intervals: np.ndarray | None) -> None:
        """Both engines swap to the mutated pack (and homes, and intervals) mid-stream."""
        self.same_state()
        pack = finish(spec)
        params = params_of(pack, spec_homes) if spec_homes is not None else None
        given = None if intervals is None else np.array(intervals, np.int64)[: self.n]
        if given is not None and given.shape[0] < self.n:  # drawn for fewer devices: pad
            given = np.concatenate([given, self.intervals[given.shape[0] : self.n]])
        reports = [engine.reload(pack, params, given) for engine in (self.engine, self.reference)]
        names = [(r.kept, r.reset, r.added, r.removed) for r in reports]
        assert names[0] == names[1]
        self.seen["reload_kept"] += len(reports[0].kept)
        self.seen["reload_reset"] += len(reports[0].reset)
        self.pack, self.homes = pack, self.engine.homes
        if given is not None:
            self.intervals = np.concatenate([given, self.intervals[self.n :]])
        self.same_state()


def run(world: World) -> Pair:
    pair = Pair(world)
    at = 0
    for action, arg in world.script:
        if action == "batch":
            pair.process(world.events[at : at + arg])
            at += arg
        elif action == "sweep":
            pair.sweep(arg)
        elif action == "swap":
            pair.swap()
        elif action == "grow":
            pair.grow(arg)
        else:
            pair.reload(*arg)
    pair.process(world.events[at:])
    pair.same_state()
    last = max((row[2] for row in world.events), default=world.start)
    pair.sweep(last + 1000 * world.scale)
    pair.sweep(last + 30 * 86_400_000)  # a device never heard from got its clock started by the first
    pair.same_state()
    assert pair.engine.next_due() is None
    return pair


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_engine_equals_reference(world: World) -> None:
    run(world)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_batching_does_not_change_decisions(world: World) -> None:
    """One batch or one event per batch: the same triggers (bar the `event` index)."""
    pack = world.pack
    params = params_of(pack, world.homes)
    whole = Engine(pack, world.device_home, world.intervals, homes=params)
    single = ReferenceEngine(pack, world.device_home, world.intervals, homes=params)
    expected = [row[:5] + row[6:] for row in whole.process(EventBatch.of(world.events)).rows()]
    got = [row[:5] + row[6:] for e in world.events for row in single.process(EventBatch.of([e])).rows()]
    assert got == expected
    assert whole.snapshot() == single.snapshot()


def test_strategies_reach_the_interesting_cases() -> None:
    """Guard against strategies that quietly stop producing deadlines, counts or reloads."""
    total = dict.fromkeys(SEEN, 0)

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(worlds())
    def count(world: World) -> None:
        for key, n in run(world).seen.items():
            total[key] += n

    count()
    assert all(n >= 25 for n in total.values()), sorted(total.items())
