"""Type stubs for the native module ``rustybackup._core`` (checked by mypy.stubtest)."""

__version__: str

# --- cron (issue 2) ---

# --- scan (issue 3) ---

# --- chain (issues 4, 7) ---

# --- engine (issue 4) ---

from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any, final

_Path = str | PathLike[str]

@final
class PieceInfo:
    """A piece's header and trailer facts (docs/FORMAT.md)."""

    @property
    def path(self) -> Path: ...
    @property
    def size(self) -> int: ...
    @property
    def checksum(self) -> str:
        """Hex checksum recorded in the trailer (digest of everything before it)."""
    @property
    def algorithm(self) -> str: ...
    @property
    def block_size(self) -> int: ...
    @property
    def block_count(self) -> int: ...

def backup_files(
    jobs: Sequence[tuple[_Path, str, tuple[int, int] | None]],
    piece_path: _Path,
    blockmap_path: _Path,
    parent_blockmap: _Path | None = None,
    *,
    algorithm: str,
    block_size: int,
    zstd_level: int | None = None,
    self_source: int = 0,
    progress: Callable[[int, int, int], object] | None = None,
    cancel: Any | None = None,
) -> tuple[list[tuple[int, str, int, int]], PieceInfo, str, int, int, int]:
    """One pass over ``jobs`` (path, relative name, parent block-map range): writes the
    piece and the block map. Returns (files as (size, digest, first_block, block_count),
    piece, blockmap_checksum, blockmap_records, bytes_read, blocks_stored)."""

def restore_files(
    files: Sequence[tuple[str, _Path, int, int, int, str]],
    blockmap: _Path,
    sources: Sequence[_Path],
    *,
    progress: Callable[[int, int, int], object] | None = None,
    cancel: Any | None = None,
) -> int:
    """Restores (rel, dest, first_block, block_count, size, digest) files, checking
    every block digest and every file digest. Returns the bytes written."""

def read_piece_info(path: _Path) -> PieceInfo:
    """Opens a piece and checks its header and trailer structure (no re-hash)."""

def read_piece_index(path: _Path) -> list[tuple[int, int, int, int, int, int, str]]:
    """(file_no, block_index, offset, stored_len, raw_len, flags, digest_hex) per block."""

def piece_checksum(path: _Path) -> str:
    """Re-hashes everything before the trailer; the hex digest."""

def verify_piece_blocks(
    path: _Path, files: Sequence[str] | None = None
) -> list[tuple[str, int, str, int, str, str]]:
    """Corrupt blocks as (piece, block_index, file, offset, expected, actual)."""

def verify_blockmap(path: _Path) -> int:
    """Checks a block map's structure and checksum; returns its record count."""

def file_digest(path: _Path, algorithm: str = "blake3") -> str:
    """Hex digest of a whole file."""

# --- verify (issue 5) ---

from collections.abc import Callable as _Callable
from collections.abc import Sequence as _Sequence

_VerifyRow = tuple[str, str, str, _Path, int | None, str | None, str | None, int | None]

@final
class FileVerdict:
    """What one piece or block-map check found (`verify_files` returns one per row)."""

    @property
    def position(self) -> int: ...
    @property
    def outcome(self) -> str:
        """"ok", "missing", "damaged" or "not_checked"."""
    @property
    def issues(self) -> list[tuple[str, str]]:
        """(kind, message) for every problem, in the order found."""
    @property
    def bad_blocks(self) -> list[tuple[int, int, int, str, str]]:
        """(file_no, block_index, offset, expected, actual) of every bad block (FULL)."""
    @property
    def bytes_read(self) -> int: ...
    @property
    def elapsed(self) -> float: ...
    @property
    def stopped(self) -> str | None:
        """"budget" or "cancelled" when the check was cut short."""

@final
class RestoredFileCheck:
    """A restored file compared with its manifest digest and block map."""

    @property
    def size(self) -> int: ...
    @property
    def digest(self) -> str: ...
    @property
    def matches(self) -> bool: ...
    @property
    def bad_blocks(self) -> list[tuple[int, int, int, str, str]]:
        """(block_index, source, offset, expected, actual) of blocks differing from the block map."""
    @property
    def notes(self) -> list[str]: ...
    @property
    def bytes_read(self) -> int: ...

def verify_files(
    rows: _Sequence[_VerifyRow],
    level: str,
    *,
    budget: float | None = None,
    progress: _Callable[[int, int], object] | None = None,
) -> list[FileVerdict]:
    """Verifies pieces and block maps ("quick", "standard", "full") in parallel, GIL released.
    Rows: (id, set_id, "piece"|"blockmap", path, size, checksum, algorithm, block_count)."""

def check_restored(
    path: _Path,
    algorithm: str,
    expected: str,
    *,
    blockmap: _Path | None = None,
    first_block: int = 0,
    block_count: int = 0,
) -> RestoredFileCheck:
    """Compares a restored file with its manifest digest; on a mismatch, block by block."""

def check_mapped_blocks(blockmap: _Path, pieces: _Sequence[_Path]) -> list[tuple[int, int, int, str, str]]:
    """(record, source, offset, expected, actual) of every block-map record whose stored
    block differs from its digest; VerificationError when the block map is unreadable."""
