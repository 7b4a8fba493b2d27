"""A restore at the end of a long chain holds every set's block map and piece open at once;
with a soft open-files limit below that, restore raises the limit toward the hard one
instead of failing with EMFILE (restore.py `allow_open_files`, called by `BackupManager.reading`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rustybackup import BackupManager

CHILD = r"""
import resource, sys
from pathlib import Path
from rustybackup import BackupManager
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[3]), hard))
m = BackupManager(Path(sys.argv[1]))
m.restore("db", Path(sys.argv[2]))
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def test_a_long_chain_restores_under_a_low_open_files_limit(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = bytearray(64 * 1024)
    m = BackupManager(tmp_path / "repo")
    m.register_database("db", src, block_size=4096)
    (src / "f").write_bytes(data)
    m.backup("db", "full")
    sets = 60
    for i in range(sets):
        data[(i * 4096) % len(data)] = (i % 255) + 1
        (src / "f").write_bytes(data)
        m.backup("db", "incremental")
    limit = 64  # far below two files per set of a 61-set chain
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "repo"), str(tmp_path / "back"), str(limit)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) > limit
    assert (tmp_path / "back" / "f").read_bytes() == bytes(data)
