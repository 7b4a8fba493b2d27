"""Type stubs for the native module ``rustybackup._core`` (checked by mypy.stubtest)."""

import datetime
from typing import Self, final

__version__: str

# --- cron (issue 2) ---

@final
class CronField:
    """One of the five fields of a :class:`CronSchedule`."""

    @property
    def name(self) -> str:
        """``"minute"``, ``"hour"``, ``"day-of-month"``, ``"month"`` or ``"day-of-week"``."""
    @property
    def values(self) -> tuple[int, ...]:
        """The sorted matching values (day-of-week 0-6, Sunday 0), without L/W/# extensions."""
    @property
    def text(self) -> str:
        """The field's normalized text."""
    @property
    def unrestricted(self) -> bool:
        """True when the field starts with ``*`` (Vixie cron's unrestricted day field)."""

@final
class CronIterator:
    """Iterator returned by :meth:`CronSchedule.iter_after`; stops at year 9999."""

    def __iter__(self) -> CronIterator: ...
    def __next__(self) -> datetime.datetime: ...

@final
class CronSchedule:
    """A cron schedule in a time zone, with Vixie/ISC cron's day rule and DST handling.

    ``tz`` is an IANA zone name, a ``zoneinfo.ZoneInfo`` or a fixed-offset
    ``datetime.timezone`` (default UTC). ``seed`` spreads ``H`` fields (e.g. the job id).
    Naive datetimes are wall time in the schedule's zone; results are aware, in that zone.
    Invalid input raises :class:`rustybackup.CronError` naming the field and the text.
    """

    def __new__(cls, expr: str, tz: str | datetime.tzinfo | None = None, seed: str | None = None) -> Self: ...
    @property
    def tz(self) -> datetime.tzinfo:
        """The zone: a ``zoneinfo.ZoneInfo`` or a fixed-offset ``datetime.timezone``."""
    @property
    def seed(self) -> str | None:
        """The seed that spread ``H`` values, if any."""
    @property
    def fields(self) -> tuple[CronField, CronField, CronField, CronField, CronField]:
        """Minute, hour, day-of-month, month, day-of-week."""
    @property
    def is_fixed_time(self) -> bool:
        """True when neither minute nor hour starts with ``*`` (DST gaps and folds fire once)."""
    def matches(self, dt: datetime.datetime) -> bool:
        """Whether the schedule fires in the minute that contains ``dt``."""
    def next_after(self, dt: datetime.datetime) -> datetime.datetime:
        """The first firing time strictly after ``dt``."""
    def prev_before(self, dt: datetime.datetime) -> datetime.datetime:
        """The last firing time strictly before ``dt``."""
    def next_n(self, dt: datetime.datetime, n: int) -> list[datetime.datetime]:
        """The next ``n`` (0-1,000,000) firing times after ``dt`` (fewer only at the end of year 9999)."""
    def iter_after(self, dt: datetime.datetime) -> CronIterator:
        """An iterator of firing times after ``dt``."""
    def describe(self) -> str:
        """Plain English, e.g. ``"At 02:00, Monday through Friday"``."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __reduce__(self) -> tuple[type[CronSchedule], tuple[str, str | datetime.tzinfo, str | None]]: ...

# --- scan (issue 3) ---

# --- chain (issues 4, 7) ---

# --- engine (issue 4) ---
