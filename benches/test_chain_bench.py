"""Chain and retention benches: the Rust core (argument conversion included) beside a
plain-Python implementation of the same rules, on catalogs of RUSTYBACKUP_BENCH_SETS sets
(default 5,000; the README figures use 50,000).

    RUSTYBACKUP_BENCH_SETS=50000 python -m pytest benches/test_chain_bench.py \\
        --benchmark-only --benchmark-group-by=group
    RUSTYBACKUP_BENCH_HUGE=1 python -m pytest benches/test_chain_bench.py -k million
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator, Sequence
from datetime import timedelta

import pytest
from pytest_benchmark.fixture import BenchmarkFixture
from rustybackup import BackupCatalog, RetentionPolicy, _core
from rustybackup.catalog import from_us
from rustybackup.retention import plan_retention

Row = tuple[str, str, str | None, int, int, str]
SETS = int(os.environ.get("RUSTYBACKUP_BENCH_SETS", "5000"))
QUARTER_HOUR = 900_000_000
DAY = 96 * QUARTER_HOUR


def catalog(n: int) -> list[Row]:
    """A set every 15 minutes: a FULL every 100, a DIFFERENTIAL every 20, an ARCHIVE_LOG every
    10, INCREMENTALs between; uuid-shaped ids; one set in 50 CORRUPT."""
    rows: list[Row] = []
    last = full = ""
    for i in range(n):
        kind = (
            "full"
            if i % 100 == 0
            else "archive_log"
            if i % 10 == 5
            else "differential"
            if i % 20 == 7
            else ("incremental")
        )
        sid = f"{i:08x}-5c1e-4a0b-9d3f-{i * 7919 % 16**12:012x}"
        parent = last if kind == "incremental" else full if kind == "differential" else None
        start = 1_700_000_000_000_000 + i * QUARTER_HOUR
        rows.append((sid, kind, parent, start, start + QUARTER_HOUR // 3, "corrupt" if i % 50 == 49 else "available"))
        if kind == "full":
            full = last = sid
        elif kind != "archive_log":
            last = sid
    return rows


def python_recovery_path(rows: Sequence[Row], until: int | None = None) -> list[str]:
    """The same rules in plain Python (one dict, a walk per candidate)."""
    limit = until if until is not None else 2**63
    by_id = {r[0]: r for r in rows}

    def usable_root(r: Row) -> str | None:
        seen = 0
        while r[5] == "available" and r[1] != "archive_log" and seen <= len(rows):
            if r[1] == "full":
                return r[0]
            up = by_id.get(r[2]) if r[2] is not None else None
            if up is None or (r[1] == "differential" and up[1] != "full"):
                return None
            r, seen = up, seen + 1
        return None

    def age(r: Row) -> tuple[int, int, str]:
        return (r[4], r[3], r[0])

    base = max((r for r in rows if r[1] == "full" and r[5] == "available" and r[4] <= limit), key=age)
    target = max((r for r in rows if r[4] <= limit and r[1] != "archive_log" and usable_root(r) == base[0]), key=age)
    chain = [target]
    while chain[-1][1] != "full":
        chain.append(by_id[chain[-1][2] or ""])
    path = [r[0] for r in reversed(chain)]
    reached = target[4]
    for log in sorted((r for r in rows if r[1] == "archive_log" and r[4] > target[3]), key=age):
        if log[4] > target[4] and reached >= limit:
            break
        if log[5] != "available":
            break
        path.append(log[0])
        reached = max(reached, log[4])
    return path


def python_keep_daily(rows: Sequence[Row], days: int) -> set[str]:
    """restic's --keep-daily in plain Python, over usable points (UTC days)."""
    by_id = {r[0]: r for r in rows}
    usable: dict[str, bool] = {}

    def ok(r: Row) -> bool:
        if r[0] in usable:
            return usable[r[0]]
        result = r[5] == "available" and (r[1] == "full" or (r[2] is not None and r[2] in by_id and ok(by_id[r[2]])))
        usable[r[0]] = result
        return result

    points = sorted((r for r in rows if r[1] != "archive_log" and ok(r)), key=lambda r: r[4], reverse=True)
    kept: set[str] = set()
    last = None
    for r in points:
        if days == 0:
            break
        day = r[4] // DAY
        if day != last:
            last, days = day, days - 1
            kept.add(r[0])
    return kept


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    return catalog(SETS)


@pytest.mark.benchmark(group=f"recovery_path {SETS} sets")
def test_recovery_path_rust(benchmark: BenchmarkFixture, rows: list[Row]) -> None:
    path = benchmark(_core.recovery_path, rows)
    assert path == python_recovery_path(rows)


@pytest.mark.benchmark(group=f"recovery_path {SETS} sets")
def test_recovery_path_rust_until_midway(benchmark: BenchmarkFixture, rows: list[Row]) -> None:
    until = rows[len(rows) // 2][4]
    path = benchmark(_core.recovery_path, rows, until)
    assert path == python_recovery_path(rows, until)


@pytest.mark.benchmark(group=f"recovery_path {SETS} sets")
def test_recovery_path_plain_python(benchmark: BenchmarkFixture, rows: list[Row]) -> None:
    benchmark(python_recovery_path, rows)


@pytest.mark.benchmark(group=f"retention_plan {SETS} sets")
def test_retention_window_rust(benchmark: BenchmarkFixture, rows: list[Row]) -> None:
    now = rows[-1][4]
    plan = benchmark(lambda: _core.retention_plan(rows, now, window_us=7 * DAY))
    assert len(plan) == len(rows) and plan[-1].set_id == rows[-1][0]


@pytest.mark.benchmark(group=f"retention_plan {SETS} sets")
def test_retention_redundancy_and_gfs_rust(benchmark: BenchmarkFixture, rows: list[Row]) -> None:
    now = rows[-1][4]
    plan = benchmark(
        lambda: _core.retention_plan(
            rows, now, redundancy=2, keep_daily=7, keep_weekly=4, keep_monthly=12, tz="Europe/Paris"
        )
    )
    assert len(plan) == len(rows)


@pytest.mark.benchmark(group=f"retention_plan {SETS} sets")
def test_retention_keep_daily_rust(benchmark: BenchmarkFixture, rows: list[Row]) -> None:
    now = rows[-1][4]
    plan = benchmark(lambda: _core.retention_plan(rows, now, keep_daily=30))
    picked = {d.set_id for d in plan if d.keep and d.reason.startswith("daily #")}
    assert picked == python_keep_daily(rows, 30)


@pytest.mark.benchmark(group=f"retention_plan {SETS} sets")
def test_retention_keep_daily_plain_python(benchmark: BenchmarkFixture, rows: list[Row]) -> None:
    benchmark(python_keep_daily, rows, 30)


# --- the same plans over a real catalog file: sqlite3 reads, one columnar hand-off --------


@pytest.fixture(scope="module")
def catalog_db(tmp_path_factory: pytest.TempPathFactory, rows: list[Row]) -> Iterator[BackupCatalog]:
    cat = BackupCatalog(tmp_path_factory.mktemp("chain") / "catalog.db")
    with cat.transaction() as c:
        c.execute(
            "INSERT INTO databases (name, path, kind, archive_dir, block_size, algorithm, compression, registered_at) "
            "VALUES ('db', '/src', 'files', NULL, 8192, 'blake3', NULL, 0)"
        )
        c.executemany(
            "INSERT INTO sets VALUES (?, 'db', ?, ?, ?, ?, ?, 0, 8192, 'blake3', NULL, '[]', 0, 0, '', '', '')",
            rows,
        )
    cat.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    yield cat
    cat.close()


def chain_rows(cat: BackupCatalog) -> _core.ChainRows:
    return cat.chain_rows("db")


@pytest.mark.benchmark(group=f"catalog read {SETS} sets")
def test_read_chain_rows(benchmark: BenchmarkFixture, catalog_db: BackupCatalog, rows: list[Row]) -> None:
    """sqlite3 reads the rows, then one `ChainRows.from_columns` call hands them over."""
    read = benchmark(catalog_db.chain_rows, "db")
    assert len(read) == len(rows)


@pytest.mark.benchmark(group=f"catalog read {SETS} sets")
def test_read_rows_with_sqlite3(benchmark: BenchmarkFixture, catalog_db: BackupCatalog, rows: list[Row]) -> None:
    assert benchmark(catalog_db.retention_rows, "db") == rows


@pytest.mark.benchmark(group=f"catalog read {SETS} sets")
def test_hand_off_alone(benchmark: BenchmarkFixture, rows: list[Row]) -> None:
    """The hand-off of rows already read: transposing them and `from_columns`."""
    handed = benchmark(lambda: _core.ChainRows.from_columns(*zip(*rows, strict=True)))
    assert len(handed) == len(rows)


POLICIES = {
    "window": RetentionPolicy.recovery_window(timedelta(days=7)),
    "daily": RetentionPolicy.keep(daily=30),
    "gfs": RetentionPolicy.combine(RetentionPolicy.redundancy(2), RetentionPolicy.keep(daily=7, weekly=4, monthly=12)),
}


@pytest.mark.benchmark(group=f"retention_plan {SETS} sets from the catalog")
@pytest.mark.parametrize("name", POLICIES)
def test_retention_plan_on_chain_rows(
    benchmark: BenchmarkFixture, catalog_db: BackupCatalog, rows: list[Row], name: str
) -> None:
    sets, now = chain_rows(catalog_db), from_us(rows[-1][4])
    tz = "Europe/Paris" if name == "gfs" else "UTC"
    plan = benchmark(plan_retention, sets, POLICIES[name], now, tz)
    assert plan == plan_retention(rows, POLICIES[name], now, tz)


@pytest.mark.benchmark(group=f"catalog.retention_plan {SETS} sets, read included")
@pytest.mark.parametrize("name", POLICIES)
def test_catalog_retention_plan(
    benchmark: BenchmarkFixture, catalog_db: BackupCatalog, rows: list[Row], name: str
) -> None:
    now = from_us(rows[-1][4])
    tz = "Europe/Paris" if name == "gfs" else "UTC"
    plan = benchmark(catalog_db.retention_plan, "db", POLICIES[name], now, tz=tz)
    assert len(plan) == len(rows)


@pytest.mark.benchmark(group=f"catalog.retention_plan {SETS} sets, read included")
def test_catalog_rows_planned_as_tuples(
    benchmark: BenchmarkFixture, catalog_db: BackupCatalog, rows: list[Row]
) -> None:
    """The same read handed to the planner as row tuples (borrowed, not copied) instead."""
    now = from_us(rows[-1][4])
    plan = benchmark(lambda: plan_retention(catalog_db.retention_rows("db"), POLICIES["window"], now, "UTC"))
    assert len(plan) == len(rows)


def test_a_million_sets_work() -> None:
    if not os.environ.get("RUSTYBACKUP_BENCH_HUGE"):
        pytest.skip(
            "set RUSTYBACKUP_BENCH_HUGE=1 to plan over 1,000,000 sets (about 500 MiB, mostly the Python tuples)"
        )
    big = catalog(1_000_000)
    assert _core.recovery_path(big)[0] == big[999_900][0]
    plan = _core.retention_plan(big, big[-1][4], window_us=7 * DAY, keep_monthly=12)
    assert len(plan) == len(big)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mib:.0f} MiB")
