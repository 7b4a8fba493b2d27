"""The scheduler's command line: job/window management, run --once, history."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rustybackup.cli.schedule_cmds as schedule_cmds
from click.testing import CliRunner
from rustybackup.cli import cli
from rustybackup.errors import BackupError
from sched_fakes import FakeManager


def invoke(repo: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--repo", str(repo), *args], catch_exceptions=False)


def test_job_and_window_lifecycle(tmp_path: Path) -> None:
    r = invoke(
        tmp_path,
        "window",
        "add",
        "nights",
        "--days",
        "mon-fri",
        "--start",
        "18:00",
        "--end",
        "06:00",
        "--tz",
        "Europe/Paris",
    )
    assert r.exit_code == 0, r.output
    assert invoke(tmp_path, "window", "add", "off", "--preset", "off-hours").exit_code == 0
    r = invoke(
        tmp_path,
        "job",
        "add",
        "nightly",
        "--db",
        "app",
        "--type",
        "incremental",
        "--cron",
        "0 2 * * *",
        "--window",
        "nights",
        "--priority",
        "200",
        "--max-duration",
        "2h",
        "--retention",
        "redundancy=2",
    )
    assert r.exit_code == 0, r.output
    assert r.output.startswith("added job nightly; next run ")
    jobs = json.loads(invoke(tmp_path, "job", "list", "--json").output)["jobs"]
    assert jobs[0]["id"] == "nightly" and jobs[0]["max_duration"] == "2h" and jobs[0]["priority"] == 200
    windows = json.loads(invoke(tmp_path, "window", "list", "--json").output)
    assert [w["id"] for w in windows] == ["nights", "off"]
    assert "nightly" in invoke(tmp_path, "job", "list").output
    assert invoke(tmp_path, "job", "disable", "nightly").exit_code == 0
    assert json.loads(invoke(tmp_path, "job", "list", "--json").output)["jobs"][0]["enabled"] is False
    r = invoke(tmp_path, "window", "remove", "nights")
    assert r.exit_code == 2 and "error: window 'nights': still used by job(s) nightly" in r.output
    assert invoke(tmp_path, "job", "remove", "nightly").exit_code == 0
    assert invoke(tmp_path, "window", "remove", "nights").exit_code == 0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["job", "add", "j", "--db", "d", "--cron", "0 2 * * *", "--priority", "300"],
            2,
            "error: job 'j' field 'priority': 300 is out of range 0-255",
        ),
        (
            ["job", "add", "j", "--db", "d", "--cron", "0 2 * * *", "--max-duration", "soon"],
            2,
            "invalid duration 'soon': use a number and a unit (w, d, h, m, s)",
        ),
        (
            ["job", "add", "j", "--db", "d", "--cron", "0 2 * * *", "--window", "nope"],
            2,
            "error: job 'j' field 'window_id': unknown window 'nope'",
        ),
        (["window", "add", "w", "--days", "mon"], 2, "a custom window needs --days, --start and --end"),
        (["window", "add", "w", "--preset", "off-hours", "--days", "mon"], 2, "give either --preset or"),
        (
            ["window", "add", "w", "--days", "mon", "--start", "25:00", "--end", "01:00"],
            2,
            "'25:00' is not a time of day HH:MM",
        ),
        (["job", "remove", "ghost"], 2, "error: job 'ghost': no such job"),
    ],
)
def test_bad_input_gives_one_line_errors_and_usage_codes(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    r = invoke(tmp_path, *args)
    assert r.exit_code == code
    assert message in r.output


def test_a_corrupt_config_makes_every_command_fail_clearly(tmp_path: Path) -> None:
    (tmp_path / "scheduler_config.json").write_text("{not json")
    r = invoke(tmp_path, "job", "list")
    assert r.exit_code == 2  # ConfigError: invalid configuration, as for a bad flag
    assert f"error: {tmp_path / 'scheduler_config.json'}: line 1 column 2: invalid JSON" in r.output


def test_run_once_runs_due_jobs_and_history_shows_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = FakeManager(tmp_path)
    manager.fail["broken"] = BackupError("source vanished")
    monkeypatch.setattr(schedule_cmds, "open_manager", lambda repo: manager)
    for jid in ("ok", "broken"):
        assert invoke(tmp_path, "job", "add", jid, "--db", jid, "--cron", "* * * * *").exit_code == 0
    # Pretend the jobs were added two hours ago: one catch-up run each (misfire run_once).
    cfg = json.loads((tmp_path / "scheduler_config.json").read_text())
    for entry in cfg["jobs"]:
        entry["added_at"] = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    (tmp_path / "scheduler_config.json").write_text(json.dumps(cfg))
    r = invoke(tmp_path, "run", "--once")
    assert r.exit_code == 1  # one job failed
    assert manager.registered[0] in r.output and "broken" in r.output and "source vanished" in r.output
    rows = json.loads(invoke(tmp_path, "history", "--json", "--status", "completed").output)
    assert [(e["job_id"], e["status"]) for e in rows] == [("ok", "completed")]
    failed = json.loads(invoke(tmp_path, "history", "--json", "--job", "broken", "--status", "failed").output)
    assert failed[0]["error"] == "BackupError: source vanished"
    table = invoke(tmp_path, "history").output
    assert "broken" in table and "failed" in table


def test_no_repository_is_a_usage_error(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["job", "list"], env={"RUSTYBACKUP_REPO": ""})
    assert r.exit_code == 2 and "no repository" in r.output
