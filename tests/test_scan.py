"""scan_file: one pass, whole digest plus per-block digests, against independent oracles."""

from __future__ import annotations

import hashlib
import os
import pickle
import threading
from pathlib import Path

import blake3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from privileges import fork_and_run
from rustybackup import FileScan, hash_bytes, hash_file, hash_files, scan_file

ALGORITHMS = ["md5", "sha1", "sha256", "sha512", "blake3"]
BLOCK_SIZES = [512, 1024, 4096, 8192, 65536]


def oracle(algorithm: str, data: bytes) -> bytes:
    if algorithm == "blake3":
        return bytes(blake3.blake3(data).digest())
    return hashlib.new(algorithm, data).digest()


def check_scan(path: Path, data: bytes, algorithm: str, bs: int) -> FileScan:
    scan = scan_file(path, algorithm, bs)
    count = -(-len(data) // bs)
    assert scan.digest == oracle(algorithm, data).hex()
    assert scan.size == len(data)
    assert scan.block_size == bs
    assert scan.block_count == count == len(scan)
    assert scan.digest_size == len(oracle(algorithm, b""))
    assert scan.algorithm == algorithm
    want = b"".join(oracle(algorithm, data[i * bs : (i + 1) * bs]) for i in range(count))
    assert scan.block_digests == want
    for i in range(count):
        assert scan.block_digest(i) == hash_bytes(data[i * bs : (i + 1) * bs], algorithm)
    return scan


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("bs", BLOCK_SIZES)
def test_edge_sizes_around_the_block_size(tmp_path: Path, algorithm: str, bs: int) -> None:
    for size in [0, 1, bs - 1, bs, bs + 1, 2 * bs, 7 * bs + 3]:
        data = os.urandom(size)
        path = tmp_path / f"f{size}"
        path.write_bytes(data)
        check_scan(path, data, algorithm, bs)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_multi_mib_files_cross_chunk_boundaries(tmp_path: Path, algorithm: str) -> None:
    # The reader's chunk is 4 MiB; 9 MiB + a bit makes three chunks and a short last block.
    data = os.urandom(9 * 1024 * 1024 + 4097)
    path = tmp_path / "big"
    path.write_bytes(data)
    for bs in [1024, 8192, 1024 * 1024]:
        check_scan(path, data, algorithm, bs)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.binary(max_size=70_000),
    algorithm=st.sampled_from(ALGORITHMS),
    bs=st.sampled_from(BLOCK_SIZES),
)
def test_every_block_equals_hashing_its_slice(tmp_path: Path, data: bytes, algorithm: str, bs: int) -> None:
    path = tmp_path / "prop"
    path.write_bytes(data)
    check_scan(path, data, algorithm, bs)


def test_block_digests_is_one_bytes_object_built_once(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(os.urandom(100_000))
    scan = scan_file(path)
    assert type(scan.block_digests) is bytes
    assert scan.block_digests is scan.block_digests


def test_block_digest_index_errors_name_the_index_and_count(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10_000)
    scan = scan_file(path, "sha256", 4096)
    assert scan.block_digest(-1) == scan.block_digest(2)
    with pytest.raises(IndexError, match="block index 3 out of range: the file has 3 blocks"):
        scan.block_digest(3)
    with pytest.raises(IndexError, match="block index -4 out of range: the file has 3 blocks"):
        scan.block_digest(-4)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(IndexError, match="block index 0 out of range: the file has 0 blocks"):
        scan_file(empty).block_digest(0)


def test_file_scans_pickle_compare_and_repr(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(os.urandom(20_000))
    scan = scan_file(path, "sha1", 4096)
    again = pickle.loads(pickle.dumps(scan))
    assert again == scan
    assert again.block_digests == scan.block_digests
    assert scan != scan_file(path, "sha1", 8192)
    assert repr(scan).startswith("FileScan(algorithm='sha1', block_size=4096, size=20000, block_count=5, digest='")


def test_file_scan_construction_is_validated() -> None:
    with pytest.raises(ValueError, match="block_digests holds 3 bytes; 1 blocks of 20-byte sha1 digests need 20"):
        FileScan("sha1", 4096, 10, "00" * 20, b"abc")
    with pytest.raises(ValueError, match="digest must be 40 hex digits"):
        FileScan("sha1", 4096, 0, "zz", b"")


@pytest.mark.parametrize("bad", [0, -8192, 256, 511, 1000, 8193, 32 * 1024 * 1024])
def test_bad_block_sizes_are_value_errors_naming_the_value(tmp_path: Path, bad: int) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    msg = f"invalid block_size {bad}: must be a power of two between 512 and 16777216 bytes \\(16 MiB\\)"
    with pytest.raises(ValueError, match=msg):
        scan_file(path, block_size=bad)


def test_the_largest_and_smallest_block_sizes_work(tmp_path: Path) -> None:
    data = os.urandom(17 * 1024 * 1024)
    path = tmp_path / "f"
    path.write_bytes(data)
    scan = scan_file(path, "blake3", 16 * 1024 * 1024)
    assert scan.block_count == 2
    assert scan.block_digest(1) == hash_bytes(data[16 * 1024 * 1024 :])
    assert scan_file(path, "md5", 512).block_count == 17 * 2048


def test_scan_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(FileNotFoundError, match="missing.db") as exc:
        scan_file(missing)
    assert exc.value.filename == str(missing)
    with pytest.raises(IsADirectoryError, match="Is a directory") as exc2:
        scan_file(tmp_path)
    assert exc2.value.filename == str(tmp_path)
    with pytest.raises(ValueError, match='unknown checksum algorithm "sha3"; valid names: md5, sha1'):
        scan_file(missing, "sha3")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux procfs")
def test_a_file_with_more_data_than_its_size_is_an_error() -> None:
    # procfs files stat as 0 bytes yet have content: to the reader, the file grew.
    msg = "[Errno 5] file changed size while being read (was 0 bytes at open, more data followed): '/proc/self/status'"
    with pytest.raises(OSError) as exc:
        scan_file("/proc/self/status")
    assert str(exc.value) == msg
    assert exc.value.errno == 5 and exc.value.filename == "/proc/self/status"
    with pytest.raises(OSError) as exc2:
        hash_file("/proc/self/status", mmap=False)
    assert str(exc2.value) == msg
    got = hash_files(["/proc/self/status"])["/proc/self/status"]
    assert isinstance(got, OSError) and "changed size" in str(got)


SYSFS = Path("/sys/kernel/mm/transparent_hugepage/enabled")


@pytest.mark.skipif(not SYSFS.exists(), reason="needs that sysfs file")
def test_a_file_shorter_than_its_size_is_an_error() -> None:
    # sysfs attributes stat as 4096 bytes and hold a few: to the reader, the file shrank.
    size = SYSFS.stat().st_size
    n = len(SYSFS.read_bytes())
    with pytest.raises(OSError, match=f"\\(was {size} bytes at open, end of file after {n}\\)"):
        scan_file(SYSFS, "sha256", 512)


def test_truncation_during_a_scan_is_never_a_silent_wrong_digest(tmp_path: Path) -> None:
    data = os.urandom(48 * 1024 * 1024)
    path = tmp_path / "live.db"
    path.write_bytes(data)
    # Either version is a file that existed: the thread may cut it before the scan opens it.
    versions = {
        len(data): hashlib.sha256(data).hexdigest(),
        1024 * 1024: hashlib.sha256(data[: 1024 * 1024]).hexdigest(),
    }
    started = threading.Event()

    def truncate() -> None:
        started.wait()
        with path.open("r+b") as f:
            f.truncate(1024 * 1024)

    t = threading.Thread(target=truncate)
    t.start()
    try:
        started.set()
        scan = scan_file(path, "sha256")
        outcome = "ok" if versions.get(scan.size) == scan.digest else f"WRONG digest for size {scan.size}"
    except OSError as exc:
        outcome = str(exc)
    t.join()
    assert outcome == "ok" or (
        outcome.startswith(
            "[Errno 5] file changed size while being read (was 50331648 bytes at open, end of file after "
        )
        and outcome.endswith(f"): '{path}'")
    ), outcome


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_scan_reports_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"x")
    path.chmod(0)

    def attempt() -> str:
        try:
            scan_file(path)
        except PermissionError as exc:
            return f"{exc.filename == str(path)} {exc}"
        return "no error"

    assert fork_and_run(attempt, drop_to_nobody=os.geteuid() == 0) == f"True [Errno 13] Permission denied: '{path}'"


def _peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/self/status")


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: "5" resets the RSS high-water mark
    except OSError:
        return False
    return True


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc/self/clear_refs")
def test_memory_stays_flat_whatever_the_file_size(tmp_path: Path) -> None:
    size = 256 * 1024 * 1024
    path = tmp_path / "big"
    with path.open("wb") as f:
        chunk = os.urandom(1024 * 1024)
        for _ in range(size // len(chunk)):
            f.write(chunk)
    if not _reset_peak_rss():
        pytest.skip("cannot reset the RSS high-water mark here")
    before = _peak_rss_kib()
    scan = scan_file(path, "sha256", 8192)
    hash_file(path, "blake3", mmap=False)
    hash_files([path, path], "md5")
    grown_mib = (_peak_rss_kib() - before) / 1024
    assert scan.size == size
    # Two 4 MiB read buffers per scan, per-thread 1 MiB buffers, 1 MiB of block digests:
    # far below the 256 MiB a whole-file read would take.
    assert grown_mib < 48, f"peak RSS grew by {grown_mib:.0f} MiB while hashing a 256 MiB file"


class _Interrupted(Exception):
    pass


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_long_scan_stops_for_a_signal_handler_exception(tmp_path: Path) -> None:
    import signal

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    done = threading.Event()
    main = threading.get_ident()
    outcome: list[str] = []

    def writer() -> None:
        try:
            with fifo.open("wb") as f:
                f.write(b"x" * 1024 * 1024)
                signal.pthread_kill(main, signal.SIGUSR1)
                f.write(b"y" * 80 * 1024 * 1024)
                # Keep the pipe open: a scan that ignored the signal would now block reading
                # until this times out, then finish the whole stream.
                done.wait(timeout=20)
                outcome.append("the reader took all 81 MiB")
        except BrokenPipeError:
            outcome.append("the reader stopped early")

    def handler(signum: int, frame: object) -> None:
        raise _Interrupted

    old = signal.signal(signal.SIGUSR1, handler)
    t = threading.Thread(target=writer)
    t.start()
    try:
        with pytest.raises(_Interrupted):
            scan_file(fifo, "md5")
    finally:
        done.set()
        t.join()
        signal.signal(signal.SIGUSR1, old)
    # The scan checked for signals at 64 MiB and stopped mid-stream, closing the pipe.
    assert outcome == ["the reader stopped early"]
