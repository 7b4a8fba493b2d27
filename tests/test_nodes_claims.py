"""SharedHistory's claim and takeover, each one round trip (claims.py), on a real
PostgreSQL catalog: the outcomes a node can get for one occurrence, checked against the
rows they leave."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import shared_catalog_support
from rustybackup.claims import SharedHistory
from rustybackup.enums import ExecutionStatus

catalog_server = shared_catalog_support.catalog_server
catalog_url = shared_catalog_support.catalog_url

T0 = datetime(2026, 3, 2, 1, 0, 0, 250_000, tzinfo=UTC)
LEASE = timedelta(minutes=5)


@pytest.fixture
def pair(catalog_url: str, tmp_path: Path) -> Iterator[tuple[SharedHistory, SharedHistory]]:
    repo = tmp_path / "repo"
    repo.mkdir()
    a = SharedHistory(catalog_url, repo, "a", "a@1")
    b = SharedHistory(catalog_url, repo, "b", "b@1")
    yield a, b
    a.close()
    b.close()


def _row(h: SharedHistory, job: str, at: datetime) -> tuple[object, ...]:
    rows = h.connection.execute(
        "SELECT status, owner, node, epoch, error FROM sched_executions WHERE job_id = ? AND scheduled_for = ?",
        (job, int(at.timestamp() * 1_000_000)),
    ).fetchall()
    assert len(rows) == 1, rows
    return tuple(rows[0])


def test_one_claimant_per_occurrence_and_a_repeat_is_ours(pair: tuple[SharedHistory, SharedHistory]) -> None:
    a, b = pair
    first = a.claim("j", T0, T0, LEASE)
    assert first.outcome == "claimed" and first.execution_id is not None
    assert b.claim("j", T0, T0, LEASE).outcome == "taken"
    # The same claim sent again (its answer lost): found as a's, the same run.
    again = a.claim("j", T0, T0, LEASE)
    assert (again.outcome, again.execution_id) == ("claimed", first.execution_id)
    assert _row(a, "j", T0) == ("running", "a@1", "a", 1, None)
    assert a.held() == {first.execution_id: 1} and b.held() == {}


def test_a_run_holding_its_lease_makes_the_next_occurrence_busy(pair: tuple[SharedHistory, SharedHistory]) -> None:
    a, b = pair
    assert a.claim("j", T0, T0, LEASE).outcome == "claimed"
    nxt = T0 + timedelta(minutes=1)
    busy = b.claim("j", nxt, nxt, LEASE)
    assert busy.outcome == "busy"
    assert busy.reason == f"previous run (scheduled for {T0.isoformat()}) is still running"
    assert _row(b, "j", nxt) == ("skipped", None, "b", 1, busy.reason)  # epoch: the column default
    assert a.claim("j", nxt, nxt, LEASE).outcome == "taken"  # the skip is the outcome
    # Another job is not held up by j's run.
    assert b.claim("k", nxt, nxt, LEASE).outcome == "claimed"
    # Once a's lease ran out, j's next occurrence is free again.
    late = T0 + LEASE + timedelta(minutes=1)
    assert b.claim("j", late, late, LEASE).outcome == "claimed"


def test_a_finished_run_does_not_make_the_next_busy(pair: tuple[SharedHistory, SharedHistory]) -> None:
    a, b = pair
    c = a.claim("j", T0, T0, LEASE)
    assert c.execution_id is not None
    assert a.finish(c.execution_id, ExecutionStatus.COMPLETED, T0 + timedelta(seconds=5), backup_set_id="s1")
    nxt = T0 + timedelta(minutes=1)
    assert b.claim("j", nxt, nxt, LEASE).outcome == "claimed"


def test_take_over_only_lapsed_claims_of_my_jobs(pair: tuple[SharedHistory, SharedHistory]) -> None:
    a, b = pair
    ids = {}
    for i, job in enumerate(("j", "k", "m")):
        at = T0 + timedelta(seconds=i)
        c = a.claim(job, at, at, LEASE)
        assert c.execution_id is not None
        ids[job] = c.execution_id
    assert b.take_over(T0 + LEASE - timedelta(seconds=1), LEASE, ["j", "k", "m"]) == []  # leases hold
    later = T0 + LEASE + timedelta(minutes=1)
    taken = b.take_over(later, LEASE, ["j", "k"])  # m is not b's to run
    assert [(t.job_id, t.execution_id, t.previous_owner) for t in taken] == [
        ("j", ids["j"], "a@1"),
        ("k", ids["k"], "a@1"),
    ]
    assert [t.scheduled_for for t in taken] == [T0, T0 + timedelta(seconds=1)]
    assert b.held() == {ids["j"]: 2, ids["k"]: 2}
    assert _row(b, "j", T0)[:4] == ("running", "b@1", "b", 2)
    assert _row(b, "m", T0 + timedelta(seconds=2))[:4] == ("running", "a@1", "a", 1)
    # Taken once: a second look finds nothing, and a's writes under the old epoch match nothing.
    assert b.take_over(later, LEASE, ["j", "k"]) == []
    assert not a.renew(ids["j"], later + LEASE)
    assert not a.finish(ids["k"], ExecutionStatus.COMPLETED, later)
    assert b.finish(ids["k"], ExecutionStatus.COMPLETED, later)
    assert b.take_over(later, LEASE, []) == []


def test_take_over_limit(pair: tuple[SharedHistory, SharedHistory]) -> None:
    a, b = pair
    for i in range(5):
        at = T0 + timedelta(minutes=i)
        assert a.claim(f"j{i}", at, at, LEASE).outcome == "claimed"
    later = T0 + timedelta(hours=1)
    first = b.take_over(later, LEASE, [f"j{i}" for i in range(5)], limit=3)
    assert [t.job_id for t in first] == ["j0", "j1", "j2"]  # earliest first
    rest = b.take_over(later, LEASE, [f"j{i}" for i in range(5)], limit=3)
    assert [t.job_id for t in rest] == ["j3", "j4"]
