"""`responsecentre rules explain --home TENANT/HOME`: the rules in force for one home, in words.

A home's rules are the pack's with the home's `rules:` overrides applied (devices/homes.yaml,
docs/rules.md "Per-home overrides"), read on the home's time zone, and its devices are
supervised at intervals that come from three places. An operator asking "why did (or
didn't) h03 raise?" needs all of that on one page, with every place where the home differs
from the pack marked "(home override; pack: X)".

`explain_home` is pure (the pack, the directory and the catalogue in, lines out) so the
tests compare lines; the CLI reads the files and prints them.
"""

from __future__ import annotations

from collections.abc import Mapping

from responsecentre.directory import Directory, Home, KindSpec
from responsecentre.engine.localtime import ALL_DAYS
from responsecentre.engine.rules import (
    DAY_NAMES,
    MAX_DURATION_MS,
    Condition,
    Op,
    Rule,
    RuleKind,
    RulePack,
    Window,
    apply_overrides,
    format_time,
)

_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))
_OP_WORDS = {Op.LT: "below", Op.LE: "at most", Op.GT: "above", Op.GE: "at least", Op.EQ: "equal to"}
_KIND_WORDS = {
    RuleKind.MATCH: "match",
    RuleKind.THRESHOLD: "threshold",
    RuleKind.NOT_FOLLOWED: "not-followed-by",
    RuleKind.HYSTERESIS: "hysteresis",
    RuleKind.SUPERVISION: "supervision",
    RuleKind.COUNT: "count",
    RuleKind.INACTIVE: "inactivity",
}
# The order of a rule's lines, whatever its kind.
_ASPECTS = ("on", "value", "unless", "count", "inactive", "during", "where", "cancel")


def duration(ms: int) -> str:
    """Milliseconds as the rule language writes them, in the largest exact unit: 90m, 2h, 500ms."""
    for unit, size in _UNITS:
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"  # unreachable: 1 ms divides everything


def number(x: float | None) -> str:
    return "?" if x is None else f"{x:g}"


def window(w: Window | None) -> str:
    if w is None:
        return "all day"
    text = f"{format_time(w.from_ms)}-{format_time(w.to_ms)}"
    if w.from_ms > w.to_ms:
        text += " (across midnight)"
    if w.days == ALL_DAYS:
        return text + " every day"
    return text + " on " + ", ".join(d for i, d in enumerate(DAY_NAMES) if w.days >> i & 1)


def condition(c: Condition) -> str:
    value = c.value
    shown = "[" + ", ".join(_scalar(v) for v in value) + "]" if isinstance(value, tuple) else _scalar(value)
    words = {"equals": "is", "in": "is one of", "below": "below", "at_most": "at most", "above": "above"}
    return f"{c.field} {words.get(str(c.op.value), str(c.op.value).replace('_', ' '))} {shown}"


def _scalar(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _types(types: tuple[str, ...]) -> str:
    return ", ".join(types)


def aspects(rule: Rule) -> dict[str, str]:
    """What the rule does, aspect by aspect, in words (the lines of its block)."""
    out: dict[str, str] = {}
    if rule.kind is RuleKind.SUPERVISION:
        out["on"] = "every event of every device; silent past its interval (below), or offline, raises"
        return out
    per = "per home" if rule.scope == "home" else "per device"
    if rule.kind is RuleKind.INACTIVE:
        out["on"] = f"activity: {_types(rule.when)}"
    else:
        out["on"] = _types(rule.when)
    if rule.kind in (RuleKind.THRESHOLD, RuleKind.HYSTERESIS):
        text = f"{_OP_WORDS.get(rule.op, str(rule.op)) if rule.op else '?'} {number(rule.threshold)}"
        if rule.kind is RuleKind.HYSTERESIS and rule.clear_op is not None:
            clear = "above" if rule.clear_op is Op.GT else "below"
            text += f"; clears once {clear} {number(rule.clear_threshold)}"
        out["value"] = text
    if rule.kind is RuleKind.NOT_FOLLOWED:
        follow = "from the same home" if rule.scope == "home" else "from the same device"
        out["unless"] = f"followed by {_types(rule.unless)} within {duration(rule.within_ms)} {follow}"
    if rule.kind is RuleKind.COUNT:
        out["count"] = f"{rule.count_n} within {duration(rule.count_within_ms)}, {per}"
    if rule.kind is RuleKind.INACTIVE:
        counted = " of window time" if rule.during is not None else ""
        out["inactive"] = f"none in the home for {duration(rule.inactive_ms)}{counted}"
    if rule.during is not None:
        out["during"] = window(rule.during)
    if rule.where:
        out["where"] = " and ".join(condition(c) for c in rule.where)
    if rule.cancel_by:
        out["cancel"] = f"by {_types(rule.cancel_by)} from the same device within {duration(rule.cancel_within_ms)}"
    return out


def _decides(rule: Rule) -> str:
    if rule.action == "clear":
        return f"clears {rule.alarm}"
    return f"raises {rule.alarm} ({rule.priority}, chain {rule.chain})"


def rule_block(rule: Rule, pack_rule: Rule) -> list[str]:
    """One rule in force: a head line and one line per aspect, overrides marked."""
    lines = [f"{rule.name}: {_KIND_WORDS.get(rule.kind, str(rule.kind))} rule, {_decides(rule)}"]
    mine, theirs = aspects(rule), aspects(pack_rule)
    for aspect in _ASPECTS:
        if aspect not in mine and aspect not in theirs:
            continue
        absent = "all day" if aspect == "during" else "none"
        text = mine.get(aspect, absent)
        if mine.get(aspect) != theirs.get(aspect):
            text += f" (home override; pack: {theirs.get(aspect, absent)})"
        lines.append(f"  {aspect}: {text}")
    return lines


def supervision_lines(pack: RulePack, directory: Directory, home: Home, catalog: Mapping[str, KindSpec]) -> list[str]:
    """Each device of the home: its kind, its supervision interval, and where that comes from."""
    grace = pack.supervision_grace
    if grace is None:
        return ["supervision: none (the pack has no `supervise` rule)"]
    lines = [f"supervision (the pack's grace: {grace:g}):"]
    overrides = dict(home.supervision)
    for device_id in home.device_ids:
        device = directory.device(home.tenant, device_id)
        if device is None:
            continue
        spec = catalog.get(device.kind)
        if device.kind in overrides:
            interval, source = duration(overrides[device.kind]), "home"
        elif spec is not None and spec.supervision_ms is not None:
            interval, source = duration(spec.supervision_ms), "catalogue"
        elif spec is not None and spec.heartbeat_every_ms is not None:
            ms = min(round(spec.heartbeat_every_ms * grace), MAX_DURATION_MS)
            interval, source = duration(ms), f"grace: heartbeat every {duration(spec.heartbeat_every_ms)} x {grace:g}"
        else:
            why = "the catalogue lacks the kind" if spec is None else "the kind has no heartbeat"
            interval, source = "-", f"not supervised ({why})"
        lines.append(f"  {device_id:<16} {device.kind:<20} {interval:>6}  {source}")
    return lines


def explain_home(
    pack: RulePack, directory: Directory, tenant: str, home_id: str, catalog: Mapping[str, KindSpec] | None = None
) -> list[str]:
    """The lines `rules explain` prints. ValueError for an unknown home or a bad override."""
    home = directory.home(tenant, home_id)
    if home is None:
        known = sorted(h for t, h in directory.homes if t == tenant)
        if not known:
            raise ValueError(f"no tenant {tenant!r} in {directory.source}")
        raise ValueError(f"no home {home_id!r} in tenant {tenant!r} (homes: {', '.join(known[:20])})")
    where = f"{directory.source}: home {tenant}/{home_id}"
    rules = apply_overrides(pack, home.rule_overrides(), where)
    changed = sum(1 for mine, theirs in zip(rules, pack.rules, strict=True) if mine != theirs)
    digest = f", sha256 {pack.sha256[:12]}" if getattr(pack, "sha256", "") else ""
    lines = [
        f"home {tenant}/{home_id} (zone {home.zone or '-'}), time zone {home.timezone}",
        f"rules: {pack.source}{digest}; {len(rules)} rules, {changed} overridden for this home",
        "",
    ]
    for mine, theirs in zip(rules, pack.rules, strict=True):
        lines += rule_block(mine, theirs)
    lines.append("")
    lines += supervision_lines(pack, directory, home, catalog or {})
    return lines
