"""Waiting at the end of a base backup for the WAL it needs, in our own archive.

``pg_backup_stop(wait_for_archive => true)`` polls the server's archive status once a
second (``pg_usleep(1000000L)`` in xlog.c ``do_pg_backup_stop``), so every backup paid up
to a second after its last file was archived, and usually two polls. pgBackRest stops
without waiting and checks its own repository for the WAL instead (``archive-check``);
so does a backup here: the stop segment and the backup history file, checked in the
spool or the catalog every `POLL_SECONDS`. The archiver hands over files in order, so
the stop segment archived means every segment from the start LSN is archived too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import BackupError
from .archive import spool_dir
from .wal import format_lsn, segment_name

if TYPE_CHECKING:
    from ..engine import BackupManager

log = logging.getLogger(__name__)

# The stop segment arrives one archive_command run after pg_backup_stop (80-90 ms here:
# the command's interpreter start, the copy, its fsyncs; the history file pushed ahead
# with it): a 50 ms poll made that a 100 ms wait. A look is a stat and, once the spool
# is sealed, one catalog query.
POLL_SECONDS = 0.01
# PostgreSQL itself waits without limit (warning each minute); a backup here fails
# cleanly, naming the file, instead of holding its session open for ever.
WAIT_SECONDS = 600.0


def needed_files(start_lsn: int, stop_lsn: int, timeline: int, segment_size: int) -> list[str]:
    """The files ``pg_backup_stop(true)`` would wait for: the segment holding the byte
    before the stop LSN (XLByteToPrevSeg) and the backup history file
    (BackupHistoryFileName: start segment and the start's offset in it)."""
    last = segment_name(timeline, (stop_lsn - 1) // segment_size, segment_size)
    first = segment_name(timeline, start_lsn // segment_size, segment_size)
    return [last, f"{first}.{start_lsn % segment_size:08X}.backup"]


def is_archived(manager: BackupManager, database: str, name: str) -> bool:
    """Whether `name` is in the archive of `database`: waiting in the spool (durable
    once there) or in a registered set."""
    if (spool_dir(manager.repository, database) / name).exists():
        return True
    return manager.catalog.archive_file(database, name) is not None


def wait_archived(
    names: list[str],
    archived: Callable[[str], bool],
    database: str,
    stop_lsn: int,
    *,
    timeout: float = WAIT_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Returns once every one of `names` is archived; raises BackupError naming the
    first that is not after `timeout` seconds."""
    deadline = clock() + timeout
    waiting = list(names)
    while waiting:
        waiting = [n for n in waiting if not archived(n)]
        if not waiting:
            return
        if clock() >= deadline:
            raise BackupError(
                f"{database!r}: {waiting[0]} (needed up to the backup's stop LSN {format_lsn(stop_lsn)}) "
                f"was not archived within {timeout:.0f} s; is archive_command failing? (the server log says)"
            )
        sleep(POLL_SECONDS)
    log.debug("WAL up to %s of %s archived", format_lsn(stop_lsn), database)
