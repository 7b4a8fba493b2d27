"""Backup and restore to S3 (SeaweedFS on 127.0.0.1), ours next to restic's S3 backend
against the same server: a full backup, a second backup after 1% of the blocks changed,
and a restore of the newest state. Each run is a child process, timed from outside and
with its peak resident memory (ru_maxrss from wait4) in extra_info, so memory is measured
the same way for both tools.

Tree: RB_S3_BENCH_FILES files of RB_S3_BENCH_FILE_MIB MiB (default 4 x 4 MiB; the issue's
figure is 64 x 16 MiB = 1 GiB). RB_S3_BENCH_ROUNDS rounds per tool (default 2).
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers import PEER_ENV, tool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from s3_support import SeaweedFS, start_seaweedfs  # noqa: E402

FILES = int(os.environ.get("RB_S3_BENCH_FILES", "4"))
FILE_MIB = int(os.environ.get("RB_S3_BENCH_FILE_MIB", "4"))
ROUNDS = int(os.environ.get("RB_S3_BENCH_ROUNDS", "2"))
BLOCK = 8192

_OURS = """
import sys
from rustybackup import BackupManager
op, url, src, out = sys.argv[1:5]
m = BackupManager(url)
if op == "init":
    m.register_database("bench", src)
elif op == "restore":
    m.restore("bench", out)
else:
    m.backup("bench", op)
"""


@pytest.fixture(scope="module")
def server() -> Iterator[SeaweedFS]:
    root = Path(tempfile.mkdtemp(prefix="rb-s3-bench-"))
    s = start_seaweedfs(root, bucket="bench")
    try:
        yield s
    finally:
        s.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("s3bench") / "src"
    root.mkdir()
    for i in range(FILES):
        (root / f"file{i:03d}").write_bytes(os.urandom(FILE_MIB << 20))
    os.sync()
    return root


_SEEDS = itertools.count(1)


def _touch_one_percent(root: Path) -> None:
    rng = random.Random(next(_SEEDS))
    files = sorted(root.iterdir())
    per_file = (FILE_MIB << 20) // BLOCK
    total = len(files) * per_file
    for n in rng.sample(range(total), max(1, total // 100)):
        with open(files[n // per_file], "r+b") as fh:
            fh.seek((n % per_file) * BLOCK)
            fh.write(rng.randbytes(BLOCK))


def _run(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Seconds and peak RSS (bytes) of one child process; a failure fails the bench."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise AssertionError(f"{args[:3]} exited {proc.returncode}: {err.read().decode(errors='replace')[-2000:]}")
    return elapsed, usage.ru_maxrss * 1024


class Tool:
    """One tool's commands against one fresh prefix of the bench bucket."""

    def __init__(self, name: str, server: SeaweedFS, cache: Path) -> None:
        self.name = name
        self.server = server
        self.prefix = f"{name}-{uuid.uuid4().hex[:8]}"
        self.env = {**PEER_ENV, **server.env(), "XDG_CACHE_HOME": str(cache)}
        self.exe = sys.executable if name == "rustybackup" else tool(name)
        host = server.endpoint.removeprefix("http://")
        self.url = (
            server.url(self.prefix) if name == "rustybackup" else f"s3:http://{host}/{server.bucket}/{self.prefix}"
        )

    def cmd(self, op: str, src: Path, out: Path) -> list[str]:
        if self.name == "rustybackup":
            return [self.exe, "-c", _OURS, op, self.url, str(src), str(out)]
        if op == "init":
            return [self.exe, "-r", self.url, "init"]
        if op == "restore":
            return [self.exe, "-r", self.url, "restore", "latest", "--target", str(out)]
        return [self.exe, "-r", self.url, "backup", "-q", str(src)]


def _bench(benchmark: Any, name: str, group: str, server: SeaweedFS, tree: Path, tmp: Path) -> None:
    benchmark.group = f"s3 {group}"
    runs: list[tuple[float, int]] = []
    state: dict[str, Tool] = {}
    counter = itertools.count()

    def setup() -> tuple[tuple[()], dict[str, Any]]:
        n = next(counter)
        t = Tool(name, server, tmp / f"cache-{n}")
        _run(t.cmd("init", tree, tmp), t.env)
        if group != "full backup":
            _run(t.cmd("full" if name == "rustybackup" else "backup", tree, tmp), t.env)
        if group == "incremental after 1%":
            _touch_one_percent(tree)
        state["t"] = t
        shutil.rmtree(tmp / "out", ignore_errors=True)
        return (), {}

    def once() -> None:
        t = state["t"]
        op = {"full backup": "full", "incremental after 1%": "incremental", "restore": "restore"}[group]
        runs.append(
            _run(
                t.cmd(op if name == "rustybackup" else ("restore" if op == "restore" else "backup"), tree, tmp / "out"),
                t.env,
            )
        )

    benchmark.pedantic(once, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    benchmark.extra_info["tree_bytes"] = FILES * (FILE_MIB << 20)
    benchmark.extra_info["seconds"] = [round(s, 3) for s, _ in runs]
    benchmark.extra_info["peak_rss_mib"] = [round(r / (1 << 20), 1) for _, r in runs]


@pytest.mark.parametrize("name", ["rustybackup", "restic"])
@pytest.mark.parametrize("group", ["full backup", "incremental after 1%", "restore"])
def test_s3(benchmark: Any, name: str, group: str, server: SeaweedFS, tree: Path, tmp_path: Path) -> None:
    _bench(benchmark, name, group, server, tree, tmp_path)
