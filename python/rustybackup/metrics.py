"""Prometheus metrics of what a repository can recover, per database.

``rustybackup metrics`` writes them in the text format for node_exporter's textfile
collector; ``rustybackup run --metrics-port N`` serves them. Every value is read from the
catalog when it is scraped (a custom collector), so a served page is never stale.

The two metrics no exporter of "time since the last backup" can give come from the
chain resolver (rust/src/chain/recoverable.rs, on the rules of recovery.rs) over the
AVAILABLE sets. An instant ``T`` counts as recoverable when a restore ``--until T`` resolves: an
AVAILABLE FULL finished by ``T``, and an unbroken stream of usable archive logs from the
restored point up to ``T`` when there are logs to roll through. Then

- ``rustybackup_recoverable_since_timestamp_seconds``: the earliest instant from which
  every instant up to now is recoverable (absent when now itself is not);
- ``rustybackup_recovery_window_covered``: 1 when that instant is at or before
  ``now - window`` for the database's recovery window (the largest ``window=`` of its
  jobs' retention, or ``--recovery-window``); absent for a database without a window.

The recoverable instants come from one sweep of the resolver over the sets
(``_core.recoverable_since``), not from one question per instant.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import _core, store
from .catalog import BackupCatalog
from .enums import SetStatus
from .timestamps import to_us
from .verify_records import VerificationRecords

__all__ = [
    "DatabaseMetrics",
    "RepositoryCollector",
    "database_metrics",
    "recoverable_since_us",
    "render",
    "write_textfile",
]

log = logging.getLogger(__name__)

_DAMAGED = ("damaged", "missing")


def recoverable_since_us(rows: _core.ChainRows, now_us: int) -> int | None:
    """The earliest instant (µs) from which every instant up to ``now_us`` is
    recoverable from ``rows``, or None when ``now_us`` itself is not.

    The chain resolver computes every recoverable interval in one sweep
    (``_core.recoverable_since``, rust/src/chain/recoverable.rs), with the rules
    ``recovery_path`` applies, in O(n log n) whatever the catalog holds."""
    return _core.recoverable_since(rows, now_us)


@dataclass(frozen=True)
class DatabaseMetrics:
    """One database's figures (times in seconds since the epoch)."""

    database: str
    sets_by_status: Mapping[str, int]
    last_success: float | None = None
    last_duration: float | None = None
    last_bytes_read: int | None = None
    last_bytes_stored: int | None = None
    oldest_verified: float | None = None
    corrupt_blocks: int = 0
    recoverable_since: float | None = None
    window: timedelta | None = None
    window_covered: bool | None = None


def database_metrics(
    catalog: BackupCatalog,
    database: str,
    now: datetime,
    window: timedelta | None = None,
) -> DatabaseMetrics:
    """The figures of ``database`` at ``now`` (``window``: its recovery window, if any)."""
    rows = catalog.retention_rows(database)
    counts = {s.value: 0 for s in SetStatus}
    for r in rows:
        counts[str(r[5])] = counts.get(str(r[5]), 0) + 1
    now_us = to_us(now)
    since_us = recoverable_since_us(catalog.chain_rows(database), now_us)
    since = None if since_us is None else since_us / 1e6
    covered = None
    if window is not None:
        covered = since_us is not None and since_us <= now_us - int(window.total_seconds() * 1e6)
    out = DatabaseMetrics(database, counts, recoverable_since=since, window=window, window_covered=covered)
    if not rows:
        return out
    # retention_rows is ordered by finish: the last row is the newest set.
    newest = catalog.get_sets([str(rows[-1][0])])[0]
    available = {str(r[0]) for r in rows if r[5] == SetStatus.AVAILABLE.value}
    finished = {str(r[0]): int(r[4]) for r in rows}
    oldest, damaged = _verification(catalog, list(finished), available, finished)
    return DatabaseMetrics(
        database,
        counts,
        last_success=newest.finished_at.timestamp(),
        last_duration=(newest.finished_at - newest.started_at).total_seconds(),
        last_bytes_read=newest.bytes_read,
        last_bytes_stored=newest.size,
        oldest_verified=oldest,
        corrupt_blocks=damaged,
        recoverable_since=since,
        window=window,
        window_covered=covered,
    )


def _verification(
    catalog: BackupCatalog, set_ids: list[str], available: set[str], finished_us: Mapping[str, int]
) -> tuple[float | None, int]:
    """(oldest last verification over the pieces and block maps of the ``available``
    sets, where an item never verified counts from its set's finish; items of any set
    whose last verification found damage)."""
    if not set_ids:
        return None, 0
    items: list[tuple[str, str]] = [(f"{s}/blockmap", s) for s in set_ids]
    for sid, pieces in catalog.piece_rows(set_ids).items():
        items.extend((p.id, sid) for p in pieces)
    last = VerificationRecords(catalog).last_verified(i for i, _ in items)
    oldest_us = None
    damaged = 0
    for item, sid in items:
        rec = last.get(item)
        if rec is not None and rec[2] in _DAMAGED:
            damaged += 1
        if sid in available:
            when = rec[0] if rec is not None else finished_us[sid]
            oldest_us = when if oldest_us is None else min(oldest_us, when)
    return (None if oldest_us is None else oldest_us / 1e6), damaged


def _families(metrics: Iterable[DatabaseMetrics], now: datetime) -> list[Metric]:
    def gauge(name: str, doc: str, labels: tuple[str, ...] = ("database",)) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"rustybackup_{name}", doc, labels=list(labels))

    g = {
        "last": gauge("last_success_timestamp_seconds", "When the newest backup set finished."),
        "dur": gauge("last_duration_seconds", "How long the newest backup set took."),
        "read": gauge("last_bytes_read", "Bytes the newest backup set read from its source."),
        "stored": gauge("last_bytes_stored", "Bytes the newest backup set stored."),
        "sets": gauge("sets", "Backup sets by status.", ("database", "status")),
        "verified": gauge(
            "verification_oldest_timestamp_seconds",
            "Oldest last verification over the pieces of AVAILABLE sets (never verified: the set's finish).",
        ),
        "age": gauge(
            "verification_coverage_age_seconds",
            "Now minus the oldest last verification.",
        ),
        "corrupt": gauge(
            "corrupt_blocks",
            "Pieces and block maps whose last verification found corrupt or missing blocks (at least one each).",
        ),
        "since": gauge(
            "recoverable_since_timestamp_seconds",
            "Earliest instant from which every instant up to now is recoverable from AVAILABLE sets.",
        ),
        "window": gauge("recovery_window_seconds", "The database's recovery window."),
        "covered": gauge(
            "recovery_window_covered",
            "1 when every instant of the recovery window is recoverable.",
        ),
    }
    now_s = now.timestamp()
    for m in metrics:
        db = [m.database]
        for status, n in sorted(m.sets_by_status.items()):
            g["sets"].add_metric([m.database, status], n)
        g["corrupt"].add_metric(db, m.corrupt_blocks)
        for key, value in (
            ("last", m.last_success),
            ("dur", m.last_duration),
            ("read", m.last_bytes_read),
            ("stored", m.last_bytes_stored),
            ("verified", m.oldest_verified),
            ("since", m.recoverable_since),
        ):
            if value is not None:
                g[key].add_metric(db, value)
        if m.oldest_verified is not None:
            g["age"].add_metric(db, max(0.0, now_s - m.oldest_verified))
        if m.window is not None:
            g["window"].add_metric(db, m.window.total_seconds())
            g["covered"].add_metric(db, 1 if m.window_covered else 0)
    stamp = GaugeMetricFamily("rustybackup_metrics_timestamp_seconds", "When these metrics were computed.")
    stamp.add_metric([], now_s)
    return [*g.values(), stamp]


class RepositoryCollector(Collector):
    """Computes every database's metrics at each scrape (``prometheus_client``'s
    custom-collector protocol). ``windows`` gives each database's recovery window
    (``default_window`` the others'); ``extra`` may add families (the scheduler's
    notification counters)."""

    def __init__(
        self,
        repository: Path,
        windows: Callable[[], Mapping[str, timedelta]] | Mapping[str, timedelta] = {},  # noqa: B006 (read only)
        *,
        clock: Callable[[], datetime] | None = None,
        default_window: timedelta | None = None,
        extra: Callable[[], Iterable[Metric]] | None = None,
        catalog: str | None = None,
    ) -> None:
        self._default = default_window
        self.catalog = catalog  # a shared catalog's URL, else the repository's catalog.db
        self.repository = Path(repository)
        self._windows = windows
        self._clock = clock or (lambda: datetime.now(UTC))
        self._extra = extra

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        windows = self._windows() if callable(self._windows) else self._windows
        # Through the manager: it rebuilds a lost catalog instead of reading an empty one.
        from .engine import BackupManager

        store.Repository(self.repository, create=False)  # a scrape never creates a repository
        catalog = BackupManager(self.repository, catalog=self.catalog).catalog
        try:
            found = [
                database_metrics(catalog, d.name, now, windows.get(d.name, self._default))
                for d in catalog.list_databases()
            ]
        finally:
            catalog.close()
        yield from _families(found, now)
        if self._extra is not None:
            yield from self._extra()


def render(collector: Collector) -> bytes:
    """The Prometheus text exposition of one collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)


def write_textfile(path: Path, collector: Collector) -> None:
    """Writes the metrics atomically (node_exporter must never read half a file)."""
    store.atomic_write_bytes(path, render(collector), mode=0o644)


def serve(collector: Collector, port: int, addr: str = "127.0.0.1") -> Callable[[], None]:
    """Serves ``/metrics`` on ``addr:port`` from a daemon thread (prometheus_client's
    server); returns the function that stops it. ``port=0`` picks a free port
    (``last_served_port`` says which)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server, thread = start_http_server(port, addr, registry=registry)
    _served_ports.append(int(server.server_port))

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop


#: The ports ``serve`` bound, newest last (``port=0`` lets the OS choose one).
_served_ports: list[int] = []


def last_served_port() -> int | None:
    return _served_ports[-1] if _served_ports else None


def config_windows(repository: Path, catalog: str | None = None) -> dict[str, timedelta]:
    """Each database's recovery window from the scheduler's jobs (the largest
    ``window=`` of its backup jobs' retention): the job list of the shared catalog
    `catalog` when given (where the nodes keep it), else the repository's file."""
    from .config import CONFIG_NAME, load_config
    from .run_events import recovery_window

    if catalog is None:
        config = load_config(repository / CONFIG_NAME)
    else:
        from .nodes import NodeRuntime

        # Not a member: reads the job list without joining the nodes.
        reader = NodeRuntime(
            catalog, repository, "metrics", lease=timedelta(minutes=1), clock=lambda: datetime.now(UTC), member=False
        )
        try:
            config = reader.load_config()
        finally:
            reader.close()
    jobs = list(config.jobs.values())
    windows = {db: recovery_window(jobs, db) for db in {j.database for j in jobs}}
    return {db: w for db, w in windows.items() if w is not None}
