"""`responsecentre roster who`: who is on duty for a zone and staff role, from the staff file.

Exit status, so that a script or a monitoring check can use it:
  0  at least the configured minimum of people are on duty (default minimum 1);
  1  fewer than the minimum (nobody at all included): the chain would page too few;
  2  bad input: arguments, a time that does not exist, an unknown tenant, a file that
     cannot be read or that the roster loader refuses (reported as file:line).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from responsecentre.escalation.people import StaffRole
from responsecentre.escalation.roster import Duty, Roster, RosterError, parse_roster

OK, SHORT, BAD_INPUT = 0, 1, 2

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class BadTime(ValueError):
    pass


def add_roster_parser(subparsers: Any) -> None:
    """Add `roster who` to the CLI's subparsers (`responsecentre roster who ...`)."""
    roster = subparsers.add_parser("roster", help="staff rosters: who is on duty")
    rsub = roster.add_subparsers(dest="roster_command", required=True)
    who = rsub.add_parser(
        "who",
        help="who of a staff role is on duty for a zone, in roster order",
        description="Who of a staff role is on duty for homes in a zone, in the order they are paged. "
        "Exit status 0: covered; 1: fewer than the roster's minimum; 2: bad input.",
    )
    who.add_argument("--zone", required=True, help="the home's zone, e.g. north")
    who.add_argument("--role", required=True, choices=[r.value for r in StaffRole], help="staff role")
    who.add_argument("--tenant", help="the municipality (default: the file's only tenant)")
    who.add_argument(
        "--at",
        help="ISO 8601 time, e.g. 2027-03-28T02:30 (local time of the tenant) or 2027-03-28T00:30Z (default: now)",
    )
    who.add_argument("--file", type=Path, help="staff file (default escalation/staff.yaml, env RC_STAFF_PATH)")
    who.set_defaults(fn=cmd_roster_who)


def cmd_roster_who(args: argparse.Namespace) -> int:
    path = args.file
    if path is None:
        from responsecentre.config import Settings

        path = Settings.from_env().staff_path
    try:
        text = Path(path).read_text(encoding="utf-8")
        rosters = parse_roster(text, source=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        return _bad(f"cannot read {path}: {exc}")
    except RosterError as exc:
        return _bad(str(exc))
    roster = _tenant(rosters, args.tenant, str(path))
    if roster is None:
        return BAD_INPUT
    tz = ZoneInfo(roster.timezone)
    try:
        at_ms, note = parse_at(args.at, tz) if args.at else (_now_ms(), None)
    except BadTime as exc:
        return _bad(str(exc))
    if note:
        print(f"note: {note}", file=sys.stderr)
    role = StaffRole(args.role)
    duties = roster.duty(args.zone, role, at_ms)
    coverage = roster.coverage(args.zone, role, at_ms)
    print(f"{roster.tenant}, zone {args.zone}, {role.value}, at {_local(at_ms, tz)} ({roster.timezone})")
    for line in _table(duties, tz):
        print(f"  {line}")
    if not duties:
        print("  nobody on duty")
        known = roster.zones()
        if args.zone not in known:
            hint = f"; zones named there: {', '.join(known)}" if known else ""
            print(f"note: zone {args.zone!r} is not named in {path}{hint}", file=sys.stderr)
    verdict = "SHORT" if coverage.short else "OK"
    print(f"coverage: {coverage.on_duty} on duty, minimum {coverage.minimum}: {verdict}")
    return SHORT if coverage.short else OK


def parse_at(text: str, tz: ZoneInfo) -> tuple[int, str | None]:
    """An ISO 8601 time -> (epoch ms, a note to show). Without an offset it is the
    tenant's wall clock: a time the clocks skip is refused; a time they show twice
    (the fall-back hour) is the first of the two, with a note saying so."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadTime(f"--at {text!r} is not an ISO 8601 time like 2027-03-28T02:30 or 2027-03-28T00:30Z") from None
    if moment.tzinfo is not None:
        return (moment - _EPOCH) // timedelta(milliseconds=1), None
    first = moment.replace(tzinfo=tz, fold=0)
    second = moment.replace(tzinfo=tz, fold=1)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != moment:
        raise BadTime(
            f"{moment:%Y-%m-%d %H:%M} does not exist in {tz.key} (the clocks skip it); "
            "give an offset, e.g. +01:00, or another time"
        )
    note = None
    if first.utcoffset() != second.utcoffset():
        note = (
            f"{moment:%Y-%m-%d %H:%M} happens twice in {tz.key}; using the first ({_offset(first)}), "
            f"give the offset {_offset(second)} for the second"
        )
    return (first - _EPOCH) // timedelta(milliseconds=1), note


def main(argv: list[str] | None = None) -> int:
    """`roster ...` on its own, as `responsecentre roster ...` runs it (tests call this)."""
    parser = argparse.ArgumentParser(prog="responsecentre")
    add_roster_parser(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's own usage errors exit 2
        return int(exc.code or 0)
    return int(args.fn(args))


def _tenant(rosters: dict[str, Roster], tenant: str | None, path: str) -> Roster | None:
    if tenant is None:
        if len(rosters) == 1:
            return next(iter(rosters.values()))
        listed = ", ".join(sorted(rosters)) or "none"
        _bad(f"{path} has {len(rosters)} tenants; choose one with --tenant ({listed})")
        return None
    if tenant not in rosters:
        listed = ", ".join(sorted(rosters)) or "none"
        _bad(f"no tenant {tenant!r} in {path} (tenants: {listed})")
        return None
    return rosters[tenant]


def _table(duties: tuple[Duty, ...], tz: ZoneInfo) -> list[str]:
    rows = []
    for duty in duties:
        member = duty.member
        until = "always" if duty.until_ms is None else f"until {_local(duty.until_ms, tz)}"
        source = duty.source.value
        detail = "; ".join(part for part in (duty.shift, duty.note) if part)
        rows.append(
            (member.staff_id, member.name, ",".join(member.roles), until, f"{source}: {detail}" if detail else source)
        )
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(5)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def _local(ms: int, tz: ZoneInfo) -> str:
    return (_EPOCH + timedelta(milliseconds=ms)).astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


def _offset(moment: datetime) -> str:
    return moment.strftime("%z")[:3] + ":" + moment.strftime("%z")[3:]


def _now_ms() -> int:
    from responsecentre.clock import system_clock

    return system_clock()


def _bad(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
