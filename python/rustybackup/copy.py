"""`rustybackup copy`: sets from one repository to another (local or remote, either way).

Each set is copied as its files (manifest, pieces, block map: the format is the same on
both sides), FULL-checked in the target before it is published there, and registered
only once it is published, exactly as a backup is. Parents go before children; a set the
target already has is skipped, so a copy that was cut short is simply run again.
Into a repository under other keys (or plain -> encrypted, or encrypted -> plain with
`decrypt`) each set is re-encrypted on its way instead (copy_reencrypt.py).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import _core, copy_keys, copy_reencrypt, keys, locks, manifest, store
from .catalog import BackupSet
from .enums import SetStatus
from .errors import BackupError, CatalogError, RustyBackupError

if TYPE_CHECKING:
    from .engine import BackupManager
    from .manifest import Manifest

log = logging.getLogger(__name__)

# The piece is read in full anyway (to copy it); re-hashing every block of the copy
# costs one more read of page-cached data and finds any damage, in the source or in transit.
PIECE_CHECK = "full"
BLOCKMAP_CHECK = "full"


class CopyError(BackupError):
    """A set could not be copied; the target holds nothing of it."""


@dataclass
class CopyReport:
    """What one copy did, per set: copied, skipped (already there) or failed (why)."""

    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    bytes_copied: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "copied": self.copied,
            "skipped": self.skipped,
            "failed": self.failed,
            "bytes_copied": self.bytes_copied,
        }


def in_copy_order(sets: Iterable[BackupSet]) -> list[BackupSet]:
    """`sets` with every parent before its children (oldest first otherwise)."""
    ordered = sorted(sets, key=lambda s: (s.started_at, s.id))
    by_id = {s.id: s for s in ordered}
    out: list[BackupSet] = []
    placed: set[str] = set()

    def place(s: BackupSet, seen: frozenset[str]) -> None:
        if s.id in placed:
            return
        parent = by_id.get(s.parent_id) if s.parent_id else None
        if parent is not None and parent.id not in seen:
            place(parent, seen | {s.id})
        placed.add(s.id)
        out.append(s)

    for s in ordered:
        place(s, frozenset())
    return out


def copy_sets(
    source: BackupManager,
    target: BackupManager,
    database: str | None = None,
    *,
    set_ids: Iterable[str] | None = None,
    progress: Callable[[str, int], object] | None = None,
    decrypt: bool = False,
    source_credentials: copy_reencrypt.SourceCredentials | None = None,
) -> CopyReport:
    """Copies the sets of `source` (those of `database`, or `set_ids`, or all) that
    `target` lacks. A set that fails (damaged in the source, a target that refuses it)
    is reported and its descendants are not tried; the others go on. A target under
    other keys gets every set re-encrypted into its keys (copy_reencrypt.py); an
    encrypted source goes into a plain target only with `decrypt`. Keys that do not
    open either side are an error before anything is written."""
    if database is not None:
        source.catalog.get_database(database)
    if set_ids is not None:
        chosen = [source.catalog.get_set(i) for i in set_ids]
    else:
        chosen = source.catalog.list_sets(database=database)
    report = CopyReport()
    if source_credentials is not None:
        copy_reencrypt.unlock_source(source.repository, source_credentials)
    rekey = copy_reencrypt.needs_rekey(source, target, decrypt=decrypt)
    if rekey:
        # Both sides' keys open now, or nothing is written.
        keys.reading_keys(source.repository)
        keys.keys_for(target.repository)
    else:
        copy_reencrypt.refuse_plaintext(source, target)
        # Same keys, ciphertext as it is: a fresh target gets the source's keys (copy_keys.py).
        copy_keys.adopt_keys(source, target)
    have = target.catalog.set_ids()
    for s in in_copy_order(chosen):
        if s.id in have:
            report.skipped.append(s.id)
            continue
        if s.parent_id is not None and s.parent_id in report.failed:
            report.failed[s.id] = f"its parent {s.parent_id} was not copied"
            continue
        if s.parent_id is not None and s.parent_id not in have and s.parent_id not in report.copied:
            report.failed[s.id] = f"its parent {s.parent_id} is neither in the target nor among the sets copied"
            continue
        if s.status is not SetStatus.AVAILABLE:
            report.failed[s.id] = f"it is {s.status.value} in the source"
            continue
        try:
            report.bytes_copied += (copy_reencrypt.copy_one_rekeyed if rekey else copy_one)(source, target, s)
        except RustyBackupError as exc:
            log.warning("copy of set %s failed: %s", s.id, exc)
            report.failed[s.id] = str(exc)
            continue
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            report.failed[s.id] = f"{exc.strerror or exc}{where}"
            continue
        report.copied.append(s.id)
        if progress is not None:
            progress(s.id, report.bytes_copied)
    return report


def copy_one(source: BackupManager, target: BackupManager, s: BackupSet) -> int:
    """Copies one set whose parent the target has. Returns the bytes copied."""
    with source.reading([s.id]):
        m = manifest.load(source.repository / s.manifest, set_id=s.id)
        files = set_files(m)
        # A remote source brings them into its cache first (a local one has them).
        if source.remote is not None:
            source.remote.fetch(source.repo, [s.id], with_pieces=True)
        src_dir = source.repo.set_dir(s.id)
        with staged_copy(target, s.id) as st:
            copied = 0
            for rel in files:
                copied += _copy_file(src_dir / rel, st.staging / rel)
            shutil.copyfile(src_dir / store.MANIFEST, st.staging / store.MANIFEST)
            with open(st.staging / store.MANIFEST, "rb") as fh:
                os.fsync(fh.fileno())
            st.publish(target, s, m, copy_keys.block_keys(source, s.id))
    log.info("copied set %s (%d bytes)", s.id, copied)
    return copied


def set_files(m: Manifest) -> list[str]:
    """The files of a set other than its manifest, relative to its directory; a path
    outside the set's own directory is refused (manifest.py already checks the form)."""
    prefix = f"{store.SETS_DIR}/{m.id}/"
    out = []
    for what, rel in [
        *((f"pieces[{i}].path", p.path) for i, p in enumerate(m.pieces)),
        ("blockmap.path", m.blockmap.path),
    ]:
        if not rel.startswith(prefix) or "/" in rel[len(prefix) :]:
            raise CatalogError(f"manifest of set {m.id}: {what} {rel!r} is not a file of sets/{m.id}/")
        out.append(rel[len(prefix) :])
    return out


@dataclass
class StagedCopy:
    """A copied set being written into the target's ``staging/<id>/`` (`staging`),
    published to `final` by `publish`."""

    staging: Path
    final: Path
    registered: bool = False

    def publish(
        self, target: BackupManager, s: BackupSet, m: Manifest, keys: dict[str, tuple[bytes, bytes]] | None
    ) -> None:
        """`publish_checked`, then the staging lock dropped and a remote target's cache
        trimmed; from the registration on nothing of the set is removed again."""
        publish_checked(target, s, m, self.final, keys)
        self.registered = True
        locks.drop_staging_lock_file(self.final)
        if target.remote is not None:
            target.remote.trim(target.repo, s.id)


@contextmanager
def staged_copy(target: BackupManager, set_id: str) -> Iterator[StagedCopy]:
    """The set's staging directory, locked, for a copy into `target` (a directory a
    killed copy left is taken over, so a rerun goes on); unless the set is registered
    when the block ends, its staging and final directories are removed. CopyError when
    the final directory exists already (a set the catalog does not list)."""
    final = target.repo.set_dir(set_id)
    if final.exists():
        raise CopyError(f"set {set_id}: {final} exists but the target's catalog does not list it; run cleanup")
    staging, lock = copy_reencrypt.open_staging(target, set_id)
    st = StagedCopy(staging, final)
    try:
        yield st
    finally:
        os.close(lock)
        if not st.registered:
            for d in (staging, final):
                shutil.rmtree(d, ignore_errors=True)


def publish_checked(
    target: BackupManager, s: BackupSet, m: Manifest, final: Path, keys: dict[str, tuple[bytes, bytes]] | None
) -> None:
    """A copied set's staging directory published, FULL-checked in place under `keys`,
    uploaded to a remote target and registered; CopyError if the catalog refuses it."""
    # Published first, checked in place: an incremental's block map names its
    # parent's as ../<parent>/blockmap, which exists only beside it in sets/.
    target.repo.publish(s.id)
    if target.remote is not None:
        # The block map names its parents' maps; a fresh cache may lack them.
        target.remote.fetch_chain(target.repo, m, with_pieces=False)
    check_set(final, m, keys)
    if target.remote is not None:
        target.remote.commit(final, s, target.upload_limits)
    target.catalog.register_manifests([final / store.MANIFEST])
    if s.id not in target.catalog.set_ids():
        raise CopyError(f"set {s.id} was copied but the target's catalog refused it (see the log)")


def check_set(
    directory: Path, m: Manifest, keys: dict[str, tuple[bytes, bytes]] | None = None, level: str = PIECE_CHECK
) -> None:
    """FULL check (or `level`) of every piece and the block map of the set in
    `directory`: CopyError names the first problem (the piece, the block, the offset).
    `keys` open an encrypted set's sealed blocks (set id -> block keys)."""
    rows: list[tuple[str, str, str, Path, int | None, str | None, str | None, int | None]] = []
    for p in m.pieces:
        name = p.path.rsplit("/", 1)[-1]
        rows.append((p.id, m.id, "piece", directory / name, p.size, p.checksum, p.algorithm, p.block_count))
    bm = m.blockmap.path.rsplit("/", 1)[-1]
    rows.append(
        (
            f"{m.id}/blockmap",
            m.id,
            "blockmap",
            directory / bm,
            None,
            m.blockmap.checksum,
            m.record.algorithm,
            m.blockmap.block_count,
        )
    )
    for row, verdict in zip(rows, _core.verify_files(rows, level, keys=keys), strict=True):
        if verdict.outcome == "ok":
            continue
        detail = [msg for _, msg in verdict.issues]
        for file_no, block, offset, expected, actual in verdict.bad_blocks[:3]:
            detail.append(f"file #{file_no} block {block} at piece offset {offset}: {actual} != {expected}")
        raise CopyError(
            f"set {m.id}: {row[2]} {row[0]} failed its check while being copied ({verdict.outcome}: "
            f"{'; '.join(detail) or 'no detail'}); nothing of it was published in the target"
        )


def _copy_file(src: Path, dst: Path) -> int:
    """Copies one file durably (streamed by the kernel, never whole in memory)."""
    with open(src, "rb") as fi, open(dst, "xb") as fo:
        size = os.fstat(fi.fileno()).st_size
        sent = 0
        while sent < size:
            n = os.copy_file_range(fi.fileno(), fo.fileno(), size - sent) if hasattr(os, "copy_file_range") else 0
            if n == 0:
                break
            sent += n
        if sent < size:
            fi.seek(sent)
            shutil.copyfileobj(fi, fo, 1 << 20)
        fo.flush()
        os.fsync(fo.fileno())
        return os.fstat(fo.fileno()).st_size


__all__ = ["CopyError", "CopyReport", "copy_sets", "in_copy_order"]
