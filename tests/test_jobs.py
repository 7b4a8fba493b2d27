"""ScheduledBackup / ScheduledVerification validation, durations, retention specs, and the
scheduler_config.json format (atomic save, .bak, corruption errors naming file and place)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from rustybackup.config import SchedulerConfig, load_config, save_config
from rustybackup.cron import CronSchedule
from rustybackup.enums import BackupType, VerificationType
from rustybackup.errors import ConfigError
from rustybackup.jobs import ScheduledBackup, ScheduledVerification
from rustybackup.windows import BackupWindow, off_hours


def job(**changes: Any) -> ScheduledBackup:
    args: dict[str, Any] = {
        "id": "nightly",
        "name": "Nightly",
        "database": "db",
        "backup_type": "full",
        "schedule": "0 2 * * *",
    }
    args.update(changes)
    return ScheduledBackup(**args)


def test_a_valid_job_keeps_its_fields_and_parses_its_schedule() -> None:
    j = job(priority=200, retention="redundancy=2", max_duration=timedelta(hours=2), tags=["a"])
    assert j.backup_type is BackupType.FULL
    assert j.tags == ("a",)
    assert j.cron.next_after(datetime(2026, 1, 1, tzinfo=UTC)) == datetime(2026, 1, 1, 2, tzinfo=UTC)


def test_positional_arguments_follow_the_design_order() -> None:
    j = ScheduledBackup("j", "J", "db", BackupType.INCREMENTAL, "*/5 * * * *", 10)
    assert (j.backup_type, j.schedule, j.priority) == (BackupType.INCREMENTAL, "*/5 * * * *", 10)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"priority": 256}, "job 'nightly' field 'priority': 256 is out of range 0-255"),
        ({"priority": -1}, "job 'nightly' field 'priority': -1 is out of range 0-255"),
        ({"priority": True}, "job 'nightly' field 'priority': expected an integer 0-255, got True"),
        ({"max_duration": timedelta(0)}, "job 'nightly' field 'max_duration': must be positive, got 0:00:00"),
        ({"max_duration": 60}, "job 'nightly' field 'max_duration': expected a timedelta, got 60"),
        ({"misfire": "all"}, "job 'nightly' field 'misfire': 'all' is not one of run_once, skip"),
        ({"window_policy": "wait"}, "job 'nightly' field 'window_policy': 'wait' is not one of skip, defer"),
        ({"window_policy": "defer"}, "job 'nightly' field 'window_policy': 'defer' needs a window_id to wait for"),
        (
            {"backup_type": "snapshot"},
            "job 'nightly' field 'backup_type': 'snapshot' is not one of full, incremental, differential, archive_log",
        ),
        ({"tz": "Nowhere/Land"}, "job 'nightly' field 'tz': unknown time zone 'Nowhere/Land'"),
        ({"database": ""}, "job 'nightly' field 'database': expected a database name, got ''"),
        (
            {"retention": "keep=3"},
            "job 'nightly' field 'retention': unknown retention setting(s) keep; "
            "known: redundancy, window, last, hourly, daily, weekly, monthly, yearly",
        ),
        (
            {"id": "bad id"},
            "job id 'bad id': use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
        ),
        ({"tags": "a"}, "job 'nightly' field 'tags': expected a list of strings, got 'a'"),
    ],
)
def test_invalid_jobs_are_rejected_naming_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        job(**changes)
    assert str(info.value) == message


def test_a_bad_cron_expression_names_the_job_and_schedule_field() -> None:
    with pytest.raises(ConfigError, match=r"^job 'nightly' field 'schedule': minute: 61 is out of range 0-59$"):
        job(schedule="61 * * * *")


def test_verification_jobs_validate_their_level() -> None:
    v = ScheduledVerification("v", "V", "db", VerificationType.FULL, "0 3 * * 0")
    assert v.level is VerificationType.FULL
    with pytest.raises(ConfigError, match="^job 'v' field 'level': 'deep' is not one of quick, standard"):
        ScheduledVerification(
            "v",
            "V",
            "db",
            "deep",  # type: ignore[arg-type]
            "0 3 * * 0",
        )


def test_a_bad_retention_spec_names_the_job_and_field() -> None:
    with pytest.raises(
        ConfigError, match=r"^job 'nightly' field 'retention': invalid retention setting 'daily' in 'daily'"
    ):
        job(retention="daily")
    assert job(retention="redundancy=3").retention == "redundancy=3"


# --- scheduler_config.json ---------------------------------------------------------------


def sample_config() -> SchedulerConfig:
    cfg = SchedulerConfig()
    cfg.windows["off"] = off_hours("off", tz="Europe/Paris")
    cfg.windows["n"] = BackupWindow("n", "Nights", time(22), time(4), [0, 2], "UTC")
    j = job(window_id="off", window_policy="defer", retention="last=3", max_duration=timedelta(minutes=90))
    v = ScheduledVerification("v", "V", "db", VerificationType.QUICK, "0 3 * * 0", budget=timedelta(minutes=5))
    cfg.jobs = {j.id: j, v.id: v}
    cfg.added_at[j.id] = datetime(2026, 1, 1, tzinfo=UTC)
    return cfg


def test_config_round_trips_and_keeps_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "scheduler_config.json"
    cfg = sample_config()
    save_config(path, cfg)
    assert not (tmp_path / "scheduler_config.json.bak").exists()
    loaded = load_config(path)
    assert loaded.jobs == cfg.jobs and loaded.windows == cfg.windows and loaded.added_at == cfg.added_at
    first = path.read_text()
    cfg.enabled = False
    save_config(path, cfg)
    assert (tmp_path / "scheduler_config.json.bak").read_text() == first
    assert load_config(path).enabled is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scheduler_config.json", "scheduler_config.json.bak"]


def test_missing_config_is_empty_unless_a_backup_is_left(tmp_path: Path) -> None:
    path = tmp_path / "scheduler_config.json"
    assert load_config(path).jobs == {}
    (tmp_path / "scheduler_config.json.bak").write_text("{}")
    with pytest.raises(ConfigError, match="missing, but scheduler_config.json.bak exists"):
        load_config(path)


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "scheduler_config.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=1))
    return path


def _doc(**job_changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": "nightly",
        "kind": "backup",
        "name": "N",
        "database": "db",
        "backup_type": "full",
        "schedule": "0 2 * * *",
    }
    entry.update(job_changes)
    entry = {k: v for k, v in entry.items() if v is not ...}
    return {"schema": 1, "enabled": True, "windows": [], "jobs": [entry]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ('{"schema": 1,\n "jobs": [\n  {"id": "x",}\n ]}', "line 3 column 14: invalid JSON: Expecting property name"),
        ({"schema": 2}, "field 'schema': unsupported version 2 (this rustybackup reads 1)"),
        ({"jobs": []}, "field 'schema': unsupported version null"),
        ([], "expected a JSON object at the top level"),
        ({"schema": 1, "jobz": []}, "field 'jobz': unknown field"),
        (_doc(priority=300), "job 'nightly' field 'priority': 300 is out of range 0-255"),
        (_doc(priority="high"), "job 'nightly' field 'priority': expected an integer, got \"high\""),
        (_doc(schedule=...), "job 'nightly' field 'schedule': missing"),
        (_doc(color="red"), "job 'nightly' field 'color': unknown field"),
        (_doc(max_duration=-5), "job 'nightly' field 'max_duration': must be positive"),
        (_doc(window_id="nope"), "job 'nightly' field 'window_id': unknown window 'nope'"),
        (_doc(kind="restore"), "job 'nightly' field 'kind': 'restore' is not one of backup, verification"),
        (_doc(enabled="yes"), "job 'nightly' field 'enabled': expected true or false, got \"yes\""),
        (_doc(added_at="yesterday"), "job 'nightly' field 'added_at': 'yesterday' is not an ISO 8601 timestamp"),
        ({"schema": 1, "jobs": [_doc()["jobs"][0], _doc()["jobs"][0]]}, "job 'nightly': duplicate id"),
        ({"schema": 1, "jobs": ["x"]}, 'jobs[0]: expected an object, got "x"'),
        (
            {"schema": 1, "windows": [{"id": "w", "name": "W", "start": "25:00", "end": "02:00", "days": [0]}]},
            "window 'w' field 'start': '25:00' is not a time of day HH:MM",
        ),
        (
            {"schema": 1, "windows": [{"id": "w", "name": "W", "start": "01:00", "end": "02:00", "days": [9]}]},
            "window 'w' field days: weekday 9 is out of range 0 (Mon) to 6 (Sun)",
        ),
    ],
)
def test_corrupt_config_names_file_place_and_problem(tmp_path: Path, data: Any, message: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_truncated_config_is_an_error_not_an_empty_scheduler(tmp_path: Path) -> None:
    path = tmp_path / "scheduler_config.json"
    save_config(path, sample_config())
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ConfigError, match="invalid JSON"):
        load_config(path)


def test_non_utf8_config_names_the_byte(tmp_path: Path) -> None:
    path = _write(tmp_path, "")
    path.write_bytes(b'{"schema": 1, "x": "\xff"}')
    with pytest.raises(ConfigError, match=r"byte 20: not UTF-8 text"):
        load_config(path)


def test_a_schedule_object_brings_its_expression_and_zone() -> None:

    j = job(schedule=CronSchedule("0 3 * * *", "Europe/Paris"))
    assert (j.schedule, j.tz) == ("0 3 * * *", "Europe/Paris")
    with pytest.raises(ConfigError, match="^job 'nightly' field 'tz': 'Asia/Tokyo' contradicts the schedule's zone"):
        job(schedule=CronSchedule("0 3 * * *", "Europe/Paris"), tz="Asia/Tokyo")

    class Zoneless:
        def next_after(self, dt: datetime) -> datetime:
            return dt

    with pytest.raises(ConfigError, match="does not say its zone; pass the expression and tz="):
        job(schedule=Zoneless())
