"""PostgreSQL, ours next to pgBackRest on the same cluster (issue 14).

One cluster, `pgbench -i -s RB_BENCH_PG_SCALE` (default 1 for the smoke run; the issue's
figure is 50, ~750 MB), archive_command pushing every WAL segment to both repositories.
Groups: full backup, next to `cp -a` + fsync of the data directory (the floor); our base
backup's phases; incremental after `pgbench -T RB_BENCH_PG_SECONDS` (default 5; the
issue's 60); archive-push throughput (RB_BENCH_PG_SEGMENTS real 16 MiB segments marked
`.ready` and pushed one after another as PostgreSQL's archiver does, segments/s and CPU
per segment in extra_info; pgBackRest plain and archive-async); restore to an instant
including the recovery (server started, WAL replayed, promoted). Both tools run as the
cluster's user through their command lines, uncompressed (pgBackRest compress-type=none,
ours without --compression), pgBackRest with process-max=2 (the machine's cores), both
verifying page checksums.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from pg_support import (
    Cluster,
    as_user,
    give,
    rb,
    require_postgresql,
    workdir,
)

SCALE = int(os.environ.get("RB_BENCH_PG_SCALE", "1"))
SECONDS = int(os.environ.get("RB_BENCH_PG_SECONDS", "5"))
SEGMENTS = int(os.environ.get("RB_BENCH_PG_SEGMENTS", "16"))
PEERS = ["rustybackup", "pgbackrest"]
NAME = "bench"
# The installed command users paste (python/rustybackup.data/scripts/rustybackup) and pip's
# launcher of the same entry point beside it.
SCRIPTS = Path(sysconfig.get_path("scripts"))


def command_line(repo: Path, name: str, launcher: str = "rustybackup") -> str:
    """README's plain archive_command with the installed `launcher`."""
    return f"{SCRIPTS / launcher} --repo {repo} archive-push {name} %p"


@dataclass
class Bench:
    bin: Path
    base: Path
    repo: Path
    conf: Path
    cluster: Cluster
    done: set[str]

    def pgbackrest(self, *args: str) -> None:
        exe = shutil.which("pgbackrest")
        assert exe is not None
        proc = subprocess.run(
            [*as_user(), exe, f"--config={self.conf}", f"--stanza={NAME}", *args],
            capture_output=True, text=True, check=False, cwd="/", timeout=3600,
        )  # fmt: skip
        if proc.returncode != 0:
            raise AssertionError(f"pgbackrest {args[0]} exited {proc.returncode}: {proc.stdout}{proc.stderr}")


@pytest.fixture(scope="module")
def bench() -> Iterator[Bench]:
    bin = require_postgresql()
    if shutil.which("pgbackrest") is None:
        pytest.skip("pgbackrest is not installed (Debian package 'pgbackrest')")
    base = workdir("rb-pg-bench-")
    repo, conf = base / "repo", base / "pgbackrest.conf"
    saved_env = {k: os.environ.get(k) for k in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    # An installed package has its bytecode compiled (pip does it at install time); this
    # checkout is editable, not writable by the cluster's user, and the environment may
    # set PYTHONDONTWRITEBYTECODE, so every `rustybackup` process (each push, get and
    # restore, run by the server or the bench) would compile the package from source
    # first: ~0.2-0.4 s each here, which no user pays. The first process writes the
    # bytecode into this cache, the others read it.
    (base / "pycache").mkdir()
    give(base / "pycache")
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(base / "pycache")
    for sub in ("pgbr", "pgbr-log", "pgbr-lock"):
        (base / sub).mkdir()
        give(base / sub)
    ours = command_line(repo, NAME)
    theirs = f"pgbackrest --config={conf} --stanza={NAME} archive-push %p"
    cluster = Cluster.init(
        bin, base, checksums=True,
        conf={
            "archive_mode": "on", "archive_command": f"'{ours} && {theirs}'", "max_wal_size": "1GB",
            "shared_buffers": "128MB", "fsync": "on",
        },
    )  # fmt: skip
    # A 16 MiB segment size, as production clusters have (the tests' clusters use 1 MiB).
    shutil.rmtree(cluster.data)
    cluster.run(str(bin / "initdb"), "-D", str(cluster.data), "-U", "postgres", "--auth=trust", "-k", "-N")
    cluster.configure(
        {
            "port": str(cluster.port), "listen_addresses": "''", "unix_socket_directories": f"'{cluster.sockdir}'",
            "archive_mode": "on", "archive_command": f"'{ours} && {theirs}'", "max_wal_size": "1GB",
            "shared_buffers": "128MB",
        }
    )  # fmt: skip
    conf.write_text(
        f"[global]\nrepo1-path={base / 'pgbr'}\nlog-path={base / 'pgbr-log'}\nlock-path={base / 'pgbr-lock'}\n"
        "log-level-console=warn\nlog-level-file=off\nstart-fast=y\ncompress-type=none\nprocess-max=2\n"
        f"[{NAME}]\npg1-path={cluster.data}\npg1-socket-path={cluster.sockdir}\npg1-port={cluster.port}\n"
        "pg1-user=postgres\n"
    )
    give(conf)
    b = Bench(bin, base, repo, conf, cluster, set())
    try:
        rb(repo, "init")
        rb(repo, "db", "add", NAME, "--kind", "postgresql", "--pgdata", str(cluster.data), "--dsn", cluster.dsn)
        cluster.start()
        b.pgbackrest("stanza-create")
        cluster.run(str(bin / "pgbench"), "-i", "-q", "-s", str(SCALE), "-h", str(cluster.sockdir), "-p",
                    str(cluster.port), "-U", "postgres", "postgres")  # fmt: skip
        cluster.query("CHECKPOINT")
        # pgbench -i's WAL is archived before anything is timed (pg_backup_stop waits for
        # the archive, and the first tool would pay the backlog).
        cluster.switch_and_wait_archived(timeout=3600)
        yield b
    finally:
        cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _once(benchmark: Any, target: Any, setup: Any = None) -> None:
    benchmark.pedantic(target, setup=setup, rounds=1, iterations=1)


def _backup(b: Bench, peer: str, kind: str) -> None:
    if peer == "rustybackup":
        rb(b.repo, "backup", NAME, "--type", kind)
    else:
        b.pgbackrest("backup", f"--type={'incr' if kind == 'incremental' else kind}")


def _copy_and_sync(b: Bench, done: list[Path] | None = None) -> None:
    """The floor under any full backup on this machine: the data directory (minus
    pg_wal's contents, which neither tool copies) copied by `cp -a` and every copy
    fsynced, as the cluster's user; no checkpoint, no archive wait, no checksums. With
    `done`, the copy is left for the caller to remove after its last round: this
    filesystem is mounted with `discard`, so removing 800 MB right before the next tool
    runs hands that tool the discards (and ext4's skipping of just-deleted inodes)."""
    target = workdir("rb-pg-limit-")
    try:
        for entry in b.cluster.data.iterdir():
            if entry.name != "pg_wal":
                b.cluster.run("cp", "-a", str(entry), str(target), timeout=3600)
        b.cluster.run("sh", "-c", f"find {target} -type f -print0 | xargs -0 -r sync", timeout=3600)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    if done is None:
        shutil.rmtree(target, ignore_errors=True)
    else:
        done.append(target)


@pytest.mark.parametrize("peer", [*PEERS, "cp+sync"])
@pytest.mark.benchmark(group="postgresql full backup")
def test_full_backup(benchmark: Any, bench: Bench, peer: str) -> None:
    if peer == "cp+sync":
        _once(benchmark, lambda: _copy_and_sync(bench))
        return
    _once(benchmark, lambda: _backup(bench, peer, "full"))
    bench.done.add(peer)


# The compression matrix users run: pgBackRest's default (gz at its default level), its
# lz4 and zst, and uncompressed, beside ours plain and with our zstd, and the floor.
MATRIX = [
    "cp+sync", "rustybackup", "rustybackup zstd", "pgbackrest none", "pgbackrest gz", "pgbackrest lz4",
    "pgbackrest zst",
]  # fmt: skip
# A part of it (comma-separated peers), to keep one quiet run short.
if os.environ.get("RB_BENCH_PG_MATRIX"):
    MATRIX = [p.strip() for p in os.environ["RB_BENCH_PG_MATRIX"].split(",")]
ROUNDS = int(os.environ.get("RB_BENCH_PG_ROUNDS", "2"))


def _register(b: Bench, compression: str | None) -> None:
    """(Re-)registers the bench's database with `compression` (the catalog keeps one
    registration per name; sets already taken keep their own blocks' flags)."""
    extra = [] if compression is None else ["--compression", compression]
    rb(b.repo, "db", "add", NAME, "--kind", "postgresql", "--pgdata", str(b.cluster.data), "--dsn", b.cluster.dsn,
       *extra)  # fmt: skip


def _matrix_full(b: Bench, peer: str, done: list[Path]) -> None:
    if peer == "cp+sync":
        _copy_and_sync(b, done)
    elif peer.startswith("rustybackup"):
        rb(b.repo, "backup", NAME, "--type", "full")
    else:
        b.pgbackrest("backup", "--type=full", f"--compress-type={peer.split()[1]}")


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2


@pytest.mark.benchmark(group="postgresql full backup, compression matrix, interleaved")
def test_full_backup_matrix(benchmark: Any, bench: Bench) -> None:
    """Full backups of every pairing in MATRIX, one round of each in turn, a warm-up
    round first (dropped), then RB_BENCH_PG_ROUNDS rounds: wall and CPU (user + system
    of the tool's processes) min / median per peer in extra_info, the load average
    before and after, and each pairing's ratio against ours (plain for the uncompressed
    pgBackRest, zstd for the compressed ones) printed."""
    disabled = getattr(benchmark, "disabled", False)
    rounds = 0 if disabled else ROUNDS
    unknown = [p for p in MATRIX if p != "cp+sync" and not p.startswith(("rustybackup", "pgbackrest "))]
    assert not unknown, f"RB_BENCH_PG_MATRIX: unknown peers {unknown}"
    # The smoke run (--benchmark-disable) checks both ways of choosing a compression once
    # (the other peers are the full-backup group's); the CI's budget has no room for all.
    peers = ["rustybackup zstd", "pgbackrest lz4"] if disabled else MATRIX
    wall: dict[str, list[float]] = {p: [] for p in peers}
    cpu: dict[str, list[float]] = {p: [] for p in peers}
    load0 = os.getloadavg()[0]
    copies: list[Path] = []

    def one_round(keep: bool) -> None:
        for peer in peers:
            if peer.startswith("rustybackup"):
                _register(bench, "zstd" if peer.endswith("zstd") else None)
            c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.monotonic()
            _matrix_full(bench, peer, copies)
            t = time.monotonic() - t0
            c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            if keep:
                wall[peer].append(t)
                cpu[peer].append(c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime)
            print(f"\n{'' if keep else 'warm-up '}{peer}: {t:.2f} s", end="")

    def run() -> None:
        one_round(False)
        for _ in range(rounds):
            one_round(True)

    try:
        _once(benchmark, run)
    finally:
        _register(bench, None)
        for d in copies:
            shutil.rmtree(d, ignore_errors=True)
    # Not the parents of the later groups: pgBackRest's incremental keeps its full's
    # compress-type (it resets the option to the prior backup's), so the incremental
    # group takes its own uncompressed fulls.
    bench.done.difference_update(("rustybackup", "pgbackrest"))
    load1 = os.getloadavg()[0]
    benchmark.extra_info["load_average"] = [round(load0, 1), round(load1, 1)]
    print(f"\nload average {load0:.1f} -> {load1:.1f}; seconds min / median (CPU min / median)")
    for peer in peers:
        if wall[peer]:
            w, c = wall[peer], cpu[peer]
            benchmark.extra_info[peer] = {"wall": [round(min(w), 2), round(_median(w), 2)],
                                          "cpu": [round(min(c), 2), round(_median(c), 2)]}  # fmt: skip
            print(f"{peer}: {min(w):.2f} / {_median(w):.2f} ({min(c):.2f} / {_median(c):.2f})")
    for theirs, ours in [("pgbackrest none", "rustybackup"), ("cp+sync", "rustybackup")] + [
        (f"pgbackrest {t}", "rustybackup zstd") for t in ("gz", "lz4", "zst")
    ]:
        if wall.get(theirs) and wall.get(ours):
            print(f"{theirs} / {ours}: {min(wall[theirs]) / min(wall[ours]):.2f}x at the min, "
                  f"{_median(wall[theirs]) / _median(wall[ours]):.2f}x median")  # fmt: skip


# Run as the cluster's user, who owns the repository (a root-owned file in it would stop
# that user's archive-push): one base backup of `kind`, its phases timed in process.
PHASES = """
import json, sys, time
from contextlib import contextmanager
from pathlib import Path
from rustybackup import BackupManager, BackupType
from rustybackup.postgres import archive_wait, basebackup

repo, name, kind = sys.argv[1:4]
m = BackupManager(Path(repo))
spent = {}

def timed(key, fn):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[key] = spent.get(key, 0.0) + time.perf_counter() - t0
    return wrapper

real_session = basebackup.session

@contextmanager
def session(*args, **kwargs):
    t0 = time.perf_counter()
    with real_session(*args, **kwargs) as s:
        spent["start"] = time.perf_counter() - t0
        yield s

basebackup.session = session
basebackup.stop = timed("stop", basebackup.stop)
basebackup.check_pages = timed("page checksums", basebackup.check_pages)
archive_wait.wait_archived = timed("wal wait", archive_wait.wait_archived)
m._read = timed("copy", m._read)
t0 = time.perf_counter()
c0 = time.process_time()
made = m.backup(name, BackupType(kind))
spent["rest"] = time.perf_counter() - t0 - sum(spent.values())
spent["cpu"] = time.process_time() - c0
spent["mb_read"] = made.bytes_read / 1e6
print(json.dumps({"type": made.backup_type.value, **{k: round(v, 2) for k, v in spent.items()}}))
"""


@pytest.mark.parametrize("kind", ["full", "incremental", "incremental after pgbench"])
@pytest.mark.benchmark(group="postgresql base backup phases, in process")
def test_base_backup_phases(benchmark: Any, bench: Bench, kind: str) -> None:
    """Where one of our base backups spends its time once Python runs: pg_backup_start
    (the fast checkpoint), the engine's pass over the data directory, the page-checksum
    pass, pg_backup_stop, the wait for its WAL in our archive, and the rest (walk,
    manifest, catalog); seconds per phase, the process's CPU seconds and the MB the pass
    read in extra_info. The plain incremental follows the full with no load between (what
    an incremental of an idle cluster costs); "after pgbench" runs `pgbench -T
    RB_BENCH_PG_SECONDS` first, untimed, as the incremental group does."""
    out: list[str] = []
    loaded = kind.endswith("after pgbench")
    kind = kind.split()[0]
    if kind == "incremental" and "rustybackup" not in bench.done:
        # Selected without the full (-k): an incremental needs a parent.
        _backup(bench, "rustybackup", "full")
    if loaded:
        # The smoke run (--benchmark-disable, CI) only checks that the variant works: 1 s of load.
        _pgbench(bench, 1 if getattr(benchmark, "disabled", False) else SECONDS)

    def run() -> None:
        proc = subprocess.run(
            [*as_user(), sys.executable, "-c", PHASES, str(bench.repo), NAME, kind],
            capture_output=True, text=True, check=False, cwd="/", timeout=3600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        out.append(proc.stdout.strip().splitlines()[-1])

    _once(benchmark, run)
    bench.done.add("rustybackup")
    phases = json.loads(out[0])
    assert phases.pop("type") == kind
    benchmark.extra_info.update(phases)
    print(f"\n{kind} phases (s): " + ", ".join(f"{k} {v:.2f}" for k, v in phases.items()))


def _pgbench(b: Bench, seconds: int) -> None:
    """`seconds` of pgbench's default load (2 clients), then its WAL archived, so that
    no backup after it waits for the archiver's backlog."""
    c = b.cluster
    c.run(str(b.bin / "pgbench"), "-n", "-T", str(seconds), "-c", "2", "-h", str(c.sockdir), "-p", str(c.port),
          "-U", "postgres", "postgres", timeout=seconds + 600)  # fmt: skip
    c.switch_and_wait_archived(timeout=3600)


def _newest_bytes(b: Bench, peer: str) -> tuple[int, int]:
    """What `peer`'s newest backup read and wrote: ours per its catalog row (bytes read,
    piece bytes stored), pgBackRest per its info (the changed files' bytes it copied
    whole, and what reached its repository)."""
    if peer == "rustybackup":
        newest = json.loads(rb(b.repo, "list", NAME, "--type", "incremental", "--json").stdout)[-1]
        return int(newest["bytes_read"]), int(newest["size"])
    exe = shutil.which("pgbackrest")
    proc = subprocess.run(
        [*as_user(), str(exe), f"--config={b.conf}", f"--stanza={NAME}", "info", "--output=json"],
        capture_output=True, text=True, check=True, cwd="/",
    )  # fmt: skip
    info = json.loads(proc.stdout)[0]["backup"][-1]["info"]
    return int(info["delta"]), int(info["repository"]["delta"])


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.benchmark(group="postgresql incremental after pgbench")
def test_incremental_after_pgbench(benchmark: Any, bench: Bench, peer: str) -> None:
    if peer not in bench.done:
        _backup(bench, peer, "full")
        bench.done.add(peer)

    def load() -> None:
        _pgbench(bench, SECONDS)

    # CPU of the tool's processes (user + system; the server's checkpoint not included)
    # beside the wall time: on this shared 2-core machine, under load, wall time follows
    # CPU time more than it follows the disk.
    cpu: list[float] = []

    def incremental() -> None:
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        _backup(bench, peer, "incremental")
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime)

    _once(benchmark, incremental, setup=load)
    read, written = _newest_bytes(bench, peer)
    benchmark.extra_info.update({"bytes_read": read, "bytes_written": written, "cpu_s": round(cpu[0], 2)})
    benchmark.extra_info["load_average"] = round(os.getloadavg()[0], 1)
    print(f"\n{peer} incremental: {read / 1e6:.1f} MB read, {written / 1e6:.1f} MB written, {cpu[0]:.2f} s CPU, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip


def shell_archive_command(repo: Path, name: str) -> str:
    """README's archive_command for busy servers: `cmp` answers a file already pushed
    ahead (same bytes in the spool; the spool directory fsynced) without starting Python."""
    spool = repo / "wal" / name
    return f"cmp -s %p {spool}/%f && sync {spool} || {command_line(repo, name)}"


PUSHERS = ["rustybackup", "rustybackup-py", "rustybackup-cmp", "pgbackrest", "pgbackrest-async"]


@pytest.mark.parametrize("peer", PUSHERS)
@pytest.mark.benchmark(group="postgresql archive-push")
def test_archive_push_throughput(benchmark: Any, bench: Bench, peer: str) -> None:
    """The archiver's loop over a backlog: real segments of this cluster under names of
    an unused timeline (so no repository has them yet), each marked `.ready` in
    `archive_status/` as PostgreSQL does, one command per segment in order, the marker
    renamed `.done` after each success. Ours pushes the ready files ahead and answers
    the later calls from its spool: the installed `rustybackup` command (archive-push
    without `site`), pip's launcher `rustybackup-py` (the interpreter's full start, what
    the command was before), and rustybackup-cmp (README's `cmp` line in front);
    pgBackRest once as a plain command (a process per segment) and once with
    `archive-async` (its spool, the model ours follows). Wall and CPU time (the
    commands' user + system) per segment in extra_info."""
    # The smoke run (--benchmark-disable) only checks that every peer's loop works.
    segments = 3 if getattr(benchmark, "disabled", False) else SEGMENTS
    src = max(p for p in (bench.cluster.data / "pg_wal").iterdir() if len(p.name) == 24)
    d = workdir(f"rb-pg-push-{peer}-") / "pg_wal"
    (d / "archive_status").mkdir(parents=True)
    tli = 0x40 + PUSHERS.index(peer)
    files = []
    for n in range(segments):
        p = d / f"{tli:08X}{src.name[8:16]}{n + 1:08X}"
        shutil.copyfile(src, p)
        (d / "archive_status" / f"{p.name}.ready").touch()
        files.append(p)
    spool = d.parent / "pgbr-spool"
    spool.mkdir()
    # pgBackRest's async mode reads archive_status/ and pg_control under pg1-path only.
    (d.parent / "global").mkdir()
    shutil.copyfile(bench.cluster.data / "global" / "pg_control", d.parent / "global" / "pg_control")
    for q in [d.parent, *d.parent.rglob("*")]:
        give(q)
    exe = shutil.which("pgbackrest")
    pgbr = [str(exe), f"--config={bench.conf}", f"--stanza={NAME}"]
    if peer == "pgbackrest-async":
        pgbr += [f"--spool-path={spool}", "--archive-async", f"--pg1-path={d.parent}"]

    def command(p: Path) -> list[str]:
        if peer.startswith("rustybackup"):
            if peer == "rustybackup-cmp":
                line = shell_archive_command(bench.repo, NAME)
            else:
                line = command_line(bench.repo, NAME, peer)
            return ["sh", "-c", line.replace("%p", str(p)).replace("%f", p.name)]
        # As PostgreSQL's archiver runs every archive_command: through `sh -c`.
        return ["sh", "-c", shlex.join([*pgbr, "archive-push", str(p)])]

    def push_all() -> None:
        for p in files:
            proc = subprocess.run([*as_user(), *command(p)], check=False, capture_output=True, text=True, cwd="/")
            assert proc.returncode == 0, f"{peer} archive-push {p.name}: {proc.stdout}{proc.stderr}"
            (d / "archive_status" / f"{p.name}.ready").rename(d / "archive_status" / f"{p.name}.done")

    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    _once(benchmark, push_all)
    wall = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime
    benchmark.extra_info["segments_per_second"] = round(segments / wall, 2)
    benchmark.extra_info["cpu_ms_per_segment"] = round(1000 * cpu / segments, 1)
    print(f"\n{peer}: {segments / wall:.2f} segments/s, {1000 * cpu / segments:.1f} ms CPU per segment")
    shutil.rmtree(d.parent, ignore_errors=True)


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.benchmark(group="postgresql restore to a time, recovery included")
def test_restore_to_time(benchmark: Any, bench: Bench, peer: str) -> None:
    for p in PEERS:
        if p not in bench.done:
            _backup(bench, p, "full")
            bench.done.add(p)
    c = bench.cluster
    # A fresh incremental of this tool (untimed), so both replay the same little WAL:
    # otherwise whichever ran its incremental first would replay the other's pgbench run.
    _backup(bench, peer, "incremental")
    c.query("CREATE TABLE IF NOT EXISTS mark (at timestamptz)")
    ((before,),) = c.query("SELECT count(*) FROM mark")
    c.query("INSERT INTO mark VALUES (clock_timestamp())")
    time.sleep(0.05)
    # Whole milliseconds: pgBackRest's --target takes no finer time.
    until = datetime.now(UTC).replace(microsecond=datetime.now(UTC).microsecond // 1000 * 1000)
    time.sleep(0.05)
    c.query("INSERT INTO mark VALUES (clock_timestamp())")
    c.switch_and_wait_archived(timeout=1800)
    target_base = workdir(f"rb-pg-restore-{peer}-")
    target = target_base / "data"

    def restore_and_recover() -> None:
        if peer == "rustybackup":
            rb(bench.repo, "restore", NAME, "--to", str(target), "--until", until.isoformat())
        else:
            target.mkdir(mode=0o700)
            give(target)
            bench.pgbackrest("restore", f"--pg1-path={target}", "--type=time", f"--target={until.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]}+00",
                             "--target-action=promote")  # fmt: skip
        r = Cluster.on(bench.bin, target, target_base, {"archive_mode": "off"})
        try:
            r.start()
            r.wait_promoted(timeout=1800)
            assert r.query("SELECT count(*) FROM mark") == [(before + 1,)]
        finally:
            r.stop("immediate")

    try:
        _once(benchmark, restore_and_recover)
    finally:
        shutil.rmtree(target_base, ignore_errors=True)


@pytest.mark.benchmark(group="postgresql archive-push, in-process (no interpreter start)")
def test_archive_push_in_process(benchmark: Any, bench: Bench, tmp_path: Path) -> None:
    """What one push costs once Python is running: the durable copy, the digests, the
    catalog look-ups and the sealing (every 64 files), without the ~1 s start of a
    `rustybackup` process that the command-line figure includes."""
    from rustybackup import BackupManager
    from rustybackup.postgres import archive

    src = max(p for p in (bench.cluster.data / "pg_wal").iterdir() if len(p.name) == 24)
    m = BackupManager(tmp_path / "repo")
    m.register_database(NAME, bench.cluster.data, kind="postgresql", dsn=bench.cluster.dsn)
    files = []
    for n in range(SEGMENTS):
        p = tmp_path / f"00000042{src.name[8:16]}{n + 1:08X}"
        shutil.copyfile(src, p)
        files.append(p)

    def push_all() -> None:
        for p in files:
            archive.push(m, NAME, p)

    t0 = time.monotonic()
    _once(benchmark, push_all)
    benchmark.extra_info["segments_per_second"] = round(SEGMENTS / (time.monotonic() - t0), 2)


@pytest.mark.benchmark(group="postgresql incremental after pgbench, interleaved")
def test_incremental_after_pgbench_interleaved(benchmark: Any, bench: Bench) -> None:
    """Both tools' incrementals of the same changes: uncompressed fulls of both first
    (parents taken at the same point), then a warm-up round (dropped) and
    RB_BENCH_PG_ROUNDS rounds, each one `pgbench -T RB_BENCH_PG_SECONDS` with its WAL
    archived, then each tool's incremental in turn, the order alternating per round (the
    first after the load finds the page cache as pgbench left it). Wall, CPU (user +
    system of the tool's processes) and the bytes read and written per tool, min /
    median in extra_info, with pgBackRest's over ours."""
    disabled = getattr(benchmark, "disabled", False)
    # The smoke run (--benchmark-disable, CI) checks that a round works: 1 s of load, the
    # warm-up round only.
    rounds, seconds = (0, 1) if disabled else (ROUNDS, SECONDS)
    for peer in PEERS:
        _backup(bench, peer, "full")
        bench.done.add(peer)
    figures: dict[str, dict[str, list[float]]] = {p: {"wall": [], "cpu": [], "read": [], "written": []} for p in PEERS}
    load0 = os.getloadavg()[0]

    def one_round(n: int) -> None:
        _pgbench(bench, seconds)
        for peer in PEERS if n % 2 == 0 else PEERS[::-1]:
            c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.monotonic()
            _backup(bench, peer, "incremental")
            t = time.monotonic() - t0
            c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime
            read, written = _newest_bytes(bench, peer)
            print(f"\n{'warm-up ' if n == 0 else ''}{peer}: {t:.2f} s, CPU {cpu:.2f} s, {read / 1e6:.0f} MB read, "
                  f"{written / 1e6:.0f} MB written", end="")  # fmt: skip
            if n > 0:
                for key, value in ("wall", t), ("cpu", cpu), ("read", read / 1e6), ("written", written / 1e6):
                    figures[peer][key].append(value)

    def run() -> None:
        for n in range(rounds + 1):
            one_round(n)

    _once(benchmark, run)
    load1 = os.getloadavg()[0]
    benchmark.extra_info["load_average"] = [round(load0, 1), round(load1, 1)]
    print(f"\nload average {load0:.1f} -> {load1:.1f}; min / median: seconds, CPU seconds, MB read, MB written")
    for peer in PEERS:
        figs = {k: [round(min(v), 2), round(_median(v), 2)] for k, v in figures[peer].items() if v}
        if figs:
            benchmark.extra_info[peer] = figs
            print(f"{peer}: " + ", ".join(f"{k} {lo:.2f} / {mid:.2f}" for k, (lo, mid) in figs.items()))
    theirs, ours = figures["pgbackrest"]["wall"], figures["rustybackup"]["wall"]
    if theirs and ours:
        ratio = [round(min(theirs) / min(ours), 2), round(_median(theirs) / _median(ours), 2)]
        benchmark.extra_info["pgbackrest / rustybackup"] = ratio
        print(f"pgbackrest / rustybackup: {ratio[0]:.2f}x at the min, {ratio[1]:.2f}x median")
