"""A small, independent, deliberately slow reference for cron matching and the DST rules,
written from DESIGN.md (not from the Rust code), used as a brute-force oracle in tests."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

UTC = UTC
MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
DAYS = "SUN MON TUE WED THU FRI SAT".split()
RANGES = {0: (0, 59), 1: (0, 23), 2: (1, 31), 3: (1, 12), 4: (0, 7)}


def _value(idx: int, text: str) -> int:
    up = text.upper()
    if idx == 3 and up in MONTHS:
        return MONTHS.index(up) + 1
    if idx == 4 and up in DAYS:
        return DAYS.index(up)
    return int(text)


@dataclass
class Reference:
    """Matches wall-clock minutes for plain syntax plus L, LW, d#n and dL."""

    sets: list[set[int]]
    last: bool
    last_weekday: bool
    nth: set[tuple[int, int]]
    last_dow: set[int]
    dom_star: bool
    dow_star: bool

    @classmethod
    def parse(cls, expr: str) -> Reference:
        parts = expr.split()
        sets: list[set[int]] = []
        last = last_weekday = False
        nth: set[tuple[int, int]] = set()
        last_dow: set[int] = set()
        for idx, part in enumerate(parts):
            lo, hi = RANGES[idx]
            values: set[int] = set()
            for term in part.split(","):
                up = term.upper()
                if idx == 2 and up == "L":
                    last = True
                    continue
                if idx == 2 and up == "LW":
                    last_weekday = True
                    continue
                if idx == 4 and "#" in up:
                    d, n = up.split("#")
                    nth.add((_value(4, d) % 7, int(n)))
                    continue
                if idx == 4 and up.endswith("L") and len(up) > 1:
                    last_dow.add(_value(4, up[:-1]) % 7)
                    continue
                base, _, step_text = term.partition("/")
                step = int(step_text) if step_text else 1
                if base in ("*", "?"):
                    a, b = lo, hi
                elif "-" in base:
                    x, y = base.split("-")
                    a, b = _value(idx, x), _value(idx, y)
                else:
                    a = _value(idx, base)
                    b = hi if step_text else a
                values.update(range(a, b + 1, step))
            if idx == 4:
                values = {v % 7 for v in values}
            sets.append(values)
        return cls(sets, last, last_weekday, nth, last_dow, parts[2][0] in "*?", parts[4][0] in "*?")

    def day_matches(self, y: int, m: int, d: int) -> bool:
        length = calendar.monthrange(y, m)[1]
        wd = (calendar.weekday(y, m, d) + 1) % 7  # cron: Sunday 0
        dom = d in self.sets[2] or (self.last and d == length)
        if self.last_weekday:
            lw = length
            while calendar.weekday(y, m, lw) >= 5:
                lw -= 1
            dom = dom or d == lw
        dow = wd in self.sets[4] or (wd, (d - 1) // 7 + 1) in self.nth or (wd in self.last_dow and d + 7 > length)
        if self.dom_star or self.dow_star:
            return dom and dow
        return dom or dow

    def wall_matches(self, w: datetime) -> bool:
        return (
            w.minute in self.sets[0]
            and w.hour in self.sets[1]
            and w.month in self.sets[3]
            and self.day_matches(w.year, w.month, w.day)
        )


def fires(ref: Reference, fixed: bool, zone: tzinfo, i: datetime) -> bool:
    """Whether the schedule fires at the whole-minute UTC instant ``i``, by DESIGN.md's
    definition: a matching wall time that exists fires (a fixed-time schedule only on the
    first pass of a fold); at the end of a spring-forward gap a fixed-time schedule fires
    once if any skipped wall time matches."""
    wall = i.astimezone(zone)
    prev_wall = (i - timedelta(minutes=1)).astimezone(zone)
    jump = wall.utcoffset() - prev_wall.utcoffset()  # type: ignore[operator]
    naive = wall.replace(tzinfo=None)
    if jump > timedelta(0) and fixed:
        gap = naive - jump
        while gap < naive:
            if ref.wall_matches(gap):
                return True
            gap += timedelta(minutes=1)
    if ref.wall_matches(naive):
        first_pass = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
        return not fixed or first_pass == i
    return False


def _prepare(expr: str) -> tuple[Reference, bool]:
    parts = expr.split()
    return Reference.parse(expr), not parts[0].startswith("*") and not parts[1].startswith("*")


def brute_next(expr: str, zone: tzinfo, t: datetime, minutes: int) -> datetime | None:
    """The first firing instant strictly after ``t`` (UTC), stepping real instants one
    minute at a time, within ``minutes``; None if there is none in that span."""
    ref, fixed = _prepare(expr)
    t = t.astimezone(UTC)
    # first whole UTC minute strictly after t (zones used here have whole-minute offsets)
    i = t.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(minutes):
        if fires(ref, fixed, zone, i):
            return i
        i += timedelta(minutes=1)
    return None


def brute_prev(expr: str, zone: tzinfo, t: datetime, minutes: int) -> datetime | None:
    """The last firing instant strictly before ``t`` (UTC), stepping backwards."""
    ref, fixed = _prepare(expr)
    t = t.astimezone(UTC)
    i = t.replace(second=0, microsecond=0)
    if i == t:
        i -= timedelta(minutes=1)
    for _ in range(minutes):
        if fires(ref, fixed, zone, i):
            return i
        i -= timedelta(minutes=1)
    return None
