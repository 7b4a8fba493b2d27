"""Point-in-time recovery of a real PostgreSQL cluster: a writer commits timestamped rows
while the WAL is archived through `rustybackup archive-push` and base backups run; every
restore to an instant T, started and recovered by PostgreSQL itself, must hold exactly
the rows committed at or before T."""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from pg_support import Cluster, Writer, archive_command, give, require_postgresql, rb, restore_and_start, workdir
from rustybackup import BackupManager, manifest
from rustybackup.errors import NoRecoveryPath
from rustybackup.postgres.recovery import plan

NAME = "main"


@dataclass
class Origin:
    bin: Path
    repo: Path
    cluster: Cluster
    writer: Writer
    full_done: datetime
    incr_done: datetime


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    bin = require_postgresql()
    base = workdir("rb-pg-origin-")
    repo = base / "repo"
    cluster = Cluster.init(
        bin, base, conf={"archive_mode": "on", "archive_command": f"'{archive_command(repo, NAME)}'"}
    )
    cluster.env["RUSTYBACKUP_WAL_GROUP"] = "4"
    try:
        rb(repo, "init")
        rb(repo, "db", "add", NAME, "--kind", "postgresql", "--pgdata", str(cluster.data), "--dsn", cluster.dsn)
        cluster.start()
        with Writer(cluster) as writer:
            time.sleep(0.5)
            rb(repo, "backup", NAME, "--type", "full")
            full_done = datetime.now().astimezone()
            time.sleep(1.5)
            rb(repo, "backup", NAME, "--type", "incremental")
            incr_done = datetime.now().astimezone()
            time.sleep(1.5)
        assert writer.error is None, writer.error
        cluster.switch_and_wait_archived()
        yield Origin(bin, repo, cluster, writer, full_done, incr_done)
    finally:
        cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def _ids(c: Cluster, table: str = "rows") -> list[int]:
    return [int(r[0]) for r in c.query(f"SELECT id FROM {table} ORDER BY id")]


def _index_after(rows: list[object], when: datetime) -> int:
    return next(i for i, r in enumerate(rows) if getattr(r, "returned_at") > when)  # noqa: B009


def test_restores_to_random_instants_hold_exactly_the_rows_committed_by_then(origin: Origin) -> None:
    rows = origin.writer.rows
    rng = random.Random(14)
    first = _index_after(list(rows), origin.full_done)
    middle = _index_after(list(rows), origin.incr_done)
    # One instant served by FULL + WAL, one by FULL + INCREMENTAL + WAL, one at random.
    picks = [
        rng.randrange(first, middle - 1),
        rng.randrange(middle, len(rows) - 2),
        rng.randrange(first, len(rows) - 2),
    ]
    for i in picks:
        until = origin.writer.instant_after(i)
        for restored in restore_and_start(origin.bin, origin.repo, NAME, until):
            got = _ids(restored.cluster)
            assert got == [r.id for r in rows[: i + 1]], f"until {until.isoformat()}"
            assert all(r.ts <= until for r in rows[: i + 1]) and rows[i + 1].ts > until


def test_the_recovery_path_names_the_base_backup_and_the_wal_sets(origin: Origin) -> None:
    rows = origin.writer.rows
    m = BackupManager(origin.repo)
    # Between FULL and INCREMENTAL: the FULL and the sealed WAL from its start on.
    i = _index_after(list(rows), origin.full_done) + 5
    path = m.catalog.find_recovery_path(NAME, origin.writer.instant_after(i))
    kinds = [s.backup_type.value for s in path]
    assert kinds[0] == "full" and "incremental" not in kinds
    assert kinds[1:] and set(kinds[1:]) == {"archive_log"}
    # After the INCREMENTAL: its chain, and only WAL from the INCREMENTAL's start on.
    path = m.catalog.find_recovery_path(NAME, origin.writer.instant_after(len(rows) - 3))
    assert [s.backup_type.value for s in path][:2] == ["full", "incremental"]
    assert all(s.finished_at >= path[1].started_at for s in path[2:])


def test_an_instant_past_the_archive_is_refused_not_rounded_down(origin: Origin) -> None:
    m = BackupManager(origin.repo)
    later = datetime.now().astimezone().replace(year=datetime.now().year + 1)
    with pytest.raises(NoRecoveryPath, match="does not reach"):
        m.catalog.find_recovery_path(NAME, later)


def test_a_segment_pushed_again_is_accepted_and_another_under_its_name_refused(origin: Origin, tmp_path: Path) -> None:
    d = workdir("rb-pg-push-")
    try:
        ((name,),) = origin.cluster.query("SELECT last_archived_wal FROM pg_stat_archiver")
        rb(origin.repo, "archive-get", NAME, name, str(d / name))
        again = rb(origin.repo, "archive-push", NAME, str(d / name), check=False)
        assert again.returncode == 0, again.stderr
        data = bytearray((d / name).read_bytes())
        data[1000] ^= 0xFF
        (d / name).unlink()
        (d / name).write_bytes(bytes(data))
        give(d / name)
        changed = rb(origin.repo, "archive-push", NAME, str(d / name), check=False)
        assert changed.returncode == 1
        assert "already archived" in changed.stderr and name in changed.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_archive_get_of_a_missing_segment_exits_1_quietly(origin: Origin) -> None:
    d = workdir("rb-pg-get-")
    try:
        proc = rb(origin.repo, "archive-get", NAME, "0000000100000000000000FE", str(d / "x"), check=False)
        assert (proc.returncode, proc.stderr) == (1, "")
        assert not (d / "x").exists()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_a_gap_in_the_archive_raises_no_recovery_path_naming_the_segment(origin: Origin) -> None:
    copy = workdir("rb-pg-gap-") / "repo"
    shutil.copytree(origin.repo, copy, symlinks=True)
    try:
        m = BackupManager(copy)
        db = m.catalog.get_database(NAME)
        # Between FULL and INCREMENTAL, so the WAL comes from sealed sets.
        until = origin.writer.instant_after(_index_after(list(origin.writer.rows), origin.full_done) + 5)
        before = plan(m, db, until)
        assert before.log_set_ids, "the WAL after the FULL is sealed into sets"
        victim = m.catalog.get_set(before.log_set_ids[-1])
        held = {f.path for f in manifest.load(copy / victim.manifest).files}
        first_missing = next(n for n in before.wal if n in held)
        m.delete(victim.id)
        with pytest.raises(NoRecoveryPath, match=first_missing):
            m.catalog.find_recovery_path(NAME, until)
        with pytest.raises(NoRecoveryPath, match=first_missing):
            m.restore(NAME, copy.parent / "target", until=until)
        assert not (copy.parent / "target").exists()
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)
