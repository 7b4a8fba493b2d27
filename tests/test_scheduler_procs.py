"""Two scheduler processes on one repository, and a process killed mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time as _time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rustybackup import BackupScheduler, ScheduledBackup
from rustybackup.enums import BackupType, ExecutionStatus
from rustybackup.history import History
from sched_fakes import FakeClock, FakeManager

UTC = UTC
T0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
CHILD = Path(__file__).with_name("sched_child.py")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and fork-free subprocesses")


def spawn(repo: Path, mode: str, when: datetime) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(CHILD), str(repo), mode, when.isoformat()])


def test_two_processes_racing_run_each_of_100_occurrences_exactly_once(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    setup = BackupScheduler(FakeManager(tmp_path), clock=clock)
    setup.add_jobs(
        ScheduledBackup(f"job{i:03d}", f"Job {i}", f"db{i:03d}", BackupType.INCREMENTAL, "*/5 * * * *")
        for i in range(100)
    )
    setup.close()
    tick = T0 + timedelta(minutes=5)
    procs = [spawn(tmp_path, "race", tick) for _ in range(2)]
    _time.sleep(0.5)
    (tmp_path / "go").touch()
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    ran = [line for f in tmp_path.glob("ran-*.txt") for line in f.read_text().split()]
    assert len(ran) == 100 and len(set(ran)) == 100  # none twice, none missed
    history = BackupScheduler(FakeManager(tmp_path), clock=clock).history()
    assert len(history) == 100
    assert {e.status for e in history} == {ExecutionStatus.COMPLETED}
    assert {e.scheduled_for for e in history} == {tick}


def test_a_run_killed_mid_backup_is_failed_interrupted_and_the_next_one_runs(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    setup = BackupScheduler(FakeManager(tmp_path), clock=clock)
    setup.add_job(ScheduledBackup("nightly", "Nightly", "db", BackupType.FULL, "*/5 * * * *"))
    setup.close()
    tick = T0 + timedelta(minutes=5)
    (tmp_path / "go").touch()
    child = spawn(tmp_path, "hang", tick)
    started = tmp_path / f"started-{child.pid}.txt"
    deadline = _time.monotonic() + 60
    while not started.exists() and _time.monotonic() < deadline:
        _time.sleep(0.02)
    assert started.exists()
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)

    clock.set(tick + timedelta(seconds=30))
    manager = FakeManager(tmp_path, clock=clock)
    restarted = BackupScheduler(manager, clock=clock)
    [row] = restarted.history(job_id="nightly")
    assert row.status is ExecutionStatus.FAILED
    assert (row.error or "").startswith("interrupted: ") and f":{child.pid}:" in (row.error or "")
    assert restarted.execute_due_jobs() == []  # the interrupted occurrence is not rerun
    clock.set(T0 + timedelta(minutes=10))
    assert len(restarted.execute_due_jobs()) == 1
    assert [e.status for e in restarted.history(job_id="nightly")] == [
        ExecutionStatus.COMPLETED,
        ExecutionStatus.FAILED,
    ]


def test_a_run_held_by_another_host_blocks_until_its_lease_expires(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    s = BackupScheduler(FakeManager(tmp_path, clock=clock), clock=clock, lease=timedelta(minutes=7))
    s.add_job(ScheduledBackup("j", "J", "db", BackupType.FULL, "*/5 * * * *"))
    other = History(tmp_path / "catalog.db", owner="elsewhere.example:4242:abcd")
    t5 = T0 + timedelta(minutes=5)
    assert other.claim("j", t5, t5, timedelta(minutes=7)).outcome == "claimed"
    s.execute_due_jobs(T0 + timedelta(minutes=5))  # already claimed elsewhere: nothing
    s.execute_due_jobs(T0 + timedelta(minutes=10))  # lease alive: skipped with the reason
    s.execute_due_jobs(T0 + timedelta(minutes=15))  # lease expired at 00:12: interrupted, runs
    rows = sorted((e.scheduled_for.minute, e.status, e.error) for e in s.history(job_id="j"))
    assert rows == [
        (5, ExecutionStatus.FAILED, "interrupted: elsewhere.example:4242:abcd stopped during the run"),
        (10, ExecutionStatus.SKIPPED, "previous run (scheduled for 2026-01-05T00:05:00+00:00) is still running"),
        (15, ExecutionStatus.COMPLETED, None),
    ]


def test_cli_run_stops_cleanly_after_the_current_job_on_sigterm(tmp_path: Path) -> None:
    real_now = datetime.now(UTC)
    setup = BackupScheduler(FakeManager(tmp_path), clock=lambda: real_now - timedelta(hours=2))
    setup.add_job(ScheduledBackup("first", "First", "first", BackupType.FULL, "*/5 * * * *", priority=200))
    setup.add_job(ScheduledBackup("second", "Second", "second", BackupType.FULL, "*/5 * * * *", priority=100))
    setup.close()
    child = spawn(tmp_path, "cli-run", real_now)
    started = tmp_path / "started.txt"
    deadline = _time.monotonic() + 60
    while not started.exists() and _time.monotonic() < deadline:
        _time.sleep(0.02)
    os.kill(child.pid, signal.SIGTERM)
    assert child.wait(timeout=60) == 0
    assert (tmp_path / "ran.txt").read_text().split() == ["first"]  # "second" never started
    after = BackupScheduler(FakeManager(tmp_path))
    assert len(after.history(job_id="first", status="completed")) == 1
    # The older missed occurrences were recorded as superseded; the catch-up itself was not
    # started, so no RUNNING row is left behind for "second".
    assert {e.status for e in after.history(job_id="second")} == {ExecutionStatus.SKIPPED}
