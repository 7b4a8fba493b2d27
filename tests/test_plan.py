"""The planner: every fitting placement inside its window and under the concurrency limit
(checked minute by minute, independently of the planner's sweep), least slack first beats
priority first, the replay simulator, and ``rustybackup plan`` on a real history."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import BackupScheduler, BackupWindow, ScheduledBackup
from rustybackup.cli import cli
from rustybackup.enums import BackupType, ExecutionStatus
from rustybackup.errors import ConfigError
from rustybackup.history import History
from rustybackup.plan import PlanTask, plan, simulate
from sched_fakes import FakeClock, FakeManager

AFTER = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday noon


def night(wid: str, start: int, end: int, tz: str = "UTC") -> BackupWindow:
    return BackupWindow(wid, wid, time(start), time(end), "mon-sun", tz)


@st.composite
def task_sets(draw: st.DrawFn) -> tuple[list[PlanTask], int]:
    windows = [
        night("w0", 22, 6),
        night("w1", 23, 2),
        night("w2", 1, 5),
        night("w3", 20, 4, "Europe/Berlin"),
    ]
    n = draw(st.integers(1, 12))
    tasks = [
        PlanTask(
            f"j{i}",
            draw(st.integers(0, 255)),
            draw(st.sampled_from(windows)),
            timedelta(minutes=draw(st.integers(1, 300))),
            AFTER,
        )
        for i in range(n)
    ]
    return tasks, draw(st.integers(1, 3))


@settings(deadline=None, max_examples=150)
@given(task_sets())
def test_fitting_placements_lie_in_their_windows_under_the_limit(
    case: tuple[list[PlanTask], int],
) -> None:
    tasks, k = case
    got = plan(tasks, AFTER, k)
    assert [p.job_id for p in got] == [t.job_id for t in tasks]
    for t, p in zip(tasks, got, strict=True):
        assert t.window is not None and t.p90 is not None and p.end is not None
        assert p.end - p.start == t.p90
        if p.fits:
            assert p.opens is not None and p.closes is not None
            assert p.opens <= p.start and p.end <= p.closes
            assert t.window.is_active(p.start)
        else:
            assert p.note.startswith("does not fit")
    # The oracle: the most jobs run at once at some job's start; count them there.
    for p in got:
        running = sum(q.start <= p.start < q.end for q in got if q.end)
        assert running <= k, p.start


def test_least_slack_first_fits_where_priority_first_overruns() -> None:
    long = PlanTask("big", 200, night("all-night", 22, 6), timedelta(hours=6), AFTER)
    short = PlanTask("small", 10, night("early", 22, 0), timedelta(hours=1, minutes=50), AFTER)
    got = {p.job_id: p for p in plan([long, short], AFTER, 1)}
    assert got["small"].fits and got["big"].fits
    assert got["small"].start == datetime(2026, 3, 2, 22, tzinfo=UTC)
    assert got["big"].start == datetime(2026, 3, 2, 23, 50, tzinfo=UTC)
    # The naive schedule: both at 22:00, the scheduler runs the higher priority first.
    at_open = {"big": got["big"].opens, "small": got["small"].opens}
    assert at_open["big"] is not None and at_open["small"] is not None
    naive = simulate(
        {k: v for k, v in at_open.items() if v is not None},
        {"big": timedelta(hours=6), "small": timedelta(hours=1, minutes=50)},
        {"big": 200, "small": 10},
    )
    assert naive["small"].end > (got["small"].closes or AFTER)
    planned = simulate(
        {"big": got["big"].start, "small": got["small"].start},
        {"big": timedelta(hours=6), "small": timedelta(hours=1, minutes=50)},
        {"big": 200, "small": 10},
    )
    assert all(planned[j].end <= (got[j].closes or AFTER) for j in planned)


def test_load_is_spread_when_workers_allow() -> None:
    tasks = [PlanTask(f"j{i}", 128, night("n", 0, 8), timedelta(hours=1), AFTER) for i in range(4)]
    got = plan(tasks, AFTER, concurrency=4)
    # Four one-hour jobs in an eight-hour night with four workers: none needs to overlap.
    assert len({p.start for p in got}) == 4
    assert all(p.fits for p in got)


def test_what_cannot_fit_says_why_and_by_how_much() -> None:
    too_long = PlanTask("long", 1, night("short", 1, 2), timedelta(hours=3), AFTER)
    [p] = plan([too_long], AFTER)
    assert not p.fits
    assert p.note == "does not fit: P90 3h00m is longer than window short (1h00m); overruns by 2h00m"
    a = PlanTask("a", 1, night("w", 1, 3), timedelta(hours=2), AFTER)
    b = PlanTask("b", 1, night("w", 1, 3), timedelta(hours=2), AFTER)
    pa, pb = plan([a, b], AFTER)
    assert pa.fits and not pb.fits
    assert "no free slot under the concurrency limit 1" in pb.note and pb.start == pa.end


def test_jobs_without_history_or_window_keep_their_cron_time() -> None:
    cron = datetime(2026, 3, 3, 2, tzinfo=UTC)
    fixed = PlanTask("fixed", 1, None, timedelta(hours=2), cron)
    fresh = PlanTask("fresh", 1, night("n", 0, 8), None, cron)
    other = PlanTask("other", 1, night("n", 0, 8), timedelta(hours=6), AFTER)
    got = {p.job_id: p for p in plan([fixed, fresh, other], AFTER)}
    assert got["fixed"].start == cron and "no window" in got["fixed"].note
    assert got["fresh"].start == cron and got["fresh"].end is None and "no forecast" in got["fresh"].note
    # The fixed job's 02:00-04:00 counts as load: the six-hour job cannot overlap it.
    placed = got["other"]
    assert placed.end is not None
    assert not placed.fits or placed.start >= cron + timedelta(hours=2) or placed.end <= cron


def test_dst_night_is_measured_in_real_time() -> None:
    # Europe/Berlin springs forward on 2026-03-29 at 02:00: the 01:00-05:00 window is 3 hours.
    w = BackupWindow("n", "n", time(1), time(5), "mon-sun", "Europe/Berlin")
    after = datetime(2026, 3, 28, 12, tzinfo=UTC)
    [p] = plan([PlanTask("j", 1, w, timedelta(hours=3, minutes=30), after)], after)
    assert not p.fits and "(3h00m)" in p.note


@pytest.mark.parametrize("bad", [0, -1, True])
def test_bad_concurrency_is_a_config_error(bad: int) -> None:
    with pytest.raises(ConfigError, match="concurrency"):
        plan([], AFTER, bad)


def test_simulate_runs_ready_jobs_by_priority_on_free_workers() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    h = timedelta(hours=1)
    runs = simulate(
        {"a": t, "b": t, "c": t + h / 2},
        {"a": h, "b": h, "c": h},
        {"a": 1, "b": 5, "c": 9},
        1,
    )
    assert [(runs[j].start, runs[j].end) for j in "bca"] == [
        (t, t + h),
        (t + h, t + 2 * h),
        (t + 2 * h, t + 3 * h),
    ]
    two = simulate(
        {"a": t, "b": t, "c": t + h / 2},
        {"a": h, "b": h, "c": h},
        {"a": 1, "b": 5, "c": 9},
        2,
    )
    assert two["c"].start == t + h


def test_plan_cli_forecasts_from_the_history_and_warns(tmp_path: Path) -> None:
    clock = FakeClock(AFTER)
    s = BackupScheduler(FakeManager(tmp_path, clock=clock), clock=clock)
    s.add_window(night("nights", 1, 6, "Europe/Berlin"))
    s.add_job(
        ScheduledBackup(
            "grow",
            "g",
            "app",
            BackupType.FULL,
            "0 1 * * *",
            tz="Europe/Berlin",
            window_id="nights",
            priority=200,
        )
    )
    s.add_job(
        ScheduledBackup(
            "quick",
            "q",
            "db2",
            BackupType.FULL,
            "0 1 * * *",
            tz="Europe/Berlin",
            window_id="nights",
        )
    )
    s.add_job(
        ScheduledBackup(
            "late",
            "l",
            "db3",
            BackupType.FULL,
            "0 5 * * *",
            tz="Europe/Berlin",
            window_id="nights",
        )
    )
    s.close()
    history = History(tmp_path / "catalog.db")
    berlin = ZoneInfo("Europe/Berlin")
    for day in range(30):
        at = datetime(2026, 1, 30, 1, tzinfo=berlin) + timedelta(days=day)
        for jid, minutes in (("grow", 60 + 3 * day), ("quick", 30), ("late", 90)):
            claim = history.claim(jid, at, at, timedelta(hours=1))
            assert claim.execution_id is not None
            history.finish(
                claim.execution_id,
                ExecutionStatus.COMPLETED,
                at + timedelta(minutes=minutes),
                bytes_read=10**9 + day * 10**7,
                bytes_written=10**8,
            )
    history.close()
    r = CliRunner().invoke(cli, ["--repo", str(tmp_path), "plan", "--after", AFTER.isoformat(), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    rows = {row["id"]: row for row in data["jobs"]}
    # 60 + 3 min/day from January 30th: 32 days later (March 3rd, 01:00) the line says 156.
    assert rows["grow"]["runs"] == 30
    assert abs(rows["grow"]["duration_trend_per_day"] - 180) < 1e-6
    assert abs(rows["grow"]["duration_p90"] - 156 * 60) < 1e-3
    assert rows["quick"]["duration_p90"] == 30 * 60
    # 156 + 30 + 90 minutes in a five-hour window, one at a time: the plan fits all three.
    assert all(row["fits"] for row in rows.values())
    starts = sorted((row["start"], row["end"]) for row in rows.values())
    assert starts[0][0] == "2026-03-03T01:00:00+01:00" and starts[-1][1] <= "2026-03-03T06:00:00+01:00"
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(starts))
    assert rows["late"]["cron"] is not None and rows["late"]["cron"].endswith(" * * *")
    # At its cron time (05:00) late's P90 overruns the window: a warning says so.
    assert rows["grow"]["current_problem"] is None
    assert rows["late"]["current_problem"] == (
        "P90 1h30m from 2026-03-03T05:00:00+01:00 overruns window nights by 0h30m"
    )
    text = CliRunner().invoke(cli, ["--repo", str(tmp_path), "plan", "--after", AFTER.isoformat()])
    assert text.exit_code == 0 and "OVERRUNS" in text.output
    assert "warning: job late: P90 1h30m" in text.output


def test_the_scheduler_warns_when_a_jobs_p90_stops_fitting_its_window(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    history = History(tmp_path / "catalog.db")
    for day in range(20):
        at = datetime(2026, 2, 1, 1, tzinfo=UTC) + timedelta(days=day)
        for jid, minutes in (("long", 270), ("short", 60), ("late", 60)):
            claim = history.claim(jid, at, at, timedelta(hours=1))
            assert claim.execution_id is not None
            history.finish(claim.execution_id, ExecutionStatus.COMPLETED, at + timedelta(minutes=minutes))
    history.close()
    clock = FakeClock(datetime(2026, 2, 21, 0, 30, tzinfo=UTC))
    s = BackupScheduler(FakeManager(tmp_path, clock=clock), clock=clock)
    s.add_window(night("nights", 1, 5))
    s.add_job(ScheduledBackup("long", "l", "app", BackupType.FULL, "0 1 * * *", window_id="nights"))
    s.add_job(ScheduledBackup("short", "s", "db2", BackupType.FULL, "0 1 * * *", window_id="nights"))
    # Its cron time is before the window: judged from when the window opens, it fits.
    s.add_job(
        ScheduledBackup("late", "d", "db3", BackupType.FULL, "0 0 * * *", window_id="nights", window_policy="defer")
    )
    with caplog.at_level("WARNING", logger="rustybackup.scheduler"):
        s.execute_due_jobs(datetime(2026, 2, 21, 1, tzinfo=UTC))
    warned = sorted(r.getMessage() for r in caplog.records if "P90" in r.getMessage() or "window" in r.getMessage())
    assert warned == [
        (
            "job long: P90 4h30m from 2026-02-22T01:00:00+00:00 overruns window nights by 0h30m"
            " (rustybackup plan suggests start times that fit)"
        )
    ]
