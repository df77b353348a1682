"""Rosters: who of a staff role is on duty for a home's zone at an instant, pure.

A tenant's `Roster` holds its staff, weekly shift patterns in local time, date overrides
(a replacement crew for a day, leave, swaps) and the minimum number of people per role.
`who(zone, role, at_ms)` answers the chain's `{role: R}` target; `coverage()` says whether
that is fewer than the minimum, so the desk warns only when the roster is short, not on
every step. The YAML format and the semantics are in docs/rosters.md.

Local time is read pointwise on the wall clock of the tenant's zone, as the rule engine
reads `during` windows (engine/localtime.py): an instant is inside the shift that started
on local day D iff its wall time lies in [D at `from`, D (or D+1) at `to`). So on the
spring-forward night a 23:00-07:00 shift lasts 7 hours, on the fall-back night 9, and both
instants that read 02:30 are on duty. The loader refuses `from == to`, so a shift is never
empty nor a whole day; someone always on duty says `on_duty: true` instead.

No I/O here beyond zoneinfo's tz database and the YAML text it is handed, and no clock:
the caller passes `at_ms` (epoch milliseconds).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, available_timezones

import msgspec
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from responsecentre.escalation.delivery import Channel, Contact, parse_channel
from responsecentre.escalation.people import ALL_ZONES, StaffMember, StaffRole

DEFAULT_TIMEZONE = "Europe/Oslo"
DEFAULT_MINIMUM = 1  # people per role and zone below which coverage is short
DAY_MS = 86_400_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


class Day(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @classmethod
    def of(cls, day: date) -> Day:
        return _DAYS[day.weekday()]


_DAYS = tuple(Day)
ALL_DAYS: tuple[Day, ...] = _DAYS


class Shift(msgspec.Struct, frozen=True, omit_defaults=True):
    """A weekly pattern: on each of `days` (the days it *starts* on) from `starts` to
    `ends` local time, `staff` (in roster order) work `role` for homes in `zone`.
    `ends` before `starts` crosses midnight into the next day."""

    zone: str  # a zone name, or ALL_ZONES
    role: StaffRole
    starts: time
    ends: time
    staff: tuple[str, ...]
    days: tuple[Day, ...] = ALL_DAYS
    name: str = ""  # "day", "night", ...: shown by `roster who`

    def label(self) -> str:
        hours = f"{self.starts:%H:%M}-{self.ends:%H:%M}"
        return f"{self.name} {hours}" if self.name else hours


class DateRange(msgspec.Struct, frozen=True):
    """Local dates, both ends included. For shifts they are the days the shift starts on."""

    first: date
    last: date

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.first <= day <= self.last


class Crew(msgspec.Struct, frozen=True, tag="crew"):
    """On these dates the weekly shifts of `role` in `zone` are replaced by `shifts`
    (holidays, a training day). A crew for ALL_ZONES replaces the role's shifts in every
    zone. No shifts at all: nobody from the pattern works that day."""

    dates: DateRange
    zone: str
    role: StaffRole
    shifts: tuple[Shift, ...] = ()
    note: str = ""


class Leave(msgspec.Struct, frozen=True, tag="leave"):
    """A person off on these dates (sick leave, holiday): out of every shift that starts
    on them, crews included, and out of `on_duty: true` on those local days."""

    staff_id: str
    dates: DateRange
    note: str = ""


class Swap(msgspec.Struct, frozen=True, tag="swap"):
    """`in_` takes `out`'s place on these dates, in `out`'s position in the roster order;
    optionally only for homes in one zone and/or one role."""

    out: str
    in_: str = msgspec.field(name="in")
    dates: DateRange
    zone: str = ""  # "" = every zone
    role: StaffRole | None = None  # None = every role
    note: str = ""


Override = Crew | Leave | Swap


class Minimum(msgspec.Struct, frozen=True):
    """At least `count` people of `role` should be on duty for homes in `zone`
    (ALL_ZONES: for every zone without its own minimum)."""

    role: StaffRole
    count: int
    zone: str = ALL_ZONES


class Source(StrEnum):
    PATTERN = "pattern"  # a weekly shift
    OVERRIDE = "override"  # a crew or a swap for the date
    ALWAYS = "always"  # `on_duty: true` without shifts


class Duty(msgspec.Struct, frozen=True, omit_defaults=True):
    """One person on duty and why: what `roster who` prints."""

    member: StaffMember
    source: Source
    shift: str = ""  # the shift's label; "" for always
    until_ms: int | None = None  # when this stretch of the shift ends; None for always
    note: str = ""  # the override's note ("swap for s-n1", "Christmas Eve")


class Coverage(msgspec.Struct, frozen=True):
    on_duty: int
    minimum: int
    short: bool


class Roster(msgspec.Struct, frozen=True):
    """One tenant's roster. `staff` keeps file order (the order of always-on people)."""

    tenant: str
    staff: dict[str, StaffMember]
    shifts: tuple[Shift, ...] = ()
    overrides: tuple[Override, ...] = ()
    minimum: tuple[Minimum, ...] = ()
    always: tuple[str, ...] = ()  # staff ids on duty at all times (`on_duty: true`, no shifts)
    timezone: str = DEFAULT_TIMEZONE

    def member(self, staff_id: str) -> StaffMember | None:
        return self.staff.get(staff_id)

    def who(self, zone: str, role: StaffRole, at_ms: int) -> tuple[StaffMember, ...]:
        """Who of `role` is on duty for a home in `zone` at `at_ms`, in roster order."""
        return tuple(duty.member for duty in self._duties(zone, role, at_ms, until=False))

    def duty(self, zone: str, role: StaffRole, at_ms: int) -> tuple[Duty, ...]:
        """As `who`, with where each person comes from and until when."""
        return tuple(self._duties(zone, role, at_ms, until=True))

    def minimum_for(self, zone: str, role: StaffRole) -> int:
        fallback = DEFAULT_MINIMUM
        for rule in self.minimum:
            if rule.role == role and rule.zone == zone:
                return rule.count
            if rule.role == role and rule.zone == ALL_ZONES:
                fallback = rule.count
        return fallback

    def coverage(self, zone: str, role: StaffRole, at_ms: int) -> Coverage:
        on_duty = len(self.who(zone, role, at_ms))
        minimum = self.minimum_for(zone, role)
        return Coverage(on_duty=on_duty, minimum=minimum, short=on_duty < minimum)

    def on_duty(self, zone: str, at_ms: int) -> dict[StaffRole, tuple[StaffMember, ...]]:
        """`who` for every role: what the planner's `StepContext.on_duty` takes."""
        return {role: self.who(zone, role, at_ms) for role in StaffRole}

    def minimums(self, zone: str) -> dict[StaffRole, int]:
        """`minimum_for` every role: what the planner's `StepContext.minimums` takes."""
        return {role: self.minimum_for(zone, role) for role in StaffRole}

    def zones(self) -> tuple[str, ...]:
        """Every zone the roster names (for hints: the homes file knows the real list)."""
        named = {z for m in self.staff.values() for z in m.zones}
        named |= {s.zone for s in self.shifts}
        named |= {o.zone for o in self.overrides if isinstance(o, Crew | Swap) and o.zone}
        return tuple(sorted(named - {ALL_ZONES}))

    # -- evaluation ----------------------------------------------------------------------

    def _duties(self, zone: str, role: StaffRole, at_ms: int, until: bool) -> Iterator[Duty]:
        tz = ZoneInfo(self.timezone)
        wall = at_ms + _offset_ms(at_ms, tz)
        today = _day_of(wall)
        seen: set[str] = set()
        # Earlier-started shifts first: yesterday's night shift before this morning's.
        for day in (today - timedelta(days=1), today):
            for shift, source, note in self._shifts_on(day, zone, role):
                start = _wall_ms(day, shift.starts)
                end = _wall_ms(day + timedelta(days=1) if shift.ends <= shift.starts else day, shift.ends)
                if not start <= wall < end:
                    continue
                until_ms = _stretch_end(tz, at_ms, start, end) if until else None
                for staff_id, why in self._crew(shift.staff, day, zone, role):
                    if staff_id not in seen:
                        seen.add(staff_id)
                        swapped = Source.OVERRIDE if why else source
                        yield Duty(self.staff[staff_id], swapped, shift.label(), until_ms, why or note)
        for staff_id in self.always:
            member = self.staff[staff_id]
            if role not in member.roles or not member.covers(zone):
                continue
            for person, why in self._crew((staff_id,), today, zone, role):
                if person not in seen:
                    seen.add(person)
                    yield Duty(self.staff[person], Source.OVERRIDE if why else Source.ALWAYS, "", None, why)

    def _shifts_on(self, day: date, zone: str, role: StaffRole) -> list[tuple[Shift, Source, str]]:
        """The shifts of `role` that start on `day` for homes in `zone`, by start time
        (ties in file order): the weekly pattern unless a crew replaces it that day."""
        crews = [o for o in self.overrides if isinstance(o, Crew) and o.role == role and day in o.dates]
        weekday = Day.of(day)
        found: list[tuple[Shift, Source, str]] = []
        for shift in self.shifts:
            if shift.role != role or weekday not in shift.days or not _serves(shift.zone, zone):
                continue
            if any(crew.zone in (ALL_ZONES, shift.zone) for crew in crews):
                continue
            found.append((shift, Source.PATTERN, ""))
        for crew in crews:
            if _serves(crew.zone, zone):
                found.extend((shift, Source.OVERRIDE, crew.note or "crew") for shift in crew.shifts)
        found.sort(key=lambda item: item[0].starts)
        return found

    def _crew(self, staff: tuple[str, ...], day: date, zone: str, role: StaffRole) -> list[tuple[str, str]]:
        """A shift's people on `day` after swaps and leave: (staff id, why if swapped in).
        Swaps apply all at once to the planned list (the first swap per person, in file
        order), so an exchange written as two swaps (A for B, B for A) works both ways."""
        swaps: dict[str, Swap] = {}
        away: set[str] = set()
        for override in self.overrides:
            if isinstance(override, Leave) and day in override.dates:
                away.add(override.staff_id)
            elif isinstance(override, Swap) and day in override.dates and _limits(override, zone, role):
                swaps.setdefault(override.out, override)
        people: list[tuple[str, str]] = []
        for staff_id in staff:
            swap = swaps.get(staff_id)
            person, why = (swap.in_, swap.note or f"swap for {staff_id}") if swap else (staff_id, "")
            if person not in away and all(person != p for p, _ in people):
                people.append((person, why))
        return people


def _limits(swap: Swap, zone: str, role: StaffRole) -> bool:
    return swap.zone in ("", zone) and swap.role in (None, role)


def _serves(shift_zone: str, zone: str) -> bool:
    return shift_zone in (ALL_ZONES, zone)


# -- local time ----------------------------------------------------------------------------


def _offset_ms(at_ms: int, tz: ZoneInfo) -> int:
    local = (_EPOCH + timedelta(milliseconds=at_ms)).astimezone(tz)
    offset = local.utcoffset()
    assert offset is not None
    return offset // timedelta(milliseconds=1)


def _day_of(wall_ms: int) -> date:
    return date.fromordinal(_EPOCH_ORDINAL + wall_ms // DAY_MS)


def _wall_ms(day: date, at: time) -> int:
    """The wall clock reading `day` `at`, as milliseconds since the local epoch."""
    return (day.toordinal() - _EPOCH_ORDINAL) * DAY_MS + ((at.hour * 60 + at.minute) * 60 + at.second) * 1000


def _next_change(tz: ZoneInfo, after_ms: int, upto_ms: int) -> int | None:
    """The first instant in (after_ms, upto_ms] where the UTC offset differs from the one
    at `after_ms` (zones change at most a few times a year; sampled every 3 h, then bisected)."""
    offset = _offset_ms(after_ms, tz)
    lo = after_ms
    while lo < upto_ms:
        hi = min(lo + 3 * 3_600_000, upto_ms)
        if _offset_ms(hi, tz) != offset:
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if _offset_ms(mid, tz) != offset else (mid, hi)
            return hi
        lo = hi
    return None


def _stretch_end(tz: ZoneInfo, at_ms: int, start_wall: int, end_wall: int) -> int:
    """The first instant after `at_ms` whose wall time leaves [start_wall, end_wall).
    Between offset changes the wall clock runs with UTC, so the end is where it reaches
    `end_wall`, unless an offset change first jumps it out (or back in)."""
    u = at_ms
    for _ in range(16):  # a shift spans at most a day: a real zone changes offset once in it
        reach = end_wall - _offset_ms(u, tz)
        change = _next_change(tz, u, reach)
        if change is None:
            return reach
        wall = change + _offset_ms(change, tz)
        if not start_wall <= wall < end_wall:
            return change
        u = change
    return u


# -- loading -------------------------------------------------------------------------------


class RosterError(ValueError):
    """A roster file that cannot be loaded; the message starts with `file:line:`."""

    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}:{line}: {message}")
        self.source = source
        self.line = line
        self.message = message


_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # staff ids go into MQTT topics: no / + #
_TIME = re.compile(r"(\d{1,2}):(\d{2})")
_PHONE = re.compile(r"\+[1-9]\d{6,14}")  # E.164
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_TENANT_KEYS = ("timezone", "minimum", "staff", "shifts", "overrides")
_STAFF_KEYS = ("id", "name", "role", "roles", "zone", "zones", "contacts", "on_duty")
_SHIFT_KEYS = ("name", "zone", "role", "days", "from", "to", "staff")
_OVERRIDE_KEYS = {
    "crew": ("type", "date", "dates", "zone", "role", "shifts", "note"),
    "leave": ("type", "staff", "date", "dates", "note"),
    "swap": ("type", "out", "in", "date", "dates", "zone", "role", "note"),
}


def parse_roster(doc: str, source: str = "escalation/staff.yaml") -> dict[str, Roster]:
    """Rosters by tenant from the YAML text of a staff file (docs/rosters.md).

    Reads the node tree of `yaml.compose` so that every mistake names `source:line`, and
    takes scalars as written (YAML 1.1 would read `off` as false and 23:00 as 1380)."""
    return _Reader(source).document(doc)


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, node: Node, message: str) -> RosterError:
        return RosterError(self.source, node.start_mark.line + 1, message)

    # -- node helpers --------------------------------------------------------------------

    def text(self, node: Node, what: str) -> str:
        if not isinstance(node, ScalarNode):
            raise self.fail(node, f"{what} must be a single value, not a {_shape(node)}")
        if node.tag == _NULL:
            raise self.fail(node, f"{what} is empty")
        return str(node.value).strip()

    def mapping(
        self, node: Node, what: str, allowed: Sequence[str], required: Sequence[str] = ()
    ) -> dict[str, tuple[Node, Node]]:
        if not isinstance(node, MappingNode):
            raise self.fail(node, f"{what} must be a mapping (key: value), not a {_shape(node)}")
        out: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = self.text(key_node, f"a key in {what}")
            if key not in allowed:
                message = f"unknown key {key!r} in {what}{_suggest(key, allowed)} (allowed: {', '.join(allowed)})"
                raise self.fail(key_node, message)
            if key in out:
                first = out[key][0].start_mark.line + 1
                raise self.fail(key_node, f"duplicate key {key!r} in {what} (first at line {first})")
            out[key] = (key_node, value_node)
        for key in required:
            if key not in out:
                raise self.fail(node, f"{what} is missing the key {key!r}")
        return out

    def items(self, node: Node, what: str) -> list[Node]:
        """A list; a bare key (`overrides:` with nothing under it) is an empty one."""
        if isinstance(node, ScalarNode) and node.tag == _NULL:
            return []
        if not isinstance(node, SequenceNode):
            raise self.fail(node, f"{what} must be a list, not a {_shape(node)}")
        return list(node.value)

    def one_or_more(self, node: Node, what: str) -> list[Node]:
        """`role: nurse` or `roles: [nurse, team_lead]`: a single value or a list of them."""
        found = node.value if isinstance(node, SequenceNode) else [node]
        if not found:
            raise self.fail(node, f"{what} must name at least one")
        return list(found)

    def identifier(self, node: Node, what: str) -> str:
        value = self.text(node, what)
        if not _ID.fullmatch(value):
            raise self.fail(node, f"{what} {value!r} may only contain letters, digits, '_', '.' and '-'")
        return value

    def role(self, node: Node) -> StaffRole:
        value = self.text(node, "a role")
        try:
            return StaffRole(value)
        except ValueError:
            roles = [r.value for r in StaffRole]
            raise self.fail(
                node, f"unknown role {value!r}{_suggest(value, roles)} (roles: {', '.join(roles)})"
            ) from None

    def boolean(self, node: Node, what: str) -> bool:
        if not isinstance(node, ScalarNode) or node.tag != _BOOL:
            raise self.fail(node, f"{what} must be true or false")
        return str(node.value).lower() in ("true", "yes", "on")

    def count(self, node: Node, what: str) -> int:
        if not isinstance(node, ScalarNode) or node.tag != _INT or not str(node.value).isdigit():
            raise self.fail(node, f"{what} must be a whole number 0 or more")
        return int(node.value)

    def time_of_day(self, node: Node, word: str) -> time:
        value = self.text(node, word)
        match = _TIME.fullmatch(value)
        if match is not None and int(match.group(1)) <= 23 and int(match.group(2)) <= 59:
            return time(int(match.group(1)), int(match.group(2)))
        hint = " (midnight is 00:00)" if value.startswith("24:") else ""
        raise self.fail(node, f'{word} {value!r} is not a time of day from 00:00 to 23:59 written as "HH:MM"{hint}')

    def date(self, node: Node, what: str) -> date:
        value = self.text(node, what)
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                return date.fromisoformat(value)
        except ValueError:
            pass
        raise self.fail(node, f"{what} {value!r} is not a date written as YYYY-MM-DD")

    def dates(self, node: Node, keys: dict[str, tuple[Node, Node]], what: str) -> DateRange:
        if ("date" in keys) == ("dates" in keys):
            message = f"{what} needs either 'date: YYYY-MM-DD' or 'dates: {{from: YYYY-MM-DD, to: YYYY-MM-DD}}'"
            raise self.fail(node, message)
        if "date" in keys:
            day = self.date(keys["date"][1], "date")
            return DateRange(day, day)
        span = self.mapping(keys["dates"][1], "dates", ("from", "to"), ("from", "to"))
        first = self.date(span["from"][1], "from")
        last = self.date(span["to"][1], "to")
        if last < first:
            raise self.fail(span["to"][1], f"dates end ({last}) before they start ({first})")
        return DateRange(first, last)

    def days(self, node: Node) -> tuple[Day, ...]:
        found: list[Day] = []
        for item in self.one_or_more(node, "days"):
            word = self.text(item, "a day").lower()
            if word not in {d.value for d in Day}:
                names = [d.value for d in Day]
                raise self.fail(item, f"unknown day {word!r}{_suggest(word, names)} (days are {', '.join(names)})")
            if Day(word) in found:
                raise self.fail(item, f"day {word!r} is listed twice")
            found.append(Day(word))
        return tuple(sorted(found, key=_DAYS.index))

    # -- the format ----------------------------------------------------------------------

    def document(self, text: str) -> dict[str, Roster]:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 1
            raise RosterError(self.source, line, f"invalid YAML: {exc.problem or exc.context}") from None
        except yaml.YAMLError as exc:
            raise RosterError(self.source, 1, f"invalid YAML: {exc}") from None
        if root is None:
            return {}
        top = self.mapping(root, "the staff file", ("tenants",))
        if "tenants" not in top:
            return {}
        tenants_node = top["tenants"][1]
        if isinstance(tenants_node, ScalarNode) and tenants_node.tag == _NULL:
            return {}
        if not isinstance(tenants_node, MappingNode):
            raise self.fail(tenants_node, f"tenants must be a mapping (tenant: roster), not a {_shape(tenants_node)}")
        rosters: dict[str, Roster] = {}
        for key_node, value_node in tenants_node.value:
            tenant = self.identifier(key_node, "tenant")
            if tenant in rosters:
                raise self.fail(key_node, f"tenant {tenant!r} appears twice")
            rosters[tenant] = self.tenant(tenant, value_node)
        return rosters

    def tenant(self, tenant: str, node: Node) -> Roster:
        keys = self.mapping(node, f"tenant {tenant!r}", _TENANT_KEYS)
        timezone = self.timezone(keys["timezone"][1]) if "timezone" in keys else DEFAULT_TIMEZONE
        staff: dict[str, StaffMember] = {}
        on_duty: dict[str, tuple[bool, Node] | None] = {}
        for item in self.items(keys["staff"][1], "staff") if "staff" in keys else []:
            member, flag = self.staff(tenant, item)
            if member.staff_id in staff:
                raise self.fail(item, f"staff id {member.staff_id!r} appears twice")
            staff[member.staff_id] = member
            on_duty[member.staff_id] = flag
        shifts = tuple(
            self.shift(item, staff, None)
            for item in (self.items(keys["shifts"][1], "shifts") if "shifts" in keys else [])
        )
        on_shift: set[str] = {staff_id for shift in shifts for staff_id in shift.staff}
        always: list[str] = []
        for staff_id, flag in on_duty.items():
            if flag is None:  # not said: the old format (no shifts anywhere) means always
                if not shifts:
                    always.append(staff_id)
            elif flag[0]:
                if staff_id in on_shift:
                    message = (
                        f"{staff_id} has on_duty: true (always on duty) and is also named in shifts; "
                        "leave out on_duty for someone on shifts"
                    )
                    raise self.fail(flag[1], message)
                always.append(staff_id)
        overrides = tuple(
            self.override(item, staff)
            for item in (self.items(keys["overrides"][1], "overrides") if "overrides" in keys else [])
        )
        minimum = self.minimum(keys["minimum"][1]) if "minimum" in keys else ()
        return Roster(tenant, staff, shifts, overrides, minimum, tuple(always), timezone)

    def timezone(self, node: Node) -> str:
        name = self.text(node, "timezone")
        try:
            ZoneInfo(name)
        except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
            hint = _suggest(name, sorted(available_timezones()))
            raise self.fail(node, f"unknown time zone {name!r}{hint} (use an IANA name like Europe/Oslo)") from None
        return name

    def staff(self, tenant: str, node: Node) -> tuple[StaffMember, tuple[bool, Node] | None]:
        keys = self.mapping(node, "a staff entry", _STAFF_KEYS, ("id",))
        staff_id = self.identifier(keys["id"][1], "staff id")
        name = self.text(keys["name"][1], "name") if "name" in keys else staff_id
        if ("role" in keys) == ("roles" in keys):
            raise self.fail(node, f"staff {staff_id}: give either 'role: R' or 'roles: [R, ...]'")
        roles_node = keys["role" if "role" in keys else "roles"][1]
        roles: list[StaffRole] = []
        for item in self.one_or_more(roles_node, "roles"):
            role = self.role(item)
            if role in roles:
                raise self.fail(item, f"role {role.value!r} is listed twice")
            roles.append(role)
        if "zone" in keys and "zones" in keys:
            raise self.fail(node, f"staff {staff_id}: give either 'zone: Z' or 'zones: [Z, ...]', not both")
        zones: list[str] = []
        zones_node = keys.get("zone", keys.get("zones", (None, None)))[1]
        for item in self.one_or_more(zones_node, "zones") if zones_node is not None else []:
            zone = self.identifier(item, "zone")
            if zone in zones:
                raise self.fail(item, f"zone {zone!r} is listed twice")
            zones.append(zone)
        if ALL_ZONES in zones and len(zones) > 1:
            raise self.fail(zones_node, f"zone {ALL_ZONES!r} already covers every zone; list it alone")
        if "contacts" in keys:
            contacts = tuple(self.contact(item) for item in self.items(keys["contacts"][1], "contacts"))
            if not contacts:
                raise self.fail(
                    keys["contacts"][1], f"staff {staff_id} has no contacts (leave out 'contacts' for the handset)"
                )
        else:
            contacts = (Contact(Channel.HANDSET, staff_id),)
        flag = (self.boolean(keys["on_duty"][1], "on_duty"), keys["on_duty"][0]) if "on_duty" in keys else None
        member = StaffMember(tenant, staff_id, name, tuple(roles), tuple(zones or [ALL_ZONES]), contacts)
        return member, flag

    def contact(self, node: Node) -> Contact:
        if not isinstance(node, MappingNode) or len(node.value) != 1:
            raise self.fail(node, "a contact is one 'channel: address', e.g. {sms: \"+4790000001\"}")
        ((key_node, value_node),) = node.value
        word = self.text(key_node, "a channel")
        personal = [c.value for c in Channel if c is not Channel.CONSOLE]
        try:
            channel = parse_channel(word)
        except ValueError:
            raise self.fail(
                key_node, f"unknown channel {word!r}{_suggest(word, personal)} (channels: {', '.join(personal)})"
            ) from None
        address = self.text(value_node, f"the {word} address")
        problem = {
            Channel.CONSOLE: "the console is not a person's contact",
            Channel.HANDSET: None if _ID.fullmatch(address) else "a handset address is a staff id",
            Channel.SMS: None if _PHONE.fullmatch(address) else "an SMS number is written +<country><number>",
            Channel.EMAIL: None if _EMAIL.fullmatch(address) else "not an e-mail address",
            Channel.WEBHOOK: None if address.startswith(("https://", "http://")) else "a webhook is an http(s) URL",
        }[channel]
        if problem is not None:
            raise self.fail(value_node, f"{problem}: {address!r}" if channel is not Channel.CONSOLE else problem)
        return Contact(channel, address)

    def people(self, node: Node, staff: dict[str, StaffMember], zone: str, role: StaffRole) -> tuple[str, ...]:
        """A shift's staff list: known ids, each with the role and covering the zone."""
        ids: list[str] = []
        for item in self.one_or_more(node, "staff"):
            staff_id = self.text(item, "a staff id")
            member = staff.get(staff_id)
            if member is None:
                raise self.fail(item, f"unknown staff id {staff_id!r}{_suggest(staff_id, list(staff))}")
            if role not in member.roles:
                raise self.fail(item, f"{staff_id} is not a {role.value} (roles: {', '.join(member.roles)})")
            if not member.covers(zone):
                where = "every zone" if zone == ALL_ZONES else f"zone {zone!r}"
                raise self.fail(item, f"{staff_id} does not cover {where} (zones: {', '.join(member.zones)})")
            if staff_id in ids:
                raise self.fail(item, f"{staff_id} is listed twice in this shift")
            ids.append(staff_id)
        return tuple(ids)

    def shift(self, node: Node, staff: dict[str, StaffMember], crew: tuple[str, StaffRole] | None) -> Shift:
        """A weekly shift, or (with `crew` = its zone and role) one of a crew's shifts."""
        if crew is None:
            keys = self.mapping(node, "a shift", _SHIFT_KEYS, ("role", "from", "to", "staff"))
            zone = self.identifier(keys["zone"][1], "zone") if "zone" in keys else ALL_ZONES
            role = self.role(keys["role"][1])
            days = self.days(keys["days"][1]) if "days" in keys else ALL_DAYS
        else:
            keys = self.mapping(node, "a crew's shift", ("name", "from", "to", "staff"), ("from", "to", "staff"))
            (zone, role), days = crew, ALL_DAYS
        starts = self.time_of_day(keys["from"][1], "from")
        ends = self.time_of_day(keys["to"][1], "to")
        if starts == ends:
            message = f"a shift from {starts:%H:%M} to {ends:%H:%M} is empty; for always on duty use on_duty: true"
            raise self.fail(keys["to"][1], message)
        name = self.text(keys["name"][1], "name") if "name" in keys else ""
        people = self.people(keys["staff"][1], staff, zone, role)
        return Shift(zone, role, starts, ends, people, days, name)

    def known(self, node: Node, staff: dict[str, StaffMember], what: str) -> StaffMember:
        staff_id = self.text(node, what)
        member = staff.get(staff_id)
        if member is None:
            raise self.fail(node, f"unknown staff id {staff_id!r}{_suggest(staff_id, list(staff))}")
        return member

    def override(self, node: Node, staff: dict[str, StaffMember]) -> Override:
        if not isinstance(node, MappingNode):
            raise self.fail(node, f"an override must be a mapping (key: value), not a {_shape(node)}")
        kinds = tuple(_OVERRIDE_KEYS)
        type_node = next((v for k, v in node.value if isinstance(k, ScalarNode) and k.value == "type"), None)
        if type_node is None:
            raise self.fail(node, f"an override needs 'type:' ({', '.join(kinds)})")
        kind = self.text(type_node, "type")
        if kind not in _OVERRIDE_KEYS:
            raise self.fail(
                type_node, f"unknown override type {kind!r}{_suggest(kind, kinds)} (types: {', '.join(kinds)})"
            )
        what = f"a {kind} override"
        keys = self.mapping(node, what, _OVERRIDE_KEYS[kind])
        note = self.text(keys["note"][1], "note") if "note" in keys else ""
        dates = self.dates(node, keys, what)
        if kind == "leave":
            if "staff" not in keys:
                raise self.fail(node, f"{what} is missing the key 'staff'")
            return Leave(self.known(keys["staff"][1], staff, "staff").staff_id, dates, note)
        zone = self.identifier(keys["zone"][1], "zone") if "zone" in keys else ""
        role = self.role(keys["role"][1]) if "role" in keys else None
        if kind == "crew":
            for key in ("zone", "role", "shifts"):
                if key not in keys:
                    raise self.fail(node, f"{what} is missing the key {key!r}")
            assert role is not None
            shifts = tuple(self.shift(item, staff, (zone, role)) for item in self.items(keys["shifts"][1], "shifts"))
            return Crew(dates, zone, role, shifts, note)
        for key in ("out", "in"):
            if key not in keys:
                raise self.fail(node, f"{what} is missing the key {key!r}")
        out = self.known(keys["out"][1], staff, "out")
        into = self.known(keys["in"][1], staff, "in")
        if out.staff_id == into.staff_id:
            raise self.fail(keys["in"][1], f"a swap of {out.staff_id} with themself changes nothing")
        needed = (role,) if role is not None else out.roles
        lacking = [r.value for r in needed if r not in into.roles]
        if lacking:
            shared = role is None and any(r in into.roles for r in out.roles)
            hint = "; limit the swap to a shared role with 'role:'" if shared else ""
            raise self.fail(keys["in"][1], f"{into.staff_id} is not a {', '.join(lacking)} like {out.staff_id}{hint}")
        return Swap(out.staff_id, into.staff_id, dates, zone, role, note)

    def minimum(self, node: Node) -> tuple[Minimum, ...]:
        """`minimum: {nurse: 1}` or `{nurse: {north: 2, all: 1}}`."""
        if not isinstance(node, MappingNode):
            raise self.fail(node, f"minimum must be a mapping (role: count), not a {_shape(node)}")
        found: list[Minimum] = []
        roles: set[StaffRole] = set()
        for key_node, value_node in node.value:
            role = self.role(key_node)
            if role in roles:
                raise self.fail(key_node, f"role {role.value!r} appears twice in minimum")
            roles.add(role)
            if isinstance(value_node, MappingNode):
                zones: set[str] = set()
                for zone_node, count_node in value_node.value:
                    zone = self.identifier(zone_node, "zone")
                    if zone in zones:
                        raise self.fail(zone_node, f"zone {zone!r} appears twice in minimum {role.value}")
                    zones.add(zone)
                    found.append(Minimum(role, self.count(count_node, f"minimum {role.value} {zone}"), zone))
            else:
                found.append(Minimum(role, self.count(value_node, f"minimum {role.value}")))
        return tuple(found)


def _shape(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "mapping"
    if isinstance(node, SequenceNode):
        return "list"
    return "single value"


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
