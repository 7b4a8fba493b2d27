"""A live SQLite database's write-ahead log, read consistently, and the records a set's
manifest keeps about it (its ``wal`` object, docs/FORMAT.md).

The WAL's frames are a prefix that SQLite only appends to until a checkpoint has copied
every frame into the database and a writer restarts the log with new salts (a new
*generation*). Two facts make a copy taken beside a live writer exact:

- while any connection holds a read transaction that reads from the WAL, the WAL cannot
  be restarted, and no checkpoint copies frames past that reader's snapshot into the
  database file (https://www.sqlite.org/wal.html, "Concurrency");
- a restart writes the WAL header before any frame of the new generation, so a read whose
  header bytes are the same before and after saw frames of one generation only.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import islice, repeat
from operator import lt
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from . import _core, store
from .errors import BackupError, CatalogError

log = logging.getLogger(__name__)

HEADER_LEN = 32
FRAME_HEADER_LEN = 24
_READ_ATTEMPTS = 50

Pair = tuple[int, int]


def wal_path(db: Path) -> Path:
    return db.with_name(db.name + "-wal")


def wal_header(salt: Pair, page_size: int, big_endian: bool, checkpoint_seq: int = 0) -> bytes:
    """A WAL header as SQLite writes it (``walWriteHeader``), checksum included."""
    magic = 0x377F0683 if big_endian else 0x377F0682
    fields = (magic, 3007000, page_size, checkpoint_seq, salt[0], salt[1])
    head = b"".join(v.to_bytes(4, "big") for v in fields)
    order: Literal["big", "little"] = "big" if big_endian else "little"
    s0 = s1 = 0
    for i in range(0, 24, 8):
        s0 = (s0 + int.from_bytes(head[i : i + 4], order) + s1) & 0xFFFFFFFF
        s1 = (s1 + int.from_bytes(head[i + 4 : i + 8], order) + s0) & 0xFFFFFFFF
    return head + s0.to_bytes(4, "big") + s1.to_bytes(4, "big")


# --- manifest records -----------------------------------------------------------------


@dataclass(frozen=True)
class WalPosition:
    """Where in the WAL a data set's copy of a SQLite database stands: it holds every
    commit through `frame` of the generation with `salt` (`salt` None: no WAL existed, or
    the database is not in WAL mode)."""

    salt: Pair | None
    page_size: int
    frame: int
    checksum: Pair | None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "position",
            "salt": None if self.salt is None else list(self.salt),
            "page_size": self.page_size,
            "frame": self.frame,
            "checksum": None if self.checksum is None else list(self.checksum),
        }


@dataclass(frozen=True)
class WalCapture:
    """One capture step: WAL frames `first_frame..last_frame` of generation `generation`
    (salts `salt`), stored as file `file` (header + those frames; None when the step found
    nothing new), and the time each commit frame was seen (the capture's clock, read after
    the frames were). `seed` is the cumulative checksum before `first_frame`, `checksum` the
    one after `last_frame`. `continuous` says the set follows the previous capture without
    a hole; the first set of a generation is continuous when `follows` = (salt-1, salt-2,
    frame) names the generation and frame it provably builds on. `note` says why a
    generation started, or what was odd.

    `then`: the records that follow this one in the same set, each continuing the one
    before (the same generation from the next frame, or the next generation following
    it). A foreground capturer lets the WAL restart many times a second and registers a
    set every interval, so one set holds several generations (capture_spool.py)."""

    generation: int
    salt: Pair | None
    page_size: int
    first_frame: int
    last_frame: int
    seed: Pair | None
    checksum: Pair | None
    commits: tuple[tuple[int, int], ...]
    continuous: bool
    note: str
    file: str | None
    follows: tuple[int, int, int] | None = None
    then: tuple[WalCapture, ...] = ()

    @property
    def empty(self) -> bool:
        return self.last_frame < self.first_frame

    @property
    def chain(self) -> tuple[WalCapture, ...]:
        """This set's records in order: this one, then `then`."""
        return (self, *self.then)

    @property
    def last(self) -> WalCapture:
        """The set's last record: where the next capture resumes."""
        return self.then[-1] if self.then else self

    def to_json(self) -> dict[str, Any]:
        if self.then:
            # A set of several records is a kind of its own, so that a reader that knows
            # only "capture" refuses it instead of reading the first record alone.
            return {"kind": "captures", "records": [r._record_json() for r in self.chain]}
        return self._record_json()

    def _record_json(self) -> dict[str, Any]:
        return {
            "kind": "capture",
            "generation": self.generation,
            "salt": None if self.salt is None else list(self.salt),
            "page_size": self.page_size,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "seed": None if self.seed is None else list(self.seed),
            "checksum": None if self.checksum is None else list(self.checksum),
            # Commits seen by one step share its time: one time per distinct value keeps
            # a step of many thousand commits cheap to write and to read back.
            "commits": _commits_json(self.commits),
            "continuous": self.continuous,
            "note": self.note,
            "file": self.file,
            "follows": None if self.follows is None else list(self.follows),
        }


WalRecord = WalPosition | WalCapture


def _commits_json(commits: tuple[tuple[int, int], ...]) -> list[list[Any]]:
    if not commits:
        return []
    frames, seens = zip(*commits, strict=True)
    if seens.count(seens[0]) == len(seens):
        # One step's commits share its time: the usual case, without a loop per commit
        # (a step at synchronous=NORMAL copies tens of thousands of commits).
        return [[seens[0], list(frames)]]
    out: list[list[Any]] = []
    for frame, seen in commits:
        if out and out[-1][0] == seen:
            out[-1][1].append(frame)
        else:
            out.append([seen, [frame]])
    return out


_U32 = (1 << 32) - 1
_MAX_FRAME = (1 << 62) - 1


def wal_record_from_json(value: object, where: str) -> WalRecord:
    """Parses a manifest's ``wal`` object; CatalogError names `where` and the field."""

    def fail(at: str, expected: str, got: object) -> CatalogError:
        text = repr(got)
        return CatalogError(f"{where}: wal.{at}: expected {expected}, got {text[:60]}")

    if not isinstance(value, dict):
        raise fail("(object)", "an object", value)
    o: dict[str, Any] = value

    def key(name: str) -> object:
        if name not in o:
            raise CatalogError(f"{where}: wal.{name}: missing")
        return o[name]

    def integer(name: str, lo: int = 0, hi: int = _MAX_FRAME) -> int:
        v = key(name)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise fail(name, f"an integer in {lo}..{hi}", v)
        return v

    def pair(name: str) -> Pair | None:
        v = key(name)
        if v is None:
            return None
        if not isinstance(v, list) or len(v) != 2:
            raise fail(name, "null or two 32-bit unsigned integers", v)
        if not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= _U32 for x in v):
            raise fail(name, "null or two 32-bit unsigned integers", v)
        return (v[0], v[1])

    kind = key("kind")
    if kind == "captures":
        return _captures_from_json(key("records"), where)
    page_size = integer("page_size", 0, 65536)
    if kind == "position":
        return WalPosition(
            salt=pair("salt"),
            page_size=page_size,
            frame=integer("frame"),
            checksum=pair("checksum"),
        )
    if kind != "capture":
        raise fail("kind", "'position' or 'capture'", kind)
    commits_raw = key("commits")
    if not isinstance(commits_raw, list):
        raise fail("commits", "a list", commits_raw)
    commits: list[tuple[int, int]] = []
    for i, c in enumerate(commits_raw):
        # [seen_at_us, [frame, ...]]: the commit frames the capture saw at that time.
        # Checked with C-level passes (map/set, zip): one group holds a step's commits,
        # tens of thousands when the writer commits a page at a time.
        good = (
            isinstance(c, list)
            and len(c) == 2
            and type(c[0]) is int
            and isinstance(c[1], list)
            and set(map(type, c[1])) <= {int}
        )
        if not good:
            raise fail(f"commits[{i}]", "[seen_at_us, [frame, ...]]", c)
        commits.extend(zip(c[1], repeat(c[0])))
    continuous, note, file = key("continuous"), key("note"), key("file")
    if not isinstance(continuous, bool):
        raise fail("continuous", "true or false", continuous)
    if not isinstance(note, str):
        raise fail("note", "a string", note)
    if file is not None and (not isinstance(file, str) or not file or "/" in file or file.startswith(".")):
        raise fail("file", "null or a plain file name", file)
    follows_raw = o.get("follows")
    follows: tuple[int, int, int] | None = None
    if follows_raw is not None:
        good = isinstance(follows_raw, list) and len(follows_raw) == 3
        if not good or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in follows_raw):
            raise fail("follows", "null or [salt-1, salt-2, frame]", follows_raw)
        follows = (follows_raw[0], follows_raw[1], follows_raw[2])
    rec = WalCapture(
        follows=follows,
        generation=integer("generation", 0, _U32),
        salt=pair("salt"),
        page_size=page_size,
        first_frame=integer("first_frame", 1),
        last_frame=integer("last_frame"),
        seed=pair("seed"),
        checksum=pair("checksum"),
        commits=tuple(commits),
        continuous=continuous,
        note=note,
        file=file,
    )
    if rec.last_frame < rec.first_frame - 1:
        raise fail(
            "last_frame",
            f"at least first_frame - 1 ({rec.first_frame - 1})",
            rec.last_frame,
        )
    if (file is None) != rec.empty:
        raise fail("file", "a file exactly when the capture holds frames", file)
    frames = [frame for frame, _seen in rec.commits]
    bounded = not frames or (rec.first_frame - 1 < frames[0] and frames[-1] <= rec.last_frame)
    if not bounded or not all(map(lt, frames, islice(frames, 1, None))):
        # The slow walk only to name the first offending commit.
        previous = rec.first_frame - 1
        for i, frame in enumerate(frames):
            if not previous < frame <= rec.last_frame:
                raise fail(
                    f"commits[{i}]",
                    f"a commit frame in {previous + 1}..{rec.last_frame}, ascending",
                    frame,
                )
            previous = frame
    if not rec.empty and (not rec.commits or rec.commits[-1][0] != rec.last_frame):
        raise fail("commits", f"the last commit at last_frame {rec.last_frame}", list(commits))
    if not rec.empty and (rec.salt is None or rec.seed is None or rec.checksum is None):
        raise fail("salt", "salts, seed and checksum for captured frames", rec.salt)
    return rec


def _captures_from_json(raw: object, where: str) -> WalCapture:
    """A set's several capture records: each parsed as one, and each continuing the one
    before it (CatalogError names the record and what does not follow)."""
    if not isinstance(raw, list) or len(raw) < 2:
        text = repr(raw)
        raise CatalogError(f"{where}: wal.records: expected a list of at least two capture records, got {text[:60]}")
    records: list[WalCapture] = []
    for i, item in enumerate(raw):
        at = f"{where}: wal.records[{i}]"
        if not isinstance(item, dict) or item.get("kind") != "capture":
            raise CatalogError(f"{at}: expected a capture record (kind 'capture')")
        rec = wal_record_from_json(item, at)
        assert isinstance(rec, WalCapture)
        if rec.empty or not rec.continuous:
            raise CatalogError(f"{at}: every record of a set of several holds frames and is continuous")
        if records:
            prev = records[-1]
            assert prev.salt is not None
            same = (
                rec.generation == prev.generation
                and rec.salt == prev.salt
                and rec.first_frame == prev.last_frame + 1
                and rec.seed == prev.checksum
                and rec.follows is None
            )
            nxt = (
                rec.generation == prev.generation + 1
                and rec.first_frame == 1
                and rec.follows == (prev.salt[0], prev.salt[1], prev.last_frame)
            )
            if not (same or nxt):
                raise CatalogError(
                    f"{at}: does not continue records[{i - 1}] (generation {prev.generation} frames "
                    f"{prev.first_frame}..{prev.last_frame}): generation {rec.generation}, first_frame "
                    f"{rec.first_frame}, follows {rec.follows}"
                )
            if rec.commits[0][1] < prev.commits[-1][1]:
                raise CatalogError(f"{at}: its first commit was seen before the last one of records[{i - 1}]")
        records.append(rec)
    files = [r.file for r in records]
    if len(set(files)) != len(files):
        raise CatalogError(f"{where}: wal.records: two records name the same file")
    first, *rest = records
    return replace(first, then=tuple(rest))


# --- reading the live WAL --------------------------------------------------------------


@dataclass(frozen=True)
class WalRead:
    """The live WAL read in one generation: `data` is its header and the committed frames
    from `first_frame` on, `scan` the Rust scan of them. `stop`/`stop_kind`/`stop_frame`
    say why the valid run ended, `uncommitted` counts valid frames after the last commit,
    and `following_bytes` what the file holds after the frame that ended the run."""

    data: bytes
    first_frame: int
    scan: _core.WalScan
    stop: str
    stop_kind: str
    stop_frame: int | None
    uncommitted: int
    following_bytes: int
    resumed: bool

    @property
    def committed(self) -> bytes:
        """The header and the committed frames: what a capture stores."""
        return self.data


def _page_size(header: bytes) -> int | None:
    size = int.from_bytes(header[8:12], "big")
    return size if 512 <= size <= 65536 and size & (size - 1) == 0 else None


_CHUNK_FRAMES = 4096


def read_wal(db: Path, resume: tuple[Pair, int, Pair] | None = None) -> WalRead | None:
    """Reads the WAL of `db` as it is now. With `resume` = (salt, frame, checksum) of a
    frame already captured and the same salts in the WAL, reads from the next frame on
    (seeded with `checksum`); otherwise from frame 1. Reads in chunks and stops where the
    valid run ends: the file keeps its size across restarts, so what lies beyond is
    usually an older generation's leftovers. None when there is no WAL or it holds no
    header yet. Raises BackupError when it cannot be read consistently."""
    path = wal_path(db)
    problem = ""
    for _ in range(_READ_ATTEMPTS):
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed below, on every path
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BackupError(f"cannot read the WAL {path}: {exc.strerror or exc}") from exc
        with fh:
            head = fh.read(HEADER_LEN)
            if len(head) < HEADER_LEN:
                return None
            page_size = _page_size(head)
            if page_size is None:
                problem = f"page size field {int.from_bytes(head[8:12], 'big')} is invalid"
                continue
            salt = (
                int.from_bytes(head[16:20], "big"),
                int.from_bytes(head[20:24], "big"),
            )
            resumed = resume is not None and resume[0] == salt
            first, seed = (resume[1] + 1, resume[2]) if resume is not None and resumed else (1, None)
            try:
                got = _read_run(fh, head, page_size, first, seed)
            except BackupError as exc:
                problem = str(exc)
                continue
            fh.seek(0)
            again = fh.read(HEADER_LEN)
            size = os.fstat(fh.fileno()).st_size
        if again != head:
            problem = "the WAL was restarted while it was read"
            continue
        parts, last = got
        data = head + b"".join(parts)
        scan = _core.wal_scan(data, first, seed)
        frame_len = FRAME_HEADER_LEN + page_size
        stop_frame = last.stop_frame
        following = 0 if stop_frame is None else max(0, size - (HEADER_LEN + stop_frame * frame_len))
        return WalRead(
            data=data,
            first_frame=first,
            scan=scan,
            stop=last.stop,
            stop_kind=last.stop_kind,
            stop_frame=stop_frame,
            uncommitted=last.uncommitted,
            following_bytes=following,
            resumed=resumed,
        )
    raise BackupError(f"cannot read the WAL {path} consistently: {problem}")


def _read_run(fh: Any, head: bytes, page_size: int, first: int, seed: Pair | None) -> tuple[list[bytes], _core.WalScan]:
    """The committed frames from `first` on, chunk by chunk, and the last chunk's scan."""
    frame_len = FRAME_HEADER_LEN + page_size
    parts: list[bytes] = []
    at, chunk_frames = first, _CHUNK_FRAMES
    while True:
        fh.seek(HEADER_LEN + (at - 1) * frame_len)
        chunk = fh.read(chunk_frames * frame_len)
        scan = _core.wal_scan(head + chunk, at, seed)
        if scan.last_commit is not None:
            parts.append(chunk[: scan.committed_len - HEADER_LEN])
            at, seed = scan.last_commit + 1, scan.checksum
        if scan.stop_kind != "end" or len(chunk) < chunk_frames * frame_len:
            return parts, scan
        if scan.last_commit is None:
            chunk_frames *= 2  # one transaction longer than the chunk: read more at once


def begin_read(db: Path) -> sqlite3.Connection:
    """A connection holding a read transaction on `db` (its snapshot is fixed until
    `end_read`): the WAL cannot be restarted under it."""
    try:
        # Read-only: such a connection never checkpoints (nor deletes the WAL) when it
        # closes, which would fold frames not yet copied into the database file.
        uri = f"file:{quote(str(db))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open a read transaction on sqlite database {db}: {exc}") from exc
    return conn


def end_read(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("COMMIT")
    except sqlite3.Error:
        pass
    conn.close()


def checkpoint(db: Path) -> tuple[int, int, int]:
    """`PRAGMA wal_checkpoint(PASSIVE)` on a connection of its own: copies what every
    reader allows into the database file, never waits for a writer. (busy, log, done)."""
    try:
        conn = sqlite3.connect(db, timeout=5, isolation_level=None)
        try:
            row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise BackupError(f"checkpoint of sqlite database {db} failed: {exc}") from exc
    return int(row[0]), int(row[1]), int(row[2])


# --- a consistent copy of the live database -------------------------------------------


@dataclass(frozen=True)
class LiveCopy:
    """A file holding the database exactly as of `position`: the live database file
    itself while the read transaction lasts, or a copy in staging."""

    path: Path
    position: WalPosition
    in_place: bool


_CHECKPOINT_TRIES = 5


@dataclass(frozen=True)
class Seal:
    """The WAL with `salt` (and `checkpoint_seq`) had every frame through `frame` (whose
    cumulative checksum is `checksum`) checkpointed into the database file, and no frame
    after it; the database file then had `db_size` bytes and `db_mtime_ns`. A restart of
    that WAL while the database file is still untouched continues from there: restart
    needs every frame checkpointed, and no checkpoint wrote since (capture.py)."""

    salt: Pair
    frame: int
    checksum: Pair
    page_size: int
    checkpoint_seq: int
    db_size: int
    db_mtime_ns: int

    @staticmethod
    def of(
        db: Path,
        salt: Pair,
        frame: int,
        checksum: Pair,
        page_size: int,
        checkpoint_seq: int,
    ) -> Seal:
        st = db.stat()
        return Seal(salt, frame, checksum, page_size, checkpoint_seq, st.st_size, st.st_mtime_ns)

    def db_untouched(self, db: Path) -> bool:
        try:
            st = db.stat()
        except OSError:
            return False
        return (st.st_size, st.st_mtime_ns) == (self.db_size, self.db_mtime_ns)


def write_seal(path: Path, seal: Seal) -> None:
    store.atomic_write_json(
        path,
        {
            "salt": list(seal.salt),
            "frame": seal.frame,
            "checksum": list(seal.checksum),
            "page_size": seal.page_size,
            "checkpoint_seq": seal.checkpoint_seq,
            "db_size": seal.db_size,
            "db_mtime_ns": seal.db_mtime_ns,
        },
    )


def read_seal(path: Path) -> Seal | None:
    """The seal at `path`, or None when there is none or it does not parse."""
    try:
        o = json.loads(path.read_text(encoding="utf-8"))
        salt, checksum = o["salt"], o["checksum"]
        return Seal(
            salt=(int(salt[0]), int(salt[1])),
            frame=int(o["frame"]),
            checksum=(int(checksum[0]), int(checksum[1])),
            page_size=int(o["page_size"]),
            checkpoint_seq=int(o["checkpoint_seq"]),
            db_size=int(o["db_size"]),
            db_mtime_ns=int(o["db_mtime_ns"]),
        )
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


@contextmanager
def live_database(db: Path, staging: Path, seal: Path | None = None) -> Iterator[LiveCopy]:
    """The database as of one commit, readable page by page for as long as the context
    lasts, without first copying it when possible.

    Under a read transaction, a passive checkpoint copies the WAL's frames into the
    database file up to this reader's snapshot and no further (readers pin it). When that
    reaches the WAL's last commit, the file *is* the database at that commit and stays so
    while the transaction lasts: it is read in place. Otherwise (a reader elsewhere holds
    an older snapshot) the file is copied to `staging` and the WAL's frames through the
    last commit are written over the copy: every page a concurrent checkpoint may be
    changing is among them, so the copy is exact either way.
    """
    if not db.is_file():
        raise BackupError(f"sqlite source {db} does not exist or is not a file")
    for _ in range(_CHECKPOINT_TRIES):
        conn = begin_read(db)
        try:
            wal = read_wal(db)
            if wal is None:
                yield LiveCopy(db, WalPosition(None, _db_page_size(db), 0, None), True)
                return
            scan = wal.scan
            last = scan.last_commit or 0
            _busy, _log, done = checkpoint(db)
            after = read_wal(db)
            same = after is not None and after.scan.salt == scan.salt
            if same and done == last and _file_holds(db, wal):
                position = WalPosition(
                    scan.salt,
                    scan.page_size,
                    last,
                    scan.checksum if last else scan.header_checksum,
                )
                if seal is not None and last:
                    tail = read_wal(db, (scan.salt, last, scan.checksum))
                    if tail is not None and tail.resumed and not tail.scan.frames and not tail.uncommitted:
                        write_seal(
                            seal,
                            Seal.of(
                                db,
                                scan.salt,
                                last,
                                scan.checksum,
                                scan.page_size,
                                scan.checkpoint_seq,
                            ),
                        )
                yield LiveCopy(db, position, True)
                if not _file_holds(db, wal):
                    raise BackupError(
                        f"sqlite database {db} changed under its read transaction while it was copied; "
                        "nothing was registered, try again"
                    )
                return
        finally:
            end_read(conn)
    # Pinned by another reader: copy the file, then the frames over it.
    conn = begin_read(db)
    try:
        wal = read_wal(db)
        copy = staging / f".snapshot-{db.name}"
        _copy_file(db, copy)
        if wal is None or wal.scan.last_commit is None:
            salt = None if wal is None else wal.scan.salt
            seed = None if wal is None else wal.scan.header_checksum
            page = _db_page_size(db) if wal is None else wal.scan.page_size
            position = WalPosition(salt, page, 0, seed)
        else:
            _core.wal_apply(copy, wal.data, after=0, through=wal.scan.last_commit)
            position = WalPosition(
                wal.scan.salt,
                wal.scan.page_size,
                wal.scan.last_commit,
                wal.scan.checksum,
            )
        log.info(
            "%s: pinned by another reader; copied and brought to WAL frame %d",
            db,
            position.frame,
        )
        yield LiveCopy(copy, position, False)
    finally:
        end_read(conn)


def _file_holds(db: Path, wal: WalRead) -> bool:
    """Whether the database file holds exactly the WAL's committed state: the size of the
    last commit, and for every page in the WAL its newest committed version. Checked, not
    trusted: a checkpoint that reports every frame copied has been seen to leave the
    file a page short while the writer extends it."""
    scan = wal.scan
    if scan.last_commit is None:
        return True
    size = scan.page_size
    frame_len = FRAME_HEADER_LEN + size
    newest: dict[int, int] = {}
    for index, page, _ in scan.frames:
        newest[page] = index
    db_pages = scan.frames[-1][2]
    try:
        with open(db, "rb") as fh:
            if os.fstat(fh.fileno()).st_size != db_pages * size:
                return False
            for page, index in newest.items():
                if page > db_pages:
                    continue
                at = HEADER_LEN + (index - wal.first_frame) * frame_len + FRAME_HEADER_LEN
                if os.pread(fh.fileno(), size, (page - 1) * size) != wal.data[at : at + size]:
                    return False
    except OSError:
        return False
    return True


def _copy_file(src: Path, dest: Path) -> None:
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        while chunk := fin.read(1 << 20):
            fout.write(chunk)


def _db_page_size(db: Path) -> int:
    with open(db, "rb") as fh:
        head = fh.read(100)
    if len(head) < 100 or not head.startswith(b"SQLite format 3\0"):
        return 0
    n = int.from_bytes(head[16:18], "big")
    return 65536 if n == 1 else n


__all__ = [
    "LiveCopy",
    "Seal",
    "WalCapture",
    "WalPosition",
    "WalRead",
    "WalRecord",
    "begin_read",
    "checkpoint",
    "end_read",
    "live_database",
    "read_seal",
    "read_wal",
    "wal_header",
    "wal_path",
    "wal_record_from_json",
    "write_seal",
]
