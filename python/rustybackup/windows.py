"""Backup windows: weekly intervals of wall-clock time in a zone.

A window is a set of weekly rules ``(days, start, end)``. A rule's interval opens at
``start`` on each listed day and closes at ``end`` the same day, or the next day when
``end <= start`` (the interval belongs to the day it starts, as in RMAN's ``BACKUP
DURATION`` windows and most schedulers' maintenance windows). ``start == end`` means 24 hours.

DST: boundaries are wall times. A boundary that falls in a spring-forward gap resolves to
the first instant after the gap (as ISC cron does for fixed-time jobs); a boundary in a
repeated fall-back hour resolves to its first occurrence when it opens the window and to
its second when it closes it, so a window is never shortened by a DST change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError
from .holidays_cal import HolidayCalendar

__all__ = ["BackupWindow", "WeeklyRule", "business_hours", "off_hours", "parse_days", "load_zone"]

_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# The search horizon: every rule repeats weekly, so two weeks always find an opening
# unless every interval in reach collapsed into a DST gap (then none exists at all).
_HORIZON_DAYS = 15
_HOLIDAY_HORIZON_DAYS = 400


def load_zone(tz: str | tzinfo, what: str = "tz") -> tzinfo:
    """A tzinfo for a zone name (or the tzinfo itself), or a ConfigError naming the field."""
    if isinstance(tz, tzinfo):
        return tz
    if not isinstance(tz, str) or not tz:
        raise ConfigError(f"{what}: expected an IANA zone name such as 'Europe/Paris', got {tz!r}")
    if tz.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{what}: unknown time zone {tz!r}") from None


def parse_days(spec: str | Iterable[int | str]) -> tuple[int, ...]:
    """Weekdays (0=Mon..6=Sun) from ``"mon-fri"``, ``"sat,sun"``, ``[0, 1]`` or names."""
    items: list[int | str]
    if isinstance(spec, str):
        items = []
        for part in (p.strip().lower() for p in spec.split(",")):
            if "-" in part:
                lo, _, hi = part.partition("-")
                a, b = _day_index(lo), _day_index(hi)
                if b < a:
                    raise ConfigError(f"days: range {part!r} runs backwards (write it as two ranges)")
                items.extend(range(a, b + 1))
            else:
                items.append(part)
    else:
        items = list(spec)
    days = sorted({_day_index(d) for d in items})
    if not days:
        raise ConfigError("days: a window needs at least one weekday")
    return tuple(days)


def _day_index(day: int | str) -> int:
    if isinstance(day, bool):
        raise ConfigError(f"days: {day!r} is not a weekday")
    if isinstance(day, int):
        if 0 <= day <= 6:
            return day
        raise ConfigError(f"days: weekday {day} is out of range 0 (Mon) to 6 (Sun)")
    if isinstance(day, str):
        name = day.strip().lower()[:3]
        if name in _DAY_NAMES and day.strip().lower() in (name, _full_name(name)):
            return _DAY_NAMES.index(name)
        if name.isdigit():
            return _day_index(int(name))
    raise ConfigError(f"days: {day!r} is not a weekday (use 0-6 or mon..sun)")


def _full_name(abbr: str) -> str:
    return {
        "mon": "monday",
        "tue": "tuesday",
        "wed": "wednesday",
        "thu": "thursday",
        "fri": "friday",
        "sat": "saturday",
        "sun": "sunday",
    }[abbr]


@dataclass(frozen=True)
class WeeklyRule:
    """One weekly interval: opens at ``start`` on each of ``days``, closes at ``end``."""

    days: tuple[int, ...]
    start: time
    end: time

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start


def _check_time(value: object, what: str) -> time:
    if not isinstance(value, time):
        raise ConfigError(f"{what}: expected a datetime.time, got {type(value).__name__} {value!r}")
    if value.tzinfo is not None:
        raise ConfigError(f"{what}: must be a wall time without tzinfo (the window's tz applies)")
    return value


@dataclass(frozen=True)
class BackupWindow:
    """When backups may run: ``days`` (0=Mon..6=Sun) from ``start`` to ``end`` in ``tz``."""

    id: str
    name: str
    start: time
    end: time
    days: tuple[int, ...]
    tz: str = "UTC"
    #: More weekly intervals of the same window (the presets need them).
    also: tuple[WeeklyRule, ...] = ()
    #: Dates on which no interval opens (an interval belongs to the day it starts).
    holidays: HolidayCalendar | None = None
    _zone: tzinfo = field(init=False, repr=False, compare=False)

    def __init__(
        self,
        id: str,
        name: str,
        start: time,
        end: time,
        days: Iterable[int | str] | str,
        tz: str = "UTC",
        also: Iterable[WeeklyRule] = (),
        holidays: HolidayCalendar | None = None,
    ) -> None:
        if not isinstance(id, str) or not id.strip():
            raise ConfigError(f"window id: must be a non-empty string, got {id!r}")
        where = f"window {id!r}"
        if not isinstance(name, str):
            raise ConfigError(f"{where} field 'name': expected a string, got {name!r}")
        try:
            parsed_days = parse_days(days)
            zone = load_zone(tz)
        except ConfigError as exc:
            raise ConfigError(f"{where} field {exc}") from None
        tz_name = tz if isinstance(tz, str) else str(tz)
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "start", _check_time(start, f"{where} field 'start'"))
        object.__setattr__(self, "end", _check_time(end, f"{where} field 'end'"))
        object.__setattr__(self, "days", parsed_days)
        object.__setattr__(self, "tz", tz_name)
        extra = tuple(also)
        for rule in extra:
            if not isinstance(rule, WeeklyRule):
                raise ConfigError(f"{where} field 'also': expected WeeklyRule, got {rule!r}")
        object.__setattr__(self, "also", extra)
        if holidays is not None and not isinstance(holidays, HolidayCalendar):
            raise ConfigError(f"{where} field 'holidays': expected a HolidayCalendar, got {holidays!r}")
        object.__setattr__(self, "holidays", holidays)
        object.__setattr__(self, "_zone", zone)

    @property
    def rules(self) -> tuple[WeeklyRule, ...]:
        return (WeeklyRule(self.days, self.start, self.end), *self.also)

    @property
    def zone(self) -> tzinfo:
        return self._zone

    # --- queries -----------------------------------------------------------------------

    def is_active(self, dt: datetime) -> bool:
        """True when ``dt`` lies inside one of the window's intervals (start inclusive)."""
        at = self._aware(dt)
        return self._covering_close(at) is not None

    def next_open(self, dt: datetime) -> datetime:
        """``dt`` itself when the window is active then, else the next instant it opens."""
        at = self._aware(dt)
        if self._covering_close(at) is not None:
            return at.astimezone(self._zone)
        best: datetime | None = None
        # Holidays can close the window for weeks (a year-end shutdown): look further then.
        horizon = _HORIZON_DAYS if self.holidays is None else _HOLIDAY_HORIZON_DAYS
        for opens, closes in self._intervals(at.astimezone(self._zone).date(), horizon):
            if opens > at and opens < closes and (best is None or opens < best):
                best = opens
        if best is None:
            raise ConfigError(f"window {self.id!r}: never opens after {at.isoformat()}")
        return best.astimezone(self._zone)

    def closes_at(self, dt: datetime) -> datetime | None:
        """When the period active at ``dt`` (or, if none is, the next one) closes.

        Overlapping and touching intervals count as one period. ``None`` means the window
        never closes (it covers the whole week).
        """
        at = self.next_open(dt)
        close = self._covering_close(at)
        # A window covering every instant of the week would chain forever; a fortnight of
        # chaining proves it never closes.
        limit = at + timedelta(days=_HORIZON_DAYS)
        while close is not None:
            if close > limit:
                return None
            later = self._covering_close(close)
            if later is None:
                return close.astimezone(self._zone)
            close = later
        raise AssertionError("next_open returned an instant outside the window")  # pragma: no cover

    def holiday_at(self, dt: datetime) -> str | None:
        """The holiday that keeps the window closed at ``dt``, or None.

        Named only when an interval would cover ``dt`` were its start day not a holiday,
        so a skipped run's reason says the holiday instead of "outside the window".
        """
        if self.holidays is None:
            return None
        at = self._aware(dt)
        local_day = at.astimezone(self._zone).date()
        for opens, closes in self._intervals(local_day, 1, keep_holidays=True):
            if opens <= at < closes:
                name = self.holidays.name_at(opens, self._zone)
                if name is not None:
                    return name
        return None

    # --- internals -----------------------------------------------------------------------

    def _aware(self, dt: datetime) -> datetime:
        if not isinstance(dt, datetime):
            raise TypeError(f"expected a datetime, got {type(dt).__name__}")
        if dt.tzinfo is None or dt.utcoffset() is None:
            return _resolve(dt.date(), dt.time(), self._zone, opening=True)
        return dt

    def _intervals(
        self, first: date, ndays: int, *, keep_holidays: bool = False
    ) -> Iterable[tuple[datetime, datetime]]:
        """Intervals of every rule whose start day is in ``[first - 1, first + ndays)``."""
        for offset in range(-1, ndays):
            day = first + timedelta(days=offset)
            if not keep_holidays and self.holidays is not None and self.holidays.name_on(day) is not None:
                continue
            for rule in self.rules:
                if day.weekday() not in rule.days:
                    continue
                opens = _resolve(day, rule.start, self._zone, opening=True)
                end_day = day + timedelta(days=1) if rule.crosses_midnight else day
                closes = _resolve(end_day, rule.end, self._zone, opening=False)
                yield opens, closes

    def _covering_close(self, at: datetime) -> datetime | None:
        """The latest close among intervals containing ``at``, or None."""
        local_day = at.astimezone(self._zone).date()
        best: datetime | None = None
        for opens, closes in self._intervals(local_day, 1):
            if opens <= at < closes and (best is None or closes > best):
                best = closes
        return best


def _resolve(day: date, wall: time, zone: tzinfo, *, opening: bool) -> datetime:
    """The real instant of wall time ``wall`` on ``day`` in ``zone`` (see module doc on DST)."""
    early = datetime.combine(day, wall, tzinfo=zone).replace(fold=0)
    late = early.replace(fold=1)
    early_utc = early.astimezone(UTC)
    late_utc = late.astimezone(UTC)
    if early_utc == late_utc:
        return early
    if early_utc < late_utc:  # repeated hour: fold=0 is the first occurrence
        return early if opening else late
    # A gap: fold=0 used the offset before the jump and lands after it, fold=1 before.
    # The first instant after the gap is the transition, found by bisection on the offset.
    lo, hi = late_utc, early_utc
    before = lo.astimezone(zone).utcoffset()
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(zone).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    whole = hi.replace(microsecond=0)
    if whole.astimezone(zone).utcoffset() == before:
        whole += timedelta(seconds=1)
    return whole.astimezone(zone)


_WEEKDAYS = (0, 1, 2, 3, 4)
_ALL_DAYS = (0, 1, 2, 3, 4, 5, 6)


def business_hours(id: str = "business_hours", tz: str = "UTC") -> BackupWindow:
    """Monday to Friday, 09:00 to 17:00."""
    return BackupWindow(id, "Business hours", time(9), time(17), _WEEKDAYS, tz)


def off_hours(id: str = "off_hours", tz: str = "UTC") -> BackupWindow:
    """Weeknights 18:00-06:00 and the whole weekend, from Friday 18:00 to Monday 06:00.

    The weekend rule (Saturday and Sunday, 24 hours each) joins the Friday night and the
    Sunday night intervals, so the window is active without a break from Friday 18:00 to
    Monday 06:00 (DESIGN: "active Monday 03:00").
    """
    weekend = WeeklyRule((5, 6), time(0), time(0))
    return BackupWindow(id, "Off hours", time(18), time(6), _ALL_DAYS, tz, also=(weekend,))
