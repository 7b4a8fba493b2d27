"""Scheduled jobs and the records of their runs.

A job names *what* to run (a backup of a database at a level, or a verification) and
*when* (a cron expression in a zone, optionally inside a window). Jobs are frozen and
validated on construction, so an invalid job never reaches the configuration file.

The cron engine is reached through :data:`cron_factory` (``CronSchedule`` from
``rustybackup.cron``, imported lazily), typed by the :class:`CronLike` protocol.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Protocol, Union

from .enums import BackupType, ExecutionStatus, VerificationType
from .errors import ConfigError, CronError
from .windows import load_zone

__all__ = [
    "CronLike",
    "cron_factory",
    "ScheduledBackup",
    "ScheduledVerification",
    "Job",
    "BackupExecution",
    "MISFIRE_POLICIES",
    "WINDOW_POLICIES",
    "parse_duration",
    "format_duration",
    "parse_retention",
]

MISFIRE_POLICIES = ("run_once", "skip")
WINDOW_POLICIES = ("skip", "defer")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class CronLike(Protocol):
    """What the scheduler needs from a cron schedule (``rustybackup.CronSchedule``)."""

    def next_after(self, dt: datetime) -> datetime: ...

    def next_n(self, dt: datetime, n: int) -> list[datetime]: ...


CronFactory = Callable[[str, str, Union[str, None]], CronLike]


def _rust_cron(expr: str, tz: str, seed: str | None) -> CronLike:
    # Imported here: the scheduler's modules must load (and report config errors) even
    # where the cron binding is being rebuilt, and tests may swap in another engine.
    from .cron import CronSchedule  # type: ignore[import-not-found,unused-ignore]

    schedule: CronLike = CronSchedule(expr, tz=tz, seed=seed)
    return schedule


#: Builds a schedule from ``(expr, tz, seed)``; raises ``CronError`` on a bad expression.
cron_factory: CronFactory = _rust_cron


def build_schedule(expr: str, tz: str, seed: str | None) -> CronLike:
    return cron_factory(expr, tz, seed)


# --- small parsers shared by jobs, the config file and the CLI ---------------------------

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)", re.IGNORECASE)
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> timedelta:
    """``"2h"``, ``"90m"``, ``"1h30m"``, ``"45s"``, ``"1d"`` or plain seconds ``"3600"``."""
    raw = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        return timedelta(seconds=float(raw))
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(raw):
        if raw[pos:m.start()].strip():
            break
        total += float(m.group(1)) * _UNITS[m.group(2).lower()]
        pos = m.end()
    if pos == 0 or raw[pos:].strip():
        raise ConfigError(f"duration {text!r}: expected a number with a unit, e.g. 2h, 90m, 1h30m, 45s")
    return timedelta(seconds=total)


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


_KEEP_KEYS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


def parse_retention(spec: str) -> dict[str, Any]:
    """A retention spec as the keyword arguments of one ``RetentionPolicy`` constructor.

    ``redundancy=3`` (RMAN REDUNDANCY), ``window=7d`` (RMAN RECOVERY WINDOW) or
    ``last=3,daily=7,weekly=4`` (restic's --keep-*). Returns ``{"kind": ..., **args}``.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"retention: expected a spec such as 'redundancy=3', got {spec!r}")
    parts: dict[str, str] = {}
    for item in spec.split(","):
        key, sep, value = (s.strip() for s in item.partition("="))
        if not sep or not value:
            raise ConfigError(f"retention {spec!r}: {item.strip()!r} is not key=value")
        if key in parts:
            raise ConfigError(f"retention {spec!r}: {key!r} given twice")
        parts[key] = value
    unknown = sorted(set(parts) - {"redundancy", "window", *_KEEP_KEYS})
    if unknown:
        raise ConfigError(
            f"retention {spec!r}: unknown key {unknown[0]!r} (use redundancy, window or {', '.join(_KEEP_KEYS)})"
        )
    if ("redundancy" in parts or "window" in parts) and len(parts) > 1:
        raise ConfigError(f"retention {spec!r}: redundancy and window each stand alone")
    if "window" in parts:
        span = parse_duration(parts["window"])
        if span <= timedelta(0):
            raise ConfigError(f"retention {spec!r}: the window must be positive")
        return {"kind": "recovery_window", "window": span}
    counts: dict[str, int] = {}
    for key, value in parts.items():
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"retention {spec!r}: {key} must be a whole number >= 1, got {value!r}")
        counts[key] = int(value)
    if "redundancy" in counts:
        return {"kind": "redundancy", "n": counts["redundancy"]}
    return {"kind": "keep", **counts}


def build_retention(spec: str) -> Any:
    """The ``RetentionPolicy`` for a spec (imported lazily: it belongs to issue 7)."""
    from .retention import RetentionPolicy  # type: ignore[import-not-found,unused-ignore]

    args = parse_retention(spec)
    kind = args.pop("kind")
    if kind == "redundancy":
        return RetentionPolicy.redundancy(args["n"])
    if kind == "recovery_window":
        return RetentionPolicy.recovery_window(args["window"])
    return RetentionPolicy.keep(**args)


# --- jobs -----------------------------------------------------------------------------


def _fail(job_id: object, fld: str, what: str) -> ConfigError:
    return ConfigError(f"job {job_id!r} field {fld!r}: {what}")


class _JobCommon:
    """Checks and helpers every kind of scheduled job shares (a mixin of the dataclasses)."""

    id: str
    name: str
    database: str
    schedule: str
    priority: int
    max_duration: timedelta | None
    window_id: str | None
    enabled: bool
    misfire: str
    window_policy: str
    tz: str
    _cron: CronLike

    def _validate_common(self) -> None:
        if not isinstance(self.id, str) or not _ID_RE.match(self.id):
            raise ConfigError(
                f"job id {self.id!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        if not isinstance(self.name, str):
            raise _fail(self.id, "name", f"expected a string, got {self.name!r}")
        if not isinstance(self.database, str) or not self.database:
            raise _fail(self.id, "database", f"expected a database name, got {self.database!r}")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise _fail(self.id, "priority", f"expected an integer 0-255, got {self.priority!r}")
        if not 0 <= self.priority <= 255:
            raise _fail(self.id, "priority", f"{self.priority} is out of range 0-255")
        if self.max_duration is not None:
            if not isinstance(self.max_duration, timedelta):
                raise _fail(self.id, "max_duration", f"expected a timedelta, got {self.max_duration!r}")
            if self.max_duration <= timedelta(0):
                raise _fail(self.id, "max_duration", f"must be positive, got {self.max_duration}")
        if self.window_id is not None and (not isinstance(self.window_id, str) or not self.window_id):
            raise _fail(self.id, "window_id", f"expected a window id, got {self.window_id!r}")
        if not isinstance(self.enabled, bool):
            raise _fail(self.id, "enabled", f"expected true or false, got {self.enabled!r}")
        if self.misfire not in MISFIRE_POLICIES:
            raise _fail(self.id, "misfire", f"{self.misfire!r} is not one of {', '.join(MISFIRE_POLICIES)}")
        if self.window_policy not in WINDOW_POLICIES:
            raise _fail(
                self.id, "window_policy", f"{self.window_policy!r} is not one of {', '.join(WINDOW_POLICIES)}"
            )
        if self.window_policy == "defer" and self.window_id is None:
            raise _fail(self.id, "window_policy", "'defer' needs a window_id to wait for")
        try:
            load_zone(self.tz)
        except ConfigError as exc:
            raise _fail(self.id, "tz", str(exc).removeprefix("tz: ")) from None
        if not isinstance(self.schedule, str) or not self.schedule.strip():
            raise _fail(self.id, "schedule", f"expected a cron expression, got {self.schedule!r}")
        try:
            cron = build_schedule(self.schedule, self.tz, self.id)
        except CronError as exc:
            raise _fail(self.id, "schedule", str(exc)) from None
        object.__setattr__(self, "_cron", cron)

    @property
    def cron(self) -> CronLike:
        """The parsed schedule (hashed ``H`` fields are seeded by the job id)."""
        return self._cron


def _normalize_schedule(obj: Any, schedule: object, tz: str) -> None:
    """Accepts a ``CronSchedule`` object as well as an expression string."""
    if isinstance(schedule, str):
        return
    if hasattr(schedule, "next_after"):
        zone = getattr(schedule, "tz", None)
        if zone is None:
            # Guessing UTC would silently move every run by the zone's offset.
            raise _fail(obj.id, "schedule", "this schedule object does not say its zone; pass the expression and tz=")
        zone_name = getattr(zone, "key", None) or str(zone)
        if tz not in ("UTC", zone_name):
            raise _fail(obj.id, "tz", f"{tz!r} contradicts the schedule's zone {zone_name!r}")
        object.__setattr__(obj, "schedule", str(schedule))
        object.__setattr__(obj, "tz", zone_name)


@dataclass(frozen=True)
class ScheduledBackup(_JobCommon):
    """A backup of ``database`` at ``backup_type`` whenever ``schedule`` fires.

    ``schedule`` is a cron expression evaluated in ``tz`` (or a ``CronSchedule``);
    ``priority`` 0-255 (higher first); ``retention`` a spec applied after each successful
    run (see :func:`parse_retention`); ``misfire`` ``run_once`` or ``skip``; outside its
    window a due job is skipped (``window_policy="skip"``) or waits for it (``"defer"``).
    """

    id: str
    name: str
    database: str
    backup_type: BackupType
    schedule: str
    priority: int = 128
    retention: str | None = None
    max_duration: timedelta | None = None
    tags: tuple[str, ...] = ()
    window_id: str | None = None
    enabled: bool = True
    misfire: str = "run_once"
    window_policy: str = "skip"
    tz: str = "UTC"
    _cron: CronLike = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _normalize_schedule(self, self.schedule, self.tz)
        try:
            object.__setattr__(self, "backup_type", BackupType(self.backup_type))
        except ValueError:
            kinds = ", ".join(t.value for t in BackupType)
            raise _fail(self.id, "backup_type", f"{self.backup_type!r} is not one of {kinds}") from None
        if self.retention is not None:
            try:
                parse_retention(self.retention)
            except ConfigError as exc:
                raise _fail(self.id, "retention", str(exc)) from None
        if isinstance(self.tags, str) or not all(isinstance(t, str) for t in self.tags):
            raise _fail(self.id, "tags", f"expected a list of strings, got {self.tags!r}")
        object.__setattr__(self, "tags", tuple(self.tags))
        self._validate_common()

    @property
    def kind(self) -> str:
        return "backup"

    def with_changes(self, **changes: Any) -> ScheduledBackup:
        return replace(self, **changes)


@dataclass(frozen=True)
class ScheduledVerification(_JobCommon):
    """A verification of ``database`` (or a set id) at ``level`` whenever ``schedule`` fires."""

    id: str
    name: str
    database: str
    level: VerificationType
    schedule: str
    priority: int = 128
    max_duration: timedelta | None = None
    window_id: str | None = None
    enabled: bool = True
    misfire: str = "run_once"
    window_policy: str = "skip"
    tz: str = "UTC"
    budget: timedelta | None = None
    _cron: CronLike = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _normalize_schedule(self, self.schedule, self.tz)
        try:
            object.__setattr__(self, "level", VerificationType(self.level))
        except ValueError:
            kinds = ", ".join(t.value for t in VerificationType)
            raise _fail(self.id, "level", f"{self.level!r} is not one of {kinds}") from None
        if self.budget is not None and (not isinstance(self.budget, timedelta) or self.budget <= timedelta(0)):
            raise _fail(self.id, "budget", f"must be a positive timedelta, got {self.budget!r}")
        self._validate_common()

    @property
    def kind(self) -> str:
        return "verification"

    def with_changes(self, **changes: Any) -> ScheduledVerification:
        return replace(self, **changes)


Job = Union[ScheduledBackup, ScheduledVerification]


@dataclass(frozen=True)
class BackupExecution:
    """One run (or skipped run) of a job's occurrence, as kept in the catalog database."""

    id: str
    job_id: str
    scheduled_for: datetime
    started_at: datetime | None
    finished_at: datetime | None
    status: ExecutionStatus
    backup_set_id: str | None = None
    error: str | None = None
    bytes_read: int | None = None
    bytes_written: int | None = None

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_json(self) -> dict[str, Any]:
        duration = self.duration
        return {
            "id": self.id,
            "job_id": self.job_id,
            "scheduled_for": self.scheduled_for.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "status": self.status.value,
            "backup_set_id": self.backup_set_id,
            "error": self.error,
            "duration": duration.total_seconds() if duration is not None else None,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
        }


def sort_key(job: Job, due: datetime) -> tuple[int, datetime, str]:
    """Priority order: higher priority first, then earlier due, then id."""
    return (-job.priority, due, job.id)
