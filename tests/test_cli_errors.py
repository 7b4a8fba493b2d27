"""Damaged catalogs and configuration files give one clear line naming the file, the row
or job and the field, with a trustworthy exit code; never ``error: unexpected ...``."""

from __future__ import annotations

import gc
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rustybackup import BackupManager
from rustybackup.cli import cli
from rustybackup.errors import CatalogError, ConfigError
from rustybackup.history import History

COMMANDS = (("job", "list"), ("run", "--once"), ("history",))


def run(repo: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--repo", str(repo), *args])


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with one database and one job that is not yet due (so ``run --once``
    reads the history and the configuration but starts nothing)."""
    repo = tmp_path / "repo"
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    assert run(repo, "init").exit_code == 0
    assert run(repo, "db", "add", "d", "--path", str(src)).exit_code == 0
    assert run(repo, "job", "add", "j1", "--db", "d", "--cron", "0 0 1 1 *").exit_code == 0
    return repo


def damage_history(repo: Path, sql: str) -> None:
    with sqlite3.connect(repo / "catalog.db") as db:
        db.execute(sql)
    db.close()


def one_error_line(result: Result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "unexpected" not in lines[0] and "Traceback" not in result.output
    return lines[0]


INSERT = "INSERT INTO sched_executions (id, job_id, scheduled_for, status{}) VALUES ('x', 'j1', {}, 'completed'{})"


@pytest.mark.parametrize(
    ("sql", "commands", "message"),
    [
        (
            INSERT.format("", "'abc'", ""),
            COMMANDS,
            "sched_executions rows of job 'j1' field 'scheduled_for': 'abc' is not a time in microseconds",
        ),
        (
            INSERT.format("", 2**63 - 1, ""),
            COMMANDS,
            f"sched_executions rows of job 'j1' field 'scheduled_for': {2**63 - 1} is not a time in microseconds",
        ),
        (
            INSERT.format(", started_at", 5, ", -9223372036854775807"),
            COMMANDS[2:],
            "sched_executions row 'x' field 'started_at': -9223372036854775807 is not a time",
        ),
        (
            INSERT.format(", bytes_read", 5, ", 'lots'"),
            COMMANDS[2:],
            "sched_executions row 'x' field 'bytes_read': expected a non-negative integer, got 'lots'",
        ),
        (
            "INSERT INTO sched_executions (id, job_id, scheduled_for, status) VALUES ('x', 'j1', 5, 'bogus')",
            COMMANDS[2:],
            "sched_executions row 'x' field 'status': 'bogus' is not one of pending, running,",
        ),
        (
            "INSERT INTO sched_executions (id, job_id, scheduled_for, status) VALUES (NULL, 'j1', 5, 'failed')",
            COMMANDS[2:],
            "sched_executions row None field 'id': expected text, got None",
        ),
    ],
)
def test_damaged_history_rows_are_named(
    repo: Path, sql: str, commands: tuple[tuple[str, ...], ...], message: str
) -> None:
    damage_history(repo, sql)
    for command in commands:
        result = run(repo, *command)
        assert result.exit_code == 1, (command, result.output)
        assert message in one_error_line(result)
        assert one_error_line(result).startswith(f"error: {repo / 'catalog.db'}: ")


def test_a_running_row_with_an_unreadable_owner_and_lease_counts_as_expired(repo: Path) -> None:
    damage_history(
        repo,
        "INSERT INTO sched_executions (id, job_id, scheduled_for, status, owner, lease_until)"
        " VALUES ('x', 'j1', 5, 'running', 5, 'z')",
    )
    assert run(repo, "run", "--once").exit_code == 0
    rows = json.loads(run(repo, "history", "--json").stdout)
    assert [(r["id"], r["status"]) for r in rows] == [("x", "failed")]
    assert rows[0]["error"] == "interrupted: 5 stopped during the run"


def test_a_history_table_of_another_shape_is_a_catalog_error(repo: Path) -> None:
    damage_history(repo, "DROP TABLE sched_executions")
    damage_history(repo, "CREATE TABLE sched_executions (id, job_id, scheduled_for)")
    for command in COMMANDS:
        result = run(repo, *command)
        assert result.exit_code == 1
        assert one_error_line(result) == f"error: {repo / 'catalog.db'}: run history: no such column: status"


def test_a_catalog_that_is_not_a_database_is_named(repo: Path) -> None:
    gc.collect()  # connections of earlier in-process commands: their WAL would still hold page 1
    for suffix in ("-wal", "-shm"):
        Path(f"{repo / 'catalog.db'}{suffix}").unlink(missing_ok=True)
    (repo / "catalog.db").write_bytes(b"garbage" * 1000)
    for command in COMMANDS:
        result = run(repo, *command)
        assert result.exit_code == 1
        assert "file is not a database" in one_error_line(result)
        assert str(repo / "catalog.db") in result.stderr


def rewrite_config(repo: Path, change: object) -> Path:
    path = repo / "scheduler_config.json"
    if isinstance(change, str):
        path.write_text(change)
    else:
        data = json.loads(path.read_text())
        assert callable(change)
        change(data["jobs"][0])
        path.write_text(json.dumps(data))
    return path


def set_field(name: str, value: object) -> object:
    return lambda job: job.__setitem__(name, value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "invalid JSON: nested too deeply"),
        ('{"schema": 1, "jobs": [' * 5000 + "]}" * 5000, "invalid JSON: nested too deeply"),
        ('{"schema": 1, "jobs": [{"priority": ' + "9" * 5000 + "}]}", "invalid JSON: Exceeds the limit (4300 digits)"),
        (set_field("priority", 10**400), "job 'j1' field 'priority': an integer of 1329 bits is out of range 0-255"),
        (set_field("priority", "high"), "job 'j1' field 'priority': expected an integer, got \"high\""),
        (set_field("max_duration", 1e300), "job 'j1' field 'max_duration': expected a number of seconds up to"),
        (set_field("max_duration", 10**30), "job 'j1' field 'max_duration': expected a number of seconds up to"),
        (set_field("max_duration", -1), "job 'j1' field 'max_duration': must be positive, got -1 day, 23:59:59"),
        (set_field("backup_type", [1]), "job 'j1' field 'backup_type': expected a string, got [1]"),
        (set_field("tags", "abc"), "job 'j1' field 'tags': expected a list, got \"abc\""),
        (set_field("enabled", "yes"), "job 'j1' field 'enabled': expected true or false, got \"yes\""),
        (
            set_field("retention", "redundancy=99999999999999999999999"),
            "job 'j1' field 'retention': invalid retention setting redundancy: at most 4294967295",
        ),
        (set_field("added_at", "9999-12-31T23:59:59+00:00"), "job 'j1': no run after 9999-12-31T23:59:59+00:00"),
        (set_field("misfire", {"a": 1}), "job 'j1' field 'misfire': expected a string, got {\"a\": 1}"),
        (set_field("name", "x" * 1000), None),
    ],
)
def test_damaged_configuration_names_file_job_and_field(repo: Path, change: object, message: str | None) -> None:
    path = rewrite_config(repo, change)
    for command in COMMANDS[:2]:
        result = run(repo, *command)
        if message is None:
            assert result.exit_code == 0, result.output
            continue
        assert result.exit_code == 2, (command, result.output)
        line = one_error_line(result)
        assert line.startswith(f"error: {path}: ") and message in line, line
        assert line.count(str(path)) == 1 and len(line) < 400


def test_nan_max_duration_is_refused(repo: Path) -> None:
    path = repo / "scheduler_config.json"
    path.write_text(path.read_text().replace('"max_duration": null', '"max_duration": NaN'))
    result = run(repo, "job", "list")
    assert result.exit_code == 2
    assert one_error_line(result) == (
        f"error: {path}: job 'j1' field 'max_duration': expected a number of seconds up to 86400000000000, got NaN"
    )


def test_history_filters_are_checked(tmp_path: Path) -> None:
    history = History(tmp_path / "catalog.db")
    try:
        with pytest.raises(ConfigError, match=r"^status 'bogus' is not one of pending, running, completed"):
            history.query(status="bogus")
        with pytest.raises(ConfigError, match=r"^limit must be a whole number of at least 0, not -1$"):
            history.query(limit=-1)
        assert history.query(limit=2**80) == []
    finally:
        history.close()


def test_an_unopenable_history_is_a_catalog_error(tmp_path: Path) -> None:
    (tmp_path / "catalog.db").mkdir()
    with pytest.raises(CatalogError, match=rf"^{tmp_path / 'catalog.db'}: cannot open the run history: "):
        History(tmp_path / "catalog.db")


def test_the_api_raises_the_same_errors(repo: Path) -> None:
    """``BackupManager`` users get the CatalogError too, not a TypeError."""
    from rustybackup import BackupScheduler

    damage_history(repo, INSERT.format("", "'abc'", ""))
    with pytest.raises(CatalogError, match="field 'scheduled_for': 'abc' is not a time"):
        BackupScheduler(BackupManager(repo))


def test_a_configuration_that_cannot_be_read_is_named(repo: Path) -> None:
    path = repo / "scheduler_config.json"
    path.unlink()
    path.mkdir()
    for command in COMMANDS[:2]:
        result = run(repo, *command)
        assert result.exit_code == 2
        assert one_error_line(result) == (f"error: {path}: cannot read the scheduler configuration: Is a directory")


def test_history_since_at_the_end_of_the_calendar_is_a_usage_error(repo: Path) -> None:
    result = run(repo, "history", "--since", "0001-01-01T00:00:00")
    assert result.exit_code == 2
    # Through CliRunner click prints its usage block; `main()` turns it into one line.
    assert result.stderr.splitlines()[-1] == "Error: Invalid value for '--since': 0001-01-01 00:00:00 is out of range"
