"""Which byte ranges a restore from S3 asks the server for (storage/restore.rs, `plan`):
the blocks to restore, coalesced into ranged GETs. Observed at the wire by a proxy that
records every GET's Range header, and compared with a plain-Python statement of the
rule: in restore order, a block joins the open range when it is of the same piece, lies
at or after its end with at most MAX_GAP bytes between, the range stays within a part,
and the range has fewer than MAX_RECORDS blocks. A damaged byte in the middle of such a
range is reported with the piece, the file, the block and its offset."""

from __future__ import annotations

import random
import re
import socket
from pathlib import Path
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rustybackup import BackupError, BackupManager, RestoreOptions, manifest, store
from s3_fault_proxy import FaultProxy, _Fault
from s3_support import SeaweedFS, point_at

MiB = 1 << 20
HEADER = 32  # a piece's header (docs/FORMAT.md "Piece")
PART = 5 * MiB  # RUSTYBACKUP_S3_PART_SIZE below: the smallest part S3 allows
MAX_GAP = 256 << 10
MAX_RECORDS = 4096

_REQUEST = re.compile(rb"^([A-Z]+) (\S+) HTTP/1\.1\r\n(.*?)\r\n\r\n", re.S)


class _Tap:
    """The client side of one proxied connection: passes recv() through and parses the
    requests it carries (head, then Content-Length bytes of body)."""

    def __init__(self, sock: socket.socket, proxy: RangeProxy) -> None:
        self.sock, self.proxy, self.buf, self.skip = sock, proxy, bytearray(), 0

    def recv(self, n: int) -> bytes:
        data = self.sock.recv(n)
        self.buf += data
        while True:
            if self.skip:
                dropped = min(self.skip, len(self.buf))
                del self.buf[:dropped]
                self.skip -= dropped
                if self.skip:
                    break
            m = _REQUEST.match(bytes(self.buf[:65536]))
            if m is None:
                break
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in m.group(3).split(b"\r\n"))
            }
            self.proxy.record(m.group(1).decode(), m.group(2).decode(), headers.get(b"range"))
            del self.buf[: m.end()]
            self.skip = int(headers.get(b"content-length", b"0"))
        return data

    def shutdown(self, how: int) -> None:
        self.sock.shutdown(how)

    def close(self) -> None:
        self.sock.close()


class RangeProxy(FaultProxy):
    """A pass-through proxy that records (path, first byte, end) of every ranged GET."""

    def __init__(self, target_port: int) -> None:
        self.gets: list[tuple[str, int, int]] = []
        super().__init__(target_port)

    def record(self, method: str, path: str, rng: bytes | None) -> None:
        if method != "GET" or rng is None:
            return
        m = re.fullmatch(rb"bytes=(\d+)-(\d+)", rng)
        assert m is not None, f"unexpected Range header {rng!r}"
        with self._lock:
            self.gets.append((path.partition("?")[0], int(m.group(1)), int(m.group(2)) + 1))

    def _pump(self, src: socket.socket, dst: socket.socket, fault: _Fault, request: bool) -> None:
        if request:
            src = cast(socket.socket, _Tap(src, self))
        super()._pump(src, dst, fault, request)


@pytest.fixture
def s3_env(s3_server: SeaweedFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SeaweedFS:
    return point_at(s3_server, monkeypatch, tmp_path / "cache", PART)


def expected_ranges(blocks: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The reference rule over (offset, length) of the blocks in restore order."""
    spans: list[list[int]] = []  # [start, end, blocks]
    for off, n in blocks:
        if spans:
            s = spans[-1]
            if off >= s[1] and off - s[1] <= MAX_GAP and off + n - s[0] <= PART and s[2] < MAX_RECORDS:
                s[1], s[2] = off + n, s[2] + 1
                continue
        spans.append([off, off + n, 1])
    return [(s, e) for s, e, _ in spans]


def _backup(env: SeaweedFS, prefix: str, src: Path, block: int) -> tuple[BackupManager, str, manifest.Manifest]:
    m = BackupManager(env.url(prefix))
    m.register_database("db", src, block_size=block, compression=None)
    set_id = m.backup("db", "full").id
    return m, set_id, manifest.load(m.repository / store.SETS_DIR / set_id / store.MANIFEST)


def _piece_blocks(man: manifest.Manifest, block: int) -> dict[str, list[tuple[int, int]]]:
    """(offset, length) of each file's blocks: a FULL of random bytes stores every block
    raw, end to end after the header, in the manifest's file order."""
    at, out = HEADER, {}
    for f in man.files:
        assert not f.holes
        lens = [min(block, f.size - i * block) for i in range(f.block_count)]
        out[f.path] = [(at + sum(lens[:i]), n) for i, n in enumerate(lens)]
        at += sum(lens)
    return out


_SIZES = [0, 1, 100, 1023, 4096, 100_000, 300_000, 700_000, 1_500_000, 3_000_000]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.sampled_from(_SIZES), min_size=1, max_size=5),
    keep=st.lists(st.booleans(), min_size=5, max_size=5),
    block=st.sampled_from([1024, 8192]),
    seed=st.integers(0, 2**32 - 1),
)
def test_fetched_ranges_follow_the_coalescing_rule(
    s3_env: SeaweedFS,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    sizes: list[int],
    keep: list[bool],
    block: int,
    seed: int,
) -> None:
    tmp = tmp_path_factory.mktemp("spans")
    src = tmp / "src"
    src.mkdir()
    rnd = random.Random(seed)
    files = {f"f{i}.bin": rnd.randbytes(n) for i, n in enumerate(sizes)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    m, set_id, man = _backup(s3_env, f"spans-{tmp.name}", src, block)
    piece = f"/{s3_env.bucket}/spans-{tmp.name}/{store.SETS_DIR}/{set_id}/{man.sources[0].piece}"
    chosen = [name for name, k in zip(files, keep, strict=False) if k] or [next(iter(files))]
    per_file = _piece_blocks(man, block)
    wanted = [b for f in man.files if f.path in chosen for b in per_file[f.path]]
    # Hypothesis runs the examples in one fixture scope: the endpoint goes back after each.
    proxy = RangeProxy(s3_env.s3_port)
    with proxy, monkeypatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        BackupManager(s3_env.url(f"spans-{tmp.name}")).restore(
            "db", tmp / "out", options=RestoreOptions(include=tuple(chosen))
        )
        gets = sorted((a, b) for p, a, b in proxy.gets if p == piece)
    for name in chosen:
        assert (tmp / "out" / name).read_bytes() == files[name]
    if not wanted:  # only empty files: nothing of the piece is read, not even its header
        assert gets == []
        return
    data_end = HEADER + sum(len(d) for d in files.values())
    # Besides the blocks: the header, and the trailer (everything after the data area).
    assert (0, HEADER) in gets
    trailers = [g for g in gets if g[0] >= data_end and g != (0, HEADER)]
    assert len(trailers) == 1 and trailers[0][1] == man.pieces[0].size
    blocks = [g for g in gets if g != (0, HEADER) and g not in trailers]
    assert blocks == sorted(expected_ranges(wanted))


def test_the_reference_rule_itself() -> None:
    """The oracle on hand-made cases, so a wrong oracle cannot agree with wrong code."""
    assert expected_ranges([(32, 10), (42, 10)]) == [(32, 52)]
    assert expected_ranges([(32, 10), (42 + MAX_GAP, 10)]) == [(32, 52 + MAX_GAP)]
    assert expected_ranges([(32, 10), (43 + MAX_GAP, 10)]) == [(32, 42), (43 + MAX_GAP, 53 + MAX_GAP)]
    assert expected_ranges([(32, PART - 32), (PART, 32)]) == [(32, PART + 32)]
    assert expected_ranges([(32, PART - 32), (PART, 33)]) == [(32, PART), (PART, PART + 33)]
    assert expected_ranges([(100, 10), (50, 10)]) == [(100, 110), (50, 60)]
    assert len(expected_ranges([(32 + i, 1) for i in range(MAX_RECORDS + 1)])) == 2


def test_a_flipped_byte_inside_a_coalesced_range_is_named(
    s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rnd = random.Random(11)
    (src / "a.bin").write_bytes(rnd.randbytes(600_000))
    (src / "b.bin").write_bytes(rnd.randbytes(2_000_000))
    block = 4096
    m, set_id, man = _backup(s3_env, s3_prefix, src, block)
    blocks = _piece_blocks(man, block)
    # Block 300 of b.bin: the middle of one range of a.bin's and b.bin's blocks.
    off = blocks["b.bin"][300][0]
    assert expected_ranges(blocks["a.bin"] + blocks["b.bin"]) == [(HEADER, HEADER + 2_600_000)]
    key = f"{s3_prefix}/{store.SETS_DIR}/{set_id}/{man.sources[0].piece}"
    client = s3_env.client()
    data = client.get(s3_env.bucket, key)
    assert data is not None
    bad = bytearray(data)
    bad[off + 1234] ^= 0x01
    client.put(s3_env.bucket, key, bytes(bad))
    proxy = RangeProxy(s3_env.s3_port)
    with proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        with pytest.raises(BackupError) as e:
            BackupManager(s3_env.url(s3_prefix)).restore("db", tmp_path / "out")
        assert (HEADER, HEADER + 2_600_000) in [(a, b) for _, a, b in proxy.gets]
    msg = str(e.value)
    assert f"corrupt block 300 of file {'b.bin'!r}" in msg.replace('"', "'")
    assert f"{store.SETS_DIR}/{set_id}/{man.sources[0].piece}" in msg and f"at offset {off}:" in msg
    # a.bin, restored before the damage, is whole; nothing claims b.bin is.
    assert (tmp_path / "out" / "a.bin").read_bytes() == (src / "a.bin").read_bytes()
