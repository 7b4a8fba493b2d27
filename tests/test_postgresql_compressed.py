"""A PostgreSQL cluster registered with ``--compression zstd``: its base backups store
compressed blocks (the engine's zstd path, the format's per-block flag), and a restore
to an instant after a FULL and an INCREMENTAL of such sets, started and recovered by
PostgreSQL, holds exactly the rows committed by then; so does a restore of the set
itself, as of its end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from pg_support import Cluster, Writer, archived_cluster, rb, restore_and_start
from rustybackup import BackupManager

NAME = "zpg"


@dataclass
class Compressed:
    bin: Path
    repo: Path
    cluster: Cluster
    writer: Writer
    incr_done: datetime


@pytest.fixture(scope="module")
def compressed() -> Iterator[Compressed]:
    with archived_cluster("rb-pg-zstd-", NAME, add=("--compression", "zstd")) as a:
        repo, cluster = a.repo, a.cluster
        # Compressible pages beside the writer's rows: pgbench-like filler.
        cluster.query("CREATE TABLE filler AS SELECT g AS id, repeat(' ', 80) AS pad FROM generate_series(1, 20000) g")
        with Writer(cluster) as writer:
            time.sleep(0.3)
            rb(repo, "backup", NAME, "--type", "full")
            time.sleep(0.5)
            rb(repo, "backup", NAME, "--type", "incremental")
            incr_done = datetime.now().astimezone()
            time.sleep(0.8)
        assert writer.error is None, writer.error
        cluster.switch_and_wait_archived()
        yield Compressed(a.bin, repo, cluster, writer, incr_done)


def test_the_sets_are_stored_compressed(compressed: Compressed) -> None:
    m = BackupManager(compressed.repo)
    full = m.catalog.list_sets(NAME, "full")[-1]
    assert full.compression == "zstd"
    # The data directory is mostly empty and padded pages: zstd stores it in far less.
    assert 0 < full.size < full.bytes_read // 2, (full.size, full.bytes_read)


def test_a_restore_to_an_instant_after_the_incremental_holds_exactly_the_rows_committed_by_then(
    compressed: Compressed,
) -> None:
    rows = compressed.writer.rows
    i = next(k for k, r in enumerate(rows) if r.returned_at > compressed.incr_done) + 2
    until = compressed.writer.instant_after(i)
    for restored in restore_and_start(compressed.bin, compressed.repo, NAME, until):
        got = [int(r[0]) for r in restored.cluster.query("SELECT id FROM rows ORDER BY id")]
        assert got == [r.id for r in rows[: i + 1]], f"until {until.isoformat()}"
        assert restored.cluster.query("SELECT count(*), sum(length(pad)) FROM filler") == [(20000, 20000 * 80)]
