"""``archive-push`` and ``archive-get`` on a remote repository (``s3://bucket/prefix``).

archive_command may exit 0 only once the segment is durable in the repository, and for
a remote repository that is the bucket: the spool the local push writes lives in the
repository's local cache, which a lost host takes with it. So every push is sealed into
an ARCHIVE_LOG set of its own and uploaded (manifest last, conditional create) before
the command returns; the grouping of local pushes (``GROUP_SEGMENTS``) and the push
ahead of ``.ready`` files (which would report files archived that are only in the
cache) are not used. A push cut between its spool copy and its upload leaves the file in
the spool; the next push seals it first, so it reaches the bucket before anything newer.

archive-get fetches the piece of the set that holds the file into the cache, restores
the file from it, and drops the piece again: recovery asks for thousands of segments,
one call each, and the cache must not grow by the archive's size.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING

from .. import manifest, store
from ..errors import ConfigError
from . import archive

if TYPE_CHECKING:
    from ..engine import BackupManager

__all__ = ["get", "push"]


def _remote(manager: BackupManager) -> None:
    if manager.remote is None:
        raise ConfigError(f"{manager.repository}: not a remote repository (use rustybackup.postgres.archive)")


def push(manager: BackupManager, database: str, source: str | os.PathLike[str]) -> archive.PushResult:
    """archive_command for a remote repository: returns once `source` is in the bucket
    (or was already archived with the same content); ArchiveMismatch as locally."""
    _remote(manager)
    archive.seal_if_due(manager, database, force=True)
    result = archive.push(manager, database, source, seal=False, ahead=False)
    sealed = archive.seal_if_due(manager, database, force=True)
    return replace(result, sealed=sealed)


def get(manager: BackupManager, database: str, name: str, dest: str | os.PathLike[str]) -> str:
    """restore_command for a remote repository; NotArchived when the archive lacks `name`."""
    _remote(manager)
    remote = manager.remote
    assert remote is not None
    known = manager.catalog.archive_file(database, name)
    if known is None:
        # A push cut before its upload left it in this host's spool: still served.
        return archive.get(manager, database, name, dest)
    set_id = known[1]
    m = manifest.load(manager.repo.set_dir(set_id) / store.MANIFEST, set_id=set_id)
    remote.fetch_chain(manager.repo, m, with_pieces=True)
    try:
        return archive.get(manager, database, name, dest)
    finally:
        remote.trim(manager.repo, set_id)
