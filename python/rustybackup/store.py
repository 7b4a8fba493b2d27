"""The repository directory: its layout, the format file, atomic writes and the sweep
of what a crash left behind (docs/FORMAT.md)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from . import locks
from .errors import CatalogError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
FORMAT_WORD = "rustybackup-repository"
FORMAT_FILE = "format"
CATALOG_FILE = "catalog.db"
SETS_DIR = "sets"
STAGING_DIR = "staging"
TRASH_DIR = "trash"
MANIFEST = "manifest.json"
PIECE = "data.piece"
BLOCKMAP = "blockmap"


def check_set_id(set_id: object) -> str:
    """`set_id` when it has the documented form ``YYYYmmddTHHMMSSffffffZ-<8 hex>``, else
    a CatalogError. Every path built from a set id goes through here, so no id (from a
    manifest, a catalog row or a command line) can name a path outside the repository."""
    # manifest.py owns the form (and imports this module, hence here).
    from .manifest import is_set_id

    if not is_set_id(set_id):
        shown = repr(set_id) if len(repr(set_id)) <= 60 else repr(set_id)[:57] + "..."
        raise CatalogError(f"{shown} is not a backup set id (YYYYmmddTHHMMSSffffffZ-<8 hex>)")
    assert isinstance(set_id, str)
    return set_id


def fsync_dir(path: Path) -> None:
    """Makes a rename or create inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_writer(path: Path, mode: int = 0o666) -> Iterator[BinaryIO]:
    """The one way the package replaces a file: yields a new temporary sibling to write;
    on a clean exit it is fsynced, renamed over ``path`` and the directory fsynced, so a
    reader (or a crash) sees the old or the new content, never a mix. On an error the
    temporary file is removed and ``path`` is untouched. ``mode`` is masked by the umask.

    The temporary name is unique per call (two threads may write the same file) and
    matches the sweep's ``.*.tmp-*`` pattern, so a crash leaves nothing for good."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o666) -> None:
    """``atomic_writer`` of a whole document."""
    with atomic_writer(path, mode) as fh:
        fh.write(data)


def atomic_write_json(path: Path, data: Any) -> None:
    """``atomic_write_bytes`` of an indented JSON document."""
    atomic_write_bytes(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


def durable_json_text(data: Any) -> str:
    """The text `write_durable_json` writes for `data`."""
    # One line: json's C encoder runs only without indent (a 20,000-file manifest took
    # ~1 s through the pure-Python one).
    return json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n"


def write_durable_json(path: Path, data: Any) -> None:
    """Writes a new file and fsyncs it (its directory is fsynced by the caller's rename)."""
    write_durable_bytes(path, durable_json_text(data).encode())


def write_durable_bytes(path: Path, data: bytes) -> None:
    """`write_durable_json` of a document already encoded."""
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


class Repository:
    """A repository directory: opened or created, format checked."""

    def __init__(self, root: str | os.PathLike[str], create: bool = True) -> None:
        self.root = Path(root).absolute()
        if self.root.exists() and not self.root.is_dir():
            raise CatalogError(f"repository {self.root} is not a directory")
        fmt = self.root / FORMAT_FILE
        if fmt.exists():
            self._check_format(fmt)
        elif self.root.exists() and any(self.root.iterdir()):
            raise CatalogError(
                f"{self.root} is not a rustybackup repository (no {FORMAT_FILE} file, and the directory is not empty)"
            )
        elif not create:
            raise CatalogError(f"no repository at {self.root}; run `rustybackup init` first")
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(fmt, f"{FORMAT_WORD} {FORMAT_VERSION}\n".encode())
            log.info("created repository %s", self.root)
        for sub in (SETS_DIR, STAGING_DIR, TRASH_DIR):
            (self.root / sub).mkdir(exist_ok=True)

    @staticmethod
    def _check_format(fmt: Path) -> None:
        text = fmt.read_text(encoding="utf-8", errors="replace").strip()
        parts = text.split()
        if len(parts) != 2 or parts[0] != FORMAT_WORD or not parts[1].isdigit():
            raise CatalogError(f"{fmt}: unrecognised repository format {text[:60]!r}")
        version = int(parts[1])
        # 2: an encrypted repository (keys.py; docs/FORMAT.md "Encryption"), so that a
        # build without encryption refuses it instead of misreading it.
        if version not in (FORMAT_VERSION, 2):
            newer = "newer than" if version > FORMAT_VERSION else "different from"
            raise CatalogError(
                f"{fmt}: repository format version {version} is {newer} the version this rustybackup "
                f"reads ({FORMAT_VERSION}); use a matching rustybackup release"
            )

    @property
    def catalog_path(self) -> Path:
        return self.root / CATALOG_FILE

    def set_dir(self, set_id: str) -> Path:
        return self.root / SETS_DIR / check_set_id(set_id)

    def staging_dir(self, set_id: str) -> Path:
        return self.root / STAGING_DIR / check_set_id(set_id)

    def manifests(self) -> Iterable[Path]:
        """The manifest of every directory in ``sets/`` (whatever its name: a rebuild
        reports the odd ones), oldest id first. Symbolic links are not followed."""
        sets = self.root / SETS_DIR
        for d in sorted(sets.iterdir()):
            if d.is_symlink() or not d.is_dir():
                continue
            m = d / MANIFEST
            if m.is_file() and not m.is_symlink():
                yield m

    def publish(self, set_id: str) -> Path:
        """Renames a finished staging directory into ``sets/`` durably."""
        staging = self.staging_dir(set_id)
        fsync_dir(staging)
        final = self.set_dir(set_id)
        os.rename(staging, final)
        fsync_dir(final.parent)
        return final

    def discard(self, set_id: str) -> None:
        """Moves a committed set's files to ``trash/`` and removes them."""
        src = self.set_dir(set_id)
        if not src.exists():
            return
        dst = self.root / TRASH_DIR / set_id
        os.rename(src, dst)
        shutil.rmtree(dst, ignore_errors=True)

    def sweep(
        self,
        known_set_ids: Collection[str],
        busy: Callable[[Path], bool] = lambda _: False,
        tombstones: Collection[str] = (),
        resumable: Callable[[Path], bool] = lambda _: False,
    ) -> list[str]:
        """Removes what interrupted work left: everything in ``staging/`` and ``trash/``,
        and the set directories the catalog does not know that hold no manifest, that
        were never registered (their ``.lock`` is still there: it goes only after the
        commit) or that the catalog deleted (a tombstone). A set directory with a
        manifest is never removed otherwise, whatever the catalog says: a lost or empty
        catalog must not cost a set. Directories for which `busy` is true (a backup in
        another thread or process holds their lock) are left alone, and no symbolic
        link is followed: a linked ``staging/``, ``trash/`` or ``sets/`` is skipped, a
        link inside them is removed, never what it points to. Returns what was removed,
        relative to the repository."""
        removed: list[str] = []
        for sub in (STAGING_DIR, TRASH_DIR, SETS_DIR):
            top = self.root / sub
            if top.is_symlink() or not top.is_dir():
                log.warning("cleanup leaves %s alone: it is a symbolic link or not a directory", top)
                continue
            for entry in sorted(top.iterdir()):
                linked = entry.is_symlink()
                if sub == SETS_DIR and not linked:
                    if entry.name in known_set_ids or busy(entry) or self._keep(entry, tombstones):
                        continue
                elif not linked and busy(entry):
                    continue
                elif sub == STAGING_DIR and not linked and resumable(entry):
                    # A stopped backup's finished files, kept for its next run (resume.py).
                    continue
                _remove(entry)
                removed.append(f"{sub}/{entry.name}")
        for entry in self.root.glob(".*.tmp-*"):
            # A young one may be an atomic_writer's file still being written (a scheduler
            # saving its configuration beside a backup's cleanup): only old ones are leftovers.
            if _young(entry):
                continue
            _remove(entry)
            removed.append(entry.name)
        if removed:
            log.warning("cleanup removed %d leftover(s) of interrupted work: %s", len(removed), ", ".join(removed))
        return removed

    @staticmethod
    def _keep(entry: Path, tombstones: Collection[str]) -> bool:
        """Whether an unknown entry of ``sets/`` may hold a set that must stay."""
        if not entry.is_dir() or entry.name in tombstones:
            return False
        if not (entry / MANIFEST).exists() or (entry / locks.STAGING_LOCK).exists():
            return False
        log.warning(
            "cleanup keeps %s: it holds a manifest the catalog does not know and no tombstone deleted it "
            "(a copied set directory, or a catalog that lost it: `rebuild` registers it)",
            entry,
        )
        return True


def _young(path: Path) -> bool:
    try:
        return time.time() - path.lstat().st_mtime < locks.YOUNG_SECONDS
    except FileNotFoundError:
        return True  # gone already: its writer renamed it into place


def _remove(path: Path) -> None:
    """Removes a file, a link (never what it points to) or a directory tree (rmtree
    does not follow the links inside it)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
