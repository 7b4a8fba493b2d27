"""Prometheus metrics: parsed back with prometheus_client's parser; "recoverable since"
checked against the plain-Python oracle of the recovery rules (tests/chain_model.py)."""

from __future__ import annotations

import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from chain_model import HOUR, OracleNoPath, Row, catalogs, oracle_recovery_path
from click.testing import CliRunner
from engine_support import SimClock
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from rustybackup import _core
from rustybackup.cli import cli
from rustybackup.engine import BackupManager
from rustybackup.enums import BackupType, SetStatus
from rustybackup.errors import CatalogError
from rustybackup.jobs import ScheduledBackup
from rustybackup.metrics import (
    RepositoryCollector,
    last_served_port,
    recoverable_since_us,
    render,
    serve,
)
from rustybackup.scheduler import BackupScheduler

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: bytes | str) -> Samples:
    raw = text.decode() if isinstance(text, bytes) else text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(raw)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((f"rustybackup_{name}", tuple(sorted(labels.items()))))


# --- recoverable since against the oracle ------------------------------------------------


def _chain(rows: Sequence[Row]) -> _core.ChainRows:
    return _core.ChainRows.from_columns(
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
        [r[5] for r in rows],
    )


def _oracle_ok(rows: Sequence[Row], t: int) -> bool:
    try:
        oracle_recovery_path(rows, t)
    except OracleNoPath:
        return False
    return True


def _oracle_since(rows: Sequence[Row], now: int) -> int | None:
    """Probes now, and around every finish time (just before, at, just after, and half way
    to the next): the earliest probe from which every probe up to now resolves, pushed
    down to the instant after the first failing probe when they are adjacent."""
    fins = sorted({r[4] for r in rows if r[4] < now})
    probes = {now}
    for i, f in enumerate(fins):
        nxt = fins[i + 1] if i + 1 < len(fins) else now
        probes.update(p for p in (f - 1, f, f + 1, (f + nxt) // 2) if p <= now)
    since = None
    for p in sorted(probes, reverse=True):
        if not _oracle_ok(rows, p):
            break
        since = p
    return since


@settings(deadline=None, max_examples=150)
@given(catalogs(max_sets=14), st.integers(0, 40))
def test_recoverable_since_matches_the_oracle(rows: list[Row], after_hours: int) -> None:
    now = max((r[4] for r in rows), default=0) + after_hours * HOUR // 4
    got = recoverable_since_us(_chain(rows), now)
    assert got == _oracle_since(rows, now)


def test_recoverable_since_hand_cases() -> None:
    def since(rows: Sequence[Row], now: int) -> int | None:
        return recoverable_since_us(_chain(rows), now)

    full: Row = ("f1", "full", None, 0, 10, "available")
    assert since([], 100) is None
    assert since([full], 100) == 10
    assert since([full], 5) is None  # before the FULL finished
    logs: list[Row] = [
        full,
        ("a1", "archive_log", None, 10, 20, "available"),
        ("a2", "archive_log", None, 20, 30, "corrupt"),
    ]
    # Instants after a1 need a2 to roll forward: only up to 20 is recoverable from f1.
    assert since(logs, 100) is None
    f2: Row = ("f2", "full", None, 40, 50, "available")
    assert since([*logs, f2], 100) == 50
    # A corrupt FULL is skipped: the older one still covers, and so does the newer.
    assert since([full, ("f3", "full", None, 40, 50, "corrupt")], 100) == 10


def _resolves(rows: Sequence[Row], t: int) -> bool:
    try:
        _core.recovery_path(rows, t)
    except CatalogError:  # NoRecoveryPath
        return False
    return True


@settings(deadline=None, max_examples=200)
@given(catalogs(max_sets=20))
def test_intervals_agree_with_asking_recovery_path_at_every_probe(rows: list[Row]) -> None:
    """The sweep against the brute force: one resolver question per finish time, the
    instants next to it, and half way to the next one."""
    intervals = _core.recoverable_intervals(_chain(rows))
    assert intervals == _core.recoverable_intervals(rows)  # tuples and columns alike
    assert all(lo <= hi for lo, hi in intervals)
    assert all(a[1] + 1 < b[0] for a, b in zip(intervals, intervals[1:], strict=False))
    fins = sorted({r[4] for r in rows})
    probes = {f + d for f in fins for d in (-1, 0, 1)}
    probes.update((a + b) // 2 for a, b in zip(fins, fins[1:], strict=False))
    probes.update(f + HOUR for f in fins[-1:])
    for t in sorted(probes):
        inside = [lo for lo, hi in intervals if lo <= t <= hi]
        assert bool(inside) == _resolves(rows, t), (t, intervals)
        assert _core.recoverable_since(rows, t) == (inside[0] if inside else None)


def test_recoverable_intervals_hand_cases() -> None:
    full: Row = ("f1", "full", None, 0, 10, "available")
    top = 2**63 - 1
    assert _core.recoverable_intervals([]) == []
    assert _core.recoverable_intervals([full]) == [(10, top)]
    rows: list[Row] = [
        full,
        ("a1", "archive_log", None, 10, 20, "available"),
        ("a2", "archive_log", None, 20, 30, "corrupt"),
        ("i1", "incremental", "f1", 40, 50, "available"),
    ]
    # From f1 the logs reach a1's finish; i1 starts a stretch of its own.
    assert _core.recoverable_intervals(rows) == [(10, 20), (50, top)]
    assert _core.recoverable_since(rows, 20) == 10
    assert _core.recoverable_since(rows, 21) is None


def test_recoverable_intervals_refuse_bad_rows() -> None:
    full: Row = ("f1", "full", None, 0, 10, "available")
    with pytest.raises(CatalogError, match='set id "f1" appears twice'):
        _core.recoverable_intervals([full, full])
    with pytest.raises(CatalogError, match='set id "f1" appears twice'):
        _core.recoverable_since(_chain([full, full]), 100)
    with pytest.raises(ValueError, match=r'sets\[1\]: status "gone"'):
        _core.recoverable_intervals([full, ("f2", "full", None, 0, 10, "gone")])
    with pytest.raises(TypeError, match=r"sets\[0\]: finished_us must be an int"):
        wrong: list[Any] = [("f1", "full", None, 0, "10", "available")]  # the wrong type on purpose
        _core.recoverable_since(wrong, 100)


# --- a real repository ---------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path) -> tuple[BackupManager, SimClock, Path]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"a" * 20000)
    clock = SimClock(datetime(2026, 3, 1, tzinfo=UTC))
    manager = BackupManager(tmp_path / "repo", clock=clock)
    manager.register_database("app", src, block_size=4096)
    return manager, clock, src


def _scrape(manager: BackupManager, clock: SimClock, window: timedelta | None = None) -> Samples:
    return parse(render(RepositoryCollector(manager.repository, clock=clock, default_window=window)))


def test_nothing_recoverable_has_no_recoverable_since(repo: tuple[BackupManager, SimClock, Path]) -> None:
    manager, clock, _ = repo
    samples = _scrape(manager, clock, timedelta(days=7))
    assert value(samples, "recoverable_since_timestamp_seconds", database="app") is None
    assert value(samples, "recovery_window_covered", database="app") == 0
    assert value(samples, "sets", database="app", status="available") == 0
    assert value(samples, "last_success_timestamp_seconds", database="app") is None


def test_only_a_full(repo: tuple[BackupManager, SimClock, Path]) -> None:
    manager, clock, _ = repo
    full = manager.backup("app", BackupType.FULL)
    clock.advance(days=3)
    samples = _scrape(manager, clock, timedelta(days=2))
    finished = full.finished_at.timestamp()
    assert value(samples, "recoverable_since_timestamp_seconds", database="app") == finished
    assert value(samples, "last_success_timestamp_seconds", database="app") == finished
    assert value(samples, "last_bytes_read", database="app") == 20000
    assert value(samples, "last_bytes_stored", database="app") == full.size
    assert value(samples, "recovery_window_covered", database="app") == 1
    assert value(samples, "recovery_window_seconds", database="app") == 2 * 86400
    # Never verified: the coverage age counts from the set's finish.
    assert value(samples, "verification_coverage_age_seconds", database="app") == pytest.approx(3 * 86400)
    assert value(samples, "corrupt_blocks", database="app") == 0
    # A window reaching back before the FULL is not covered.
    assert value(_scrape(manager, clock, timedelta(days=4)), "recovery_window_covered", database="app") == 0


def test_a_corrupt_full_breaks_coverage(repo: tuple[BackupManager, SimClock, Path]) -> None:
    manager, clock, src = repo
    first = manager.backup("app", BackupType.FULL)
    clock.advance(days=1)
    (src / "a.txt").write_bytes(b"b" * 20000)
    manager.backup("app", BackupType.INCREMENTAL)
    clock.advance(days=1)
    second = manager.backup("app", BackupType.FULL)
    clock.advance(days=1)
    window = timedelta(days=2, hours=12)
    before = _scrape(manager, clock, window)
    assert value(before, "recoverable_since_timestamp_seconds", database="app") == first.finished_at.timestamp()
    assert value(before, "recovery_window_covered", database="app") == 1
    manager.catalog.mark_status(first.id, SetStatus.CORRUPT)
    after = _scrape(manager, clock, window)
    assert value(after, "recoverable_since_timestamp_seconds", database="app") == second.finished_at.timestamp()
    assert value(after, "recovery_window_covered", database="app") == 0
    assert value(after, "sets", database="app", status="corrupt") == 1
    assert value(after, "sets", database="app", status="available") == 2


def test_damage_found_by_verification_is_counted(repo: tuple[BackupManager, SimClock, Path]) -> None:
    from rustybackup.verify import Verifier

    manager, clock, _ = repo
    full = manager.backup("app", BackupType.FULL)
    piece = manager.repository / full.pieces[0].path
    data = bytearray(piece.read_bytes())
    data[100] ^= 0xFF
    piece.write_bytes(bytes(data))
    clock.advance(hours=1)
    report = Verifier(manager).verify("app", "full")
    assert not report.ok
    samples = _scrape(manager, clock)
    assert (value(samples, "corrupt_blocks", database="app") or 0) >= 1
    assert value(samples, "sets", database="app", status="corrupt") == 1
    # No AVAILABLE set is left to be verified: no coverage age at all.
    assert value(samples, "verification_coverage_age_seconds", database="app") is None
    clock.advance(hours=1)
    manager.backup("app", BackupType.FULL)
    clock.advance(hours=5)
    assert value(_scrape(manager, clock), "verification_coverage_age_seconds", database="app") == 5 * 3600
    Verifier(manager).verify("app", "full")
    clock.advance(minutes=10)
    assert value(_scrape(manager, clock), "verification_coverage_age_seconds", database="app") == 600


def test_window_comes_from_the_jobs_retention(repo: tuple[BackupManager, SimClock, Path], tmp_path: Path) -> None:
    manager, clock, _ = repo
    manager.backup("app", BackupType.FULL)
    clock.advance(days=3)
    scheduler = BackupScheduler(manager, clock=clock)
    scheduler.add_job(ScheduledBackup("n", "n", "app", BackupType.FULL, "0 1 * * *", retention="window=2d"))
    scheduler.close()
    out = tmp_path / "textfile" / "rustybackup.prom"
    out.parent.mkdir()
    result = CliRunner().invoke(cli, ["--repo", str(manager.repository), "metrics", "--output", str(out)])
    assert result.exit_code == 0, result.output
    samples = parse(out.read_text())
    assert value(samples, "recovery_window_seconds", database="app") == 2 * 86400
    assert value(samples, "recovery_window_covered", database="app") in (0, 1)
    assert [p.name for p in out.parent.iterdir()] == ["rustybackup.prom"]  # no temporary left


def test_cli_prints_to_stdout_and_rejects_a_bad_window(repo: tuple[BackupManager, SimClock, Path]) -> None:
    manager, _, _ = repo
    result = CliRunner().invoke(cli, ["--repo", str(manager.repository), "metrics"])
    assert result.exit_code == 0, result.output
    assert value(parse(result.output), "sets", database="app", status="available") == 0
    bad = CliRunner().invoke(cli, ["--repo", str(manager.repository), "metrics", "--recovery-window", "soon"])
    assert bad.exit_code == 2 and "recovery-window" in bad.output


def test_no_repository_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["--repo", str(empty), "metrics"])
    assert result.exit_code == 1 and f"no repository at {empty}" in result.output
    assert list(empty.iterdir()) == []


def test_served_over_http(repo: tuple[BackupManager, SimClock, Path]) -> None:
    manager, clock, _ = repo
    manager.backup("app", BackupType.FULL)
    stop = serve(RepositoryCollector(manager.repository, clock=clock), 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{last_served_port()}/metrics", timeout=10) as resp:
            samples = parse(resp.read())
    finally:
        stop()
    assert value(samples, "sets", database="app", status="available") == 1
