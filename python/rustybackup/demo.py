"""``rustybackup demo``: the whole job end to end on a live SQLite database.

A writer thread keeps inserting orders while the demo captures the database's WAL
continuously (ARCHIVE_LOG sets, as ``rustybackup capture`` does) and takes FULL,
INCREMENTAL and DIFFERENTIAL backups, verifies them block by block, shows a block-exact
corruption report on a damaged copy of the repository, restores to an instant between
two sets and checks the result against the writer's own log of commits, and prints the
scheduler's next week.
Every step checks its own outcome; the demo fails (exit 1) if one does not hold.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from . import _core, manifest, store
from .capture_loop import Capturer
from .engine import BackupManager, BackupProgress
from .enums import BackupType, VerificationType
from .jobs import ScheduledBackup
from .scheduler import BackupScheduler
from .sqlite_wal import WalCapture
from .timestamps import to_us
from .verify import Verifier
from .windows import business_hours, off_hours

DATABASE = "shop"


class DemoFailure(Exception):
    """A step's outcome was not what the demo promises."""


@dataclass
class DemoResult:
    """What the demo did, for the summary table and for tests."""

    directory: Path
    steps: list[tuple[str, str, str]] = field(default_factory=list)  # (step, outcome, detail)

    def add(self, step: str, outcome: str, detail: str) -> None:
        self.steps.append((step, outcome, detail))


class _Writer(threading.Thread):
    """Inserts orders until stopped, as the application would while we back it up. Each
    row carries the time read just before its transaction committed; `log` keeps, per
    transaction, (last id, time before COMMIT, time after COMMIT returned)."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="demo-writer", daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.rows = 0
        self.log: list[tuple[int, int, int]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                while not self.stop.is_set():
                    conn.execute("BEGIN IMMEDIATE")
                    before = _now_us()
                    conn.executemany(
                        "INSERT INTO orders (item, amount, note, committed_us) VALUES (?, ?, ?, ?)",
                        [
                            (
                                f"item-{self.rows + i}",
                                (self.rows + i) % 977,
                                os.urandom(64),
                                before,
                            )
                            for i in range(50)
                        ],
                    )
                    last = int(conn.execute("SELECT max(id) FROM orders").fetchone()[0])
                    conn.execute("COMMIT")
                    self.log.append((last, before, _now_us()))
                    self.rows += 50
                    time.sleep(0.005)
            finally:
                conn.close()
        except BaseException as exc:  # surfaced by the demo after join()
            self.error = exc


def _now_us() -> int:
    return to_us(datetime.now(UTC))


def _create_database(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL, amount INTEGER, note BLOB, "
            "committed_us INTEGER NOT NULL DEFAULT 0)"
        )
        with conn:
            conn.executemany(
                "INSERT INTO orders (item, amount, note) VALUES (?, ?, ?)",
                [(f"seed-{i}", i % 977, os.urandom(200)) for i in range(40_000)],
            )
    finally:
        conn.close()


@contextmanager
def _progress_bar(console: Console, label: str) -> Iterator[Callable[[BackupProgress], None]]:
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(p: BackupProgress) -> None:
            bar.update(task, completed=p.bytes_done, total=p.bytes_total or None)

        yield update


def _instant_between_sets(manager: BackupManager) -> tuple[datetime, datetime]:
    """An instant halfway between two consecutive sets after the DIFFERENTIAL, and the
    start of the newest set before it (everything committed by then must be restored)."""
    sets = manager.catalog.list_sets(DATABASE)
    diff = max(i for i, s in enumerate(sets) if s.backup_type is BackupType.DIFFERENTIAL)
    later = sets[diff:]
    if len(later) < 3:
        raise DemoFailure(f"expected WAL captures after the DIFFERENTIAL, found {len(later) - 1}")
    a, b = later[len(later) // 2 - 1], later[len(later) // 2]
    return a.finished_at + (b.started_at - a.finished_at) / 2, a.started_at


def _check_restored(path: Path, log: list[tuple[int, int, int]], until_us: int, floor_us: int) -> str:
    """The restored database must be the state right after one of the writer's commits,
    hold every commit that had returned before `floor_us`, and none made after `until_us`."""
    conn = sqlite3.connect(path)
    try:
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
        count, top, newest = conn.execute("SELECT count(*), max(id), max(committed_us) FROM orders").fetchone()
    finally:
        conn.close()
    if check != "ok":
        raise DemoFailure(f"PRAGMA integrity_check of the restored database says {check!r}")
    ends = {last: (before, after) for last, before, after in log}
    if top not in ends:
        raise DemoFailure(f"the restored database ends at order {top}, inside a transaction (torn)")
    if count != top:
        raise DemoFailure(f"the restored database holds {count} orders but ends at id {top}: rows are missing")
    if newest > until_us:
        raise DemoFailure("the restored database holds an order committed after the instant asked for")
    must = max((last for last, _, after in log if after <= floor_us), default=0)
    if top < must:
        raise DemoFailure(f"orders up to {must} were committed before the last capture by then, only {top} came back")
    lag = (until_us - ends[top][0]) / 1000
    return f"{count:,} orders, exactly the writer's commits through order {top} ({lag:.0f} ms before T), integrity ok"


def _flip_a_byte(repo: Path, set_id: str, block_no: int) -> tuple[int, int]:
    """Flips one bit inside stored block `block_no` of the set's piece; returns (file_no, block_index)."""
    piece = repo / "sets" / set_id / "data.piece"
    entries = _core.read_piece_index(piece)
    file_no, block_index, offset, stored_len, *_ = entries[min(block_no, len(entries) - 1)]
    with open(piece, "r+b") as fh:
        fh.seek(offset + stored_len // 2)
        byte = fh.read(1)
        fh.seek(offset + stored_len // 2)
        fh.write(bytes([byte[0] ^ 0x10]))
    return file_no, block_index


def run_demo(directory: Path | None, console: Console) -> DemoResult:
    """Runs every step; raises DemoFailure when an outcome is wrong."""
    root = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="rustybackup-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise DemoFailure(f"demo directory {root} is not empty; pass an empty or new --dir")
    result = DemoResult(root)
    db, repo = root / "shop.db", root / "repo"
    console.rule("[bold]rustybackup demo")
    console.print(f"working in {root}")

    _create_database(db)
    manager = BackupManager(repo)
    manager.register_database(DATABASE, db, kind="sqlite")
    writer = _Writer(db)
    writer.start()
    # What `rustybackup capture shop --interval 0.1` does, in a thread of the demo.
    capturer = Capturer(BackupManager(repo), DATABASE, interval=0.1)
    stop_capture = threading.Event()
    capture_thread = threading.Thread(target=capturer.run, args=(stop_capture,), name="demo-capture", daemon=True)
    sets: dict[str, str] = {}
    try:
        while not writer.log:
            time.sleep(0.01)  # the application is up: its WAL exists
        capture_thread.start()
        for label, kind in (
            ("FULL", BackupType.FULL),
            ("INCREMENTAL", BackupType.INCREMENTAL),
            ("DIFFERENTIAL", BackupType.DIFFERENTIAL),
        ):
            time.sleep(0.3)  # let the writer change pages between backups
            with _progress_bar(console, f"{label} backup") as bar:
                s = manager.backup(DATABASE, kind, tags=("demo",), progress=bar)
            sets[label] = s.id
            seconds = (s.finished_at - s.started_at).total_seconds()
            result.add(
                f"{label} backup",
                "ok",
                f"{s.id}: {s.size:,} bytes stored in {seconds:.2f} s",
            )
        time.sleep(0.3)
    finally:
        writer.stop.set()
        writer.join()
        stop_capture.set()
        if capture_thread.is_alive():
            capture_thread.join()
    if writer.error is not None:
        raise DemoFailure(f"the writer thread failed: {writer.error}")
    captures = [s for s in manager.catalog.list_sets(DATABASE) if s.backup_type is BackupType.ARCHIVE_LOG]
    records = [manifest.load(manager.repo.set_dir(s.id) / store.MANIFEST).wal for s in captures]
    frames = sum(r.last_frame - r.first_frame + 1 for r in records if isinstance(r, WalCapture) and not r.empty)
    commits = sum(len(r.commits) for r in records if isinstance(r, WalCapture))
    if not captures or commits == 0:
        raise DemoFailure("the WAL capture registered no commits")
    size = sum(s.size for s in captures)
    result.add(
        "ARCHIVE_LOG backup",
        "ok",
        f"{len(captures)} WAL capture sets every 0.1 s: {frames:,} frames, {commits:,} commits, {size:,} bytes",
    )
    result.add(
        "live writer",
        "ok",
        f"{writer.rows:,} rows in {len(writer.log):,} transactions while the backups ran",
    )

    report = Verifier(manager).verify(DATABASE, VerificationType.FULL)
    if not report.ok:
        raise DemoFailure(f"FULL verification of an intact repository failed: {report.findings}")
    result.add(
        "verify FULL",
        "ok",
        f"{report.pieces_checked} pieces and block maps, {report.bytes_read:,} bytes, every block re-hashed",
    )

    damaged = root / "repo-damaged"
    shutil.copytree(repo, damaged)
    file_no, block_index = _flip_a_byte(damaged, sets["FULL"], 7)
    # The damage is the point here: keep the verifier's warning about it out of the show.
    verify_log = logging.getLogger("rustybackup.verify")
    level = verify_log.level
    verify_log.setLevel(logging.ERROR)
    try:
        bad = Verifier(BackupManager(damaged)).verify(DATABASE, VerificationType.FULL)
    finally:
        verify_log.setLevel(level)
    hits = [b for b in bad.corrupt_blocks if b.block_index == block_index]
    if bad.ok or not hits:
        raise DemoFailure(f"the flipped bit in block {block_index} was not reported: {bad.corrupt_blocks}")
    table = Table(title="FULL verification of the damaged copy")
    for col in ("set", "file", "block", "offset", "expected", "actual"):
        table.add_column(col)
    for b in bad.corrupt_blocks:
        table.add_row(
            b.set_id,
            b.file,
            str(b.block_index),
            str(b.offset),
            b.expected[:16] + "…",
            b.actual[:16] + "…",
        )
    console.print(table)
    result.add(
        "flip one bit",
        "detected",
        f"block {block_index} of {hits[0].file} named exactly",
    )

    target = root / "restored"
    until, floor = _instant_between_sets(manager)
    manager.restore(DATABASE, target, until=until)
    detail = _check_restored(target / db.name, writer.log, to_us(until), to_us(floor))
    result.add(
        "restore to a point in time",
        "ok",
        f"until {until.isoformat(timespec='milliseconds')}: {detail}",
    )

    _show_week(manager, console, result)
    _summary(console, result)
    return result


def _show_week(manager: BackupManager, console: Console, result: DemoResult) -> None:
    """Adds jobs with windows and prints what the next 7 days would run or skip."""
    scheduler = BackupScheduler(manager)
    scheduler.add_window(off_hours("nights"))
    scheduler.add_window(business_hours("office"))
    jobs = [
        ScheduledBackup(
            "nightly-full",
            "nightly full",
            DATABASE,
            BackupType.FULL,
            "30 1 * * 0",
            priority=200,
            window_id="nights",
        ),
        ScheduledBackup(
            "daily-diff",
            "daily differential",
            DATABASE,
            BackupType.DIFFERENTIAL,
            "30 1 * * 1-6",
            window_id="nights",
            retention="redundancy=2",
        ),
        ScheduledBackup(
            "hourly-incr",
            "hourly incremental",
            DATABASE,
            BackupType.INCREMENTAL,
            "0 */4 * * *",
            window_id="office",
            window_policy="skip",
        ),
    ]
    with scheduler.batch():
        for job in jobs:
            scheduler.add_job(job, replace=True)
    start = datetime.now(UTC)
    table = Table(title="the scheduler's next week")
    for col in (
        "job",
        "cron",
        "window",
        "runs",
        "skipped (outside window)",
        "first runs",
    ):
        table.add_column(col)
    windows = {w.id: w for w in scheduler.list_windows()}
    for job in jobs:
        times = [t for t in job.cron.next_n(start, 60) if t - start <= timedelta(days=7)]
        window = windows[job.window_id] if job.window_id else None
        runs = [t for t in times if window is None or window.is_active(t)]
        table.add_row(
            job.id,
            job.schedule,
            job.window_id or "-",
            str(len(runs)),
            str(len(times) - len(runs)),
            ", ".join(t.strftime("%a %H:%M") for t in runs[:3]),
        )
    console.print(table)
    result.add(
        "scheduler",
        "ok",
        f"{len(jobs)} jobs in 2 windows, saved to scheduler_config.json",
    )


def _summary(console: Console, result: DemoResult) -> None:
    table = Table(title="summary")
    for col in ("step", "outcome", "detail"):
        table.add_column(col)
    for step, outcome, detail in result.steps:
        table.add_row(step, f"[green]{outcome}[/green]", detail)
    console.print(table)
