"""Scheduler nodes on a shared catalog, in one process (several BackupSchedulers on one
PostgreSQL catalog, one simulated clock): each occurrence claimed once, placement by
label, a dead node's claim taken over after its lease under the job's misfire policy,
fencing of a set made under a lost claim, jobs shared through the catalog."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import shared_catalog_support
from engine_support import SimClock, sim_clock
from node_child import FakeManager
from rustybackup import BackupManager, BackupScheduler, CatalogError, ConfigError, ScheduledBackup
from rustybackup.catalog_db import REGISTRATION_FENCE
from rustybackup.claims import ClaimLost
from rustybackup.enums import BackupType, ExecutionStatus
from rustybackup.nodes import NodeRuntime, list_nodes

catalog_server = shared_catalog_support.catalog_server
catalog_url = shared_catalog_support.catalog_url

LEASE = timedelta(minutes=5)


clock = pytest.fixture(sim_clock)


class Cluster:
    """Schedulers (nodes) made for one test, closed at its end."""

    def __init__(self, url: str, repo: Path, clock: SimClock) -> None:
        self.url, self.repo, self.clock = url, repo, clock
        self.nodes: list[BackupScheduler] = []
        self.managers: list[FakeManager] = []

    def node(self, name: str, labels: tuple[str, ...] = (), manager: Any = None, **kw: Any) -> BackupScheduler:
        if manager is None:
            manager = FakeManager(self.url, self.repo)
            manager.node = name
            self.managers.append(manager)
        s = BackupScheduler(manager, clock=self.clock, node=name, labels=labels, lease=LEASE, heartbeat=3600, **kw)
        self.nodes.append(s)
        return s

    def close(self) -> None:
        for s in self.nodes:
            s.close()
        for m in self.managers:
            m._conn.close()


@pytest.fixture
def cluster(catalog_url: str, tmp_path: Path, clock: SimClock) -> Iterator[Cluster]:
    c = Cluster(catalog_url, tmp_path / "repo", clock)
    (tmp_path / "repo").mkdir()
    yield c
    c.close()


def _job(jid: str, schedule: str = "* * * * *", **kw: Any) -> ScheduledBackup:
    return ScheduledBackup(id=jid, name=jid, database="db", backup_type=BackupType.FULL, schedule=schedule, **kw)


def _rows(s: BackupScheduler) -> list[tuple[str, str, str]]:
    return sorted((e.job_id, e.scheduled_for.isoformat(), e.status.value) for e in s.history())


def test_each_occurrence_runs_once_across_nodes(cluster: Cluster, clock: SimClock) -> None:
    a, b, c = (cluster.node(n) for n in ("a", "b", "c"))
    a.add_job(_job("every-minute"))
    a.add_job(_job("hourly", "0 * * * *", priority=200))
    for _ in range(120):
        clock.advance(minutes=1)
        for s in (a, b, c):
            s.execute_due_jobs()
    rows = _rows(a)
    assert len([r for r in rows if r[0] == "every-minute"]) == 120
    assert len([r for r in rows if r[0] == "hourly"]) == 2
    assert all(status == "completed" for _, _, status in rows)
    # The fake backups: one per occurrence, spread over the nodes that won the claims.
    conn = cluster.managers[0]._conn
    ((runs,),) = conn.execute("SELECT count(*) FROM fake_runs").fetchall()
    assert runs == 122


def test_jobs_live_in_the_catalog_and_reach_every_node(cluster: Cluster, clock: SimClock) -> None:
    a = cluster.node("a")
    b = cluster.node("b")
    a.add_job(_job("j1"))
    clock.advance(minutes=1)
    b.execute_due_jobs()  # b sees the job a added (the version moved) and runs it
    assert [(e.job_id, e.status) for e in b.history()] == [("j1", ExecutionStatus.COMPLETED)]
    assert [j.id for j in b.list_jobs()] == ["j1"]
    b.remove_job("j1")
    clock.advance(minutes=1)
    a.execute_due_jobs()
    assert a.list_jobs() == []
    assert len(a.history()) == 1
    # A write from a node that has not seen the other's change is refused, not lost.
    b.add_job(_job("j2"))
    with pytest.raises(ConfigError, match="another node changed the jobs"):
        a.add_job(_job("j3"))
    assert [j.id for j in a.list_jobs()] == ["j2"]  # a took the catalog's version


def test_pinned_jobs_run_only_on_labelled_nodes(cluster: Cluster, clock: SimClock) -> None:
    east = cluster.node("east1", labels=("east",))
    west = cluster.node("west1", labels=("west",))
    east.add_job(_job("pinned", node_labels=("east",)))
    east.add_job(_job("floating", priority=1))
    for _ in range(10):
        clock.advance(minutes=1)
        west.execute_due_jobs()  # west goes first every time: it still never runs "pinned"
        east.execute_due_jobs()
    conn = cluster.managers[0]._conn
    by_node = dict(
        conn.execute("SELECT job_id, string_agg(DISTINCT node, ',') FROM sched_executions GROUP BY job_id").fetchall()
    )
    assert by_node == {"pinned": "east1", "floating": "west1"}


def test_a_dead_nodes_claim_is_taken_over_after_its_lease(cluster: Cluster, clock: SimClock) -> None:
    a = cluster.node("a")
    b = cluster.node("b")
    a.add_job(_job("run-once", "0 * * * *"))
    a.add_job(_job("skipper", "0 * * * *", misfire="skip"))
    clock.advance(hours=1)
    # a claims both occurrences and "dies" before running them.
    lost = []
    for jid in ("run-once", "skipper"):
        claim = a._history.claim(jid, clock.now, clock.now, LEASE)
        assert claim.outcome == "claimed" and claim.execution_id is not None
        lost.append(claim.execution_id)
    b.execute_due_jobs()  # within the lease: b leaves them alone
    assert {e.status for e in b.history()} == {ExecutionStatus.RUNNING}
    clock.advance(minutes=5, seconds=1)
    b.execute_due_jobs()
    got = {e.job_id: (e.status, e.error) for e in b.history()}
    assert got["run-once"] == (ExecutionStatus.COMPLETED, None)
    assert got["skipper"][0] is ExecutionStatus.SKIPPED
    assert "misfire policy skip" in str(got["skipper"][1])
    # a comes back: its finish matches no row (the epoch moved), so b's outcome stands.
    assert a._history.finish(lost[0], ExecutionStatus.FAILED, clock.now) is False
    assert {e.job_id: (e.status, e.error) for e in b.history()} == got


def test_a_set_made_under_a_lost_claim_is_not_registered(catalog_url: str, tmp_path: Path, clock: SimClock) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"data" * 1000)
    repo = tmp_path / "repo"
    ma = BackupManager(repo, clock=clock, catalog=catalog_url)
    ma.register_database("db", src)
    mb = BackupManager(repo, clock=clock, catalog=catalog_url)
    a = BackupScheduler(ma, clock=clock, node="a", lease=LEASE, heartbeat=3600)
    b = BackupScheduler(mb, clock=clock, node="b", lease=LEASE, heartbeat=3600)
    try:
        a.add_job(_job("nightly", "0 * * * *"))
        clock.advance(hours=1)
        claim = a._history.claim("nightly", clock.now, clock.now, LEASE)
        assert claim.execution_id is not None
        # a is paused past its lease; b takes the occurrence over and runs it.
        clock.advance(minutes=6)
        made = b.execute_due_jobs()
        assert len(made) == 1
        # a resumes and finishes its backup under the claim it lost.
        token = REGISTRATION_FENCE.set(a._history.fence(claim.execution_id, clock))  # type: ignore[union-attr]
        try:
            with pytest.raises(ClaimLost, match="lease expired or taken over"):
                ma.backup("db", "full")
        finally:
            REGISTRATION_FENCE.reset(token)
        assert [s.id for s in mb.catalog.list_sets()] == made
        assert sorted(p.name for p in (repo / "sets").iterdir()) == made
        assert a._history.finish(claim.execution_id, ExecutionStatus.COMPLETED, clock.now) is False
        assert [(e.status, e.backup_set_id) for e in b.history()] == [(ExecutionStatus.COMPLETED, made[0])]
    finally:
        a.close()
        b.close()
        ma.catalog.close()
        mb.catalog.close()


def test_nodes_list_and_node_name_clash(cluster: Cluster, clock: SimClock) -> None:
    a = cluster.node("a", labels=("east", "ssd"))
    a.add_job(_job("j"))
    claim = a._history.claim("j", clock.now, clock.now, LEASE)
    a.node.beat(seen_clock=clock.now)  # type: ignore[union-attr]
    nodes = list_nodes(cluster.url, clock.now)
    assert [(n.name, n.live, n.labels) for n in nodes] == [("a", True, ("east", "ssd"))]
    assert [r["execution_id"] for r in nodes[0].running] == [claim.execution_id]
    assert nodes[0].running[0]["job_id"] == "j"
    # The same name held by another live process is refused while its lease runs.
    cluster.managers[0]._conn.execute("UPDATE rustybackup.nodes SET pid = ? WHERE name = 'a'", (os.getppid(),))
    with pytest.raises(ConfigError, match="node 'a' is already running"):
        NodeRuntime(cluster.url, cluster.repo, "a", lease=LEASE, clock=clock, heartbeat=3600)
    clock.advance(minutes=6)
    assert [n.live for n in list_nodes(cluster.url, clock.now)] == [False]


def test_node_without_a_shared_catalog_is_refused(tmp_path: Path) -> None:
    m = BackupManager(tmp_path / "repo")
    with pytest.raises(ConfigError, match="a node needs a shared catalog"):
        BackupScheduler(m, node="n1")
    m.catalog.close()


def test_verification_round_claims_split_items(cluster: Cluster, clock: SimClock) -> None:
    a = cluster.node("a")
    b = cluster.node("b")
    items = [f"p{i}" for i in range(10)]
    got_a = a._history.claim_items("round-1", items[:6], clock.now)  # type: ignore[union-attr]
    got_b = b._history.claim_items("round-1", items, clock.now)  # type: ignore[union-attr]
    assert got_a == items[:6] and got_b == items[6:]
    # A new round starts over.
    assert b._history.claim_items("round-2", items[:2], clock.now) == items[:2]  # type: ignore[union-attr]


def test_unknown_status_in_history_is_a_clear_error(cluster: Cluster) -> None:
    a = cluster.node("a")
    conn = cluster.managers[0]._conn
    conn.execute("INSERT INTO sched_executions (id, job_id, scheduled_for, status) VALUES ('x', 'j', 0, 'exploded')")
    with pytest.raises(CatalogError, match="sched_executions row 'x' field 'status'"):
        a.history()


def test_nodes_split_a_verification_round(catalog_url: str, tmp_path: Path, clock: SimClock) -> None:
    import threading

    from rustybackup import VerificationType, Verifier
    from rustybackup.claims import SharedHistory

    src = tmp_path / "src"
    src.mkdir()
    repo = tmp_path / "repo"
    m = BackupManager(repo, clock=clock, catalog=catalog_url)
    m.register_database("db", src)
    for n in range(20):
        (src / f"f{n}").write_bytes(os.urandom(3000))
        clock.advance(minutes=1)
        m.backup("db", "full")
    histories = [SharedHistory(catalog_url, repo, name, f"{name}-owner") for name in ("a", "b")]
    reports = {}

    def verify(h: SharedHistory) -> None:
        v = Verifier(BackupManager(repo, clock=clock, catalog=catalog_url))
        v.share = lambda ids: h.claim_items("db:standard:2026-01-01", ids, clock.now)
        reports[h.node] = v.verify("db", VerificationType.STANDARD, budget=timedelta(hours=1))
        v.manager.catalog.close()

    threads = [threading.Thread(target=verify, args=(h,)) for h in histories]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    items = {i.item for i in Verifier(m).coverage("db").items}
    claimed = histories[0].connection.execute("SELECT item_id, node FROM verify_round_claims").fetchall()
    assert {r[0] for r in claimed} == items  # every piece and block map of the round, once
    assert sum(r.pieces_checked for r in reports.values()) == len(items)  # none checked twice
    assert all(r.ok for r in reports.values())
    # The same round again: everything is taken, nothing is checked twice.
    v = Verifier(m)
    v.share = lambda ids: histories[1].claim_items("db:standard:2026-01-01", ids, clock.now)
    assert v.verify("db", VerificationType.STANDARD, budget=timedelta(hours=1)).pieces_checked == 0
    for h in histories:
        h.close()
    m.catalog.close()


def test_a_lapsed_lease_is_not_revived(cluster: Cluster, clock: SimClock) -> None:
    a = cluster.node("a")
    b = cluster.node("b")
    a.add_job(_job("hourly", "0 * * * *"))
    clock.advance(hours=1)
    claim = a._history.claim("hourly", clock.now, clock.now, LEASE)
    assert claim.execution_id is not None
    fence = a.node.history.fence(claim.execution_id, clock)  # type: ignore[union-attr]
    clock.advance(minutes=4)
    a.node.beat()  # type: ignore[union-attr]  # alive: renewed to 01:09
    clock.advance(minutes=6)  # paused past the renewed lease; nobody has taken it yet
    a.node.beat()  # type: ignore[union-attr]
    assert a.node.history.held() == {}  # type: ignore[union-attr]
    conn = cluster.managers[0]._conn
    conn.execute("BEGIN")
    with pytest.raises(ClaimLost):
        fence(conn)
    conn.execute("ROLLBACK")
    # The occurrence is still there for another node to take over.
    b.execute_due_jobs()
    assert [(e.status, e.job_id) for e in b.history()] == [(ExecutionStatus.COMPLETED, "hourly")]


class _Together(FakeManager):
    """Backups that finish only when `parties` of them run at the same time."""

    def __init__(self, url: str, repo: Path, parties: int) -> None:
        super().__init__(url, repo)
        self.barrier = threading.Barrier(parties, timeout=10)

    def backup(
        self,
        database: str,
        backup_type: BackupType,
        tags: tuple[str, ...] = (),
        progress: Any = None,
        cancel: Any = None,
    ) -> Any:
        self.barrier.wait()
        return super().backup(database, backup_type, tags, progress, cancel)


def test_a_node_runs_up_to_its_concurrency_limit(cluster: Cluster, clock: SimClock) -> None:
    manager = _Together(cluster.url, cluster.repo, 2)
    cluster.managers.append(manager)
    a = cluster.node("a", manager=manager, max_concurrent=2)
    a.add_job(_job("one", "0 * * * *"))
    a.add_job(_job("two", "0 * * * *"))
    clock.advance(hours=1)
    assert len(a.execute_due_jobs()) == 2  # both ran at once: the barrier let them through
    assert {e.status for e in a.history()} == {ExecutionStatus.COMPLETED}
    # One at a time (the default), the same pair cannot meet: each run fails at the barrier.
    b_manager = _Together(cluster.url, cluster.repo, 2)
    cluster.managers.append(b_manager)
    b = cluster.node("b", manager=b_manager)
    b_manager.barrier = threading.Barrier(2, timeout=0.5)
    clock.advance(hours=1)
    assert b.execute_due_jobs() == []
    assert {e.status for e in b.history() if e.scheduled_for == clock.now} == {ExecutionStatus.FAILED}
