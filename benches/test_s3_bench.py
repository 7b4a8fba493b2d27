"""Backup and restore to S3 (SeaweedFS on 127.0.0.1), three sides against the same server,
round by round in rotating order so a machine whose speed drifts hits every side alike:

- ``rustybackup``: `BackupManager("s3://...")` in a child process;
- ``restic``: restic's S3 backend;
- ``raw``: the transfer itself, the same bytes (every file of the tree as one object)
  moved through `_core.ObjectStore.put_files` / `get_to_file` with no backup format
  around them, one object after another;
- restore group only, ``RB_S3_BENCH_RESTORE_EXTRA`` (default ``floor8 floor16``): ``floorN``
  fetches raw's objects as part-sized ranges, N GETs at once from a thread pool (what
  the server delivers with more requests in flight), and ``rustybackup@N`` is ours with
  ``parts_in_flight`` N. The restore group backs each repository up once and restores
  it every round (the server holds 16 GiB and does not reclaim deleted objects).

Groups: a full backup, a second backup after 1% of the blocks changed (no raw side: it
has no notion of a change), and a restore of the newest state. One warm-up round (all
sides) is not counted. Each run is a child process timed from outside. Peak memory is
the child's own VmHWM: ours and raw write it from /proc/self/status at exit; restic's is
polled from /proc/PID/status while it runs (a wait4 ru_maxrss of a child started by
vfork+exec would include this process's peak).

Tree: RB_S3_BENCH_FILES files of RB_S3_BENCH_FILE_MIB MiB (default 4 x 4 MiB; the issue's
figure is 64 x 16 MiB = 1 GiB). RB_S3_BENCH_ROUNDS counted rounds (default 2; 1 and no
warm-up under --benchmark-disable). The figures are in extra_info and printed with -s.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench_data import one_percent_toucher, random_tree
from peers import PEER_ENV, tool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from s3_support import SeaweedFS, start_seaweedfs  # noqa: E402

FILES = int(os.environ.get("RB_S3_BENCH_FILES", "4"))
FILE_MIB = int(os.environ.get("RB_S3_BENCH_FILE_MIB", "4"))
ROUNDS = int(os.environ.get("RB_S3_BENCH_ROUNDS", "2"))
BLOCK = 8192

# Reports the child's peak RSS (VmHWM) into RB_HWM_FILE at exit.
_HWM = """
import atexit, os, re
def _hwm():
    with open("/proc/self/status") as f:
        kib = re.search(r"VmHWM:\\s+(\\d+) kB", f.read())
    with open(os.environ["RB_HWM_FILE"], "w") as out:
        out.write(kib.group(1) if kib else "")
atexit.register(_hwm)
"""

_OURS = (
    _HWM
    + """
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
)

_RAW = (
    _HWM
    + """
import os, sys
from pathlib import Path
from rustybackup import _core
from rustybackup.remote_repo import transfer_options
op, url, src, out = sys.argv[1:5]
store = _core.ObjectStore(url, transfer_options())
files = sorted(Path(src).iterdir())
if op == "full":
    store.put_files([(f"raw/{p.name}", p) for p in files])
elif op == "restore":
    os.makedirs(out)
    for p in files:
        store.get_to_file(f"raw/{p.name}", Path(out) / p.name)
elif op.startswith("floor"):
    # Every part-sized range of every object, N GETs at once from a thread pool (each
    # get_range releases the GIL), written at its offset: what the server delivers.
    from concurrent.futures import ThreadPoolExecutor
    os.makedirs(out)
    part = store.part_size
    fds = {p.name: os.open(Path(out) / p.name, os.O_WRONLY | os.O_CREAT, 0o644) for p in files}
    jobs = [(p.name, a, min(a + part, p.stat().st_size)) for p in files for a in range(0, p.stat().st_size, part)]
    def get(job):
        name, a, b = job
        os.pwrite(fds[name], store.get_range(f"raw/{name}", a, b), a)
    with ThreadPoolExecutor(int(op[5:])) as pool:
        list(pool.map(get, jobs))
    for fd in fds.values():
        os.close(fd)
"""
)


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
    return random_tree(tmp_path_factory.mktemp("s3bench") / "src", FILES, FILE_MIB)


_touch_one_percent = one_percent_toucher(FILE_MIB, BLOCK)


def _poll_hwm(pid: int, seen: list[int]) -> None:
    """VmHWM of a running process (monotonic: the last value read is the peak so far)."""
    while True:
        try:
            with open(f"/proc/{pid}/status") as f:
                m = re.search(r"VmHWM:\s+(\d+) kB", f.read())
        except OSError:
            return
        if m is None:  # a zombie has no memory left to report
            return
        seen.append(int(m.group(1)) * 1024)
        time.sleep(0.02)


def _run(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Seconds and peak RSS (bytes) of one child process; a failure fails the bench."""
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile() as hwm:
        env = {**env, "RB_HWM_FILE": hwm.name}
        t0 = time.perf_counter()
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err)
        polled: list[int] = []
        poller = threading.Thread(target=_poll_hwm, args=(proc.pid, polled))
        poller.start()
        proc.wait()
        elapsed = time.perf_counter() - t0
        poller.join()
        if proc.returncode != 0:
            err.seek(0)
            raise AssertionError(f"{args[:3]} exited {proc.returncode}: {err.read().decode(errors='replace')[-2000:]}")
        reported = Path(hwm.name).read_text().strip()
    return elapsed, int(reported) * 1024 if reported else max(polled, default=0)


def _base(side: str) -> str:
    """The repository a side uses: ``floorN`` reads raw's objects, ``rustybackup@N`` ours."""
    return "raw" if side.startswith("floor") else side.split("@")[0]


class Side:
    """One side's commands against one prefix of the bench bucket (fresh unless given).

    ``rustybackup@N`` is ours with ``parts_in_flight`` N; ``floorN`` fetches raw's objects
    as part-sized ranges, N at once (see _RAW)."""

    def __init__(self, name: str, server: SeaweedFS, cache: Path, prefix: str | None = None) -> None:
        self.name = name
        self.base = _base(name)
        self.prefix = prefix or f"{self.base}-{uuid.uuid4().hex[:8]}"
        self.env = {**PEER_ENV, **server.env(), "XDG_CACHE_HOME": str(cache)}
        if "@" in name:
            self.env["RUSTYBACKUP_S3_PARTS_IN_FLIGHT"] = name.split("@")[1]
        self.exe = tool("restic") if self.base == "restic" else sys.executable
        host = server.endpoint.removeprefix("http://")
        self.url = (
            f"s3:http://{host}/{server.bucket}/{self.prefix}" if self.base == "restic" else server.url(self.prefix)
        )

    def cmd(self, op: str, src: Path, out: Path) -> list[str] | None:
        """The command of `op` (init, full, incremental, restore); None: nothing to do."""
        if self.base == "raw":
            if op == "restore" and self.name.startswith("floor"):
                op = self.name
            return None if op == "init" else [self.exe, "-c", _RAW, op, self.url, str(src), str(out)]
        if self.base == "rustybackup":
            return [self.exe, "-c", _OURS, op, self.url, str(src), str(out)]
        if op == "init":
            return [self.exe, "-r", self.url, "init"]
        if op == "restore":
            return [self.exe, "-r", self.url, "restore", "latest", "--target", str(out)]
        return [self.exe, "-r", self.url, "backup", "-q", str(src)]

    def run(self, op: str, src: Path, out: Path) -> tuple[float, int]:
        cmd = self.cmd(op, src, out)
        return (0.0, 0) if cmd is None else _run(cmd, self.env)


def _round(
    side: str, group: str, server: SeaweedFS, tree: Path, tmp: Path, n: int, prepared: dict[str, str]
) -> tuple[float, int]:
    """One timed run. Restores read one repository per base, backed up once (the server
    holds 16 GiB and does not reclaim deleted objects), each round from a copy of the
    cache the backup left, as in a round that had just backed up."""
    cache = tmp / f"cache-{side}-{n}"
    if group == "restore":
        base = _base(side)
        setup_cache = tmp / f"cache-setup-{base}"
        if base not in prepared:
            s0 = Side(side, server, setup_cache)
            s0.run("init", tree, tmp)
            s0.run("full", tree, tmp)
            setup_cache.mkdir(exist_ok=True)
            prepared[base] = s0.prefix
        shutil.copytree(setup_cache, cache)
        s = Side(side, server, cache, prepared[base])
    else:
        s = Side(side, server, cache)
        s.run("init", tree, tmp)
        if group != "full backup":
            s.run("full", tree, tmp)
        if group == "incremental after 1%":
            _touch_one_percent(tree)
    out = tmp / f"out-{side}-{n}"
    op = {"full backup": "full", "incremental after 1%": "incremental", "restore": "restore"}[group]
    try:
        return s.run(op, tree, out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)


@pytest.mark.parametrize("group", ["full backup", "incremental after 1%", "restore"])
def test_s3(benchmark: Any, group: str, server: SeaweedFS, tree: Path, tmp_path: Path) -> None:
    sides = ["rustybackup", "restic"] + ([] if group == "incremental after 1%" else ["raw"])
    if group == "restore":
        sides += os.environ.get("RB_S3_BENCH_RESTORE_EXTRA", "floor8 floor16").split()
    prepared: dict[str, str] = {}
    tool("restic")
    disabled = bool(getattr(benchmark, "disabled", False))
    warmup, rounds = (0, 1) if disabled else (1, ROUNDS)
    runs: dict[str, list[tuple[float, int]]] = {s: [] for s in sides}

    def interleaved() -> None:
        for r in range(warmup + rounds):
            k = r % len(sides)
            for side in sides[k:] + sides[:k]:
                got = _round(side, group, server, tree, tmp_path, r, prepared)
                if r >= warmup:
                    runs[side].append(got)

    # The bench's own time is the whole interleaved loop; the figures are per side below.
    benchmark.group = f"s3 {group}"
    benchmark.pedantic(interleaved, rounds=1, iterations=1, warmup_rounds=0)
    figures: dict[str, Any] = {"tree_bytes": FILES * (FILE_MIB << 20)}
    for side, got in runs.items():
        secs = [s for s, _ in got]
        figures[side] = {
            "seconds": [round(s, 3) for s in secs],
            "min": round(min(secs), 3),
            "median": round(statistics.median(secs), 3),
            "peak_rss_mib": [round(r / (1 << 20), 1) for _, r in got],
        }
    benchmark.extra_info.update(figures)
    print(f"\n{group}: {json.dumps(figures)}")
