"""Memory of a transfer does not grow with the file: a child process uploads (and then
downloads) a 64 MiB and a 512 MiB file through the real S3 server, and its peak resident
memory (VmHWM) is compared. A ratio, not a timing: parts are bounded by part_size *
(parts_in_flight + 1), whatever the file size.

VmHWM, not getrusage's ru_maxrss: Python starts the child with vfork + exec, and Linux folds
the parent's peak RSS (pytest's, hundreds of MiB late in a full run) into the child's
ru_maxrss at exec; VmHWM belongs to the child's own address space."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from s3_support import (
    SeaweedFS,
)

MiB = 1 << 20

CHILD = r"""
import json, sys
from rustybackup import _core
def hwm_kib():
    with open("/proc/self/status") as f:
        return int(next(line.split()[1] for line in f if line.startswith("VmHWM:")))
url, opts, path, back = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
store = _core.ObjectStore(url, opts)
up = store.put_file("big", path)
up_rss = hwm_kib()
down = store.get_to_file("big", back)
print(json.dumps({"up": up, "down": down, "up_rss_kib": up_rss, "rss_kib": hwm_kib()}))
"""


def make_file(path: Path, size: int) -> None:
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for i in range(size // MiB):
            f.write(i.to_bytes(8, "little") + block[8:])


def peak(server: SeaweedFS, prefix: str, tmp_path: Path, size: int) -> dict[str, int]:
    src = tmp_path / f"src-{size}"
    back = tmp_path / f"back-{size}"
    make_file(src, size)
    opts = {**server.options(), "part_size": str(8 * MiB), "parts_in_flight": "4"}
    try:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, server.url(f"{prefix}/{size}"), json.dumps(opts), str(src), str(back)],
            check=True,
            capture_output=True,
            text=True,
            timeout=900,
        )
        result: dict[str, int] = json.loads(out.stdout)
        assert result["up"] == size and result["down"] == size
        assert back.stat().st_size == size
        return result
    finally:
        src.unlink(missing_ok=True)
        back.unlink(missing_ok=True)


def test_peak_memory_is_flat_in_file_size(s3_server: SeaweedFS, s3_prefix: str, tmp_path: Path) -> None:
    small = peak(s3_server, s3_prefix, tmp_path, 64 * MiB)
    big = peak(s3_server, s3_prefix, tmp_path, 512 * MiB)
    # 8x the data (448 MiB more): memory may differ by what a loaded machine keeps in
    # flight (the parts in flight plus one, 8 MiB each), never by the size of the file.
    slack_kib = (4 + 1) * 8 * MiB // 1024
    assert big["up_rss_kib"] < small["up_rss_kib"] + slack_kib, (small, big)
    assert big["rss_kib"] < small["rss_kib"] + slack_kib, (small, big)
    # And in absolute terms far below the file: a few parts in flight, not the file.
    assert big["rss_kib"] * 1024 < 256 * MiB, big
