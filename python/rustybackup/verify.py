"""Verification of backups (DESIGN.md "Verification"): QUICK, STANDARD and FULL read the
repository's pieces and block maps in Rust (GIL released, parallel across files);
RESTORE_TEST restores a set's chain into a private sandbox and compares every file with
its manifest. Findings persist: FULL and RESTORE_TEST failures mark sets CORRUPT (so
`find_recovery_path` avoids them, as RMAN's VALIDATE does), a QUICK crosscheck marks a
set whose pieces are all gone EXPIRED, and every checked file gets a last-verified record
that budgeted runs use to check the least recently verified files first.
"""

from __future__ import annotations

import bisect
import logging
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from . import _core, keys, manifest, store
from .engine import BackupManager
from .enums import SetStatus, VerificationType
from .errors import CatalogError, EncryptionError, NoRecoveryPath, RustyBackupError, VerificationError
from .manifest import Manifest
from .restore_target import remove_restored
from .verify_records import PieceRow, SetRow, VerificationRecords, when
from .verify_report import (
    CorruptBlock,
    Coverage,
    Finding,
    ItemCoverage,
    MissingPiece,
    VerificationReport,
    VerifierStats,
)

log = logging.getLogger(__name__)

ALL = "all"
"""The target meaning every set of the repository (also `target=None`)."""


@dataclass(frozen=True)
class VerifyProgress:
    """Passed to `progress` callbacks: bytes read so far and files (sets, for
    RESTORE_TEST) done out of the total."""

    bytes_read: int
    done: int
    total: int
    bytes_total: int


@dataclass
class _Item:
    """One file to check: a piece or a set's block map."""

    id: str
    set_id: str
    kind: str
    path: Path
    size: int | None
    checksum: str | None
    algorithm: str | None
    block_count: int | None
    last: int | None = None  # last verification time (µs), None = never

    def row(self) -> tuple[str, str, str, Path, int | None, str | None, str | None, int | None]:
        return (self.id, self.set_id, self.kind, self.path, self.size, self.checksum, self.algorithm, self.block_count)


@dataclass
class _Run:
    """Accumulates one run's results."""

    findings: list[Finding] = field(default_factory=list)
    blocks: list[CorruptBlock] = field(default_factory=list)
    missing: list[MissingPiece] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    bytes_read: int = 0
    checked: int = 0
    bad_sets: set[str] = field(default_factory=set)
    # For the crosscheck: sets with a piece found missing, with a piece present, with pieces.
    missing_sets: set[str] = field(default_factory=set)
    present_sets: set[str] = field(default_factory=set)
    piece_sets: set[str] = field(default_factory=set)
    # The sets asked for (a set target: that set, not its ancestors), for RESTORE_TEST.
    requested: list[SetRow] = field(default_factory=list)
    # Parsed manifests by set id; None when unreadable (reported once, where it was read).
    manifests: dict[str, Manifest | None] = field(default_factory=dict)
    # Piece paths of each set looked up, None when the catalog does not know the set.
    piece_paths: dict[str, frozenset[str] | None] = field(default_factory=dict)


def _level(level: VerificationType | str) -> VerificationType:
    try:
        return VerificationType(str(level).lower().replace("-", "_"))
    except ValueError:
        names = ", ".join(v.value for v in VerificationType)
        raise VerificationError(f"unknown verification level {level!r}; valid levels: {names}") from None


class Verifier:
    """Verifies the sets of one repository; safe to share between threads."""

    def __init__(self, manager: BackupManager, *, sandbox_dir: str | Path | None = None) -> None:
        self.manager = manager
        self.repository = Path(manager.repository)
        self.records = VerificationRecords(manager.catalog)
        self.sandbox_dir = None if sandbox_dir is None else Path(sandbox_dir)
        # RESTORE_TEST of a postgresql set runs this SQL on the recovered server; a first
        # value of false or NULL (or an error) is a failure.
        self.pg_check_sql: str | None = None
        self._lock = threading.Lock()
        self._stats = VerifierStats()
        # Scheduler nodes on a shared catalog: given item ids, those this node may check
        # in the current round (the others are another node's); see verify_share.py.
        self.share: Callable[[Sequence[str]], list[str]] | None = None

    @property
    def stats(self) -> VerifierStats:
        """Totals over every verification this object ran."""
        with self._lock:
            return self._stats

    # --- targets ---------------------------------------------------------------------

    def _resolve(self, target: str | None, run: _Run) -> list[SetRow]:
        """The sets a target names, base of each chain first, without duplicates."""
        if target is None:
            return self.records.set_rows()
        row = self.records.set_row(target)
        if row is not None:
            run.requested = [row]
            return self._chain(row, run)
        if target in self.records.database_names():
            return self.records.set_rows(target)
        if target == ALL:
            return self.records.set_rows()
        raise VerificationError(f"nothing to verify: {target!r} is neither a backup set id nor a registered database")

    def _chain(self, row: SetRow, run: _Run) -> list[SetRow]:
        # An ARCHIVE_LOG set restores on its own (docs/FORMAT.md: its sources are itself).
        if row.backup_type == "archive_log" or row.parent_id is None:
            return [row]
        try:
            # The walk is Rust's (`_core.recovery_chain`), the one restores use.
            ids = self.records.catalog.chain_ids(row.id)
        except (RustyBackupError, TypeError, ValueError) as exc:
            run.findings.append(
                Finding(
                    "broken_chain", row.id, row.parent_id, f"{exc}; the chain of backup set {row.id} cannot be restored"
                )
            )
            run.bad_sets.add(row.id)
            return [row]
        rows = [r for r in map(self.records.set_row, ids) if r is not None]
        return rows if rows and rows[-1].id == row.id else [*rows, row]

    def _items(self, sets: Sequence[SetRow], run: _Run, level: VerificationType | None = None) -> list[_Item]:
        pieces = self.records.piece_rows([s.id for s in sets])
        items: list[_Item] = []
        # STANDARD and FULL read the manifest too: a set whose manifest does not parse or
        # disagrees with its catalog row, chain or block map cannot be restored.
        deep = level in (VerificationType.STANDARD, VerificationType.FULL)
        for s in sets:
            run.piece_paths[s.id] = frozenset(p.path for p in pieces.get(s.id, []) if p.path is not None)
        for s in sets:
            for problem in s.problems:
                run.findings.append(Finding("bad_catalog_row", s.id, s.id, problem))
            rows = pieces.get(s.id, [])
            m = self._check_manifest(s, rows, run, deep=deep)
            if not rows:
                run.findings.append(
                    Finding("bad_catalog_row", s.id, s.id, f"the catalog lists no pieces for backup set {s.id}")
                )
            for p in rows:
                item = self._piece_item(p, run)
                if item is not None:
                    items.append(item)
            blockmap = self._inside(s.blockmap)
            if blockmap is not None and deep:
                self._check_parent_map(s, blockmap, run)
            if blockmap is not None:
                # The Rust check compares the record count with the manifest's.
                records = None if m is None else m.blockmap.block_count
                items.append(
                    _Item(
                        f"{s.id}/blockmap", s.id, "blockmap", blockmap, None, s.blockmap_checksum, s.algorithm, records
                    )
                )
        last = self.records.last_verified(i.id for i in items)
        for i in items:
            rec = last.get(i.id)
            i.last = None if rec is None else rec[0]
        return items

    def _check_parent_map(self, s: SetRow, blockmap: Path, run: _Run) -> None:
        """The map its block map names as its parent (docs/FORMAT.md "Block map, version
        2"), which a restore resolves through, against the catalog: the parent set's map
        with its checksum. That reference sits in the map's trailer, outside the map's
        own checksum; checked here, STANDARD finds a changed one without reading the
        parent (FULL and a restore would fail on it)."""
        try:
            _, named = _core.blockmap_parent(blockmap)
        except (VerificationError, OSError):
            return  # a map that does not open: the item's own check reports why
        if named is None:
            return  # no parent runs: every record is in this map
        path, checksum = named
        parent = None if s.parent_id is None else self.records.set_row(s.parent_id)
        if s.parent_id is not None and parent is None:
            return  # a parent the catalog lacks: the chain's check names that row
        expected = None if parent is None else self._inside(parent.blockmap)
        if expected is not None and parent is not None and path == expected and checksum == parent.blockmap_checksum:
            return
        wanted = (
            "no parent"
            if parent is None
            else f"set {parent.id}'s map {parent.blockmap} with checksum {parent.blockmap_checksum}"
        )
        run.findings.append(
            Finding(
                "catalog_mismatch",
                s.id,
                f"{s.id}/blockmap",
                f"block map of set {s.id} names {path} with checksum {checksum} as its parent; the catalog "
                f"has {wanted}: the set cannot be restored",
            )
        )
        run.bad_sets.add(s.id)

    def _inside(self, rel: str | None) -> Path | None:
        """A catalog path inside the repository, or None (absent, absolute or escaping):
        a damaged row must never send the verifier to read files elsewhere."""
        if rel is None or rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in rel.split("/")):
            return None
        return self.repository / rel

    def _piece_item(self, p: PieceRow, run: _Run) -> _Item | None:
        path = self._inside(p.path)
        if path is None:
            run.findings.append(
                Finding(
                    "bad_catalog_row",
                    p.set_id,
                    p.id,
                    f"catalog row of piece {p.id} has no usable path ({p.path!r}); cannot check it",
                )
            )
            return None
        return _Item(p.id, p.set_id, "piece", path, p.size, p.checksum, p.algorithm, p.block_count)

    def _check_manifest(self, s: SetRow, pieces: Sequence[PieceRow], run: _Run, *, deep: bool) -> Manifest | None:
        """The manifest exists; with `deep`, it also parses, validates and agrees with the
        catalog and the chain. Returns it when it could be read."""
        path = self._inside(s.manifest)
        if path is None or s.manifest is None:
            if s.manifest is not None:
                run.findings.append(
                    Finding(
                        "bad_catalog_row",
                        s.id,
                        s.id,
                        f"catalog row of set {s.id}: manifest path {s.manifest!r} is outside the repository",
                    )
                )
            return None
        if not path.is_file():
            run.findings.append(
                Finding(
                    "missing_manifest",
                    s.id,
                    s.manifest,
                    f"manifest of backup set {s.id} is missing ({path}); the set cannot be restored or rebuilt",
                )
            )
            run.missing.append(MissingPiece(f"{s.id}/manifest.json", s.id, s.manifest))
            run.bad_sets.add(s.id)
            return None
        if not deep or not keys.can_read(self.repository):
            # Without the key of an encrypted repository the manifest is ciphertext: the
            # files are still checked (their checksums cover what is stored).
            return None
        try:
            m: Manifest | None = manifest.load(path, set_id=s.id)
        except (CatalogError, EncryptionError) as exc:
            # EncryptionError: a sealed manifest that does not open with the keys that
            # open the repository (its envelope was changed): this set's damage, which
            # the report names; the other sets are still checked.
            m = None
            run.findings.append(
                Finding("bad_manifest", s.id, s.manifest, f"backup set {s.id} cannot be restored: {exc}")
            )
            run.bad_sets.add(s.id)
        run.manifests[s.id] = m
        if m is not None:
            self._cross_check(s, m, pieces, run)
            self._check_sources(s, m, run)
            if self.manager.remote is not None and self.manager.remote.encrypted:
                from .catalog_record import check_against

                why = check_against(self.manager.remote, self.repository, m)
                if why is not None:
                    run.findings.append(Finding("bad_record", s.id, s.id, f"backup set {s.id}: {why}"))
                    run.bad_sets.add(s.id)
        return m

    def _cross_check(self, s: SetRow, m: Manifest, pieces: Sequence[PieceRow], run: _Run) -> None:
        """Catalog row against manifest. The manifest is the authority (the catalog is
        rebuilt from it), so a disagreement is reported, and the set is not marked."""
        where = manifest.display_name(self.repository / (s.manifest or ""))
        r = m.record
        pairs: list[tuple[str, object, object]] = [
            ("database", s.database, r.database),
            ("backup_type", s.backup_type, r.backup_type.value),
            ("algorithm", s.algorithm, r.algorithm),
            ("blockmap", s.blockmap, m.blockmap.path),
            ("blockmap_checksum", s.blockmap_checksum, m.blockmap.checksum),
            ("parent_id", s.parent_id, r.parent_id),
        ]
        by_id = {p.id: p for p in pieces}
        for i, mp in enumerate(m.pieces):
            row = by_id.pop(mp.id, None)
            if row is None:
                pairs.append((f"pieces[{i}]", "(no such piece)", mp.id))
                continue
            pairs += [
                # A path outside the repository is already a bad_catalog_row finding.
                (f"pieces[{i}].path", row.path if self._inside(row.path) else None, mp.path),
                (f"pieces[{i}].size", row.size, mp.size),
                (f"pieces[{i}].checksum", row.checksum, mp.checksum),
                (f"pieces[{i}].algorithm", row.algorithm, mp.algorithm),
                (f"pieces[{i}].block_count", row.block_count, mp.block_count),
            ]
        pairs += [(f"piece {extra}", extra, None) for extra in sorted(by_id)]
        for name, catalog, recorded in pairs:
            # A catalog value that did not parse is already a bad_catalog_row finding
            # (a NULL parent_id is a value: the set has no parent).
            if catalog is None and name != "parent_id":
                continue
            if catalog != recorded:
                run.findings.append(
                    Finding(
                        "catalog_mismatch",
                        s.id,
                        s.manifest or s.id,
                        f"set {s.id}: the catalog and {where} disagree on {name}: "
                        f"catalog {catalog!r}, manifest {recorded!r}",
                    )
                )

    def _check_sources(self, s: SetRow, m: Manifest, run: _Run) -> None:
        """Every piece the block map points into must be a registered set's piece, and
        the list must continue the parent's (docs/FORMAT.md), or restore fails."""
        where = manifest.display_name(self.repository / (s.manifest or ""))
        others = m.sources[:-1]

        def bad(kind: str, message: str) -> None:
            run.findings.append(
                Finding(kind, s.id, s.manifest or s.id, f"backup set {s.id} cannot be restored: {message}")
            )
            run.bad_sets.add(s.id)

        # A remote repository's cache holds pieces only while they are checked: there
        # the bucket says which are stored (one listing per set).
        remote = self.manager.remote
        stored = None if remote is None or not others else remote.object_sizes([x.set_id for x in others])
        for i, src in enumerate(others):
            rel = f"{store.SETS_DIR}/{src.set_id}/{src.piece}"
            known = self._piece_paths(src.set_id, run)
            if known is None:
                bad("missing_source", f"{where}: sources[{i}]: set {src.set_id} is not in the catalog")
            elif rel not in known:
                bad("missing_source", f"{where}: sources[{i}]: {rel} is not a piece of set {src.set_id}")
            elif not ((self.repository / rel).is_file() if stored is None else rel in stored):
                bad("missing_source", f"{where}: sources[{i}]: piece {rel} is missing")
        if m.record.parent_id is not None:
            parent = self._manifest(m.record.parent_id, run)
            if parent is not None and parent.sources != others:
                bad(
                    "bad_manifest",
                    f"{where}: sources: the list does not continue the sources of parent "
                    f"{m.record.parent_id} ({len(parent.sources)} there, {len(others)} here)",
                )

    def _piece_paths(self, set_id: str, run: _Run) -> frozenset[str] | None:
        if set_id not in run.piece_paths:
            if self.records.set_row(set_id) is None:
                run.piece_paths[set_id] = None
            else:
                rows = self.records.piece_rows([set_id]).get(set_id, [])
                run.piece_paths[set_id] = frozenset(p.path for p in rows if p.path is not None)
        return run.piece_paths[set_id]

    def _manifest(self, set_id: str, run: _Run) -> Manifest | None:
        """A set's parsed manifest, or None when it cannot be read (the set's own check
        reports why); cached for the run."""
        if set_id not in run.manifests:
            row = self.records.set_row(set_id)
            path = None if row is None else self._inside(row.manifest)
            try:
                run.manifests[set_id] = None if path is None else manifest.load(path, set_id=set_id)
            except (CatalogError, EncryptionError):
                run.manifests[set_id] = None
        return run.manifests[set_id]

    def _file_name(self, set_id: str, file_no: int, run: _Run) -> str:
        m = self._manifest(set_id, run)
        if m is None or not 0 <= file_no < len(m.files):
            return f"#{file_no} (not in the manifest of set {set_id})"
        return m.files[file_no].path

    # --- the public calls ------------------------------------------------------------

    def verify(
        self,
        target: str | None = None,
        level: VerificationType | str = VerificationType.STANDARD,
        budget: timedelta | None = None,
        progress: Callable[[VerifyProgress], object] | None = None,
    ) -> VerificationReport:
        """Verifies `target` (a set id: the set and its chain; a database name: its sets;
        ``"all"`` or None: every set) at `level`. With `budget`, the least recently
        verified files go first and the run stops inside the budget."""
        lv = _level(level)
        if budget is not None and (not isinstance(budget, timedelta) or budget <= timedelta(0)):
            raise VerificationError(f"budget must be a positive timedelta, not {budget!r}")
        started_at = self.manager.clock()
        t0 = time.monotonic()
        run = _Run()
        sets = self._resolve(target, run)
        # Shared locks: retention and delete refuse a set while it is being verified.
        # A set whose directory is gone has nothing to lock (and is reported missing).
        # A row whose id is not a set id names no directory (it is reported as a finding).
        readable = [s.id for s in sets if manifest.is_set_id(s.id) and (self.repository / "sets" / s.id).is_dir()]
        with self.manager.reading(readable):
            if lv is VerificationType.RESTORE_TEST:
                self._restore_tests(sets, run, budget, progress)
            else:
                self._read_files(sets, lv, run, budget, progress)
        marked = self._mark(sets, lv, run)
        report = VerificationReport(
            level=lv,
            target=target,
            started_at=started_at,
            duration=timedelta(seconds=time.monotonic() - t0),
            sets=tuple(s.id for s in sets),
            pieces_checked=run.checked,
            bytes_read=run.bytes_read,
            corrupt_blocks=tuple(run.blocks),
            missing_pieces=tuple(run.missing),
            findings=tuple(run.findings),
            outcomes=dict(run.outcomes),
            marked=marked,
        )
        with self._lock:
            self._stats = self._stats.add(report)
        if not report.ok:
            log.warning("verification of %s found %d problem(s)", target or ALL, len(report.findings))
        return report

    def coverage(self, target: str | None = None) -> Coverage:
        """When each piece and block map of `target` was last verified, least recent first."""
        run = _Run()
        sets = self._resolve(target, run)
        db = {s.id: s.database for s in sets}
        items = self._items(sets, run)
        recs = self.records.last_verified(i.id for i in items)
        out = []
        for i in items:
            rec = recs.get(i.id)
            out.append(
                ItemCoverage(
                    item=i.id,
                    set_id=i.set_id,
                    database=db.get(i.set_id),
                    kind=i.kind,
                    last_verified=when(rec[0]) if rec else None,
                    level=VerificationType(rec[1]) if rec else None,
                    outcome=rec[2] if rec else None,
                )
            )
        out.sort(
            key=lambda c: (c.last_verified is not None, c.last_verified.timestamp() if c.last_verified else 0.0, c.item)
        )
        return Coverage(tuple(out))

    # --- QUICK / STANDARD / FULL -----------------------------------------------------

    def _read_files(
        self,
        sets: Sequence[SetRow],
        level: VerificationType,
        run: _Run,
        budget: timedelta | None,
        progress: Callable[[VerifyProgress], object] | None,
    ) -> None:
        items = self._items(sets, run, level)
        if budget is not None:
            # Never-verified first, then oldest: repeated budgeted runs sweep everything.
            items.sort(key=lambda i: (i.last is not None, i.last or 0))
        total_bytes = sum(i.size or 0 for i in items)
        cb = None
        if progress is not None:
            report = progress

            def cb(bytes_read: int, done: int) -> None:
                report(VerifyProgress(bytes_read, done, len(items), total_bytes))

        seconds = None if budget is None else budget.total_seconds()
        with ExitStack() as fetched:
            if self.manager.remote is not None:
                # A remote repository's objects, made checkable here (remote_repo.py).
                from .remote_repo import verifying

                remote = verifying(self.manager.remote, self.manager.repo, items, level.value, seconds)
                items, seconds = fetched.enter_context(remote)
            if self.share is not None and seconds is not None and self.manager.remote is None:
                from .verify_share import verify_shared

                items, verdicts = verify_shared(items, level.value, seconds, self.share)
            else:
                block_keys = (
                    keys.verification_keys(self.repository, {i.set_id for i in items})
                    if level is VerificationType.FULL
                    else None
                )
                verdicts = _core.verify_files(
                    [i.row() for i in items], level.value, budget=seconds, progress=cb, keys=block_keys
                )
        now = self.manager.clock()
        records = []
        for item, v in zip(items, verdicts, strict=True):
            run.outcomes[v.outcome] += 1
            run.bytes_read += v.bytes_read
            if v.stopped is not None and v.outcome == "not_checked":
                continue
            run.checked += 1
            for kind, message in v.issues:
                if kind == "missing":
                    run.missing.append(
                        MissingPiece(item.id, item.set_id, item.path.relative_to(self.repository).as_posix())
                    )
                run.findings.append(Finding(kind, item.set_id, item.id, message))
            for file_no, block_index, offset, expected, actual in v.bad_blocks:
                run.blocks.append(
                    CorruptBlock(
                        piece=item.id,
                        file=self._file_name(item.set_id, file_no, run) if item.kind == "piece" else "",
                        block_index=block_index,
                        offset=offset,
                        expected=expected,
                        actual=actual,
                        set_id=item.set_id,
                    )
                )
            # A damaged catalog row is reported, but only damaged data makes a set CORRUPT.
            if any(kind != "bad_catalog_row" for kind, _ in v.issues):
                run.bad_sets.add(item.set_id)
            if v.stopped is None:
                records.append((item.id, item.set_id, item.kind, now, level, v.outcome, v.bytes_read))
        self.records.record(records)
        for i, v in zip(items, verdicts, strict=True):
            if i.kind != "piece":
                continue
            run.piece_sets.add(i.set_id)
            if v.outcome == "missing":
                run.missing_sets.add(i.set_id)
            elif v.outcome != "not_checked":
                run.present_sets.add(i.set_id)

    # --- RESTORE_TEST ----------------------------------------------------------------

    def _restore_tests(
        self,
        sets: Sequence[SetRow],
        run: _Run,
        budget: timedelta | None,
        progress: Callable[[VerifyProgress], object] | None,
    ) -> None:
        items = self._items(sets, run)
        by_set: dict[str, list[_Item]] = {}
        for i in items:
            by_set.setdefault(i.set_id, []).append(i)
        # Restoring a set reads its whole chain; restoring each ancestor as well would
        # make a chain of n sets cost n restores, so a set target restores that set only.
        order = list(run.requested or sets)
        if budget is not None:

            def oldest(s: SetRow) -> tuple[bool, int]:
                lasts = [i.last for i in by_set.get(s.id, [])]
                if not lasts or any(x is None for x in lasts):
                    return (False, 0)
                return (True, min(x for x in lasts if x is not None))

            order.sort(key=oldest)
        t0 = time.monotonic()
        rate: float | None = None
        size_of = {s.id: sum(i.size or 0 for i in by_set.get(s.id, [])) for s in order}
        for n, s in enumerate(order):
            if budget is not None:
                used = time.monotonic() - t0
                guess = size_of[s.id] / rate if rate else 0.0
                if used + guess >= budget.total_seconds():
                    run.outcomes["not_checked"] += 1
                    continue
            if progress is not None:
                progress(VerifyProgress(run.bytes_read, n, len(order), sum(size_of.values())))
            before = run.bytes_read
            t1 = time.monotonic()
            ok = self._restore_test(s, run)
            spent = time.monotonic() - t1
            if spent > 0 and run.bytes_read > before:
                rate = (run.bytes_read - before) / spent
            run.outcomes["ok" if ok else "damaged"] += 1
            run.checked += 1
            if ok:
                now = self.manager.clock()
                chain = self._chain(s, _Run())
                recs = [
                    (i.id, i.set_id, i.kind, now, VerificationType.RESTORE_TEST, "ok", 0)
                    for c in chain
                    for i in by_set.get(c.id, [])
                ]
                self.records.record(recs)
        if progress is not None:
            progress(VerifyProgress(run.bytes_read, len(order), len(order), sum(size_of.values())))

    def _restore_test(self, s: SetRow, run: _Run) -> bool:
        """Restores `s` (its chain) into a fresh private directory and compares it with
        the manifest; the directory is removed whatever happens."""
        if s.database is None:
            run.findings.append(Finding("bad_catalog_row", s.id, s.id, f"catalog row of set {s.id} names no database"))
            run.bad_sets.add(s.id)
            return False
        sandbox = Path(tempfile.mkdtemp(prefix="rustybackup-restore-test-", dir=self.sandbox_dir))
        try:
            return self._restore_and_compare(s, s.database, sandbox, run)
        finally:
            # A restored directory may be read-only (the set's mode): made writable first.
            remove_restored(sandbox)
            if sandbox.exists():
                log.error("could not remove restore-test sandbox %s", sandbox)

    def _restore_and_compare(self, s: SetRow, database: str, sandbox: Path, run: _Run) -> bool:
        target = sandbox / "restore"
        restored = [0]

        def count(done: int) -> None:
            restored[0] = done

        try:
            self.manager.restore(database, target, backup_set_id=s.id, progress=count)
        except NoRecoveryPath as exc:
            run.findings.append(Finding("not_restorable", s.id, s.id, f"restore test of set {s.id}: {exc}"))
            return False
        except (RustyBackupError, OSError, ValueError) as exc:
            run.findings.append(Finding("restore_failed", s.id, s.id, f"restore test of set {s.id} failed: {exc}"))
            run.bad_sets.add(s.id)
            run.bytes_read += restored[0]
            # A restore stops at the first bad block; name them all.
            self._mapped_blocks(s, run)
            return False
        run.bytes_read += restored[0]
        m = self._manifest(s.id, run)
        if m is None:
            run.findings.append(Finding("bad_manifest", s.id, s.id, f"manifest of set {s.id} is unreadable"))
            run.bad_sets.add(s.id)
            return False
        root = target / "archive" if s.backup_type == "archive_log" else target
        algorithm = m.record.algorithm
        blockmap = self._inside(s.blockmap)
        sources = m.sources
        ok = True
        for f in m.files:
            rel = f.path
            path = root / rel
            if not path.is_file():
                run.findings.append(
                    Finding("missing_file", s.id, rel, f"restore test of set {s.id}: {rel} was not restored")
                )
                ok = False
                continue
            check = _core.check_restored(
                path,
                algorithm,
                f.digest,
                blockmap=blockmap,
                first_block=f.first_block,
                block_count=f.block_count,
            )
            run.bytes_read += check.bytes_read
            if check.matches:
                continue
            ok = False
            run.findings.append(
                Finding(
                    "digest_mismatch",
                    s.id,
                    rel,
                    f"restore test of set {s.id}: {rel} restored with digest {check.digest}, "
                    f"the manifest records {f.digest}",
                )
            )
            for block_index, source, offset, expected, actual in check.bad_blocks:
                owner, piece = (
                    (sources[source].set_id, sources[source].piece) if 0 <= source < len(sources) else (s.id, "?")
                )
                run.blocks.append(CorruptBlock(f"{owner}/{piece}", rel, block_index, offset, expected, actual, owner))
                run.bad_sets.add(owner)
            for note in check.notes:
                run.findings.append(Finding("digest_mismatch", s.id, rel, f"restore test of set {s.id}: {note}"))
        if m.record.source_kind == "sqlite":
            for f in m.files:
                ok = _integrity_check(root / f.path, s.id, run) and ok
        if ok and m.postgresql is not None:
            # The files are right; now PostgreSQL itself must start on them and recover.
            from .postgres.sandbox import check_restored

            db = self.manager.catalog.get_database(database)
            try:
                problems = check_restored(
                    target, m.postgresql, self.repository, database, db.dsn, sql=self.pg_check_sql
                )
            except VerificationError as exc:
                # This machine cannot start the server (root, no binaries): not the set's fault.
                run.findings.append(Finding("not_checked", s.id, s.id, f"restore test of set {s.id}: {exc}"))
                problems = []
            for problem in problems:
                run.findings.append(Finding("server_check", s.id, s.id, f"restore test of set {s.id}: {problem}"))
                ok = False
        if not ok:
            run.bad_sets.add(s.id)
        return ok

    def _mapped_blocks(self, s: SetRow, run: _Run) -> None:
        """Every block of `s`'s block map re-read from its chain's pieces and compared
        with the block map's digest; each mismatch becomes a CorruptBlock of the set
        whose piece stores it."""
        m = self._manifest(s.id, run)
        blockmap = self._inside(s.blockmap)
        if m is None or blockmap is None:
            return
        sources = [(x.set_id, x.piece) for x in m.sources]
        files = sorted((f.first_block, f.block_count, f.path) for f in m.files)
        pieces = [self.repository / store.SETS_DIR / sid / piece for sid, piece in sources]
        try:
            faults = _core.check_mapped_blocks(blockmap, pieces)
        except (VerificationError, OSError) as exc:
            run.findings.append(Finding("unreadable", s.id, f"{s.id}/blockmap", str(exc)))
            return
        starts = [f[0] for f in files]
        for record, source, offset, expected, actual in faults:
            at = bisect.bisect_right(starts, record) - 1
            name, index = (files[at][2], record - files[at][0]) if at >= 0 else (f"record {record}", record)
            owner, piece = sources[source] if 0 <= source < len(sources) else (s.id, "?")
            run.blocks.append(CorruptBlock(f"{owner}/{piece}", name, index, offset, expected, actual, owner))
            run.bad_sets.add(owner)

    # --- persisting findings ---------------------------------------------------------

    def _mark(self, sets: Sequence[SetRow], level: VerificationType, run: _Run) -> dict[str, str]:
        marked: dict[str, str] = {}
        known = {s.id: s for s in sets}
        missing, present = run.missing_sets, run.present_sets
        for sid in sorted(run.piece_sets):
            s = known.get(sid)
            if s is None:
                continue
            if sid not in present and sid in missing and s.status != SetStatus.EXPIRED.value:
                # RMAN CROSSCHECK: every piece gone -> EXPIRED.
                marked[sid] = SetStatus.EXPIRED.value
            elif s.status == SetStatus.EXPIRED.value and sid in present and sid not in missing:
                # RMAN CROSSCHECK: an EXPIRED piece found again becomes AVAILABLE.
                marked[sid] = SetStatus.AVAILABLE.value
        if level in (VerificationType.FULL, VerificationType.RESTORE_TEST):
            for sid in sorted(run.bad_sets):
                s = known.get(sid) or self.records.set_row(sid)
                if s is None or marked.get(sid) == SetStatus.EXPIRED.value:
                    continue
                if s.status != SetStatus.CORRUPT.value:
                    marked[sid] = SetStatus.CORRUPT.value
        # One short write for every mark (the reads above took no write lock).
        for sid in self.records.set_statuses(marked):
            run.findings.append(
                Finding("bad_catalog_row", sid, sid, f"could not mark set {sid} {marked.pop(sid)}: it left the catalog")
            )
        return marked


def _integrity_check(path: Path, set_id: str, run: _Run) -> bool:
    """SQLite's own check of a restored database file (read-only, never journaled)."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        run.findings.append(
            Finding("integrity_check", set_id, path.name, f"restore test of set {set_id}: {path.name}: {exc}")
        )
        return False
    if rows != [("ok",)]:
        detail = "; ".join(str(r[0]) for r in rows[:5])
        run.findings.append(
            Finding(
                "integrity_check",
                set_id,
                path.name,
                f"restore test of set {set_id}: PRAGMA integrity_check on {path.name}: {detail}",
            )
        )
        return False
    return True


__all__ = [
    "ALL",
    "CorruptBlock",
    "Coverage",
    "Finding",
    "MissingPiece",
    "VerificationReport",
    "Verifier",
    "VerifierStats",
    "VerifyProgress",
]
