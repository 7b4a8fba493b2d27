"""Online base backups of a PostgreSQL data directory: the engine's block-level
FULL/INCREMENTAL/DIFFERENTIAL pass, run between ``pg_backup_start`` and
``pg_backup_stop`` on one session (the non-exclusive backup API), over the data
directory minus what PostgreSQL's documentation says to leave out ("Making a Base Backup
Using the Low Level API"; src/backend/backup/basebackup.c, excludeDirContents and
excludeFiles).

Relation files change while they are copied; that is expected, since replaying the WAL
from the start LSN repairs every torn page, so for this source the engine's "changed
while read" list is not a warning. What makes the copy usable is the WAL from its start
to its stop LSN, which ``pg_backup_stop(wait_for_archive => true)`` waits to see archived.
Where the cluster has data checksums, every relation page whose LSN predates the start is
checked (pgBackRest's rule) and a damaged one is named in the set's manifest and logged.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import struct
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _core, manifest, store
from ..errors import BackupError, ConfigError
from ..sources import TreeEntries, walk
from ..timestamps import to_us
from .wal import check_segment_size, parse_lsn

if TYPE_CHECKING:
    import psycopg

    from ..catalog import BackupSet, DatabaseEntry

log = logging.getLogger(__name__)

# Directories whose contents are left out (the directory itself is kept, empty).
EXCLUDED_DIR_CONTENTS = frozenset(
    {
        "pg_wal",
        "pg_replslot",
        "pg_dynshmem",
        "pg_notify",
        "pg_serial",
        "pg_snapshots",
        "pg_stat_tmp",
        "pg_subtrans",
    }
)
# Top-level files left out: the live backup_label/tablespace_map would be a previous
# backup's; the set's own come from pg_backup_stop.
EXCLUDED_TOP_FILES = frozenset(
    {
        "postmaster.pid",
        "postmaster.opts",
        "backup_label",
        "backup_label.old",
        "tablespace_map",
        "tablespace_map.old",
        "postgresql.auto.conf.tmp",
        "current_logfiles.tmp",
        "recovery.signal",
        "standby.signal",
    }
)
PG_CONTROL = "global/pg_control"
RELATION = re.compile(r"(?:base/[0-9]+|global)/[0-9]+(?:_fsm|_vm|_init)?(?:\.([0-9]+))?")


def excluded(rel: str, is_dir: bool) -> bool:
    """Whether data-directory entry `rel` stays out of a base backup."""
    parts = rel.split("/")
    if any(p.startswith("pgsql_tmp") for p in parts):
        return True
    if parts[-1] == "pg_internal.init":
        return True
    if len(parts) == 1:
        return not is_dir and parts[0] in EXCLUDED_TOP_FILES
    return parts[0] in EXCLUDED_DIR_CONTENTS


def data_tree(pgdata: Path) -> TreeEntries:
    """The entries of `pgdata` a base backup copies."""
    if not (pgdata / "PG_VERSION").is_file():
        raise BackupError(f"{pgdata} is not a PostgreSQL data directory (no PG_VERSION file)")
    tree = walk(pgdata)
    spc = pgdata / "pg_tblspc"
    if spc.is_dir() and any(spc.iterdir()):
        raise BackupError(
            f"{pgdata} has tablespaces ({', '.join(sorted(p.name for p in spc.iterdir()))} in pg_tblspc): "
            "tablespaces outside the data directory are not backed up yet"
        )
    unlogged = _unlogged(f[0] for f in tree.files)
    files = [f for f in tree.files if not excluded(f[0], False) and _relation_key(f[0]) not in unlogged]
    # pg_control last (basebackup.c and pgBackRest do the same): the copy names a
    # checkpoint no older than any other file's copy. A resumed pass never adopts it.
    files.sort(key=lambda f: f[0] == PG_CONTROL)
    return TreeEntries(
        files=files,
        dirs=[d for d in tree.dirs if not excluded(d[0], True)],
        symlinks=[s for s in tree.symlinks if not excluded(s[0], False)],
        skipped=[e for e in tree.skipped if not excluded(e.path, False)],
    )


_FORK = re.compile(r"((?:base/[0-9]+|global)/[0-9]+)(?:_(fsm|vm|init))?(?:\.[0-9]+)?")


def _relation_key(rel: str) -> str | None:
    """``base/<db>/<relfilenode>`` of a relation file (any fork, any segment); None for
    the init fork itself and for every other file."""
    m = _FORK.fullmatch(rel)
    if m is None or m.group(2) == "init":
        return None
    return m.group(1)


def _unlogged(rels: Iterable[str]) -> set[str]:
    """Unlogged relations: those with an init fork. Their other forks are reset from it
    at startup, so a base backup copies only the init fork (basebackup.c does the same)."""
    out = set()
    for rel in rels:
        m = _FORK.fullmatch(rel)
        if m is not None and m.group(2) == "init":
            out.add(m.group(1))
    return out


@dataclasses.dataclass
class Session:
    """One connection in the middle of a non-exclusive backup."""

    conn: psycopg.Connection[Any]
    version: int
    start_lsn: int
    segment_size: int
    page_size: int
    checksums: bool


def _connect(db: DatabaseEntry) -> psycopg.Connection[Any]:
    try:
        import psycopg
    except ImportError:
        raise ConfigError(
            "backups of postgresql databases need psycopg 3: pip install 'rustybackup[postgresql]'"
        ) from None
    if not db.dsn:
        raise ConfigError(f"database {db.name!r} has no dsn; register it again with dsn=... (--dsn)")
    try:
        return psycopg.connect(db.dsn, autocommit=True, connect_timeout=30, application_name="rustybackup")
    except psycopg.Error as exc:
        raise BackupError(f"cannot connect to {db.name!r} ({db.dsn}): {exc}".strip()) from exc


def _setting(conn: psycopg.Connection[Any], name: str) -> str:
    row = conn.execute("SELECT setting FROM pg_settings WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise BackupError(f"the server has no setting {name!r}")
    return str(row[0])


@contextmanager
def session(db: DatabaseEntry, label: str) -> Iterator[Session]:
    """pg_backup_start on a fresh session; the caller calls `stop`. Closing the session
    without it aborts the backup on the server (that is how the non-exclusive API ends a
    failed one)."""
    import psycopg

    conn = _connect(db)
    try:
        try:
            version = conn.info.server_version
            if _setting(conn, "archive_mode") == "off":
                raise BackupError(
                    f"{db.name!r}: archive_mode is off; a base backup needs the WAL archived "
                    f"(archive_command = 'rustybackup --repo REPO archive-push {db.name} %p')"
                )
            served = os.path.realpath(_setting(conn, "data_directory"))
            if served != os.path.realpath(db.path):
                # The dsn reaches another cluster than the directory we would copy: its
                # backup API would not cover these files (pgBackRest checks the same).
                raise BackupError(
                    f"{db.name!r}: the server at {db.dsn!r} serves {served}, not the registered data directory {db.path}"
                )
            if conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,):
                raise BackupError(f"{db.name!r}: the server is in recovery; back up the primary")
            segment_size = check_segment_size(int(_setting(conn, "wal_segment_size")))
            page_size = int(_setting(conn, "block_size"))
            checksums = _setting(conn, "data_checksums") == "on"
            if version >= 150000:
                row = conn.execute("SELECT pg_backup_start(%s, true)", (label,)).fetchone()
            else:
                row = conn.execute("SELECT pg_start_backup(%s, true, false)", (label,)).fetchone()
        except psycopg.Error as exc:
            raise BackupError(f"pg_backup_start on {db.name!r} failed: {exc}") from exc
        assert row is not None
        yield Session(conn, version, parse_lsn(str(row[0])), segment_size, page_size, checksums)
    finally:
        conn.close()


@dataclasses.dataclass(frozen=True)
class StopResult:
    stop_lsn: int
    backup_label: str
    tablespace_map: str
    timeline: int


def stop(s: Session, database: str, *, wait: bool = True) -> StopResult:
    """pg_backup_stop; with `wait`, waiting until the WAL the backup needs is archived."""
    import psycopg

    try:
        if s.version >= 150000:
            row = s.conn.execute("SELECT lsn, labelfile, spcmapfile FROM pg_backup_stop(%s)", (wait,)).fetchone()
        else:
            row = s.conn.execute("SELECT lsn, labelfile, spcmapfile FROM pg_stop_backup(false, %s)", (wait,)).fetchone()
    except psycopg.Error as exc:
        raise BackupError(f"pg_backup_stop on {database!r} failed: {exc}".strip()) from exc
    assert row is not None
    label = str(row[1])
    m = re.search(r"^START TIMELINE: ([0-9]+)$", label, re.MULTILINE)
    if m is None:
        raise BackupError(f"pg_backup_stop on {database!r} returned a backup_label without START TIMELINE")
    return StopResult(parse_lsn(str(row[0])), label, str(row[2] or ""), int(m.group(1)))


@dataclasses.dataclass
class PageCheck:
    """The page checks the engine's pass makes on the bytes it reads (one read of each
    relation file): what to check against, then what the pass found (`found`: relative
    name and block of each page it found bad; None while the pass has not checked) and
    which files it read (`read`), so `take` checks only the others on its own."""

    start_lsn: int
    page_size: int
    found: list[tuple[str, int]] | None = None
    read: set[str] = dataclasses.field(default_factory=set)

    def arguments(self, rels: Iterable[str]) -> tuple[int, int, list[int | None]]:
        """`_core.backup_files`'s ``pg_pages`` for a pass over `rels`: each relation file's
        segment number, None for the other files."""
        segments: list[int | None] = []
        for rel in rels:
            m = RELATION.fullmatch(rel)
            segments.append(None if m is None else int(m.group(1) or 0))
        return self.start_lsn, self.page_size, segments

    def record(
        self,
        rels: list[str],
        bad: list[tuple[int, int, int, int]] | None,
        adopted: int,
        reused: frozenset[int],
    ) -> None:
        """What the pass over `rels` found (`bad`: job, block, stored, computed; None when
        it did not check). The first `adopted` files (taken from a cut pass) and those at
        `reused` (taken from the parent) were not read by it."""
        if bad is None:
            self.found, self.read = None, set()
            return
        self.found = [(rels[job], block) for job, block, _, _ in bad]
        self.read = {rel for i, rel in enumerate(rels) if i >= adopted and i not in reused}


def check_pages(pgdata: Path, rels: list[str], s: Session) -> list[manifest.DamagedPage]:
    """Damaged pages of the relation files `rels` (relative to `pgdata`). A page found
    bad is read once more before it is reported: a read that raced a write is torn, and
    the second read sees the written page (pgBackRest does the same)."""
    if not s.checksums:
        return []
    jobs = []
    for rel in rels:
        m = RELATION.fullmatch(rel)
        if m is not None:
            jobs.append((rel, int(m.group(1) or 0)))

    def one(job: tuple[str, int]) -> list[manifest.DamagedPage]:
        rel, segment = job
        try:
            bad = _core.pg_check_file(
                pgdata / rel,
                segment=segment,
                start_lsn=s.start_lsn,
                page_size=s.page_size,
            )
        except FileNotFoundError:
            return []  # dropped meanwhile: replay drops it too
        return [manifest.DamagedPage(rel, block) for block, _, _ in bad if _still_bad(pgdata / rel, block, s)]

    with ThreadPoolExecutor(max_workers=2) as pool:
        found = [p for part in pool.map(one, jobs) for p in part]
    for p in found:
        log.warning(
            "damaged page in the source: %s block %d (checksum mismatch)",
            p.path,
            p.block,
        )
    return found


def _checked_in_pass(pgdata: Path, pages: PageCheck | None, s: Session) -> list[manifest.DamagedPage]:
    """The damaged pages the pass found, each read once more first (as `check_pages`
    does: a read that raced a write is torn, the second sees the written page)."""
    if pages is None or not pages.found:
        return []
    found = [manifest.DamagedPage(rel, block) for rel, block in pages.found if _still_bad(pgdata / rel, block, s)]
    for p in found:
        log.warning("damaged page in the source: %s block %d (checksum mismatch)", p.path, p.block)
    return found


def _still_bad(path: Path, block: int, s: Session) -> bool:
    per_segment = (1 << 30) // s.page_size
    try:
        with open(path, "rb") as fh:
            fh.seek((block % per_segment) * s.page_size)
            page = fh.read(s.page_size)
    except OSError:
        return False
    if len(page) != s.page_size:
        return False
    hi, lo, stored = struct.unpack_from("<IIH", page)
    if ((hi << 32) | lo) >= s.start_lsn or page[14:16] == b"\0\0":
        return False
    return bool(stored != _core.pg_checksum_page(page, block & 0xFFFFFFFF))


def _parent_verdicts(
    staging: Path, written: manifest.Manifest, s: Session
) -> tuple[set[str], list[manifest.DamagedPage]]:
    """The files of `written` (the new set, staged) taken from its parent unread, and the
    damaged pages the parent found in them: their pages are the ones the parent checked
    (unchanged.taken_unread), so they are not read again and its verdict is carried. Both
    empty, so that every file is checked, when the parent's check was not this one (no
    checksums then, another page size) or the files cannot be told apart for certain."""
    parent_id = written.record.parent_id
    if not s.checksums or parent_id is None or not written.summary.unread:
        return set(), []
    from . import unchanged

    root = staging.parent.parent
    parent = manifest.load(store.Repository(root, create=False).set_dir(parent_id) / store.MANIFEST, set_id=parent_id)
    info = parent.postgresql
    if info is None or not info.data_checksums or info.page_size != s.page_size:
        return set(), []
    unread = unchanged.taken_unread(written.files, parent.files, parent.record.started_at_us)
    if len(unread) != written.summary.unread:
        log.info("checking every file's pages: %d taken unread, %d found", written.summary.unread, len(unread))
        return set(), []
    carried = [p for p in info.damaged_pages if p.path in unread]
    for p in carried:
        log.warning(
            "damaged page in the source: %s block %d (checksum mismatch, found by %s; unchanged since)",
            p.path,
            p.block,
            parent_id,
        )
    return unread, carried


def take(
    db: DatabaseEntry,
    staging: Path,
    set_id: str,
    clock: Callable[[], datetime],
    copy: Callable[[PageCheck | None], tuple[BackupSet, list[tuple[str, str]]]],
    archived: Callable[[str], bool] | None = None,
) -> manifest.Manifest:
    """Runs `copy` (the engine's pass over `data_tree`, which writes the staging
    manifest and checks the pages it reads against the `PageCheck` given) inside the
    backup API, then adds what pg_backup_stop returned to that manifest. Returns the
    final manifest. With `archived` (whether our archive holds a WAL file), the wait for
    the WAL is ours (archive_wait), not the server's."""
    with session(db, f"rustybackup {set_id}") as s:
        pages = PageCheck(s.start_lsn, s.page_size) if s.checksums else None
        copy(pages)
        path = staging / store.MANIFEST
        written = manifest.load(path, set_id=set_id)
        unread, carried = _parent_verdicts(staging, written, s)
        damaged = carried + _checked_in_pass(Path(db.path), pages, s)
        # What the pass did not read (taken from a cut pass, or from the parent without
        # its verdict) is read here.
        read = set() if pages is None or pages.found is None else pages.read
        rest = [f.path for f in written.files if f.path not in unread and f.path not in read]
        damaged += check_pages(Path(db.path), rest, s)
        result = stop(s, db.name, wait=archived is None)
        if archived is not None:
            from . import archive_wait

            needed = archive_wait.needed_files(s.start_lsn, result.stop_lsn, result.timeline, s.segment_size)
            archive_wait.wait_archived(needed, archived, db.name, result.stop_lsn)
    stopped = to_us(clock().astimezone(UTC))
    info = manifest.PostgresInfo(
        start_lsn=s.start_lsn,
        stop_lsn=result.stop_lsn,
        timeline=result.timeline,
        wal_segment_size=s.segment_size,
        page_size=s.page_size,
        data_checksums=s.checksums,
        server_version=s.version,
        backup_label=result.backup_label,
        tablespace_map=result.tablespace_map,
        damaged_pages=tuple(damaged),
    )
    # The set is usable from the moment its stop LSN is archived: that is its finish.
    record = dataclasses.replace(written.record, finished_at_us=max(stopped, written.record.finished_at_us))
    final = dataclasses.replace(written, record=record, postgresql=info)
    path.unlink()
    manifest.write(path, final)
    log.info(
        "base backup %s of %s: WAL %s..%s on timeline %d, %d damaged page(s)",
        set_id,
        db.name,
        f"{s.start_lsn >> 32:X}/{s.start_lsn & 0xFFFFFFFF:X}",
        f"{result.stop_lsn >> 32:X}/{result.stop_lsn & 0xFFFFFFFF:X}",
        result.timeline,
        len(damaged),
    )
    return final
