"""The fast path of ``rustybackup archive-push``: PostgreSQL starts the command once per
WAL file, and most calls ask for a file that an earlier push already archived ahead
(``archive.push_ahead``). Those are answered here, before click, the catalog or the
engine are imported: the spool holds a file of that name, and its bytes are the
source's bytes, so it is archived (the earlier push checked the database and the
catalog; the spool copy was fsynced before it was linked). The spool directory is
fsynced before the success is reported, as the full push does for a repeated file.

Anything else (another option, a remote repository or shared catalog, a name the spool
lacks, other content under the name, any error) returns None, and the full command runs
and answers exactly as it always has, refusal and error messages included.
"""

from __future__ import annotations

import os

# Paths are strings and the abstract types are the checker's only: pathlib and
# collections.abc cost more to import than this whole answer. Type checkers read any
# TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

_CHUNK = 1 << 18
_HEX = frozenset("0123456789ABCDEF")


def answer(argv: Sequence[str], environ: Mapping[str, str]) -> int | None:
    """The exit code for command line `argv` (without the program name) if the fast path
    settles it, else None."""
    parsed = _parse(argv, environ)
    if parsed is None:
        return None
    repo, database, source = parsed
    spool = os.path.join(repo, "wal", database)
    try:
        if not _same_bytes(source, os.path.join(spool, os.path.basename(source))):
            return None
        # The name may have been linked by a push that died before its directory fsync.
        fd = os.open(spool, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        return None
    return 0


def local_command(
    argv: Sequence[str], environ: Mapping[str, str], verb: str, nargs: int
) -> tuple[str, list[str]] | None:
    """(repository, arguments after the verb's database) of exactly
    ``[--repo R] VERB NAME ARG...`` (``nargs`` words from the verb on) with a local
    repository, no shared catalog and a database name that is one plain path component;
    None for every other command line. The fast paths of archive-push and archive-get
    both answer only such a line."""
    args = list(argv)
    repo = environ.get("RUSTYBACKUP_REPO") or None
    if args[:1] == ["--repo"] and len(args) >= 2:
        repo, args = args[1], args[2:]
    elif args and args[0].startswith("--repo="):
        repo, args = args[0][len("--repo=") :], args[1:]
    if len(args) != nargs or args[0] != verb or not repo or "://" in repo:
        return None
    if environ.get("RUSTYBACKUP_CATALOG"):
        return None
    database = args[1]
    # A database name that is not one plain path component never names a spool here.
    if not database or database.startswith((".", "-")) or "/" in database or "\0" in database:
        return None
    return repo, args[1:]


def _parse(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[str, str, str] | None:
    """(repository, database, source) of exactly ``[--repo R] archive-push NAME PATH``
    with a local repository and no shared catalog; None for every other command line."""
    line = local_command(argv, environ, "archive-push", 3)
    if line is None:
        return None
    repo, (database, source) = line
    # Only a name the full push accepted (wal.is_archive_name) is ever in the spool, so
    # this guard need only keep the spool's own dot files (locks, temporaries) from
    # matching; importing wal.py (dataclasses, re) would cost more than the whole answer.
    name = os.path.basename(source)
    if len(name) < 16 or not _HEX.issuperset(name[:8]):
        return None
    return repo, database, source


def _same_bytes(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether files `a` and `b` hold the same bytes (False when `b` does not exist)."""
    try:
        fb = open(b, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        return False
    with fb, open(a, "rb") as fa:
        if os.fstat(fa.fileno()).st_size != os.fstat(fb.fileno()).st_size:
            return False
        buf_a, buf_b = bytearray(_CHUNK), bytearray(_CHUNK)
        while True:
            # A buffered readinto fills the buffer unless the file ends first.
            n, m = fa.readinto(buf_a), fb.readinto(buf_b)
            if n != m:
                return False
            if n < _CHUNK:
                return buf_a[:n] == buf_b[:n]
            # Whole buffers compare with memcmp and allocate nothing: slicing them (a new
            # chunk-sized object, page-faulted in, per buffer per chunk) cost 5-10x the
            # reads on a busy machine.
            if buf_a != buf_b:
                return False
