"""A PostgreSQL base backup killed mid-copy resumes (issue 19; pgBackRest's resume): the
next backup is a new base backup with its own start and stop LSN that adopts the files
the killed one finished and that are still as it read them, without reading them again;
a file written after the cut is read again, and a restore with recovery to an instant
after the resumed backup holds exactly the rows committed by then."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pg_support import Cluster, Writer, archived_cluster, as_user, rb, restore_and_start
from rustybackup import BackupManager, _core, manifest, resume
from rustybackup.sources import LStat

NAME = "main"
# Rows per table, created (and read) in this order; big enough that most of the copy is
# user data, small enough to stay a few seconds. `early` is written after the cut.
TABLES = {"early": 2_000, "big1": 20_000, "big2": 20_000}


@dataclass
class Origin:
    bin: Path
    base: Path
    repo: Path
    cluster: Cluster


@pytest.fixture
def origin() -> Iterator[Origin]:
    # No catalog writes of its own between the runs: the test counts what moves.
    with archived_cluster("rb-pg-resume-", NAME, conf={"autovacuum": "off"}) as a:
        cluster = a.cluster
        # Created in this order, so their files are read in it (relfilenodes ascend).
        for t, n in TABLES.items():
            cluster.query(
                f"CREATE TABLE {t} AS SELECT g AS id, repeat(md5(g::text), 8) AS pad FROM generate_series(1, {n}) g"
            )
        cluster.query("CREATE TABLE rows (id bigint PRIMARY KEY, ts timestamptz NOT NULL)")
        cluster.query("CHECKPOINT")
        # Every file's mtime more than one timestamp tick before the backup reads it.
        time.sleep(1.2)
        yield Origin(a.bin, a.base, a.repo, cluster)


def _relation_path(c: Cluster, table: str) -> Path:
    ((rel,),) = c.query("SELECT pg_relation_filepath(%s)", (table,))
    return c.data / str(rel)


def _staging(repo: Path) -> Path | None:
    dirs = [d for d in (repo / "staging").iterdir() if d.is_dir()] if (repo / "staging").is_dir() else []
    return dirs[0] if len(dirs) == 1 else None


# A FULL backup that commits its checkpoint after every file and stops for good (until
# SIGKILL) once its journal lists argv[2]: a process killed mid-copy, its PostgreSQL
# session inside the backup API.
CHILD = textwrap.dedent(
    """
    import sys, threading
    from pathlib import Path
    from rustybackup import BackupManager, _core
    m = BackupManager(sys.argv[1])
    m.checkpoint_every = 0
    target = Path(sys.argv[2])
    def progress(p):
        for journal in Path(sys.argv[1], "staging").glob("*/checkpoint"):
            if target in _core.checkpoint_adoptable(journal):
                print("stopped", flush=True)
                threading.Event().wait()
    m.backup("main", "full", progress=progress)
    print("finished", flush=True)
    """
)


def _cut_backup(o: Origin, until_file: Path) -> Path:
    """A FULL backup, as the cluster's user, SIGKILLed once its checkpoint journal lists
    `until_file`; returns its staging directory."""
    cmd = [*as_user(), sys.executable, "-c", CHILD, str(o.repo), str(until_file)]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/") as child:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        if line != "stopped":
            child.kill()
            raise AssertionError(f"the backup was not cut: {line} {child.communicate()}")
        child.send_signal(signal.SIGKILL)
        child.wait()
    staging = _staging(o.repo)
    assert staging is not None
    return staging


def _full_json(repo: Path) -> tuple[dict[str, object], tuple[int, int]]:
    """A FULL backup's set and what it says it resumed: (files, bytes)."""
    out = rb(repo, "-v", "backup", NAME, "--type", "full", "--json")
    doc = json.loads(out.stdout)
    assert isinstance(doc, dict)
    m = re.search(r"resumed from ([0-9]+) staged file\(s\) / ([0-9]+) bytes", out.stderr)
    assert m is not None, out.stderr
    return doc, (int(m.group(1)), int(m.group(2)))


def test_a_killed_base_backup_resumes_as_a_new_base_backup_that_restores(origin: Origin) -> None:
    o = origin
    c = o.cluster
    early = _relation_path(c, "early")
    staging = _cut_backup(o, _relation_path(c, "big2"))
    # The server aborted the killed run's backup with its session.
    assert c.query("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rustybackup'") == [(0,)]
    journal = staging / "checkpoint"
    adoptable = _core.checkpoint_adoptable(journal)
    assert early in adoptable
    cut_at = c.query("SELECT pg_current_wal_lsn()::text")[0][0]

    # After the cut: rows committed meanwhile, and `early` written (its file's mtime moves).
    c.query("UPDATE early SET pad = 'after the cut' WHERE id <= 100")
    c.query("CHECKPOINT")
    adoptable = _core.checkpoint_adoptable(journal)
    assert early not in adoptable and _relation_path(c, "big1") in adoptable
    staged_bytes = sum(p.stat().st_size for p in adoptable)

    with Writer(c) as writer:
        time.sleep(0.3)
        doc, (files, adopted) = _full_json(o.repo)
        time.sleep(0.5)
    assert writer.error is None, writer.error
    c.switch_and_wait_archived()

    # It took over the killed run's staging directory and adopted its unchanged files.
    assert doc["id"] == staging.name
    m = BackupManager(o.repo)
    final = manifest.load(o.repo / "sets" / str(doc["id"]) / "manifest.json", set_id=str(doc["id"]))
    total = sum(f.size for f in final.files)
    read = int(str(doc["bytes_read"]))
    # What it did not read it adopted, at most what was adoptable before it started (its
    # own start checkpoint may write a few more files), and far more than it read.
    assert read + adopted == total, (read, adopted, total)
    assert adopted <= staged_bytes and 0 < files <= len(adoptable)
    assert read < total // 4, (read, total)
    assert read >= early.stat().st_size
    # A base backup of its own: its LSNs start after the cut, its label is its own.
    pg = final.postgresql
    assert pg is not None
    hi, lo = (int(x, 16) for x in str(cut_at).split("/"))
    assert pg.start_lsn > (hi << 32 | lo) and pg.stop_lsn > pg.start_lsn
    assert f"{pg.start_lsn >> 32:X}/{pg.start_lsn & 0xFFFFFFFF:X}" in pg.backup_label
    # global/pg_control is copied fresh, last.
    assert final.files[-1].path == "global/pg_control"
    assert not (o.repo / "staging" / staging.name).exists()
    assert [s.id for s in m.catalog.list_sets(NAME, "full")] == [doc["id"]]

    # Recovery to an instant after the resumed backup: exactly the rows committed by then,
    # and `early` as written after the cut (a stale adopted copy would show the old pad).
    i = len(writer.rows) - 2
    until = writer.instant_after(i)
    for restored in restore_and_start(o.bin, o.repo, NAME, until):
        got = [int(r[0]) for r in restored.cluster.query("SELECT id FROM rows ORDER BY id")]
        assert got == [r.id for r in writer.rows[: i + 1]]
        assert restored.cluster.query("SELECT count(*) FROM early WHERE pad = 'after the cut'") == [(100,)]
        for t, n in TABLES.items():
            assert restored.cluster.query(f"SELECT count(*) FROM {t}") == [(n,)]


def test_a_damaged_or_missing_checkpoint_leaves_the_order_alone(tmp_path: Path) -> None:
    """No journal, or one whose header is damaged: nothing goes first (the engine then
    starts over and says why), and nothing fails."""
    src = tmp_path / "pgdata"
    src.mkdir()
    files: list[tuple[str, str | Path, LStat]] = []
    for name in ("PG_VERSION", "base", "global_pg_control"):
        p = src / name
        p.write_bytes(b"x" * 10)
        files.append((name, p, p.stat()))
    staging = tmp_path / "staging"
    staging.mkdir()
    assert resume.base_backup_order(files, staging) == files
    (staging / resume.CHECKPOINT).write_bytes(b"RBCKPT\0\0" + b"\xff" * 200)
    assert resume.base_backup_order(files, staging) == files
    (staging / resume.CHECKPOINT).write_bytes(b"short")
    assert resume.base_backup_order(files, staging) == files
