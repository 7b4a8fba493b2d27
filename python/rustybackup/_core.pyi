"""Type stubs for the native module ``rustybackup._core`` (checked by mypy.stubtest)."""

import datetime
from collections.abc import Iterable
from os import PathLike
from typing import Any, Self, TypeAlias, final

from typing_extensions import Buffer, disjoint_base

__version__: str

# --- cron (issue 2) ---

@final
class CronField:
    """One of the five fields of a :class:`CronSchedule`."""

    @property
    def name(self) -> str:
        """``"minute"``, ``"hour"``, ``"day-of-month"``, ``"month"`` or ``"day-of-week"``."""
    @property
    def values(self) -> tuple[int, ...]:
        """The sorted matching values (day-of-week 0-6, Sunday 0), without L/W/# extensions."""
    @property
    def text(self) -> str:
        """The field's normalized text."""
    @property
    def unrestricted(self) -> bool:
        """True when the field starts with ``*`` (Vixie cron's unrestricted day field)."""

@final
class CronIterator:
    """Iterator returned by :meth:`CronSchedule.iter_after`; stops at year 9999."""

    def __iter__(self) -> CronIterator: ...
    def __next__(self) -> datetime.datetime: ...

@final
class CronSchedule:
    """A cron schedule in a time zone, with Vixie/ISC cron's day rule and DST handling.

    ``tz`` is an IANA zone name, a ``zoneinfo.ZoneInfo`` or a fixed-offset
    ``datetime.timezone`` (default UTC). ``seed`` spreads ``H`` fields (e.g. the job id).
    Naive datetimes are wall time in the schedule's zone; results are aware, in that zone.
    Invalid input raises :class:`rustybackup.CronError` naming the field and the text.
    """

    def __new__(cls, expr: str, tz: str | datetime.tzinfo | None = None, seed: str | None = None) -> Self: ...
    @property
    def tz(self) -> datetime.tzinfo:
        """The zone: a ``zoneinfo.ZoneInfo`` or a fixed-offset ``datetime.timezone``."""
    @property
    def seed(self) -> str | None:
        """The seed that spread ``H`` values, if any."""
    @property
    def fields(self) -> tuple[CronField, CronField, CronField, CronField, CronField]:
        """Minute, hour, day-of-month, month, day-of-week."""
    @property
    def is_fixed_time(self) -> bool:
        """True when neither minute nor hour starts with ``*`` (DST gaps and folds fire once)."""
    def matches(self, dt: datetime.datetime) -> bool:
        """Whether the schedule fires in the minute that contains ``dt``."""
    def next_after(self, dt: datetime.datetime) -> datetime.datetime:
        """The first firing time strictly after ``dt``."""
    def prev_before(self, dt: datetime.datetime) -> datetime.datetime:
        """The last firing time strictly before ``dt``."""
    def next_n(self, dt: datetime.datetime, n: int) -> list[datetime.datetime]:
        """The next ``n`` (0-1,000,000) firing times after ``dt`` (fewer only at the end of year 9999)."""
    def iter_after(self, dt: datetime.datetime) -> CronIterator:
        """An iterator of firing times after ``dt``."""
    def describe(self) -> str:
        """Plain English, e.g. ``"At 02:00, Monday through Friday"``."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __reduce__(self) -> tuple[type[CronSchedule], tuple[str, str | datetime.tzinfo, str | None]]: ...

# --- scan (issue 3) ---

def hash_bytes(data: Buffer, algorithm: str = "blake3") -> str:
    """Hex digest of any C-contiguous buffer (bytes, bytearray, memoryview, mmap, array),
    read in place; the GIL is released from 2 KiB. ``algorithm`` is a ``ChecksumAlgorithm``
    or its lower-case name (default blake3)."""

def hash_file(path: str | PathLike[str], algorithm: str = "blake3", *, mmap: bool = False) -> str:
    """Hex digest of a file, read in large chunks with the read of the next chunk overlapped
    with the hash (BLAKE3 spreads over every core).

    ``mmap=True`` opts in to memory-mapping regular files of 16 KiB and more for BLAKE3, as
    b3sum and blake3-py's ``update_mmap`` do (no copy through the page cache). It is
    **unsafe on a file that may change**: a file truncated while it is mapped raises
    SIGBUS, which kills the interpreter. Other algorithms always read.

    Raises:
        OSError: the file cannot be read (``filename`` set), or its size changed while it
            was read (errno EIO, naming the file): no digest of a file that never existed.
        ValueError: an unknown algorithm.
    """

@final
class FileScan:
    """What ``scan_file`` found: the whole-file digest and every block's digest."""

    def __new__(cls, algorithm: str, block_size: int, size: int, digest: str, block_digests: bytes) -> FileScan: ...
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
    """Hashes files in parallel (``threads=None``: all cores), never mapped; the value is the
    hex digest or the exception instance for that file, so one bad file never aborts the
    batch (a file whose size changed while it was read gets an ``OSError`` with errno EIO)."""

# --- selection (issue 17) ---

@final
class PathMatcher:
    """Gitignore patterns (``!`` re-includes, a trailing ``/`` is directories only, a
    leading or inner ``/`` anchors at the root, ``**`` spans directories, the last match
    wins), matched against ``/``-separated paths relative to the tree's root. A pattern
    that does not parse raises ``ConfigError`` naming its position."""

    def __new__(cls, patterns: list[str]) -> PathMatcher: ...
    @property
    def patterns(self) -> list[str]: ...
    def matches(self, path: str, is_dir: bool) -> bool:
        """Whether the last pattern matching ``path`` itself excludes it (parents are not
        looked at: the test of a walk that does not descend into excluded directories)."""
    def matches_path_or_parents(self, path: str, is_dir: bool) -> bool:
        """Whether ``path`` or one of its parent directories is excluded; nothing below an
        excluded directory is re-included (git's rule)."""
    def __len__(self) -> int: ...

@final
class Stat:
    """A walk entry's lstat, read as ``os.stat_result`` is (the ``st_*`` names)."""
    @property
    def st_mode(self) -> int: ...
    @property
    def st_ino(self) -> int: ...
    @property
    def st_dev(self) -> int: ...
    @property
    def st_nlink(self) -> int: ...
    @property
    def st_uid(self) -> int: ...
    @property
    def st_gid(self) -> int: ...
    @property
    def st_size(self) -> int: ...
    @property
    def st_atime_ns(self) -> int: ...
    @property
    def st_mtime_ns(self) -> int: ...
    @property
    def st_ctime_ns(self) -> int: ...
    @property
    def st_atime(self) -> float: ...
    @property
    def st_mtime(self) -> float: ...
    @property
    def st_ctime(self) -> float: ...
    @property
    def st_blksize(self) -> int: ...
    @property
    def st_blocks(self) -> int: ...
    @property
    def st_rdev(self) -> int: ...

def walk_tree(
    root: str | PathLike[str],
    matcher: PathMatcher | None = None,
    exclude_caches: bool = False,
    one_file_system: bool = False,
    known: FileTable | None = None,
    reread: set[str] | None = None,
) -> tuple[
    list[tuple[str, str, Stat, str | None, tuple[tuple[str, bytes], ...], tuple[str, ...]]],
    list[tuple[str, str, bool, bool]],
    int,
]:
    """A backup's walk of the directory ``root`` in one pass, the GIL released: every
    entry as ``(rel, kind, lstat, link text, xattrs, xattr problems)`` with ``kind`` one of
    "file", "dir", "symlink", "special" (FIFO or device), "other" (socket); what was
    skipped as ``(rel, reason, vanished, a directory whose listing failed)``; and how many
    entries ``matcher`` (and ``exclude_caches``) left out. Nothing is followed; an
    excluded directory is not entered; with ``one_file_system`` a mount point is kept
    empty. Only a failure to read ``root`` raises (``OSError``). ``known``: the parent
    set's table; a regular file unchanged since its row (the rule of ``match_walk``) is
    not asked for its xattrs unless its path is in ``reread``: it has none then."""

def manifest_sum_seal(doc: bytes) -> bytes:
    """``doc`` (a manifest document, a JSON object's text) with its BLAKE3 checksum as the
    first key (manifest format 4); ValueError when it does not start with ``{``."""

def manifest_sum_check(doc: bytes) -> tuple[str, str] | None:
    """None when ``doc`` does not begin with a checksum; else ``(stored, computed)``,
    equal when its bytes are the ones written (``computed`` empty when the stored one
    is not 64 lower-case hex digits)."""

def split_manifest(
    doc: bytes,
) -> (
    tuple[
        list[
            tuple[
                str,
                int,
                int,
                int,
                str,
                int,
                int,
                tuple[int, int, str | None, str | None] | None,
                int | None,
                int | None,
                int | None,
            ]
            | str
        ]
        | None,
        str,
    ]
    | None
):
    """A manifest document split for ``manifest.py`` (rust/src/format/manifest_files.rs):
    ``(files, rest)``, ``files`` in order a row per entry its fast rules accept
    ``(path, mode, mtime_ns, size, digest, first_block, block_count, (uid, gid, user,
    group) | None, ctime_ns, ino, dev)`` and the JSON text of every other entry (None
    without a ``files`` list), ``rest`` the JSON text of the other keys. None when the
    document is not read as Python's json reads it (then json decodes it whole)."""

_FileRow: TypeAlias = tuple[
    str,
    int,
    int,
    int,
    str,
    int,
    int,
    tuple[int, int, str | None, str | None] | None,
    int | None,
    int | None,
    int | None,
]

@final
class FileTable:
    """A manifest's ``files`` kept in Rust (rust/src/format/file_table.rs): rows in
    ``FileEntry``'s field order, the owner as ``(uid, gid, user, group)``."""

    def __len__(self) -> int: ...
    def row(self, i: int) -> _FileRow:
        """Row ``i`` (``IndexError`` past the end)."""
    def rows(self, start: int, stop: int) -> list[_FileRow]:
        """Rows ``start..stop``, clipped to the table."""
    def paths(self) -> list[str]:
        """Every row's path, in order."""
    def put(self, i: int, row: _FileRow) -> None:
        """Replaces row ``i`` (an entry the Python parser read)."""
    def check_blocks(self, block_size: int) -> tuple[int, tuple[int, str, int] | None]:
        """``(total blocks, None)``, or ``(0, (index, "block_count" | "first_block",
        expected))`` for the first row not holding its blocks right after the previous."""
    def check_paths(self, others: list[list[str]]) -> tuple[str, int, int, int, int, str | None] | None:
        """The first path breaking the manifest's path rules, this table being group 0
        and ``others`` the dirs, symlinks, hardlinks and specials paths: ``("twice", group,
        i, other group, other i, None)`` or ``("under", group, i, parent group, parent i,
        prefix)``; None when they hold."""
    def match_walk(
        self, files: list[tuple[str, Any, Any]], reuse: bool
    ) -> tuple[list[tuple[int, int] | None], list[tuple[int, int, str, int, int, int, int]]]:
        """Each walk file's ``(first_block, block_count)`` in this table or None, and when
        ``reuse`` ``(position, size, digest, mtime_ns, ctime_ns, ino, dev)`` of those whose
        size, mtime, ctime, inode and device equal their row's."""
    @staticmethod
    def from_pass(
        files: list[tuple[str, Any, Any]],
        results: list[tuple[int, str, int, int]],
        changed: set[str] | frozenset[str],
        users: dict[int, str | None],
        groups: dict[int, str | None],
    ) -> FileTable | None:
        """A new set's table from the walk's files and the pass's ``(size, digest,
        first_block, block_count)`` of each; None when a path is not valid UTF-8."""
    def to_json(self, extras: dict[int, str]) -> str:
        """The ``files`` list as JSON text, ``extras`` spliced in by position."""
    def document(self, rest: bytes, extras: dict[int, str], sealed: bool = False) -> bytes:
        """The manifest document: ``rest`` (the JSON object of the other keys) with the
        rows spliced in as its last key ``"files"``, newline-terminated; ``sealed``: with
        its own checksum first (manifest format 4). ValueError when ``rest`` is not an
        object's text."""

def split_manifest_table(
    doc: bytes, known: bytes | None = None, known_at: tuple[int, int] | None = None
) -> tuple[FileTable | None, list[tuple[int, str]], str, tuple[int, int] | None] | None:
    """``split_manifest`` with the rows kept in a ``FileTable``: ``(table, raw, rest, at)``,
    ``raw`` the ``(position, JSON text)`` of the entries ``manifest.py`` parses (a
    placeholder row each until it puts theirs), ``at`` the list's byte offsets. A list
    whose text is ``known[known_at[0]:known_at[1]]`` is not read: ``table`` None."""

# --- chain (issues 4, 7) ---

_SetRow: TypeAlias = tuple[str, str, str | None, int, int, str]
"""One catalog row for the chain logic: ``(id, kind, parent_id, started_us, finished_us,
status)``. ``kind`` is a ``BackupType`` value ("full", "incremental", "differential",
"archive_log"), ``status`` a ``SetStatus`` value ("available", "corrupt", "expired"); times
are integers of microseconds since the Unix epoch (UTC). Rows of one database only."""

@final
class ChainRows:
    """Every set of one database, held in Rust (ids and parents in one arena; no Python
    object per row), so several chain questions run on rows converted and checked once.
    The chain functions below take it wherever they take row tuples."""

    @staticmethod
    def from_columns(
        ids: Iterable[str],
        backup_types: Iterable[str],
        parent_ids: Iterable[str | None],
        started_us: Iterable[int],
        finished_us: Iterable[int],
        statuses: Iterable[str],
    ) -> ChainRows:
        """The rows whose ``i``-th set is the ``i``-th item of every column, in that order.

        ``backup_types`` are ``BackupType`` values, ``statuses`` ``SetStatus`` values, times
        integers of microseconds since the Unix epoch (UTC), as the catalog stores them.

        Raises:
            ValueError: columns of different lengths (named), or a value out of its domain.
            TypeError: a value of the wrong type, or a ``str`` given as a column.
            Both name the row, its id and the column (``row 3 (id "x"): status ...``).
        """
    def __len__(self) -> int: ...

@final
class RetentionDecision:
    """The plan for one backup set: whether it stays, and why (a reason one can check).

    Immutable, compared and hashed by its three fields, picklable."""

    __match_args__ = ("set_id", "keep", "reason")
    def __new__(cls, set_id: str, keep: bool, reason: str) -> RetentionDecision: ...
    @property
    def set_id(self) -> str: ...
    @property
    def keep(self) -> bool: ...
    @property
    def reason(self) -> str: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __getnewargs__(self) -> tuple[str, bool, str]: ...

def recovery_path(
    sets: Iterable[_SetRow] | ChainRows, /, until_us: int | None = None, *, database: str | None = None
) -> list[str]:
    """The ids of the sets a restore to ``until_us`` reads, base first.

    Rules (RMAN's RESTORE UNTIL TIME, pgBackRest's restore):

    1. base: the newest AVAILABLE FULL finished at or before ``until_us``; a CORRUPT or
       EXPIRED FULL is skipped and an older one used;
    2. target: the newest data set on that FULL finished at or before ``until_us`` whose
       whole parent chain is present and AVAILABLE (for engine-written chains: the newest
       DIFFERENTIAL on the FULL, then the INCREMENTALs after it); a CORRUPT, EXPIRED or
       missing link makes what follows it unusable, so an older point is used;
    3. ARCHIVE_LOG sets: every one that finished after the target *started* (logs written
       during a hot backup make it consistent), in finish order, up to and including the
       first that finished at or after ``until_us``. With ``until_us``, an unusable log
       before that point raises ``NoRecoveryPath`` naming it; with ``until_us=None`` (the
       latest point) the path stops before the first unusable log, as PostgreSQL recovery
       stops at the end of the usable WAL stream.

    Ties in time are broken by start, then id. ``database`` only names the database in
    messages. Strings are borrowed from the tuples and the work runs without the GIL.

    Raises:
        NoRecoveryPath: nothing usable reaches ``until_us``; the message says why.
        CatalogError: two rows share an id.
        TypeError, ValueError: a malformed row; the message names its position and field.
    """

def recovery_chain(sets: Iterable[_SetRow] | ChainRows, set_id: str, /) -> list[str]:
    """``set_id`` and its ancestors (parent links), base first, whatever their status.

    Raises:
        CatalogError: unknown ``set_id``, a missing parent (named), a parent cycle, or
            two rows sharing an id.
    """

def recoverable_intervals(sets: Iterable[_SetRow] | ChainRows, /) -> list[tuple[int, int]]:
    """Every instant (µs) for which ``recovery_path(sets, instant)`` resolves, as disjoint
    inclusive ``(from_us, to_us)`` ranges, oldest first, no two adjacent; the last ends at
    ``2**63 - 1`` when every later instant is recoverable too.

    Computed by the same rules in one sweep (O(n log n)): between two finish times of data
    sets the base and the target stay the same, and the archive logs reach a prefix of that
    stretch. Runs without the GIL.

    Raises:
        CatalogError: two rows share an id (which set a restore reads would be ambiguous).
        TypeError, ValueError: a malformed row; the message names its position and field.
    """

def recoverable_since(sets: Iterable[_SetRow] | ChainRows, /, now_us: int) -> int | None:
    """The earliest instant (µs) from which every instant up to ``now_us`` is recoverable
    (the start of the ``recoverable_intervals`` range holding ``now_us``), or None when
    ``now_us`` itself is not. Raises as ``recoverable_intervals``."""

def retention_plan(
    sets: Iterable[_SetRow] | ChainRows,
    /,
    now_us: int,
    *,
    redundancy: int | None = None,
    window_us: int | None = None,
    keep_last: int = 0,
    keep_hourly: int = 0,
    keep_daily: int = 0,
    keep_weekly: int = 0,
    keep_monthly: int = 0,
    keep_yearly: int = 0,
    tz: str = "UTC",
    protected: Iterable[str] | None = None,
    force: bool = False,
) -> list[RetentionDecision]:
    """Per set, in input order, a ``RetentionDecision`` under the union of the rules given.

    - ``redundancy``: the n newest AVAILABLE FULLs and everything finished since the n-th;
    - ``window_us``: every instant of ``[now_us - window_us, now_us]`` stays recoverable:
      the newest AVAILABLE FULL finished at or before the window start (the point of
      recoverability) and everything since. Not "delete what is older than the window";
    - ``keep_*`` (restic/borg): usable restore points newest first, the newest of each of the
      N most recent hours/days/ISO weeks/months/years that have one, in zone ``tz``;
      ``keep_last`` the N newest points;
    - ``protected`` ids (being read by a restore or verification) stay.

    Safety rules on top: a kept set keeps its whole parent chain; ARCHIVE_LOG sets that make
    a kept point consistent or roll forward through a promised range stay; the last usable
    FULL stays unless ``force``; a CORRUPT/EXPIRED set is not left as the oldest survivor
    while an older usable FULL exists. A deleted set's reason starts with "obsolete:".

    Raises:
        ValueError: a rule out of range (redundancy < 1, window_us <= 0, a negative count),
            no rule at all, or an unknown zone.
        CatalogError: two rows share an id.
        TypeError, ValueError: a malformed row; the message names its position and field.
    """

# --- engine (issue 4) ---

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import final

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
    reuse: Sequence[tuple[int, int, str, int, int, int, int]] | None = None,
    dedup: bool = False,
    seal_key: tuple[bytes, bytes] | None = None,
    checkpoint: _Path | None = None,
    checkpoint_every: int = ...,
    checkpoint_rule: str = "files",
    seal_cipher: str = "xchacha20-poly1305",
    pg_pages: tuple[int, int, Sequence[int | None]] | None = None,
) -> tuple[
    list[tuple[int, str, int, int]],
    PieceInfo,
    str,
    int,
    int,
    int,
    list[str],
    tuple[int, int, str | None],
    list[tuple[int, int, int, int]] | None,
]:
    """One pass over ``jobs`` (path, relative name, parent block-map range): writes the
    piece and the block map. Returns (files as (size, digest, first_block, block_count),
    piece, blockmap_checksum, blockmap_records, bytes_read, blocks_stored, changed,
    resumed, bad_pages).

    ``checkpoint`` (a path in the staging directory) makes the pass resumable: it
    journals its finished files there, committed every ``checkpoint_every`` source bytes
    and when it stops, and first adopts what a cut pass left there (the unchanged files'
    staged bytes, checked, are not read again). ``resumed`` is (files adopted, their
    bytes, why adoption stopped where it did or None); ``bytes_read`` counts this pass's
    reads only.

    ``changed`` lists the relative names of files that changed while they were read
    (ended before the size they had when opened, or had another size or mtime after the
    read); the pass goes on, stores what it read (at most the size at open) and leaves
    the warning to the caller, as tar and restic do.

    ``reuse`` lists ``(job index, size, digest, mtime_ns, ctime_ns, ino, dev)`` of files
    the walk found unchanged since the parent: not read (nor stat'ed again), their blocks
    are the parent's range, their size and digest these, and a checkpoint journals them
    with that identity (a resumed pass adopts them only while they still have it). ``dedup``
    stores a block identical to one already stored (in this pass or the parent's state)
    as a reference to it. ``seal_key`` (cipher key, MAC key) seals every stored block
    (an encrypted repository) and keys the block digests; ``seal_cipher``
    (``xchacha20-poly1305`` or ``aes-256-gcm``, the repository's ``keys.block_cipher``)
    is the AEAD new blocks are sealed with (each block's flags say which opens it).

    ``pg_pages`` (start LSN, page size, relation segment number or None per job) checks
    PostgreSQL page checksums on the bytes read: ``bad_pages`` is then (job index, block,
    stored, computed) per damaged page of the files this pass read, or None when the
    chunks are not whole pages (the caller checks on its own); None without ``pg_pages``."""

def checkpoint_summary(path: _Path) -> tuple[int, int, int]:
    """(files, source bytes, piece bytes) a cut pass's checkpoint journal lists as
    finished."""

def checkpoint_adoptable(path: _Path) -> list[Path]:
    """The files a cut PostgreSQL base backup's checkpoint journal lists that the next
    one can adopt now, in the journal's order (``checkpoint_rule="postgresql"``)."""

def restore_files(
    files: Sequence[tuple[str, _Path, int, int, int, str]],
    blockmap: _Path,
    sources: Sequence[_Path],
    *,
    progress: Callable[[int, int, int], object] | None = None,
    cancel: Any | None = None,
    keys: Sequence[tuple[bytes, bytes] | None] | None = None,
) -> int:
    """Restores (rel, dest, first_block, block_count, size, digest) files, checking
    every block digest and every file digest. Returns the bytes written. Each file is
    created with O_EXCL|O_NOFOLLOW: anything at ``dest`` (a symbolic link included) is an
    ``OSError`` naming it; the parent directories are the caller's to check. A damaged
    block map or piece is a ``BackupError`` naming the file and the offset."""

_MetaColumns = tuple[Sequence[int], Sequence[int], Sequence[int], Sequence[int], Sequence[tuple[int, str, bytes]]]

def make_tree_dirs(root_fd: int, root: _Path, rels: Sequence[_Path]) -> None:
    """Creates every directory of ``rels`` and their parents below the directory open as
    ``root_fd`` (``root`` names it in messages), one component at a time with
    ``O_NOFOLLOW``: a link or non-directory on the way is a ``BackupError``."""

def restore_tree(
    root_fd: int,
    root: _Path,
    paths: Sequence[_Path],
    blocks: tuple[Sequence[int], Sequence[int], Sequence[int], Sequence[str]],
    meta: _MetaColumns,
    blockmap: _Path,
    sources: Sequence[_Path],
    *,
    chown: bool,
    exact_xattrs: bool,
    progress: Callable[[int, int, int], object] | None = None,
    cancel: Any | None = None,
    keys: Sequence[tuple[bytes, bytes] | None] | None = None,
) -> tuple[int, list[tuple[int, str, str]]]:
    """Restores regular files below ``root_fd`` (parents made by ``make_tree_dirs``):
    ``blocks`` = (first blocks, block counts, sizes, hex digests), ``meta`` = (modes,
    mtimes in ns, uids, gids with -1 for no owner, (index, xattr name, value)); each file
    created with ``O_EXCL | O_NOFOLLOW``, written, checked, then given its owner (with
    ``chown``; otherwise a different owner is reported), xattrs, mode and mtime through
    its descriptor, with the GIL released. Returns (bytes written, problems as (index,
    what, reason))."""

def apply_tree_meta(
    root_fd: int,
    root: _Path,
    paths: Sequence[_Path],
    meta: _MetaColumns,
    *,
    chown: bool,
    exact_xattrs: bool,
    deepest_first: bool,
) -> list[tuple[int, str, str]]:
    """Sets owner, xattrs, mode and mtime of existing entries (not links) below
    ``root_fd``, each part only where it differs, through ``O_PATH | O_NOFOLLOW``
    descriptors; ``deepest_first`` for directories. Returns the problems."""

def restore_into(
    files: Sequence[tuple[str, _Path, int, int, int, str, Sequence[tuple[int, int]], bool]],
    blockmap: _Path,
    sources: Sequence[_Path],
    *,
    progress: Callable[[int, int, int], object] | None = None,
    cancel: Any | None = None,
    keys: Sequence[tuple[bytes, bytes] | None] | None = None,
) -> list[tuple[int, bool]]:
    """Writes (rel, dest, first_block, block_count, size, digest, holes, delta) files in
    place, every block and file digest checked: a hole (offset, length) is left
    unallocated where the block's bytes are zero; with ``delta`` an existing ``dest``
    keeps its matching blocks (and is not touched at all when all match). Without it,
    ``dest`` must not exist. Returns (bytes written, touched) per file."""

def dump_file(
    file: tuple[str, int, int, int, str],
    blockmap: _Path,
    sources: Sequence[_Path],
    fd: int,
    *,
    keys: Sequence[tuple[bytes, bytes] | None] | None = None,
) -> int:
    """Streams one file (rel, first_block, block_count, size, digest), every block and
    the whole digest checked, to descriptor ``fd`` (left open). Returns the bytes written."""

def read_piece_info(path: _Path) -> PieceInfo:
    """Opens a piece and checks its header and trailer structure (no re-hash)."""

def read_piece_index(path: _Path) -> list[tuple[int, int, int, int, int, int, str]]:
    """(file_no, block_index, offset, stored_len, raw_len, flags, digest_hex) per block."""

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
        """ "ok", "missing", "damaged" or "not_checked"."""
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
        """ "budget" or "cancelled" when the check was cut short."""

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
    keys: dict[str, tuple[bytes, bytes]] | None = None,
) -> list[FileVerdict]:
    """Verifies pieces and block maps ("quick", "standard", "full") in parallel, GIL released.
    Rows: (id, set_id, "piece"|"blockmap", path, size, checksum, algorithm, block_count).
    ``keys`` (set id -> cipher key, MAC key): FULL opens and checks an encrypted set's
    sealed blocks; a failed tag is a corrupt block."""

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

def blockmap_parent(path: _Path) -> tuple[int, tuple[Path, str] | None]:
    """``(version, parent)`` of the block map at ``path`` from its own bytes: ``parent`` is
    the map it names as its parent, ``(path, checksum hex)``, or None; VerificationError
    when the map does not open."""

def check_mapped_blocks(blockmap: _Path, pieces: _Sequence[_Path]) -> list[tuple[int, int, int, str, str]]:
    """(record, source, offset, expected, actual) of every block-map record whose stored
    block differs from its digest; VerificationError when the block map is unreadable."""

# --- PostgreSQL page checksums (issue 14) ---

def pg_checksum_page(page: bytes, blkno: int) -> int:
    """PostgreSQL's ``pg_checksum_page(page, blkno)`` (storage/checksum_impl.h): 1..65535.
    ``ValueError`` when the page is not 1024..32768 bytes, a power of two."""

def pg_check_file(
    path: str | PathLike[str], *, segment: int = 0, start_lsn: int, page_size: int = 8192
) -> list[tuple[int, int, int]]:
    """The damaged pages of one relation segment file (``segment``: its ``.N`` suffix) as
    (block number in the relation, stored checksum, computed checksum). New pages and
    pages whose LSN is at or past ``start_lsn`` are not judged; a trailing partial page is
    skipped. Reads without the GIL; ``OSError`` names the file."""

# --- SQLite WAL (issue 14) ---

@disjoint_base
class WalHeaderFields:
    """The WAL header's fields: the base of :class:`WalScan` and :class:`WalCopy`."""

    @property
    def page_size(self) -> int: ...
    @property
    def big_endian(self) -> bool:
        """Checksums read big-endian words (magic 0x377f0683)."""
    @property
    def checkpoint_seq(self) -> int: ...
    @property
    def salt(self) -> tuple[int, int]:
        """(salt-1, salt-2): new on every WAL restart, the generation's identity."""
    @property
    def header_checksum(self) -> tuple[int, int]: ...

@final
class WalScan(WalHeaderFields):
    """What :func:`wal_scan` found (https://www.sqlite.org/fileformat2.html#walformat)."""

    @property
    def first_frame(self) -> int: ...
    @property
    def last_commit(self) -> int | None:
        """Index of the last commit frame of the valid run, or None."""
    @property
    def checksum(self) -> tuple[int, int]:
        """Cumulative checksum after the last commit (the seed when there is none)."""
    @property
    def uncommitted(self) -> int:
        """Valid frames after the last commit."""
    @property
    def stop(self) -> str:
        """Why the valid run ended, in words."""
    @property
    def stop_kind(self) -> str:
        """``"end"``, ``"partial"``, ``"salt"``, ``"checksum"`` or ``"page_zero"``."""
    @property
    def stop_frame(self) -> int | None:
        """The frame that ended the run; None at a clean end of the data."""
    @property
    def committed_len(self) -> int:
        """Bytes of the data holding the header and the committed frames."""
    @property
    def frames(self) -> list[tuple[int, int, int]]:
        """Committed frames as (index, page_number, commit_size)."""
    @property
    def commits(self) -> list[int]:
        """Indexes of the commit frames."""

@final
class WalCopy(WalHeaderFields):
    """What :func:`wal_copy` copied; the attributes a :class:`WalScan` also has mean the same."""

    @property
    def first_frame(self) -> int:
        """The first frame copied (1, or the one after the resume point)."""
    @property
    def resumed(self) -> bool:
        """Whether the copy continues the resume point (same salts)."""
    @property
    def commits(self) -> list[int]:
        """Indexes of the commit frames copied."""
    @property
    def last_commit(self) -> int | None: ...
    @property
    def frames(self) -> int:
        """Frames copied."""
    @property
    def checksum(self) -> tuple[int, int]:
        """Cumulative checksum after the last copied frame (the seed when none)."""
    @property
    def uncommitted(self) -> int: ...
    @property
    def stop(self) -> str: ...
    @property
    def stop_kind(self) -> str: ...
    @property
    def stop_frame(self) -> int | None: ...
    @property
    def following_bytes(self) -> int:
        """Bytes of the WAL file after the frame that ended the run."""
    @property
    def written(self) -> int:
        """Bytes written to ``dest`` (0: nothing committed, no file created)."""

def wal_copy(
    wal: str | PathLike[str],
    dest: str | PathLike[str],
    resume: tuple[tuple[int, int], int, tuple[int, int]] | None = None,
    append: bool = False,
) -> WalCopy | None:
    """Copies the committed frames of the live WAL file ``wal`` into a new file ``dest``
    (the WAL header, then the frames), read in large positioned reads and checked (salts,
    checksum chain) as they are copied: the bytes written are the bytes checked. With
    ``resume`` = (salts, frame, checksum) of a frame already copied and the same salts in
    the WAL, starts after that frame. A header that changes during the read (a restart)
    is read again. None when there is no WAL or no complete header. ``dest`` is not
    fsynced. With ``append``, the frames after ``resume`` go to the end of the existing
    ``dest`` (no header), and nothing is written (``resumed`` false) when the WAL does not
    continue ``resume``; a failed or repeated read leaves ``dest`` at its former length.
    ``BackupError`` when it never reads consistently; ``OSError`` names the file.
    Releases the GIL."""

def wal_scan(data: Buffer, first_frame: int = 1, seed: tuple[int, int] | None = None) -> WalScan:
    """Scans a 32-byte WAL header and the frames after it, numbered from ``first_frame``;
    ``seed`` is the cumulative checksum of frame ``first_frame - 1`` (required after frame
    1). Frames are checked for salts and the checksum chain; the valid run ends at the
    first frame that fails, and only frames through its last commit are returned.
    ``BackupError`` for a damaged header (naming the offset), ``ValueError`` for bad
    arguments. Releases the GIL."""

def wal_apply(
    db: str | PathLike[str],
    data: Buffer,
    *,
    first_frame: int = 1,
    seed: tuple[int, int] | None = None,
    after: int,
    through: int,
) -> tuple[int, int, int]:
    """Writes the pages of the committed frames ``after < index <= through`` of ``data``
    (as :func:`wal_scan` reads it) into the database file ``db`` at ``(page - 1) *
    page_size``, newest version of each page once, and sets the file to the size of
    commit ``through``; fsyncs. Returns (frames, pages_written, db_pages). ``through``
    must be a commit frame of the valid run (``ValueError``); ``BackupError`` when the
    database's page size differs. Releases the GIL."""

# --- encryption (rust/src/crypto/, keys.py) ---------------------------------------------

AEAD_OVERHEAD: int

def aead_seal(
    key: bytes, ad: bytes, plaintext: bytes, *, nonce: bytes | None = None, cipher: str = "xchacha20-poly1305"
) -> bytes:
    """XChaCha20-Poly1305 (or ``cipher="aes-256-gcm"``, the block cipher of new
    repositories, with a key per message derived from its nonce): nonce (24) ||
    ciphertext || tag (16); a random nonce unless one is given (known-answer tests
    only). Releases the GIL."""

def aead_open(key: bytes, ad: bytes, sealed: bytes, *, cipher: str = "xchacha20-poly1305") -> bytes:
    """Opens ``aead_seal``'s output; ``EncryptionError`` when the key, ``ad`` or a byte differs."""

def argon2id(
    password: bytes,
    salt: bytes,
    *,
    m_kib: int,
    t: int,
    p: int,
    secret: bytes | None = None,
    ad: bytes | None = None,
) -> bytes:
    """Argon2id (v0x13), 32 bytes, GIL released; ``secret``/``ad`` are RFC 9106's K and X."""

def derive_key(context: str, material: bytes) -> bytes:
    """BLAKE3 derive_key: a 32-byte subkey of ``material`` for the purpose ``context``."""

def keyed_digest(key: bytes, data: bytes) -> bytes:
    """Keyed BLAKE3 (32 bytes): an encrypted repository's block digest."""

def x25519_public(secret: bytes) -> bytes:
    """The X25519 public key of a 32-byte secret key."""

def x25519_wrap(public: bytes, payload: bytes, ad: bytes) -> bytes:
    """Wraps ``payload`` to an X25519 public key with an ephemeral key (age's model)."""

def x25519_unwrap(secret: bytes, wrapped: bytes, ad: bytes) -> bytes:
    """Unwraps ``x25519_wrap``'s output with the matching secret key."""

def blockmap_read_key(key: bytes) -> None:
    """Lets this process's block-map readers open sealed maps under ``key`` (a set's map key)."""

def blockmap_write_key(set_id: str, key: bytes | None) -> None:
    """Seals the block map of new set ``set_id`` under ``key`` from now on (``None``: stop)."""

# --- re-sealing (rust/src/crypto/reseal.rs, bindings rust/src/py/reseal.rs) ------------

def reseal_piece(
    src: str | PathLike[str], dst: str | PathLike[str], old: tuple[bytes, bytes], new: tuple[bytes, bytes]
) -> tuple[int, str, int]:
    """Writes ``dst`` as piece ``src`` with every block opened with ``old`` and sealed with
    ``new`` (``(cipher_key, mac_key)``); ``(size, checksum hex, block count)``."""

def rekey_piece(
    src: str | PathLike[str],
    dst: str | PathLike[str],
    old: tuple[bytes, bytes] | None,
    new: tuple[bytes, bytes] | None,
    cipher: str = "xchacha20-poly1305",
    with_moved: bool = True,
) -> tuple[int, str, int, list[tuple[int, int, int, int, bytes]]]:
    """Writes ``dst`` as piece ``src`` opened with ``old`` (None: plain), checked, and stored
    sealed with ``new`` under ``cipher`` (None: plain), digests recomputed under ``new``'s
    MAC key; ``(size, checksum hex, block count, [(old offset, new offset, stored length,
    flags, digest)])`` (the list empty unless ``with_moved``)."""

def rekey_map(
    src: str | PathLike[str],
    dst: str | PathLike[str],
    sources: list[tuple[str | PathLike[str], tuple[bytes, bytes] | None, str | PathLike[str] | None]],
    old_map_key: bytes | None = None,
    new_map_key: bytes | None = None,
    new: tuple[bytes, bytes] | None = None,
    cipher: str = "xchacha20-poly1305",
    parent: tuple[str, bytes] | None = None,
) -> tuple[str, int]:
    """Writes ``dst`` as block map ``src`` (opened with ``old_map_key``, or plain) with every
    stored record moved to where its block is in the target (``sources``: per index of the
    set's sources, ``(source piece, its block keys or None, the target's copy or None)``),
    sealed under ``new_map_key`` (None: plain), naming ``parent`` ``(relative path, new
    checksum)``; ``new``/``cipher`` are the target's block keys. ``(checksum hex, records)``."""

def reseal_map(
    src: str | PathLike[str],
    dst: str | PathLike[str],
    old_key: bytes,
    new_key: bytes,
    parent_sum: bytes | None = None,
) -> str:
    """Writes ``dst`` as sealed block map ``src`` re-sealed under ``new_key`` (its parent
    checksum replaced by ``parent_sum``); the new container checksum (hex)."""

# --- storage (rust/src/storage/, bindings rust/src/py/storage.rs) -----------------------

from types import TracebackType

@final
class ObjectMeta:
    """One object: key relative to the repository root, size, last modification (UTC)."""

    @property
    def key(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def last_modified(self) -> datetime.datetime: ...
    @property
    def e_tag(self) -> str | None: ...

@final
class SetUpload:
    """What ``ObjectStore.upload_set`` sent."""

    @property
    def keys(self) -> list[str]:
        """Keys written, the manifest last."""
    @property
    def bytes(self) -> int:
        """Bytes sent, the manifest included."""
    @property
    def created(self) -> bool:
        """False when the manifest was already there with the same bytes (a retried upload)."""

@final
class LockInfo:
    """A lock object found in a repository."""

    @property
    def key(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def pid(self) -> int: ...
    @property
    def purpose(self) -> str:
        """ "exclusive" or "shared"."""
    @property
    def created(self) -> datetime.datetime: ...
    @property
    def expires(self) -> datetime.datetime: ...
    def live(self, now: datetime.datetime | None = None) -> bool:
        """Whether the lock holds at ``now`` (default: this host's clock)."""

@final
class RemoteLock:
    """A held lock object, refreshed in the background until ``release()``."""

    @property
    def key(self) -> str: ...
    @property
    def info(self) -> LockInfo:
        """The lock's current content (expiry as last written)."""
    @property
    def lost(self) -> str | None:
        """Why the lock may be lost (a refresh failed), or None while it holds."""
    def refresh(self) -> None:
        """Extends the lock now; ``RepositoryLocked`` if it was taken over."""
    def release(self) -> None:
        """Stops the refresher and deletes the lock object (idempotent)."""
    def __enter__(self) -> Self: ...
    def __exit__(self, *_args: type[BaseException] | BaseException | TracebackType | None) -> bool: ...

@final
class TailUpload:
    """A piece's multipart upload that follows the file as the backup writes it: each
    part goes up once the file holds it. ``finish(size)`` sends the rest and checks the
    object (size, trailer, and the hash of the bytes sent against the piece's recorded
    checksum); False means it gave up and the file must be uploaded as usual.
    ``cancel()`` aborts it."""

    def finish(self, size: int) -> bool: ...
    def cancel(self) -> None: ...

@final
class ObjectStore:
    """A repository's storage: ``s3://bucket/prefix``, ``file:///dir`` or a directory.

    ``options`` override the AWS environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_REGION``, ``AWS_ENDPOINT_URL``, ``AWS_ALLOW_HTTP``, ...) and the AWS shared files
    (``~/.aws/credentials``, ``~/.aws/config``, ``AWS_PROFILE``): object_store's AWS keys
    (``aws_access_key_id``, ``aws_endpoint_url``, ...) and ours: ``part_size`` (bytes),
    ``parts_in_flight``, ``files_in_flight``, ``retry_timeout`` (seconds), ``max_retries``.
    Path-style addressing whenever an endpoint is set. Errors: ``ConfigError`` (bad URL,
    option or key), ``StorageAuthError``, ``BucketNotFound``, ``StorageUnreachable`` (after
    retrying for ``retry_timeout``), ``StorageNotFound``, ``StorageError``; ``OSError`` with
    the path for local files. Every call that talks to the store releases the GIL."""

    def __new__(cls, url: str, options: dict[str, str] | None = None) -> Self: ...
    @property
    def url(self) -> str: ...
    @property
    def is_remote(self) -> bool: ...
    @property
    def part_size(self) -> int: ...
    @property
    def bandwidth_limit(self) -> int | None:
        """The upload limit in bytes per second, or None."""
    def check(self) -> None:
        """Lists one page of the root, raising the matching error if it cannot."""
    def create_bucket(self) -> None:
        """Creates the S3 bucket (an existing bucket of ours is fine)."""
    def put_file(self, key: str, path: str | PathLike[str]) -> int:
        """Uploads a file (multipart above one part, memory bounded); returns its size."""
    def put_files(self, items: Sequence[tuple[str, str | PathLike[str]]]) -> list[int]:
        """Uploads several files, ``files_in_flight`` at once; returns their sizes."""
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        """Creates ``key`` only if absent (``If-None-Match: *``); True when this call did."""
    def conditional_create_supported(self) -> bool:
        """Whether the server refuses a second create of one key (probed once)."""
    def get_bytes(self, key: str) -> bytes: ...
    def get_range(self, key: str, start: int, end: int) -> bytes: ...
    def get_to_file(self, key: str, path: str | PathLike[str]) -> int:
        """Streams the object into a new file at ``path`` (atomically); returns its size."""
    def restore_files(
        self,
        files: Sequence[tuple[str, _Path, int, int, int, str]],
        blockmap: _Path,
        sources: Sequence[str],
        *,
        progress: Callable[[int, int, int], object] | None = None,
        cancel: Any | None = None,
        keys: Sequence[tuple[bytes, bytes] | None] | None = None,
    ) -> int:
        """``restore_files`` from pieces in the store: ``sources`` are the pieces' keys,
        read by ranged GETs (``parts_in_flight`` at once, each at most a part) as the
        restore needs them, never downloaded whole. Returns the bytes written."""
    def head(self, key: str) -> ObjectMeta | None: ...
    def delete(self, key: str) -> None: ...
    def upload_set(
        self,
        local_dir: str | PathLike[str],
        prefix: str,
        manifest_name: str = "manifest.json",
        *,
        skip: Sequence[str | PathLike[str]] = ...,
    ) -> SetUpload:
        """Uploads a staged set: its files (not dot files, not ``skip``: relative paths
        already in the bucket) first, the manifest last with a conditional create; the
        set exists once its manifest does."""
    def tail_upload(self, key: str, path: str | PathLike[str]) -> TailUpload:
        """Starts uploading ``path`` (which may not exist yet) to ``key`` while the piece
        writer still appends to it."""
    def sweep(self, prefix: str, grace_seconds: float, now: datetime.datetime | None = None) -> list[str]:
        """Deletes objects of set directories under ``prefix`` that have no manifest and are
        older than ``grace_seconds``; returns their keys."""
    def sweep_uploads(self, prefix: str, grace_seconds: float, now: datetime.datetime | None = None) -> list[str]:
        """Aborts multipart uploads under ``prefix`` begun over ``grace_seconds`` ago."""
    def set_bandwidth_limit(self, bytes_per_second: int | None) -> None:
        """Limits this store's uploads (None: no limit)."""
    def lock(self, purpose: str, ttl_seconds: float, *, host: str | None = None, pid: int | None = None) -> RemoteLock:
        """Takes a lock object ("exclusive" or "shared"), refreshed every third of its time to
        live until released; ``RepositoryLocked`` names a live conflicting holder. An
        expired one is taken over."""
    def list_locks(self) -> list[LockInfo]:
        """Every lock object, live or stale."""
    # Last in the class: after it, `list` in this class body would name the method.
    def list(self, prefix: str = "") -> list[ObjectMeta]:
        """Objects under the directory-like ``prefix`` (``sets/x`` lists ``sets/x/...``), sorted."""
