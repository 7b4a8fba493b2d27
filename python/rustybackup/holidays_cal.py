"""Holiday calendars: dates on which a job or a window does not run.

A :class:`HolidayCalendar` joins three sources: a country or subdivision calendar of the
``holidays`` package (``"DE"``, ``"DE-BY"``), events read from ICS files, and a plain list
of dates. A date is a holiday when any source names it; the names are joined with ``"; "``.

Dates are days in the zone of whoever asks (the job's ``tz`` for a job calendar, the
window's for a window calendar): :meth:`HolidayCalendar.name_at` takes the instant and
the zone, so 23:30 UTC on the 24th is Christmas Day in Berlin.

ICS events are read once, when the calendar is built, and kept as dates in the scheduler
configuration: a calendar file that later moves or breaks cannot stop scheduled backups.
The parser is small and strict (RFC 5545 lines, VEVENTs with DTSTART/DTEND/DURATION and
SUMMARY); what it cannot represent faithfully (RRULE/RDATE repeats) is an error naming the
file and the line, rather than a silently incomplete calendar.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_pkg

from .errors import ConfigError

__all__ = ["HolidayCalendar", "parse_ics", "parse_region"]

_REGION_RE = re.compile(r"^([A-Za-z]{2,3})(?:-([A-Za-z0-9]{1,10}))?$")
# An ICS event longer than this is almost surely a typo (DTEND in the wrong year); it
# would also make one event expand into an unbounded number of dates.
_MAX_EVENT_DAYS = 366


def parse_region(spec: str) -> tuple[str, str | None]:
    """``"DE-BY"`` -> ``("DE", "BY")``, checked against the ``holidays`` package."""
    m = _REGION_RE.match(spec.strip()) if isinstance(spec, str) else None
    if m is None:
        raise ConfigError(f"holidays: {spec!r} is not a country code or country-subdivision such as DE or DE-BY")
    country, subdiv = m.group(1).upper(), m.group(2)
    subdiv = subdiv.upper() if subdiv is not None else None
    try:
        _region_calendar(country, subdiv)
    except NotImplementedError as exc:
        raise ConfigError(f"holidays: {spec!r}: {exc}") from None
    return country, subdiv


class _Region:
    """One shared ``holidays`` calendar per region: building one costs ~1.5 ms, and a
    configuration of 10,000 jobs with the same region must load in well under a second.
    The package computes each year on first use, mutating its dict, hence the lock."""

    def __init__(self, country: str, subdiv: str | None) -> None:
        self._lock = threading.Lock()
        self._calendar = holidays_pkg.country_holidays(country, subdiv=subdiv)

    def get(self, day: date) -> str | None:
        with self._lock:
            name = self._calendar.get(day)
        return str(name) if name else None


_REGIONS: dict[tuple[str, str | None], _Region] = {}
_REGIONS_LOCK = threading.Lock()


def _region_calendar(country: str, subdiv: str | None) -> _Region:
    key = (country, subdiv)
    with _REGIONS_LOCK:
        found = _REGIONS.get(key)
        if found is None:
            found = _REGIONS[key] = _Region(country, subdiv)
        return found


@dataclass(frozen=True)
class HolidayCalendar:
    """Excluded dates: ``region`` (``holidays`` package), ``dates`` (day, name), ``files``."""

    region: str | None = None
    dates: tuple[tuple[date, str], ...] = ()
    #: ICS files the dates came from (kept to say where they came from).
    files: tuple[str, ...] = ()
    _country: Any = field(init=False, repr=False, compare=False, default=None)
    _by_day: dict[date, str] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.region is not None:
            country, subdiv = parse_region(self.region)
            object.__setattr__(self, "region", f"{country}-{subdiv}" if subdiv else country)
            object.__setattr__(self, "_country", _region_calendar(country, subdiv))
        by_day: dict[date, list[str]] = {}
        for day, name in self.dates:
            if not isinstance(day, date) or isinstance(day, datetime):
                raise ConfigError(f"holidays: {day!r} is not a date")
            names = by_day.setdefault(day, [])
            if name not in names:
                names.append(name)
        object.__setattr__(self, "dates", tuple(sorted(self.dates)))
        object.__setattr__(self, "_by_day", {d: "; ".join(n) for d, n in by_day.items()})

    @classmethod
    def build(
        cls,
        region: str | None = None,
        files: Iterable[str | Path] = (),
        dates: Iterable[date | str] = (),
    ) -> HolidayCalendar | None:
        """A calendar from CLI-style inputs, or None when all three are empty."""
        found: list[tuple[date, str]] = []
        names: list[str] = []
        for f in files:
            found.extend(parse_ics(Path(f)))
            names.append(str(f))
        for d in dates:
            found.append((_date(d, "holidays date"), "excluded date"))
        if region is None and not found and not names:
            return None
        return cls(region, tuple(found), tuple(names))

    def name_on(self, day: date) -> str | None:
        """The holiday's name on ``day`` (a local date), or None."""
        parts: list[str] = []
        if self._country is not None:
            official = self._country.get(day)
            if official:
                parts.append(f"{official} ({self.region})")
        listed = self._by_day.get(day)
        if listed:
            parts.append(listed)
        return "; ".join(parts) or None

    def name_at(self, at: datetime, zone: tzinfo) -> str | None:
        """The holiday's name on the local date of ``at`` in ``zone``, or None."""
        return self.name_on(at.astimezone(zone).date())

    def describe(self) -> str:
        """A short form for tables: ``DE-BY + holidays.ics + 3 dates``."""
        parts = [self.region] if self.region else []
        parts.extend(Path(f).name for f in self.files)
        listed = sum(1 for _, n in self.dates if n == "excluded date")
        if listed:
            parts.append(f"{listed} date{'s' if listed != 1 else ''}")
        return " + ".join(p for p in parts if p)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.region:
            data["region"] = self.region
        if self.dates:
            data["dates"] = [[d.isoformat(), n] for d, n in self.dates]
        if self.files:
            data["files"] = list(self.files)
        return data

    @classmethod
    def from_json(cls, data: object, where: str) -> HolidayCalendar:
        """The inverse of :meth:`to_json`; errors name ``where`` (file and entry)."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where} field 'holidays': expected an object, got {data!r}")
        unknown = sorted(set(data) - {"region", "dates", "files"})
        if unknown:
            raise ConfigError(f"{where} field 'holidays.{unknown[0]}': unknown field")
        region = data.get("region")
        if region is not None and not isinstance(region, str):
            raise ConfigError(f"{where} field 'holidays.region': expected a string, got {region!r}")
        dates: list[tuple[date, str]] = []
        raw_dates = data.get("dates", [])
        if not isinstance(raw_dates, list):
            raise ConfigError(f"{where} field 'holidays.dates': expected a list")
        for i, item in enumerate(raw_dates):
            if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)):
                raise ConfigError(f"{where} field 'holidays.dates[{i}]': expected [\"YYYY-MM-DD\", name]")
            dates.append((_date(item[0], f"{where} field 'holidays.dates[{i}]'"), item[1]))
        files = data.get("files", [])
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise ConfigError(f"{where} field 'holidays.files': expected a list of file names")
        try:
            return cls(region, tuple(dates), tuple(files))
        except ConfigError as exc:
            raise ConfigError(f"{where} field {exc}") from None


def _date(value: date | str, what: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{what}: {value!r} is not a date YYYY-MM-DD")


# --- ICS -------------------------------------------------------------------------------


def parse_ics(path: Path) -> list[tuple[date, str]]:
    """Every (date, summary) the VEVENTs of an ICS file cover.

    All-day events (``DTSTART;VALUE=DATE``) cover ``[DTSTART, DTEND)`` (RFC 5545: DTEND is
    exclusive; one day when absent). Timed events cover each date from the start's to the
    end's, both read in the event's own zone (``TZID``, ``Z`` for UTC, or floating); an end
    at exactly midnight does not touch that day. Errors name the file and the line.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the calendar: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    out: list[tuple[date, str]] = []
    stack: list[str] = []
    event: dict[str, tuple[int, dict[str, str], str]] = {}
    event_line = 0
    seen_calendar = False
    for lineno, name, params, value in _content_lines(path, text):
        if name == "BEGIN":
            stack.append(value.upper())
            if value.upper() == "VCALENDAR":
                seen_calendar = True
            if value.upper() == "VEVENT":
                if stack[:-1] != ["VCALENDAR"]:
                    raise ConfigError(f"{path}:{lineno}: VEVENT outside a VCALENDAR")
                event, event_line = {}, lineno
            continue
        if name == "END":
            if not stack or stack[-1] != value.upper():
                opened = stack[-1] if stack else "nothing"
                raise ConfigError(f"{path}:{lineno}: END:{value} does not close {opened}")
            stack.pop()
            if value.upper() == "VEVENT":
                try:
                    out.extend(_event_dates(path, event_line, event))
                except OverflowError:
                    raise ConfigError(f"{path}:{event_line}: the event reaches past the year 9999") from None
            continue
        if stack and stack[-1] == "VEVENT":
            if name in ("RRULE", "RDATE"):
                raise ConfigError(
                    f"{path}:{lineno}: {name}: repeating events are not supported; list each date as its own event"
                )
            if name in ("DTSTART", "DTEND", "DURATION", "SUMMARY"):
                if name in event:
                    raise ConfigError(f"{path}:{lineno}: {name} appears twice in the event")
                event[name] = (lineno, params, value)
    if stack:
        raise ConfigError(f"{path}: BEGIN:{stack[-1]} is never closed (END:{stack[-1]} missing)")
    if not seen_calendar:
        raise ConfigError(f"{path}: not an iCalendar file (no BEGIN:VCALENDAR)")
    return out


def _content_lines(path: Path, text: str) -> Iterable[tuple[int, str, dict[str, str], str]]:
    """(first line number, NAME, params, value) of each unfolded content line."""
    logical: list[tuple[int, str]] = []
    # Lines end in CRLF (or a bare LF); str.splitlines would also split at U+0085 and
    # U+2028, which are legal inside a SUMMARY.
    for i, raw in enumerate(text.split("\n"), start=1):
        raw = raw.removesuffix("\r")
        if raw[:1] in (" ", "\t"):
            if not logical:
                raise ConfigError(f"{path}:{i}: a continuation line with nothing to continue")
            n, prev = logical[-1]
            logical[-1] = (n, prev + raw[1:])
        elif raw.strip():
            logical.append((i, raw))
    for lineno, line in logical:
        head, sep, value = _split_value(line)
        if not sep:
            raise ConfigError(f"{path}:{lineno}: expected NAME:VALUE, got {line[:60]!r}")
        name, *raw_params = head.split(";")
        if not re.fullmatch(r"[A-Za-z0-9-]+", name):
            raise ConfigError(f"{path}:{lineno}: {name[:40]!r} is not a property name")
        params: dict[str, str] = {}
        for p in raw_params:
            key, eq, val = p.partition("=")
            if not eq:
                raise ConfigError(f"{path}:{lineno}: parameter {p[:40]!r} has no '='")
            params[key.upper()] = val.strip('"')
        yield lineno, name.upper(), params, value


def _split_value(line: str) -> tuple[str, str, str]:
    """Splits at the first ':' outside a quoted parameter value."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == ":" and not quoted:
            return line[:i], ":", line[i + 1 :]
    return line, "", ""


def _event_dates(path: Path, line: int, event: dict[str, tuple[int, dict[str, str], str]]) -> list[tuple[date, str]]:
    if "DTSTART" not in event:
        raise ConfigError(f"{path}:{line}: VEVENT without DTSTART")
    summary = _unescape(event["SUMMARY"][2]) if "SUMMARY" in event else "holiday"
    s_line, s_params, s_value = event["DTSTART"]
    start = _ics_time(path, s_line, s_params, s_value)
    if "DTEND" in event and "DURATION" in event:
        raise ConfigError(f"{path}:{event['DURATION'][0]}: an event has both DTEND and DURATION")
    end: date | datetime
    if "DTEND" in event:
        e_line, e_params, e_value = event["DTEND"]
        end = _ics_time(path, e_line, e_params, e_value)
        if type(end) is not type(start):
            raise ConfigError(f"{path}:{e_line}: DTEND is a {_kind(end)} but DTSTART is a {_kind(start)}")
    elif "DURATION" in event:
        d_line, _, d_value = event["DURATION"]
        end = start + _ics_duration(path, d_line, d_value)
    else:
        end = start + timedelta(days=1) if not isinstance(start, datetime) else start
    where = event.get("DTEND", event.get("DURATION", event["DTSTART"]))[0]
    if isinstance(start, datetime) and isinstance(end, datetime):
        first, last = start.date(), end.date()
        if end < start:
            raise ConfigError(f"{path}:{where}: the event ends before it starts")
        if end > start and end.time() == datetime.min.time():
            last -= timedelta(days=1)  # ends at midnight: the end day is not touched
    else:
        first, last = start, end - timedelta(days=1)
        if last < first:
            raise ConfigError(f"{path}:{where}: the all-day event ends before it starts (DTEND is exclusive)")
    ndays = (last - first).days + 1
    if ndays > _MAX_EVENT_DAYS:
        raise ConfigError(f"{path}:{where}: the event spans {ndays} days (more than {_MAX_EVENT_DAYS})")
    return [(first + timedelta(days=k), summary) for k in range(ndays)]


def _kind(v: date) -> str:
    return "date-time" if isinstance(v, datetime) else "date"


def _ics_time(path: Path, line: int, params: dict[str, str], value: str) -> date | datetime:
    """A DATE (``20261225``) or DATE-TIME (``20261225T100000[Z]``, with ``TZID``)."""
    v = value.strip()
    kind = params.get("VALUE", "DATE" if len(v) == 8 else "DATE-TIME").upper()
    try:
        if kind == "DATE":
            return datetime.strptime(v, "%Y%m%d").date()
        if kind != "DATE-TIME":
            raise ValueError
        utc = v.endswith("Z")
        naive = datetime.strptime(v.removesuffix("Z"), "%Y%m%dT%H%M%S")
    except ValueError:
        raise ConfigError(f"{path}:{line}: {v!r} is not an iCalendar DATE or DATE-TIME") from None
    if utc:
        return naive.replace(tzinfo=ZoneInfo("UTC"))
    tzid = params.get("TZID")
    if tzid is None:
        return naive  # floating time: the same wall clock everywhere
    try:
        return naive.replace(tzinfo=ZoneInfo(tzid))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{path}:{line}: TZID {tzid!r} is not an IANA zone name") from None


_DURATION_RE = re.compile(r"^\+?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")


def _ics_duration(path: Path, line: int, value: str) -> timedelta:
    m = _DURATION_RE.match(value.strip())
    if m is None or not any(m.groups()):
        raise ConfigError(f"{path}:{line}: {value!r} is not a (positive) iCalendar DURATION such as P1D or PT2H")
    w, d, h, mi, s = (int(x) if x else 0 for x in m.groups())
    return timedelta(weeks=w, days=d, hours=h, minutes=mi, seconds=s)


def _unescape(text: str) -> str:
    return re.sub(r"\\([\\;,nN])", lambda m: "\n" if m.group(1) in "nN" else m.group(1), text)
