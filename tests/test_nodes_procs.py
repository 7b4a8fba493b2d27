"""Scheduler node processes on one real PostgreSQL catalog, with one clock file they all
read (tests/nodes_support.py moves it a minute at a time and waits for every live node):

- three nodes over a simulated week of every-minute and hourly jobs, killed (SIGKILL) and
  restarted at random: every occurrence has exactly one outcome, none is missed beyond
  one lease after a kill, and no backup is registered twice;
- a node paused (SIGSTOP) past its lease while its backup runs: another node takes the
  occurrence over, and the paused one, resumed, registers neither a set nor a history row;
- PostgreSQL restarted under running nodes: they reconnect and go on, nothing lost or
  duplicated.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import shared_catalog_support
from node_child import FakeManager
from nodes_support import Nodes
from rustybackup import BackupManager, ScheduledBackup
from rustybackup.cron import CronSchedule
from rustybackup.enums import BackupType
from shared_catalog_support import CatalogServer

catalog_server = shared_catalog_support.catalog_server

LEASE = timedelta(minutes=5)
START = datetime(2026, 3, 2, tzinfo=UTC)
#: Simulated minutes of the kill test: a week (RUSTYBACKUP_NODES_MINUTES shortens a local run).
MINUTES = int(os.environ.get("RUSTYBACKUP_NODES_MINUTES", 7 * 24 * 60))


def _job(jid: str, schedule: str, **kw: object) -> ScheduledBackup:
    return ScheduledBackup(
        id=jid,
        name=jid,
        database="db",
        backup_type=BackupType.FULL,
        schedule=schedule,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def nodes(catalog_server: CatalogServer, tmp_path: Path) -> Iterator[Nodes]:
    # Every tick beats; the background beat only keeps a node stopped mid-run honest.
    n = Nodes(catalog_server.fresh("nodes"), tmp_path, START, LEASE, heartbeat=0.5)
    yield n
    n.close()


def _occurrences(schedule: str, start: datetime, end: datetime) -> list[datetime]:
    cron, out, t = CronSchedule(schedule, "UTC"), [], start
    while (t := cron.next_after(t)) <= end:
        out.append(t)
    return out


def _outcomes(nodes: Nodes) -> dict[tuple[str, datetime], tuple[str, str | None, str | None]]:
    schema = nodes.schema()
    rows = nodes.query(f'SELECT job_id, scheduled_for, status, backup_set_id, node FROM "{schema}".sched_executions')
    return {
        (job, datetime.fromtimestamp(us / 1e6, UTC)): (status, set_id, node) for job, us, status, set_id, node in rows
    }


def test_three_nodes_a_week_with_random_kills(nodes: Nodes) -> None:
    admin = FakeManager(nodes.url, nodes.repo)
    jobs = {
        "every-minute": "* * * * *",
        "hourly": "0 * * * *",
        "east-half-hour": "30 * * * *",  # pinned: only n1 and n2 carry "east"
    }
    nodes.add_jobs(
        [
            _job("every-minute", jobs["every-minute"]),
            _job("hourly", jobs["hourly"], priority=200),
            _job("east-half-hour", jobs["east-half-hour"], node_labels=("east",)),
        ],
        admin,
    )
    labels = {"n1": ["east"], "n2": ["east"], "n3": ["west"]}
    for name, lab in labels.items():
        nodes.start(name, lab)
    rng = random.Random(18)
    kills: list[datetime] = []
    dead: dict[str, int] = {}
    for step in range(MINUTES):
        for name, back in list(dead.items()):
            if step >= back:
                nodes.start(name, labels[name])
                del dead[name]
        # One node down at a time, so the pinned job always has a node that may run it.
        if not dead and rng.random() < 0.01:
            victim = rng.choice(sorted(nodes.procs))
            nodes.kill(victim)
            kills.append(nodes.now)
            dead[victim] = step + rng.randint(1, 60)
        nodes.step()
    end = nodes.now
    for _ in range(int(LEASE / timedelta(minutes=1)) + 2):  # the last claims taken over or finished
        nodes.step()
    assert kills, "the seed killed no node"

    outcomes = _outcomes(nodes)
    schema = nodes.schema()
    for jid, schedule in jobs.items():
        for t in _occurrences(schedule, START, end):
            assert (jid, t) in outcomes, f"{jid} at {t} has no outcome (kills at {kills})"
            status, _, _ = outcomes[(jid, t)]
            if status != "completed":
                # Only within one lease of a kill: the dead node's claim held it, or made
                # the next occurrence wait ("previous run still running").
                assert any(k - timedelta(minutes=1) <= t <= k + LEASE + timedelta(minutes=1) for k in kills), (
                    f"{jid} at {t}: {status}, not near a kill ({kills})"
                )
    completed = [sid for status, sid, _ in outcomes.values() if status == "completed"]
    assert len(completed) == len(set(completed))
    runs = {r[0] for r in nodes.query(f'SELECT id FROM "{schema}".fake_runs')}
    assert set(completed) <= runs
    # A run cut short by SIGKILL after its insert committed is taken over and run again:
    # at most one such run per kill.
    assert len(runs - set(completed)) <= len(kills)
    # Every node ran something; the pinned job never ran on n3.
    assert {node for (jid, _), (_, _, node) in outcomes.items() if jid == "east-half-hour"} <= {"n1", "n2"}
    admin._conn.close()


def test_a_paused_node_registers_nothing_stale(nodes: Nodes, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "data").write_bytes(os.urandom(200_000))
    m = BackupManager(nodes.repo, clock=nodes.clock, catalog=nodes.url)
    m.register_database("db", src)
    nodes.manager = "real"
    gate = tmp_path / "gate"
    nodes.add_jobs([_job("nightly", "0 1 * * *")], m)
    nodes.start("n1", gate=str(gate))
    # 01:00: n1 claims the occurrence and starts its backup (held at the gate).
    nodes.now = START + timedelta(hours=1) - timedelta(minutes=1)
    nodes.step(wait=False)  # n1's tick is inside the backup until the gate opens
    started = Path(f"{gate}.started")
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert started.exists(), nodes.log("n1")
    nodes.pause("n1")
    nodes.start("n2")
    for _ in range(int(LEASE / timedelta(minutes=1)) + 1):
        nodes.step()  # waits for n2 only; n1 is stopped
    outcome = _outcomes(nodes)[("nightly", START + timedelta(hours=1))]
    assert outcome[0] == "completed" and outcome[2] == "n2"
    taken_set = outcome[1]
    # n1 wakes up, finishes its backup and tries to register it under the lost claim.
    gate.touch()
    nodes.resume("n1")
    nodes.step()
    nodes.wait_seen(["n1", "n2"])
    m2 = BackupManager(nodes.repo, clock=nodes.clock, catalog=nodes.url)
    assert [s.id for s in m2.catalog.list_sets()] == [taken_set]
    assert sorted(p.name for p in (nodes.repo / "sets").iterdir()) == [taken_set]
    assert not any((nodes.repo / ".staging").glob("*")) if (nodes.repo / ".staging").exists() else True
    assert _outcomes(nodes)[("nightly", START + timedelta(hours=1))] == outcome
    assert "claim of run" in nodes.log("n1") or "taken over" in nodes.log("n1")
    m.catalog.close()
    m2.catalog.close()


def test_nodes_ride_out_a_postgresql_restart(nodes: Nodes, catalog_server: CatalogServer) -> None:
    admin = FakeManager(nodes.url, nodes.repo)
    nodes.add_jobs([_job("every-minute", "* * * * *"), _job("five", "*/5 * * * *")], admin)
    admin._conn.close()
    for name in ("n1", "n2", "n3"):
        nodes.start(name)
    for round_ in range(4):
        for _ in range(10):
            nodes.step()
        if round_ < 2:  # between ticks
            catalog_server.cluster.stop("fast" if round_ == 0 else "immediate")
            catalog_server.cluster.start()
        else:  # while the nodes are claiming and running the minute's occurrences
            nodes.step(wait=False)
            catalog_server.cluster.stop("immediate")
            catalog_server.cluster.start()
            nodes.wait_seen(nodes.live())
    for _ in range(10):
        nodes.step()
    end = nodes.now
    outcomes = _outcomes(nodes)
    schema = nodes.schema()
    errors = dict(
        ((job, datetime.fromtimestamp(us / 1e6, UTC)), error)
        for job, us, error in nodes.query(f'SELECT job_id, scheduled_for, error FROM "{schema}".sched_executions')
    )
    for jid, schedule in (("every-minute", "* * * * *"), ("five", "*/5 * * * *")):
        for t in _occurrences(schedule, START, end):
            status = outcomes.get((jid, t), ("missing",))[0]
            # A run whose registration the restart cut fails, saying so; none goes missing.
            assert status == "completed" or (status == "failed" and "server" in str(errors[(jid, t)])), (
                jid,
                t,
                outcomes.get((jid, t)),
                errors.get((jid, t)),
            )
    completed = [str(sid) for status, sid, _ in outcomes.values() if status == "completed"]
    runs = [str(r[0]) for r in nodes.query(f'SELECT id FROM "{schema}".fake_runs')]
    assert sorted(completed) == sorted(runs)
