"""The device simulator's core: a pure, seeded generator of what the homes publish.

`Simulator.step(now_ms)` returns every message due up to `now_ms` and does no I/O and no
clock reading; `responsecentre.sim.mqtt` is the shell that publishes them. Everything is a
due-time queue processed strictly in (due time, sequence) order, so the stream depends only
on the seed, the homes, the start time and the options, never on how often `step` is
called. Every device and every home draws from a random generator of its own, seeded from
(seed, tenant, id): a home's stream does not change when other homes are added or removed.

What a home does (first cut; issue 5 deepens this into a resident's day and faults):
- a retained status `{"online": true, "battery": N, "ts": ...}` per device at the start;
- `device.heartbeat` per device every `heartbeat_every` of its kind, at a random phase;
- `device.battery` about once an hour (sim time) with a draining level; a battery that
  runs flat is replaced (back to 100);
- `temperature` readings from thermometers every 10 minutes, a slow random walk with the
  odd cold spell;
- occasional incidents at `events_per_hour_per_home` (Poisson), on one device of the
  home chosen by kind: alarm.button (sometimes pressed again, sometimes cancelled),
  fall.detected (usually cancelled within 20 s), door.opened then door.closed after 10 s
  to 15 min, medication.due then usually medication.taken within 20 min (sometimes never),
  bed.exit/bed.enter, motion, smoke, water, seizure, geofence exit.

Event ids are a per-device counter `"{device_id}-{n}"`, so a redelivered message carries
the id it had and the centre's dedup makes it harmless. Timestamps are sim time:
`start_ms + (now_ms - start_ms) * speed`.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from responsecentre import contract
from responsecentre.sim.homes import SimDevice, SimHome

BATTERY_EVERY_MS = 3_600_000
TEMPERATURE_EVERY_MS = 600_000
ROOMS = ("bathroom", "bedroom", "living room", "kitchen", "hallway")

# How likely an incident lands on a device of this kind, relative to the others in the
# home. Kinds that only report measurements (thermometer) take no part.
KIND_WEIGHTS: dict[str, float] = {
    "safety_alarm": 3.0,
    "fall_sensor": 2.0,
    "door_sensor": 4.0,
    "medicine_dispenser": 3.0,
    "bed_sensor": 2.0,
    "motion_sensor": 4.0,
    "smoke_detector": 0.2,
    "water_detector": 0.2,
    "epilepsy_sensor": 0.3,
    "gps_watch": 1.0,
    "thermometer": 0.0,
}

# One step of an incident: (offset from its start in ms, event type, value, data).
Step = tuple[int, str, float | None, dict[str, Any] | None]


@dataclass(frozen=True, slots=True)
class Publish:
    """One MQTT message to publish. `event_type` is informational (for counting):
    the event type inside an events payload, None for a status message."""

    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 1
    event_type: str | None = None


# The contract owns the wire formats; re-exported here for the simulator's callers.
format_ts = contract.format_ts
status_payload = contract.encode_status


class _Device:
    """Mutable state of one simulated device."""

    __slots__ = (
        "battery",
        "battery_at",
        "busy_until",
        "cold_until",
        "drain_per_ms",
        "home",
        "n",
        "rng",
        "spec",
        "temp",
        "temp_target",
        "tenant",
    )

    def __init__(self, tenant: str, home: str, spec: SimDevice, seed: int, first_n: int) -> None:
        self.tenant = tenant
        self.home = home
        self.spec = spec
        self.rng = random.Random(f"{seed}:device:{tenant}/{spec.device_id}")
        self.n = first_n
        self.battery = self.rng.uniform(55.0, 100.0)
        self.battery_at = 0
        # Most batteries last months; one in ten drains within hours to days, so a demo
        # shows low-battery alarms.
        per_hour = self.rng.uniform(0.5, 2.5) if self.rng.random() < 0.1 else self.rng.uniform(0.005, 0.05)
        self.drain_per_ms = per_hour / 3_600_000
        self.temp = self.rng.uniform(19.0, 23.0)
        self.temp_target = 21.0
        self.cold_until = 0
        self.busy_until = 0


class Simulator:
    """`Simulator(homes, seed, start_ms, speed)`; `step(now_ms)` -> what to publish by then.

    `now_ms` is the caller's clock (epoch ms); at `speed` x the sim clock runs
    `start_ms + (now_ms - start_ms) * speed`, and all timestamps are sim time.
    `first_event_number` is the first n of every device's event ids (the MQTT shell
    starts it at the run's start time so a second run does not reuse the first run's ids).
    """

    def __init__(
        self,
        homes: Iterable[SimHome],
        seed: int,
        start_ms: int,
        speed: float = 1.0,
        *,
        events_per_hour_per_home: float = 2.0,
        battery_every_ms: int = BATTERY_EVERY_MS,
        temperature_every_ms: int = TEMPERATURE_EVERY_MS,
        first_event_number: int = 1,
    ) -> None:
        if speed <= 0 or not math.isfinite(speed):
            raise ValueError("speed must be a positive number")
        if events_per_hour_per_home < 0 or not math.isfinite(events_per_hour_per_home):
            raise ValueError("events_per_hour_per_home must be zero or more")
        self.homes: tuple[SimHome, ...] = tuple(homes)
        self.seed = seed
        self.start_ms = int(start_ms)
        self.speed = float(speed)
        self.rate = float(events_per_hour_per_home)
        self.battery_every_ms = int(battery_every_ms)
        self.temperature_every_ms = int(temperature_every_ms)
        self._sim_now = self.start_ms
        self._queue: list[tuple[int, int, Callable[..., None], int, Any]] = []
        self._seq = 0
        self._out: list[Publish] = []
        self._devices: list[_Device] = []
        self._home_devices: list[list[int]] = []
        self._home_rngs: list[random.Random] = []
        seen: set[tuple[str, str]] = set()
        for home in self.homes:
            indices = []
            for spec in home.devices:
                if (home.tenant, spec.device_id) in seen:
                    raise ValueError(f"device {home.tenant}/{spec.device_id} appears twice")
                seen.add((home.tenant, spec.device_id))
                indices.append(len(self._devices))
                self._devices.append(_Device(home.tenant, home.home_id, spec, seed, first_event_number))
            self._home_devices.append(indices)
            self._home_rngs.append(random.Random(f"{seed}:home:{home.tenant}/{home.home_id}"))
        start = self.start_ms
        for i, dev in enumerate(self._devices):
            dev.battery_at = start
            self._schedule(start, self._emit_status, i)
        for i, dev in enumerate(self._devices):
            every = dev.spec.heartbeat_every_ms
            if "device.heartbeat" in dev.spec.events and every > 0:
                self._schedule(start + dev.rng.randrange(every), self._emit_heartbeat, i)
            if "device.battery" in dev.spec.events and self.battery_every_ms > 0:
                self._schedule(start + dev.rng.randrange(self.battery_every_ms), self._emit_battery, i)
            if "temperature" in dev.spec.events and self.temperature_every_ms > 0:
                self._schedule(start + dev.rng.randrange(self.temperature_every_ms), self._emit_temperature, i)
        if self.rate > 0:
            for h in range(len(self.homes)):
                self._schedule(start + self._interarrival(h), self._incident, h)

    # -- the public surface ------------------------------------------------------------

    def sim_time(self, now_ms: int) -> int:
        """The sim clock at the caller's `now_ms` (never runs backwards)."""
        return max(self._sim_now, self.start_ms + int((now_ms - self.start_ms) * self.speed))

    @property
    def sim_now(self) -> int:
        """Sim time up to which everything has been returned."""
        return self._sim_now

    def step(self, now_ms: int) -> list[Publish]:
        """Everything due up to the sim time at `now_ms`, in order."""
        return self.step_sim(self.sim_time(now_ms))

    def step_sim(self, sim_ms: int) -> list[Publish]:
        """Everything due up to sim time `sim_ms` (for tests and fast-forward)."""
        queue = self._queue
        while queue and queue[0][0] <= sim_ms:
            due, _, action, index, extra = heapq.heappop(queue)
            action(due, index, extra)
        self._sim_now = max(self._sim_now, sim_ms)
        out, self._out = self._out, []
        return out

    # -- internals ---------------------------------------------------------------------

    def _schedule(self, due: int, action: Callable[..., None], index: int, extra: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (due, self._seq, action, index, extra))

    def _interarrival(self, home_index: int) -> int:
        return max(1, int(self._home_rngs[home_index].expovariate(self.rate / 3_600_000)))

    def _event(
        self,
        due: int,
        dev: _Device,
        type_: str,
        value: float | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        event_id = f"{dev.spec.device_id}-{dev.n}"
        dev.n += 1
        self._out.append(
            Publish(
                contract.events_topic(dev.tenant, dev.spec.device_id),
                contract.encode_event(event_id, type_, due, value, data),
                retain=False,
                qos=1,
                event_type=type_,
            )
        )

    def _battery_level(self, due: int, dev: _Device) -> int:
        level = dev.battery - dev.drain_per_ms * (due - dev.battery_at)
        if level <= 0:
            level = 100.0  # flat: someone put a new battery in
        dev.battery, dev.battery_at = level, due
        return max(1, round(level))

    def _emit_status(self, due: int, index: int, _: Any) -> None:
        dev = self._devices[index]
        self._out.append(
            Publish(
                contract.status_topic(dev.tenant, dev.spec.device_id),
                status_payload(True, self._battery_level(due, dev), due),
                retain=True,
                qos=1,
            )
        )

    def _emit_heartbeat(self, due: int, index: int, _: Any) -> None:
        dev = self._devices[index]
        self._event(due, dev, "device.heartbeat")
        self._schedule(due + dev.spec.heartbeat_every_ms, self._emit_heartbeat, index)

    def _emit_battery(self, due: int, index: int, _: Any) -> None:
        dev = self._devices[index]
        self._event(due, dev, "device.battery", self._battery_level(due, dev))
        jitter = dev.rng.randrange(-self.battery_every_ms // 10, self.battery_every_ms // 10 + 1)
        self._schedule(due + max(1, self.battery_every_ms + jitter), self._emit_battery, index)

    def _emit_temperature(self, due: int, index: int, _: Any) -> None:
        dev = self._devices[index]
        rng = dev.rng
        if due >= dev.cold_until and dev.temp_target < 21.0:
            dev.temp_target = 21.0  # the heating is back on
        if dev.cold_until <= due and rng.random() < 0.004:
            # A cold spell: heating failure or a window left open, for 1 to 4 hours.
            dev.cold_until = due + rng.randrange(3_600_000, 4 * 3_600_000)
            dev.temp_target = rng.uniform(6.0, 10.0)
        dev.temp += 0.15 * (dev.temp_target - dev.temp) + rng.gauss(0.0, 0.2)
        self._event(due, dev, "temperature", round(dev.temp, 1))
        self._schedule(due + self.temperature_every_ms, self._emit_temperature, index)

    def _emit_scripted(self, due: int, index: int, step: tuple[str, float | None, dict[str, Any] | None]) -> None:
        type_, value, data = step
        self._event(due, self._devices[index], type_, value, data)

    def _incident(self, due: int, home_index: int, _: Any) -> None:
        rng = self._home_rngs[home_index]
        candidates: list[int] = []
        weights: list[float] = []
        for i in self._home_devices[home_index]:
            dev = self._devices[i]
            weight = _weight(dev.spec)
            if weight > 0 and dev.busy_until <= due:
                candidates.append(i)
                weights.append(weight)
        if candidates:
            index = rng.choices(candidates, weights)[0]
            dev = self._devices[index]
            steps = [s for s in _script(dev.spec, rng) if s[1] in dev.spec.events]
            for offset, type_, value, data in steps:
                self._schedule(due + offset, self._emit_scripted, index, (type_, value, data))
            dev.busy_until = due + max((s[0] for s in steps), default=0) + 1
        self._schedule(due + self._interarrival(home_index), self._incident, home_index)


def _weight(spec: SimDevice) -> float:
    if spec.kind in KIND_WEIGHTS:
        return KIND_WEIGHTS[spec.kind]
    return 1.0 if any(not e.startswith("device.") for e in spec.events) else 0.0


def _log_uniform_ms(rng: random.Random, low_ms: int, high_ms: int) -> int:
    return int(math.exp(rng.uniform(math.log(low_ms), math.log(high_ms))))


def _script(spec: SimDevice, rng: random.Random) -> list[Step]:
    """One incident on this device: its events with offsets from the incident's start."""
    kind = spec.kind
    if kind == "safety_alarm" or (kind == "gps_watch" and rng.random() < 0.3):
        presses = rng.choices((1, 2, 3), (0.8, 0.12, 0.08))[0]
        steps: list[Step] = []
        t = 0
        for _ in range(presses):
            steps.append((t, "alarm.button", None, None))
            t += rng.randrange(10_000, 40_000)
        if rng.random() < 0.25:  # pressed by mistake, cancelled on the unit
            steps.append((steps[-1][0] + rng.randrange(3_000, 60_000), "alarm.cancel", None, None))
        return steps
    if kind == "fall_sensor":
        steps = [(0, "fall.detected", None, {"room": rng.choice(ROOMS)})]
        if rng.random() < 0.75:  # "I'm OK" pressed, usually within 20 s
            steps.append((rng.randrange(2_000, 20_000), "fall.cancelled", None, None))
        return steps
    if kind == "door_sensor":
        return [
            (0, "door.opened", None, None),
            (_log_uniform_ms(rng, 10_000, 900_000), "door.closed", None, None),
        ]
    if kind == "medicine_dispenser":
        steps = [(0, "medication.due", None, None)]
        draw = rng.random()
        if draw < 0.8:
            steps.append((rng.randrange(30_000, 20 * 60_000), "medication.taken", None, None))
        elif draw < 0.88:  # taken, but late
            steps.append((rng.randrange(20 * 60_000, 60 * 60_000), "medication.taken", None, None))
        return steps  # otherwise never taken: the deadline rule must catch it
    if kind == "bed_sensor":
        steps = [(0, "bed.exit", None, None)]
        if rng.random() < 0.9:
            steps.append((_log_uniform_ms(rng, 60_000, 40 * 60_000), "bed.enter", None, None))
        return steps
    if kind == "motion_sensor":
        return [(0, "motion.detected", None, {"room": rng.choice(ROOMS)})]
    if kind == "gps_watch":
        return [(0, "geofence.exit", None, None)]
    primary = next((e for e in spec.events if not e.startswith("device.")), None)
    return [(0, primary, None, None)] if primary else []
