"""BackupScheduler in one process: order, windows, misfires, max_duration, retention,
failures, persistence, history, run_forever, and a simulated year against a model."""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from rustybackup import BackupScheduler, BackupWindow, ScheduledBackup, business_hours, off_hours
from rustybackup.enums import BackupType, ExecutionStatus, VerificationType
from rustybackup.errors import BackupError, ConfigError
from rustybackup.retention import RetentionPolicy
from sched_fakes import FakeClock, FakeManager

UTC = UTC
T0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)  # a Monday


def make(tmp_path: Path, start: datetime = T0, **kw: Any) -> tuple[BackupScheduler, FakeManager, FakeClock]:
    clock = FakeClock(start)
    manager = FakeManager(tmp_path, clock=clock)
    return BackupScheduler(manager, clock=clock, **kw), manager, clock


def job(jid: str, cron: str, **kw: Any) -> ScheduledBackup:
    kw.setdefault("database", jid)
    return ScheduledBackup(jid, jid.title(), kw.pop("database"), kw.pop("backup_type", BackupType.FULL), cron, **kw)


def statuses(s: BackupScheduler, job_id: str) -> list[tuple[datetime, ExecutionStatus, str | None]]:
    return sorted((e.scheduled_for, e.status, e.error) for e in s.history(job_id=job_id))


def test_due_jobs_run_in_priority_order_then_due_time_then_id(tmp_path: Path) -> None:
    s, m, clock = make(tmp_path)
    s.add_job(job("low", "0 1 * * *", priority=10))
    s.add_job(job("b-high", "0 1 * * *", priority=200))
    s.add_job(job("a-high", "0 1 * * *", priority=200))
    s.add_job(job("early", "30 0 * * *", priority=10, misfire="skip"))
    now = datetime(2026, 1, 5, 1, 0, 30, tzinfo=UTC)
    # 00:30 is 30 minutes late: with misfire "skip" it is missed, not run.
    assert [d.job_id for d in s.due_jobs(now)] == ["a-high", "b-high", "low"]
    ids = s.execute_due_jobs(now)
    assert [c[0] for c in m.calls] == ["a-high", "b-high", "low"]
    assert len(ids) == 3 and ids == m.registered
    assert s.history(job_id="early")[0].status is ExecutionStatus.SKIPPED


def test_earlier_due_wins_a_priority_tie(tmp_path: Path) -> None:
    s, m, clock = make(tmp_path, misfire_grace=timedelta(hours=2))
    s.add_job(job("z-early", "0 1 * * *", priority=5))
    s.add_job(job("a-late", "30 1 * * *", priority=5))
    s.execute_due_jobs(T0 + timedelta(hours=1, minutes=45))
    assert [c[0] for c in m.calls] == ["z-early", "a-late"]


def test_job_outside_its_window_is_skipped_with_the_reason(tmp_path: Path) -> None:
    s, m, clock = make(tmp_path)
    s.add_window(business_hours("biz"))
    s.add_job(job("noon", "0 12 * * *", window_id="biz"))
    s.add_job(job("night", "0 2 * * *", window_id="biz"))
    s.execute_due_jobs(T0 + timedelta(hours=2))
    s.execute_due_jobs(T0 + timedelta(hours=12))
    assert statuses(s, "night") == [(T0 + timedelta(hours=2), ExecutionStatus.SKIPPED, "outside window biz")]
    assert statuses(s, "noon")[0][1] is ExecutionStatus.COMPLETED


def test_deferred_job_runs_when_its_window_opens(tmp_path: Path) -> None:
    s, m, clock = make(tmp_path)
    s.add_window(business_hours("biz"))
    s.add_job(job("early", "0 7 * * *", window_id="biz", window_policy="defer"))
    assert s.next_run_times() == {"early": T0 + timedelta(hours=9)}
    assert s.execute_due_jobs(T0 + timedelta(hours=7)) == []
    ids = s.execute_due_jobs(T0 + timedelta(hours=9))
    assert len(ids) == 1
    [e] = s.history(job_id="early")
    assert (e.scheduled_for, e.status) == (T0 + timedelta(hours=7), ExecutionStatus.COMPLETED)


def test_retention_is_applied_after_a_successful_backup_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s, m, clock = make(tmp_path)
    s.add_job(job("ok", "0 1 * * *", retention="redundancy=2"))
    s.add_job(job("bad", "0 1 * * *", retention="redundancy=2"))
    m.fail["bad"] = BackupError("disk full")
    s.execute_due_jobs(T0 + timedelta(hours=1))
    assert m.retention_calls == [("ok", RetentionPolicy.redundancy(2))]


def test_a_failing_job_is_recorded_and_the_others_still_run(tmp_path: Path) -> None:
    s, m, clock = make(tmp_path)
    s.add_job(job("boom", "0 1 * * *", priority=255))
    s.add_job(job("fine", "0 1 * * *"))
    m.fail["boom"] = OSError(28, "No space left on device")
    ids = s.execute_due_jobs(T0 + timedelta(hours=1))
    assert len(ids) == 1
    [e] = s.history(job_id="boom")
    assert e.status is ExecutionStatus.FAILED and "No space left on device" in (e.error or "")
    assert s.history(job_id="fine")[0].status is ExecutionStatus.COMPLETED


def test_max_duration_cancels_and_registers_nothing(tmp_path: Path) -> None:
    s, m, clock = make(tmp_path)
    s.add_job(job("slow", "0 1 * * *", max_duration=timedelta(milliseconds=200)))
    m.block_until_cancel.add("slow")
    assert s.execute_due_jobs(T0 + timedelta(hours=1)) == []
    [e] = s.history(job_id="slow")
    assert e.status is ExecutionStatus.CANCELLED
    assert (e.error or "").startswith("max_duration 0:00:00.200000 reached")
    assert m.registered == []


def test_a_run_whose_previous_run_is_still_going_is_skipped(tmp_path: Path) -> None:
    s, m, clock = make(tmp_path)
    s.add_job(job("long", "*/5 * * * *"))
    m.hold = threading.Event()
    first = threading.Thread(target=s.execute_due_jobs, args=(T0 + timedelta(minutes=5),))
    first.start()
    while not m.calls:
        threading.Event().wait(0.01)
    s.execute_due_jobs(T0 + timedelta(minutes=10))
    m.hold.set()
    first.join()
    rows = statuses(s, "long")
    assert rows[0][1] is ExecutionStatus.COMPLETED
    assert rows[1][1] is ExecutionStatus.SKIPPED
    assert rows[1][2] == "previous run (scheduled for 2026-01-05T00:05:00+00:00) is still running"


@pytest.mark.parametrize("policy", ["run_once", "skip"])
def test_restart_after_downtime_follows_the_misfire_policy(tmp_path: Path, policy: str) -> None:
    s, m, clock = make(tmp_path)
    s.add_job(job("hourly", "0 * * * *", misfire=policy))
    s.execute_due_jobs(T0 + timedelta(hours=1))
    s.close()
    # Down from 01:30 to 05:10: 02:00, 03:00, 04:00 and 05:00 were missed.
    clock.set(T0 + timedelta(hours=5, minutes=10))
    s2 = BackupScheduler(m, clock=clock)
    assert s2.list_jobs() == s.list_jobs()
    made = s2.execute_due_jobs()
    rows = statuses(s2, "hourly")
    assert [r[0].hour for r in rows] == [1, 2, 3, 4, 5]
    if policy == "run_once":
        assert len(made) == 1
        assert [r[1] for r in rows] == [ExecutionStatus.COMPLETED] + [ExecutionStatus.SKIPPED] * 3 + [
            ExecutionStatus.COMPLETED
        ]
        assert rows[2][2] == "superseded by the run for 2026-01-05T05:00:00+00:00"
    else:
        assert made == []
        assert [r[1] for r in rows[1:]] == [ExecutionStatus.SKIPPED] * 4
        assert rows[4][2] == "missed while the scheduler was not running (misfire policy skip)"
    # The next occurrence runs normally either way.
    assert len(s2.execute_due_jobs(T0 + timedelta(hours=6))) == 1


def test_disabled_scheduler_and_disabled_job_run_nothing(tmp_path: Path) -> None:
    s, m, clock = make(tmp_path)
    s.add_job(job("a", "0 * * * *"))
    s.add_job(job("b", "0 * * * *"))
    s.disable()
    assert not s.enabled and s.next_run_times() == {}
    assert s.execute_due_jobs(T0 + timedelta(hours=1)) == []
    clock.set(T0 + timedelta(hours=1, minutes=30))
    s.enable()
    s.set_job_enabled("b", False)
    assert list(s.next_run_times()) == ["a"]
    s.execute_due_jobs(T0 + timedelta(hours=2))
    assert [c[0] for c in m.calls] == ["a"]
    assert s.history(job_id="a")[0].scheduled_for == T0 + timedelta(hours=2)  # 01:00 not caught up


def test_configuration_persists_and_a_corrupt_file_refuses_to_start(tmp_path: Path) -> None:
    s, m, clock = make(tmp_path)
    s.add_window(off_hours("off", tz="Europe/Paris"))
    s.add_job(job("a", "0 2 * * *", window_id="off", priority=7))
    s.remove_job("a")
    s.add_job(job("b", "0 3 * * *", window_id="off"))
    s2 = BackupScheduler(m, clock=clock)
    assert [j.id for j in s2.list_jobs()] == ["b"] and s2.list_windows()[0].tz == "Europe/Paris"
    (tmp_path / "scheduler_config.json").write_text('{"schema": 1, "jobs": [{"id": "b"}]}')
    with pytest.raises(ConfigError, match=r"scheduler_config.json: job 'b' field 'backup_type': missing"):
        BackupScheduler(m, clock=clock)


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda s: s.add_job(job("a", "0 1 * * *")), "job 'a': duplicate id (remove it first or pass replace=True)"),
        (lambda s: s.add_job(job("x", "0 1 * * *", window_id="w9")), "job 'x' field 'window_id': unknown window 'w9'"),
        (lambda s: s.remove_job("nope"), "job 'nope': no such job"),
        (lambda s: s.remove_window("w"), "window 'w': still used by job(s) a"),
        (lambda s: s.add_window(business_hours("w")), "window 'w': already exists"),
    ],
)
def test_invalid_changes_are_rejected_and_nothing_is_saved(tmp_path: Path, action: Any, message: str) -> None:
    s, m, clock = make(tmp_path)
    s.add_window(business_hours("w"))
    s.add_job(job("a", "0 1 * * *", window_id="w"))
    before = (tmp_path / "scheduler_config.json").read_bytes()
    with pytest.raises(ConfigError) as info:
        action(s)
    assert str(info.value).startswith(message)
    assert (tmp_path / "scheduler_config.json").read_bytes() == before


def test_add_jobs_is_all_or_nothing(tmp_path: Path) -> None:
    s, m, clock = make(tmp_path)
    with pytest.raises(ConfigError, match="job 'a': duplicate id"):
        s.add_jobs([job("a", "0 1 * * *"), job("b", "0 1 * * *"), job("a", "0 2 * * *")])
    assert s.list_jobs() == [] and s.next_run_times() == {}


def test_history_filters_by_job_status_time_and_limit(tmp_path: Path) -> None:
    s, m, clock = make(tmp_path)
    s.add_job(job("a", "0 * * * *"))
    s.add_job(job("b", "0 * * * *"))
    m.fail["b"] = BackupError("nope")
    for h in range(1, 5):
        s.execute_due_jobs(T0 + timedelta(hours=h))
    assert len(s.history()) == 8
    assert {e.job_id for e in s.history(status="failed")} == {"b"}
    assert [e.scheduled_for.hour for e in s.history(job_id="a", since=T0 + timedelta(hours=3))] == [4, 3]
    assert len(s.history(limit=3)) == 3
    e = s.history(job_id="a", limit=1)[0]
    assert e.duration == timedelta(0) and e.bytes_written == 1024 and e.to_json()["status"] == "completed"


def test_verification_jobs_run_the_real_verifier_and_fail_on_damage(tmp_path: Path) -> None:
    import os

    from rustybackup import BackupManager, _core

    clock = FakeClock(T0)
    manager = BackupManager(tmp_path / "repo", clock=clock)
    src = tmp_path / "src"
    src.mkdir()
    (src / "data").write_bytes(os.urandom(64 * 1024))
    for name in ("good", "bad"):
        manager.register_database(name, src)
        manager.backup(name, BackupType.FULL)
    [bad_set] = manager.catalog.list_sets(database="bad")
    piece = manager.repository / "sets" / bad_set.id / "data.piece"
    offset = _core.read_piece_index(piece)[3][2]
    with open(piece, "r+b") as fh:
        fh.seek(offset)
        first = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([first[0] ^ 1]))
    s = BackupScheduler(manager, clock=clock)
    s.add_verification("v1", "good", "full", "0 4 * * *")
    s.add_verification("v2", "bad", VerificationType.FULL, "0 4 * * *")
    assert s.execute_due_jobs(T0 + timedelta(hours=4)) == []  # verifications make no backup sets
    assert s.history(job_id="v1")[0].status is ExecutionStatus.COMPLETED
    bad = s.history(job_id="v2")[0]
    assert bad.status is ExecutionStatus.FAILED
    assert bad.error is not None and bad.error.startswith("verification found 1 corrupt block(s), 0 missing piece(s)")


def test_run_forever_sleeps_until_due_survives_failures_and_stops_early(tmp_path: Path) -> None:
    import time as _time

    base = datetime(2026, 1, 5, 0, 0, 59, 500000, tzinfo=UTC)
    origin = _time.monotonic()

    def clock() -> datetime:
        return base + timedelta(seconds=_time.monotonic() - origin)

    m = FakeManager(tmp_path)
    s = BackupScheduler(m, clock=clock)
    s.add_job(job("boom", "* * * * *", priority=200))
    s.add_job(job("ok", "* * * * *"))
    m.fail["boom"] = RuntimeError("kaput")
    stop = threading.Event()
    loop = threading.Thread(target=s.run_forever, args=(stop,))
    loop.start()
    while len(m.registered) < 1:
        _time.sleep(0.05)
    stop.set()  # the loop now waits ~59 s for 00:02; stop must wake it at once
    loop.join(timeout=10)
    assert not loop.is_alive()
    assert [c[0] for c in m.calls] == ["boom", "ok"]
    assert s.history(job_id="boom")[0].status is ExecutionStatus.FAILED


def test_a_config_change_wakes_run_forever(tmp_path: Path) -> None:
    import time as _time

    base = datetime(2026, 1, 5, 0, 0, 59, 700000, tzinfo=UTC)
    origin = _time.monotonic()

    def clock() -> datetime:
        return base + timedelta(seconds=_time.monotonic() - origin)

    m = FakeManager(tmp_path)
    s = BackupScheduler(m, clock=clock)
    s.add_job(job("daily", "0 5 * * *"))  # hours away: the loop sleeps
    stop = threading.Event()
    loop = threading.Thread(target=s.run_forever, args=(stop,))
    loop.start()
    _time.sleep(0.1)
    s.add_job(job("soon", "* * * * *"))
    while not m.registered:
        _time.sleep(0.05)
    stop.set()
    loop.join(timeout=10)
    assert [c[0] for c in m.calls] == ["soon"]


# --- a simulated year against a reference model -----------------------------------------

WINDOWS = [
    off_hours("off", tz="Europe/Paris"),
    business_hours("biz", tz="America/New_York"),
    BackupWindow("tt", "Tue/Thu nights", time(22), time(4), "tue,thu", tz="Australia/Lord_Howe"),
]
JOBS = [
    job("j00", "0 2 * * *"),
    job("j01", "30 */6 * * *", priority=200),
    job("j02", "0 3 * * 0", backup_type=BackupType.DIFFERENTIAL),
    job("j03", "15 1 1 * *", priority=255),
    job("j04", "0 */8 * * 1-5", window_id="off"),
    job("j05", "45 22 * * *", window_id="off", priority=90),
    job("j06", "0 12 * * *", window_id="off"),
    job("j07", "0 7 * * *", window_id="off", window_policy="defer"),
    job("j08", "*/30 9-10 * * 1", window_id="biz", window_policy="defer", tz="America/New_York"),
    job("j09", "0 2 * * *", window_id="biz", window_policy="defer", priority=3),
    job("j10", "0 23 * * *", window_id="tt"),
    job("j11", "0 20 * * *", window_id="tt", window_policy="defer"),
    job("j12", "0 2 * * *", priority=200),  # ties with j00 at 02:00 UTC
    job("j13", "0 2 * * *", priority=200),
    job("j14", "30 2 * * *", tz="Europe/Paris"),  # inside the spring-forward gap once a year
    job("j15", "0 0 * * 6", window_id="biz"),
    job("j16", "0 9,17 * * *", window_id="biz", tz="America/New_York"),
    job("j17", "0 4 1,15 * *", backup_type=BackupType.ARCHIVE_LOG),
    job("j18", "0 6 * * 1", window_id="tt", window_policy="defer", priority=1),
    job("j19", "0 22 * * 2,4", window_id="tt", tz="Australia/Lord_Howe", priority=250),
]


def model(start: datetime, end: datetime) -> tuple[dict[str, list[tuple[datetime, str]]], list[tuple[datetime, str]]]:
    """Per job, each occurrence's status; and the run order (time, job id)."""
    windows = {w.id: w for w in WINDOWS}
    outcome: dict[str, list[tuple[datetime, str]]] = {}
    runs: list[tuple[datetime, int, str]] = []
    for j in JOBS:
        occ = [t for t in j.cron.next_n(start, 2000) if t <= end]
        assert len(occ) < 2000
        w = windows.get(j.window_id or "")
        rows: list[tuple[datetime, str]] = []
        if w is None:
            rows = [(t, "completed") for t in occ]
            runs += [(t, -j.priority, j.id) for t in occ]
        elif j.window_policy == "skip":
            rows = [(t, "completed" if w.is_active(t) else "skipped") for t in occ]
            runs += [(t, -j.priority, j.id) for t in occ if w.is_active(t)]
        else:
            groups: dict[datetime, list[datetime]] = defaultdict(list)
            for t in occ:
                groups[w.next_open(t)].append(t)
            for opens, ts in groups.items():
                if opens > end:
                    continue
                rows += [(t, "skipped") for t in ts[:-1]] + [(ts[-1], "completed")]
                runs.append((opens, -j.priority, j.id))
        outcome[j.id] = sorted(rows)
    runs.sort()
    # UTC: aware datetimes in a repeated hour never compare equal across zones (PEP 495).
    return outcome, [(t.astimezone(UTC), jid) for t, _, jid in runs]


def test_a_simulated_year_matches_the_reference_model(tmp_path: Path) -> None:
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    s, m, clock = make(tmp_path, start=start)
    for w in WINDOWS:
        s.add_window(w)
    s.add_jobs(JOBS)
    while True:
        nxt = min(s.next_run_times().values())
        if nxt > end:
            break
        clock.set(nxt)
        s.execute_due_jobs()
    expected, order = model(start, end)
    got_order = [(t.astimezone(UTC), db) for db, _, t in m.calls if t is not None]
    assert got_order == order
    for j in JOBS:
        got = sorted((e.scheduled_for, e.status.value) for e in s.history(job_id=j.id))
        assert got == [(t.astimezone(UTC), st) for t, st in expected[j.id]], j.id
    skipped = s.history(job_id="j06", status="skipped", limit=1)[0]
    assert skipped.error == "outside window off"
    assert sum(len(v) for v in expected.values()) > 5000


def test_api_calls_from_many_threads_keep_a_consistent_state(tmp_path: Path) -> None:
    s, m, clock = make(tmp_path)
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            with s.batch():
                for i in range(25):
                    s.add_job(job(f"t{k}-{i}", f"{i} * * * *"))
            for i in range(0, 25, 5):
                s.remove_job(f"t{k}-{i}")
            s.execute_due_jobs(T0 + timedelta(hours=1, minutes=30))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(s.list_jobs()) == 8 * 20 and len(s.next_run_times()) == 8 * 20
    # Each surviving job ran its one catch-up occurrence exactly once, whichever thread got it.
    runs = s.history(status="completed")
    ran = [e.job_id for e in runs]
    assert len(ran) == len(set(ran))  # never twice
    assert {j.id for j in s.list_jobs()} <= set(ran)  # none missed (removed jobs may have run first)
    reloaded = BackupScheduler(m, clock=clock)
    assert [j.id for j in reloaded.list_jobs()] == [j.id for j in s.list_jobs()]


def test_a_job_for_an_unknown_database_is_refused_by_a_real_repository(tmp_path: Path) -> None:
    from rustybackup import BackupManager

    manager = BackupManager(tmp_path / "repo")
    (tmp_path / "src").mkdir()
    manager.register_database("orders", tmp_path / "src")
    s = BackupScheduler(manager)
    s.add_job(ScheduledBackup("ok", "ok", "orders", BackupType.FULL, "0 1 * * *"))
    with pytest.raises(ConfigError, match=r"^job 'typo' field 'database': unknown database 'ordres'$"):
        s.add_job(ScheduledBackup("typo", "typo", "ordres", BackupType.FULL, "0 1 * * *"))
    assert [j.id for j in s.list_jobs()] == ["ok"]
