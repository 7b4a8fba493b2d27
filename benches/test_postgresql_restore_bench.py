"""PostgreSQL restore to a time, ours and pgBackRest interleaved (issue 14).

The cluster is test_postgresql_bench's (`pgbench -i -s RB_BENCH_PG_SCALE`, both tools'
archive_command on every segment). Two groups:

- restore to a time, recovery included: RB_BENCH_PG_ROUNDS rounds after one warm-up
  round per tool, the tools alternating which goes first. Each round takes a fresh
  incremental of each tool (untimed), commits a mark before and after an instant T,
  drops both repositories from the page cache (as hours after a backup), and then per
  tool: the restore command (the data directory written), `pg_ctl start -w`,
  and the wait until recovery has ended (promoted); the server log's "restored log file"
  lines count the WAL files the restore_command delivered.
- one restore_command call: a segment from the staging directory (our generated
  restore_command's first branch), the same segment through `rustybackup archive-get`
  (the installed command, from the repository), pgBackRest's `archive-get`, and the
  probe for a timeline history the archive lacks (both tools), RB_BENCH_PG_GETS rounds
  interleaved after a warm-up.

Min and median per tool, the load average and the CPU seconds of the child processes go
into extra_info and are printed (`-s`). With RB_BENCH_PG_LOGS=DIR each restored server
logs its start-up's progress every 20 ms (``log_startup_progress_interval``: how long
its fsync pass over the data directory took) and its log is kept in DIR as
``<tool>-<round>.log``.
"""

from __future__ import annotations

import os
import resource
import shlex
import shutil
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pg_support import Cluster, as_user, give, rb, workdir
from rustybackup.postgres.recovery import STAGE_DIR, restore_command
from test_postgresql_bench import NAME, SCRIPTS, Bench, _backup, bench

__all__ = ["bench"]  # the module-scoped cluster fixture, shared with test_postgresql_bench

ROUNDS = int(os.environ.get("RB_BENCH_PG_ROUNDS", "3"))
GETS = int(os.environ.get("RB_BENCH_PG_GETS", "10"))
LOGS = os.environ.get("RB_BENCH_PG_LOGS")
PEERS = ["rustybackup", "pgbackrest"]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _summary(values: list[float]) -> str:
    return f"{min(values):.3f} / {statistics.median(values):.3f}"


def _uncache(root: Path) -> None:
    """Drops `root`'s files from the page cache (their clean pages; no root needed), as
    they are when a restore comes hours after the backup. Our backups drop their pieces
    as they write them (format/writeback.rs) and pgBackRest keeps its files cached, so
    without this pgBackRest restored from memory and we from the disk."""
    for d, _, names in os.walk(root):
        for name in names:
            try:
                fd = os.open(os.path.join(d, name), os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue  # a link or a file gone: nothing cached to drop
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _restore_round(b: Bench, peer: str, until: datetime, expect: int, n: int, done: list[Path]) -> dict[str, float]:
    """One restore of `peer` to `until`, started and checked; its directory goes into
    `done`, removed by the caller after the last round: ext4 makes every file creation
    skip inodes deleted in the last seconds (`recently_deleted`, found by perf as ~75% of
    a 10,000-file restore's CPU right after a tree was removed), so a restore that followed
    the previous round's removal paid for it, whichever tool it was."""
    target_base = workdir(f"rb-pg-restore-{peer}-")
    done.append(target_base)
    target = target_base / "data"
    phases: dict[str, float] = {}
    for repo in (b.repo, b.base / "pgbr"):
        _uncache(repo)
    try:
        c0, t0 = _cpu(), time.monotonic()
        if peer == "rustybackup":
            rb(b.repo, "restore", NAME, "--to", str(target), "--until", until.isoformat())
        else:
            target.mkdir(mode=0o700)
            give(target)
            b.pgbackrest("restore", f"--pg1-path={target}", "--type=time",
                         f"--target={until.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]}+00", "--target-action=promote")  # fmt: skip
        t1 = time.monotonic()
        conf = {"archive_mode": "off", "log_line_prefix": "'%m '"}
        if LOGS:
            conf["log_startup_progress_interval"] = "'20ms'"
        r = Cluster.on(b.bin, target, target_base, conf)
        try:
            r.start()
            t2 = time.monotonic()
            r.wait_promoted(timeout=1800)
            t3 = time.monotonic()
            c1 = _cpu()
            assert r.query("SELECT count(*) FROM mark") == [(expect,)]
        finally:
            r.stop("immediate")
        log = r.log.read_text(errors="replace")
        if LOGS:
            shutil.copyfile(r.log, Path(LOGS) / f"{peer}-{n}.log")
        phases = {
            "restore": t1 - t0,
            "start": t2 - t1,
            "recovery": t3 - t2,
            "total": t3 - t0,
            "cpu": c1 - c0,
            "restored_files": float(log.count("restored log file")),
        }
    except BaseException:
        shutil.rmtree(target_base, ignore_errors=True)
        raise
    return phases


@pytest.mark.benchmark(group="postgresql restore to a time, interleaved")
def test_restore_to_time_interleaved(benchmark: Any, bench: Bench) -> None:
    # The smoke run (--benchmark-disable) runs the warm-up round only: each tool once.
    rounds = 0 if getattr(benchmark, "disabled", False) else ROUNDS
    for p in PEERS:
        if p not in bench.done:
            _backup(bench, p, "full")
            bench.done.add(p)
    c = bench.cluster
    c.query("CREATE TABLE IF NOT EXISTS mark (at timestamptz)")
    results: dict[str, list[dict[str, float]]] = {p: [] for p in PEERS}
    loads: list[float] = []

    done: list[Path] = []

    def run() -> None:
        for n in range(rounds + 1):
            order = PEERS if n % 2 == 0 else PEERS[::-1]
            for peer in order:
                # A fresh incremental of this tool, so both replay the same little WAL.
                _backup(bench, peer, "incremental")
                ((before,),) = c.query("SELECT count(*) FROM mark")
                c.query("INSERT INTO mark VALUES (clock_timestamp())")
                time.sleep(0.05)
                # Whole milliseconds: pgBackRest's --target takes no finer time.
                now = datetime.now(UTC)
                until = now.replace(microsecond=now.microsecond // 1000 * 1000)
                time.sleep(0.05)
                c.query("INSERT INTO mark VALUES (clock_timestamp())")
                c.switch_and_wait_archived(timeout=1800)
                loads.append(os.getloadavg()[0])
                phases = _restore_round(bench, peer, until, before + 1, n, done)
                if n > 0:  # round 0 warms each tool's caches
                    results[peer].append(phases)
                print(f"\nround {n} {peer}: " + ", ".join(f"{k} {v:.2f}" for k, v in phases.items()))

    try:
        benchmark.pedantic(run, rounds=1, iterations=1)
    finally:
        for d in done:
            shutil.rmtree(d, ignore_errors=True)
    print(f"\nload average {min(loads):.1f}-{max(loads):.1f}")
    for peer, rows in results.items():
        for key in ("total", "restore", "start", "recovery", "cpu", "restored_files"):
            values = [r[key] for r in rows]
            if not values:
                continue
            benchmark.extra_info[f"{peer} {key} min/median"] = _summary(values)
            print(f"{peer} {key} (min / median): {_summary(values)}  rounds: {', '.join(f'{v:.2f}' for v in values)}")
    benchmark.extra_info["load average"] = f"{min(loads):.1f}-{max(loads):.1f}"


def _time_call(argv: list[str], cwd: Path, expect: int) -> tuple[float, float]:
    c0, t0 = _cpu(), time.monotonic()
    proc = subprocess.run([*as_user(), *argv], cwd=cwd, capture_output=True, text=True, check=False, timeout=300)
    wall, cpu = time.monotonic() - t0, _cpu() - c0
    assert proc.returncode == expect, f"{argv}: exit {proc.returncode}: {proc.stdout}{proc.stderr}"
    return wall, cpu


@pytest.mark.benchmark(group="postgresql restore_command, one call")
def test_restore_command_call(benchmark: Any, bench: Bench) -> None:
    gets = 2 if getattr(benchmark, "disabled", False) else GETS
    c = bench.cluster
    segment = c.switch_and_wait_archived(timeout=1800)
    ((tli,),) = c.query("SELECT timeline_id FROM pg_control_checkpoint()")
    absent = f"{tli + 1:08X}.history"
    work = workdir("rb-pg-get-")
    data = work / "data"
    (data / STAGE_DIR).mkdir(parents=True)
    shutil.copyfile(c.data / "pg_wal" / segment, data / STAGE_DIR / segment)
    # pgBackRest's archive-get reads the data directory's pg_control (system id, version).
    (data / "global").mkdir()
    shutil.copyfile(c.data / "global" / "pg_control", data / "global" / "pg_control")
    give(data)
    for d in (data, data / "pg_wal", data / STAGE_DIR, data / "global", data / "global" / "pg_control"):
        give(d)
    give(data / STAGE_DIR / segment)
    # The segment sealed into a set (the full command reads and checks it), and a copy of
    # it pushed under another timeline's name, left waiting in the spool (the shell
    # script's answer).
    # A push that finds a group of one due seals the spool (the segment included) and
    # clears it; the second copy then stays waiting.
    sealer = f"{0x4E:08X}{segment[8:]}"
    spooled = f"{0x4F:08X}{segment[8:]}"
    for name, group in ((sealer, "1"), (spooled, "64")):
        shutil.copyfile(data / STAGE_DIR / segment, work / name)
        give(work / name)
        rb(bench.repo, "archive-push", NAME, str(work / name), env={**os.environ, "RUSTYBACKUP_WAL_GROUP": group})
    staged_line = restore_command(bench.repo, NAME, staged=True)
    ours = f"{SCRIPTS / 'rustybackup'} --repo {shlex.quote(str(bench.repo))} archive-get {NAME}"
    found = shutil.which("pgbackrest")
    assert found is not None
    # pgBackRest checks that it runs in the data directory it is configured for.
    pgbr = f"{found} --config={bench.conf} --stanza={NAME} --pg1-path={data}"

    def sh(line: str, f: str) -> list[str]:
        return ["/bin/sh", "-c", line.replace("%f", f).replace("%p", "pg_wal/RECOVERYXLOG")]

    calls = {
        "ours, staged (generated restore_command)": (sh(staged_line, segment), 0),
        "ours, installed rustybackup archive-get, sealed": (sh(f"{ours} %f %p", segment), 0),
        "ours, installed rustybackup archive-get, spool": (sh(f"{ours} %f %p", spooled), 0),
        "pgBackRest archive-get": (sh(f"{pgbr} archive-get %f %p", segment), 0),
        "ours, absent history (generated restore_command)": (sh(staged_line, absent), 1),
        "pgBackRest, absent history": (sh(f"{pgbr} archive-get %f %p", absent), 1),
    }
    walls: dict[str, list[float]] = {k: [] for k in calls}
    cpus: dict[str, list[float]] = {k: [] for k in calls}

    def run() -> None:
        for n in range(gets + 1):
            for key, (argv, expect) in calls.items():
                (data / "pg_wal/RECOVERYXLOG").unlink(missing_ok=True)
                wall, cpu = _time_call(argv, data, expect)
                if expect == 0:
                    assert (data / "pg_wal/RECOVERYXLOG").read_bytes() == (work / spooled).read_bytes()
                if n > 0:
                    walls[key].append(wall)
                    cpus[key].append(cpu)

    try:
        benchmark.pedantic(run, rounds=1, iterations=1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average {os.getloadavg()[0]:.1f}")
    for key in calls:
        line = f"wall ms {_summary([1000 * w for w in walls[key]])}, cpu ms {_summary([1000 * c for c in cpus[key]])}"
        benchmark.extra_info[key] = line
        print(f"{key}: {line}")
