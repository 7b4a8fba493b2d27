"""`job add` notification and hook flags, and `run --once` delivering before it exits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rustybackup.cli import cli, schedule_cmds
from rustybackup.errors import BackupError
from sched_fakes import FakeManager
from test_notify import _Hook


def invoke(repo: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--repo", str(repo), *args], catch_exceptions=False)


def _job_entry(repo: Path, job_id: str) -> dict[str, Any]:
    jobs = json.loads((repo / "scheduler_config.json").read_text())["jobs"]
    entry: dict[str, Any] = next(j for j in jobs if j["id"] == job_id)
    return entry


def test_job_add_stores_notify_and_hooks(tmp_path: Path) -> None:
    r = invoke(
        tmp_path,
        "job",
        "add",
        "nightly",
        "--db",
        "app",
        "--cron",
        "0 2 * * *",
        "--notify-webhook",
        "https://hooks.example.org/a",
        "--notify-webhook",
        "http://127.0.0.1:9/b",
        "--notify-email",
        "ops@example.org",
        "--notify-on",
        "failure,damage",
        "--notify-webhook-format",
        "slack",
        "--pre-hook",
        "pg_isready",
        "--post-hook",
        "logger done",
        "--hook-timeout",
        "2m",
        "--pre-hook-failure",
        "run",
    )
    assert r.exit_code == 0, r.output
    entry = _job_entry(tmp_path, "nightly")
    assert entry["notify"] == {
        "webhooks": ["https://hooks.example.org/a", "http://127.0.0.1:9/b"],
        "emails": ["ops@example.org"],
        "on": ["damage", "failure"],
        "webhook_format": "slack",
    }
    assert entry["hooks"] == {"pre": "pg_isready", "post": "logger done", "timeout": 120.0, "pre_failure": "run"}
    listed = json.loads(invoke(tmp_path, "job", "list", "--json").output)["jobs"][0]
    assert listed["notify"] == entry["notify"] and listed["hooks"] == entry["hooks"]
    assert invoke(tmp_path, "job", "add", "plain", "--db", "app", "--cron", "0 3 * * *").exit_code == 0
    assert "notify" not in _job_entry(tmp_path, "plain") and "hooks" not in _job_entry(tmp_path, "plain")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--notify-webhook", "ftp://x"], "notify webhook 'ftp://x': expected an http:// or https:// URL"),
        (["--notify-email", "x", "--notify-on", "failure"], "notify email 'x'"),
        (["--notify-webhook", "http://x", "--notify-on", "often"], "notify-on: 'often' is not one of"),
        (["--notify-on", "failure"], "--notify-on/--notify-webhook-format need a --notify-webhook or --notify-email"),
        (["--hook-timeout", "1m"], "--hook-timeout/--pre-hook-failure need a --pre-hook or --post-hook"),
        (["--pre-hook", "true", "--hook-timeout", "soon"], "invalid duration 'soon'"),
    ],
)
def test_bad_flags_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    r = invoke(tmp_path, "job", "add", "j", "--db", "d", "--cron", "0 2 * * *", *args)
    assert r.exit_code == 2 and message in r.output
    assert not (tmp_path / "scheduler_config.json").exists()


def test_run_once_delivers_before_it_exits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _Hook(fail=1)  # the first POST fails: the retry (after the backoff) must still happen before exit
    try:
        manager = FakeManager(tmp_path)
        manager.fail["broken"] = BackupError("source vanished")
        monkeypatch.setattr(schedule_cmds, "open_manager", lambda repo: manager)
        for jid in ("ok", "broken"):
            r = invoke(
                tmp_path,
                "job",
                "add",
                jid,
                "--db",
                jid,
                "--cron",
                "* * * * *",
                "--notify-webhook",
                hook.url,
                "--notify-on",
                "failure,success",
                "--pre-hook",
                f"echo {jid} >> {tmp_path / 'pre.log'}",
            )
            assert r.exit_code == 0, r.output
        cfg = json.loads((tmp_path / "scheduler_config.json").read_text())
        for entry in cfg["jobs"]:
            entry["added_at"] = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
        (tmp_path / "scheduler_config.json").write_text(json.dumps(cfg))
        r = invoke(tmp_path, "run", "--once", "--metrics-port", "0")
        assert r.exit_code == 1 and "source vanished" in r.output
        assert "serving metrics on http://127.0.0.1:" in r.output
        assert sorted((b["job"], b["event"]) for b in hook.bodies) == [("broken", "failure"), ("ok", "success")]
        assert hook.attempts == 3
        assert sorted((tmp_path / "pre.log").read_text().split()) == ["broken", "ok"]
    finally:
        hook.close()
