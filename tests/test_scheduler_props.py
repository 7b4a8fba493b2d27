"""Property tests of the scheduler against small independent oracles: tick order, and
misfire handling after arbitrary downtime."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from rustybackup import BackupScheduler, ScheduledBackup
from rustybackup.enums import BackupType, ExecutionStatus
from sched_fakes import FakeClock, FakeManager

UTC = UTC
T0 = datetime(2026, 3, 2, tzinfo=UTC)
CRONS = ["0 * * * *", "*/15 * * * *", "30 */2 * * *", "0 0 * * *", "10,40 * * * *"]


def upto(job: ScheduledBackup, now: datetime) -> list[datetime]:
    """The job's occurrences in (T0, now], from next_n in pages (the oracle)."""
    found: list[datetime] = []
    start = T0
    while True:
        page = job.cron.next_n(start, 50)
        found += [t for t in page if t <= now]
        if page[-1] > now:
            return found
        start = page[-1]


job_specs = st.lists(
    st.tuples(st.sampled_from(CRONS), st.integers(0, 255), st.sampled_from(["run_once", "skip"])),
    min_size=1,
    max_size=8,
)


@given(job_specs, st.integers(1, 60 * 30))
def test_a_tick_runs_jobs_in_priority_then_due_then_id_order(specs: list[tuple[str, int, str]], minutes: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        clock = FakeClock(T0)
        manager = FakeManager(Path(d), clock=clock)
        s = BackupScheduler(manager, clock=clock, misfire_grace=timedelta(days=3))
        jobs = [
            ScheduledBackup(f"j{i}", "J", f"j{i}", BackupType.FULL, c, priority=p, misfire=m)
            for i, (c, p, m) in enumerate(specs)
        ]
        s.add_jobs(jobs)
        now = T0 + timedelta(minutes=minutes)
        s.execute_due_jobs(now)
        # Oracle: every job whose first occurrence is due runs once, for its latest
        # occurrence <= now (all are within the grace), ordered by the documented key.
        expected = []
        for j in jobs:
            occ = upto(j, now)
            if occ:
                expected.append((-j.priority, occ[-1], j.id))
        assert [c[0] for c in manager.calls] == [jid for _, _, jid in sorted(expected)]
        s.close()


@given(st.sampled_from(CRONS), st.sampled_from(["run_once", "skip"]), st.integers(0, 60 * 24 * 3))
def test_downtime_gives_at_most_one_catch_up_and_accounts_for_every_occurrence(
    cron: str, misfire: str, down_minutes: int
) -> None:
    with tempfile.TemporaryDirectory() as d:
        clock = FakeClock(T0)
        manager = FakeManager(Path(d), clock=clock)
        s = BackupScheduler(manager, clock=clock)
        job = ScheduledBackup("j", "J", "db", BackupType.FULL, cron, misfire=misfire)
        s.add_job(job)
        s.close()
        now = T0 + timedelta(minutes=down_minutes, seconds=30)
        clock.set(now)
        s2 = BackupScheduler(manager, clock=clock)
        made = s2.execute_due_jobs()
        missed = upto(job, now)
        rows = sorted((e.scheduled_for, e.status) for e in s2.history(job_id="j"))
        assert [t for t, _ in rows] == [t.astimezone(UTC) for t in missed]  # every occurrence recorded
        completed = [t for t, st_ in rows if st_ is ExecutionStatus.COMPLETED]
        # The newest occurrence runs if it is on time (within the default 1 minute
        # grace) or as the single catch-up of "run_once"; with "skip" a late one does not.
        on_time = bool(missed) and now - missed[-1] <= timedelta(minutes=1)
        if missed and (misfire == "run_once" or on_time):
            assert len(made) == 1 and completed == [missed[-1].astimezone(UTC)]
        else:
            assert made == [] and completed == []
        s2.close()
