"""Hashing benches: ours and the peers side by side, one group per task.

Small defaults keep the smoke run (`pytest benches --benchmark-disable`) quick; the issue's
sizes come from the environment:

    RB_BENCH_MB=2048 RB_BENCH_FILE_MB=16 python -m pytest benches/test_hash_bench.py \
        --benchmark-only --benchmark-group-by=group --benchmark-columns=min,median,rounds

RB_BENCH_MB is the big file (page-cached: written, then read once before timing),
RB_BENCH_FILE_MB the size of each of the 64 files for hash_files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import rustybackup
from rustybackup import hash_file, hash_files, scan_file

blake3: Any
try:
    import blake3
except ImportError:  # pragma: no cover - depends on the machine
    blake3 = None

MIB = 1024 * 1024
BIG_MB = float(os.environ.get("RB_BENCH_MB", "8"))
FILE_MB = float(os.environ.get("RB_BENCH_FILE_MB", "0.25"))
FILE_COUNT = 64
BLOCK = 8192
CHUNK = 4 * MIB

Bench = Any  # pytest-benchmark's fixture has no public type


def write_random(path: Path, size: int) -> None:
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, 16 * MIB)
            f.write(os.urandom(n))
            left -= n
    # One read so the timed runs see a page-cached file, as the issue specifies.
    with path.open("rb") as f:
        while f.read(16 * MIB):
            pass


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("bench") / "big.bin"
    write_random(path, int(BIG_MB * MIB))
    yield path
    path.unlink()


@pytest.fixture(scope="module")
def many_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("many")
    paths = [root / f"f{i:02}" for i in range(FILE_COUNT)]
    for p in paths:
        write_random(p, int(FILE_MB * MIB))
    return paths


def need_blake3() -> None:
    if blake3 is None:
        pytest.skip("the blake3 package is not installed (pip install blake3)")


# --- hash_file BLAKE3: ours (read: the default; mmap: opt-in) vs blake3.update_mmap vs b3sum ---


@pytest.mark.benchmark(group="hash_file blake3")
def test_hash_file_blake3_ours_mmap(benchmark: Bench, big_file: Path) -> None:
    assert len(benchmark(hash_file, big_file, mmap=True)) == 64


@pytest.mark.benchmark(group="hash_file blake3")
def test_hash_file_blake3_ours_read(benchmark: Bench, big_file: Path) -> None:
    assert len(benchmark(hash_file, big_file)) == 64


@pytest.mark.benchmark(group="hash_file blake3")
def test_hash_file_blake3_package_update_mmap(benchmark: Bench, big_file: Path) -> None:
    need_blake3()

    def run() -> str:
        return str(blake3.blake3(max_threads=blake3.blake3.AUTO).update_mmap(big_file).hexdigest())

    assert benchmark(run) == hash_file(big_file)


@pytest.mark.benchmark(group="hash_file blake3")
def test_hash_file_blake3_b3sum_cli(benchmark: Bench, big_file: Path) -> None:
    exe = shutil.which("b3sum")
    if exe is None:
        pytest.skip("b3sum is not installed (benches/setup.sh installs it)")

    def run() -> str:
        return subprocess.run([exe, "--no-names", str(big_file)], capture_output=True, text=True, check=True).stdout

    assert benchmark(run).strip() == hash_file(big_file)


# --- scan_file: one pass, whole digest + 8 KiB block digests ---


def python_one_pass(path: Path, new_block: Callable[[memoryview], Any], whole: Any) -> tuple[str, bytes]:
    """The best pure-Python equivalent: big reads, a hasher per block, one whole hasher."""
    blocks = bytearray()
    with path.open("rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            whole.update(chunk)
            view = memoryview(chunk)
            for i in range(0, len(chunk), BLOCK):
                blocks += new_block(view[i : i + BLOCK]).digest()
    return str(whole.hexdigest()), bytes(blocks)


@pytest.mark.benchmark(group="scan_file blake3 8K")
def test_scan_file_blake3_ours(benchmark: Bench, big_file: Path) -> None:
    scan = benchmark(scan_file, big_file, "blake3", BLOCK)
    assert scan.block_count == -(-big_file.stat().st_size // BLOCK)


@pytest.mark.benchmark(group="scan_file blake3 8K")
def test_scan_file_blake3_python_blake3_package(benchmark: Bench, big_file: Path) -> None:
    need_blake3()
    digest, blocks = benchmark(
        lambda: python_one_pass(big_file, blake3.blake3, blake3.blake3(max_threads=blake3.blake3.AUTO))
    )
    scan = scan_file(big_file, "blake3", BLOCK)
    assert (digest, blocks) == (scan.digest, scan.block_digests)


@pytest.mark.benchmark(group="scan_file sha256 8K")
def test_scan_file_sha256_ours(benchmark: Bench, big_file: Path) -> None:
    benchmark(scan_file, big_file, "sha256", BLOCK)


@pytest.mark.benchmark(group="scan_file sha256 8K")
def test_scan_file_sha256_python_hashlib(benchmark: Bench, big_file: Path) -> None:
    digest, blocks = benchmark(lambda: python_one_pass(big_file, hashlib.sha256, hashlib.sha256()))
    scan = scan_file(big_file, "sha256", BLOCK)
    assert (digest, blocks) == (scan.digest, scan.block_digests)


# --- hash_file for the hashlib algorithms vs hashlib.file_digest ---


@pytest.mark.parametrize("algorithm", ["sha256", "sha1", "sha512", "md5"])
def test_hash_file_ours(benchmark: Bench, big_file: Path, algorithm: str) -> None:
    benchmark.group = f"hash_file {algorithm}"
    benchmark(hash_file, big_file, algorithm)


@pytest.mark.parametrize("algorithm", ["sha256", "sha1", "sha512", "md5"])
def test_hash_file_hashlib_file_digest(benchmark: Bench, big_file: Path, algorithm: str) -> None:
    benchmark.group = f"hash_file {algorithm}"

    def run() -> str:
        with big_file.open("rb") as f:
            return hashlib.file_digest(f, algorithm).hexdigest()

    assert benchmark(run) == hash_file(big_file, algorithm)


def test_hash_file_md5_sha512_interleaved_with_hashlib(big_file: Path) -> None:
    """MD5 and SHA-512 are the RustCrypto crates now; hashlib is OpenSSL's assembly. Timed
    in alternation (ours, hashlib, ours, ...) so the machine's drift hits both alike;
    prints min and median per side (run with -s). RB_BENCH_ROUNDS rounds (default 3)."""
    import statistics
    import time

    rounds = int(os.environ.get("RB_BENCH_ROUNDS", "3"))

    def with_hashlib(algorithm: str) -> str:
        with big_file.open("rb") as f:
            return hashlib.file_digest(f, algorithm).hexdigest()

    for algorithm in ("md5", "sha512"):
        times: dict[str, list[float]] = {"ours": [], "hashlib": []}
        digests = set()
        for _ in range(rounds):
            for side in ("ours", "hashlib"):
                start = time.perf_counter()
                digests.add(hash_file(big_file, algorithm) if side == "ours" else with_hashlib(algorithm))
                times[side].append(time.perf_counter() - start)
        assert len(digests) == 1
        ours, theirs = times["ours"], times["hashlib"]
        print(
            f"\n{algorithm} {BIG_MB:g} MiB x{rounds}: ours min {min(ours):.3f} s median {statistics.median(ours):.3f} s; "
            f"hashlib min {min(theirs):.3f} s median {statistics.median(theirs):.3f} s; "
            f"hashlib/ours (min) {min(theirs) / min(ours):.2f}"
        )


# --- hash_files: 64 files, SHA256 ---


@pytest.mark.benchmark(group="hash_files 64 x sha256")
def test_hash_files_sha256_ours(benchmark: Bench, many_files: list[Path]) -> None:
    out = benchmark(hash_files, many_files, "sha256")
    assert all(isinstance(v, str) for v in out.values())


@pytest.mark.benchmark(group="hash_files 64 x sha256")
def test_hash_files_sha256_hashlib_loop(benchmark: Bench, many_files: list[Path]) -> None:
    def run() -> dict[str, str]:
        out = {}
        for p in many_files:
            with p.open("rb") as f:
                out[str(p)] = hashlib.file_digest(f, "sha256").hexdigest()
        return out

    assert benchmark(run) == hash_files(many_files, "sha256")


# --- the physical limit: memory read bandwidth ---


@pytest.fixture(scope="module")
def ram_buffer() -> bytes:
    # Well above any L3 cache, so the scan streams from DRAM.
    # Written with memset, so every page is real: bytes(n) would map the one shared zero page,
    # which sits in cache and reports impossible speeds.
    return b"\x5a" * (max(256, int(min(BIG_MB, 1024))) * MIB)


@pytest.mark.benchmark(group="memory bandwidth")
def test_memory_read_bandwidth_memchr(benchmark: Bench, ram_buffer: bytes) -> None:
    # bytes.find of a byte that is absent is one glibc memchr (SIMD) over the whole buffer:
    # a pure read stream, the ceiling for any one-core pass over data already in RAM.
    assert benchmark(ram_buffer.find, b"\x01") == -1


@pytest.mark.benchmark(group="memory bandwidth")
def test_memory_copy_bandwidth(benchmark: Bench, ram_buffer: bytes) -> None:
    # A read + a write per byte: what a read(2) from the page cache costs per byte at most.
    target = memoryview(bytearray(ram_buffer))

    def copy() -> None:
        target[:] = ram_buffer

    benchmark(copy)


def test_the_package_exports_what_the_benches_use() -> None:
    assert rustybackup.hash_file is hash_file
