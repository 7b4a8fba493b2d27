"""Type stubs for the native module ``rustybackup._core`` (checked by mypy.stubtest)."""

__version__: str

# --- cron (issue 2) ---

# --- scan (issue 3) ---

# --- chain (issues 4, 7) ---

# --- engine (issue 4) ---

from collections.abc import Callable, Sequence
from os import PathLike
from typing import Any, final

_Path = str | PathLike[str]

@final
class PieceInfo:
    """A piece's header and trailer facts (docs/FORMAT.md)."""

    @property
    def path(self) -> str: ...
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
