"""The fast path of ``rustybackup archive-get``: PostgreSQL runs its restore_command once
per WAL file during recovery, and after a restore to a time most of those calls are
either taken from the restore's staging directory by the generated command line (they
never get here) or are probes for a file the archive does not have (the history file of
the next timeline, asked once when recovery starts and again when it ends). Three answers
need neither click, the engine nor the manifest code, so they are given here:

- the file waits in the database's spool (pushed, not sealed yet): it is copied beside
  the destination and renamed into place, as ``archive.get`` does first;
- the archive has no file of that name (not in the spool, and the catalog places it in
  no set): exit 1 without a message, the end-of-archive answer PostgreSQL expects. The
  spool is looked at before the catalog, as ``archive.get`` does: a seal registers its
  set before it removes the spool copies, so a file is always in one of the two. The
  catalog is read with sqlite3 alone (`_lookup`);
- the file is sealed into a set of a plain (unencrypted) repository: the native module
  reads it from the set's pieces and checks every block and the whole file against the
  catalog's digest (`_from_set`).

Anything else returns None and the full command answers as it always has: a remote
repository or a shared catalog, an encrypted repository, a database the catalog does
not know as a postgresql one, a name that is no WAL file name, a damaged set (the full
command names the file and the offset), any error. The installed ``rustybackup``
command gives the spool answer itself, by this module's rule (`from_spool`), before it
starts Python at all.
"""

from __future__ import annotations

import os

from .archive_fast import local_command

# As in archive_fast: paths are strings, and nothing heavier than os is imported before
# an answer is known (sqlite3 for the catalog, json for a sealed file's manifest).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

_HEX = frozenset("0123456789ABCDEF")
_SENDFILE_CHUNK = 1 << 30
# store's, keys' and manifest's names, not imported: those modules load more than this
# whole answer needs (the test holds them equal).
CATALOG_FILE = "catalog.db"
SETS_DIR = "sets"
MANIFEST = "manifest.json"
KEYS_DIR = "keys"
_READ_FORMATS = (1, 2, 3, 4)
_MANIFEST_MAX = 16 << 20


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
        known = _lookup(repo, database, name)
        if known is None:
            return 1 if not os.path.lexists(spooled) else None
        return _from_set(repo, name, known[0], known[1], dest)
    except Exception:  # noqa: BLE001 - any doubt: the full command answers, with its message
        return None


class _Defer(Exception):
    """This path cannot answer: the full command does (and names what is wrong)."""


def _lookup(repo: str, database: str, name: str) -> tuple[str, str] | None:
    """(digest, set id) of `name` as the catalog places it in a set of postgresql
    database `database`, or None when it places it in none; _Defer when the catalog is
    missing or does not know `database` as a postgresql database.

    Read with sqlite3 alone, read-only: the catalog module (its imports, the schema check
    on open) cost ~80% of an absent file's answer (96 ms a call on a quiet machine,
    against pgBackRest's 12), and two such probes start every recovery. The two queries
    are catalog.py's `get_database(...).kind` and `archive_file`, over its schema
    (tests/test_archive_get_fast.py holds them to those methods' answers)."""
    path = os.path.join(repo, CATALOG_FILE)
    if not os.path.isfile(path):
        raise _Defer("no catalog")  # a lost catalog is rebuilt by the engine, not here
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
            raise _Defer("not a postgresql database")
        rows = conn.execute(
            "SELECT digest, set_id FROM archive_files WHERE database = ? AND name = ?", (database, name)
        ).fetchall()
    finally:
        conn.close()
    if not rows:
        return None
    ((digest, set_id),) = rows
    return str(digest), str(set_id)


def _plain_name(text: object) -> str:
    """`text` if it is one plain path component (a set id or piece name from the catalog
    or a manifest), else _Defer: nothing read from disk names a path outside the
    repository."""
    if not isinstance(text, str) or not text or text.startswith(".") or "/" in text or "\0" in text:
        raise _Defer(f"not a plain name: {text!r}")
    return text


def _from_set(repo: str, name: str, digest: str, set_id: str, dest: str) -> int:
    """0 once `name`, sealed into set `set_id` with `digest` (the catalog's), is written
    to `dest`: read and checked by the native module (every block against the block
    map, the whole file against the catalog's digest), without click, the engine or the
    manifest module (167 ms a call on a quiet machine, against pgBackRest's 27).
    _Defer (or any error) for whatever it does not take on: an encrypted repository,
    a manifest not as the plain reader below expects, a damaged block (the full command
    then reports it, naming the file and the offset).

    No reader lock: a set deleted meanwhile fails a read here (its files are gone) and
    the full command answers from the catalog as it is then; what is written is never
    other than the catalog's bytes, as their digests are checked."""
    if os.path.lexists(os.path.join(repo, KEYS_DIR)):
        raise _Defer("an encrypted repository: the keys are the full command's")
    import json

    set_dir = os.path.join(repo, SETS_DIR, _plain_name(set_id))
    with open(os.path.join(set_dir, MANIFEST), "rb") as fh:
        # A manifest lists the files of one set of at most a group of WAL files (64 by
        # default); bounded anyway, as anything read from disk.
        raw = fh.read(_MANIFEST_MAX + 1)
    if len(raw) > _MANIFEST_MAX:
        raise _Defer("a manifest larger than a WAL group's")
    from .. import _core

    # Format 4's own checksum, as manifest.load checks it: a changed byte goes to the
    # full command, which names it.
    summed = _core.manifest_sum_check(raw)
    if summed is not None and summed[0] != summed[1]:
        raise _Defer("a manifest whose bytes do not match its checksum")
    doc = json.loads(raw)
    if not isinstance(doc, dict) or doc.get("format") not in _READ_FORMATS:
        raise _Defer("not a manifest format this path reads")
    if doc["format"] >= 4 and summed is None:
        raise _Defer("a format-4 manifest without its checksum")
    entry = next((f for f in doc["files"] if isinstance(f, dict) and f.get("path") == name), None)
    if entry is None or entry.get("digest") != digest:
        raise _Defer("the manifest does not list the file as the catalog does")
    first, count, size = entry["first_block"], entry["block_count"], entry["size"]
    if not all(type(v) is int and v >= 0 for v in (first, count, size)):
        raise _Defer("a file entry out of range")
    sources = [os.path.join(repo, SETS_DIR, _plain_name(s["set_id"]), _plain_name(s["piece"])) for s in doc["sources"]]
    blockmap = doc["blockmap"]["path"]
    if not isinstance(blockmap, str) or blockmap.startswith("/") or ".." in blockmap.split("/"):
        raise _Defer("a block map path outside the repository")
    head, tail = os.path.split(dest)
    tmp = os.path.join(head, f".{tail}.rb-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        _core.restore_files([(name, tmp, first, count, size, digest)], os.path.join(repo, blockmap), sources)
        os.replace(tmp, dest)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return 0


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
