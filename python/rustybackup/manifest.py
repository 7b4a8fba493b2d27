"""The one owner of a set's ``manifest.json`` (docs/FORMAT.md, "Manifest"): typed, frozen
records with `load`, `validate` and `dump`. Every module reads a manifest through here,
as every pgBackRest command asks ``manifest.c``; nothing else reads its keys.

A manifest that does not parse, or whose fields disagree with each other, raises a
`CatalogError` naming the file and the field ("sets/<id>/manifest.json: files[3].size:
expected a non-negative integer, got 'x'"), so a damaged set is reported, never
restored halfway or verified OK.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

from . import _core, store
from .enums import BackupType, ChecksumAlgorithm
from .errors import CatalogError
from .sources import SkippedEntry

if TYPE_CHECKING:
    # SQLite's WAL records are imported where one is read or checked: a file tree's
    # backup has none and does not pay for the module's dataclasses at every start.
    from .sqlite_wal import WalRecord

FORMAT = 4
"""The manifest format this release writes. Format 2 adds what a file tree needs beyond
contents (owners, xattrs, holes, hardlinks, special files); every key it adds is optional
in an entry, so a format-1 manifest reads as one without them. Format 3 adds ``root``, the
source directory's own mode, mtime, owner and xattrs (absent: not recorded). Format 4
begins with the document's own checksum (rust/src/format/manifest_sum.rs): a changed byte
is found before a field is read."""

READ_FORMATS = (1, 2, 3, 4)
"""Every manifest format this release reads."""

SPECIAL_KINDS = ("fifo", "char", "block")
"""The special files a format-2 manifest records (recreated by a restore as root)."""

SET_ID = re.compile(r"[0-9]{8}T[0-9]{12}Z-[0-9a-f]{8}")
"""A set id, `YYYYmmddTHHMMSSffffffZ-<8 hex>` (docs/FORMAT.md); use with fullmatch."""

DATABASE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""A database name as `register_database` accepts it; use with fullmatch."""

# Hex digits of each algorithm's digest (docs/FORMAT.md: 16, 20, 32, 64, 32 bytes).
DIGEST_HEX = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128, "blake3": 64}

SOURCE_KINDS = ("files", "sqlite", "archive", "postgresql")
MIN_BLOCK_SIZE = 512
MAX_BLOCK_SIZE = 16 << 20
_I64_MAX = (1 << 63) - 1
_U64_MAX = (1 << 64) - 1
_I64_MIN = -(1 << 63)
_HEX = {name: re.compile(f"[0-9a-f]{{{n}}}") for name, n in DIGEST_HEX.items()}
# An absolute path, or an empty, "." or ".." component: a path that could leave its root.
_ESCAPING = re.compile(r"(?:\A|/)\.{0,2}(?:/|\Z)")
# What `datetime` can represent (years 1..9999), in microseconds around the epoch:
# a time outside it could never be shown or compared.
_MIN_US = -62_135_596_800_000_000
_MAX_US = 253_402_300_799_999_999


def is_set_id(value: object) -> bool:
    """Whether `value` is a set id in its documented form (it can name no other path)."""
    return isinstance(value, str) and SET_ID.fullmatch(value) is not None


@dataclass(frozen=True)
class SetRecord:
    """The manifest's ``set`` object: what the catalog's ``sets`` row is rebuilt from."""

    id: str
    database: str
    backup_type: BackupType
    parent_id: str | None
    started_at_us: int
    finished_at_us: int
    block_size: int
    algorithm: str
    compression: str | None
    tags: tuple[str, ...]
    size: int
    bytes_read: int
    source_kind: str
    source_path: str
    source_is_dir: bool
    archive_dir: str | None


@dataclass(frozen=True)
class Piece:
    """A data file of the set (``path`` relative to the repository)."""

    id: str
    path: str
    size: int
    checksum: str
    algorithm: str
    block_count: int


@dataclass(frozen=True)
class BlockMap:
    """The set's block map: one record per block of every regular file."""

    path: str
    checksum: str
    block_count: int


@dataclass(frozen=True)
class Source:
    """A piece the block map's ``source`` indices point into."""

    set_id: str
    piece: str


@dataclass(frozen=True)
class Owner:
    """An entry's owner and group, by id and by the names they had at the backup
    (None when the id had no name there), so a restore can map by name like tar."""

    uid: int
    gid: int
    user: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class Xattr:
    """One extended attribute (``user.*``, ``trusted.*``, ``security.*``, POSIX ACLs as
    ``system.posix_acl_access``/``_default``); the value is raw bytes, base64 in JSON."""

    name: str
    value: bytes


@dataclass(frozen=True)
class FileEntry:
    """A regular file: block-map records ``first_block .. first_block + block_count``.
    ``holes`` are the (offset, length) ranges the source had unallocated (format 2)."""

    path: str
    mode: int
    mtime_ns: int
    size: int
    digest: str
    first_block: int
    block_count: int
    owner: Owner | None = None
    xattrs: tuple[Xattr, ...] = ()
    holes: tuple[tuple[int, int], ...] = ()
    # The file's identity when read (format 2; restic's rule): the next backup does not
    # read it again while size, mtime_ns, ctime_ns, ino and dev all still match. None
    # for a file that changed while it was read (always read again) and in format 1.
    ctime_ns: int | None = None
    ino: int | None = None
    dev: int | None = None


@dataclass(frozen=True)
class DirEntry:
    path: str
    mode: int
    mtime_ns: int
    owner: Owner | None = None
    xattrs: tuple[Xattr, ...] = ()


@dataclass(frozen=True)
class SymlinkEntry:
    """A link, stored as its text and never followed."""

    path: str
    target: str
    mtime_ns: int
    owner: Owner | None = None
    xattrs: tuple[Xattr, ...] = ()


@dataclass(frozen=True)
class HardlinkEntry:
    """Another name of the inode of ``files`` entry ``target`` (format 2): its data,
    mode, owner and xattrs are that entry's, and a restore links it to that file."""

    path: str
    target: str


@dataclass(frozen=True)
class SpecialEntry:
    """A FIFO or device node (format 2); ``major``/``minor`` are 0 for a FIFO."""

    path: str
    kind: str
    mode: int
    mtime_ns: int
    major: int = 0
    minor: int = 0
    owner: Owner | None = None
    xattrs: tuple[Xattr, ...] = ()


@dataclass(frozen=True)
class Summary:
    """What the backup could not store as it found it: entries it skipped (sockets,
    unreadable or vanished files) and files that changed while they were read (stored as
    read, as tar and restic warn). Absent from manifests written before it existed."""

    skipped: tuple[SkippedEntry, ...] = ()
    changed: tuple[str, ...] = ()
    # Entries the selection rules left out (selection.py; an excluded directory counts
    # once) and files taken over from the parent unread (unchanged since it).
    excluded: int = 0
    unread: int = 0

    @property
    def clean(self) -> bool:
        return not self.skipped and not self.changed

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "skipped": [{"path": e.path, "reason": e.reason} for e in self.skipped],
            "changed": list(self.changed),
        }
        if self.excluded:
            out["excluded"] = self.excluded
        if self.unread:
            out["unread"] = self.unread
        return out


@dataclass(frozen=True)
class DamagedPage:
    """A source page whose PostgreSQL checksum did not match when it was read."""

    path: str
    block: int


@dataclass(frozen=True)
class PostgresInfo:
    """What a PostgreSQL base backup needs beyond its files: the WAL range that makes it
    consistent (usable only once `stop_lsn` is replayed), the files pg_backup_stop
    returned (written into the data directory at restore) and damaged source pages."""

    start_lsn: int
    stop_lsn: int
    timeline: int
    wal_segment_size: int
    page_size: int
    data_checksums: bool
    server_version: int
    backup_label: str
    tablespace_map: str = ""
    damaged_pages: tuple[DamagedPage, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["damaged_pages"] = [{"path": p.path, "block": p.block} for p in self.damaged_pages]
        return out


@dataclass(frozen=True)
class Manifest:
    """One set's manifest (docs/FORMAT.md). Build it, `validate` it, `dump` it."""

    record: SetRecord
    pieces: tuple[Piece, ...]
    blockmap: BlockMap
    sources: tuple[Source, ...]
    # A tuple when built in code, a `FileTable` (rows kept in Rust) when read or written
    # by a file-tree backup.
    files: Sequence[FileEntry]
    dirs: tuple[DirEntry, ...]
    symlinks: tuple[SymlinkEntry, ...]
    summary: Summary = field(default_factory=Summary)
    format: int = FORMAT
    postgresql: PostgresInfo | None = None
    wal: WalRecord | None = None
    hardlinks: tuple[HardlinkEntry, ...] = ()
    specials: tuple[SpecialEntry, ...] = ()
    # The source directory itself (format 3; path ""): a restore gives its mode, owner,
    # xattrs and mtime to the target directory, as tar does for "./" and restic and borg do.
    root: DirEntry | None = None

    @property
    def id(self) -> str:
        return self.record.id

    def validate(self, where: str = store.MANIFEST) -> None:
        """Checks that the fields agree with each other (the per-field checks ran when
        it was parsed, or hold by construction); CatalogError names `where` and the field."""
        # A Manifest built in code (the engine) has not been through the parser, and the
        # same per-field rules must hold for what it writes.
        parse(self.dump(), where)
        _Consistency(self, where).run()

    def dump(self) -> dict[str, Any]:
        """The JSON document (docs/FORMAT.md); `parse(m.dump()) == m`."""
        r = self.record
        return (
            {
                "format": self.format,
                "set": {
                    "id": r.id,
                    "database": r.database,
                    "backup_type": r.backup_type.value,
                    "parent_id": r.parent_id,
                    "started_at_us": r.started_at_us,
                    "finished_at_us": r.finished_at_us,
                    "block_size": r.block_size,
                    "algorithm": r.algorithm,
                    "compression": r.compression,
                    "tags": list(r.tags),
                    "size": r.size,
                    "bytes_read": r.bytes_read,
                    "source_kind": r.source_kind,
                    "source_path": r.source_path,
                    "source_is_dir": r.source_is_dir,
                    "archive_dir": r.archive_dir,
                },
                "pieces": [_plain(p) for p in self.pieces],
                "blockmap": _plain(self.blockmap),
                "sources": [_plain(s) for s in self.sources],
                "files": [_entry(f) for f in self.files],
                "dirs": [_entry(d) for d in self.dirs],
                "symlinks": [_entry(s) for s in self.symlinks],
                "summary": self.summary.to_json(),
            }
            | ({} if self.format < 2 else {"hardlinks": [_plain(h) for h in self.hardlinks]})
            | ({} if self.format < 2 else {"specials": [_entry(s) for s in self.specials]})
            | ({} if self.root is None else {"root": {k: v for k, v in _entry(self.root).items() if k != "path"}})
            | ({} if self.postgresql is None else {"postgresql": self.postgresql.to_json()})
            | ({} if self.wal is None else {"wal": self.wal.to_json()})
        )


def _plain(obj: Piece | BlockMap | Source | HardlinkEntry) -> dict[str, Any]:
    return dict(obj.__dict__)


def _entry(e: FileEntry | DirEntry | SymlinkEntry | SpecialEntry) -> dict[str, Any]:
    """An entry's JSON: the format-2 fields only when set, so an entry without them is
    exactly its format-1 form."""
    if type(e) is FileEntry and not e.xattrs and not e.holes:
        # Once per file of the tree: the common entry without the generic pops below.
        f: dict[str, Any] = {
            "path": e.path, "mode": e.mode, "mtime_ns": e.mtime_ns, "size": e.size, "digest": e.digest,
            "first_block": e.first_block, "block_count": e.block_count,
        }  # fmt: skip
        if e.owner is not None:
            o = e.owner
            f["owner"] = {"uid": o.uid, "gid": o.gid, "user": o.user, "group": o.group}
        if e.ctime_ns is not None:
            f["ctime_ns"] = e.ctime_ns
        if e.ino is not None:
            f["ino"] = e.ino
        if e.dev is not None:
            f["dev"] = e.dev
        return f
    out = dict(e.__dict__)
    owner, xattrs = out.pop("owner"), out.pop("xattrs")
    if owner is not None:
        out["owner"] = dict(owner.__dict__)
    if xattrs:
        out["xattrs"] = [{"name": x.name, "value": base64.b64encode(x.value).decode()} for x in xattrs]
    if "holes" in out:
        holes = out.pop("holes")
        if holes:
            out["holes"] = [list(h) for h in holes]
    for key in ("ctime_ns", "ino", "dev"):
        if key in out and out[key] is None:
            del out[key]
    return out


class FileTable(Sequence[FileEntry]):
    """A manifest's ``files`` kept as one table in Rust (`_core.FileTable`,
    rust/src/format/file_table.rs): a `FileEntry` is built only when a caller indexes or
    iterates (restore, ls, diff); a backup matches the walk against the parent's rows
    and writes the new set's rows without one. Entries with what the table does not hold
    (xattrs, holes) are kept here as parsed `FileEntry` objects, their rows in the table
    too. Equal to any sequence of the same entries."""

    __slots__ = ("_extras", "_rows", "_source")

    def __init__(
        self,
        rows: _core.FileTable,
        extras: dict[int, FileEntry] | None = None,
        source: tuple[bytes, tuple[int, int], str] | None = None,
    ) -> None:
        self._rows = rows
        self._extras = extras or {}
        # The document this table was read from, the list's offsets in it and the digest
        # algorithm it was read with, kept when the reader was asked to
        # (`load(keep_text=True)`): files of these very bytes read to this table (`write`).
        self._source = source

    @property
    def rows(self) -> _core.FileTable:
        return self._rows

    @property
    def extras(self) -> dict[int, FileEntry]:
        """The entries with xattrs or holes, by position."""
        return self._extras

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, i: int) -> FileEntry: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[FileEntry, ...]: ...
    def __getitem__(self, i: int | slice) -> FileEntry | tuple[FileEntry, ...]:
        if isinstance(i, slice):
            return tuple(self)[i]
        n = len(self._rows)
        at = i + n if i < 0 else i
        if not 0 <= at < n:
            raise IndexError(f"file {i} of {n}")
        extra = self._extras.get(at)
        return extra if extra is not None else _from_row(self._rows.row(at), {})

    def __iter__(self) -> Iterator[FileEntry]:
        owners: dict[tuple[int, int, str | None, str | None], Owner] = {}
        extras, n, step = self._extras, len(self._rows), 4096
        for start in range(0, n, step):
            for k, row in enumerate(self._rows.rows(start, start + step), start):
                extra = extras.get(k)
                yield extra if extra is not None else _from_row(row, owners)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"FileTable({len(self)} files)"

    def paths(self) -> list[str]:
        return self._rows.paths()

    def read_with(self, algorithm: object) -> bool:
        """Whether this table was read from a kept text, with `algorithm`'s digests."""
        return self._source is not None and self._source[2] == algorithm

    def json(self) -> str:
        """The ``files`` list as JSON text (the rows written in Rust, the extras here)."""
        return self._rows.to_json(self._extras_json())

    def document(self, rest: bytes, sealed: bool = False) -> bytes:
        """A manifest's bytes: `rest`, the one-line JSON object of its other keys, with
        this list spliced in as the last key (written in Rust, one buffer); `sealed`:
        with the document's own checksum first (format 4)."""
        return self._rows.document(rest, self._extras_json(), sealed)

    def _extras_json(self) -> dict[int, str]:
        return {i: json.dumps(_entry(e), separators=(",", ":")) for i, e in self._extras.items()}


def _from_row(row: _Row, owners: dict[tuple[int, int, str | None, str | None], Owner]) -> FileEntry:
    path, mode, mtime, size, digest, first, count, owner, ctime, ino, dev = row
    # A tree's files share a few owners: one (immutable) Owner each, not one per file.
    own = None if owner is None else (owners.get(owner) or owners.setdefault(owner, Owner(*owner)))
    return FileEntry(path, mode, mtime, size, digest, first, count, own, (), (), ctime, ino, dev)


def file_row(e: FileEntry) -> _Row:
    """`e`'s fields as a `_core.FileTable` row (its xattrs and holes stay in Python)."""
    o = e.owner
    return (
        e.path, e.mode, e.mtime_ns, e.size, e.digest, e.first_block, e.block_count,
        None if o is None else (o.uid, o.gid, o.user, o.group), e.ctime_ns, e.ino, e.dev,
    )  # fmt: skip


# --- reading --------------------------------------------------------------------------


def display_name(path: Path) -> str:
    """How errors name a manifest: ``sets/<id>/manifest.json`` inside a repository."""
    if path.parent.parent.name == store.SETS_DIR:
        return f"{store.SETS_DIR}/{path.parent.name}/{path.name}"
    return str(path)


def load(
    path: str | os.PathLike[str], *, set_id: str | None = None, where: str | None = None, keep_text: bool = False
) -> Manifest:
    """Reads, parses and validates a manifest file. With `set_id`, the manifest must
    describe that set (a manifest copied into another set's directory is refused).
    `keep_text`: its `files` keep the JSON text they were read from (the document's
    bytes stay in memory with them), for `write`'s check of a child's manifest."""
    p = Path(path)
    name = where or display_name(p)
    try:
        text = p.read_bytes()
    except OSError as exc:
        raise CatalogError(f"{name}: cannot read the manifest: {exc.strerror or exc}") from exc
    text = _unsealed(p, text, name)
    summed = _checksum_ok(text, name)
    manifest = parse(_decode(text, name, keep_text=keep_text), name)
    _summed_as_its_format_says(manifest, summed, name)
    _Consistency(manifest, name).run()
    if set_id is not None and manifest.id != set_id:
        raise CatalogError(f"{name}: set.id: expected {set_id!r} (the set it was read for), got {manifest.id!r}")
    return manifest


def loads(text: str | bytes, where: str = store.MANIFEST) -> Manifest:
    """`load` of a document already in memory."""
    summed = _checksum_ok(text.encode() if isinstance(text, str) else text, where)
    manifest = parse(_decode(text, where), where)
    _summed_as_its_format_says(manifest, summed, where)
    _Consistency(manifest, where).run()
    return manifest


def _checksum_ok(text: bytes, where: str) -> bool:
    """Whether the document begins with its own checksum (format 4), which its bytes
    then match: a changed byte anywhere is named here, before any field is read."""
    found = _core.manifest_sum_check(text)
    if found is None:
        return False
    stored, computed = found
    if not computed:
        raise CatalogError(f"{where}: checksum: {_short(stored)} is not 64 lower-case hex digits")
    if stored != computed:
        raise CatalogError(
            f"{where}: checksum: the document was written with BLAKE3 {stored} and its bytes now have "
            f"{computed}: it was changed after it was written"
        )
    return True


def _summed_as_its_format_says(m: Manifest, summed: bool, where: str) -> None:
    if m.format >= 4 and not summed:
        raise CatalogError(
            f"{where}: checksum: a format-{m.format} manifest begins with its checksum; this one has none"
        )


def document(m: Manifest) -> bytes:
    """The bytes of `m`'s manifest file (before an encrypted repository's envelope):
    `m.dump()` as one line of JSON, with its checksum first from format 4 on. A
    `FileTable`'s rows are written in Rust and spliced in as the last key (a JSON
    object's key order carries nothing), the checksum in the same buffer."""
    sealed = m.format >= 4
    if not isinstance(m.files, FileTable):
        text = store.durable_json_text(m.dump()).encode()
        return _core.manifest_sum_seal(text) if sealed else text
    data = replace(m, files=()).dump()
    del data["files"]
    return m.files.document(store.durable_json_text(data).encode(), sealed)


def write(path: Path, manifest: Manifest, known: Sequence[FileEntry] | None = None) -> None:
    """Validates and writes a new manifest durably (its directory is fsynced by the
    caller's rename, docs/FORMAT.md). In an encrypted repository it is written inside
    its envelope (keys.py). `known`: the parent's files, read with `keep_text`."""
    from . import keys

    # The one validation runs on the very bytes that are written, through the reader
    # `load` uses: the files stay rows in Rust (`FileTable`), no FileEntry per file.
    # When the files' text is byte for byte the text `known` was read from (with the
    # same algorithm), the reader's result is that table, already read and checked: an
    # unchanged tree's 10,000 entries are compared, not parsed again (issue 17).
    where = display_name(path)
    text = document(manifest)
    reuse = known if isinstance(known, FileTable) and known.read_with(manifest.record.algorithm) else None
    _Consistency(_Parser(where).manifest(_decode(text, where, known=reuse)), where).run()
    root = _repository_of(path)
    envelope = keys.seal_manifest(root, manifest.id, text) if keys.is_encrypted(root) else None
    if envelope is None:
        store.write_durable_bytes(path, text)
        return
    store.write_durable_json(path, envelope)


_Row = tuple[
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


@dataclass(frozen=True)
class _Split:
    """A manifest's ``files`` as the Rust reader split them (rust/src/format/
    manifest_files.rs): the rows its rules (this module's fast path) accept, kept in
    Rust, and the JSON text of every other entry, by position, for `_Parser.file`."""

    table: _core.FileTable
    raw: list[tuple[int, str]]
    # The document and the ``files`` list's offsets in it, when the reader keeps them
    # (`load(keep_text=True)`).
    text: tuple[bytes, tuple[int, int]] | None = None


_LONE_SURROGATE = re.compile(
    rb"(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    rb"|\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
)
# Any surrogate escape at all: a pattern that starts with a literal, which re scans for
# fast, where _LONE_SURROGATE's leading lookbehind is tried at every byte (0.34 s on a
# 6 MB manifest of 20,000 files, twice per backup); a document without a backslash
# skips both (one memchr).
_ANY_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(raw: bytes) -> bool:
    return b"\\" in raw and _ANY_SURROGATE.search(raw) is not None and _LONE_SURROGATE.search(raw) is not None


def _decode(text: str | bytes, where: str, *, known: FileTable | None = None, keep_text: bool = False) -> object:
    """The decoded JSON of a manifest, its ``files`` read by Rust without a Python object
    per JSON value; a document that reader does not split is decoded by json whole.
    `known`: a table read from a kept text; files with exactly that text are that table."""
    raw_text = text.encode() if isinstance(text, str) else text
    # A name that is not UTF-8 is kept as lone surrogates (escaped \udcXX), which a Rust
    # string cannot hold: such a document is decoded by json whole.
    same = (None, None) if known is None or known._source is None else known._source[:2]
    split = None if _has_lone_surrogate(raw_text) else _core.split_manifest_table(raw_text, *same)
    try:
        if split is None:
            return json.loads(text)
        files, raw, rest, at = split
        data = json.loads(rest)
    except (ValueError, RecursionError) as exc:
        # RecursionError: a deeply nested document is damage too, not a crash.
        raise CatalogError(f"{where}: not a JSON manifest ({_short(exc)})") from None
    if files is not None and at is not None:
        data["files"] = _Split(files, raw, (raw_text, at) if keep_text else None)
    elif at is not None:
        # The files' text is `known`'s, byte for byte: read with the same algorithm (it
        # sets the digests' length), the same reader gives the same table.
        set_ = data.get("set")
        if known is None or not isinstance(set_, dict) or not known.read_with(set_.get("algorithm")):
            return _decode(text, where)
        data["files"] = known
    return data


def _repository_of(path: Path) -> Path:
    """The repository a set's manifest lies in (``<repo>/sets|staging/<id>/manifest.json``)."""
    return path.parent.parent.parent


def _unsealed(path: Path, text: bytes, name: str) -> bytes:
    """The manifest document of a stored manifest: opened from its envelope in an
    encrypted repository (keys.py); a plain one there, or an envelope elsewhere, is
    refused (no mixing)."""
    from . import keys

    envelope = keys.envelope_of(text)
    root = _repository_of(path)
    if envelope is not None:
        return keys.open_manifest(root, envelope, name)
    if keys.is_encrypted(root):
        raise CatalogError(f"{name}: a plain manifest in an encrypted repository (mixing is refused)")
    return text


def parse(data: object, where: str = store.MANIFEST) -> Manifest:
    """Builds a Manifest from decoded JSON, checking every field's type and range.
    Cross-field consistency is `validate`'s."""
    return _Parser(where).manifest(data)


_T = TypeVar("_T")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Parser:
    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, at: str, expected: str, got: object) -> CatalogError:
        return CatalogError(f"{self.where}: {at}: expected {expected}, got {_short(got)}")

    def obj(self, value: object, at: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(at, "an object", value)
        return value

    def key(self, obj: dict[str, Any], name: str, at: str) -> object:
        if name not in obj:
            raise CatalogError(f"{self.where}: {at}{name}: missing")
        return obj[name]

    def list_of(self, value: object, at: str, item: Callable[[object, str], _T]) -> tuple[_T, ...]:
        if not isinstance(value, list):
            raise self.fail(at, "a list", value)
        return tuple(item(v, f"{at}[{i}]") for i, v in enumerate(value))

    def int_(self, value: object, at: str, lo: int = 0, hi: int = _I64_MAX) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            what = "a non-negative integer" if lo == 0 else "an integer"
            raise self.fail(at, what, value)
        if not lo <= value <= hi:
            raise self.fail(at, f"an integer in {lo}..{hi}", value)
        return value

    def text(self, value: object, at: str) -> str:
        if not isinstance(value, str) or not value or "\0" in value:
            raise self.fail(at, "a non-empty string without NUL", value)
        return value

    def opt_text(self, value: object, at: str) -> str | None:
        return None if value is None else self.text(value, at)

    def choice(self, value: object, at: str, choices: Iterable[str]) -> str:
        options = tuple(choices)
        if not isinstance(value, str) or value not in options:
            raise self.fail(at, "one of " + ", ".join(options), value)
        return value

    def set_id(self, value: object, at: str) -> str:
        if not is_set_id(value):
            raise self.fail(at, "a set id YYYYmmddTHHMMSSffffffZ-<8 hex>", value)
        assert isinstance(value, str)
        return value

    def hexdigest(self, value: object, at: str, algorithm: str) -> str:
        if not isinstance(value, str) or _HEX[algorithm].fullmatch(value) is None:
            raise self.fail(at, f"{DIGEST_HEX[algorithm]} lower-case hex digits ({algorithm})", value)
        return value

    def rel_path(self, value: object, at: str) -> str:
        """A relative path that cannot leave the directory it is joined to."""
        if not isinstance(value, str) or not value or "\0" in value:
            raise self.fail(at, "a non-empty relative path", value)
        if _ESCAPING.search(value) is not None:
            raise CatalogError(
                f"{self.where}: {at}: path {_short(value)} would escape the restore target "
                "(absolute, or an empty, '.' or '..' component)"
            )
        return value

    def name(self, value: object, at: str) -> str:
        """One path component."""
        text = self.rel_path(value, at)
        if "/" in text:
            raise self.fail(at, "a single file name", value)
        return text

    # --- the objects ---

    def manifest(self, data: object) -> Manifest:
        top = self.obj(data, "(top level)")
        fmt = self.int_(self.key(top, "format", ""), "format", 0)
        if fmt not in READ_FORMATS:
            raise CatalogError(
                f"{self.where}: format: manifest format {fmt} is not supported "
                f"(this release reads {', '.join(map(str, READ_FORMATS))})"
            )
        record = self.record(self.key(top, "set", ""))
        alg = record.algorithm
        summary = Summary() if top.get("summary") is None else self.summary(top["summary"])
        return Manifest(
            record=record,
            pieces=self.list_of(self.key(top, "pieces", ""), "pieces", self.piece),
            blockmap=self.blockmap(self.key(top, "blockmap", ""), alg),
            sources=self.list_of(self.key(top, "sources", ""), "sources", self.source),
            files=self.files(self.key(top, "files", ""), alg),
            dirs=self.dirs(self.key(top, "dirs", "")),
            symlinks=self.list_of(self.key(top, "symlinks", ""), "symlinks", self.symlink),
            summary=summary,
            format=fmt,
            postgresql=None if top.get("postgresql") is None else self.postgres(top["postgresql"]),
            wal=None if top.get("wal") is None else self.wal(top["wal"]),
            hardlinks=self.list_of(top.get("hardlinks", []), "hardlinks", self.hardlink),
            specials=self.list_of(top.get("specials", []), "specials", self.special),
            root=None if fmt < 3 or top.get("root") is None else self.root_dir(top["root"]),
        )

    def record(self, value: object) -> SetRecord:
        o = self.obj(value, "set")

        def k(name: str) -> object:
            return self.key(o, name, "set.")

        btype = BackupType(self.choice(k("backup_type"), "set.backup_type", (t.value for t in BackupType)))
        db = k("database")
        if not isinstance(db, str) or DATABASE_NAME.fullmatch(db) is None:
            raise self.fail("set.database", "a database name (1-64 letters, digits, '_', '.', '-')", db)
        tags = k("tags")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise self.fail("set.tags", "a list of strings", tags)
        is_dir = k("source_is_dir")
        if not isinstance(is_dir, bool):
            raise self.fail("set.source_is_dir", "true or false", is_dir)
        compression = k("compression")
        if compression is not None:
            self.choice(compression, "set.compression", ("zstd",))
        parent = k("parent_id")
        return SetRecord(
            id=self.set_id(k("id"), "set.id"),
            database=db,
            backup_type=btype,
            parent_id=None if parent is None else self.set_id(parent, "set.parent_id"),
            started_at_us=self.int_(k("started_at_us"), "set.started_at_us", _MIN_US, _MAX_US),
            finished_at_us=self.int_(k("finished_at_us"), "set.finished_at_us", _MIN_US, _MAX_US),
            block_size=self.int_(k("block_size"), "set.block_size", MIN_BLOCK_SIZE, MAX_BLOCK_SIZE),
            algorithm=self.choice(k("algorithm"), "set.algorithm", (a.value for a in ChecksumAlgorithm)),
            compression=None if compression is None else str(compression),
            tags=tuple(tags),
            size=self.int_(k("size"), "set.size"),
            bytes_read=self.int_(k("bytes_read"), "set.bytes_read"),
            source_kind=self.choice(k("source_kind"), "set.source_kind", SOURCE_KINDS),
            source_path=self.text(k("source_path"), "set.source_path"),
            source_is_dir=is_dir,
            archive_dir=self.opt_text(k("archive_dir"), "set.archive_dir"),
        )

    def piece(self, value: object, at: str) -> Piece:
        o = self.obj(value, at)
        alg = self.choice(self.key(o, "algorithm", at + "."), at + ".algorithm", (a.value for a in ChecksumAlgorithm))
        return Piece(
            id=self.text(self.key(o, "id", at + "."), at + ".id"),
            path=self.rel_path(self.key(o, "path", at + "."), at + ".path"),
            size=self.int_(self.key(o, "size", at + "."), at + ".size"),
            checksum=self.hexdigest(self.key(o, "checksum", at + "."), at + ".checksum", alg),
            algorithm=alg,
            block_count=self.int_(self.key(o, "block_count", at + "."), at + ".block_count"),
        )

    def blockmap(self, value: object, algorithm: str) -> BlockMap:
        o = self.obj(value, "blockmap")
        return BlockMap(
            path=self.rel_path(self.key(o, "path", "blockmap."), "blockmap.path"),
            checksum=self.hexdigest(self.key(o, "checksum", "blockmap."), "blockmap.checksum", algorithm),
            block_count=self.int_(self.key(o, "block_count", "blockmap."), "blockmap.block_count"),
        )

    def source(self, value: object, at: str) -> Source:
        o = self.obj(value, at)
        return Source(
            set_id=self.set_id(self.key(o, "set_id", at + "."), at + ".set_id"),
            piece=self.name(self.key(o, "piece", at + "."), at + ".piece"),
        )

    def files(self, value: object, algorithm: str) -> Sequence[FileEntry]:
        if isinstance(value, FileTable) and value.read_with(algorithm):
            # `_decode`'s `known`: read from these same bytes with this algorithm.
            return value
        if not isinstance(value, _Split):
            return self.list_of(value, "files", lambda v, at: self.file(v, at, algorithm))
        # The rows Rust accepted stay there; every other entry is parsed here (the same
        # errors as a whole-document parse) and its row put back.
        extras: dict[int, FileEntry] = {}
        for i, text in value.raw:
            try:
                entry = self.file(json.loads(text), f"files[{i}]", algorithm)
            except RecursionError as exc:
                raise CatalogError(f"{self.where}: not a JSON manifest ({_short(exc)})") from None
            value.table.put(i, file_row(entry))
            # Kept whole: its xattrs and holes, or a field its row cannot say (an identity
            # missing a part) stay exactly as read.
            extras[i] = entry
        return FileTable(value.table, extras, None if value.text is None else (*value.text, algorithm))

    def file(self, value: object, at: str, algorithm: str) -> FileEntry:
        # A manifest lists every file of the tree: accept a well-formed entry in one
        # expression, and let the field-by-field checks below name what is wrong.
        if type(value) is dict:
            path, mode, mtime = value.get("path"), value.get("mode"), value.get("mtime_ns")
            size, digest = value.get("size"), value.get("digest")
            first, count = value.get("first_block"), value.get("block_count")
            if (
                type(path) is str
                and type(mode) is int
                and type(mtime) is int
                and type(size) is int
                and type(digest) is str
                and type(first) is int
                and type(count) is int
                and path
                and "\0" not in path
                and _ESCAPING.search(path) is None
                and 0 <= mode <= 0o7777
                and _I64_MIN <= mtime <= _I64_MAX
                and 0 <= size <= _I64_MAX
                and 0 <= first <= _I64_MAX
                and 0 <= count <= _I64_MAX
                and _HEX[algorithm].fullmatch(digest) is not None
            ):
                if len(value) == 7:
                    return FileEntry(path, mode, mtime, size, digest, first, count)
                # The common format-2 extras (identity, owner) checked here too; anything
                # else (xattrs, holes, a bad extra) goes through the named checks below.
                rest = len(value) - 7
                ident = "ctime_ns" in value and _identity_ok(value)
                rest -= 3 if ident else 0
                owner = _owner_ok(value.get("owner"))
                rest -= owner is not None
                if rest == 0:
                    return FileEntry(
                        path, mode, mtime, size, digest, first, count, owner=owner,
                        ctime_ns=value["ctime_ns"] if ident else None,
                        ino=value["ino"] if ident else None,
                        dev=value["dev"] if ident else None,
                    )  # fmt: skip
        o = self.obj(value, at)

        def k(name: str) -> object:
            return self.key(o, name, at + ".")

        return FileEntry(
            path=self.rel_path(k("path"), at + ".path"),
            mode=self.int_(k("mode"), at + ".mode", 0, 0o7777),
            mtime_ns=self.int_(k("mtime_ns"), at + ".mtime_ns", _I64_MIN),
            size=self.int_(k("size"), at + ".size"),
            digest=self.hexdigest(k("digest"), at + ".digest", algorithm),
            first_block=self.int_(k("first_block"), at + ".first_block"),
            block_count=self.int_(k("block_count"), at + ".block_count"),
            owner=self.owner(o, at),
            xattrs=self.xattrs(o, at),
            holes=self.list_of(o.get("holes", []), at + ".holes", self.hole),
            ctime_ns=None if o.get("ctime_ns") is None else self.int_(o["ctime_ns"], at + ".ctime_ns", _I64_MIN),
            ino=None if o.get("ino") is None else self.int_(o["ino"], at + ".ino", 0, _U64_MAX),
            dev=None if o.get("dev") is None else self.int_(o["dev"], at + ".dev", 0, _U64_MAX),
        )

    def wal(self, value: object) -> WalRecord:
        from .sqlite_wal import wal_record_from_json

        return wal_record_from_json(value, self.where)

    def dirs(self, value: object) -> tuple[DirEntry, ...]:
        """The ``dirs`` list. A tree has a directory per few files, read twice per backup
        (the parent's manifest and the new one's check): the common entry (path, mode,
        mtime_ns and an owner, one Owner per distinct owner) is accepted in one
        expression, without a location string per entry; anything else goes through
        `dir`'s named checks."""
        if not isinstance(value, list):
            return self.list_of(value, "dirs", self.dir)
        owners: dict[tuple[object, ...], Owner] = {}
        out = []
        for i, v in enumerate(value):
            if type(v) is dict:
                path, mode, mtime, own = v.get("path"), v.get("mode"), v.get("mtime_ns"), v.get("owner")
                if (
                    type(path) is str
                    and type(mode) is int
                    and type(mtime) is int
                    and path
                    and "\0" not in path
                    and _ESCAPING.search(path) is None
                    and 0 <= mode <= 0o7777
                    and _I64_MIN <= mtime <= _I64_MAX
                ):
                    if len(v) == 3:
                        out.append(DirEntry(path, mode, mtime))
                        continue
                    owner = None if len(v) != 4 or type(own) is not dict else _shared_owner(own, owners)
                    if owner is not None:
                        out.append(DirEntry(path, mode, mtime, owner))
                        continue
            out.append(self.dir(v, f"dirs[{i}]"))
        return tuple(out)

    def dir(self, value: object, at: str) -> DirEntry:
        o = self.obj(value, at)
        return DirEntry(
            path=self.rel_path(self.key(o, "path", at + "."), at + ".path"),
            mode=self.int_(self.key(o, "mode", at + "."), at + ".mode", 0, 0o7777),
            mtime_ns=self.int_(self.key(o, "mtime_ns", at + "."), at + ".mtime_ns", _I64_MIN),
            owner=self.owner(o, at),
            xattrs=self.xattrs(o, at),
        )

    def root_dir(self, value: object) -> DirEntry:
        o = self.obj(value, "root")
        return DirEntry(
            path="",
            mode=self.int_(self.key(o, "mode", "root."), "root.mode", 0, 0o7777),
            mtime_ns=self.int_(self.key(o, "mtime_ns", "root."), "root.mtime_ns", _I64_MIN),
            owner=self.owner(o, "root"),
            xattrs=self.xattrs(o, "root"),
        )

    def symlink(self, value: object, at: str) -> SymlinkEntry:
        o = self.obj(value, at)
        # The target is data (links are stored whatever they point to); restore decides
        # how to create it safely.
        return SymlinkEntry(
            path=self.rel_path(self.key(o, "path", at + "."), at + ".path"),
            target=self.text(self.key(o, "target", at + "."), at + ".target"),
            mtime_ns=self.int_(self.key(o, "mtime_ns", at + "."), at + ".mtime_ns", _I64_MIN),
            owner=self.owner(o, at),
            xattrs=self.xattrs(o, at),
        )

    def hardlink(self, value: object, at: str) -> HardlinkEntry:
        o = self.obj(value, at)
        return HardlinkEntry(
            path=self.rel_path(self.key(o, "path", at + "."), at + ".path"),
            # Checked against `files` by the consistency rules: a link to a path outside
            # the set (or outside the target) is refused there.
            target=self.rel_path(self.key(o, "target", at + "."), at + ".target"),
        )

    def special(self, value: object, at: str) -> SpecialEntry:
        o = self.obj(value, at)

        def k(name: str) -> object:
            return self.key(o, name, at + ".")

        return SpecialEntry(
            path=self.rel_path(k("path"), at + ".path"),
            kind=self.choice(k("kind"), at + ".kind", SPECIAL_KINDS),
            mode=self.int_(k("mode"), at + ".mode", 0, 0o7777),
            mtime_ns=self.int_(k("mtime_ns"), at + ".mtime_ns", _I64_MIN),
            major=self.int_(o.get("major", 0), at + ".major", 0, 0xFFFFFFFF),
            minor=self.int_(o.get("minor", 0), at + ".minor", 0, 0xFFFFFFFF),
            owner=self.owner(o, at),
            xattrs=self.xattrs(o, at),
        )

    def owner(self, o: dict[str, Any], at: str) -> Owner | None:
        value = o.get("owner")
        if value is None:
            return None
        w = self.obj(value, at + ".owner")
        user, group = w.get("user"), w.get("group")
        return Owner(
            uid=self.int_(self.key(w, "uid", at + ".owner."), at + ".owner.uid", 0, 0xFFFFFFFF),
            gid=self.int_(self.key(w, "gid", at + ".owner."), at + ".owner.gid", 0, 0xFFFFFFFF),
            user=None if user is None else self.text(user, at + ".owner.user"),
            group=None if group is None else self.text(group, at + ".owner.group"),
        )

    def xattrs(self, o: dict[str, Any], at: str) -> tuple[Xattr, ...]:
        def one(v: object, where: str) -> Xattr:
            x = self.obj(v, where)
            name = self.text(self.key(x, "name", where + "."), where + ".name")
            raw = self.key(x, "value", where + ".")
            if not isinstance(raw, str):
                raise self.fail(where + ".value", "base64 text", raw)
            try:
                value = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise self.fail(where + ".value", "base64 text", raw) from None
            return Xattr(name, value)

        out = self.list_of(o.get("xattrs", []), at + ".xattrs", one)
        names = [x.name for x in out]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise CatalogError(f"{self.where}: {at}.xattrs: {dup!r} is listed twice")
        return out

    def hole(self, value: object, at: str) -> tuple[int, int]:
        if not isinstance(value, list) or len(value) != 2:
            raise self.fail(at, "[offset, length]", value)
        return (self.int_(value[0], at + "[0]"), self.int_(value[1], at + "[1]", 1))

    def postgres(self, value: object) -> PostgresInfo:
        o = self.obj(value, "postgresql")

        def k(name: str) -> object:
            return self.key(o, name, "postgresql.")

        def damaged(v: object, at: str) -> DamagedPage:
            e = self.obj(v, at)
            return DamagedPage(
                path=self.rel_path(self.key(e, "path", at + "."), at + ".path"),
                block=self.int_(self.key(e, "block", at + "."), at + ".block", 0, 0xFFFFFFFF),
            )

        checksums = k("data_checksums")
        if not isinstance(checksums, bool):
            raise self.fail("postgresql.data_checksums", "true or false", checksums)
        label, spcmap = k("backup_label"), k("tablespace_map")
        if not isinstance(label, str) or not label:
            raise self.fail("postgresql.backup_label", "the backup_label text", label)
        if not isinstance(spcmap, str):
            raise self.fail("postgresql.tablespace_map", "the tablespace_map text (may be empty)", spcmap)
        seg = self.int_(k("wal_segment_size"), "postgresql.wal_segment_size", 1 << 20, 1 << 30)
        if seg & (seg - 1):
            raise self.fail("postgresql.wal_segment_size", "a power of two", seg)
        return PostgresInfo(
            start_lsn=self.int_(k("start_lsn"), "postgresql.start_lsn"),
            stop_lsn=self.int_(k("stop_lsn"), "postgresql.stop_lsn"),
            timeline=self.int_(k("timeline"), "postgresql.timeline", 1, 0xFFFFFFFF),
            wal_segment_size=seg,
            page_size=self.int_(k("page_size"), "postgresql.page_size", 1024, 32768),
            data_checksums=checksums,
            server_version=self.int_(k("server_version"), "postgresql.server_version"),
            backup_label=label,
            tablespace_map=spcmap,
            damaged_pages=self.list_of(k("damaged_pages"), "postgresql.damaged_pages", damaged),
        )

    def summary(self, value: object) -> Summary:
        o = self.obj(value, "summary")

        def skipped(v: object, at: str) -> SkippedEntry:
            e = self.obj(v, at)
            return SkippedEntry(
                path=self.rel_path(self.key(e, "path", at + "."), at + ".path"),
                reason=self.text(self.key(e, "reason", at + "."), at + ".reason"),
            )

        return Summary(
            skipped=self.list_of(self.key(o, "skipped", "summary."), "summary.skipped", skipped),
            changed=self.list_of(self.key(o, "changed", "summary."), "summary.changed", self.rel_path),
            excluded=self.int_(o.get("excluded", 0), "summary.excluded"),
            unread=self.int_(o.get("unread", 0), "summary.unread"),
        )


def _owner_ok(value: object) -> Owner | None:
    """A well-formed owner record as an Owner, else None (the fast path's test; the
    parser's own check names what is wrong)."""
    if type(value) is not dict or not value.keys() <= {"uid", "gid", "user", "group"}:
        return None
    uid, gid, user, group = value.get("uid"), value.get("gid"), value.get("user"), value.get("group")
    if not (type(uid) is int and type(gid) is int and 0 <= uid <= 0xFFFFFFFF and 0 <= gid <= 0xFFFFFFFF):
        return None
    for name in (user, group):
        if name is not None and (type(name) is not str or not name or "\0" in name):
            return None
    return Owner(uid, gid, user, group)


_OWNER_KEYS = frozenset(("uid", "gid", "user", "group"))


def _shared_owner(value: dict[str, Any], seen: dict[tuple[object, ...], Owner]) -> Owner | None:
    """`_owner_ok(value)`, one Owner per distinct record in `seen`. The key is looked up
    only once uid and gid are ints by type (True == 1 and 1.0 == 1 as dict keys) and no
    other key is there: a hit then has exactly the values of a record that passed."""
    uid, gid, user, group = value.get("uid"), value.get("gid"), value.get("user"), value.get("group")
    if type(uid) is not int or type(gid) is not int or not value.keys() <= _OWNER_KEYS:
        return None
    # A name of any other type (a list: unhashable) is damage the named checks report.
    if not (user is None or type(user) is str) or not (group is None or type(group) is str):
        return None
    key = (uid, gid, user, group)
    owner = seen.get(key)
    if owner is None:
        owner = _owner_ok(value)
        if owner is not None:
            seen[key] = owner
    return owner


def _identity_ok(value: dict[str, Any]) -> bool:
    """Whether a file entry's identity keys (ctime_ns, ino, dev) are all present and in
    range: the fast path's test for a format-2 entry that has them."""
    c, i, d = value.get("ctime_ns"), value.get("ino"), value.get("dev")
    return (
        type(c) is int
        and type(i) is int
        and type(d) is int
        and _I64_MIN <= c <= _I64_MAX
        and 0 <= i <= _U64_MAX
        and 0 <= d <= _U64_MAX
    )


# --- consistency ----------------------------------------------------------------------


class _Consistency:
    """The cross-field rules: what a manifest must satisfy for its set to restore."""

    def __init__(self, m: Manifest, where: str) -> None:
        self.m = m
        self.where = where

    def fail(self, at: str, message: str) -> CatalogError:
        return CatalogError(f"{self.where}: {at}: {message}")

    def run(self) -> None:
        self.record()
        self.pieces()
        self.sources()
        self.blocks()
        self.paths()
        self.tree()

    def record(self) -> None:
        r = self.m.record
        pg = self.m.postgresql
        if pg is not None:
            if r.source_kind != "postgresql":
                raise self.fail("postgresql", f"only a postgresql set carries it, this one is {r.source_kind!r}")
            if pg.stop_lsn < pg.start_lsn:
                raise self.fail("postgresql.stop_lsn", f"{pg.stop_lsn} is before postgresql.start_lsn {pg.start_lsn}")
        if r.finished_at_us < r.started_at_us:
            raise self.fail("set.finished_at_us", f"{r.finished_at_us} is before set.started_at_us {r.started_at_us}")
        archive = r.backup_type is BackupType.ARCHIVE_LOG
        if archive != (r.source_kind == "archive"):
            raise self.fail("set.source_kind", f"{r.source_kind!r} does not match backup_type {r.backup_type.value!r}")
        # A SQLite WAL capture (its `wal` record) is the one archive without a directory.
        if archive and r.archive_dir is None:
            from .sqlite_wal import WalCapture

            if not isinstance(self.m.wal, WalCapture):
                raise self.fail("set.archive_dir", "an archive_log set must name its archive directory")
        if r.backup_type in (BackupType.FULL, BackupType.ARCHIVE_LOG):
            if r.parent_id is not None:
                raise self.fail("set.parent_id", f"a {r.backup_type.value} set has no parent, got {r.parent_id!r}")
        elif r.parent_id is None:
            raise self.fail("set.parent_id", f"a {r.backup_type.value} set must name its parent")
        elif r.parent_id == r.id:
            raise self.fail("set.parent_id", "a set cannot be its own parent")

    def pieces(self) -> None:
        r = self.m.record
        if not self.m.pieces:
            raise self.fail("pieces", "a set has at least one piece")
        seen: set[str] = set()
        for i, p in enumerate(self.m.pieces):
            name = p.path.rsplit("/", 1)[-1]
            want_path = f"{store.SETS_DIR}/{r.id}/{name}"
            if p.path != want_path:
                raise self.fail(
                    f"pieces[{i}].path", f"expected {want_path!r} (inside the set's directory), got {p.path!r}"
                )
            if p.id != f"{r.id}/{name}":
                raise self.fail(f"pieces[{i}].id", f"expected {r.id}/{name!s}, got {p.id!r}")
            if p.id in seen:
                raise self.fail(f"pieces[{i}].id", f"{p.id!r} is listed twice")
            seen.add(p.id)
            if p.algorithm != r.algorithm:
                raise self.fail(f"pieces[{i}].algorithm", f"{p.algorithm!r} differs from set.algorithm {r.algorithm!r}")
        bm = f"{store.SETS_DIR}/{r.id}/{store.BLOCKMAP}"
        if self.m.blockmap.path != bm:
            raise self.fail("blockmap.path", f"expected {bm!r}, got {self.m.blockmap.path!r}")
        total = sum(p.size for p in self.m.pieces)
        if r.size < total:
            raise self.fail("set.size", f"{r.size} is smaller than its pieces ({total} bytes)")

    def sources(self) -> None:
        """docs/FORMAT.md: a set's sources are its parent's plus its own piece, so the
        last is the set itself and the one before it its parent."""
        r, sources = self.m.record, self.m.sources
        if not sources:
            raise self.fail("sources", "a set lists at least its own piece")
        last = len(sources) - 1
        own = {p.path.rsplit("/", 1)[-1] for p in self.m.pieces}
        if sources[last].set_id != r.id or sources[last].piece not in own:
            raise self.fail(f"sources[{last}]", f"the last source must be this set's own piece, got {sources[last]!r}")
        seen: dict[str, int] = {}
        for i, s in enumerate(sources):
            if s.set_id in seen:
                raise self.fail(f"sources[{i}].set_id", f"{s.set_id} is listed twice (also sources[{seen[s.set_id]}])")
            seen[s.set_id] = i
        single = r.backup_type in (BackupType.FULL, BackupType.ARCHIVE_LOG)
        if single and len(sources) != 1:
            raise self.fail(
                "sources", f"a {r.backup_type.value} set reads only its own piece, got {len(sources)} sources"
            )
        if not single:
            if len(sources) < 2 or sources[-2].set_id != r.parent_id:
                raise self.fail("sources", f"the source before the set's own must be its parent {r.parent_id}")
            if r.backup_type is BackupType.DIFFERENTIAL and len(sources) != 2:
                raise self.fail("sources", f"a differential set reads its FULL and itself, got {len(sources)} sources")

    def blocks(self) -> None:
        """The block map holds each file's blocks back to back in manifest order."""
        r, bs, files = self.m.record, self.m.record.block_size, self.m.files

        def fault(i: int, key: str, want: int) -> CatalogError:
            f = files[i]
            if key == "block_count":
                return self.fail(
                    f"files[{i}].block_count",
                    f"{f.block_count} blocks for {f.size} bytes of {bs}-byte blocks (expected {want})",
                )
            return self.fail(
                f"files[{i}].first_block", f"expected {want} (right after the previous file), got {f.first_block}"
            )

        if isinstance(files, FileTable):
            # Every row checked in Rust: no FileEntry per file.
            at, bad = files.rows.check_blocks(bs)
            if bad is not None:
                raise fault(*bad)
        else:
            at = 0
            for i, f in enumerate(files):
                want = -(-f.size // bs)
                if f.block_count != want:
                    raise fault(i, "block_count", want)
                if f.first_block != at:
                    raise fault(i, "first_block", at)
                at += f.block_count
        if self.m.blockmap.block_count != at:
            raise self.fail("blockmap.block_count", f"{self.m.blockmap.block_count}, but the files hold {at} blocks")
        stored = sum(p.block_count for p in self.m.pieces)
        # A set stores only blocks of its own files; one without a parent stores them all.
        if stored > at:
            raise self.fail("pieces", f"the pieces index {stored} blocks, more than the files' {at}")
        # Format 2 stores a block identical to an earlier one once (rust/src/dedup/), so
        # only a format-1 set without a parent stores every block; any such set stores
        # at least one when it has any, unless they are holes (hole runs store nothing).
        holes = any(f.holes for _, f in self._files_with_extras())
        if r.parent_id is None and (stored != at if self.m.format < 2 else (at > 0 and stored == 0 and not holes)):
            raise self.fail("pieces", f"a set without a parent stores every block: {stored} indexed, {at} expected")

    def _files_with_extras(self) -> Iterable[tuple[int, FileEntry]]:
        """The file entries that can hold holes or xattrs, with their positions (a
        `FileTable` keeps those as entries; its rows hold neither)."""
        files = self.m.files
        return sorted(files.extras.items()) if isinstance(files, FileTable) else enumerate(files)

    def _file_paths(self) -> list[str]:
        files = self.m.files
        return files.paths() if isinstance(files, FileTable) else [f.path for f in files]

    def paths(self) -> None:
        """No path twice, and no file or link where another entry needs a directory."""
        table = isinstance(self.m.files, FileTable)
        groups: tuple[tuple[str, list[str]], ...] = (
            ("files", [] if table else self._file_paths()),
            ("dirs", [e.path for e in self.m.dirs]),
            ("symlinks", [e.path for e in self.m.symlinks]),
            ("hardlinks", [e.path for e in self.m.hardlinks]),
            ("specials", [e.path for e in self.m.specials]),
        )
        if isinstance(self.m.files, FileTable):
            # The same rules over every path in Rust (file_table::check_paths).
            bad = self.m.files.rows.check_paths([paths for _, paths in groups[1:]])
            if bad is not None:
                kind, g, i, og, oi, prefix = bad
                path = self.m.files.rows.row(i)[0] if g == 0 else groups[g][1][i]
                if kind == "twice":
                    raise self.fail(
                        f"{groups[g][0]}[{i}].path", f"{path!r} is listed twice (also {groups[og][0]}[{oi}].path)"
                    )
                raise self.fail(
                    f"{groups[g][0]}[{i}].path",
                    f"{path!r} lies under {prefix!r}, which is not a directory ({groups[og][0]}[{oi}])",
                )
            self._archive_paths(self.m.files.paths() if self.m.record.backup_type is BackupType.ARCHIVE_LOG else [])
            return
        # path -> (group, position); labels are only formatted for an error.
        where: dict[str, tuple[str, int]] = {}
        for group, paths in groups:
            for i, path in enumerate(paths):
                seen = where.setdefault(path, (group, i))
                if seen != (group, i):
                    raise self.fail(f"{group}[{i}].path", f"{path!r} is listed twice (also {seen[0]}[{seen[1]}].path)")
        for group, paths in groups:
            for i, path in enumerate(paths):
                cut = path.find("/")
                while cut != -1:
                    parent = where.get(path[:cut])
                    if parent is not None and parent[0] != "dirs":
                        raise self.fail(
                            f"{group}[{i}].path",
                            f"{path!r} lies under {path[:cut]!r}, which is not a directory ({parent[0]}[{parent[1]}])",
                        )
                    cut = path.find("/", cut + 1)
        self._archive_paths(groups[0][1])

    def _archive_paths(self, files: list[str]) -> None:
        """An archive_log set holds plain file names only."""
        if self.m.record.backup_type is BackupType.ARCHIVE_LOG:
            for i, path in enumerate(files):
                if "/" in path:
                    raise self.fail(f"files[{i}].path", f"an archive file is a plain name, got {path!r}")
            if self.m.dirs or self.m.symlinks or self.m.hardlinks or self.m.specials:
                raise self.fail("dirs", "an archive_log set holds files only")

    def tree(self) -> None:
        """Format 2's file-tree records: holes inside their file, in order; each hardlink
        names a regular file of this set, or (format 3) one of its special files (never a
        path outside it, never another link)."""
        for i, f in self._files_with_extras():
            end = 0
            for j, (off, length) in enumerate(f.holes):
                if off < end or off + length > f.size:
                    raise self.fail(
                        f"files[{i}].holes[{j}]",
                        f"hole {off}+{length} overlaps the previous one or ends past the file's {f.size} bytes",
                    )
                end = off + length
        if not self.m.hardlinks:
            return
        files = set(self._file_paths())
        files |= {s.path for s in self.m.specials}
        for i, h in enumerate(self.m.hardlinks):
            if h.target not in files:
                raise self.fail(
                    f"hardlinks[{i}].target", f"{h.target!r} is not a regular file or special file of this set"
                )


__all__ = [
    "DATABASE_NAME",
    "FileTable",
    "DamagedPage",
    "PostgresInfo",
    "FORMAT",
    "SET_ID",
    "BlockMap",
    "DirEntry",
    "FileEntry",
    "HardlinkEntry",
    "Owner",
    "READ_FORMATS",
    "document",
    "SpecialEntry",
    "Xattr",
    "Manifest",
    "Piece",
    "SetRecord",
    "SkippedEntry",
    "Source",
    "Summary",
    "SymlinkEntry",
    "display_name",
    "is_set_id",
    "load",
    "loads",
    "parse",
    "write",
]
