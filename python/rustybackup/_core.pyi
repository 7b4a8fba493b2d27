"""Type stubs for the native module ``rustybackup._core`` (checked by mypy.stubtest)."""

__version__: str

# --- cron (issue 2) ---

# --- scan (issue 3) ---

# --- chain (issues 4, 7) ---

from collections.abc import Iterable
from typing import TypeAlias

_SetRow: TypeAlias = tuple[str, str, str | None, int, int, str]
"""One catalog row for the chain logic: ``(id, kind, parent_id, started_us, finished_us,
status)``. ``kind`` is a ``BackupType`` value ("full", "incremental", "differential",
"archive_log"), ``status`` a ``SetStatus`` value ("available", "corrupt", "expired"); times
are integers of microseconds since the Unix epoch (UTC). Rows of one database only."""

def recovery_path(sets: Iterable[_SetRow], /, until_us: int | None = None, *, database: str | None = None) -> list[str]:
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

def recovery_chain(sets: Iterable[_SetRow], set_id: str, /) -> list[str]:
    """``set_id`` and its ancestors (parent links), base first, whatever their status.

    Raises:
        CatalogError: unknown ``set_id``, a missing parent (named), a parent cycle, or
            two rows sharing an id.
    """

def retention_plan(
    sets: Iterable[_SetRow],
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
) -> list[tuple[bool, str]]:
    """Per set, in input order, ``(keep, reason)`` under the union of the rules given.

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
