"""Times ``metrics.recoverable_since_us`` on a 50,000-set catalog built in memory.

The worst case for the old per-stretch resolver questions: a CORRUPT archive log just
after the oldest FULL, so every later stretch is recoverable and had to be asked about.

    python3 benches/recoverable_since.py [SETS] [--clean]

``--clean`` leaves every log AVAILABLE (the common case).
"""

from __future__ import annotations

import sys
import time

from rustybackup import _core
from rustybackup.metrics import recoverable_since_us

HOUR = 3_600_000_000
ROUNDS = 10


def catalog(n: int, clean: bool) -> list[tuple[str, str, str | None, int, int, str]]:
    """A weekly FULL, daily INCREMENTALs and an ARCHIVE_LOG every hour in between; the log
    right after the first FULL is CORRUPT unless ``clean``."""
    rows: list[tuple[str, str, str | None, int, int, str]] = []
    last_full = last_data = ""
    for i in range(n):
        start = i * HOUR
        if i % 168 == 0:
            kind, parent = "full", None
        elif i % 24 == 0:
            kind, parent = "incremental", last_data
        else:
            kind, parent = "archive_log", None
        sid = f"s{i:06d}"
        status = "corrupt" if i == 1 and not clean else "available"
        rows.append((sid, kind, parent, start, start + HOUR // 2, status))
        if kind == "full":
            last_full = sid
        if kind != "archive_log":
            last_data = sid
    assert last_full
    return rows


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--clean"]
    n = int(args[0]) if args else 50_000
    rows = catalog(n, "--clean" in sys.argv)
    chain = _core.ChainRows.from_columns(*(list(col) for col in zip(*rows, strict=True)))
    now = rows[-1][4] + HOUR
    best = float("inf")
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        since = recoverable_since_us(chain, now)
        best = min(best, time.perf_counter() - t0)
    print(f"{n} sets: recoverable since {since} in {best * 1000:.1f} ms (best of {ROUNDS})")


if __name__ == "__main__":
    main()
