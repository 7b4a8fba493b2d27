"""`rustybackup demo --postgresql` end to end: it exits 0 only when the restored cluster
holds exactly the rows the writer committed by the chosen instant."""

from __future__ import annotations

import shutil
import subprocess
import sys

from pg_support import require_postgresql, workdir


def test_the_postgresql_demo_restores_exactly_the_rows_committed_by_its_instant() -> None:
    require_postgresql()
    d = workdir("rb-pg-demo-") / "demo"
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "rustybackup", "demo", "--postgresql", "--dir", str(d)],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "exactly the" in proc.stdout and "rows committed by then" in proc.stdout
    finally:
        shutil.rmtree(d.parent, ignore_errors=True)
