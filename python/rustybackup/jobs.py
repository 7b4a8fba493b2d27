"""Scheduled jobs and the records of their runs.

A job names *what* to run (a backup of a database at a level, or a verification) and
*when* (a cron expression in a zone, optionally inside a window). Jobs are frozen and
validated on construction, so an invalid job never reaches the configuration file.

Schedules are parsed by :class:`CronSchedule` (``rustybackup.cron``, the Rust engine).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from .cron import CronSchedule
from .enums import BackupType, ExecutionStatus, VerificationType
from .errors import ConfigError, CronError
from .holidays_cal import HolidayCalendar
from .hooks import JobHooks
from .job_targets import check_target
from .notify import NotifyTargets
from .retention import RetentionPolicy
from .selection import Selection
from .windows import load_zone

__all__ = [
    "CronSchedule",
    "ScheduledBackup",
    "ScheduledVerification",
    "Job",
    "BackupExecution",
    "MISFIRE_POLICIES",
    "WINDOW_POLICIES",
]

MISFIRE_POLICIES = ("run_once", "skip")
WINDOW_POLICIES = ("skip", "defer")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


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
    holidays: HolidayCalendar | None
    notify: NotifyTargets | None
    hooks: JobHooks | None
    node_labels: tuple[str, ...]
    _cron: CronSchedule

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
            bits = self.priority.bit_length()
            shown = self.priority if bits <= 64 else f"an integer of {bits} bits"
            raise _fail(self.id, "priority", f"{shown} is out of range 0-255")
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
            raise _fail(self.id, "window_policy", f"{self.window_policy!r} is not one of {', '.join(WINDOW_POLICIES)}")
        if self.holidays is not None and not isinstance(self.holidays, HolidayCalendar):
            raise _fail(self.id, "holidays", f"expected a HolidayCalendar, got {self.holidays!r}")
        if self.notify is not None and not isinstance(self.notify, NotifyTargets):
            raise _fail(self.id, "notify", f"expected NotifyTargets, got {self.notify!r}")
        if self.hooks is not None and not isinstance(self.hooks, JobHooks):
            raise _fail(self.id, "hooks", f"expected JobHooks, got {self.hooks!r}")
        if isinstance(self.node_labels, str) or not all(
            isinstance(x, str) and _ID_RE.match(x) for x in self.node_labels
        ):
            raise _fail(self.id, "node_labels", f"expected a list of label names, got {self.node_labels!r}")
        object.__setattr__(self, "node_labels", tuple(self.node_labels))
        if self.window_policy == "defer" and self.window_id is None:
            raise _fail(self.id, "window_policy", "'defer' needs a window_id to wait for")
        try:
            load_zone(self.tz)
        except ConfigError as exc:
            raise _fail(self.id, "tz", str(exc).removeprefix("tz: ")) from None
        if not isinstance(self.schedule, str) or not self.schedule.strip():
            raise _fail(self.id, "schedule", f"expected a cron expression, got {self.schedule!r}")
        try:
            cron = CronSchedule(self.schedule, self.tz, self.id)
        except CronError as exc:
            raise _fail(self.id, "schedule", str(exc)) from None
        object.__setattr__(self, "_cron", cron)

    @property
    def cron(self) -> CronSchedule:
        """The parsed schedule (hashed ``H`` fields are seeded by the job id)."""
        return self._cron

    def holiday_at(self, scheduled_for: datetime) -> str | None:
        """The holiday on the occurrence's date in the job's zone, or None."""
        if self.holidays is None:
            return None
        return self.holidays.name_at(scheduled_for, load_zone(self.tz))


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
    run (``RetentionPolicy.parse``: ``redundancy=2``, ``window=7d``, ``daily=7,weekly=4``);
    ``misfire`` ``run_once`` or ``skip``; outside its window a due job is skipped
    (``window_policy="skip"``) or waits for it (``"defer"``).
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
    #: Dates (in ``tz``) on which an occurrence is recorded SKIPPED with the holiday's name.
    holidays: HolidayCalendar | None = None
    #: Cap on the source reads, bytes per second (``rustybackup.ratelimit``).
    io_limit: float | None = None
    #: Where notifications about this job go (rustybackup.notify), and its pre/post hooks.
    notify: NotifyTargets | None = None
    hooks: JobHooks | None = None
    #: With a shared catalog: only nodes carrying every one of these labels run the job
    #: (the data is on those hosts); empty, it floats to any node (rustybackup.nodes).
    node_labels: tuple[str, ...] = ()
    #: Selection rules on top of the database's own (rustybackup.selection; file trees).
    selection: Selection | None = None
    #: The repository the job writes to (``s3://bucket/prefix`` or a directory; None: the
    #: scheduler's own) and the upload pace by time of day for it (job_targets.py).
    repository: str | None = None
    upload_limits: tuple[str, ...] = ()
    upload_tz: str = "UTC"
    _cron: CronSchedule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _normalize_schedule(self, self.schedule, self.tz)
        try:
            object.__setattr__(self, "backup_type", BackupType(self.backup_type))
        except ValueError:
            kinds = ", ".join(t.value for t in BackupType)
            raise _fail(self.id, "backup_type", f"{self.backup_type!r} is not one of {kinds}") from None
        if self.retention is not None:
            try:
                RetentionPolicy.parse(self.retention)
            except ValueError as exc:
                raise _fail(self.id, "retention", str(exc)) from None
        if isinstance(self.tags, str) or not all(isinstance(t, str) for t in self.tags):
            raise _fail(self.id, "tags", f"expected a list of strings, got {self.tags!r}")
        object.__setattr__(self, "tags", tuple(self.tags))
        if self.io_limit is not None and (
            isinstance(self.io_limit, bool) or not isinstance(self.io_limit, (int, float)) or not self.io_limit > 0
        ):
            raise _fail(self.id, "io_limit", f"expected a positive number of bytes per second, got {self.io_limit!r}")
        check_target(self)
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
    holidays: HolidayCalendar | None = None
    #: Where notifications about this job go (rustybackup.notify), and its pre/post hooks.
    notify: NotifyTargets | None = None
    hooks: JobHooks | None = None
    #: With a shared catalog: only nodes carrying every one of these labels run the job
    #: (the data is on those hosts); empty, it floats to any node (rustybackup.nodes).
    node_labels: tuple[str, ...] = ()
    #: The repository to verify (None: the scheduler's own); see ScheduledBackup.
    repository: str | None = None
    _cron: CronSchedule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _normalize_schedule(self, self.schedule, self.tz)
        try:
            object.__setattr__(self, "level", VerificationType(self.level))
        except ValueError:
            kinds = ", ".join(t.value for t in VerificationType)
            raise _fail(self.id, "level", f"{self.level!r} is not one of {kinds}") from None
        if self.budget is not None and (not isinstance(self.budget, timedelta) or self.budget <= timedelta(0)):
            raise _fail(self.id, "budget", f"must be a positive timedelta, got {self.budget!r}")
        check_target(self)
        self._validate_common()

    @property
    def kind(self) -> str:
        return "verification"

    def with_changes(self, **changes: Any) -> ScheduledVerification:
        return replace(self, **changes)


Job = ScheduledBackup | ScheduledVerification


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
    #: Where the run wrote: its job's target repository (None: the scheduler's own).
    repository: str | None = None

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
            "repository": self.repository,
        }


def sort_key(job: Job, due: datetime) -> tuple[int, datetime, str]:
    """Priority order: higher priority first, then earlier due, then id."""
    return (-job.priority, due, job.id)
