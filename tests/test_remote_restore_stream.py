"""A restore from S3 reads the pieces by ranges as it writes (storage/restore.rs), never
a whole piece to disk first. Against a real SeaweedFS: the bytes the server sends
(counted by the proxy in front of it) are about the blocks restored, not the piece;
chains restore byte for byte (hypothesis, the source trees as the oracle); a damaged,
truncated or missing piece in the bucket is one clear error naming it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from engine_support import SimClock, snapshot_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rustybackup import BackupError, BackupManager, RestoreOptions, RustyBackupError
from rustybackup.errors import StorageNotFound
from s3_fault_proxy import FaultProxy
from s3_support import SeaweedFS, point_at

MiB = 1 << 20
BLOCK = 4096


@pytest.fixture
def s3_env(s3_server: SeaweedFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SeaweedFS:
    # The smallest part S3 allows: a few MiB of data already make several spans.
    return point_at(s3_server, monkeypatch, tmp_path / "cache", 5 * MiB)


def _piece_key(prefix: str, set_id: str) -> str:
    return f"{prefix}/sets/{set_id}/data.piece"


def test_restore_fetches_the_blocks_it_writes_not_whole_pieces(
    s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rnd = random.Random(7)
    (src / "big.bin").write_bytes(rnd.randbytes(12 * MiB))
    (src / "small.txt").write_bytes(rnd.randbytes(3000))
    m = BackupManager(s3_env.url(s3_prefix))
    m.register_database("db", src, block_size=BLOCK)
    full = m.backup("db", "full")
    piece = full.pieces[0].size
    assert piece > 12 * MiB
    with FaultProxy(s3_env.s3_port) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        reader = BackupManager(s3_env.url(s3_prefix))
        before = proxy.response_bytes
        reader.restore("db", tmp_path / "all")
        whole = proxy.response_bytes - before
        before = proxy.response_bytes
        reader.restore("db", tmp_path / "one", options=RestoreOptions(include=("small.txt",)))
        one = proxy.response_bytes - before
    assert snapshot_tree(tmp_path / "all", with_meta=False) == snapshot_tree(src, with_meta=False)
    assert (tmp_path / "one" / "small.txt").read_bytes() == (src / "small.txt").read_bytes()
    assert not (tmp_path / "one" / "big.bin").exists()
    # Every block once, plus headers, manifests, the block map and listings; a download
    # of the piece before the restore (what this replaced) would be at least the piece.
    assert 12 * MiB < whole < piece + 2 * MiB
    assert one < 2 * MiB
    # Nothing of the piece stays in the cache.
    assert not (m.repository / full.pieces[0].path).exists()


@st.composite
def _chains(draw: st.DrawFn) -> list[dict[str, bytes]]:
    """A file tree and 1-3 later states of it (blocks rewritten, files added/removed)."""
    seed = draw(st.integers(0, 2**32 - 1))
    rnd = random.Random(seed)
    sizes = draw(st.lists(st.sampled_from([0, 1, 100, BLOCK, BLOCK + 1, 5 * BLOCK, 300_000, 1_400_000]), max_size=6))
    tree = {f"f{i}.bin": rnd.randbytes(n) for i, n in enumerate(sizes)}
    states = [dict(tree)]
    for _ in range(draw(st.integers(1, 3))):
        tree = dict(tree)
        for name, data in list(tree.items()):
            if data and rnd.random() < 0.6:
                b = bytearray(data)
                for _ in range(rnd.randrange(1, 4)):
                    at = rnd.randrange(len(b))
                    b[at : at + 50] = rnd.randbytes(len(b[at : at + 50]))
                tree[name] = bytes(b)
        if rnd.random() < 0.3 and tree:
            del tree[rnd.choice(sorted(tree))]
        tree[f"new{len(states)}.bin"] = rnd.randbytes(rnd.randrange(0, 200_000))
        states.append(tree)
    return states


def _write(root: Path, files: dict[str, bytes]) -> None:
    for p in root.iterdir():
        p.unlink()
    for name, data in files.items():
        (root / name).write_bytes(data)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(states=_chains(), compression=st.sampled_from([None, "zstd"]))
def test_chains_restore_from_the_bucket_as_they_were(
    s3_env: SeaweedFS, tmp_path_factory: pytest.TempPathFactory, states: list[dict[str, bytes]], compression: str | None
) -> None:
    tmp = tmp_path_factory.mktemp("chain")
    src = tmp / "src"
    src.mkdir()
    clock = SimClock()
    m = BackupManager(s3_env.url(f"prop-{tmp.name}"), clock=clock)
    m.register_database("db", src, block_size=BLOCK, compression=compression)
    sets = []
    for n, files in enumerate(states):
        _write(src, files)
        clock.advance(hours=1)
        sets.append(m.backup("db", "full" if n == 0 else "incremental"))
    for n, (s, files) in enumerate(zip(sets, states, strict=True)):
        out = tmp / f"out{n}"
        m.restore("db", out, backup_set_id=s.id)
        assert {p.name: p.read_bytes() for p in out.iterdir()} == files


def _one_set(s3_env: SeaweedFS, prefix: str, tmp_path: Path) -> tuple[BackupManager, str]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(random.Random(3).randbytes(200_000))
    m = BackupManager(s3_env.url(prefix))
    m.register_database("db", src, block_size=BLOCK)
    return m, m.backup("db", "full").id


def test_a_damaged_block_in_the_bucket_is_named(s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path) -> None:
    m, set_id = _one_set(s3_env, s3_prefix, tmp_path)
    client = s3_env.client()
    key = _piece_key(s3_prefix, set_id)
    data = client.get(s3_env.bucket, key)
    assert data is not None
    bad = bytearray(data)
    bad[32 + 5 * BLOCK + 7] ^= 0xFF  # inside the sixth block (stored raw)
    client.put(s3_env.bucket, key, bytes(bad))
    with pytest.raises(BackupError) as e:
        m.restore("db", tmp_path / "out")
    msg = str(e.value)
    assert f"sets/{set_id}/data.piece" in msg and "a.bin" in msg and f"offset {32 + 5 * BLOCK}" in msg


def test_a_truncated_piece_in_the_bucket_is_named(s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path) -> None:
    m, set_id = _one_set(s3_env, s3_prefix, tmp_path)
    client = s3_env.client()
    key = _piece_key(s3_prefix, set_id)
    data = client.get(s3_env.bucket, key)
    assert data is not None
    client.put(s3_env.bucket, key, data[: len(data) // 2])
    with pytest.raises(BackupError, match=rf"sets/{set_id}/data.piece.*(trailer|truncated)"):
        m.restore("db", tmp_path / "out")


def test_a_missing_piece_in_the_bucket_is_named(s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path) -> None:
    m, set_id = _one_set(s3_env, s3_prefix, tmp_path)
    s3_env.client().request("DELETE", f"/{s3_env.bucket}/{_piece_key(s3_prefix, set_id)}")
    with pytest.raises(StorageNotFound, match=f"sets/{set_id}/data.piece"):
        m.restore("db", tmp_path / "out")
    assert issubclass(StorageNotFound, RustyBackupError)
