"""Scheduler nodes on a shared PostgreSQL catalog (issue 18):

- claims per second: 3 node processes and N jobs all due at the same instant (each node
  tries every occurrence; one claim each wins), beside one scheduler on the SQLite
  catalog claiming the same N occurrences alone (there is no peer tool with shared
  claims to set beside it; APScheduler's SQLAlchemy job store runs each job once per
  store but has no leases or takeover);
- takeover: the real seconds from SIGKILL of the node running an occurrence to another
  node owning it, with a 2 s lease, the clock file moved at real speed.

N is 1,000 by default (smoke); ``RUSTYBACKUP_BENCH_JOBS=10000`` gives the issue's size.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import shared_catalog_support  # noqa: E402
from node_child import FakeManager  # noqa: E402
from nodes_support import Nodes  # noqa: E402
from rustybackup import BackupScheduler, ScheduledBackup  # noqa: E402
from rustybackup.enums import BackupType  # noqa: E402
from sched_fakes import FakeClock  # noqa: E402
from sched_fakes import FakeManager as SqliteFakeManager  # noqa: E402

catalog_server = shared_catalog_support.catalog_server

N = int(os.environ.get("RUSTYBACKUP_BENCH_JOBS", "1000"))
# 10,000 occurrences claimed by three nodes take minutes on a busy machine.
os.environ.setdefault("RUSTYBACKUP_NODES_STEP_TIMEOUT", "3600")
T0 = datetime(2026, 1, 5, tzinfo=UTC)


def jobs(n: int) -> list[ScheduledBackup]:
    return [
        ScheduledBackup(f"job{i:05d}", f"Job {i}", f"db{i % 50}", BackupType.FULL, "0 * * * *", priority=i % 256)
        for i in range(n)
    ]


@pytest.mark.benchmark(group="nodes-claims")
def test_claims_per_second_three_nodes(benchmark: Any, catalog_server: Any, tmp_path: Path) -> None:
    nodes = Nodes(catalog_server.fresh("bench"), tmp_path, T0, timedelta(minutes=5))
    admin = FakeManager(nodes.url, nodes.repo)
    try:
        nodes.add_jobs(jobs(N), admin)
        for name in ("n1", "n2", "n3"):
            nodes.start(name)
        schema = nodes.schema()

        def one_hour() -> None:
            nodes.step(timedelta(hours=1))

        benchmark.pedantic(one_hour, rounds=3, iterations=1)
        hours = int((nodes.now - T0) / timedelta(hours=1))  # 1 with --benchmark-disable
        ((done,),) = nodes.query(f"SELECT count(*) FROM \"{schema}\".sched_executions WHERE status = 'completed'")
        assert done == hours * N
        ((runs,),) = nodes.query(f'SELECT count(*) FROM "{schema}".fake_runs')
        assert runs == hours * N  # every occurrence ran once, whichever node won it
        if benchmark.stats is not None:  # None under --benchmark-disable
            benchmark.extra_info["claims_per_second"] = N / benchmark.stats.stats.mean
    finally:
        admin._conn.close()
        nodes.close()


@pytest.mark.benchmark(group="nodes-claims")
def test_claims_per_second_one_sqlite_scheduler(benchmark: Any, tmp_path: Path) -> None:
    clock = FakeClock(T0)
    s = BackupScheduler(SqliteFakeManager(tmp_path, clock=clock), clock=clock)
    s.add_jobs(jobs(N))

    def one_hour() -> None:
        clock.advance(timedelta(hours=1))
        s.execute_due_jobs()

    benchmark.pedantic(one_hour, rounds=3, iterations=1)
    hours = int((clock() - T0) / timedelta(hours=1))
    assert len(s.history(status="completed")) == hours * N
    if benchmark.stats is not None:
        benchmark.extra_info["claims_per_second"] = N / benchmark.stats.stats.mean
    s.close()


@pytest.mark.benchmark(group="nodes-takeover")
def test_time_from_death_to_takeover(benchmark: Any, catalog_server: Any, tmp_path: Path) -> None:
    lease = timedelta(seconds=2)
    start = T0 - timedelta(seconds=0.5)
    nodes = Nodes(catalog_server.fresh("takeover"), tmp_path, start, lease)
    admin = FakeManager(nodes.url, nodes.repo)
    stop = threading.Event()
    t0 = time.monotonic()

    def real_speed() -> None:  # the shared clock moves at real speed from `start`
        while not stop.is_set():
            nodes.now = start + timedelta(seconds=time.monotonic() - t0)
            nodes._write_clock(nodes.now)
            time.sleep(0.005)

    try:
        nodes.add_jobs([ScheduledBackup("every-minute", "m", "db", BackupType.FULL, "* * * * *")], admin)
        schema = nodes.schema()
        samples: list[float] = []

        def death_to_takeover() -> float:
            nonlocal t0, start
            stop.clear()
            # Each round: the next minute's occurrence, claimed by a node that blocks in it.
            start = nodes.now.replace(second=59, microsecond=500_000)
            t0 = time.monotonic()
            mover = threading.Thread(target=real_speed, daemon=True)
            mover.start()
            for name in ("n2", "n3"):  # only the victim may claim the next occurrence
                if name in nodes.procs:
                    nodes.kill(name)
            nodes.start("victim", block=True)
            due = start + timedelta(seconds=0.5)
            sql = f"SELECT node FROM \"{schema}\".sched_executions WHERE job_id = 'every-minute' AND scheduled_for = %s"
            us = int(due.timestamp() * 1_000_000)
            while nodes.query(sql, (us,)) != [("victim",)]:
                time.sleep(0.002)
            for name in ("n2", "n3"):
                nodes.start(name)
            killed = time.monotonic()
            nodes.kill("victim")
            while nodes.query(sql, (us,)) == [("victim",)]:
                time.sleep(0.002)
            took = time.monotonic() - killed
            samples.append(took)
            stop.set()
            mover.join()
            return took

        benchmark.pedantic(death_to_takeover, rounds=3, iterations=1)
        benchmark.extra_info["lease_seconds"] = lease.total_seconds()
        benchmark.extra_info["takeover_seconds"] = samples
        # Never before the lease could have run out, never much after.
        assert all(0 < s <= lease.total_seconds() + 2 for s in samples), samples
    finally:
        stop.set()
        admin._conn.close()
        nodes.close()
