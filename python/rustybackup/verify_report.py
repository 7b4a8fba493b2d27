"""The records a verification returns: findings, corrupt blocks, missing pieces, the
report of one run, cumulative statistics and repository coverage."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .enums import VerificationType
from .verify_records import LEVEL_DEPTH


@dataclass(frozen=True)
class CorruptBlock:
    """One block whose bytes no longer match its recorded digest.

    `set_id` is the set whose piece stores the block (which, for a chain, may be an
    ancestor of the set that was asked for); `expected`/`actual` are hex digests, or
    `actual` says why the block could not be decoded.
    """

    piece: str
    file: str
    block_index: int
    offset: int
    expected: str
    actual: str
    set_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "piece": self.piece,
            "file": self.file,
            "block_index": self.block_index,
            "offset": self.offset,
            "expected": self.expected,
            "actual": self.actual,
            "set_id": self.set_id,
        }


@dataclass(frozen=True)
class MissingPiece:
    """A piece (or block map, or manifest) the catalog lists but the repository lacks."""

    piece: str
    set_id: str
    path: str

    def to_json(self) -> dict[str, Any]:
        return {"piece": self.piece, "set_id": self.set_id, "path": self.path}


@dataclass(frozen=True)
class Finding:
    """One problem, named by kind (``bad_checksum``, ``missing``, ``digest_mismatch``,
    ``integrity_check``, ``bad_catalog_row``; for manifests ``missing_manifest``,
    ``bad_manifest`` (does not parse or validate), ``missing_source`` (a piece its block
    map points into is not a registered set's) and ``catalog_mismatch`` (the catalog row
    disagrees with the manifest); ...), the set it belongs to, the thing it is about (a
    piece id, a file, a catalog row) and a message saying what and where."""

    kind: str
    set_id: str
    subject: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "set_id": self.set_id, "subject": self.subject, "message": self.message}


@dataclass(frozen=True)
class VerificationReport:
    """What one `Verifier.verify` call checked and found.

    `ok` is True when nothing checked was missing or damaged (files the budget left out
    are counted in `outcomes["not_checked"]`, not as failures; `complete` says whether
    everything targeted was checked). `outcomes` counts files (pieces and block maps;
    sets for RESTORE_TEST) per outcome: ok, missing, damaged, not_checked.
    """

    level: VerificationType
    target: str | None
    started_at: datetime
    duration: timedelta
    sets: tuple[str, ...]
    pieces_checked: int
    bytes_read: int
    corrupt_blocks: tuple[CorruptBlock, ...]
    missing_pieces: tuple[MissingPiece, ...]
    findings: tuple[Finding, ...]
    outcomes: dict[str, int]
    marked: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.findings and not self.corrupt_blocks and not self.missing_pieces

    @property
    def complete(self) -> bool:
        return self.outcomes.get("not_checked", 0) == 0

    @property
    def throughput(self) -> float:
        """Bytes read per second of wall time."""
        secs = self.duration.total_seconds()
        return self.bytes_read / secs if secs > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "complete": self.complete,
            "level": self.level.value,
            "target": self.target,
            "started_at": self.started_at.isoformat(),
            "duration_s": self.duration.total_seconds(),
            "sets": list(self.sets),
            "pieces_checked": self.pieces_checked,
            "bytes_read": self.bytes_read,
            "throughput_bps": self.throughput,
            "outcomes": dict(self.outcomes),
            "corrupt_blocks": [b.to_json() for b in self.corrupt_blocks],
            "missing_pieces": [m.to_json() for m in self.missing_pieces],
            "findings": [f.to_json() for f in self.findings],
            "marked": dict(self.marked),
        }


@dataclass(frozen=True)
class VerifierStats:
    """Totals over every `verify` call of one `Verifier`."""

    runs: int = 0
    pieces_checked: int = 0
    bytes_read: int = 0
    duration: timedelta = timedelta(0)
    corrupt_blocks: int = 0
    missing_pieces: int = 0
    findings: int = 0
    failed_runs: int = 0

    @property
    def throughput(self) -> float:
        secs = self.duration.total_seconds()
        return self.bytes_read / secs if secs > 0 else 0.0

    def add(self, r: VerificationReport) -> VerifierStats:
        return VerifierStats(
            runs=self.runs + 1,
            pieces_checked=self.pieces_checked + r.pieces_checked,
            bytes_read=self.bytes_read + r.bytes_read,
            duration=self.duration + r.duration,
            corrupt_blocks=self.corrupt_blocks + len(r.corrupt_blocks),
            missing_pieces=self.missing_pieces + len(r.missing_pieces),
            findings=self.findings + len(r.findings),
            failed_runs=self.failed_runs + (0 if r.ok else 1),
        )


@dataclass(frozen=True)
class ItemCoverage:
    """When one piece or block map was last verified (None: never)."""

    item: str
    set_id: str
    database: str | None
    kind: str
    last_verified: datetime | None
    level: VerificationType | None
    outcome: str | None


@dataclass(frozen=True)
class Coverage:
    """Every piece and block map of the repository, least recently verified first."""

    items: tuple[ItemCoverage, ...]

    def not_verified_since(self, since: datetime, level: VerificationType | str | None = None) -> list[ItemCoverage]:
        """Items with no verification at `since` or later (at `level` or deeper)."""
        depth = None if level is None else LEVEL_DEPTH[VerificationType(level)]
        out = []
        for c in self.items:
            fresh = c.last_verified is not None and c.last_verified >= since
            if fresh and depth is not None and (c.level is None or LEVEL_DEPTH[c.level] < depth):
                fresh = False
            if not fresh:
                out.append(c)
        return out

    @property
    def never_verified(self) -> list[ItemCoverage]:
        return [c for c in self.items if c.last_verified is None]

    @property
    def oldest(self) -> datetime | None:
        """The least recent verification time, or None when something was never verified."""
        if not self.items or self.never_verified:
            return None
        return min(c.last_verified for c in self.items if c.last_verified is not None)

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {
                "item": c.item,
                "set_id": c.set_id,
                "database": c.database,
                "kind": c.kind,
                "last_verified": None if c.last_verified is None else c.last_verified.isoformat(),
                "level": None if c.level is None else c.level.value,
                "outcome": c.outcome,
            }
            for c in self.items
        ]
