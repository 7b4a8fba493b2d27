"""find_recovery_path on a large catalog (RB_BENCH_SETS sets, default 50,000: the
issue's figure), including the catalog query."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from rustybackup import BackupCatalog, BackupType
from rustybackup.catalog import from_us, to_us

SETS = int(os.environ.get("RB_BENCH_SETS", "50000"))


@pytest.fixture(scope="module")
def big_catalog(tmp_path_factory: pytest.TempPathFactory) -> BackupCatalog:
    cat = BackupCatalog(tmp_path_factory.mktemp("cat") / "catalog.db")
    start = to_us(datetime(2020, 1, 1, tzinfo=UTC))

    def rows() -> Iterator[tuple[object, ...]]:
        # A weekly FULL, daily INCREMENTALs in between, an hourly ARCHIVE_LOG; generated
        # lazily so a million-set catalog is built in flat memory.
        parent: str | None = None
        for i in range(SETS):
            kind = BackupType.FULL if i % 168 == 0 else BackupType.ARCHIVE_LOG if i % 24 else BackupType.INCREMENTAL
            t = start + i * 3_600_000_000
            sid = from_us(t).strftime("%Y%m%dT%H%M%S%fZ") + f"-{i:08x}"  # the documented id form
            par = None if kind in (BackupType.FULL, BackupType.ARCHIVE_LOG) else parent
            yield (
                sid,
                "db",
                kind.value,
                par,
                t,
                t + 60_000_000,
                "available",
                1,
                8192,
                "blake3",
                None,
                json.dumps([]),
                1,
                1,
                "",
                "",
                "",
            )
            if kind is not BackupType.ARCHIVE_LOG:
                parent = sid

    with cat.transaction() as c:
        c.executemany(f"INSERT INTO sets VALUES ({', '.join('?' * 17)})", rows())
    return cat


@pytest.mark.benchmark(group="find_recovery_path")
def test_find_recovery_path_on_a_large_catalog(benchmark: Any, big_catalog: BackupCatalog) -> None:
    until = from_us(to_us(datetime(2020, 1, 1, tzinfo=UTC)) + (SETS - 100) * 3_600_000_000)
    path = benchmark(big_catalog.find_recovery_path, "db", until)
    assert path[0].backup_type is BackupType.FULL
    # Data sets end at or before `until`; the archive-log set that reaches it may end after.
    assert all(s.finished_at <= until for s in path if s.backup_type is not BackupType.ARCHIVE_LOG)
