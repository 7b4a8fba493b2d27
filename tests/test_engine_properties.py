"""The Rust backup pass against independent oracles (hashlib / the blake3 package):
block digests, whole-file digests, stored blocks of an incremental, and restore."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import threading
from pathlib import Path

import blake3
from hypothesis import given
from hypothesis import strategies as st
from rustybackup import BackupManager, _core


def _digest(algorithm: str, data: bytes) -> str:
    if algorithm == "blake3":
        return str(blake3.blake3(data).hexdigest())
    return hashlib.new(algorithm, data).hexdigest()


@given(
    old=st.binary(max_size=5000),
    new=st.binary(max_size=5000),
    algorithm=st.sampled_from(["blake3", "sha256", "md5", "sha1", "sha512"]),
    compression=st.sampled_from([None, "zstd"]),
)
def test_backup_pass_matches_hashlib_and_stores_exactly_the_changed_blocks(
    old: bytes, new: bytes, algorithm: str, compression: str | None
) -> None:
    bs = 512
    tmp = Path(tempfile.mkdtemp(prefix="rb-prop-"))
    try:
        src = tmp / "f"
        src.write_bytes(old)
        m = BackupManager(tmp / "repo")
        m.register_database("p", src, block_size=bs, algorithm=algorithm, compression=compression)
        full = m.backup("p", "full")
        src.write_bytes(new)
        incr = m.backup("p", "incremental")
        for s, data in ((full, old), (incr, new)):
            index = _core.read_piece_index(m.repository / s.pieces[0].path)
            manifest = (m.repository / s.manifest).read_text()
            assert [f["digest"] for f in json.loads(manifest)["files"]] == [_digest(algorithm, data)]
            for file_no, block, _off, _stored, raw_len, _flags, digest in index:
                chunk = data[block * bs : (block + 1) * bs]
                assert file_no == 0 and raw_len == len(chunk) and digest == _digest(algorithm, chunk)
        # Oracle for the incremental: block i is stored iff it differs from the old block i.
        ob = [old[i : i + bs] for i in range(0, len(old), bs)]
        nb = [new[i : i + bs] for i in range(0, len(new), bs)]
        expected = [i for i, b in enumerate(nb) if i >= len(ob) or ob[i] != b]
        got = [e[1] for e in _core.read_piece_index(m.repository / incr.pieces[0].path)]
        assert got == expected
        m.restore("p", tmp / "out")
        assert (tmp / "out" / "f").read_bytes() == new
        m.catalog.close()
    finally:
        shutil.rmtree(tmp)


def test_concurrent_backups_in_one_repository_do_not_sweep_each_other(tmp_path: Path) -> None:
    m = BackupManager(tmp_path / "repo")
    for i in range(3):
        d = tmp_path / f"src{i}"
        d.mkdir()
        (d / "data").write_bytes(bytes([i]) * (3 << 20))
        m.register_database(f"db{i}", d)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for kind in ("full", "incremental", "differential"):
                m.backup(f"db{i}", kind)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(m.catalog.list_sets()) == 9
    for i in range(3):
        m.restore(f"db{i}", tmp_path / f"out{i}")
        assert (tmp_path / f"out{i}" / "data").read_bytes() == bytes([i]) * (3 << 20)
