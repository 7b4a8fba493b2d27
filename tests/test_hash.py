"""hash_bytes, hash_file and hash_files against hashlib and the blake3 package."""

from __future__ import annotations

import array
import errno
import hashlib
import inspect
import mmap
import os
import subprocess
import sys
import threading
from pathlib import Path

import blake3
import pytest
import rustybackup
from hypothesis import given
from hypothesis import strategies as st
from privileges import fork_and_run
from rustybackup import ChecksumAlgorithm, hash_bytes, hash_file, hash_files

ALGORITHMS = ["md5", "sha1", "sha256", "sha512", "blake3"]


def oracle(algorithm: str, data: bytes | bytearray | memoryview) -> str:
    """The reference digest: hashlib, or the blake3 package (an independent implementation)."""
    if algorithm == "blake3":
        return str(blake3.blake3(data).hexdigest())
    return hashlib.new(algorithm, data).hexdigest()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@given(data=st.binary(max_size=20_000))
def test_hash_bytes_equals_the_reference_for_every_algorithm(algorithm: str, data: bytes) -> None:
    assert hash_bytes(data, algorithm) == oracle(algorithm, data)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(
    # block edges of MD5/SHA (64/128 B), the GIL release (2 KiB), BLAKE3's chunks and pool
    "size",
    [0, 1, 63, 64, 65, 1023, 1024, 1025, 2047, 2048, 2049, (256 << 10) - 1, 256 << 10, 3 * 1024 * 1024 + 7],
)
def test_hash_bytes_at_edge_sizes_and_multi_mib(algorithm: str, size: int) -> None:
    data = os.urandom(size)
    assert hash_bytes(data, algorithm) == oracle(algorithm, data)


def test_the_default_is_blake3_and_enum_members_work() -> None:
    assert hash_bytes(b"abc") == "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
    for member in ChecksumAlgorithm:
        assert hash_bytes(b"abc", member) == oracle(member.value, b"abc")
    assert hash_bytes(b"abc", "SHA256") == hashlib.sha256(b"abc").hexdigest()


@pytest.mark.parametrize("size", [10, 100_000])
def test_every_buffer_type_is_accepted_in_place(tmp_path: Path, size: int) -> None:
    raw = os.urandom(size)
    want = oracle("sha256", raw)
    assert hash_bytes(bytearray(raw), "sha256") == want
    assert hash_bytes(memoryview(raw), "sha256") == want
    assert hash_bytes(memoryview(raw)[1:], "sha256") == oracle("sha256", raw[1:])
    arr = array.array("B", raw)
    assert hash_bytes(arr, "sha256") == want
    words = array.array("i", range(size // 4))
    assert hash_bytes(words, "sha256") == hashlib.sha256(words).hexdigest()
    path = tmp_path / "m"
    path.write_bytes(raw)
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        assert hash_bytes(m, "sha256") == want


def test_buffers_are_released_after_the_call() -> None:
    # A bytearray cannot be resized while a buffer export is alive (BufferError).
    for size in [10, 1_000_000]:
        data = bytearray(size)
        hash_bytes(data)
        data.extend(b"more")
        view = memoryview(bytearray(size))
        hash_bytes(view)
        view.release()


def test_non_contiguous_buffers_and_str_are_refused() -> None:
    with pytest.raises(BufferError, match="C-contiguous"):
        hash_bytes(memoryview(b"abcdef")[::2])
    with pytest.raises(TypeError, match="bytes-like object is required, not 'str'"):
        hash_bytes("text")  # type: ignore[arg-type]


def test_an_unknown_algorithm_lists_the_valid_names() -> None:
    msg = 'unknown checksum algorithm "crc32"; valid names: md5, sha1, sha256, sha512, blake3'
    with pytest.raises(ValueError, match=msg):
        hash_bytes(b"", "crc32")
    with pytest.raises(ValueError, match=msg):
        hash_file(__file__, "crc32")
    with pytest.raises(ValueError, match=msg):
        hash_files([__file__], "crc32")
    with pytest.raises(TypeError, match="algorithm must be a ChecksumAlgorithm or a str, not int"):
        hash_bytes(b"", 5)  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("use_mmap", [True, False])
@pytest.mark.parametrize("size", [0, 1, 16 * 1024 - 1, 16 * 1024, 5 * 1024 * 1024 + 3])
def test_hash_file_equals_the_reference(tmp_path: Path, algorithm: str, use_mmap: bool, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert hash_file(path, algorithm, mmap=use_mmap) == oracle(algorithm, data)
    assert hash_file(str(path), algorithm, mmap=use_mmap) == oracle(algorithm, data)


def test_hash_file_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(FileNotFoundError, match="No such file or directory") as exc:
        hash_file(missing)
    assert exc.value.filename == str(missing)
    assert str(missing) in str(exc.value)
    with pytest.raises(IsADirectoryError, match="Is a directory") as exc2:
        hash_file(tmp_path, mmap=False)
    assert exc2.value.filename == str(tmp_path)
    with pytest.raises(IsADirectoryError):
        hash_file(tmp_path, mmap=True)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_unreadable_files_raise_permission_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"x" * 100_000)
    path.chmod(0)

    def attempt() -> str:
        out = []
        for call in (lambda: hash_file(path), lambda: hash_file(path, mmap=False), lambda: rustybackup.scan_file(path)):
            try:
                call()
                out.append("no error")
            except PermissionError as exc:
                out.append(f"PermissionError {exc.filename == str(path)} {exc}")
        got = hash_files([path])[str(path)]
        out.append(f"{type(got).__name__} {getattr(got, 'filename', None) == str(path)}")
        return "\n".join(out)

    text = fork_and_run(attempt, drop_to_nobody=os.geteuid() == 0)
    lines = text.splitlines()
    assert len(lines) == 4, text
    for line in lines[:3]:
        assert line == f"PermissionError True [Errno 13] Permission denied: '{path}'"
    assert lines[3] == "PermissionError True"


def test_hash_files_reports_every_file_and_keeps_going(tmp_path: Path) -> None:
    paths: list[str | Path] = []
    want: dict[str, str] = {}
    for i in range(20):
        data = os.urandom(i * 50_000)
        p = tmp_path / f"f{i}"
        p.write_bytes(data)
        paths.append(p)
        want[str(p)] = hashlib.sha256(data).hexdigest()
    missing = tmp_path / "gone"
    paths += [missing, tmp_path]
    got = hash_files(paths, "sha256", threads=2)
    assert list(got) == [str(p) for p in paths]
    for key, digest in want.items():
        assert got[key] == digest
    err = got[str(missing)]
    assert isinstance(err, FileNotFoundError) and err.filename == str(missing)
    assert isinstance(got[str(tmp_path)], IsADirectoryError)
    assert hash_files([]) == {}
    assert hash_files(paths[:3], threads=1) == {str(p): hash_file(p) for p in paths[:3]}


def test_hash_files_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="threads must be at least 1 \\(or None for all cores\\), got 0"):
        hash_files([__file__], threads=0)
    with pytest.raises(TypeError, match="not a single str"):
        hash_files(__file__)


def test_hashing_from_many_threads_gives_the_right_answers(tmp_path: Path) -> None:
    blobs = [os.urandom(300_000 + i) for i in range(8)]
    paths = []
    for i, blob in enumerate(blobs):
        p = tmp_path / f"t{i}"
        p.write_bytes(blob)
        paths.append(p)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(5):
                assert hash_bytes(blobs[i], "sha1") == hashlib.sha1(blobs[i]).hexdigest()
                assert hash_file(paths[i]) == oracle("blake3", blobs[i])
                assert rustybackup.scan_file(paths[i], "md5").digest == hashlib.md5(blobs[i]).hexdigest()
                assert hash_files(paths, "blake3", threads=2)[str(paths[i])] == oracle("blake3", blobs[i])
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(blobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_the_thread_pool_survives_fork(tmp_path: Path) -> None:
    data = os.urandom(4 * 1024 * 1024)
    path = tmp_path / "big"
    path.write_bytes(data)
    want = oracle("blake3", data)
    # Start the parent's pools first: a child inheriting started pools is the failure case
    # (rayon's global pool would deadlock the child forever).
    assert hash_file(path) == want
    assert hash_files([path], threads=2)[str(path)] == want

    def in_child() -> str:
        return str(
            hash_file(path) == want
            and hash_bytes(data) == want
            and rustybackup.scan_file(path).digest == want
            and hash_files([path], threads=2)[str(path)] == want
        )

    assert fork_and_run(in_child) == "True"
    # And the parent's pool still works after the fork.
    assert hash_files([path, path], threads=2)[str(path)] == want


def test_pools_work_in_multiprocessing_fork_workers(tmp_path: Path) -> None:
    import multiprocessing
    import warnings

    path = tmp_path / "mp"
    path.write_bytes(os.urandom(2_000_000))
    want = hash_file(path)
    ctx = multiprocessing.get_context("fork")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with ctx.Pool(2) as pool:
            results = pool.map(hash_file, [path] * 4)
    assert results == [want] * 4


# Run in a child: a SIGBUS (a truncated map) kills the process, which must never happen by
# default. The thread cuts the file to one page and writes the rest back page-aligned, so
# at any moment the file is a page-multiple prefix of DATA: a read either sees one such
# version whole (its digest is that prefix's) or sees the size change (EIO).
TRUNCATING_CHILD = """
import errno, sys, threading
import blake3
from rustybackup import hash_file, hash_files, scan_file

path, rounds = sys.argv[1], int(sys.argv[2])
data = open(path, "rb").read()
PAGE = 4096
whole = blake3.blake3()
versions = set()
for at in range(0, len(data), PAGE):
    whole.update(data[at : at + PAGE])
    versions.add(whole.copy().hexdigest())
stop = threading.Event()

def cut_and_restore():
    with open(path, "r+b", buffering=0) as f:
        while not stop.is_set():
            f.truncate(PAGE)
            f.seek(PAGE)
            for at in range(PAGE, len(data), 16 * PAGE):
                f.write(data[at : at + 16 * PAGE])

outcomes = {"digest": 0, "eio": 0}

def record(result):
    if isinstance(result, OSError):
        assert result.errno == errno.EIO and result.filename == path, repr(result)
        assert "file changed size while being read" in str(result), result
        outcomes["eio"] += 1
    else:
        assert result in versions, "a digest of a file that never existed"
        outcomes["digest"] += 1

t = threading.Thread(target=cut_and_restore)
t.start()
try:
    for _ in range(rounds):
        for call in (lambda: hash_file(path, "blake3"), lambda: scan_file(path, "blake3").digest):
            try:
                record(call())
            except OSError as exc:
                record(exc)
        record(hash_files([path], "blake3")[path])
finally:
    stop.set()
    t.join()
print(outcomes["digest"], outcomes["eio"])
"""


def test_a_file_truncated_while_hash_file_reads_it_never_kills_the_process(tmp_path: Path) -> None:
    """The issue's reproduction: ``hash_file(path, "blake3")`` while another thread
    truncates the file died of SIGBUS (exit -7) when it mapped by default."""
    data = os.urandom(8 * 1024 * 1024)
    path = tmp_path / "live.db"
    path.write_bytes(data)
    child = subprocess.run(
        [sys.executable, "-c", TRUNCATING_CHILD, str(path), "20"], capture_output=True, text=True, check=False
    )
    assert child.returncode == 0, child.stderr
    digests, eio = map(int, child.stdout.split())
    assert digests + eio == 60


def test_growth_under_the_default_read_is_eio_and_the_opt_in_map_agrees(tmp_path: Path) -> None:
    """procfs files stat as 0 bytes, so a read sees them grow: EIO naming the file. A
    stable file hashes the same read or mapped (``mmap=True``, opt-in, BLAKE3 from 16 KiB)."""
    proc = Path("/proc/self/status")
    if not proc.exists():
        pytest.skip("needs Linux procfs")
    for algorithm in ("blake3", "sha256"):
        with pytest.raises(OSError, match="file changed size while being read") as exc:
            hash_file(proc, algorithm)
        assert exc.value.errno == errno.EIO and exc.value.filename == str(proc)
    data = os.urandom(64 * 1024)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert hash_file(path, mmap=True) == hash_file(path) == oracle("blake3", data)
    assert inspect.signature(hash_file).parameters["mmap"].default is False
