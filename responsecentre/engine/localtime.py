"""Local time for the rule engine: UTC offset tables per home time zone, and daily windows.

A rule's `during: {from, to, days}` is read on the wall clock of the home's time zone, but
the kernels never touch `zoneinfo` (nor the clock): they get each zone as a table of UTC
offset segments, in three flat arrays shared by all zones (a CSR layout, see
`TimeZones`). The tables are derived from `zoneinfo` for 1970..2100 by sampling the offset
once a day and bisecting each change to the second (tzdata's resolution); outside that
range the nearest segment's offset applies. Building a zone costs some tens of
milliseconds, so the tables are cached per zone name and a rule reload does not pay again.

A moment u is in a window by the "pointwise wall clock" (docs/rules.md): wall(u) = u +
utc_offset(u); d = floor(wall / DAY); tod = wall - d*DAY; weekday(d) = (d + 3) % 7 with
Monday = 0 (1970-01-01 was a Thursday). from < to: in iff from <= tod < to and day d is
allowed. from > to (the window crosses midnight and belongs to the day it starts on): in
iff (tod >= from and d allowed) or (tod < to and d-1 allowed). So on a spring-forward day
a window from 02:30 starts at 03:00, and on a fall-back day the repeated hour counts twice
if its wall time is in the window. from == to never holds (the rule loader refuses it).

`window_due` is the deadline of an inactivity rule: the earliest moment by which `need_ms`
of in-window time has passed since `start`. The plain-Python twins `py_in_window` and
`py_window_due` compute the same from `zoneinfo` directly, written another way (constant-
offset intervals enumerated up front, then window pieces per local day), so that the
reference engine is a real second implementation and tests/test_localtime.py can hold the
two together.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

import numpy as np
from numba import njit

DAY_MS = 86_400_000
ALL_DAYS = 0x7F  # bit 0 = Monday ... bit 6 = Sunday
DEFAULT_TIMEZONE = "Europe/Oslo"

# The start of each zone's first segment: before any real transition. Far below any event
# time, and far enough from int64's ends that adding an offset or a day cannot overflow.
SEGMENT_MIN = -(2**62)

# A deadline that never falls due; must equal kernels.NO_DUE (kernels.py imports this
# module, so it cannot be imported from there).
NO_DUE = np.iinfo(np.int64).max

# The start of the range zone_segment gives for a zone's first segment: all time before.
_NO_START = np.iinfo(np.int64).min

# `window_due` gives up (NO_DUE) if the deadline is further than this from its start: a
# sparse window (one minute a week) with a long need would otherwise walk for decades.
HORIZON_MS = 400 * DAY_MS

# The piece walk of `window_due` takes at most about 3 steps per local day plus 2 per
# offset change, so ~1,500 within the horizon; this cap only guards against a bug.
MAX_STEPS = 10_000

# The range over which the tables follow zoneinfo (UTC seconds); outside it the offset at
# the nearest end applies, in the tables and in the Python twins alike.
_FIRST_S = 0  # 1970-01-01T00:00Z
_LAST_S = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp())  # a whole number of days
_DAY_S = 86_400
# Offset changes looked for between two daily samples (real zones have at most one).
_MAX_CHANGES_PER_DAY = 8


@dataclass(frozen=True, eq=False)
class TimeZones:
    """The UTC offset tables of a set of zones, flat, for the kernels.

    Zone z's segments are trans[ptr[z]:ptr[z+1]] (sorted UTC ms where each segment starts;
    the first is SEGMENT_MIN) with offsets off[ptr[z]:ptr[z+1]] (ms to add to UTC to get
    the wall clock). The arrays are read-only: they may be shared between engines.
    """

    names: tuple[str, ...]
    ptr: np.ndarray
    trans: np.ndarray
    off: np.ndarray

    def index(self, name: str) -> int:
        """The zone index of `name` (ValueError if these tables do not hold it)."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"time zone {name!r} is not among {list(self.names)}") from None

    def args(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ptr, trans, off): the first three arguments of the njit functions below."""
        return self.ptr, self.trans, self.off


# Files in the zone directory that are not a fixed place's rules: Debian links 'localtime'
# to the machine's own zone, so a home set to it would follow wherever the server runs.
_NOT_ZONES = frozenset({"localtime", "posixrules"})


@functools.cache
def _known_zones() -> frozenset[str]:
    """The IANA names on this machine (a directory walk of ~60 ms, so once per process)."""
    return frozenset(available_timezones()) - _NOT_ZONES


def check_timezone(name: str) -> None:
    """Refuse anything but an IANA zone name, with a plain message and a suggestion.

    Only names in `zoneinfo.available_timezones()` pass, less 'localtime': ZoneInfo would
    also load files such as that one, whose meaning depends on the machine.
    """
    if not isinstance(name, str):
        raise ValueError(f"a time zone is a name such as {DEFAULT_TIMEZONE!r}, not {type(name).__name__}")
    known = _known_zones()
    if name in known:
        return
    by_lower = {zone.lower(): zone for zone in known}
    guess = by_lower.get(name.strip().lower())
    if guess is None:
        close = difflib.get_close_matches(name.strip().lower(), list(by_lower), n=1)
        guess = by_lower[close[0]] if close else None
    hint = f"did you mean {guess!r}?" if guess else f"an IANA name such as {DEFAULT_TIMEZONE!r}"
    raise ValueError(f"unknown time zone {name!r} ({hint})")


def _offset_s(zone: ZoneInfo, second: int) -> int:
    """zoneinfo's UTC offset (seconds) at UTC `second`, clamped to the tables' range."""
    second = min(max(second, _FIRST_S), _LAST_S)
    utc_fields = datetime(1970, 1, 1, tzinfo=zone) + timedelta(seconds=second)
    offset = zone.fromutc(utc_fields).utcoffset()
    assert offset is not None
    return offset // timedelta(seconds=1)


def _change_in(zone: ZoneInfo, lo: int, hi: int, before: int) -> int:
    """A second in (lo, hi] where the offset changes away from `before`, by bisection.

    Needs offset(lo) == before != offset(hi); returns c with offset(c-1) == before != offset(c).
    """
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_s(zone, mid) == before:
            lo = mid
        else:
            hi = mid
    return hi


@functools.cache
def _zone_table(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(trans, off) in ms for one zone; cached, so a reload or a second engine is free."""
    zone = ZoneInfo(name)
    first = _offset_s(zone, _FIRST_S)
    starts = [SEGMENT_MIN]
    offsets = [first * 1000]
    prev_s, prev = _FIRST_S, first
    # One sample per UTC midnight: the hot loop of the build (~47,000 turns), so it steps one
    # datetime and compares timedeltas, and converts to seconds only at a change.
    fromutc = zone.fromutc
    utc_fields = datetime(1970, 1, 1, tzinfo=zone)
    step = timedelta(days=1)
    prev_delta = fromutc(utc_fields).utcoffset()
    for second in range(_FIRST_S + _DAY_S, _LAST_S + 1, _DAY_S):
        utc_fields += step
        delta = fromutc(utc_fields).utcoffset()
        if delta == prev_delta:
            prev_s = second
            continue
        assert delta is not None
        now = delta // timedelta(seconds=1)
        lo, before = prev_s, prev
        for _ in range(_MAX_CHANGES_PER_DAY):
            change = _change_in(zone, lo, second, before)
            before = _offset_s(zone, change)
            starts.append(change * 1000)
            offsets.append(before * 1000)
            if before == now:
                break
            lo = change
        prev_s, prev, prev_delta = second, now, delta
    trans = np.array(starts, dtype=np.int64)
    off = np.array(offsets, dtype=np.int64)
    trans.setflags(write=False)
    off.setflags(write=False)
    return trans, off


def build_timezones(names: Iterable[str]) -> TimeZones:
    """The tables of `names` (duplicates dropped, first-seen order); ValueError for an unknown zone."""
    given = list(names)
    for name in given:  # before deduplicating: a non-string (say a YAML list) may be unhashable
        check_timezone(name)
    unique = tuple(dict.fromkeys(given))
    tables = [_zone_table(name) for name in unique]
    ptr = np.zeros(len(unique) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([trans.shape[0] for trans, _ in tables], dtype=np.int64)
    trans = np.concatenate([t for t, _ in tables]) if tables else np.empty(0, np.int64)
    off = np.concatenate([o for _, o in tables]) if tables else np.empty(0, np.int64)
    for array in (ptr, trans, off):
        array.setflags(write=False)
    return TimeZones(names=unique, ptr=ptr, trans=trans, off=off)


# --- the kernels' side -------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _segment(trans, lo, hi, ts):  # type: ignore[no-untyped-def]
    """The last index j in [lo, hi) with trans[j] <= ts (lo if none: the first segment)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if trans[mid] <= ts:
            lo = mid
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def utc_offset(ptr, trans, off, tz, ts):  # type: ignore[no-untyped-def]
    """The UTC offset (ms) of zone `tz` at UTC ms `ts`."""
    return off[_segment(trans, ptr[tz], ptr[tz + 1], ts)]


@njit(cache=True, nogil=True)
def _day_allowed(days, d):  # type: ignore[no-untyped-def]
    """Whether local day number d (days since 1970-01-01, a Thursday) is in the mask."""
    return ((days >> ((d + 3) % 7)) & 1) != 0


@njit(cache=True, nogil=True)
def in_window(ptr, trans, off, tz, ts, from_ms, to_ms, days):  # type: ignore[no-untyped-def]
    """Whether UTC ms `ts` is inside the daily window on zone `tz`'s wall clock."""
    return wall_in_window(ts + off[_segment(trans, ptr[tz], ptr[tz + 1], ts)], from_ms, to_ms, days)


@njit(cache=True, nogil=True)
def wall_in_window(wall, from_ms, to_ms, days):  # type: ignore[no-untyped-def]
    """Whether wall-clock ms `wall` (UTC ms plus the zone's offset then) is inside the
    daily window: in_window once the offset is known."""
    d = wall // DAY_MS
    tod = wall - d * DAY_MS
    if from_ms < to_ms:
        return from_ms <= tod < to_ms and _day_allowed(days, d)
    if from_ms > to_ms:
        return (tod >= from_ms and _day_allowed(days, d)) or (tod < to_ms and _day_allowed(days, d - 1))
    return False


@njit(cache=True, nogil=True)
def zone_segment(ptr, trans, off, tz, ts):  # type: ignore[no-untyped-def]
    """(start, end, offset): zone `tz`'s UTC offset at UTC ms `ts` and the UTC ms range
    [start, end) over which it holds, for a caller that keeps it while its times stay in
    that range."""
    lo = ptr[tz]
    hi = ptr[tz + 1]
    j = _segment(trans, lo, hi, ts)
    start = trans[j] if j > lo else _NO_START  # the first segment also holds before it starts
    end = trans[j + 1] if j + 1 < hi else NO_DUE
    return start, end, off[j]


@njit(cache=True, nogil=True)
def window_due(ptr, trans, off, tz, start, need_ms, from_ms, to_ms, days):  # type: ignore[no-untyped-def]
    """The smallest u > start with `need_ms` of in-window time in [start, u); NO_DUE if none
    within HORIZON_MS (or the window is empty). need_ms <= 0 gives `start`.

    Walks a cursor u forward through the next window piece of the current local day,
    clipped to the current offset segment; each step moves u to the end of a piece, to the
    next local midnight, or to the next offset change, so a step never skips time whose
    offset it has not looked at.
    """
    if need_ms <= 0:
        return start
    if (days & ALL_DAYS) == 0 or from_ms == to_ms or start > NO_DUE - HORIZON_MS - 2 * DAY_MS:
        return NO_DUE
    end = start + HORIZON_MS
    first = ptr[tz]
    last = ptr[tz + 1]
    i = _segment(trans, first, last, start)
    u = start
    remaining = need_ms
    for _ in range(MAX_STEPS):
        if u >= end:
            return NO_DUE
        while i + 1 < last and trans[i + 1] <= u:
            i += 1
        seg_end = end
        if i + 1 < last and trans[i + 1] < end:
            seg_end = trans[i + 1]
        o = off[i]
        d = (u + o) // DAY_MS
        midnight = d * DAY_MS - o  # UTC of local midnight starting day d, by this offset
        tod = u - midnight
        # The window piece [a, b) (ms of day d) that holds tod or comes next; b < 0: none.
        a = -1
        b = -1
        if from_ms < to_ms:
            if tod < to_ms and _day_allowed(days, d):
                a = max(tod, from_ms)
                b = to_ms
        elif tod < to_ms and _day_allowed(days, d - 1):
            a = tod
            b = to_ms
        elif _day_allowed(days, d):
            a = max(tod, from_ms)
            b = DAY_MS
        if b < 0:
            u = min(midnight + DAY_MS, seg_end)
            continue
        lo = midnight + a
        hi = min(midnight + b, seg_end)
        if lo >= hi:  # the piece starts after this offset segment ends
            u = seg_end
            continue
        if hi - lo >= remaining:
            return lo + remaining
        remaining -= hi - lo
        u = hi
    return NO_DUE


# --- the plain-Python twins (from zoneinfo, not from the tables) -------------------------


def py_utc_offset(zone: str, ts: int) -> int:
    """zoneinfo's UTC offset (ms) at UTC ms `ts`, held at 1970/2100 beyond them like the tables."""
    return _offset_s(ZoneInfo(zone), ts // 1000) * 1000


def _allowed(days: int, day: int) -> bool:
    return bool(days >> ((day + 3) % 7) & 1)


def py_in_window(zone: str, ts: int, from_ms: int, to_ms: int, days: int) -> bool:
    """Whether UTC ms `ts` is in the window, straight from the definition (module docstring)."""
    wall = ts + py_utc_offset(zone, ts)
    day, tod = divmod(wall, DAY_MS)
    if from_ms < to_ms:
        return from_ms <= tod < to_ms and _allowed(days, day)
    if from_ms > to_ms:
        return (tod >= from_ms and _allowed(days, day)) or (tod < to_ms and _allowed(days, day - 1))
    return False


def _constant_offsets(zone: ZoneInfo, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(lo, hi, offset ms) intervals covering [start, end) in order, each of one offset.

    Looks a day ahead at a time and bisects (to the second) where the offset differs.
    """
    lo = start
    offset = _offset_s(zone, lo // 1000)
    while lo < end:
        hi = end
        probe = lo
        while probe < end:
            ahead = min(probe + DAY_MS, end)
            if _offset_s(zone, ahead // 1000) != offset:
                hi = _change_in(zone, probe // 1000, ahead // 1000, offset) * 1000
                break
            probe = ahead
        yield lo, hi, offset * 1000
        lo = hi
        offset = _offset_s(zone, lo // 1000)


def _window_pieces(day: int, from_ms: int, to_ms: int, days: int) -> list[tuple[int, int]]:
    """The window's parts on local day `day`, as wall ms since the epoch, in order."""
    midnight = day * DAY_MS
    pieces = []
    if from_ms < to_ms:
        if _allowed(days, day):
            pieces.append((midnight + from_ms, midnight + to_ms))
    elif from_ms > to_ms:
        if _allowed(days, day - 1):
            pieces.append((midnight, midnight + to_ms))
        if _allowed(days, day):
            pieces.append((midnight + from_ms, midnight + DAY_MS))
    return pieces


def py_window_due(zone: str, start: int, need_ms: int, from_ms: int, to_ms: int, days: int) -> int:
    """window_due from zoneinfo: for each constant-offset interval from `start` on, the
    window pieces of every local day it touches, shifted to UTC and clipped to it, in
    order, summed until `need_ms`. Same horizon and edge cases as window_due.
    """
    if need_ms <= 0:
        return start
    if days & ALL_DAYS == 0 or from_ms == to_ms or start > NO_DUE - HORIZON_MS - 2 * DAY_MS:
        return NO_DUE
    held = 0
    for lo, hi, offset in _constant_offsets(ZoneInfo(zone), start, start + HORIZON_MS):
        for day in range((lo + offset) // DAY_MS, (hi - 1 + offset) // DAY_MS + 1):
            for wall_lo, wall_hi in _window_pieces(day, from_ms, to_ms, days):
                piece_lo = max(wall_lo - offset, lo)
                piece_hi = min(wall_hi - offset, hi)
                if piece_lo >= piece_hi:
                    continue
                if held + (piece_hi - piece_lo) >= need_ms:
                    return piece_lo + (need_ms - held)
                held += piece_hi - piece_lo
    return NO_DUE
