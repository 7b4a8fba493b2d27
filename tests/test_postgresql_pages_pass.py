"""Page checksums checked by the backup pass on the bytes it reads (``pg_pages`` of
``_core.backup_files``; a base backup reads each relation file once): the damaged blocks
it reports per file are those a word-by-word Python transcription of PostgreSQL's
checksum (test_postgresql_pages._oracle) finds, for files read on the pool and read
ahead, with and without a trailing partial page; files that are not relation files
(segment None) are not judged."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import _core
from test_postgresql_pages import _oracle

PAGE = 8192
START = 0x5_0000_0000
PER_SEGMENT = (1 << 30) // PAGE


def _page(rng: random.Random, blkno: int, lsn: int) -> bytes:
    page = bytearray(rng.randbytes(PAGE))
    struct.pack_into("<IIHHH", page, 0, lsn >> 32, lsn & 0xFFFFFFFF, 0, 0, 4000)
    struct.pack_into("<H", page, 8, _oracle(bytes(page), blkno & 0xFFFFFFFF))
    return bytes(page)


def _expected(data: bytes, segment: int) -> list[int]:
    """Blocks the oracle finds bad: whole pages only, LSN before the start, initialised."""
    bad = []
    for i in range(len(data) // PAGE):
        page = data[i * PAGE : (i + 1) * PAGE]
        hi, lo, stored = struct.unpack_from("<IIH", page)
        upper = struct.unpack_from("<H", page, 14)[0]
        block = segment * PER_SEGMENT + i
        if upper == 0 or (hi << 32 | lo) >= START:
            continue
        if stored != _oracle(page, block & 0xFFFFFFFF):
            bad.append(block)
    return bad


@st.composite
def _relation(draw: st.DrawFn) -> tuple[int | None, int, list[int], list[int], int]:
    segment = draw(st.one_of(st.none(), st.integers(0, 3)))
    # Up to 600 pages: beyond one 4 MiB chunk (512 pages), hashed on the pool.
    pages = draw(st.sampled_from([1, 3, 9, 520, 600]))
    damaged = draw(st.lists(st.integers(0, pages - 1), max_size=3))
    late = draw(st.lists(st.integers(0, pages - 1), max_size=1))
    tail = draw(st.sampled_from([0, 1000]))
    return segment, pages, damaged, late, tail


@settings(deadline=None, max_examples=8)
@given(files=st.lists(_relation(), min_size=1, max_size=3), seed=st.integers(0, 2**32))
def test_the_pass_reports_the_pages_the_oracle_finds(tmp_path_factory: pytest.TempPathFactory, files: list[tuple[int | None, int, list[int], list[int], int]], seed: int) -> None:  # fmt: skip
    d = tmp_path_factory.mktemp("pages")
    rng = random.Random(seed)
    jobs: list[tuple[Path, str, tuple[int, int] | None]] = []
    segments: list[int | None] = []
    want: dict[int, list[int]] = {}
    for n, (segment, pages, damaged, late, tail) in enumerate(files):
        seg = segment or 0
        out = bytearray()
        for i in range(pages):
            lsn = START + 8 if i in late else 0x100 + i
            page = bytearray(_page(rng, seg * PER_SEGMENT + i, lsn))
            if i in damaged or i in late:
                page[5000] ^= 0x20
            out += page
        out += b"\xab" * tail
        path = d / f"{16384 + n}" if segment is None or segment == 0 else d / f"{16384 + n}.{segment}"
        path.write_bytes(bytes(out))
        jobs.append((path, path.name, None))
        segments.append(segment)
        want[n] = [] if segment is None else _expected(bytes(out), seg)
    result = _core.backup_files(
        jobs, d / "p.piece", d / "m.blockmap", algorithm="blake3", block_size=PAGE, pg_pages=(START, PAGE, segments)
    )
    bad = result[8]
    assert bad is not None
    got: dict[int, list[int]] = {n: [] for n in want}
    for job, block, stored, computed in bad:
        got[job].append(block)
        assert stored != computed
    assert got == want
    assert sum(map(len, want.values())) == len(bad)


def test_without_pg_pages_nothing_is_checked(tmp_path: Path) -> None:
    rng = random.Random(1)
    (tmp_path / "16384").write_bytes(_page(rng, 0, 0x100)[:-1] + b"\x00")
    out = _core.backup_files([(tmp_path / "16384", "16384", None)], tmp_path / "p", tmp_path / "m", algorithm="blake3", block_size=PAGE)  # fmt: skip
    assert out[8] is None


def test_chunks_that_are_not_whole_pages_are_left_to_the_caller(tmp_path: Path) -> None:
    rng = random.Random(2)
    (tmp_path / "16384").write_bytes(_page(rng, 0, 0x100) + _page(rng, 1, 0x100))
    out = _core.backup_files(
        [(tmp_path / "16384", "16384", None)], tmp_path / "p", tmp_path / "m",
        algorithm="blake3", block_size=3000, pg_pages=(START, PAGE, [0]),
    )  # fmt: skip
    assert out[8] is None


def test_bad_pg_pages_are_value_errors(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    job = [(tmp_path / "f", "f", None)]
    with pytest.raises(ValueError, match="page size 3000"):
        _core.backup_files(job, tmp_path / "p", tmp_path / "m", algorithm="blake3", block_size=PAGE, pg_pages=(0, 3000, [0]))  # fmt: skip
    with pytest.raises(ValueError, match="2 segment entries for 1 jobs"):
        _core.backup_files(job, tmp_path / "p", tmp_path / "m", algorithm="blake3", block_size=PAGE, pg_pages=(0, PAGE, [0, 1]))  # fmt: skip
