"""The numba Engine against the plain-Python ReferenceEngine, on random everything.

Hypothesis draws a rule pack (as YAML, through the real loader), a device -> home map, an
event stream with few types, few devices and a narrow time range (so that deadlines,
cancels, duplicate timestamps and out-of-order events collide often), and a script that
cuts the stream into batches with sweeps, snapshot swaps and directory growth in between.
Both engines must return the same triggers at every step and end in the same state.

The packs use every construct: match, threshold, not-followed-by, hysteresis
(`clear_above`/`clear_below`), clear rules, the resident's cancel and device supervision
(with drawn per-device intervals, some devices unsupervised, and the internal
`device.online`/`device.offline` types in the stream); the state that the newer ones keep
(hysteresis flags, cancel windows, last-seen times and offline flags) is in the snapshots
compared, and so is `next_due` (supervision's bound included) after every call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from responsecentre.engine import Engine, EventBatch, ReferenceEngine, RuleKind, RulePack, parse_rules
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
# What a drawn rule is; the constructs of part 2 weigh as much as the older ones.
CONSTRUCTS = ("match", "threshold", *("not_followed", "hysteresis", "clear", "cancel") * 2)
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


@st.composite
def packs(draw: st.DrawFn) -> RulePack:
    rules: list[dict[str, object]] = []
    clears: list[dict[str, object]] = []
    for i in range(draw(st.integers(1, 5))):
        rule: dict[str, object] = {"name": f"r{i}", "when": draw(type_refs)}
        kind = draw(st.sampled_from(CONSTRUCTS))
        if kind in ("threshold", "clear", "cancel") and draw(st.booleans()):
            rule["value"] = {draw(st.sampled_from(WORDS)): draw(st.sampled_from(THRESHOLDS))}
        if kind == "hysteresis":
            # Several types: a flag needs a raise and then a clear from the same device.
            rule["when"] = draw(st.lists(st.sampled_from(REFS), min_size=2, max_size=4))
            word = draw(st.sampled_from(tuple(CLEAR_WORDS)))
            threshold = draw(st.sampled_from(THRESHOLDS))
            gap = draw(st.sampled_from((0, 0.5, 5, 10)))
            bound = threshold + gap if CLEAR_WORDS[word] == "clear_above" else threshold - gap
            rule["value"] = {word: threshold, CLEAR_WORDS[word]: bound}
        elif kind == "not_followed":
            within = draw(st.integers(1, 40))
            rule["unless"] = {"followed_by": draw(type_refs), "within": f"{within}ms"}
            scope = draw(st.sampled_from((None, "device", "home")))
            if scope is not None:
                rule["scope"] = scope
        elif kind == "cancel":
            # The cancel types must not be `when` types of the same rule (a pack error).
            free = sorted(set(TYPES) - expanded(rule["when"]))
            if free:
                by = draw(st.lists(st.sampled_from(free), min_size=1, max_size=2, unique=True))
                within = draw(st.integers(1, 120))  # longer than the deadlines: cancels are rarer
                rule["cancel"] = {"by": by if len(by) > 1 else by[0], "within": f"{within}ms"}
        if kind == "clear":
            rule["clear"] = {"kind": draw(st.sampled_from(KINDS))}
            clears.append(rule)
        else:
            rule["raise"] = {"kind": draw(st.sampled_from(KINDS)), "priority": "high", "chain": "c"}
        rules.append(rule)
    if draw(st.booleans()):  # a pack supervises devices once, anywhere in the order
        rules.insert(draw(st.integers(0, len(rules))), dict(SUPERVISE))
    raised = sorted({r["raise"]["kind"] for r in rules if "raise" in r})  # type: ignore[index]
    for rule in clears:  # a clear must name a kind that some rule raises
        if not raised:
            del rule["clear"]
            rule["raise"] = {"kind": "k0", "priority": "high", "chain": "c"}
        elif rule["clear"]["kind"] not in raised:  # type: ignore[index]
            rule["clear"] = {"kind": draw(st.sampled_from(raised))}
    alarms = {kind: {"auto_clear": True} for kind in KINDS}
    return parse_rules(yaml.safe_dump({"version": 1, "alarms": alarms, "rules": rules}, sort_keys=False))


@dataclass(frozen=True)
class World:
    pack: RulePack
    device_home: np.ndarray  # the full directory; engines start with a prefix of it
    intervals: np.ndarray  # supervision interval per device, 0: unsupervised
    initial: int  # devices known at the start
    events: list[EventRow]
    script: list[tuple[str, int]]


@st.composite
def worlds(draw: st.DrawFn) -> World:
    pack = draw(packs())
    n_devices = draw(st.integers(1, 5))
    device_home = np.array(draw(st.lists(st.integers(0, 3), min_size=n_devices, max_size=n_devices)), np.int32)
    intervals = np.array(
        draw(st.lists(st.sampled_from((0, 5, 20, 60)), min_size=n_devices, max_size=n_devices)), np.int64
    )
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
            ),
            min_size=n_events,
            max_size=n_events,
        )
    )
    # Time mostly moves forward in small steps; a step of 0 is a duplicate timestamp and
    # a negative step an out-of-order event. seq is unique but not the position, so an
    # origin/event mix-up would show.
    events: list[EventRow] = []
    ts = 0
    for i, (type_, device, step, value) in enumerate(rows):
        ts = max(0, ts + step)
        events.append((type_, device, ts, value, 1000 + 7 * i))
    script = draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("batch"), st.integers(0, 15)),
                st.tuples(st.just("sweep"), st.integers(-10, 200)),
                st.tuples(st.just("swap"), st.just(0)),
                st.tuples(st.just("grow"), st.integers(1, 3)),
            ),
            max_size=20,
        )
    )
    return World(pack, device_home, intervals, initial, events, script)


class Pair:
    """Both engines, driven in lock step, compared after every call."""

    def __init__(self, world: World) -> None:
        self.pack = world.pack
        self.full = world.device_home
        self.intervals = world.intervals
        self.n = world.initial
        self.engine = Engine(self.pack, self.full[: self.n], self.intervals[: self.n])
        self.reference = ReferenceEngine(self.pack, self.full[: self.n], self.intervals[: self.n])
        self.seen = dict.fromkeys(SEEN, 0)

    def same_state(self) -> None:
        assert self.engine.next_due() == self.reference.next_due()
        assert self.engine.pending() == self.reference.pending()
        assert self.engine.snapshot() == self.reference.snapshot()

    def process(self, rows: list[EventRow]) -> None:
        needed = max((row[1] + 1 for row in rows), default=0)
        if needed > self.n:
            self.grow(needed - self.n)
        batch = EventBatch.of(rows)
        got = self.engine.process(batch).rows()
        assert got == self.reference.process(batch).rows()
        deadlines = sum(1 for row in got if row[5] < 0)
        self.seen["deadline_in_process"] += deadlines
        supervision = [row for row in got if self.pack.rules[row[0]].kind is RuleKind.SUPERVISION]
        self.seen["event"] += len(got) - deadlines - len(supervision)
        clears = [row for row in got if row[6] == ACTION_CLEAR and row not in supervision]
        hysteresis = sum(1 for row in clears if self.pack.rules[row[0]].kind is RuleKind.HYSTERESIS)
        self.seen["hysteresis_clear"] += hysteresis
        self.seen["clear"] += len(clears) - hysteresis
        self.seen["cancel"] += sum(1 for row in got if row[6] == ACTION_CANCEL)
        self.seen["offline_at_once"] += sum(1 for row in supervision if row[6] != ACTION_CLEAR)
        self.seen["back_online"] += sum(1 for row in supervision if row[6] == ACTION_CLEAR)
        assert self.engine.next_due() == self.reference.next_due()

    def sweep(self, now: int) -> None:
        got = self.engine.sweep(now).rows()
        assert got == self.reference.sweep(now).rows()
        silent = sum(1 for row in got if self.pack.rules[row[0]].kind is RuleKind.SUPERVISION)
        self.seen["silent_in_sweep"] += silent
        self.seen["deadline_in_sweep"] += len(got) - silent
        assert self.engine.next_due() == self.reference.next_due()

    def swap(self) -> None:
        """Restart both from each other's snapshot: the format and the restore agree."""
        self.same_state()
        from_engine, from_reference = self.engine.snapshot(), self.reference.snapshot()
        self.engine = Engine(self.pack, self.full[: self.n], self.intervals[: self.n])
        self.reference = ReferenceEngine(self.pack, self.full[: self.n], self.intervals[: self.n])
        self.engine.restore(from_reference)
        self.reference.restore(from_engine)
        self.same_state()

    def grow(self, k: int) -> None:
        self.n = min(len(self.full), self.n + k)
        self.engine.resize(self.full[: self.n], self.intervals[: self.n])
        self.reference.resize(self.full[: self.n], self.intervals[: self.n])
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
        else:
            pair.grow(arg)
    pair.process(world.events[at:])
    pair.same_state()
    pair.sweep(10**6)
    pair.sweep(10**7)  # a device never heard from got its clock started by the first
    pair.same_state()
    assert pair.engine.next_due() is None
    return pair


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_engine_equals_reference(world: World) -> None:
    run(world)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_batching_does_not_change_decisions(world: World) -> None:
    """One batch or one event per batch: the same triggers (bar the `event` index)."""
    full = world.device_home
    whole = Engine(world.pack, full, world.intervals)
    single = ReferenceEngine(world.pack, full, world.intervals)
    expected = [row[:5] + row[6:] for row in whole.process(EventBatch.of(world.events)).rows()]
    got = [row[:5] + row[6:] for e in world.events for row in single.process(EventBatch.of([e])).rows()]
    assert got == expected
    assert whole.snapshot() == single.snapshot()


def test_strategies_reach_the_interesting_cases() -> None:
    """Guard against strategies that quietly stop producing deadlines or matches."""
    total = dict.fromkeys(SEEN, 0)

    @settings(max_examples=300, deadline=None, database=None)
    @given(worlds())
    def count(world: World) -> None:
        for key, n in run(world).seen.items():
            total[key] += n

    count()
    assert all(n >= 50 for n in total.values()), sorted(total.items())
