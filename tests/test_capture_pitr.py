"""Point-in-time restore of a live SQLite database from captured WAL frames.

The core test: a writer thread commits rows that carry the clock time read just before
their commit, while capture steps and FULL/INCREMENTAL/DIFFERENTIAL backups run. Then,
for random instants T, a restore to T must hold exactly a prefix of the commits (one
writer: ids in commit order), no row stamped after T, and every row whose commit had
returned before the newest capture (or backup) seen by T started reading.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

# Clock is imported from here by other capture tests: re-exported by its own name.
from capture_support import Clock as Clock
from capture_support import LoggedWriter, assert_restored_prefix, restored_ids, shop
from rustybackup import manifest, store
from rustybackup.engine import BackupManager
from rustybackup.enums import BackupType, VerificationType
from rustybackup.errors import BackupError, NoRecoveryPath
from rustybackup.sqlite_wal import WalCapture, WalPosition
from rustybackup.timestamps import to_us
from rustybackup.verify import Verifier


class Writer(LoggedWriter):
    """Commits 1-3 rows per transaction; each row stores the time read before COMMIT, and
    the log keeps (id, time before, time after COMMIT returned)."""

    def __init__(self, path: Path, clock: Clock, autocheckpoint: bool = True) -> None:
        super().__init__(path, clock)
        self.autocheckpoint = autocheckpoint
        self.rng = random.Random(1)

    def prepare(self, conn: sqlite3.Connection) -> None:
        if not self.autocheckpoint:
            conn.execute("PRAGMA wal_autocheckpoint=0")

    def count(self) -> int:
        return self.rng.randint(1, 3)

    def insert(self, conn: sqlite3.Connection, row_id: int, before: datetime) -> None:
        conn.execute(
            "INSERT INTO t VALUES (?, ?, ?)",
            (row_id, to_us(before), self.rng.randbytes(self.rng.randint(10, 900))),
        )


def _make_db(path: Path, autocheckpoint: bool = True) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, at_us INTEGER NOT NULL, pad BLOB)")
    conn.executemany("INSERT INTO t VALUES (?, 0, ?)", [(-i, b"x" * 500) for i in range(1, 400)])
    conn.close()


def _restored_ids(target: Path, name: str) -> list[int]:
    return restored_ids(target / name)


def _check_restore(manager: BackupManager, db: Path, writer: Writer, until: datetime, target: Path) -> int:
    path = manager.restore("shop", target, until=until)
    ids = _restored_ids(target, db.name)
    # The newest point the restore must reach: the data set's or the last applied
    # capture's start (both read the database after that instant).
    floor = path[0].started_at
    for s in path:
        m = manifest.load(manager.repo.set_dir(s.id) / store.MANIFEST)
        if s.backup_type is not BackupType.ARCHIVE_LOG or (
            isinstance(m.wal, WalCapture) and m.wal.last.commits and m.wal.last.commits[-1][1] <= to_us(until)
        ):
            floor = max(floor, s.started_at)
    assert_restored_prefix(ids, writer.log, until, floor)
    return len(ids)


@pytest.mark.parametrize(
    ("foreground", "autocheckpoint"),
    [
        (True, True),  # the foreground capturer pins the WAL: nothing else is needed
        (
            False,
            False,
        ),  # scheduled steps: continuous while only the capture checkpoints
        (
            False,
            True,
        ),  # scheduled steps beside the application's checkpoints: holes are found
    ],
)
def test_restore_to_random_instants_holds_exactly_what_was_committed(
    tmp_path: Path, foreground: bool, autocheckpoint: bool
) -> None:
    db, clock, manager = shop(tmp_path, _make_db)
    # The application keeps a connection open, as a server does: when the last one
    # closes, SQLite checkpoints and removes the WAL (a hole, tested on its own below).
    keeper = sqlite3.connect(db)
    keeper.execute("SELECT count(*) FROM t").fetchone()
    writer = Writer(db, clock, autocheckpoint)
    writer.start()
    capturer_stop = threading.Event()
    capturer: threading.Thread | None = None
    try:
        # A copy taken while the database has no WAL cannot be rolled forward (it holds no
        # WAL position); a live application has one.
        while not writer.log:
            time.sleep(0.001)
        manager.backup("shop", BackupType.FULL)
        if foreground:
            from rustybackup.capture_loop import Capturer

            loop = Capturer(BackupManager(tmp_path / "repo", clock=clock), "shop", interval=0.05)
            capturer = threading.Thread(target=loop.run, args=(capturer_stop,), daemon=True)
            capturer.start()
        plan: list[BackupType] = [BackupType.ARCHIVE_LOG] * 3 + [BackupType.INCREMENTAL] + [BackupType.ARCHIVE_LOG] * 3
        plan += [
            BackupType.DIFFERENTIAL,
            BackupType.ARCHIVE_LOG,
            BackupType.INCREMENTAL,
            BackupType.ARCHIVE_LOG,
        ]
        for kind in plan:
            time.sleep(0.08)
            if kind is BackupType.ARCHIVE_LOG and foreground:
                continue  # the foreground capturer does the steps
            manager.backup("shop", kind)
        time.sleep(0.1)
    finally:
        writer.stop.set()
        writer.join()
        capturer_stop.set()
        if capturer is not None:
            capturer.join()
    assert writer.error is None, writer.error
    if not foreground:
        manager.backup("shop", BackupType.ARCHIVE_LOG)
    keeper.close()
    sets = manager.catalog.list_sets("shop")
    captures = [s for s in sets if s.backup_type is BackupType.ARCHIVE_LOG]
    assert len(captures) >= 3
    records = [manifest.load(manager.repo.set_dir(s.id) / store.MANIFEST).wal for s in captures]
    assert all(isinstance(r, WalCapture) for r in records)
    holes = [r.note for r in records[1:] if isinstance(r, WalCapture) and not r.continuous]
    if not (autocheckpoint and not foreground):
        # Every WAL generation after the first capture continues the one before.
        assert holes == []
    start = sets[0].finished_at
    end = clock()
    rng = random.Random(14)
    instants = sorted(start + (end - start) * rng.random() for _ in range(8)) + [end]
    counts = []
    for n, until in enumerate(instants):
        try:
            counts.append(_check_restore(manager, db, writer, until, tmp_path / f"restored-{n}"))
        except NoRecoveryPath as exc:
            # Only where a capture found a hole, never a silently shorter restore.
            assert holes and "does not provably continue" in str(exc), exc
    assert counts == sorted(counts)
    if not holes:
        assert counts[-1] == len(writer.log), "the latest restore must hold every commit"
    report = Verifier(manager).verify("shop", VerificationType.FULL)
    assert report.ok, report.findings


def test_data_sets_record_a_wal_position_and_match_the_live_database(
    tmp_path: Path,
) -> None:
    db, clock, manager = shop(tmp_path, _make_db)
    writer = Writer(db, clock)
    writer.start()
    try:
        sets = []
        for kind in (
            BackupType.FULL,
            BackupType.INCREMENTAL,
            BackupType.DIFFERENTIAL,
            BackupType.INCREMENTAL,
        ):
            time.sleep(0.05)
            sets.append(manager.backup("shop", kind))
    finally:
        writer.stop.set()
        writer.join()
    assert writer.error is None
    for n, s in enumerate(sets):
        m = manifest.load(manager.repo.set_dir(s.id) / store.MANIFEST)
        assert isinstance(m.wal, WalPosition) and m.wal.salt is not None
        target = tmp_path / f"set-{n}"
        manager.restore("shop", target, backup_set_id=s.id)
        ids = _restored_ids(target, db.name)
        # Consistent under the writer: a whole prefix of the commits, nothing torn.
        assert ids == list(range(1, len(ids) + 1))
        assert {i for i, _, after in writer.log if after <= s.started_at} <= set(ids)
        assert all(before <= s.finished_at for i, before, _ in writer.log if i in set(ids))


def test_a_restart_nobody_vouches_for_is_a_hole_restore_refuses_to_cross(
    tmp_path: Path,
) -> None:
    db, clock, manager = shop(tmp_path, _make_db)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("INSERT INTO t VALUES (1, 0, x'00')")
    manager.backup("shop", BackupType.FULL)
    conn.execute("INSERT INTO t VALUES (2, 0, x'00')")
    first = manager.backup("shop", BackupType.ARCHIVE_LOG)
    # Commits the capture never sees, then a restart of the WAL by somebody else.
    conn.execute("INSERT INTO t VALUES (3, 0, x'00')")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("INSERT INTO t VALUES (4, 0, x'00')")
    second = manager.backup("shop", BackupType.ARCHIVE_LOG)
    rec = manifest.load(manager.repo.set_dir(second.id) / store.MANIFEST).wal
    assert isinstance(rec, WalCapture) and not rec.continuous and rec.generation == 2
    assert "restarted or replaced" in rec.note
    with pytest.raises(NoRecoveryPath, match=r"does not provably continue"):
        manager.restore("shop", tmp_path / "r1", until=clock())
    # Up to the first capture all is well.
    manager.restore("shop", tmp_path / "r2", until=first.finished_at)
    assert _restored_ids(tmp_path / "r2", db.name) == [1, 2]
    # "Latest" stops before the hole and says so rather than failing.
    manager.restore("shop", tmp_path / "r3")
    assert _restored_ids(tmp_path / "r3", db.name) == [1, 2]
    # A backup after the restart makes later points reachable again.
    manager.backup("shop", BackupType.FULL)
    conn.execute("INSERT INTO t VALUES (5, 0, x'00')")
    manager.backup("shop", BackupType.ARCHIVE_LOG)
    manager.restore("shop", tmp_path / "r4", until=clock())
    assert _restored_ids(tmp_path / "r4", db.name) == [1, 2, 3, 4, 5]
    conn.close()


def test_a_copy_taken_without_a_wal_cannot_be_rolled_forward(tmp_path: Path) -> None:
    # _make_db closes the database: SQLite checkpointed and removed the WAL.
    db, clock, manager = shop(tmp_path, _make_db)
    full = manager.backup("shop", BackupType.FULL)
    rec = manifest.load(manager.repo.set_dir(full.id) / store.MANIFEST).wal
    assert isinstance(rec, WalPosition) and rec.salt is None
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("INSERT INTO t VALUES (1, 0, x'00')")
    manager.backup("shop", BackupType.ARCHIVE_LOG)
    with pytest.raises(NoRecoveryPath, match="holds no WAL position"):
        manager.restore("shop", tmp_path / "r", until=clock())
    manager.restore("shop", tmp_path / "r0", until=full.finished_at)
    assert _restored_ids(tmp_path / "r0", db.name) == []
    conn.close()


def test_a_missing_capture_set_is_named(tmp_path: Path) -> None:
    db, clock, manager = shop(tmp_path, _make_db)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("INSERT INTO t VALUES (0, 0, x'00')")
    manager.backup("shop", BackupType.FULL)
    # A reader of the application's keeps the WAL from restarting: one generation.
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchone()
    sets = []
    for i in range(1, 4):
        conn.execute("INSERT INTO t VALUES (?, 0, x'00')", (i,))
        sets.append(manager.backup("shop", BackupType.ARCHIVE_LOG))
    reader.close()
    # The path names exactly the captures the replay needs.
    path = manager.catalog.find_recovery_path("shop", sets[1].finished_at)
    assert [s.id for s in path if s.backup_type is BackupType.ARCHIVE_LOG] == [
        sets[0].id,
        sets[1].id,
    ]
    manager.catalog.remove_set(sets[1].id)
    with pytest.raises(NoRecoveryPath, match="were never captured"):
        manager.catalog.find_recovery_path("shop", clock())
    with pytest.raises(
        NoRecoveryPath,
        match=r"frames \d+\.\.\d+ of WAL generation 1 .* were never captured",
    ):
        manager.restore("shop", tmp_path / "r", until=clock())
    conn.close()


def test_a_second_capture_of_the_same_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    _make_db(db)
    manager = BackupManager(tmp_path / "repo")
    manager.register_database("shop", db, kind="sqlite")
    from rustybackup.locks import capture_lock

    with (
        capture_lock(manager.repository, "shop"),
        pytest.raises(BackupError, match="another WAL capture"),
    ):
        manager.backup("shop", BackupType.ARCHIVE_LOG)
    assert manager.catalog.list_sets("shop") == []


def test_the_foreground_capturer_lets_a_long_wal_restart_without_a_hole(tmp_path: Path) -> None:
    from rustybackup.capture_loop import Capturer

    db, clock, manager = shop(tmp_path, _make_db)
    writer = Writer(db, clock)
    writer.start()
    stop = threading.Event()
    loop = Capturer(BackupManager(tmp_path / "repo", clock=clock), "shop", interval=0.05, rollover_frames=20)
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    try:
        while not writer.log:
            time.sleep(0.001)
        manager.backup("shop", BackupType.FULL)
        thread.start()
        time.sleep(1.5)
    finally:
        writer.stop.set()
        writer.join()
        stop.set()
        thread.join()
    assert writer.error is None
    records = [
        r
        for s in manager.catalog.list_sets("shop", BackupType.ARCHIVE_LOG)
        if isinstance(w := manifest.load(manager.repo.set_dir(s.id) / store.MANIFEST).wal, WalCapture)
        for r in w.chain
    ]
    rolled = [r for r in records if "while the capturer pinned it" in r.note]
    assert rolled, [r.note for r in records if isinstance(r, WalCapture)]
    assert all(r.continuous for r in records[1:] if isinstance(r, WalCapture))
    for n, r in enumerate(rolled[:3]):
        assert isinstance(r, WalCapture) and r.commits
        seen = datetime.fromtimestamp(r.commits[-1][1] / 1e6, UTC)
        _check_restore(manager, db, writer, seen, tmp_path / f"r{n}")
    assert _check_restore(manager, db, writer, clock(), tmp_path / "latest") == len(writer.log)


def test_a_database_not_in_wal_mode_is_refused_by_name(tmp_path: Path) -> None:
    db = tmp_path / "plain.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    manager = BackupManager(tmp_path / "repo")
    manager.register_database("plain", db, kind="sqlite")
    with pytest.raises(
        BackupError,
        match=r"journal_mode=delete; WAL capture needs PRAGMA journal_mode=WAL",
    ):
        manager.backup("plain", BackupType.ARCHIVE_LOG)
    assert manager.catalog.list_sets("plain") == []
    conn.close()


def test_a_damaged_frame_in_the_live_wal_is_reported_and_never_captured(
    tmp_path: Path,
) -> None:
    db = tmp_path / "shop.db"
    _make_db(db)
    manager = BackupManager(tmp_path / "repo")
    manager.register_database("shop", db, kind="sqlite", block_size=4096)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    reader = sqlite3.connect(db, isolation_level=None)  # keeps the WAL from restarting
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchone()
    conn.execute("INSERT INTO t VALUES (1, 0, x'00')")
    first = manager.backup("shop", BackupType.ARCHIVE_LOG)
    done = manifest.load(manager.repo.set_dir(first.id) / store.MANIFEST).wal
    assert isinstance(done, WalCapture)
    for i in range(2, 6):
        conn.execute("INSERT INTO t VALUES (?, 0, randomblob(3000))", (i,))
    wal = db.with_name(db.name + "-wal")
    data = bytearray(wal.read_bytes())
    frame_len = 24 + done.page_size
    at = 32 + (done.last_frame + 1) * frame_len + 100  # inside the second new frame
    data[at] ^= 0xFF
    wal.write_bytes(bytes(data))
    second = manager.backup("shop", BackupType.ARCHIVE_LOG)
    rec = manifest.load(manager.repo.set_dir(second.id) / store.MANIFEST).wal
    assert isinstance(rec, WalCapture)
    assert "the WAL is damaged" in rec.note and f"frame {done.last_frame + 2} fails its checksum" in rec.note
    # Nothing from the damaged frame on was captured.
    assert rec.last_frame <= done.last_frame + 1
    reader.close()
    conn.close()
