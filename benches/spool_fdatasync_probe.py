"""How long one fdatasync of a spool-sized write takes on this disk, appended (the
file's size changes, as the capture spool's appends do) against written in place (as
SQLite rewrites its WAL): whether a preallocated, reused spool file would make the
rollover's fsync cheaper. Prints median/min/max per mode, two alternating rounds.

    python benches/spool_fdatasync_probe.py /tmp/fsync-probe.bin
"""

from __future__ import annotations

import os
import statistics
import sys
import time

TAIL = 4096 * 30  # about a rollover's tail of frames


def run(path: str, mode: str, n: int = 40) -> list[float]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if mode == "overwrite":
            os.write(fd, b"\0" * TAIL)
            os.fsync(fd)
        times = []
        for _ in range(n):
            buf = os.urandom(TAIL)
            if mode == "append":
                os.lseek(fd, 0, os.SEEK_END)
                os.write(fd, buf)
            else:
                os.pwrite(fd, buf, 0)
            t = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - t)
        return times
    finally:
        os.close(fd)
        os.unlink(path)


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "/tmp/fsync-probe.bin"
    for _ in range(2):
        for mode in ("append", "overwrite"):
            ts = run(path, mode)
            print(
                f"{mode:9s} median {1000 * statistics.median(ts):.2f} ms, min {1000 * min(ts):.2f}, "
                f"max {1000 * max(ts):.2f}; load {os.getloadavg()[0]:.1f}"
            )


if __name__ == "__main__":
    main()
