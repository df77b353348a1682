"""The rule engine: YAML rule packs compiled to numpy tables, run by numba kernels.

    pack = load_rules("rules/default.yaml")
    engine = Engine(pack, device_home)          # device index -> home index (int32)
    triggers = engine.process(batch)            # EventBatch -> Triggers
    triggers = engine.sweep(now_ms)             # fire deadlines that are due
    report = engine.reload(new_pack, homes)     # swap the pack, keeping unchanged rules' state

`ReferenceEngine` has the same API and semantics in plain Python (docs/rules.md). The
package is pure: no I/O, no clock, no asyncio.
"""

from responsecentre.engine.engine import Engine
from responsecentre.engine.homes import HomeParams, default_home_params, home_params
from responsecentre.engine.reference import ReferenceEngine
from responsecentre.engine.rules import (
    Op,
    Priority,
    Rule,
    RuleError,
    RuleKind,
    RulePack,
    load_rules,
    parse_duration,
    parse_rules,
)
from responsecentre.engine.tables import EventBatch, ReloadReport, Tables, Triggers, compile_tables

__all__ = [
    "Engine",
    "EventBatch",
    "HomeParams",
    "Op",
    "Priority",
    "ReferenceEngine",
    "ReloadReport",
    "Rule",
    "RuleError",
    "RuleKind",
    "RulePack",
    "Tables",
    "Triggers",
    "compile_tables",
    "default_home_params",
    "home_params",
    "load_rules",
    "parse_duration",
    "parse_rules",
]
