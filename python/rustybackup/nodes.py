"""Scheduler nodes on a shared catalog: `BackupScheduler(manager, node="n1")` with a
manager whose catalog is PostgreSQL runs as one of many nodes.

A node registers in ``rustybackup.nodes`` (host, pid, labels, concurrency limit) and
beats: every `heartbeat` seconds it renews its node lease and the leases of the claims
it holds, on the scheduler's clock (so a test's simulated clock expires them, and a
node that stops beating loses them after one lease). Jobs and windows live in the
repository's ``sched_config`` row (one document, the JSON file's format, with a version
every node polls), so every node sees one job list; ``config_path`` is only for
`export`/`import`. Which jobs a node may run: those whose ``node_labels`` it carries
(pinned), or any job without labels (floating).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from . import catalog_pg
from .catalog_db import DbError, PgConnection
from .claims import SharedHistory
from .config import SchedulerConfig, encode_config, parse_config
from .errors import ConfigError, RustyBackupError
from .history import new_owner
from .jobs import Job
from .timestamps import from_us, to_us

__all__ = ["NodeInfo", "NodeRuntime", "list_nodes", "parse_labels"]

log = logging.getLogger(__name__)

#: The notification channel of a node's beat (its payload: the node's name, a space, and
#: the clock instant its scheduler has handled, in microseconds, or nothing).
SEEN_CHANNEL = "rustybackup_node_seen"


def parse_labels(text: str | Iterable[str] | None) -> frozenset[str]:
    """``a,b`` (or an iterable) as a set of label names; a bad one is a ConfigError."""
    if text is None:
        return frozenset()
    items = text.split(",") if isinstance(text, str) else list(text)
    out = set()
    for raw in items:
        label = raw.strip()
        if not label:
            continue
        if not label.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ConfigError(f"node label {label!r}: use letters, digits, '.', '_' or '-'")
        out.add(label)
    return frozenset(out)


@dataclass(frozen=True)
class NodeInfo:
    """One row of ``rustybackup nodes``."""

    name: str
    host: str
    pid: int
    labels: tuple[str, ...]
    repository: str | None
    started_at: datetime
    heartbeat_at: datetime
    lease_until: datetime
    max_concurrent: int
    live: bool
    running: tuple[dict[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "host": self.host,
            "pid": self.pid,
            "labels": list(self.labels),
            "repository": self.repository,
            "started_at": self.started_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
            "lease_until": self.lease_until.isoformat(),
            "max_concurrent": self.max_concurrent,
            "live": self.live,
            "running": list(self.running),
        }


class NodeRuntime:
    """This process as a node of the shared catalog `url`, for `repository`."""

    def __init__(
        self,
        url: str,
        repository: str | os.PathLike[str],
        node: str,
        *,
        labels: Iterable[str] = (),
        lease: timedelta,
        clock: Callable[[], datetime],
        max_concurrent: int = 1,
        heartbeat: float | None = None,
        member: bool = True,
    ) -> None:
        """`member=False`: this process edits jobs and reads history (the CLI's ``job``
        and ``history``) without joining as a node: no row, no heartbeat, no runs."""
        if not node or not parse_labels([node]) == {node}:
            raise ConfigError(f"node name {node!r}: use letters, digits, '.', '_' or '-'")
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ConfigError(f"max_concurrent must be a whole number of at least 1, not {max_concurrent!r}")
        self.url = url
        self.name = node
        self.labels = parse_labels(labels)
        self.lease = lease
        self.clock = clock
        self.max_concurrent = max_concurrent
        self.location = catalog_pg.location_of(repository)
        self.owner = f"{node}@{new_owner()}"
        self._global: PgConnection = catalog_pg.connect_global(url)
        self.history = SharedHistory(url, repository, node, self.owner)
        self._config_version: int | None = None
        self._seen_clock: datetime | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._period = heartbeat if heartbeat is not None else max(lease.total_seconds() / 3, 0.05)
        self.member = member
        self._thread: threading.Thread | None = None
        if not member:
            return
        try:
            self._register()
        except BaseException:
            self.history.close()
            self._global.close()
            raise
        self._thread = threading.Thread(target=self._beat, name=f"rustybackup-node-{node}", daemon=True)
        self._thread.start()

    # --- membership --------------------------------------------------------------------

    def _register(self) -> None:
        now = self.clock()
        host, pid = socket.gethostname(), os.getpid()
        c = self._global
        c.execute("BEGIN")
        try:
            row = c.execute(
                "SELECT host, pid, lease_until FROM rustybackup.nodes WHERE name = ? FOR UPDATE", (self.name,)
            ).fetchone()
            if row is not None and row[2] >= to_us(now) and (row[0], row[1]) != (host, pid) and _alive(row[0], row[1]):
                raise ConfigError(
                    f"node {self.name!r} is already running (pid {row[1]} on {row[0]}, lease until "
                    f"{from_us(row[2]).isoformat()}); pick another --node name"
                )
            c.execute(
                "INSERT INTO rustybackup.nodes (name, host, pid, labels, repository, started_at, heartbeat_at,"
                " lease_until, max_concurrent, seen_clock, running) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, '[]')"
                " ON CONFLICT (name) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid,"
                " labels = EXCLUDED.labels, repository = EXCLUDED.repository, started_at = EXCLUDED.started_at,"
                " heartbeat_at = EXCLUDED.heartbeat_at, lease_until = EXCLUDED.lease_until,"
                " max_concurrent = EXCLUDED.max_concurrent, seen_clock = NULL, running = '[]'",
                (
                    self.name,
                    host,
                    pid,
                    ",".join(sorted(self.labels)),
                    self.location,
                    to_us(now),
                    to_us(now),
                    to_us(now + self.lease),
                    self.max_concurrent,
                ),
            )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def beat(self, seen_clock: datetime | None = None) -> None:
        """Renews the node's lease and its claims' leases on the scheduler's clock, and
        says which clock instant its scheduler has handled (`seen_clock`)."""
        if not self.member:
            return
        now = self.clock()
        with self._lock:
            if seen_clock is not None:
                self._seen_clock = seen_clock
            seen = self._seen_clock
        self.history.renew_all(now + self.lease, now)
        running = [{"execution_id": e} for e in self.history.held()]
        # A notice on channel `SEEN_CHANNEL` when the row changes, so a driver waiting for
        # every node to reach a clock instant (tests/nodes_support.py) sleeps, not polls.
        self._global.execute(
            "WITH u AS (UPDATE rustybackup.nodes SET heartbeat_at = ?, lease_until = ?, seen_clock = ?, running = ?"
            f" WHERE name = ? AND pid = ? RETURNING name, seen_clock)"
            f" SELECT pg_notify('{SEEN_CHANNEL}', name || ' ' || coalesce(seen_clock::text, '')) FROM u",
            (
                to_us(now),
                to_us(now + self.lease),
                None if seen is None else to_us(seen),
                json.dumps(running),
                self.name,
                os.getpid(),
            ),
        )

    def _beat(self) -> None:
        while not self._stop.wait(self._period):
            try:
                self.beat()
            except (RustyBackupError, OSError) as exc:  # the server restarting: next beat
                log.warning("node %s: heartbeat failed: %s", self.name, exc)

    def close(self) -> None:
        """Leaves: the node's lease ends now (its row stays, for `rustybackup nodes`)."""
        self._stop.set()
        if self._thread is None:
            self.history.close()
            self._global.close()
            return
        self._thread.join(timeout=10)
        try:
            self._global.execute(
                "UPDATE rustybackup.nodes SET lease_until = heartbeat_at, running = '[]' WHERE name = ? AND pid = ?",
                (self.name, os.getpid()),
            )
        except DbError as exc:
            log.warning("node %s: could not record its leaving: %s", self.name, exc)
        self.history.close()
        self._global.close()

    # --- placement ---------------------------------------------------------------------

    def eligible(self, job: Job) -> bool:
        """Pinned jobs run only on nodes with all their labels; the others float."""
        return set(job.node_labels) <= self.labels

    # --- jobs and windows in the catalog -----------------------------------------------------

    def _where(self) -> Path:
        return Path(f"shared catalog {self.history.connection.where} ({self.location}) sched_config")

    def config_version(self) -> int:
        row = self.history.connection.execute("SELECT version FROM sched_config WHERE id = 1").fetchone()
        return 0 if row is None else int(row[0])

    def load_config(self) -> SchedulerConfig:
        row = self.history.connection.execute("SELECT version, document FROM sched_config WHERE id = 1").fetchone()
        if row is None:
            self._config_version = 0
            return SchedulerConfig()
        self._config_version = int(row[0])
        return parse_config(str(row[1]), self._where())

    def config_changed(self) -> bool:
        return self.config_version() != self._config_version

    def save_config(self, config: SchedulerConfig) -> None:
        """Writes the job list, unless another node changed it since this one read it
        (then a ConfigError: reload and retry)."""
        document = encode_config(config).decode()
        expected = self._config_version or 0
        c = self.history.connection
        if expected == 0:
            cur = c.execute(
                "INSERT INTO sched_config (id, version, document) VALUES (1, 1, ?) ON CONFLICT DO NOTHING", (document,)
            )
        else:
            cur = c.execute(
                "UPDATE sched_config SET version = version + 1, document = ? WHERE id = 1 AND version = ?",
                (document, expected),
            )
        if cur.rowcount == 0:
            raise ConfigError(
                f"{self._where()}: another node changed the jobs since this one read them (version "
                f"{self.config_version()}, read {expected}); reload and retry"
            )
        self._config_version = expected + 1


def _alive(host: object, pid: object) -> bool:
    """False only when the process is provably gone (a dead pid on this host)."""
    if host != socket.gethostname() or not isinstance(pid, int):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_nodes(url: str, now: datetime) -> list[NodeInfo]:
    """Every node the catalog knows, live ones (lease not run out at `now`) first, with
    what each is running (its claims in progress, from its repository's schema)."""
    conn = catalog_pg.connect_global(url)
    try:
        rows = conn.execute(
            "SELECT name, host, pid, labels, repository, started_at, heartbeat_at, lease_until, max_concurrent"
            " FROM rustybackup.nodes ORDER BY name"
        ).fetchall()
        schemas = {e.location: e.schema for e in catalog_pg.repositories(conn)}
        out = []
        for name, host, pid, labels, repository, started, beat, lease, limit in rows:
            running: list[dict[str, Any]] = []
            schema = schemas.get(repository)
            if schema is not None:
                for exec_id, job_id, sched, lease_until in conn.execute(
                    f'SELECT id, job_id, scheduled_for, lease_until FROM "{schema}".sched_executions'
                    " WHERE status = 'running' AND node = ? ORDER BY scheduled_for",
                    (name,),
                ).fetchall():
                    running.append(
                        {
                            "execution_id": exec_id,
                            "job_id": job_id,
                            "scheduled_for": from_us(sched).isoformat(),
                            "lease_until": None if lease_until is None else from_us(lease_until).isoformat(),
                        }
                    )
            out.append(
                NodeInfo(
                    name=name,
                    host=host,
                    pid=pid,
                    labels=tuple(x for x in str(labels).split(",") if x),
                    repository=repository,
                    started_at=from_us(started),
                    heartbeat_at=from_us(beat),
                    lease_until=from_us(lease),
                    max_concurrent=limit,
                    live=lease >= to_us(now),
                    running=tuple(running),
                )
            )
    finally:
        conn.close()
    return sorted(out, key=lambda n: (not n.live, n.name))
