"""Random catalogs for the chain tests, and a plain-Python oracle of the recovery rules.

The oracle follows the rules as DESIGN.md and `_core.pyi` state them, written the slow,
obvious way (a walk per set, no index), so that it shares no code with the Rust core.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from hypothesis import strategies as st

Row = tuple[str, str, str | None, int, int, str]

HOUR = 3_600_000_000
KINDS = ("full", "incremental", "differential", "archive_log")


class OracleNoPath(Exception):
    """The oracle found no recovery path."""


@st.composite
def catalogs(draw: st.DrawFn, max_sets: int = 40) -> list[Row]:
    """A catalog as the engine writes it, in time order, with random types, gaps, durations,
    CORRUPT/EXPIRED flags, a few sets missing (deleted by hand) and an occasional odd parent."""
    n = draw(st.integers(0, max_sets))
    rows: list[Row] = []
    t = draw(st.integers(0, 1000)) * HOUR
    last_full: str | None = None
    last_data: str | None = None
    data_ids: list[str] = []
    for i in range(n):
        kind = draw(st.sampled_from(KINDS))
        if kind in ("incremental", "differential") and last_full is None:
            kind = "full"  # the engine promotes it, as issue 4 says
        parent: str | None = None
        if kind == "incremental":
            parent = last_data
        elif kind == "differential":
            parent = last_full
        if parent is not None and data_ids and draw(st.integers(0, 15)) == 0:
            parent = draw(st.sampled_from(data_ids))  # an odd parent: a branch off an older set
        status = draw(st.sampled_from(("available",) * 6 + ("corrupt", "expired")))
        sid = f"s{i:03d}"
        previous = rows[-1] if rows else None
        if kind == "archive_log" and previous is not None and previous[4] > previous[3] and draw(st.booleans()):
            # A log archived while the previous backup ran (a hot backup needs it).
            start = previous[3]
            finish = start + draw(st.integers(1, previous[4] - previous[3]))
            rows.append((sid, kind, parent, start, finish, status))
            continue
        start = t
        finish = start + draw(st.integers(0, 4)) * HOUR // 4
        rows.append((sid, kind, parent, start, finish, status))
        t = finish + draw(st.integers(0, 30)) * HOUR
        if kind == "full":
            last_full = sid
        if kind != "archive_log":
            last_data = sid
            data_ids.append(sid)
    missing = draw(st.sets(st.integers(0, max(n - 1, 0)), max_size=2)) if n and draw(st.booleans()) else set()
    return [row for i, row in enumerate(rows) if i not in missing]


def key(row: Row) -> tuple[int, int, str]:
    """Age order: finish, then start, then id."""
    return (row[4], row[3], row[0])


def usable_root(rows_by_id: dict[str, Row], row: Row) -> str | None:
    """The FULL this row's chain reaches when every link is present and available."""
    seen: set[str] = set()
    current = row
    while True:
        sid, kind, parent, _, _, status = current
        if status != "available" or kind == "archive_log" or sid in seen:
            return None
        if kind == "full":
            return sid
        seen.add(sid)
        if parent is None or parent not in rows_by_id:
            return None
        up = rows_by_id[parent]
        if up[1] == "archive_log" or (kind == "differential" and up[1] != "full"):
            return None
        current = up


def oracle_recovery_path(rows: Sequence[Row], until: int | None = None) -> list[str]:
    """The recovery rules, the obvious way."""
    limit = math.inf if until is None else until
    by_id = {row[0]: row for row in rows}
    fulls = [r for r in rows if r[1] == "full" and r[5] == "available" and r[4] <= limit]
    if not fulls:
        raise OracleNoPath("no usable FULL")
    base = max(fulls, key=key)
    points = [r for r in rows if r[1] != "archive_log" and r[4] <= limit and usable_root(by_id, r) == base[0]]
    target = max(points, key=key)
    chain = [target]
    while chain[-1][1] != "full":
        parent = chain[-1][2]
        assert parent is not None
        chain.append(by_id[parent])
    path = [r[0] for r in reversed(chain)]
    logs = sorted((r for r in rows if r[1] == "archive_log" and r[4] > target[3]), key=key)
    # Logs written during the target backup, always; then later ones until one reaches `until`.
    during = [log for log in logs if log[4] <= target[4]]
    after = [log for log in logs if log[4] > target[4]]
    for log in during:
        if log[5] != "available":
            raise OracleNoPath(f"log {log[0]} is {log[5]}")
        path.append(log[0])
    if target[4] >= limit:
        return path
    for log in after:
        if log[5] != "available":
            if until is None:
                break
            raise OracleNoPath(f"log {log[0]} is {log[5]}")
        path.append(log[0])
        if log[4] >= limit:
            break
    return path
