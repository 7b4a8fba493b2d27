"""Type stubs for the native module ``rustybackup._core`` (checked by mypy.stubtest)."""

from collections.abc import Iterable
from os import PathLike
from typing import final

from typing_extensions import Buffer

__version__: str

# --- cron (issue 2) ---

# --- scan (issue 3) ---

def hash_bytes(data: Buffer, algorithm: str = "blake3") -> str:
    """Hex digest of any C-contiguous buffer (bytes, bytearray, memoryview, mmap, array),
    read in place; the GIL is released from 2 KiB. ``algorithm`` is a ``ChecksumAlgorithm``
    or its lower-case name (default blake3)."""

def hash_file(path: str | PathLike[str], algorithm: str = "blake3", *, mmap: bool = True) -> str:
    """Hex digest of a file. ``mmap=True`` maps regular files of 16 KiB and more for BLAKE3
    (hashed on every core), as b3sum does; the other algorithms always read, overlapping the
    read with the hash; pass ``mmap=False`` for a file another process may truncate meanwhile (a truncated
    map is SIGBUS, which kills the interpreter). A size change is reported as ``OSError``."""

@final
class FileScan:
    """What ``scan_file`` found: the whole-file digest and every block's digest."""

    def __new__(
        cls, algorithm: str, block_size: int, size: int, digest: str, block_digests: bytes
    ) -> FileScan: ...
    @property
    def digest(self) -> str:
        """Whole-file digest, hex."""
    @property
    def block_digests(self) -> bytes:
        """Raw block digests concatenated, ``digest_size`` bytes each."""
    @property
    def algorithm(self) -> str: ...
    @property
    def block_size(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def block_count(self) -> int: ...
    @property
    def digest_size(self) -> int: ...
    def block_digest(self, index: int) -> str:
        """Block ``index``'s digest, hex (negative counts from the end); IndexError outside."""
    def __len__(self) -> int: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __reduce__(self) -> tuple[type[FileScan], tuple[str, int, int, str, bytes]]: ...

def scan_file(path: str | PathLike[str], algorithm: str = "blake3", block_size: int = 8192) -> FileScan:
    """One pass over a file in block-aligned reads (never mapped): the whole digest and each
    block's digest. ``block_size`` is a power of two in [512, 16 MiB]. A file whose size
    changes during the scan raises ``OSError`` (errno EIO) naming it."""

def hash_files(
    paths: Iterable[str | PathLike[str]], algorithm: str = "blake3", threads: int | None = None
) -> dict[str, str | Exception]:
    """Hashes files in parallel (``threads=None``: all cores); the value is the hex digest or
    the exception instance for that file, so one bad file never aborts the batch."""

# --- chain (issues 4, 7) ---

# --- engine (issue 4) ---
