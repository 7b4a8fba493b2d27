"""Cut uploads to a remote repository resumed (issue 19).

A backup whose pass finished but whose upload failed (the server went away, the
retries ran out) keeps its complete staged set in the cache's staging directory, marked
by ``.upload-pending.json`` (a dot file: ``upload_set`` never sends it). The next backup of
that database first checks the kept set (the parent still in the bucket, every piece and
the block map against the manifest's checksums), sends only the objects the bucket lacks
or holds at another size, the manifest last, and registers it; a kept set that fails a
check is discarded with a log line saying why. The source is not read again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from . import keys, locks, manifest, store
from .catalog import BackupSet, set_from_manifest
from .errors import RustyBackupError

if TYPE_CHECKING:
    from .engine import BackupManager

log = logging.getLogger(__name__)

MARKER = ".upload-pending.json"
MARKER_FORMAT = 1
# Where the objects still to send are linked for one ``upload_set`` call (a dot name:
# never part of the set itself).
RESEND_DIR = ".resend"


def keep(staging: Path, database: str, set_id: str, why: BaseException) -> str:
    """The upload of a finished staged set failed: marks it for the next backup of
    `database` and says so in the log; returns what stays, for the caller's error."""
    store.atomic_write_json(staging / MARKER, {"format": MARKER_FORMAT, "database": database, "set_id": set_id})
    log.warning(
        "upload of backup %s of %s failed (%s: %s): the finished set stays staged; "
        "the next backup of %s uploads it first",
        set_id,
        database,
        type(why).__name__,
        why,
        database,
    )
    return "the finished set stays staged; the next backup of this database uploads it first"


def pending(staging: Path) -> str | None:
    """The database whose upload `staging` waits for, or None when it waits for none."""
    try:
        doc = json.loads((staging / MARKER).read_text(encoding="utf-8"))
        if doc.get("format") != MARKER_FORMAT or doc.get("set_id") != staging.name:
            raise ValueError(f"format {doc.get('format')!r}, set {doc.get('set_id')!r}")
        return str(doc["database"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("%s: unreadable upload marker (%s); the directory is not uploaded", staging / MARKER, exc)
        return None


def finish(engine: BackupManager, database: str) -> list[BackupSet]:
    """Uploads and registers every kept set of `database` no live backup holds (oldest
    first, so a kept parent goes before its child); discards those that fail a check.
    Returns the sets registered."""
    remote = engine.remote
    top = engine.repository / store.STAGING_DIR
    if remote is None or top.is_symlink() or not top.is_dir():
        return []
    done: list[BackupSet] = []
    for d in sorted(top.iterdir()):  # set ids sort by start: oldest first
        if d.is_symlink() or not d.is_dir() or pending(d) != database:
            continue
        fd = locks.take_abandoned_staging(d)
        if fd is None:
            continue  # a live backup holds it
        try:
            why = _unusable(engine, d)
            if why is not None:
                log.info("discarding the staged set %s of %s, kept after its upload failed: %s", d.name, database, why)
                shutil.rmtree(d, ignore_errors=True)
                continue
            done.append(_send(engine, d))
        finally:
            os.close(fd)
    return done


def _unusable(engine: BackupManager, staging: Path) -> str | None:
    """Why the kept set in `staging` cannot be sent; None when it can."""
    from .copy import check_set  # copy.py imports the engine's neighbours: load it late

    assert engine.remote is not None
    if staging.name in engine.catalog.set_ids():
        # Its manifest did reach the bucket (the reply was lost) and the sync found it.
        return "the set is already registered from the bucket"
    try:
        m = manifest.load(staging / store.MANIFEST, set_id=staging.name, where=str(staging / store.MANIFEST))
    except (RustyBackupError, OSError, ValueError) as exc:
        return f"its manifest is unreadable ({exc})"
    parent = m.record.parent_id
    if parent is not None and engine.remote.store.head(f"{store.SETS_DIR}/{parent}/{store.MANIFEST}") is None:
        return f"its parent set {parent} is gone from the bucket"
    try:
        if keys.can_read(engine.repository):
            # An encrypted set's sealed blocks are opened with its keys (its envelope here).
            found = keys.set_block_keys(engine.repository, staging.name, staging / store.MANIFEST)
            check_set(staging, m, None if found is None else {staging.name: found})
        else:
            # A write-only host opens no block: the checksums of the stored bytes.
            check_set(staging, m, level="standard")
    except RustyBackupError as exc:
        return f"a staged file failed its checksum ({exc})"
    return None


def _send(engine: BackupManager, staging: Path) -> BackupSet:
    """Sends what the bucket lacks of the kept set in `staging`, manifest last, then
    publishes and registers it."""
    remote = engine.remote
    assert remote is not None
    set_id = staging.name
    prefix = f"{store.SETS_DIR}/{set_id}"
    there = {meta.key: meta.size for meta in remote.store.list(prefix)}
    resend = staging / RESEND_DIR
    shutil.rmtree(resend, ignore_errors=True)
    skipped = 0
    for dirpath, dirnames, filenames in os.walk(staging):
        dirnames[:] = [n for n in dirnames if not n.startswith(".")]
        for name in filenames:
            if name.startswith("."):
                continue
            src = Path(dirpath) / name
            rel = src.relative_to(staging)
            if rel.as_posix() != store.MANIFEST and there.get(f"{prefix}/{rel.as_posix()}") == src.stat().st_size:
                skipped += 1
                continue
            (resend / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(src, resend / rel)
    remote.commit(resend, _row(staging), engine.upload_limits)
    shutil.rmtree(resend, ignore_errors=True)
    (staging / MARKER).unlink()
    m = manifest.load(staging / store.MANIFEST, set_id=set_id)
    row = set_from_manifest(m)
    engine.repo.publish(set_id)
    engine.catalog.register_set(*row)
    locks.drop_staging_lock_file(engine.repo.set_dir(set_id))
    remote.trim(engine.repo, set_id)
    log.info(
        "backup %s of %s: its kept set uploaded (%d object(s) already there) and registered",
        set_id,
        row[0].database,
        skipped,
    )
    return row[0]


def _row(staging: Path) -> BackupSet:
    return set_from_manifest(manifest.load(staging / store.MANIFEST, set_id=staging.name))[0]


__all__ = ["MARKER", "finish", "keep", "pending"]
