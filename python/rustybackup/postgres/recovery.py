"""Point-in-time recovery of a postgresql database: which sets and WAL files reach an
instant, and a data directory that PostgreSQL recovers to it.

"until T" means: every transaction whose commit record is timestamped at or before T,
and none after (``recovery_target_time = T``, inclusive), on the newest timeline the
archive holds when the restore plans (``recovery_target_timeline`` names it; without T,
'latest'). PostgreSQL stops at the first commit after T, so the archive must hold WAL
written after T: a segment pushed after T. The recovery path is the newest base backup
(FULL and the INCREMENTAL/DIFFERENTIAL on it) finished at or before T, plus every WAL
file from its start LSN on, along the timeline history, through the first segment
pushed after T. A file missing on that way raises NoRecoveryPath naming it; a restore
never stops silently at an earlier instant.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .. import _core, manifest
from ..enums import BackupType, SetStatus
from ..errors import BackupError, CatalogError, ConfigError, NoRecoveryPath
from ..restore import restore_set_files
from ..restore_target import RestoreTarget
from ..timestamps import from_us, to_us
from . import archive, writeback
from .wal import (
    HISTORY,
    SEGMENT,
    TimelineSpan,
    format_lsn,
    history_name,
    parse_history,
    parse_segment,
    segments_between,
)

if TYPE_CHECKING:
    from ..catalog import BackupCatalog, BackupSet, DatabaseEntry
    from ..engine import BackupManager

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """What a restore of a postgresql database to `until` reads."""

    data_sets: list[BackupSet]
    base: manifest.Manifest
    info: manifest.PostgresInfo
    timeline: int
    wal: list[str]
    log_set_ids: list[str]

    def sets(self, catalog: BackupCatalog) -> list[BackupSet]:
        return self.data_sets + catalog.get_sets(self.log_set_ids)


def _data_path(catalog: BackupCatalog, database: str, until: datetime | None, excluded: set[str]) -> list[BackupSet]:
    """The base backup chain: the catalog's (Rust) resolution over the data sets
    finished by `until`, minus `excluded` (which WAL reaches `until` is this module's)."""
    until_us = None if until is None else to_us(until)
    rows = [
        r
        for r in catalog.retention_rows(database)
        if r[1] != BackupType.ARCHIVE_LOG.value and (until_us is None or r[4] <= until_us) and r[0] not in excluded
    ]
    if not rows:
        when = "" if until is None else f" finished at or before {until.isoformat()}"
        on = " on the timeline being recovered" if excluded else ""
        raise NoRecoveryPath(f"database {database!r} has no base backup{on}{when}")
    return catalog.get_sets(_core.recovery_path(rows, None, database=database))


def _history(manager: BackupManager, database: str, tli: int) -> list[TimelineSpan]:
    name = history_name(tli)
    with tempfile.TemporaryDirectory() as tmp:
        archive.get(manager, database, name, Path(tmp) / name)
        text = (Path(tmp) / name).read_text(encoding="utf-8", errors="replace")
    return parse_history(tli, text, f"{database}: {name}")


def _on(spans: list[TimelineSpan], info: manifest.PostgresInfo) -> bool:
    """Whether a backup's start lies on the timeline history `spans`."""
    return any(
        s.timeline == info.timeline and s.begin <= info.start_lsn and (s.end is None or info.start_lsn < s.end)
        for s in spans
    )


def plan(manager: BackupManager, db: DatabaseEntry, until: datetime | None, set_id: str | None = None) -> Plan:
    """The sets and WAL files that reach `until`; with `set_id`, those that make that
    set consistent (its chain, and the WAL from its start to its stop LSN)."""
    archived = archive.archived(manager, db.name)
    if set_id is not None:
        return _set_plan(manager, db, set_id, archived)
    # recovery_target_timeline = 'latest': the newest timeline the archive has a history
    # of; the base must lie on that history (a set taken on the old timeline after the
    # switch cannot be replayed onto the new one, so an older base is used).
    timelines = sorted((int(n[:8], 16) for n in archived if HISTORY.fullmatch(n)), reverse=True)
    target = _history(manager, db.name, timelines[0]) if timelines else None
    excluded: set[str] = set()
    while True:
        data_sets = _data_path(manager.catalog, db.name, until, excluded)
        last = data_sets[-1]
        base = manifest.load(manager.repository / last.manifest, set_id=last.id)
        info = base.postgresql
        if info is None:
            raise BackupError(
                f"set {last.id} of postgresql database {db.name!r} has no postgresql section in its manifest"
            )
        if target is None or info.timeline > target[-1].timeline:
            spans = [TimelineSpan(info.timeline, 0, None)]
            break
        if _on(target, info):
            spans = target
            break
        excluded.add(last.id)
    seg = info.wal_segment_size
    until_us = None if until is None else to_us(until)
    stop_segno = info.stop_lsn // seg
    wal: list[str] = []
    lsn = info.start_lsn
    while True:
        (name,) = segments_between(spans, lsn, lsn, seg)
        segno = lsn // seg
        if name in archived:
            wal.append(name)
            if until_us is not None and segno >= stop_segno and archived[name][1] > until_us:
                break
            lsn = (segno + 1) * seg
            continue
        if segno <= stop_segno:
            raise NoRecoveryPath(
                f"set {last.id} of {db.name!r} needs the WAL up to {format_lsn(info.stop_lsn)}, "
                f"but {name} is not archived"
            )
        if _later_on_path(archived, spans, segno, seg):
            raise NoRecoveryPath(
                f"the WAL archive of {db.name!r} has a gap: {name} is missing "
                f"(set {last.id} replays from {format_lsn(info.start_lsn)} on)"
            )
        if until is not None:
            newest = max(
                (t for n, (_, t) in archived.items() if SEGMENT.fullmatch(n)),
                default=None,
            )
            seen = "" if newest is None else f"; the newest segment was pushed at {from_us(newest).isoformat()}"
            raise NoRecoveryPath(
                f"the WAL archive of {db.name!r} does not reach {until.isoformat()}: {name} is not archived "
                f"yet{seen}, and recovery to an instant needs WAL written after it"
            )
        break
    histories = [history_name(s.timeline) for s in spans if history_name(s.timeline) in archived]
    log_ids = list(dict.fromkeys(archived[n][0] for n in histories + wal if archived[n][0] != "spool"))
    return Plan(data_sets, base, info, spans[-1].timeline, histories + wal, sorted(log_ids))


def _set_plan(manager: BackupManager, db: DatabaseEntry, set_id: str, archived: dict[str, tuple[str, int]]) -> Plan:
    chosen = manager.catalog.get_set(set_id)
    if chosen.database != db.name:
        raise CatalogError(f"backup set {set_id} belongs to {chosen.database!r}, not {db.name!r}")
    if chosen.backup_type is BackupType.ARCHIVE_LOG:
        raise ConfigError(f"set {set_id} holds WAL, not a data directory; restore a base backup set or use --until")
    data_sets = manager.catalog.chain(set_id)
    bad = [s for s in data_sets if s.status is not SetStatus.AVAILABLE]
    if bad:
        raise NoRecoveryPath(f"set {set_id} cannot be restored: its chain holds {bad[0].id} ({bad[0].status.value})")
    base = manifest.load(manager.repository / chosen.manifest, set_id=chosen.id)
    info = base.postgresql
    if info is None:
        raise BackupError(
            f"set {chosen.id} of postgresql database {db.name!r} has no postgresql section in its manifest"
        )
    seg = info.wal_segment_size
    wal = []
    for name in segments_between([TimelineSpan(info.timeline, 0, None)], info.start_lsn, info.stop_lsn, seg):
        if name not in archived:
            raise NoRecoveryPath(
                f"set {set_id} of {db.name!r} needs the WAL up to {format_lsn(info.stop_lsn)}, but {name} is not archived"
            )
        wal.append(name)
    log_ids = sorted({archived[n][0] for n in wal if archived[n][0] != "spool"})
    return Plan(data_sets, base, info, info.timeline, wal, log_ids)


def _later_on_path(
    archived: dict[str, tuple[str, int]],
    spans: list[TimelineSpan],
    segno: int,
    seg: int,
) -> bool:
    """Whether an archived segment of the path's timelines lies past segment `segno`."""
    tlis = {s.timeline for s in spans}
    for n in archived:
        if SEGMENT.fullmatch(n):
            tli, no = parse_segment(n, seg)
            if tli in tlis and no > segno:
                return True
    return False


def _conf_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


STAGE_DIR = "pg_wal/rustybackup"
"""Where a restore stages the WAL its plan names, inside the data directory (base backups
leave pg_wal/ out): the restore_command takes a staged file with one hard link instead of
starting an interpreter per segment, and asks the repository for anything else. A link,
not a move: at the end of recovery PostgreSQL asks again for the segment it stopped in,
and a moved file would cost an interpreter start; the recovery_end_command removes the
directory (PostgreSQL writes new WAL, possibly into recycled old segments, only after
that). Timeline 1 has no history file, ever: PostgreSQL asks for one when it writes the
new timeline's history, and that answer needs no interpreter either."""


def _command() -> str:
    """How the server starts `rustybackup`: the installed command when it is this
    installation's shell script (it copies a spool file without Python and starts the
    interpreter without `site` otherwise, so a probe for a file the archive lacks is
    answered before click and the engine load: archive_get_fast.py), else this
    interpreter with -m (the same fast answers, after `site`)."""
    script = Path(sysconfig.get_path("scripts")) / "rustybackup"
    try:
        with open(script, "rb") as fh:
            ours = fh.read(10) == b"#!/bin/sh\n" and (script.parent / "rustybackup-py").is_file()
    except OSError:
        ours = False
    if ours and os.access(script, os.X_OK):
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m rustybackup"


def restore_command(repository: Path, database: str, *, staged: bool = False) -> str:
    """The restore_command that fetches from this repository with this installation
    (with `staged`, from STAGE_DIR first; the server runs it in the data directory)."""
    get = f"{_command()} --repo {shlex.quote(str(repository))} archive-get {shlex.quote(database)} %f %p"
    if not staged:
        return get
    staged_file = f"{STAGE_DIR}/%f"
    return (
        f'if [ -f {staged_file} ]; then ln -f {staged_file} "%p" 2>/dev/null || cp -f {staged_file} "%p"; '
        f"elif [ %f = 00000001.history ]; then exit 1; else exec {get}; fi"
    )


RECOVERY_END_COMMAND = f"rm -rf {STAGE_DIR}"
"""Run once by PostgreSQL when recovery ends (in the data directory): the staged WAL is no
longer needed, and its links must go before the server recycles the segments they share."""


def target_timeline(p: Plan, until: datetime | None) -> str:
    """recovery_target_timeline for plan `p`. To an instant: the timeline the plan found
    a path to `until` along, by number. PostgreSQL then reads that timeline's history
    (staged) instead of probing the archive for newer ones as it starts ('latest' asks
    for the next history file, which the archive lacks: one archive-get call per
    restore), and a timeline someone creates between the restore and the start cannot
    divert the recovery from the path whose WAL was checked and staged. To the end of
    the archive: 'latest', the newest timeline there when the server runs."""
    return "'latest'" if until is None else f"'{p.timeline}'"


WAL_FIRST = ".rustybackup-wal"
"""Where a restore puts the planned WAL first, at the top of the empty target: each file
from a set is read and checked against its block and whole-file digests (a spool file,
not sealed yet, is copied as it was pushed), so a damaged segment fails the restore
naming it before any data file is written. It moves to STAGE_DIR (or, for a set restored
by id, into pg_wal/) once the data directory is written."""


def _write(
    manager: BackupManager, db: DatabaseEntry, target: Path, p: Plan, until: datetime | None, by_id: bool
) -> None:
    last = p.data_sets[-1]
    first = target / WAL_FIRST
    first.mkdir(mode=0o700)
    archive.get_many(manager, db.name, p.wal, first)
    with manager.reading([s.id for s in p.data_sets]), writeback.Flusher(target):
        restore_set_files(manager.repository, last.id, p.base, target, None, archive=False)
    os.chmod(target, 0o700)
    lines = [
        "",
        f"# rustybackup restore of {db.name!r} from set {last.id}",
        f"restore_command = {_conf_quote(restore_command(manager.repository, db.name, staged=True))}",
        f"recovery_target_timeline = {target_timeline(p, until)}",
        f"recovery_end_command = {_conf_quote(RECOVERY_END_COMMAND)}",
    ]
    if until is not None:
        lines += [
            f"recovery_target_time = {_conf_quote(until.isoformat(sep=' '))}",
            "recovery_target_action = 'promote'",
        ]
    # The data directory holds restored links (pg_wal often is one): every file added
    # here goes through RestoreTarget, which never writes through a link.
    with RestoreTarget(target, f"restore of {db.name!r}") as tree:
        tree.write_file("backup_label", p.info.backup_label.encode())
        if p.info.tablespace_map:
            tree.write_file("tablespace_map", p.info.tablespace_map.encode())
        # make_dirs checked that no link lies on the way: the WAL lands inside.
        tree.make_dirs(["pg_wal/archive_status"])
        if by_id:
            for name in p.wal:
                os.rename(first / name, tree.path("pg_wal") / name)
            first.rmdir()
        else:
            os.rename(first, tree.path(STAGE_DIR))
            tree.write_file("recovery.signal", b"")
            tree.write_file("postgresql.auto.conf", ("\n".join(lines) + "\n").encode(), append=True)
    # Once, at the end; most of it was written back while the engine wrote (writeback.py).
    writeback.sync_tree(target)


def _discard(target: Path, created: bool) -> None:
    if created:
        shutil.rmtree(target, ignore_errors=True)
        return
    for entry in os.scandir(target):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def restore(
    manager: BackupManager,
    db: DatabaseEntry,
    target: Path,
    until: datetime | None,
    progress: object = None,
    *,
    set_id: str | None = None,
) -> list[BackupSet]:
    """Writes a data directory in `target` (absent or empty) that PostgreSQL starts on
    and recovers to `until` (None: to the end of the archive). With `set_id`, the set as
    it was taken: its files unchanged, its backup_label, and the WAL from its start to its
    stop LSN in pg_wal/, so the server's crash recovery makes it consistent there with no
    configuration added (RESTORE_TEST compares these files with the manifest)."""
    if until is not None and (until.tzinfo is None or until.utcoffset() is None):
        raise ConfigError("until must be a timezone-aware datetime")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"restore target {target} must be absent or an empty directory")
    p = plan(manager, db, until, set_id)
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    os.chmod(target, 0o700)
    try:
        _write(manager, db, target, p, until, set_id is not None)
    except BaseException:
        # The target was absent or empty: what is in it now is this restore's, and a
        # data directory without its WAL or recovery settings must not be started on.
        _discard(target, created)
        raise
    last = p.data_sets[-1]
    log.info(
        "restored %s into %s: set %s, %d WAL file(s) from %s to replay on timeline %d",
        db.name,
        target,
        last.id,
        len(p.wal),
        p.wal[0] if p.wal else "-",
        p.timeline,
    )
    return p.sets(manager.catalog)
