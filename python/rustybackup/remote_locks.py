"""Locks of remote repositories (re-exported by `locks`, the owner of every lock).

A remote repository has no flock, so its locks are objects, restic's model:
``locks/<uuid>.json`` names the holder's host and pid, its purpose (``exclusive`` or
``shared``), when it was created and when it expires. The holder's process rewrites it
with a later expiry every third of its time to live (a background task in the Rust storage
layer); a lock whose expiry passed is stale and is taken over (deleted) by the next process
that wants the repository, never earlier. Shared locks (backups, restores, verification)
coexist; an exclusive one (retention, cleanup, sweeping) excludes every other lock.

Expiry is read on this host's clock, as restic does: hosts whose clocks differ by more than
a lock's time to live can take each other's live locks, so keep clocks in sync (NTP).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Literal

from . import _core
from .errors import RepositoryLocked

log = logging.getLogger(__name__)

LOCKS_DIR = "locks"
# restic's stale-lock age is 30 minutes with refreshes every 5; ours refreshes every third
# of the time to live, so a holder survives two missed refreshes (a slow network) before
# anyone may take its lock.
DEFAULT_TTL_SECONDS = 300.0

Purpose = Literal["exclusive", "shared"]


def remote_lock(
    store: _core.ObjectStore, purpose: Purpose, ttl_seconds: float = DEFAULT_TTL_SECONDS
) -> _core.RemoteLock:
    """Takes a lock object on `store`; use it as a context manager (``with remote_lock(...)``),
    which releases it on exit. Raises `RepositoryLocked` naming a live conflicting holder."""
    lock = store.lock(purpose, ttl_seconds)
    log.debug("took %s lock %s on %s", purpose, lock.key, store.url)
    return lock


def live_locks(store: _core.ObjectStore, now: datetime | None = None) -> list[_core.LockInfo]:
    """The locks that hold at `now` (default: this host's clock)."""
    when = now or datetime.now(UTC)
    return [lk for lk in store.list_locks() if lk.live(when)]


def check_unlocked(store: _core.ObjectStore, own: _core.RemoteLock | None = None, now: datetime | None = None) -> None:
    """Raises `RepositoryLocked` if any live lock other than `own` exists: what retention
    and cleanup call before deleting anything from a remote repository."""
    own_key = own.key if own is not None else None
    for lk in live_locks(store, now):
        if lk.key != own_key:
            raise RepositoryLocked(
                f"{store.url}: {lk.purpose} lock {lk.id} held by {lk.host} pid {lk.pid}, "
                f"expires {lk.expires.isoformat()}"
            )


__all__ = ["DEFAULT_TTL_SECONDS", "LOCKS_DIR", "Purpose", "check_unlocked", "live_locks", "remote_lock"]
