"""Alert chains (varslingskjeder) as data, loaded from `escalation/chains.yaml`.

Chains are msgspec structs so that a chain can be frozen onto an alarm when it is
raised: editing the YAML later never changes an escalation already under way.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Any

import msgspec
import yaml


class TargetKind(StrEnum):
    CONSOLE = "console"  # every operator at the centre
    ROLE = "role"  # everyone with a role on duty in the home's zone
    STAFF = "staff"  # one named person


class Channel(StrEnum):
    CONSOLE = "console"  # the live console (WebSocket feed)
    MQTT = "mqtt"  # a page to the handset on rc/v1/{tenant}/staff/{id}/pages


class Target(msgspec.Struct, frozen=True):
    kind: TargetKind
    value: str = ""


class Step(msgspec.Struct, frozen=True):
    targets: tuple[Target, ...]
    channels: tuple[Channel, ...]
    ack_within_ms: int


class Chain(msgspec.Struct, frozen=True):
    name: str
    steps: tuple[Step, ...]
    repeat: int = 0  # how many more times the whole chain runs before it is exhausted


class ChainError(ValueError):
    pass


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1000}


def parse_duration_ms(value: Any) -> int:
    if isinstance(value, bool):
        raise ChainError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        ms = int(value * 1000)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ChainError(f"not a duration: {value!r} (use e.g. 500ms, 60s, 10m, 4h)")
        ms = int(float(m.group(1)) * _UNIT_MS[m.group(2)])
    if ms <= 0:
        raise ChainError(f"duration must be positive: {value!r}")
    return ms


def _target(spec: Any) -> Target:
    if spec == "console":
        return Target(TargetKind.CONSOLE)
    if isinstance(spec, dict) and len(spec) == 1:
        ((key, value),) = spec.items()
        if key in ("role", "staff"):
            return Target(TargetKind(key), str(value))
    raise ChainError(f"unknown target {spec!r}: use console, {{role: R}} or {{staff: ID}}")


def parse_chains(doc: dict[str, Any]) -> dict[str, Chain]:
    chains: dict[str, Chain] = {}
    for name, spec in (doc.get("chains") or {}).items():
        steps = []
        for i, step in enumerate(spec.get("steps") or [], 1):
            try:
                steps.append(
                    Step(
                        targets=tuple(_target(t) for t in step.get("targets") or ["console"]),
                        channels=tuple(Channel(c) for c in step.get("channels") or ["console"]),
                        ack_within_ms=parse_duration_ms(step["ack_within"]),
                    )
                )
            except (KeyError, ValueError) as exc:
                raise ChainError(f"chain {name!r} step {i}: {exc}") from None
        if not steps:
            raise ChainError(f"chain {name!r} has no steps")
        repeat = int(spec.get("repeat", 0))
        if repeat < 0:
            raise ChainError(f"chain {name!r}: repeat must be >= 0")
        chains[str(name)] = Chain(str(name), tuple(steps), repeat)
    return chains


def load_chains(path: Path) -> dict[str, Chain]:
    return parse_chains(yaml.safe_load(path.read_text()) or {})
