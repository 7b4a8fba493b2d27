"""The unchanged second backup through the CLI, this tree's Python code against REV's
(issue 17: at most 10% of the first), interleaved in one run so both see the same load.

REV's ``python/`` is unpacked with ``git archive`` into a scratch directory and given this
tree's built native module (a change of Python code only is what this compares), or the
one ``RB_BENCH_BEFORE_CORE`` names (a copy of REV's build, kept before rebuilding: then
a change of Rust code is compared too); each
side runs from ``PYTHONPATH``, with a bytecode cache as a wheel install has one
(``PYTHONPYCACHEPREFIX``, filled by the warm-up round). One repository of TREE with a
FULL, then per round for each side (the order turning every round): the backup
command's imports alone, and an unchanged INCREMENTAL. CPU = user + system of the child.

    python3 benches/cli_before_after.py REV TREE [ROUNDS]
"""

from __future__ import annotations

import io
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def unpack(rev: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", rev, "python"], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    for so in (ROOT / "python" / "rustybackup").glob("_core*.so"):
        before = os.environ.get("RB_BENCH_BEFORE_CORE")
        shutil.copy2(before or so, into / "python" / "rustybackup" / so.name)
    return into / "python"


def main(rev: str, tree: str, n: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        base = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
        base["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        envs = {
            rev: {**base, "PYTHONPATH": str(unpack(rev, work / "before"))},
            "tree": {**base, "PYTHONPATH": str(ROOT / "python")},
        }
        repo = str(work / "repo")
        cli = [sys.executable, "-m", "rustybackup", "--repo", repo]
        for args in (["init"], ["db", "add", "t", "--path", tree], ["backup", "t", "--type", "full"]):
            subprocess.run(cli + args, env=envs["tree"], check=True, stdout=subprocess.DEVNULL)
        cmds = {
            "imports": [sys.executable, "-c", "import rustybackup.cli.backup_cmds"],
            "second": [*cli, "backup", "t", "--type", "incremental"],
        }
        keys = [(side, c) for c in cmds for side in envs]
        wall: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], list[float]] = {}
        loads = []
        for r in range(n + 1):
            for side, c in keys if r % 2 else keys[::-1]:
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                subprocess.run(cmds[c], env=envs[side], check=True, stdout=subprocess.DEVNULL)
                took = time.perf_counter() - start
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                if r:  # round 0 warms the caches and fills the bytecode
                    wall.setdefault((side, c), []).append(took)
                    used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
                    cpu.setdefault((side, c), []).append(used)
            loads.append(os.getloadavg()[0])
        print(f"{n} interleaved rounds after a warm-up, load {min(loads):.1f}-{max(loads):.1f}, {os.cpu_count()} CPUs")
        for c in cmds:
            for side in envs:
                w, u = wall[(side, c)], cpu[(side, c)]
                print(
                    f"  {c:8} {side:>12}: wall min {min(w):.3f} median {statistics.median(w):.3f} | "
                    f"cpu min {min(u):.3f} median {statistics.median(u):.3f}"
                )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 10)
