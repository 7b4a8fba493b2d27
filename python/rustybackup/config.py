"""``scheduler_config.json``: the scheduler's jobs and windows, versioned and atomic.

Writes go to a temporary file in the same directory, are fsynced, and replace the
file with ``os.replace``; the previous version is kept as ``scheduler_config.json.bak``
(hard link, so the live name never disappears). A reader therefore sees the old or the
new file, never half of one. Loading validates everything and raises
:class:`ConfigError` naming the file, the place (line and column, or job/window id and
field) and the problem: a scheduler never starts with jobs silently dropped.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from . import store
from .errors import ConfigError
from .holidays_cal import HolidayCalendar
from .hooks import JobHooks
from .jobs import Job, ScheduledBackup, ScheduledVerification
from .notify import NotifyTargets
from .selection import Selection
from .windows import BackupWindow, WeeklyRule

__all__ = ["CONFIG_NAME", "SCHEMA_VERSION", "SchedulerConfig", "load_config", "save_config"]

CONFIG_NAME = "scheduler_config.json"
SCHEMA_VERSION = 1
_MAX_SECONDS = timedelta.max.total_seconds()


@dataclass
class SchedulerConfig:
    """The scheduler's persistent state (run history lives in the catalog database)."""

    enabled: bool = True
    windows: dict[str, BackupWindow] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    #: When each job was added: occurrences before it are not "missed".
    added_at: dict[str, datetime] = field(default_factory=dict)
    #: Each job's encoded line, reused while the job object (frozen: a change is a new
    #: object) and its added_at stay the same, so saving 10,000 jobs after one change
    #: encodes one job, not all of them.
    lines: dict[str, tuple[Job, datetime | None, bytes]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )


# --- encoding --------------------------------------------------------------------------


def _hhmm(t: time) -> str:
    return t.strftime("%H:%M:%S") if t.second else t.strftime("%H:%M")


def window_to_json(w: BackupWindow) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": w.id,
        "name": w.name,
        "start": _hhmm(w.start),
        "end": _hhmm(w.end),
        "days": list(w.days),
        "tz": w.tz,
    }
    if w.also:
        data["also"] = [{"days": list(r.days), "start": _hhmm(r.start), "end": _hhmm(r.end)} for r in w.also]
    if w.holidays is not None:
        data["holidays"] = w.holidays.to_json()
    return data


def _selection(data: dict[str, Any] | None, where: str) -> Selection | None:
    """A job's selection rules (``{"exclude": [...], "exclude_files": [...],
    "exclude_caches": bool, "one_file_system": bool}``), checked like the database's."""
    if data is None:
        return None
    unknown = set(data) - {"exclude", "exclude_files", "exclude_caches", "one_file_system"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    sel = Selection.build(
        exclude=data.get("exclude", []),
        exclude_files=data.get("exclude_files", []),
        exclude_caches=data.get("exclude_caches", False),
        one_file_system=data.get("one_file_system", False),
        where=where,
    )
    sel.matcher()
    return sel


def job_to_json(job: Job, added_at: datetime | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": job.id,
        "kind": job.kind,
        "name": job.name,
        "database": job.database,
        "schedule": job.schedule,
        "tz": job.tz,
        "priority": job.priority,
        "max_duration": job.max_duration.total_seconds() if job.max_duration is not None else None,
        "window_id": job.window_id,
        "enabled": job.enabled,
        "misfire": job.misfire,
        "window_policy": job.window_policy,
    }
    if isinstance(job, ScheduledBackup):
        data.update(backup_type=job.backup_type.value, retention=job.retention, tags=list(job.tags))
        if job.io_limit is not None:
            data["io_limit"] = job.io_limit
        if job.selection is not None and not job.selection.empty:
            data["selection"] = job.selection.plain()
        if job.upload_limits:
            data.update(upload_limits=list(job.upload_limits), upload_tz=job.upload_tz)
    else:
        data.update(level=job.level.value, budget=job.budget.total_seconds() if job.budget else None)
    if job.holidays is not None:
        data["holidays"] = job.holidays.to_json()
    if job.notify is not None:
        data["notify"] = job.notify.to_json()
    if job.hooks is not None:
        data["hooks"] = job.hooks.to_json()
    if job.node_labels:
        data["node_labels"] = list(job.node_labels)
    if job.repository is not None:
        data["repository"] = job.repository
    if added_at is not None:
        data["added_at"] = added_at.isoformat()
    return data


def config_to_json(config: SchedulerConfig) -> dict[str, Any]:
    return {
        "schema": SCHEMA_VERSION,
        "enabled": config.enabled,
        "windows": [window_to_json(w) for w in config.windows.values()],
        "jobs": [job_to_json(j, config.added_at.get(j.id)) for j in config.jobs.values()],
    }


def encode_config(config: SchedulerConfig) -> bytes:
    """The file's bytes: ``config_to_json`` with one job or window per line.

    Each line comes from json's C encoder (``indent=`` would switch to the pure-Python
    one, which took ~1 s for 10,000 jobs), and unchanged jobs reuse their cached line.
    """
    cache, added_at = config.lines, config.added_at
    jobs = []
    for jid, job in config.jobs.items():
        hit = cache.get(jid)
        if hit is None or hit[0] is not job or hit[1] is not added_at.get(jid):
            added = added_at.get(jid)
            hit = cache[jid] = (job, added, json.dumps(job_to_json(job, added)).encode())
        jobs.append(hit[2])
    if len(cache) > len(config.jobs):
        for gone in [k for k in cache if k not in config.jobs]:
            del cache[gone]
    windows = [json.dumps(window_to_json(w)).encode() for w in config.windows.values()]
    head = f'{{\n "schema": {SCHEMA_VERSION},\n "enabled": {json.dumps(config.enabled)},\n "windows": '
    return b"".join((head.encode(), _lines_array(windows), b',\n "jobs": ', _lines_array(jobs), b"\n}\n"))


def _lines_array(items: list[bytes]) -> bytes:
    return b"[\n  " + b",\n  ".join(items) + b"\n ]" if items else b"[]"


# --- decoding --------------------------------------------------------------------------

_JOB_COMMON = {
    "id",
    "kind",
    "name",
    "database",
    "schedule",
    "tz",
    "priority",
    "max_duration",
    "window_id",
    "enabled",
    "misfire",
    "window_policy",
    "added_at",
    "holidays",
    "node_labels",
    "notify",
    "hooks",
    "repository",
}
_JOB_FIELDS = {
    "backup": _JOB_COMMON | {"backup_type", "retention", "tags", "io_limit", "selection", "upload_limits", "upload_tz"},
    "verification": _JOB_COMMON | {"level", "budget"},
}
_REQUIRED = {
    "backup": {"id", "database", "schedule", "backup_type"},
    "verification": {"id", "database", "schedule", "level"},
}


class _Place:
    """Builds the errors for one job or window entry."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = path, what

    def error(self, fld: str | None, problem: str) -> ConfigError:
        where = f"{self.what} field {fld!r}" if fld else self.what
        return ConfigError(f"{self.path}: {where}: {problem}")


def _get(entry: dict[str, Any], key: str, kind: type | tuple[type, ...], place: _Place, default: Any) -> Any:
    if key not in entry or entry[key] is None:
        return default
    value = entry[key]
    if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise place.error(key, f"expected {_kind_name(kind)}, got {value!r}")
    if not isinstance(value, kind):
        raise place.error(key, f"expected {_kind_name(kind)}, got {_shown(value)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "an object",
    }
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _seconds(entry: dict[str, Any], key: str, place: _Place) -> timedelta | None:
    value = _get(entry, key, (int, float), place, None)
    if value is None:
        return None
    # JSON allows NaN and 1e999; timedelta raises ValueError/OverflowError on them.
    if not math.isfinite(value) or abs(value) > _MAX_SECONDS:
        raise place.error(key, f"expected a number of seconds up to {_MAX_SECONDS:.0f}, got {_shown(value)}")
    return timedelta(seconds=value)


def _shown(value: object) -> str:
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):  # not from a JSON document (a Python caller's object)
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _time(entry: dict[str, Any], key: str, place: _Place) -> time:
    value = _get(entry, key, str, place, None)
    if value is None:
        raise place.error(key, "missing")
    try:
        return time.fromisoformat(value)
    except ValueError:
        raise place.error(key, f"{value!r} is not a time of day HH:MM") from None


def _window_from_json(entry: Any, index: int, path: Path) -> BackupWindow:
    place = _Place(path, f"windows[{index}]")
    if not isinstance(entry, dict):
        raise place.error(None, f"expected an object, got {_shown(entry)}")
    wid = entry.get("id")
    if isinstance(wid, str):
        place.what = f"window {wid!r}"
    unknown = sorted(set(entry) - {"id", "name", "start", "end", "days", "tz", "also", "holidays"})
    if unknown:
        raise place.error(unknown[0], "unknown field")
    also = []
    for i, rule in enumerate(_get(entry, "also", list, place, [])):
        if not isinstance(rule, dict):
            raise place.error(f"also[{i}]", "expected an object with days, start and end")
        sub = _Place(path, f"{place.what} also[{i}]")
        also.append(
            WeeklyRule(tuple(_get(rule, "days", list, sub, [])), _time(rule, "start", sub), _time(rule, "end", sub))
        )
    try:
        return BackupWindow(
            _get(entry, "id", str, place, ""),
            _get(entry, "name", str, place, ""),
            _time(entry, "start", place),
            _time(entry, "end", place),
            _get(entry, "days", list, place, []),
            _get(entry, "tz", str, place, "UTC"),
            also=also,
            holidays=_holidays(entry, place),
        )
    except ConfigError as exc:
        raise _in_file(path, exc) from None


def _holidays(entry: dict[str, Any], place: _Place) -> HolidayCalendar | None:
    raw = entry.get("holidays")
    if raw is None:
        return None
    try:
        return HolidayCalendar.from_json(raw, f"{place.path}: {place.what}")
    except ConfigError as exc:
        raise ConfigError(str(exc)) from None


def _in_file(path: Path, exc: ConfigError) -> ConfigError:
    """``exc`` prefixed with the file, unless a check that knew the file already said it."""
    text = str(exc)
    return exc if text.startswith(f"{path}: ") else ConfigError(f"{path}: {text}")


def _job_from_json(entry: Any, index: int, path: Path) -> tuple[Job, datetime | None]:
    place = _Place(path, f"jobs[{index}]")
    if not isinstance(entry, dict):
        raise place.error(None, f"expected an object, got {_shown(entry)}")
    jid = entry.get("id")
    if isinstance(jid, str):
        place.what = f"job {jid!r}"
    kind = _get(entry, "kind", str, place, "backup")
    if kind not in _JOB_FIELDS:
        raise place.error("kind", f"{kind!r} is not one of backup, verification")
    unknown = sorted(set(entry) - _JOB_FIELDS[kind])
    if unknown:
        raise place.error(unknown[0], "unknown field")
    missing = sorted(k for k in _REQUIRED[kind] if entry.get(k) is None)
    if missing:
        raise place.error(missing[0], "missing")
    common: dict[str, Any] = dict(
        id=_get(entry, "id", str, place, ""),
        name=_get(entry, "name", str, place, ""),
        database=_get(entry, "database", str, place, ""),
        schedule=_get(entry, "schedule", str, place, ""),
        priority=_get(entry, "priority", int, place, 128),
        max_duration=_seconds(entry, "max_duration", place),
        window_id=_get(entry, "window_id", str, place, None),
        enabled=_get(entry, "enabled", bool, place, True),
        misfire=_get(entry, "misfire", str, place, "run_once"),
        window_policy=_get(entry, "window_policy", str, place, "skip"),
        tz=_get(entry, "tz", str, place, "UTC"),
        holidays=_holidays(entry, place),
        notify=None
        if entry.get("notify") is None
        else NotifyTargets.from_json(entry["notify"], f"{path}: {place.what}"),
        hooks=None if entry.get("hooks") is None else JobHooks.from_json(entry["hooks"], f"{path}: {place.what}"),
        node_labels=tuple(_get(entry, "node_labels", list, place, [])),
        repository=_get(entry, "repository", str, place, None),
    )
    added_raw = _get(entry, "added_at", str, place, None)
    added_at = None
    if added_raw is not None:
        try:
            added_at = datetime.fromisoformat(added_raw)
        except ValueError:
            raise place.error("added_at", f"{added_raw!r} is not an ISO 8601 timestamp") from None
        if added_at.tzinfo is None:
            added_at = added_at.replace(tzinfo=UTC)
    job: Job
    try:
        if kind == "backup":
            job = ScheduledBackup(
                backup_type=_get(entry, "backup_type", str, place, ""),
                retention=_get(entry, "retention", str, place, None),
                tags=tuple(_get(entry, "tags", list, place, [])),
                io_limit=_get(entry, "io_limit", (int, float), place, None),
                selection=_selection(_get(entry, "selection", dict, place, None), f"{path}: {place.what}.selection"),
                upload_limits=tuple(_get(entry, "upload_limits", list, place, [])),
                upload_tz=_get(entry, "upload_tz", str, place, "UTC"),
                **common,
            )
        else:
            job = ScheduledVerification(
                level=_get(entry, "level", str, place, ""),
                budget=_seconds(entry, "budget", place),
                **common,
            )
    except ConfigError as exc:
        raise _in_file(path, exc) from None
    return job, added_at


def parse_config(text: str, path: Path) -> SchedulerConfig:
    """Validates a whole configuration document (``path`` is only used in messages)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid JSON: nested too deeply") from None
    except ValueError as exc:  # an integer of more digits than int() converts
        raise ConfigError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object at the top level")
    schema = data.get("schema")
    if schema != SCHEMA_VERSION:
        raise ConfigError(
            f"{path}: field 'schema': unsupported version {_shown(schema)} (this rustybackup reads {SCHEMA_VERSION})"
        )
    unknown = sorted(set(data) - {"schema", "enabled", "windows", "jobs"})
    if unknown:
        raise ConfigError(f"{path}: field {unknown[0]!r}: unknown field")
    top = _Place(path, "top level")
    config = SchedulerConfig(enabled=_get(data, "enabled", bool, top, True))
    for i, entry in enumerate(_get(data, "windows", list, top, [])):
        window = _window_from_json(entry, i, path)
        if window.id in config.windows:
            raise ConfigError(f"{path}: window {window.id!r}: duplicate id")
        config.windows[window.id] = window
    for i, entry in enumerate(_get(data, "jobs", list, top, [])):
        job, added_at = _job_from_json(entry, i, path)
        if job.id in config.jobs:
            raise ConfigError(f"{path}: job {job.id!r}: duplicate id")
        if job.window_id is not None and job.window_id not in config.windows:
            raise ConfigError(f"{path}: job {job.id!r} field 'window_id': unknown window {job.window_id!r}")
        config.jobs[job.id] = job
        if added_at is not None:
            config.added_at[job.id] = added_at
        # The entry as read is a valid encoding of the job: the next save reuses it.
        config.lines[job.id] = (job, added_at, json.dumps(entry).encode())
    return config


def load_config(path: Path) -> SchedulerConfig:
    """The configuration in ``path``; an empty one if neither it nor a backup exists."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        backup = path.with_name(path.name + ".bak")
        if backup.exists():
            raise ConfigError(
                f"{path}: missing, but {backup.name} exists; restore it (or remove it to start empty)"
            ) from None
        return SchedulerConfig()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: byte {exc.start}: not UTF-8 text") from None
    except OSError as exc:  # a directory in its place, no permission, an I/O error
        raise ConfigError(f"{path}: cannot read the scheduler configuration: {exc.strerror or exc}") from None
    return parse_config(text, path)


def save_config(path: Path, config: SchedulerConfig) -> None:
    """Atomically replaces ``path``, keeping the previous version as ``.bak``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = encode_config(config)
    if path.exists():
        _keep_backup(path)
    store.atomic_write_bytes(path, payload, mode=0o600)


def _keep_backup(path: Path) -> None:
    backup = path.with_name(path.name + ".bak")
    staging = path.with_name(f".{path.name}.bak.{os.getpid()}.tmp")
    staging.unlink(missing_ok=True)
    try:
        os.link(path, staging)
    except OSError:  # file systems without hard links: a copy is as good, only slower
        staging.write_bytes(path.read_bytes())
    os.replace(staging, backup)
