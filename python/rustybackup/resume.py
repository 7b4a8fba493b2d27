"""Resumable backups (issue 19; RMAN's restartable backups).

A file-tree backup journals the files its piece holds in full (the Rust engine's
checkpoint, docs/FORMAT.md "Checkpoint"). When it stops before it is registered (its
``max_duration``, a cancel, a crash, a source that failed), its staging directory stays,
marked resumable by ``resume.json`` (this module's), instead of being swept. The next
backup of the same database with the same type, parent and settings takes that
directory over, keeping its set id (an encrypted set's blocks are bound to it), and the
engine adopts the unchanged files' staged bytes instead of reading them again. A stale
resumable staging (another type or parent, other settings, older than `MAX_AGE`, nothing
finished) is discarded by the next backup of its database, with a log line saying why.

A PostgreSQL base backup resumes too, as pgBackRest's does: the next run is a new base
backup (its own ``pg_backup_start``/``pg_backup_stop``, start and stop LSN), and the
engine adopts every file the cut run finished that is still as it was read, wherever
it lay (``engine::resume_move``: never ``global/pg_control``, nor a file whose mtime
fell within a timestamp tick of its read); WAL replay from the new start LSN repairs
everything written since, as for any file of a non-exclusive base backup. The pass
lists those files first (`base_backup_order`).

A SQLite snapshot does not resume: it is one read transaction, and a new transaction's
snapshot is another state of the database, not one the cut copy's pages belong to.
Archive-log sets are small.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from . import _core, locks, store
from .catalog import BackupSet, DatabaseEntry
from .enums import BackupType
from .errors import CatalogError
from .timestamps import from_us

if TYPE_CHECKING:
    from .sources import LStat

log = logging.getLogger(__name__)

# The engine's journal in a staging directory (its map log is ``checkpoint.maplog``).
CHECKPOINT = "checkpoint"
MARKER = "resume.json"
MARKER_FORMAT = 1
# Source bytes between two checkpoint commits (each fsyncs the piece): what a crash costs
# in reading again at most, beyond the file being read.
CHECKPOINT_EVERY = 64 << 20
# A cut backup older than this is not resumed: its files have likely all changed, and its
# staged bytes are disk space nobody sees.
MAX_AGE = timedelta(days=3)


@dataclass(frozen=True)
class ResumeKey:
    """What a resumed backup must share with the cut one (the engine also checks the
    block size, algorithm, compression and the parent map's checksum itself)."""

    database: str
    backup_type: str
    parent_id: str | None
    algorithm: str
    block_size: int
    compression: str | None
    source_path: str

    @classmethod
    def of(cls, db: DatabaseEntry, btype: BackupType, parent: BackupSet | None) -> ResumeKey:
        return cls(
            database=db.name,
            backup_type=btype.value,
            parent_id=None if parent is None else parent.id,
            algorithm=db.algorithm,
            block_size=db.block_size,
            compression=db.compression,
            source_path=db.path,
        )


@dataclass(frozen=True)
class Marker:
    """``staging/<id>/resume.json``: this staging directory may be resumed."""

    key: ResumeKey
    set_id: str
    started_at_us: int


@dataclass(frozen=True)
class Claim:
    """A cut backup's staging directory taken over: its set id and start, and the
    descriptor holding its staging lock (the caller closes it)."""

    set_id: str
    started_at_us: int
    lock: int


@dataclass(frozen=True)
class Resumed:
    """What a backup took over from a cut one (the engine's count)."""

    set_id: str
    files: int
    bytes: int
    note: str | None

    def describe(self) -> str:
        return f"resumed from {self.files} staged file(s) / {self.bytes} bytes"


def mark(staging: Path, key: ResumeKey, set_id: str, started_at_us: int) -> None:
    """Marks `staging` resumable for backups with `key`."""
    doc = {"format": MARKER_FORMAT, "key": asdict(key), "set_id": set_id, "started_at_us": started_at_us}
    store.atomic_write_json(staging / MARKER, doc)


def unmark(staging: Path) -> None:
    """The pass finished: nothing is left to resume (the marker is never published)."""
    (staging / MARKER).unlink(missing_ok=True)


def read_marker(directory: Path) -> Marker | None:
    """The marker of `directory`, or None when it has none or one this build cannot
    read (such a directory is swept like any other leftover)."""
    path = directory / MARKER
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") != MARKER_FORMAT:
            raise ValueError(f"format {doc.get('format')!r}")
        key = _key(doc["key"])
        set_id, started = doc["set_id"], doc["started_at_us"]
        store.check_set_id(set_id)
        _from_us(started)
        marker = Marker(key, set_id, started)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError, AttributeError, CatalogError) as exc:
        # Damage or another build's marker: the cut run is not resumed (and is swept with
        # the other leftovers); it never stops the backups after it.
        log.warning("%s: unreadable resume marker (%s); the directory is not resumed", path, exc)
        return None
    if marker.set_id != directory.name:
        log.warning("%s: marks set %s, not its own directory; the directory is not resumed", path, marker.set_id)
        return None
    return marker


# ResumeKey's fields and the JSON types each may have in a marker.
_KEY_TYPES: dict[str, tuple[type, ...]] = {
    "database": (str,),
    "backup_type": (str,),
    "parent_id": (str, type(None)),
    "algorithm": (str,),
    "block_size": (int,),
    "compression": (str, type(None)),
    "source_path": (str,),
}


def _key(value: object) -> ResumeKey:
    """A marker's ``key``, each field of its type (``bool`` is no ``int`` here)."""
    if not isinstance(value, dict) or set(value) != set(_KEY_TYPES):
        raise ValueError(f"key: not an object with the fields {', '.join(_KEY_TYPES)}")
    for name, types in _KEY_TYPES.items():
        if type(value[name]) not in types:
            raise ValueError(f"key.{name}: {value[name]!r:.60}")
    return ResumeKey(**value)


def staged(directory: Path) -> tuple[int, int]:
    """(files, bytes) a cut pass left finished in `directory` ((0, 0) without a readable
    checkpoint)."""
    try:
        files, size, _ = _core.checkpoint_summary(directory / CHECKPOINT)
    except (OSError, ValueError) as exc:
        log.debug("%s: no usable checkpoint: %s", directory, exc)
        return 0, 0
    except Exception as exc:  # BackupError: a damaged header
        log.warning("%s: damaged checkpoint: %s", directory, exc)
        return 0, 0
    return files, size


def keep_for_resume(staging: Path, now: datetime) -> bool:
    """The sweep's question: whether an unlocked staging directory is a cut backup
    waiting for its next run (marked, young enough, with finished files)."""
    marker = read_marker(staging)
    if marker is None:
        return False
    age = now - _from_us(marker.started_at_us)
    if age > MAX_AGE:
        log.info("resumable staging %s is older than %s: discarded", staging, MAX_AGE)
        return False
    return True


def keep_cut(staging: Path, database: str, why: BaseException) -> str | None:
    """A backup stopped before it was registered: whether its staging stays for the next
    run (it is marked and finished at least one file); says so in the log and returns
    what stays, for the error the caller raises (None: nothing stays)."""
    if read_marker(staging) is None:
        return None
    files, size = staged(staging)
    if files == 0:
        return None
    log.warning(
        "backup %s of %s stopped (%s: %s): %d finished file(s) (%d bytes) stay staged; "
        "the next backup of %s with the same type and parent resumes from them",
        staging.name,
        database,
        type(why).__name__,
        why,
        files,
        size,
        database,
    )
    return f"{files} finished file(s) ({size} bytes) stay staged for the next run to resume"


def claim(
    root: Path, key: ResumeKey, known_sets: Collection[str], now: datetime, *, needs: Collection[str] = ()
) -> Claim | None:
    """Takes over the newest resumable staging directory of `key.database` that matches
    `key` and holds the files `needs` names (an encrypted set's staged set key); discards
    (with a log line saying why) every other one of that database that no live backup
    holds. None when there is none."""
    top = root / store.STAGING_DIR
    if top.is_symlink() or not top.is_dir():
        return None
    found: Claim | None = None
    for d in sorted(top.iterdir(), reverse=True):  # set ids sort by start: newest first
        if d.is_symlink() or not d.is_dir():
            continue
        marker = read_marker(d)
        if marker is None or marker.key.database != key.database:
            continue
        fd = locks.take_abandoned_staging(d)
        if fd is None:
            continue  # a live backup holds it
        why = "a newer cut backup of the same job was resumed" if found else _mismatch(marker, key, known_sets, now)
        if why is None:
            files, _ = staged(d)
            if files == 0:
                why = "it finished no file before it stopped"
            missing = [n for n in needs if not (d / n).is_file()]
            if missing:
                why = f"it holds no {', '.join(missing)} (its staged blocks could not be sealed alike)"
        if why is None:
            found = Claim(marker.set_id, marker.started_at_us, fd)
            continue
        log.info("discarding the resumable staging %s of %s: %s", d.name, key.database, why)
        try:
            shutil.rmtree(d, ignore_errors=True)
        finally:
            os.close(fd)
    return found


def _mismatch(marker: Marker, key: ResumeKey, known_sets: Collection[str], now: datetime) -> str | None:
    """Why `marker` cannot be resumed by a backup with `key`; None when it can."""
    old = marker.key
    if old.parent_id is not None and old.parent_id not in known_sets:
        return f"its parent set {old.parent_id} is gone"
    if old.backup_type != key.backup_type:
        return f"it was a {old.backup_type.upper()} backup, this one is a {key.backup_type.upper()}"
    if old.parent_id != key.parent_id:
        return f"its parent is {old.parent_id or 'none'}, this backup's is {key.parent_id or 'none'}"
    for field in ("algorithm", "block_size", "compression", "source_path"):
        was, now_is = getattr(old, field), getattr(key, field)
        if was != now_is:
            return f"its {field} was {was!r}, the database's is now {now_is!r}"
    age = now - _from_us(marker.started_at_us)
    if age > MAX_AGE:
        return f"it started {age} ago, more than {MAX_AGE}"
    return None


def _from_us(us: int) -> datetime:
    return from_us(us, "resume marker start")


def base_backup_order(files: list[tuple[str, str | Path, LStat]], staging: Path) -> list[tuple[str, str | Path, LStat]]:
    """A base backup's files in the order its pass reads them: those a cut run left in
    `staging` that the engine can adopt first, in the cut run's order (so it moves them
    without reading), then the rest in their own order."""
    journal = staging / CHECKPOINT
    if not journal.is_file():
        return files
    try:
        first = _core.checkpoint_adoptable(journal)
    except (OSError, ValueError) as exc:
        log.warning("%s: cut base backup not adopted (%s)", journal, exc)
        return files
    except Exception as exc:  # BackupError: a damaged header; the engine starts over
        log.warning("%s: damaged checkpoint: %s", journal, exc)
        return files
    rank = {str(p): i for i, p in enumerate(first)}
    head = sorted((f for f in files if str(f[1]) in rank), key=lambda f: rank[str(f[1])])
    return head + [f for f in files if str(f[1]) not in rank]


def finished(staging: Path, set_id: str, database: str, outcome: tuple[int, int, str | None]) -> Resumed | None:
    """A resumable pass finished: the marker goes, and what it adopted (the engine's
    `resumed`, (files, bytes, note)) is logged and returned (None: nothing adopted)."""
    unmark(staging)
    files, size, note = outcome
    if note is not None:
        log.info("backup %s of %s: %s", set_id, database, note)
    if files == 0:
        return None
    done = Resumed(set_id, files, size, note)
    log.info("backup %s of %s %s", set_id, database, done.describe())
    return done


__all__ = [
    "CHECKPOINT",
    "CHECKPOINT_EVERY",
    "MAX_AGE",
    "Claim",
    "ResumeKey",
    "Resumed",
    "base_backup_order",
    "claim",
    "finished",
    "mark",
]
