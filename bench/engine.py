"""Benchmark of the rule engine: throughput, sweep time, state size, reload, compile time.

    .venv/bin/python bench/engine.py [--devices 100000] [--homes 40000]
        [--events 2000000] [--batch 10000] [--repeats 5]

A synthetic but plausible stream (mostly heartbeats and motion, some doors, beds and
readings, few alarms) over the full default rule pack: every construct, windows in local
time (the stream runs from 01:00 to 02:00 in Oslo, so the night rules are live), `where`
conditions on the rooms and doors in the events' data, and one home in fifty with
overrides of its own. Every figure is a median over `--repeats` runs; the reference
interpreter is measured in the same run on the first `--ref-events` events, and the engine
on that same slice, so that their ratio compares like with like. Prints a table, appends
a dated section to bench/RESULTS.md and draws events/s against batch size to
bench/engine-batch.png.

Device supervision (the pack's `supervise` rule) runs with every device supervised every
`--supervision` (default 10 min). The reload figure is `Engine.reload` of the pack with
one rule changed, on the state the stream left; the other rules' state is checked kept.

Not part of the test suite: it takes a few minutes and wants a quiet machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np
from report import append_results, cpu_name

from responsecentre.contract import TYPE_ID
from responsecentre.engine import Engine, EventBatch, ReferenceEngine, RulePack, load_rules
from responsecentre.engine.conditions import compile_conditions
from responsecentre.engine.homes import HomeParams, home_params

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / "rules" / "default.yaml"

# Share of the stream by event type: a region's welfare technology at an ordinary hour.
MIX = {
    "device.heartbeat": 0.40,
    "motion.detected": 0.24,
    "door.opened": 0.05,
    "door.closed": 0.05,
    "bed.exit": 0.04,
    "bed.enter": 0.04,
    "temperature": 0.07,
    "device.battery": 0.03,
    "medication.due": 0.02,
    "medication.taken": 0.018,
    "fall.detected": 0.003,
    "fall.cancelled": 0.002,
    "alarm.button": 0.003,
    "alarm.cancel": 0.002,
    "medication.missed": 0.001,
    "medication.empty": 0.001,
    "water.leak": 0.0005,
    "smoke.detected": 0.0002,
    "seizure.detected": 0.0002,
    "geofence.exit": 0.0005,
    "device.tamper": 0.0006,
}
START_MS = 1_763_856_000_000  # 2025-11-23 00:00 UTC, 01:00 in Oslo: the night rules are live
ROOMS = ("bathroom", "bedroom", "living room", "kitchen", "hallway")
DOORS = ("front", "back", "balcony")
PLOT = ROOT / "bench" / "engine-batch.png"

# The overrides one home in fifty has: a later day, a warmer limit, a slower dispenser.
OVERRIDES = {
    "no-movement-daytime": {"inactive": {"for": "5h"}, "during": {"from": "08:30", "to": "21:00"}},
    "cold-home": {"value": {"below": 12, "clear_above": 18}},
    "medication-not-taken": {"unless": {"within": "45m"}},
}
# The change of the reload figure: one rule's delay.
RELOADED = (
    "medication-not-taken",
    "unless: {followed_by: medication.taken, within: 30m}",
    "unless: {followed_by: medication.taken, within: 40m}",
)


def homes(pack: RulePack, n_homes: int) -> HomeParams:
    """Every home in Oslo; one in fifty with OVERRIDES."""
    return home_params(pack, [("Europe/Oslo", OVERRIDES if h % 50 == 7 else {}) for h in range(n_homes)])


def directory(n_devices: int, n_homes: int, rng: np.random.Generator) -> np.ndarray:
    """device -> home, every home with at least one device."""
    homes = np.concatenate([np.arange(n_homes), rng.integers(0, n_homes, n_devices - n_homes)])
    rng.shuffle(homes)
    return homes.astype(np.int32)


def stream(n_events: int, n_devices: int, rng: np.random.Generator, pack: RulePack) -> EventBatch:
    """`n_events` events over an hour, in time order, with values where the type has one
    and a room (motion, temperature) or a door (door events) in their data, turned into
    the `cond` bits the shell would compute with the pack's conditions."""
    names = list(MIX)
    weights = np.array([MIX[n] for n in names])
    type_id = np.array([TYPE_ID[n] for n in names], np.int32)[
        rng.choice(len(names), n_events, p=weights / weights.sum())
    ]
    ts = START_MS + np.sort(rng.integers(0, 3_600_000, n_events)).astype(np.int64)
    value = np.zeros(n_events)
    has_value = np.zeros(n_events, np.bool_)
    temperature = type_id == TYPE_ID["temperature"]
    battery = type_id == TYPE_ID["device.battery"]
    value[temperature] = rng.normal(21.0, 4.0, int(temperature.sum()))
    value[battery] = rng.uniform(0.0, 100.0, int(battery.sum()))
    has_value[temperature | battery] = True
    value[temperature & (rng.random(n_events) < 0.001)] = 80.0  # a stove left on, now and then
    conditions = compile_conditions(pack)
    cond = np.zeros(n_events, np.int64)
    place = rng.integers(0, len(ROOMS), n_events)
    for name in conditions.types:
        of_type = type_id == TYPE_ID[name]
        key, values = ("door", DOORS) if name.startswith("door.") else ("room", ROOMS)
        for i, where in enumerate(values):
            cond[of_type & (place % len(values) == i)] = conditions.evaluate(name, {key: where})[0]
    return EventBatch(
        type_id=type_id,
        device=rng.integers(0, n_devices, n_events).astype(np.int32),
        ts=ts,
        value=value,
        has_value=has_value,
        seq=np.arange(n_events, dtype=np.int64),
        cond=cond,
    )


FIELDS = ("type_id", "device", "ts", "value", "has_value", "seq", "cond")


def batches(events: EventBatch, size: int) -> list[EventBatch]:
    return [EventBatch(*(getattr(events, f)[i : i + size] for f in FIELDS)) for i in range(0, len(events), size)]


def run_rate(make: Callable[[], Engine | ReferenceEngine], parts: list[EventBatch]) -> float:
    """Events per second of `process` over `parts` on a fresh engine (process time only)."""
    engine = make()
    elapsed = 0.0
    for part in parts:
        started = time.perf_counter()
        engine.process(part)
        elapsed += time.perf_counter() - started
    return sum(len(p) for p in parts) / elapsed


def compile_times(runs: int) -> tuple[float, float, float]:
    """(cold, warm, import) seconds, each in a fresh interpreter.

    Cold: an empty NUMBA_CACHE_DIR, so `Engine(...)` compiles both kernels. Warm: the
    same directory again, so it loads them from the cache. Both time `Engine(...)` only;
    importing numba and the package is reported separately.
    """
    code = textwrap.dedent(
        f"""
        import time
        t0 = time.perf_counter()
        import numpy as np
        from responsecentre.engine import Engine, load_rules
        t1 = time.perf_counter()
        pack = load_rules({str(PACK)!r})
        t2 = time.perf_counter()
        Engine(pack, np.zeros(4, np.int32))
        print(time.perf_counter() - t2, t1 - t0)
        """
    )
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}

        def once() -> tuple[float, float]:
            out = subprocess.run(
                [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
            ).stdout.split()
            return float(out[0]), float(out[1])

        cold, _ = once()
        warm = [once() for _ in range(runs)]
    return cold, statistics.median(w[0] for w in warm), statistics.median(w[1] for w in warm)


def plot(by_batch: dict[int, float], path: Path) -> None:
    """events/s against batch size, log-x, to a PNG (matplotlib without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(by_batch)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    ax.plot(sizes, [by_batch[s] / 1e6 for s in sizes], marker="o")
    ax.set_xscale("log")
    ax.set_xlabel("events per batch")
    ax.set_ylabel("M events/s (median)")
    ax.set_title("Engine.process, full default pack")
    ax.axhline(20, linestyle="--", color="grey", linewidth=1)
    ax.annotate("goal: 20 M events/s", (sizes[0], 20), textcoords="offset points", xytext=(0, 4), fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def reload_pack(pack: RulePack) -> RulePack:
    """The default pack with RELOADED's one change, loaded from text like any pack."""
    from responsecentre.engine import parse_rules

    name, old, new = RELOADED
    text = PACK.read_text()
    assert text.count(old) == 1, f"bench: {old!r} not found once in {PACK}"
    changed = parse_rules(text.replace(old, new), source=str(PACK))
    assert [r.name for r in changed.rules] == [r.name for r in pack.rules]
    assert [r.name for r, o in zip(changed.rules, pack.rules, strict=True) if r.meaning != o.meaning] == [name]
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--homes", type=int, default=40_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ref-events", type=int, default=100_000)
    parser.add_argument("--supervision", type=float, default=600.0, help="supervision interval, seconds")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md or draw the plot")
    args = parser.parse_args()
    if args.homes > args.devices:
        parser.error("--homes must not exceed --devices")

    rng = np.random.default_rng(20251123)
    pack = load_rules(PACK)
    params = homes(pack, args.homes)
    device_home = directory(args.devices, args.homes, rng)
    intervals = np.full(args.devices, int(args.supervision * 1000), np.int64)
    events = stream(args.events, args.devices, rng, pack)
    parts = batches(events, args.batch)
    ref_parts = parts[: max(1, args.ref_events // args.batch)]
    n_ref = sum(len(p) for p in ref_parts)

    def make_engine() -> Engine:
        return Engine(pack, device_home, intervals, homes=params)

    def make_reference() -> ReferenceEngine:
        return ReferenceEngine(pack, device_home, intervals, homes=params)

    run_rate(make_engine, parts[:5])  # warm-up: caches, page faults, buffer growth
    engine_rates = [run_rate(make_engine, parts) for _ in range(args.repeats)]
    slice_rates = [run_rate(make_engine, ref_parts) for _ in range(args.repeats)]
    ref_rates = [run_rate(make_reference, ref_parts) for _ in range(args.repeats)]

    # Per-batch latency, on one more pass.
    engine = make_engine()
    latencies = []
    triggers = 0
    for part in parts:
        started = time.perf_counter()
        triggers += len(engine.process(part))
        latencies.append(time.perf_counter() - started)

    # Sweep over all devices and homes, from the state the stream left: once with nothing
    # due (the scan of every deadline, supervision and inactivity slot) and once firing
    # everything due by the end of the stream.
    blob = engine.snapshot()
    pending = len(engine.pending())
    end = int(events.ts[-1])
    idle_ms, fire_ms, fired = [], [], 0
    for _ in range(max(args.repeats, 5)):
        started = time.perf_counter()
        engine.sweep(START_MS - 1)
        idle_ms.append((time.perf_counter() - started) * 1000)
        engine.restore(blob)
        started = time.perf_counter()
        fired = len(engine.sweep(end))
        fire_ms.append((time.perf_counter() - started) * 1000)
        engine.restore(blob)
    snapshot_bytes = len(engine.snapshot())

    # Hot reload with one rule changed, on the state of the stream: the others keep theirs.
    changed = reload_pack(pack)
    changed_params = homes(changed, args.homes)
    reload_ms, kept = [], 0
    for _ in range(max(args.repeats, 5)):
        engine.restore(blob)
        before = {k: v for k, v in engine.pending().items() if pack.rules[k[0]].name != RELOADED[0]}
        started = time.perf_counter()
        report = engine.reload(changed, changed_params, intervals)
        reload_ms.append((time.perf_counter() - started) * 1000)
        after = engine.pending()
        assert all(after.get(k) == v for k, v in before.items()), "reload lost a pending deadline"
        assert report.reset == (RELOADED[0],), report
        kept = len(report.kept)
        engine.reload(pack, params, intervals)

    by_batch = {}
    first = EventBatch(*(getattr(events, f)[:500_000] for f in FIELDS))
    for size in (10, 100, 1000, 10_000, 100_000):
        sized = batches(first, size)
        by_batch[size] = statistics.median(run_rate(make_engine, sized) for _ in range(3))

    cold, warm, import_s = compile_times(runs=3)

    engine_rate = statistics.median(engine_rates)
    slice_rate = statistics.median(slice_rates)
    ref_rate = statistics.median(ref_rates)
    state = engine.state_nbytes
    kinds = sorted({str(rule.kind) for rule in pack.rules})
    figures = [
        ("Engine.process, full stream", f"{engine_rate / 1e6:,.1f} M events/s"),
        (f"Engine.process, first {n_ref:,} events", f"{slice_rate / 1e6:,.1f} M events/s"),
        (f"ReferenceEngine.process, first {n_ref:,} events", f"{ref_rate / 1e6:,.3f} M events/s"),
        ("ratio engine / reference (same slice)", f"{slice_rate / ref_rate:,.0f}x"),
        (
            f"process latency per {args.batch:,}-event batch (median / max)",
            f"{statistics.median(latencies) * 1000:.3f} / {max(latencies) * 1000:.3f} ms",
        ),
        ("triggers from the stream", f"{triggers:,}"),
        (
            "sweep, nothing due (every deadline, supervision and inactivity slot)",
            f"{statistics.median(idle_ms):.3f} ms",
        ),
        (
            f"sweep firing {fired:,} (of {pending:,} pending deadlines, silent devices, quiet homes)",
            f"{statistics.median(fire_ms):.3f} ms",
        ),
        (f"reload, one rule changed ({kept} rules keep their state)", f"{statistics.median(reload_ms):.1f} ms"),
        ("engine state per device", f"{state / args.devices:.1f} bytes ({state:,} total)"),
        *(
            (f"  of which {part}", f"{nbytes / args.devices:.1f} bytes per device")
            for part, nbytes in engine.state_parts.items()
        ),
        ("  + device -> home map", f"{engine.n_devices * 4 / args.devices:.1f} bytes"),
        ("snapshot after the stream", f"{snapshot_bytes / 1e6:.2f} MB"),
        ("compile, cold cache (Engine())", f"{cold:.2f} s"),
        ("compile, warm cache (Engine())", f"{warm:.3f} s"),
        ("import numba + engine package", f"{import_s:.2f} s"),
    ]
    figures += [(f"events/s at batch {size:,}", f"{rate / 1e6:,.1f} M") for size, rate in by_batch.items()]

    command = "python bench/engine.py " + " ".join(sys.argv[1:])
    width = max(len(name) for name, _ in figures)
    table = "\n".join(f"| {name.ljust(width)} | {value} |" for name, value in figures)
    header = f"| {'figure'.ljust(width)} | value |\n|{'-' * (width + 2)}|-------|"
    print(header)
    print(table)
    if args.no_record:
        return
    plot(by_batch, PLOT)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = f"""
## Engine — {now}

- command: `{command.strip()}`
- {args.devices:,} devices in {args.homes:,} homes, {args.events:,} events in batches of \
{args.batch:,}, rule pack `rules/default.yaml` ({len(pack.rules)} rules: {", ".join(kinds)}; \
{len(pack.conditions)} `where` conditions; {len(params.profiles)} home profiles); medians of \
{args.repeats} runs
- machine: {cpu_name()}, {os.cpu_count()} CPUs; {platform.platform()}
- Python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}
- plot: `bench/{PLOT.name}` (events/s against batch size)

{header}
{table}
"""
    append_results(section)


if __name__ == "__main__":
    main()
