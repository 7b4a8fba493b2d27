"""A tree's large files restored two at a time (engine/restore_parallel.rs): every
file's bytes as the source had them, whichever lane wrote it, and a flipped byte in
any large file's stored block still fails the restore naming that file and block. The
oracle is the source tree's bytes, never the manifest."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager, manifest
from rustybackup.errors import BackupError

BIG = 300_000  # past the batch limit (16 blocks, 1 MiB): streamed as a large file


def make_tree(src: Path, sizes: list[int], seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    out: dict[str, bytes] = {}
    for i, n in enumerate(sizes):
        rel = f"base/{i % 3}/f{i:02d}"
        data = rng.randbytes(n)
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        out[rel] = data
    return out


def restored(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# Each example is a backup and a restore (~0.3 s): few examples keep it to seconds.
@settings(max_examples=8, deadline=None)
@given(
    sizes=st.lists(st.sampled_from([0, 1, 5000, BIG, BIG + 1, 2 * BIG + 7, (1 << 20) + 3]), min_size=1, max_size=9),
    seed=st.integers(0, 99),
)
def test_large_files_restore_byte_for_byte_whatever_lane_wrote_them(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], seed: int
) -> None:
    base = tmp_path_factory.mktemp("t")
    want = make_tree(base / "src", sizes, seed)
    m = BackupManager(base / "repo")
    m.register_database("t", base / "src")
    m.backup("t", "full")
    m.restore("t", base / "out")
    assert restored(base / "out") == want


@pytest.mark.parametrize("victim", [0, 3, 5])
def test_a_flipped_byte_in_either_lane_fails_naming_file_and_block(tmp_path: Path, victim: int) -> None:
    sizes = [BIG * (1 + i % 3) + i for i in range(6)]
    want = make_tree(tmp_path / "src", sizes, 7)
    m = BackupManager(tmp_path / "repo")
    m.register_database("t", tmp_path / "src")
    s = m.backup("t", "full")
    man = manifest.load(tmp_path / "repo" / "sets" / s.id / "manifest.json")
    rel = f"base/{victim % 3}/f{victim:02d}"
    piece = tmp_path / "repo" / "sets" / s.id / man.sources[-1].piece
    data = bytearray(piece.read_bytes())
    # Stored as it was (incompressible): flip a byte well inside the file, past block 0.
    body = want[rel]
    at = data.find(body[100_000 : 100_000 + 64])
    assert at > 0
    data[at + 9] ^= 0x01
    piece.write_bytes(bytes(data))
    with pytest.raises(BackupError, match=rf'corrupt block [1-9]\d* of file "{rel}".* at offset \d+') as e:
        m.restore("t", tmp_path / "out")
    assert piece.name in str(e.value)


class Stop(Exception):
    pass


def test_progress_rises_to_the_whole_and_a_raising_hook_stops_both_lanes(tmp_path: Path) -> None:
    # Past the binding's reporting step (8 MiB) more than once.
    sizes = [6_000_000 + i for i in range(4)] + [100, 200]
    want = make_tree(tmp_path / "src", sizes, 3)
    m = BackupManager(tmp_path / "repo")
    m.register_database("t", tmp_path / "src")
    m.backup("t", "full")
    seen: list[int] = []
    m.restore("t", tmp_path / "out", progress=seen.append)
    assert restored(tmp_path / "out") == want
    assert seen == sorted(seen)
    assert 8 << 20 <= seen[-1] <= sum(sizes)

    def stop_midway(n: int) -> None:
        # Past the small files (300 bytes): the lanes are running when the hook refuses.
        if n > 0:
            raise Stop(n)

    with pytest.raises(Stop):
        m.restore("t", tmp_path / "out2", progress=stop_midway)
