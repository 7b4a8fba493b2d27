"""Pre/post hooks with real shell commands, alone and around scheduled runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rustybackup.config import load_config
from rustybackup.enums import BackupType, ExecutionStatus
from rustybackup.errors import ConfigError
from rustybackup.hooks import JobHooks, hook_env, run_hook
from rustybackup.jobs import ScheduledBackup
from rustybackup.scheduler import BackupScheduler
from sched_fakes import FakeClock, FakeManager

T0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
DUMP = 'env | grep ^RUSTYBACKUP_ | sort > "$OUT"'


def _make(tmp_path: Path) -> tuple[BackupScheduler, FakeManager, FakeClock]:
    clock = FakeClock(T0)
    manager = FakeManager(tmp_path, clock=clock)
    return BackupScheduler(manager, clock=clock), manager, clock


def _job(hooks: JobHooks) -> ScheduledBackup:
    return ScheduledBackup("nightly", "Nightly", "app", BackupType.INCREMENTAL, "0 1 * * *", hooks=hooks)


def _env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_run_hook_passes_the_documented_environment(tmp_path: Path) -> None:
    out = tmp_path / "env.txt"
    env = hook_env(
        "post",
        "j1",
        "app",
        "full",
        status="completed",
        set_id="s1",
        error=None,
        base={"OUT": str(out)},
    )
    result = run_hook(DUMP, env, timedelta(seconds=30))
    assert result.ok, result.output
    assert _env_file(out) == {
        "RUSTYBACKUP_BACKUP_TYPE": "full",
        "RUSTYBACKUP_DATABASE": "app",
        "RUSTYBACKUP_ERROR": "",
        "RUSTYBACKUP_JOB": "j1",
        "RUSTYBACKUP_PHASE": "post",
        "RUSTYBACKUP_SET_ID": "s1",
        "RUSTYBACKUP_STATUS": "completed",
    }


def test_failing_hook_reports_status_and_output() -> None:
    result = run_hook(
        "echo no space left >&2; exit 3",
        hook_env("pre", "j", "d", None, base={}),
        timedelta(seconds=30),
    )
    assert not result.ok and result.returncode == 3
    assert result.reason("pre") == "pre-hook 'echo no space left >&2; exit 3' exited with status 3: no space left"


def test_hook_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    marker = tmp_path / "late"
    # The child (sleep) holds the output pipe: only killing the whole group ends the wait.
    cmd = f"sleep 30; touch {marker}"
    result = run_hook(cmd, hook_env("pre", "j", "d", None, base={}), timedelta(seconds=0.5))
    assert result.returncode is None and not result.ok
    assert "timed out" in result.reason("pre")
    assert not marker.exists()


def test_pre_hook_failure_skips_the_run_with_the_reason(tmp_path: Path) -> None:
    s, m, clock = _make(tmp_path)
    s.add_job(_job(JobHooks(pre="echo replica lagging; exit 1", post=f"touch {tmp_path / 'post'}")))
    clock.set(T0 + timedelta(hours=1))
    assert s.execute_due_jobs() == []
    assert m.calls == []
    (e,) = s.history(job_id="nightly")
    assert e.status is ExecutionStatus.SKIPPED
    assert e.error == "pre-hook 'echo replica lagging; exit 1' exited with status 1: replica lagging"
    assert (tmp_path / "post").exists()  # the post-hook still learns the outcome


def test_pre_hook_failure_policy_run_goes_on(tmp_path: Path) -> None:
    s, _m, clock = _make(tmp_path)
    s.add_job(_job(JobHooks(pre="exit 1", pre_failure="run")))
    clock.set(T0 + timedelta(hours=1))
    assert len(s.execute_due_jobs()) == 1
    (e,) = s.history(job_id="nightly")
    assert e.status is ExecutionStatus.COMPLETED


def test_post_hook_sees_the_set_and_the_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUT", str(tmp_path / "post.txt"))
    monkeypatch.setenv("PRE", str(tmp_path / "pre.txt"))
    s, _m, clock = _make(tmp_path)
    s.add_job(_job(JobHooks(pre='env | grep ^RUSTYBACKUP_ | sort > "$PRE"', post=DUMP)))
    clock.set(T0 + timedelta(hours=1))
    (set_id,) = s.execute_due_jobs()
    post = _env_file(tmp_path / "post.txt")
    assert post["RUSTYBACKUP_SET_ID"] == set_id and post["RUSTYBACKUP_STATUS"] == "completed"
    assert post["RUSTYBACKUP_BACKUP_TYPE"] == "incremental" and post["RUSTYBACKUP_JOB"] == "nightly"
    pre = _env_file(tmp_path / "pre.txt")
    assert (
        pre["RUSTYBACKUP_PHASE"] == "pre" and pre["RUSTYBACKUP_SET_ID"] == "" and pre["RUSTYBACKUP_DATABASE"] == "app"
    )


def test_post_hook_of_a_failed_backup_gets_the_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUT", str(tmp_path / "post.txt"))
    s, m, clock = _make(tmp_path)
    m.fail["app"] = OSError("disk full")
    s.add_job(_job(JobHooks(post=DUMP + "; exit 7")))  # a failing post-hook changes nothing
    clock.set(T0 + timedelta(hours=1))
    assert s.execute_due_jobs() == []
    post = _env_file(tmp_path / "post.txt")
    assert post["RUSTYBACKUP_STATUS"] == "failed" and post["RUSTYBACKUP_ERROR"] == "OSError: disk full"
    (e,) = s.history(job_id="nightly")
    assert e.status is ExecutionStatus.FAILED and e.error == "OSError: disk full"


def test_hooks_persist_and_old_configs_load(tmp_path: Path) -> None:
    s, _, _ = _make(tmp_path)
    hooks = JobHooks(pre="true", post="echo done", timeout=timedelta(seconds=90), pre_failure="run")
    s.add_job(_job(hooks))
    s.add_job(ScheduledBackup("plain", "Plain", "app", BackupType.FULL, "0 2 * * *"))
    config = load_config(s.config_file)
    assert config.jobs["nightly"].hooks == hooks and config.jobs["plain"].hooks is None
    entry = next(j for j in json.loads(s.config_file.read_text())["jobs"] if j["id"] == "plain")
    assert "hooks" not in entry  # files written before hooks existed look the same


@pytest.mark.parametrize(
    ("hooks", "message"),
    [
        ("true", "field 'hooks': expected an object"),
        ({"pre": 5}, "field 'hooks.pre': expected a string"),
        ({"timeout": -1}, "field 'hooks.timeout': expected a positive number"),
        ({"pre_failure": "retry"}, "'retry' is not one of skip, run"),
        ({"pre": "true", "when": "x"}, "field 'hooks.when': unknown field"),
    ],
)
def test_damaged_hooks_in_the_config_name_job_and_field(tmp_path: Path, hooks: object, message: str) -> None:
    s, _, _ = _make(tmp_path)
    s.add_job(_job(JobHooks(pre="true")))
    data = json.loads(s.config_file.read_text())
    data["jobs"][0]["hooks"] = hooks
    s.config_file.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=rf"job 'nightly'.*{message}"):
        load_config(s.config_file)


def test_job_hooks_validate() -> None:
    with pytest.raises(ConfigError, match="pre_hook"):
        JobHooks(pre="  ")
    with pytest.raises(ConfigError, match="hook_timeout"):
        JobHooks(pre="true", timeout=timedelta(0))
