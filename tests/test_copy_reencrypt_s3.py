"""Re-encrypting `copy` with a bucket on either side (SeaweedFS, tests/s3_support.py): a
plain local chain copied into an encrypted s3:// repository under its own keys (no marker
in any object, restored set for set on another host, the next backup into the bucket
dedups against the copied chain), then that bucket copied back out decrypted."""

from __future__ import annotations

import json
import logging
import shutil
import struct
from pathlib import Path

import pytest
from manifest_support import stored
from rustybackup import BackupManager, BackupSet, VerificationType, _core, keys, manifest, remote_keys
from rustybackup.copy import copy_sets
from rustybackup.copy_reencrypt import SourceCredentials
from rustybackup.repo_url import parse_url
from rustybackup.verify import Verifier
from s3_support import SeaweedFS
from test_copy_reencrypt import OTHER, assert_same_restores, chain, target_repo
from test_encryption_repo import _cheap_argon2, marked_tree  # noqa: F401 - autouse fixture
from test_encryption_s3 import bucket, host
from test_remote_commands import s3_env  # noqa: F401 - the fixture: AWS environment and host A's cache

pytestmark = pytest.mark.usefixtures("s3_env")


def test_plain_into_an_encrypted_bucket_and_back_out_decrypted(
    s3_server: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3_server.url(s3_prefix)
    a, src, marks, sets = chain(tmp_path, encrypted=False)
    remote_keys.init_encryption(parse_url(url), password=OTHER)
    monkeypatch.setenv(keys.PASSWORD_ENV, OTHER)
    b = BackupManager(url)
    report = copy_sets(a, b)
    assert report.ok and report.copied == [s.id for s in sets], report.failed

    objs = bucket(s3_server, s3_prefix)
    assert sum(k.endswith("/data.piece") for k in objs) == len(sets)
    wanted = set(marks)
    for k, data in objs.items():
        for i in range(len(data) - 15):
            assert data[i : i + 16] not in wanted, f"a marker at offset {i} of {k}"

    # Another host with B's passphrase: the catalog from the bucket, every set restored.
    host(monkeypatch, tmp_path, "b")
    monkeypatch.setenv(keys.PASSWORD_ENV, OTHER)
    other = BackupManager(url, create=False)
    assert {s.id for s in other.catalog.list_sets()} == {s.id for s in sets}
    assert_same_restores(tmp_path, a, other, sets)
    shutil.copyfile(sorted(src.iterdir())[1], src / "new-but-known")
    n = other.backup("db", "incremental")
    assert sum(p.block_count for p in manifest.load(other.repository / n.manifest, set_id=n.id).pieces) == 0

    # Out of the bucket, decrypted (the source's key from its own option).
    monkeypatch.delenv(keys.PASSWORD_ENV)
    host(monkeypatch, tmp_path, "c")
    pw = tmp_path / "b.txt"
    pw.write_text(OTHER)
    c = BackupManager(tmp_path / "c")
    out = copy_sets(
        BackupManager(url, create=False), c, decrypt=True, source_credentials=SourceCredentials(password_file=pw)
    )
    assert out.ok and out.copied == [*(s.id for s in sets), n.id], out.failed
    assert not keys.is_encrypted(c.repository)
    assert_same_restores(tmp_path / "c-out", a, c, sets)


MAP_HEADER, MAP_RUN, V1_TRAILER, V2_TRAILER = 32, 24, 88, 296


def _records(data: bytes, parent: list[bytes]) -> list[bytes]:
    """Every record of a version-2..4 block map's state, parent and copy runs resolved
    (docs/FORMAT.md "Block map, version 2"; `parent`: the parent map's records)."""
    rec = 21 + data[17]
    out: list[bytes] = []
    at, end = MAP_HEADER, len(data) - V2_TRAILER
    while at < end:
        kind, count, first = data[at], *struct.unpack_from("<QQ", data, at + 8)
        at += MAP_RUN
        if kind == 1:
            out += [data[at + i * rec : at + (i + 1) * rec] for i in range(count)]
            at += count * rec
        elif kind == 2:
            out += parent[first : first + count]
        elif kind == 4:
            out += out[first : first + count]
        else:
            raise AssertionError(f"run kind {kind} at offset {at - MAP_RUN}")
    return out


def _as_version_1(data: bytes, parent: list[bytes]) -> bytes:
    """The same state as a version-1 map, as the release before block map version 2
    wrote it: every record, the unchanged ones naming the ancestor's piece."""
    records = _records(data, parent)
    body = data[:8] + struct.pack("<I", 1) + data[12:MAP_HEADER] + b"".join(records)
    checksum = bytes.fromhex(_core.hash_bytes(body, "blake3"))
    return body + b"RBBMEND\0" + struct.pack("<QB7x", len(records), len(checksum)) + checksum.ljust(64, b"\0")


def _legacy_chain(server: SeaweedFS, prefix: str, tmp_path: Path) -> tuple[list[bytes], list[BackupSet]]:
    """A plain chain on the bucket, FULL + INCREMENTAL, whose INCREMENTAL's block map is
    then put back as version 1 (as sets written before block map version 2, or copied
    from them, hold it): its records of the files the FULL stored name the FULL's piece.
    No writer of today names an earlier set's piece (it writes parent runs), so the map is
    rewritten by the test, with the manifest's checksum of it."""
    src = tmp_path / "src"
    marks = marked_tree(src, 3, [40_000, 12_000, 9_000])
    a = BackupManager(server.url(prefix))
    a.register_database("db", src, block_size=4096)
    sets = [a.backup("db", "full")]
    shutil.copyfile(sorted(src.iterdir())[1], src / "copy-of-f1")
    sets.append(a.backup("db", "incremental"))
    c = server.client()
    full_map = c.get(server.bucket, f"{prefix}/{sets[0].blockmap}")
    inc_map = c.get(server.bucket, f"{prefix}/{sets[1].blockmap}")
    assert full_map is not None and inc_map is not None
    v1 = _as_version_1(inc_map, _records(full_map, []))
    own = len(manifest.load(a.repository / sets[1].manifest, set_id=sets[1].id).sources) - 1
    sources = {struct.unpack_from("<I", v1, MAP_HEADER + i * (21 + v1[17]))[0] for i in range(3)}
    assert sources == {0}, "the INCREMENTAL's first records do not name the FULL's piece"
    assert own == 1
    doc = json.loads(c.get(server.bucket, f"{prefix}/{sets[1].manifest}") or b"")
    doc["blockmap"]["checksum"] = v1[-64:-32].hex()
    c.put(server.bucket, f"{prefix}/{sets[1].blockmap}", v1)
    c.put(server.bucket, f"{prefix}/{sets[1].manifest}", stored(doc))
    return marks, sets


@pytest.mark.parametrize("target_kind", ["local", "s3"])
def test_copy_out_of_a_bucket_fetches_the_earlier_piece_a_record_names(
    s3_server: SeaweedFS,
    s3_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    target_kind: str,
) -> None:
    """From an s3:// source, a set whose block map names blocks of an earlier set's
    piece, on a host whose cache does not hold that piece (the earlier set went over in
    an earlier run): the copy fetches the chain's pieces, and the records point where the
    target's copies of those blocks are (read from a local target's piece, derived from
    the source piece for a bucket target)."""
    url = s3_server.url(s3_prefix)
    marks, sets = _legacy_chain(s3_server, s3_prefix, tmp_path)
    target: str | Path
    if target_kind == "local":
        target = target_repo(tmp_path / "t", encrypted=True).repository
    else:
        target = s3_server.url(s3_prefix + "-t")
        remote_keys.init_encryption(parse_url(target), password=OTHER)
    monkeypatch.setenv(keys.PASSWORD_ENV, OTHER)

    host(monkeypatch, tmp_path, "b")
    first = copy_sets(BackupManager(url, create=False), BackupManager(target, create=False), set_ids=[sets[0].id])
    assert first.ok and first.copied == [sets[0].id], first.failed

    # A fresh host: nothing of the source cached, so the INCREMENTAL's records into the
    # FULL's piece find no file until its chain is fetched.
    host(monkeypatch, tmp_path, "c")
    source = BackupManager(url, create=False)
    assert not (source.repository / sets[0].pieces[0].path).exists()
    caplog.set_level(logging.INFO, logger="rustybackup.copy_reencrypt")
    rest = copy_sets(source, BackupManager(target, create=False))
    assert rest.ok and rest.copied == [sets[1].id], rest.failed
    assert any("fetching the pieces of its chain" in r.getMessage() for r in caplog.records)

    if target_kind == "s3":
        wanted = set(marks)
        for k, data in bucket(s3_server, s3_prefix + "-t").items():
            for i in range(len(data) - 15):
                assert data[i : i + 16] not in wanted, f"a marker at offset {i} of {k}"
    # Another host, neither side cached: every block checks under the target's keys and
    # each set restores what the source restores.
    host(monkeypatch, tmp_path, "d")
    checked = BackupManager(target, create=False)
    for s in sets:
        report = Verifier(checked).verify(s.id, VerificationType.FULL)
        assert report.ok, (s.id, report.findings)
    assert_same_restores(tmp_path / "r", BackupManager(url, create=False), checked, sets)
