"""The storage layer (rust/src/storage/) against a real SeaweedFS S3 server and a local
directory: every operation on both backends, multipart round trips checked with hashlib and
an independent SigV4 client, conditional create, the set commit protocol and sweeping, and
one clear error each for wrong credentials, a missing bucket and an unreachable server."""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import _core
from rustybackup.errors import (
    BucketNotFound,
    ConfigError,
    StorageAuthError,
    StorageNotFound,
    StorageObjectExists,
    StorageUnreachable,
)
from s3_support import (
    READONLY_ACCESS_KEY,
    READONLY_SECRET_KEY,
    SeaweedFS,
    free_ports,
)

MiB = 1 << 20


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[_core.ObjectStore]:
    """A fresh, empty repository on each backend (part size at S3's 5 MiB minimum, so
    multipart is reached with small files)."""
    if request.param == "local":
        root = tmp_path / "repo"
        root.mkdir()
        yield _core.ObjectStore(str(root), {"part_size": str(5 * MiB)})
    else:
        server: SeaweedFS = request.getfixturevalue("s3_server")
        prefix = request.getfixturevalue("s3_prefix")
        yield _core.ObjectStore(server.url(prefix), {**server.options(), "part_size": str(5 * MiB)})


def write_random(path: Path, size: int, seed: int = 0) -> str:
    """Writes `size` pseudo-random bytes and returns their SHA-256."""
    h = hashlib.sha256()
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
    with open(path, "wb") as f:
        left = size
        i = 0
        while left:
            chunk = block[: min(left, len(block))]
            # Vary each MiB so a part put in the wrong place changes the digest.
            chunk = i.to_bytes(8, "little") + chunk[8:] if len(chunk) >= 8 else chunk
            f.write(chunk)
            h.update(chunk)
            left -= len(chunk)
            i += 1
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(MiB):
            h.update(b)
    return h.hexdigest()


# --- every operation, both backends ------------------------------------------------------


def test_bytes_round_trip_head_list_delete(store: _core.ObjectStore) -> None:
    store.put_bytes("sets/a/manifest.json", b'{"x": 1}')
    store.put_bytes("sets/a/data.piece", b"p" * 1000)
    store.put_bytes("sets/ab/data.piece", b"q")
    assert store.get_bytes("sets/a/manifest.json") == b'{"x": 1}'
    meta = store.head("sets/a/data.piece")
    assert meta is not None and meta.size == 1000 and meta.key == "sets/a/data.piece"
    assert meta.last_modified.tzinfo is not None
    assert abs(meta.last_modified - datetime.now(UTC)) < timedelta(hours=1)
    assert store.head("sets/a/none") is None
    # A directory-like prefix: sets/a does not list sets/ab.
    assert [m.key for m in store.list("sets/a")] == ["sets/a/data.piece", "sets/a/manifest.json"]
    assert [m.key for m in store.list("sets/")] == [
        "sets/a/data.piece",
        "sets/a/manifest.json",
        "sets/ab/data.piece",
    ]
    assert [m.key for m in store.list()] == [m.key for m in store.list("sets")]
    store.put_bytes("sets/a/manifest.json", b"replaced")
    assert store.get_bytes("sets/a/manifest.json") == b"replaced"
    store.delete("sets/a/manifest.json")
    store.delete("sets/a/manifest.json")  # absent: not an error
    assert store.head("sets/a/manifest.json") is None
    with pytest.raises(StorageNotFound, match="sets/a/manifest.json"):
        store.get_bytes("sets/a/manifest.json")


def test_get_range_matches_slices(store: _core.ObjectStore) -> None:
    data = bytes(range(256)) * 40
    store.put_bytes("obj", data)
    for start, end in [(0, 1), (5, 300), (0, len(data)), (len(data) - 1, len(data)), (100, 100)]:
        assert store.get_range("obj", start, end) == data[start:end]
    with pytest.raises(Exception, match="obj"):
        store.get_range("obj", 10, 5)
    with pytest.raises(Exception, match="obj"):
        store.get_range("obj", 0, len(data) + 10)


@pytest.mark.parametrize("size", [0, 1, 5 * MiB, 5 * MiB + 1, 23 * MiB + 12345])
def test_put_file_and_get_to_file_round_trip(store: _core.ObjectStore, tmp_path: Path, size: int) -> None:
    src = tmp_path / "src.bin"
    digest = write_random(src, size, seed=size)
    assert store.put_file("sets/x/data.piece", src) == size
    meta = store.head("sets/x/data.piece")
    assert meta is not None and meta.size == size
    dst = tmp_path / "dst.bin"
    assert store.get_to_file("sets/x/data.piece", dst) == size
    assert sha256_file(dst) == digest
    # No temporary download file is left beside it.
    assert {p.name for p in tmp_path.iterdir()} - {"repo"} == {"dst.bin", "src.bin"}


def test_multipart_upload_seen_by_an_independent_client(s3_server: SeaweedFS, s3_prefix: str, tmp_path: Path) -> None:
    store = _core.ObjectStore(s3_server.url(s3_prefix), {**s3_server.options(), "part_size": str(5 * MiB)})
    src = tmp_path / "big"
    digest = write_random(src, 17 * MiB + 3, seed=7)
    store.put_file("big", src)
    client = s3_server.client()
    assert client.list_keys(s3_server.bucket, f"{s3_prefix}/") == {f"{s3_prefix}/big": 17 * MiB + 3}
    body = client.get(s3_server.bucket, f"{s3_prefix}/big")
    assert body is not None and hashlib.sha256(body).hexdigest() == digest
    assert client.list_multipart_uploads(s3_server.bucket, f"{s3_prefix}/") == []


def test_put_files_in_parallel(store: _core.ObjectStore, tmp_path: Path) -> None:
    items = []
    digests = {}
    for i in range(6):
        p = tmp_path / f"f{i}"
        digests[f"sets/s/f{i}"] = write_random(p, (i * 3 + 1) * MiB // 2, seed=i)
        items.append((f"sets/s/f{i}", p))
    sizes = store.put_files(items)
    assert sizes == [p.stat().st_size for _, p in items]
    for key, digest in digests.items():
        assert hashlib.sha256(store.get_bytes(key)).hexdigest() == digest


@settings(max_examples=20)
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), min_size=2, max_size=2))
def test_get_range_property_against_slicing(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, cuts: list[int]
) -> None:
    root = tmp_path_factory.mktemp("r")
    store = _core.ObjectStore(str(root))
    store.put_bytes("k", data)
    start, end = sorted(min(c, len(data)) for c in cuts)
    assert store.get_range("k", start, end) == data[start:end]


def test_bad_keys_are_config_errors(store: _core.ObjectStore) -> None:
    for key in ["", "/abs", "a//b", "a/../b", "a/./b"]:
        with pytest.raises(ConfigError, match="invalid object key"):
            store.put_bytes(key, b"x")


def test_urls_and_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unsupported scheme"):
        _core.ObjectStore("gs://bucket/x")
    with pytest.raises(ConfigError, match="position 3"):
        _core.ObjectStore("s3://abc_d/x")
    with pytest.raises(ConfigError, match="part_size"):
        _core.ObjectStore("s3://bucket/x", {"part_size": "1000"})
    with pytest.raises(ConfigError, match="not an option of a local repository"):
        _core.ObjectStore(str(tmp_path), {"aws_region": "x"})
    with pytest.raises(FileNotFoundError):
        _core.ObjectStore(str(tmp_path / "missing"))
    s = _core.ObjectStore("s3://bucket/some/prefix/")
    assert s.is_remote and s.url == "s3://bucket/some/prefix/"
    assert not _core.ObjectStore(str(tmp_path)).is_remote


# --- conditional create ------------------------------------------------------------------


def test_conditional_create_is_honoured(store: _core.ObjectStore) -> None:
    # SeaweedFS 4.x answers If-None-Match: * with 412, so this is the real thing on S3 too.
    assert store.conditional_create_supported()
    assert store.put_bytes_if_absent("format", b"one")
    assert not store.put_bytes_if_absent("format", b"two")
    assert store.get_bytes("format") == b"one"
    # The probe left nothing behind.
    assert [m.key for m in store.list("locks")] == []


def create_race(store: _core.ObjectStore, key: str, writers: int) -> list[int]:
    """`writers` threads create `key` at once; returns who was told it won."""
    barrier = threading.Barrier(writers)
    wins: list[int] = []
    errors: list[BaseException] = []

    def contend(i: int) -> None:
        try:
            barrier.wait()
            if store.put_bytes_if_absent(key, f"writer {i}".encode()):
                wins.append(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return wins


def test_conditional_create_race_has_exactly_one_winner(store: _core.ObjectStore) -> None:
    for round_ in range(5):
        wins = create_race(store, f"race/{round_}", 4)
        assert len(wins) == 1
        assert store.get_bytes(f"race/{round_}") == f"writer {wins[0]}".encode()


# --- the commit protocol -----------------------------------------------------------------


def stage_set(root: Path, set_id: str, piece_size: int) -> Path:
    d = root / set_id
    d.mkdir(parents=True)
    write_random(d / "data.piece", piece_size, seed=piece_size)
    (d / "blockmap").write_bytes(b"blockmap of " + set_id.encode())
    (d / "manifest.json").write_text(f'{{"id": "{set_id}"}}')
    (d / ".lock").write_text("")
    return d


def test_upload_set_puts_the_manifest_last_and_is_idempotent(store: _core.ObjectStore, tmp_path: Path) -> None:
    d = stage_set(tmp_path / "staging", "s1", 11 * MiB)
    up = store.upload_set(d, "sets/s1", "manifest.json")
    assert up.created
    assert up.keys == ["sets/s1/blockmap", "sets/s1/data.piece", "sets/s1/manifest.json"]
    assert up.bytes == sum(p.stat().st_size for p in d.iterdir() if p.name != ".lock")
    assert [m.key for m in store.list("sets/s1")] == up.keys  # the .lock stayed home
    # A retry after a lost answer: the same manifest is there, so it succeeds quietly.
    again = store.upload_set(d, "sets/s1")
    assert not again.created
    # Another set's manifest under the same id is refused and changes nothing.
    (d / "manifest.json").write_text('{"id": "other"}')
    with pytest.raises(StorageObjectExists, match="sets/s1/manifest.json"):
        store.upload_set(d, "sets/s1")
    assert store.get_bytes("sets/s1/manifest.json") == b'{"id": "s1"}'


def test_upload_set_without_manifest_uploads_nothing(store: _core.ObjectStore, tmp_path: Path) -> None:
    d = stage_set(tmp_path / "staging", "s2", 1000)
    (d / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="manifest"):
        store.upload_set(d, "sets/s2")
    assert store.list("sets") == []


def test_a_failed_piece_leaves_no_manifest(s3_server: SeaweedFS, s3_prefix: str, tmp_path: Path) -> None:
    """The read-only identity may list but not write: the first piece fails, so the
    manifest is never attempted and no set becomes visible."""
    d = stage_set(tmp_path / "staging", "s3", 6 * MiB)
    opts = {
        **s3_server.options(),
        "aws_access_key_id": READONLY_ACCESS_KEY,
        "aws_secret_access_key": READONLY_SECRET_KEY,
        "part_size": str(5 * MiB),
    }
    with pytest.raises(StorageAuthError):
        _core.ObjectStore(s3_server.url(s3_prefix), opts).upload_set(d, "sets/s3")
    assert s3_server.client().list_keys(s3_server.bucket, f"{s3_prefix}/") == {}


def test_sweep_removes_only_unreferenced_old_objects(store: _core.ObjectStore, tmp_path: Path) -> None:
    store.upload_set(stage_set(tmp_path / "st", "done", 1000), "sets/done")
    store.put_bytes("sets/cut/data.piece", b"left by a crash")
    store.put_bytes("sets/cut/blockmap", b"also")
    store.put_bytes("other/keep", b"not under sets")
    # Within the grace period nothing goes (an upload may still be under way elsewhere).
    assert store.sweep("sets", 3600) == []
    later = datetime.now(UTC) + timedelta(hours=2)
    removed = store.sweep("sets/", 3600, now=later)
    assert sorted(removed) == ["sets/cut/blockmap", "sets/cut/data.piece"]
    assert [m.key for m in store.list()] == [
        "other/keep",
        "sets/done/blockmap",
        "sets/done/data.piece",
        "sets/done/manifest.json",
    ]


def test_sweep_uploads_aborts_abandoned_multipart_uploads(s3_server: SeaweedFS, s3_prefix: str) -> None:
    store = _core.ObjectStore(s3_server.url(s3_prefix), s3_server.options())
    client = s3_server.client()
    key = f"{s3_prefix}/sets/dead/data.piece"
    status, body = client.request("POST", f"/{s3_server.bucket}/{key}", {"uploads": ""})
    assert status == 200, body
    assert [k for k, _ in client.list_multipart_uploads(s3_server.bucket, f"{s3_prefix}/")] == [key]
    assert store.sweep_uploads("sets", 3600) == []  # still young
    aborted = store.sweep_uploads("sets", 3600, now=datetime.now(UTC) + timedelta(hours=2))
    assert aborted == ["sets/dead/data.piece"]
    assert client.list_multipart_uploads(s3_server.bucket, f"{s3_prefix}/") == []


def test_local_store_has_no_multipart_leftovers(tmp_path: Path) -> None:
    assert _core.ObjectStore(str(tmp_path)).sweep_uploads("sets", 0) == []


# --- one clear error each ----------------------------------------------------------------


def test_wrong_secret_is_an_auth_error(s3_server: SeaweedFS, s3_prefix: str) -> None:
    opts = {**s3_server.options(), "aws_secret_access_key": "wrong-secret"}
    store = _core.ObjectStore(s3_server.url(s3_prefix), opts)
    with pytest.raises(StorageAuthError, match="refused the credentials"):
        store.check()
    with pytest.raises(StorageAuthError):
        store.put_bytes("x", b"1")
    assert s3_server.client().list_keys(s3_server.bucket, f"{s3_prefix}/") == {}


def test_unknown_key_id_is_an_auth_error(s3_server: SeaweedFS, s3_prefix: str) -> None:
    opts = {**s3_server.options(), "aws_access_key_id": "AKIDNOBODY"}
    with pytest.raises(StorageAuthError):
        _core.ObjectStore(s3_server.url(s3_prefix), opts).get_bytes("format")


def test_read_only_identity_cannot_write(s3_server: SeaweedFS, s3_prefix: str) -> None:
    opts = {
        **s3_server.options(),
        "aws_access_key_id": READONLY_ACCESS_KEY,
        "aws_secret_access_key": READONLY_SECRET_KEY,
    }
    store = _core.ObjectStore(s3_server.url(s3_prefix), opts)
    store.check()
    with pytest.raises(StorageAuthError):
        store.put_bytes("x", b"1")


def test_missing_bucket_is_one_clear_error(s3_server: SeaweedFS) -> None:
    store = _core.ObjectStore("s3://no-such-bucket-here/p", s3_server.options())
    for call in (store.check, lambda: store.put_bytes("x", b"1"), lambda: store.list("sets")):
        with pytest.raises(BucketNotFound, match="no-such-bucket-here"):
            call()


def test_create_bucket_on_request(s3_server: SeaweedFS) -> None:
    name = f"made-{uuid.uuid4().hex[:10]}"
    store = _core.ObjectStore(f"s3://{name}/p", s3_server.options())
    with pytest.raises(BucketNotFound):
        store.check()
    store.create_bucket()
    store.create_bucket()  # ours already: fine
    store.put_bytes("k", b"v")
    assert store.get_bytes("k") == b"v"


def test_unreachable_server_fails_after_bounded_retries(s3_server: SeaweedFS) -> None:
    (port,) = free_ports(1)
    opts = {**s3_server.options(), "aws_endpoint_url": f"http://127.0.0.1:{port}", "retry_timeout": "2"}
    store = _core.ObjectStore("s3://rustybackup-test/p", opts)
    with pytest.raises(StorageUnreachable, match="could not be reached"):
        store.put_bytes("x", b"1")
    with pytest.raises(StorageUnreachable):
        store.check()


def test_environment_and_shared_files_configure_the_store(
    s3_server: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS_* variables, then the credentials/config files of AWS_PROFILE, reach the server
    (what `--repo s3://...` relies on)."""
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    creds = tmp_path / "credentials"
    creds.write_text(
        f"[default]\naws_access_key_id = nobody\n\n[test]\naws_access_key_id = {s3_server.access_key}\n"
        f"aws_secret_access_key = {s3_server.secret_key}\n"
    )
    config = tmp_path / "config"
    config.write_text(f"[profile test]\nregion = us-east-1\nendpoint_url = {s3_server.endpoint}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "test")
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    store = _core.ObjectStore(s3_server.url(s3_prefix))
    store.put_bytes("via-files", b"ok")
    assert store.get_bytes("via-files") == b"ok"
    # The environment wins over the files.
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(StorageAuthError):
        _core.ObjectStore(s3_server.url(s3_prefix)).check()
    # And explicit options win over the environment.
    _core.ObjectStore(s3_server.url(s3_prefix), {"aws_secret_access_key": s3_server.secret_key}).check()


def test_bandwidth_limit_setting(store: _core.ObjectStore) -> None:
    assert store.bandwidth_limit is None
    store.set_bandwidth_limit(50 * MiB)
    assert store.bandwidth_limit == 50 * MiB
    store.put_bytes("paced", b"x" * 1000)
    store.set_bandwidth_limit(None)
    assert store.bandwidth_limit is None
    with pytest.raises(ValueError, match="None for no limit"):
        store.set_bandwidth_limit(0)


def key_is_valid(key: str) -> bool:
    """The oracle of key validation, written from docs/FORMAT.md: non-empty, relative, no
    empty/./.. segment, no control character (Unicode Cc, as Rust's char::is_control)."""
    if not key or key.startswith("/"):
        return False
    if any(seg in ("", ".", "..") for seg in key.split("/")):
        return False
    return not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in key)


@settings(max_examples=60)
@given(key=st.text(alphabet="ab/.% \x01\x85-", max_size=10))
def test_key_validation_matches_the_oracle(tmp_path_factory: pytest.TempPathFactory, key: str) -> None:
    store = _core.ObjectStore(str(tmp_path_factory.mktemp("k")))
    if key_is_valid(key):
        store.put_bytes(key, b"v")
        assert store.get_bytes(key) == b"v"
        assert [m.key for m in store.list()] == [key]
    else:
        with pytest.raises(ConfigError, match="invalid object key"):
            store.put_bytes(key, b"v")
