"""The fast path of ``rustybackup archive-get``: PostgreSQL runs its restore_command once
per WAL file during recovery, and after a restore to a time most of those calls are
either taken from the restore's staging directory by the generated command line (they
never get here) or are probes for a file the archive does not have (the history file of
the next timeline, asked once when recovery starts and again when it ends). Two answers
need neither click, the engine nor the manifest code, so they are given here:

- the file waits in the database's spool (pushed, not sealed yet): it is copied beside
  the destination and renamed into place, as ``archive.get`` does first;
- the archive has no file of that name (not in the spool, and the catalog places it in
  no set): exit 1 without a message, the end-of-archive answer PostgreSQL expects. The
  spool is looked at before the catalog, as ``archive.get`` does: a seal registers its
  set before it removes the spool copies, so a file is always in one of the two.

Anything else returns None and the full command answers as it always has: a file sealed
into a set (read and checked through the engine), a remote repository or a shared
catalog, a database the catalog does not know as a postgresql one, a name that is no
WAL file name, any error. The installed ``rustybackup`` command gives the spool answer
itself, by this module's rule (`from_spool`), before it starts Python at all.
"""

from __future__ import annotations

import os

from .archive_fast import local_command

# As in archive_fast: paths are strings, and nothing heavier than os is imported before
# an answer is known (the catalog module only for the absent answer).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

_HEX = frozenset("0123456789ABCDEF")
_SENDFILE_CHUNK = 1 << 30
# store.CATALOG_FILE, not imported: store loads more than this whole answer needs (the
# test holds the two equal).
CATALOG_FILE = "catalog.db"


def is_wal_name(name: str) -> bool:
    """wal.is_archive_name without its regular expressions (the property test holds the
    two to the same answers): a segment, a timeline history, a backup history or a
    partial segment."""

    def hex_run(s: str, n: int) -> bool:
        return len(s) == n and _HEX.issuperset(s)

    if hex_run(name, 24):
        return True
    if name.endswith(".history"):
        return hex_run(name[: -len(".history")], 8)
    if name.endswith(".partial"):
        return hex_run(name[: -len(".partial")], 24)
    if name.endswith(".backup"):
        stem = name[: -len(".backup")]
        return len(stem) == 33 and stem[24] == "." and hex_run(stem[:24], 24) and hex_run(stem[25:], 8)
    return False


def parse(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[str, str, str, str] | None:
    """(repository, database, WAL name, destination) of exactly
    ``[--repo R] archive-get NAME WALNAME DEST`` with a local repository and no shared
    catalog; None for every other command line."""
    line = local_command(argv, environ, "archive-get", 4)
    if line is None:
        return None
    repo, (database, name, dest) = line
    if not is_wal_name(name) or not dest or dest.endswith("/") or dest.startswith("-") or "\0" in dest:
        return None
    return repo, database, name, dest


def from_spool(argv: Sequence[str], environ: Mapping[str, str]) -> int | None:
    """0 when the command line asks for a file waiting in the spool and it was written to
    its destination; None otherwise (nothing written)."""
    parsed = parse(argv, environ)
    if parsed is None:
        return None
    repo, database, name, dest = parsed
    return _copy_into(os.path.join(repo, "wal", database, name), dest)


def answer(argv: Sequence[str], environ: Mapping[str, str]) -> int | None:
    """The exit code for command line `argv` (without the program name) if the fast path
    settles it, else None."""
    parsed = parse(argv, environ)
    if parsed is None:
        return None
    repo, database, name, dest = parsed
    spooled = os.path.join(repo, "wal", database, name)
    done = _copy_into(spooled, dest)
    if done is not None:
        return done
    if not os.path.exists(os.path.join(repo, "format")):
        return None  # the full command names what is wrong
    try:
        return 1 if _absent(repo, database, name) and not os.path.lexists(spooled) else None
    except Exception:  # noqa: BLE001 - any doubt: the full command answers, with its message
        return None


def _absent(repo: str, database: str, name: str) -> bool:
    """Whether the catalog knows `database` as a postgresql database and places no file
    `name` in any of its sets. Read with sqlite3 alone, read-only: the catalog module
    (its imports, the schema check on open) cost ~80% of this answer (96 ms a call on a
    quiet machine, against pgBackRest's 12), and two such probes start every recovery.
    The two queries are catalog.py's `get_database(...).kind` and `archive_file`, over
    its schema (tests/test_archive_get_fast.py holds them to those methods' answers)."""
    path = os.path.join(repo, CATALOG_FILE)
    if not os.path.isfile(path):
        return False  # a lost catalog is rebuilt by the engine, not here
    import sqlite3

    # mode=ro: never creates, migrates or writes the catalog; a catalog this cannot read
    # (locked past the timeout, another schema) raises, and the full command answers.
    # (urllib.parse's quote would cost 12 ms to import: SQLite's URI needs only these.)
    uri = path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
    conn = sqlite3.connect(f"file:{uri}?mode=ro", uri=True, timeout=60)
    try:
        # One read transaction: both answers from the same state of the catalog.
        conn.execute("BEGIN")
        kind = conn.execute("SELECT kind FROM databases WHERE name = ?", (database,)).fetchall()
        if kind != [("postgresql",)]:
            return False
        found = conn.execute("SELECT 1 FROM archive_files WHERE database = ? AND name = ?", (database, name)).fetchall()
        return not found
    finally:
        conn.close()


def _copy_into(source: str, dest: str) -> int | None:
    """Copies `source` to a temporary file beside `dest` and renames it into place: 0, or
    None when `source` cannot be opened or anything fails (nothing left behind)."""
    try:
        fin = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    head, tail = os.path.split(dest)
    tmp = os.path.join(head, f".{tail}.rb-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        fout = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError:
        os.close(fin)
        return None
    try:
        try:
            offset = 0
            while sent := os.sendfile(fout, fin, offset, _SENDFILE_CHUNK):
                offset += sent
            if offset != os.fstat(fin).st_size:
                raise OSError("short copy")
        finally:
            os.close(fout)
            os.close(fin)
        os.replace(tmp, dest)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return None
    return 0
