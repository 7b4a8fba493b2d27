"""Point-in-time restore of a SQLite database: a data set's copy, then the captured WAL
commits seen at or before ``until``, applied in order by the Rust core.

A data set records the WAL position its copy stands at (generation salts and commit
frame, `WalPosition`); each capture set the frames it copied and when it saw each commit
(`WalCapture`). The plan starts after the copy's frame in the copy's generation and walks
forward, set by set and generation by generation, refusing to cross a hole: frames that
were never captured, or a generation that does not provably continue the previous one.
When commits seen at or before ``until`` lie beyond such a hole the restore fails
(`NoRecoveryPath` naming what is missing) rather than stopping silently at an earlier
instant. Everything here is decided from manifests before anything is written.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import _core
from .catalog import BackupSet
from .errors import BackupError, NoRecoveryPath
from .manifest import Manifest
from .restore import restore_set_files
from .sqlite_wal import WalCapture, WalPosition
from .timestamps import from_us, to_us

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """Apply frames `after < index <= through` of capture set `set_id`."""

    set_id: str
    manifest: Manifest
    record: WalCapture
    after: int
    through: int


@dataclass(frozen=True)
class Plan:
    """The steps, and the time the last applied commit was seen (None: none applied)."""

    steps: tuple[Step, ...]
    reached_us: int | None


def _salt(s: tuple[int, int] | None) -> str:
    return "none" if s is None else f"{s[0]:08x}{s[1]:08x}"


def _when(us: int) -> str:
    return from_us(us).isoformat()


def plan(
    database: str,
    base_set: BackupSet,
    base: Manifest,
    logs: Sequence[tuple[BackupSet, Manifest]],
    until_us: int | None,
) -> Plan:
    """The frames to apply on `base` (a data set's manifest) to reach `until_us` (None:
    as far as the captures go). Raises NoRecoveryPath when commits seen by then cannot be
    reached without a hole."""
    # A set may hold several records (one per WAL generation it spans): each is a place
    # in the walk of its own.
    caps = sorted(
        ((s, m, rec) for s, m in logs if isinstance(m.wal, WalCapture) for rec in m.wal.chain),
        key=lambda c: (c[2].generation, c[2].first_frame, c[0].started_at, c[0].id),
    )

    def due(rec: WalCapture) -> bool:
        """Whether `rec` holds a commit seen at or before `until`."""
        return bool(rec.commits) and (until_us is None or rec.commits[0][1] <= until_us)

    def due_through(rec: WalCapture) -> tuple[int, int]:
        """The last commit frame of `rec` seen at or before `until`, and when (commits of
        one record may have been seen at several times: a capturer's spool)."""
        if until_us is None or rec.commits[-1][1] <= until_us:
            return rec.commits[-1]
        return max((c for c in rec.commits if c[1] <= until_us), key=lambda c: c[0])

    pos = base.wal if isinstance(base.wal, WalPosition) else None
    salt = None if pos is None else pos.salt
    frame = 0 if pos is None else pos.frame
    located = False  # whether the walk has reached the copy's place among the captures
    # Until when the walk knows every commit: the end of the newest set it stands on. A
    # hole after that may hold commits of any instant from then on.
    known_us = to_us(base_set.finished_at)
    steps: list[Step] = []
    reached: int | None = None
    for i, (s, m, rec) in enumerate(caps):
        if salt is not None and rec.salt != salt and rec.follows == (salt[0], salt[1], frame):
            # A new generation that provably builds on exactly where the walk stands.
            salt, frame, located = rec.salt, 0, True
        if salt is None or rec.salt != salt:
            if not located:
                continue  # a generation before the copy's
            why = rec.note or "it does not name what it builds on"
            hole = (
                f"WAL generation {rec.generation} (salts {_salt(rec.salt)}, set {s.id}) does not provably "
                f"continue generation salts {_salt(salt)} at frame {frame}: {why}"
            )
            _refuse_or_stop(database, hole, s, caps[i:], until_us, due, known_us)
            break
        located = True
        known_us = max(known_us, to_us(s.finished_at))
        if rec.empty or rec.last_frame <= frame:
            continue  # nothing new, or already in the copy
        if not due(rec):
            break  # seen after `until`: the point is reached
        through, seen = due_through(rec)
        if through <= frame:
            break  # the copy already holds every commit of this record seen by `until`
        if rec.first_frame > frame + 1:
            hole = (
                f"frames {frame + 1}..{rec.first_frame - 1} of WAL generation {rec.generation} "
                f"(salts {_salt(rec.salt)}) were never captured (the next capture, set {s.id}, starts at frame "
                f"{rec.first_frame})"
            )
            _refuse_or_stop(database, hole, s, caps[i:], until_us, due, known_us)
            break
        steps.append(Step(s.id, m, rec, after=frame, through=through))
        frame, reached = through, seen
        if through < rec.last_frame:
            break  # later commits of this record were seen after `until`
    if not located:
        after_base = [(s, rec) for s, _, rec in caps if due(rec) and s.started_at >= base_set.started_at]
        if after_base:
            s, rec = after_base[0]
            where = (
                "holds no WAL position"
                if pos is None or pos.salt is None
                else (f"stands at frame {pos.frame} of WAL generation {_salt(pos.salt)}, which no capture continues")
            )
            raise NoRecoveryPath(
                f"cannot roll {database} forward from {base_set.backup_type.value.upper()} {base_set.id}: its copy "
                f"{where}, so the commits captured in set {s.id} (generation {rec.generation}, seen "
                f"{_when(rec.commits[-1][1])}) cannot be applied on it"
            )
        later = [(s, rec) for s, _, rec in caps if s.started_at >= base_set.started_at and not rec.continuous]
        if later and until_us is not None and until_us > to_us(base_set.finished_at) and pos is not None:
            # The copy's generation went on where no capture copied it (a capturer killed
            # with frames in its spool, or a restart nobody vouched for): commits after the
            # copy may be lost, so no instant after it is exact.
            s, rec = later[0]
            raise NoRecoveryPath(
                f"cannot roll {database} forward to {_when(until_us)} from {base_set.backup_type.value.upper()} "
                f"{base_set.id}: its copy stands at frame {pos.frame} of WAL generation {_salt(pos.salt)}, and the "
                f"next capture (set {s.id}, generation {rec.generation}) does not provably continue it: "
                f"{rec.note or 'it does not name what it builds on'}"
            )
    return Plan(tuple(steps), reached)


def _refuse_or_stop(
    database: str,
    hole: str,
    found_by: BackupSet,
    rest: Sequence[tuple[BackupSet, Manifest, WalCapture]],
    until_us: int | None,
    due: Callable[[WalCapture], bool],
    known_us: int,
) -> None:
    """A hole, seen by the capture `found_by`: fatal when `until` lies after the end of
    the last set before it (`known_us`: commits after that may be in the hole) or asks
    for a commit beyond it; for "latest", the restore stops before it (as PostgreSQL
    stops at the end of its usable WAL) and says so."""
    beyond = [(s, rec) for s, _, rec in rest if due(rec)]
    if until_us is not None and (beyond or until_us > known_us or to_us(found_by.started_at) <= until_us):
        tail = (
            ""
            if not beyond
            else (f"; commits seen up to {_when(beyond[-1][1].commits[-1][1])} (set {beyond[-1][0].id}) lie beyond it")
        )
        raise NoRecoveryPath(
            f"cannot roll {database} forward to {_when(until_us)}: {hole}{tail}. "
            f"The newest point before it is the capture before set {found_by.id}; a backup taken after the hole "
            "reaches later points."
        )
    if beyond:
        log.warning("%s: the latest restorable point stops before a hole: %s", database, hole)


def apply(repository: Path, plan_: Plan, db_file: Path, progress: object = None) -> int:
    """Applies the plan's frames to the restored database file; returns frames applied."""
    if not plan_.steps:
        return 0
    applied = 0
    scratch = Path(tempfile.mkdtemp(prefix=".wal-", dir=db_file.parent))
    try:
        where: Path | None = None
        for n, step in enumerate(plan_.steps):
            if n == 0 or plan_.steps[n - 1].set_id != step.set_id:
                # A set's records are consecutive steps: its files are restored once.
                if where is not None:
                    shutil.rmtree(where)
                where = scratch / str(n)
                restore_set_files(repository, step.set_id, step.manifest, where, None, archive=True)
            assert where is not None
            rec = step.record
            assert rec.file is not None
            data = (where / rec.file).read_bytes()
            try:
                frames, _pages, _size = _core.wal_apply(
                    db_file,
                    data,
                    first_frame=rec.first_frame,
                    seed=rec.seed if rec.first_frame > 1 else None,
                    after=step.after,
                    through=step.through,
                )
            except ValueError as exc:
                raise BackupError(
                    f"WAL capture set {step.set_id} ({rec.file}) does not hold what its manifest says: {exc}"
                ) from exc
            applied += frames
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return applied


__all__ = ["Plan", "Step", "apply", "plan"]
