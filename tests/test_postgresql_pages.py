"""Page checksums against PostgreSQL itself: every page of a real cluster initialised
with data checksums (initdb -k) checks out with our pg_checksum_page, and a page damaged
on disk is named (file, block) in the base backup's manifest instead of stored silently."""

from __future__ import annotations

import random
import shutil
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pg_support import Cluster, archived_cluster, rb, workdir
from rustybackup import BackupManager, _core, manifest

NAME = "pages"


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Cluster, Path]]:
    with archived_cluster("rb-pg-pages-", NAME) as a:
        c = a.cluster
        c.query("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g")
        c.query("CHECKPOINT")
        yield c, a.repo


def _pages(path: Path) -> list[bytes]:
    data = path.read_bytes()
    return [data[i : i + 8192] for i in range(0, len(data) - 8191, 8192)]


def test_every_page_of_a_real_cluster_matches_postgresqls_checksum(cluster: tuple[Cluster, Path]) -> None:
    c, _ = cluster
    ((rel,),) = c.query("SELECT pg_relation_filepath('t')")
    pages = _pages(c.data / rel)
    assert len(pages) > 50
    for blkno, page in enumerate(pages):
        (stored,) = struct.unpack_from("<H", page, 8)
        assert _core.pg_checksum_page(page, blkno) == stored, f"block {blkno}"
    assert _core.pg_check_file(c.data / rel, start_lsn=2**63) == []


_OFFSETS = (
    0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
    0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
    0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
    0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E, 0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
)  # fmt: skip


def _oracle(page: bytes, blkno: int) -> int:
    """checksum_impl.h in Python, word by word, as the independent oracle."""
    words = struct.unpack(f"<{len(page) // 4}I", page[:8] + b"\0\0" + page[10:])
    sums = list(_OFFSETS)

    def comp(s: int, v: int) -> int:
        t = s ^ v
        return ((t * 16777619) & 0xFFFFFFFF) ^ (t >> 17)

    for i in range(0, len(words), 32):
        for j in range(32):
            sums[j] = comp(sums[j], words[i + j])
    for _ in range(2):
        sums = [comp(x, 0) for x in sums]
    folded = 0
    for x in sums:
        folded ^= x
    return (folded ^ blkno) % 65535 + 1


@given(seed=st.integers(0, 2**64), size=st.sampled_from([1024, 8192, 32768]), blkno=st.integers(0, 2**32 - 1))
def test_the_checksum_agrees_with_a_word_by_word_transcription(seed: int, size: int, blkno: int) -> None:
    page = random.Random(seed).randbytes(size)
    assert _core.pg_checksum_page(page, blkno) == _oracle(page, blkno)


def test_a_wrong_page_size_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="1024..32768"):
        _core.pg_checksum_page(b"\0" * 8191, 0)
    with pytest.raises(ValueError, match="page_size"):
        _core.pg_check_file("/nonexistent", start_lsn=0, page_size=3000)
    with pytest.raises(FileNotFoundError):
        _core.pg_check_file("/nonexistent/16384", start_lsn=0)


def test_a_damaged_source_page_is_reported_in_the_sets_manifest(cluster: tuple[Cluster, Path]) -> None:
    c, repo = cluster
    c.query("CREATE TABLE victim AS SELECT g AS id FROM generate_series(1, 5000) g")
    c.query("CHECKPOINT")
    ((rel,),) = c.query("SELECT pg_relation_filepath('victim')")
    path = c.data / rel
    with open(path, "r+b") as fh:
        fh.seek(3 * 8192 + 4000)
        byte = fh.read(1)
        fh.seek(3 * 8192 + 4000)
        fh.write(bytes([byte[0] ^ 0x01]))
    try:
        rb(repo, "backup", NAME, "--type", "full")
        m = BackupManager(repo)
        newest = m.catalog.list_sets(NAME, "full")[-1]
        info = manifest.load(repo / newest.manifest).postgresql
        assert info is not None and info.data_checksums
        assert [(p.path, p.block) for p in info.damaged_pages] == [(rel, 3)]
    finally:
        c.query("DROP TABLE victim")


def test_a_dsn_reaching_another_cluster_than_the_data_directory_is_refused(cluster: tuple[Cluster, Path]) -> None:
    c, repo = cluster
    other = workdir("rb-pg-other-")
    try:
        (other / "PG_VERSION").write_text("15\n")
        rb(repo, "db", "add", "wrong", "--kind", "postgresql", "--pgdata", str(other), "--dsn", c.dsn)
        proc = rb(repo, "backup", "wrong", "--type", "full", check=False)
        assert proc.returncode == 1
        assert "not the registered data directory" in proc.stderr and str(c.data) in proc.stderr
        assert not any((repo / "staging").iterdir())
    finally:
        shutil.rmtree(other, ignore_errors=True)


def test_an_unlogged_tables_data_is_left_out_and_its_init_fork_kept(cluster: tuple[Cluster, Path]) -> None:
    c, repo = cluster
    c.query("CREATE UNLOGGED TABLE scratch AS SELECT g FROM generate_series(1, 1000) g")
    c.query("CHECKPOINT")
    ((rel,),) = c.query("SELECT pg_relation_filepath('scratch')")
    try:
        rb(repo, "backup", NAME, "--type", "full")
        newest = BackupManager(repo).catalog.list_sets(NAME, "full")[-1]
        paths = {f.path for f in manifest.load(repo / newest.manifest).files}
        assert f"{rel}_init" in paths and rel not in paths
    finally:
        c.query("DROP TABLE scratch")


def _flip(path: Path, block: int) -> None:
    """One bit of tuple data in `block` flipped on disk: the page's checksum no longer holds."""
    with open(path, "r+b") as fh:
        fh.seek(block * 8192 + 4000)
        byte = fh.read(1)
        fh.seek(block * 8192 + 4000)
        fh.write(bytes([byte[0] ^ 0x01]))


def test_an_incremental_carries_the_parents_verdict_for_files_it_took_unread(cluster: tuple[Cluster, Path]) -> None:
    """A file the incremental takes from its parent unread is not checked again: the
    damaged page the parent found in it is carried into the new manifest (the log names
    the parent). A file damaged after the parent is read and checked afresh."""
    c, repo = cluster
    # No autovacuum: it would read the damaged page (and fail) or rewrite the files.
    for table in ("carried", "fresh"):
        c.query(
            f"CREATE TABLE {table} WITH (autovacuum_enabled = false) AS SELECT g AS id FROM generate_series(1, 5000) g"
        )
    c.query("CHECKPOINT")
    ((carried,),) = c.query("SELECT pg_relation_filepath('carried')")
    ((fresh,),) = c.query("SELECT pg_relation_filepath('fresh')")
    try:
        _flip(c.data / carried, 3)
        # unchanged.py takes a file unread only if it was last written over a second
        # before the parent started.
        time.sleep(1.5)
        rb(repo, "backup", NAME, "--type", "full")
        m = BackupManager(repo)
        full = m.catalog.list_sets(NAME, "full")[-1]
        info = manifest.load(repo / full.manifest).postgresql
        assert info is not None
        assert [(p.path, p.block) for p in info.damaged_pages] == [(carried, 3)]

        _flip(c.data / fresh, 2)
        out = rb(repo, "backup", NAME, "--type", "incremental")
        inc = m.catalog.list_sets(NAME, "incremental")[-1]
        assert inc.parent_id == full.id
        got = manifest.load(repo / inc.manifest)
        assert got.postgresql is not None
        assert sorted((p.path, p.block) for p in got.postgresql.damaged_pages) == sorted([(carried, 3), (fresh, 2)])
        assert got.summary.unread > 0
        assert f"{carried} block 3 (checksum mismatch, found by {full.id}; unchanged since)" in out.stderr
        assert f"{fresh} block 2 (checksum mismatch)\n" in out.stderr
        # The bytes the parent stored for the damaged file are the new set's.
        by_path = {f.path: f for f in manifest.load(repo / full.manifest).files}
        assert {f.path: f.digest for f in got.files}[carried] == by_path[carried].digest
    finally:
        c.query("DROP TABLE carried")
        c.query("DROP TABLE fresh")
