"""Occurrence claims in a shared catalog: each occurrence of each job runs once across
every node, a dead node's claim is taken over after its lease, and a node that lost its
claim (paused past its lease: SIGSTOP, a long GC, a partition) registers nothing.

`SharedHistory` is history.History's interface on PostgreSQL (the scheduler uses
either). A claim is the row ``(job_id, scheduled_for)`` of ``sched_executions`` (UNIQUE):
of two nodes inserting it, one gets the row. The row carries its owner (node, pid, a
random token) and an ``epoch``; a takeover bumps the epoch. Every later write of the
claim (renewal, finish) names owner and epoch, so a stale holder's write matches no
row. Registration of the set made under a claim checks the claim in the same
transaction as the insert (`fence`, run by catalog.register_set through
catalog_db.REGISTRATION_FENCE), with ``FOR UPDATE`` so a takeover cannot commit between
the check and the insert.

Per-round verification claims (`claim_items`) let nodes split the pieces of one
verification round: the first node to insert an item's row checks it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from . import catalog_db, catalog_pg
from .catalog_db import Conn, DbConnectionLost, PgConnection
from .enums import ExecutionStatus
from .errors import CatalogError
from .history import EXECUTION_COLUMNS, Claim, execution_from_row, executions_query
from .jobs import BackupExecution
from .timestamps import from_us, to_us

__all__ = ["ClaimLost", "SharedHistory", "TakenOver"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_COLUMNS = EXECUTION_COLUMNS


#: A claim (SharedHistory._claim): lock, conditional insert, then the row and the busy run.
_CLAIM_SCRIPT = """
SELECT pg_advisory_xact_lock(hashtext(%(job)s));
INSERT INTO sched_executions (id, job_id, scheduled_for, started_at, status, owner, lease_until, node, epoch)
SELECT %(id)s, %(job)s, %(sched)s, %(now)s, %(running)s, %(owner)s, %(until)s, %(node)s, 1
WHERE NOT EXISTS (SELECT 1 FROM sched_executions WHERE job_id = %(job)s AND status = %(running)s
                  AND lease_until >= %(now)s AND scheduled_for <> %(sched)s)
ON CONFLICT DO NOTHING;
SELECT id, owner, epoch FROM sched_executions WHERE job_id = %(job)s AND scheduled_for = %(sched)s;
SELECT min(scheduled_for) FROM sched_executions WHERE job_id = %(job)s AND status = %(running)s
  AND lease_until >= %(now)s AND scheduled_for <> %(sched)s;
"""


def _retrying(call: Callable[[], T]) -> T:
    """`call` (one transaction), again while the server is away, for up to
    catalog_db.RECONNECT_SECONDS."""
    deadline = time.monotonic() + catalog_db.RECONNECT_SECONDS
    while True:
        try:
            return call()
        except DbConnectionLost:
            if time.monotonic() >= deadline:
                raise
            log.warning("shared catalog: connection lost during a claim; trying again")
            time.sleep(0.1)


class ClaimLost(CatalogError):
    """The claim under which a set was made belongs to another node now (or its lease
    ran out): the set is not registered."""


@dataclass(frozen=True)
class TakenOver:
    """A claim this node took from a node whose lease ran out."""

    execution_id: str
    job_id: str
    scheduled_for: datetime
    previous_owner: str


class SharedHistory:
    """``sched_executions`` of one repository in a shared catalog, for node `node`."""

    def __init__(self, url: str, repository: str | os.PathLike[str], node: str, owner: str) -> None:
        self.node = node
        self.owner = owner
        self.path = Path(os.fspath(repository))
        self._conn: PgConnection
        self._conn, self.entry = catalog_pg.open_repository(url, repository)
        self._lock = threading.Lock()
        # exec id -> epoch of the claims this process holds.
        self._held: dict[str, int] = {}

    def close(self) -> None:
        self._conn.close()

    @property
    def connection(self) -> PgConnection:
        return self._conn

    def held(self) -> dict[str, int]:
        with self._lock:
            return dict(self._held)

    # --- claims -----------------------------------------------------------------------

    def claim(self, job_id: str, scheduled_for: datetime, now: datetime, lease: timedelta) -> Claim:
        """Claims the occurrence; a connection lost mid-way (the server restarting) is
        tried again, which is safe: a claim whose commit did commit is found as ours."""
        return _retrying(lambda: self._claim(job_id, scheduled_for, now, lease))

    def _claim(self, job_id: str, scheduled_for: datetime, now: datetime, lease: timedelta) -> Claim:
        """One round trip (a script: one transaction): the job's advisory lock (one
        claimant per job at a time, since the busy check reads other rows), then, in a
        snapshot taken after the lock, the insert unless a run of the job still holds a
        lease, then the occurrence's row and the busy run. Repeating it after a lost
        answer is safe: a row that did commit is found as ours."""
        sched = to_us(scheduled_for)
        exec_id = uuid.uuid4().hex
        args = {
            "id": exec_id,
            "job": job_id,
            "sched": sched,
            "now": to_us(now),
            "until": to_us(now + lease),
            "owner": self.owner,
            "node": self.node,
            "running": ExecutionStatus.RUNNING.value,
        }
        with self._lock:
            res = self._conn.script(_CLAIM_SCRIPT, args)
            row = res[2][0] if res[2] else None
            if row is not None:
                if row[1] != self.owner:
                    return Claim("taken")
                self._held[row[0]] = int(row[2])
                return Claim("claimed", execution_id=row[0])
            busy = res[3][0][0]
            if busy is None:  # the row was there and is gone again (history pruned)
                return Claim("taken")
            prev = from_us(busy, f"sched_executions of job {job_id!r} field 'scheduled_for'")
            reason = f"previous run (scheduled for {prev.isoformat()}) is still running"
            # Rare (near a dead node's claim): a second round trip records the skip; a
            # row another node inserted meanwhile wins.
            cur = self._conn.execute(
                "INSERT INTO sched_executions (id, job_id, scheduled_for, finished_at, status, error, node)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (exec_id, job_id, sched, to_us(now), ExecutionStatus.SKIPPED.value, reason, self.node),
            )
            if cur.rowcount == 1:
                return Claim("busy", reason=reason)
            return Claim("taken")

    def take_over(self, now: datetime, lease: timedelta, job_ids: Sequence[str], limit: int = 16) -> list[TakenOver]:
        return _retrying(lambda: self._take_over(now, lease, job_ids, limit))

    def _take_over(self, now: datetime, lease: timedelta, job_ids: Sequence[str], limit: int) -> list[TakenOver]:
        """Claims whose lease ran out (their node died or stopped), of the jobs this node
        may run, made this node's: a new epoch, so the old holder's writes match nothing.
        ``SKIP LOCKED``: two nodes taking over at once split the rows."""
        if not job_ids:
            return []
        with self._lock:
            # One statement (one round trip; most ticks find nothing): the locked rows
            # are checked again under their lock, so two nodes never take one claim.
            rows = self._conn.execute(
                "UPDATE sched_executions AS e SET owner = ?, node = ?, epoch = e.epoch + 1, lease_until = ?,"
                " takeover = TRUE, started_at = ?"
                " FROM (SELECT id, owner AS previous FROM sched_executions"
                " WHERE status = ? AND lease_until < ? AND job_id = ANY(?) ORDER BY scheduled_for"
                " LIMIT ? FOR UPDATE SKIP LOCKED) AS s"
                " WHERE e.id = s.id RETURNING e.id, e.job_id, e.scheduled_for, s.previous, e.epoch",
                (
                    self.owner,
                    self.node,
                    to_us(now + lease),
                    to_us(now),
                    ExecutionStatus.RUNNING.value,
                    to_us(now),
                    list(job_ids),
                    limit,
                ),
            ).fetchall()
            out = []
            for exec_id, job_id, sched, previous, epoch in sorted(rows, key=lambda r: (r[2], r[0])):
                self._held[exec_id] = int(epoch)
                out.append(TakenOver(exec_id, job_id, from_us(sched), str(previous)))
        return out

    def renew(self, execution_id: str, until: datetime, now: datetime | None = None) -> bool:
        """Extends a claim this process holds; False when it is no longer ours. With
        `now`, a lease that already ran out is not revived (a node paused past it has
        lost the claim, whether or not another node has taken it yet)."""
        with self._lock:
            epoch = self._held.get(execution_id)
            if epoch is None:
                return False
            cur = self._conn.execute(
                "UPDATE sched_executions SET lease_until = ? WHERE id = ? AND owner = ? AND epoch = ? AND status = ?"
                " AND lease_until >= ?",
                (
                    to_us(until),
                    execution_id,
                    self.owner,
                    epoch,
                    ExecutionStatus.RUNNING.value,
                    to_us(now) if now is not None else -(2**63),
                ),
            )
            if cur.rowcount == 0:
                log.warning("node %s: claim %s was taken over; stopping its renewal", self.node, execution_id)
                self._held.pop(execution_id, None)
                return False
            return True

    def renew_all(self, until: datetime, now: datetime | None = None) -> int:
        """Renews every claim held (the node's heartbeat); returns how many are still ours."""
        return sum(self.renew(exec_id, until, now) for exec_id in self.held())

    def fence(self, execution_id: str, clock: Callable[[], datetime]) -> Callable[[Conn], None]:
        """The check catalog.register_set runs inside its transaction: the claim is still
        this process's (owner and epoch) and its lease has not run out on `clock`."""

        def check(conn: Conn) -> None:
            with self._lock:
                epoch = self._held.get(execution_id)
            row = None
            if epoch is not None:
                row = conn.execute(
                    "SELECT lease_until FROM sched_executions WHERE id = ? AND owner = ? AND epoch = ? AND status = ?"
                    " FOR UPDATE",
                    (execution_id, self.owner, epoch, ExecutionStatus.RUNNING.value),
                ).fetchone()
            if row is None or row[0] is None or int(row[0]) < to_us(clock()):
                raise ClaimLost(
                    f"node {self.node}: the claim of run {execution_id} was lost (lease expired or taken over "
                    "by another node); the set is not registered"
                )

        return check

    def finish(
        self,
        execution_id: str,
        status: ExecutionStatus,
        finished_at: datetime,
        *,
        backup_set_id: str | None = None,
        error: str | None = None,
        bytes_read: int | None = None,
        bytes_written: int | None = None,
        repository: str | None = None,
    ) -> bool:
        """Records the outcome, only while the claim is still ours; False otherwise (the
        node that took it over records its own)."""
        with self._lock:
            epoch = self._held.pop(execution_id, None)
            if epoch is None:
                return False
            cur = self._conn.execute(
                "UPDATE sched_executions SET status = ?, finished_at = ?, backup_set_id = ?, error = ?,"
                " bytes_read = ?, bytes_written = ?, repository = ?, lease_until = NULL"
                " WHERE id = ? AND owner = ? AND epoch = ?",
                (
                    status.value,
                    to_us(finished_at),
                    backup_set_id,
                    error,
                    bytes_read,
                    bytes_written,
                    repository,
                    execution_id,
                    self.owner,
                    epoch,
                ),
            )
        if cur.rowcount == 0:
            log.warning(
                "node %s: run %s was taken over by another node; its outcome is not recorded", self.node, execution_id
            )
            return False
        return True

    def record_skipped(self, job_id: str, scheduled_for: datetime, now: datetime, reason: str) -> bool:
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO sched_executions (id, job_id, scheduled_for, finished_at, status, error, node)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    uuid.uuid4().hex,
                    job_id,
                    to_us(scheduled_for),
                    to_us(now),
                    ExecutionStatus.SKIPPED.value,
                    reason,
                    self.node,
                ),
            )
            return cur.rowcount == 1

    def recover(self, now: datetime) -> int:
        """Nothing to mark: a claim whose lease ran out is taken over (`take_over`), not
        failed, in a shared catalog."""
        return 0

    # --- verification rounds -----------------------------------------------------------

    def claim_items(self, round_id: str, item_ids: Iterable[str], now: datetime) -> list[str]:
        """Those of `item_ids` this node is first to claim in `round_id`, in the order given."""
        ids = list(dict.fromkeys(item_ids))
        if not ids:
            return []
        with self._lock:
            rows = self._conn.execute(
                "INSERT INTO verify_round_claims (round, item_id, node, claimed_at)"
                " SELECT ?, unnest(?::text[]), ?, ? ON CONFLICT DO NOTHING RETURNING item_id",
                (round_id, ids, self.node, to_us(now)),
            ).fetchall()
        got = {r[0] for r in rows}
        return [i for i in ids if i in got]

    # --- queries (as History's) -----------------------------------------------------------

    def last_scheduled(self) -> dict[str, datetime]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT job_id, MAX(scheduled_for) FROM sched_executions GROUP BY job_id"
            ).fetchall()
        return {str(j): from_us(us, f"sched_executions rows of job {j!r} field 'scheduled_for'") for j, us in rows}

    def running(self) -> list[tuple[str, str, datetime, str | None, int | None]]:
        """(execution id, job id, scheduled for, node, lease_until µs) of every run in progress."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, job_id, scheduled_for, node, lease_until FROM sched_executions WHERE status = ?"
                " ORDER BY scheduled_for",
                (ExecutionStatus.RUNNING.value,),
            ).fetchall()
        return [(r[0], r[1], from_us(r[2]), r[3], r[4]) for r in rows]

    def query(
        self,
        job_id: str | None = None,
        status: ExecutionStatus | str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[BackupExecution]:
        sql, args = executions_query(job_id, status, since, limit)
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        # History's row checks, so a damaged row reads the same on both catalogs.
        return [execution_from_row(self.path, tuple(r)) for r in rows]
