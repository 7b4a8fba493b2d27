"""A fresh host without the key on an encrypted bucket (SeaweedFS): it builds its catalog
from the sets' clear records (catalog_record.py) and lists and verifies QUICK/STANDARD;
a flipped byte is found at STANDARD; a keyed FULL reports a record that disagrees with
the manifest; a record without a manifest is no set; a set without a record is named."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager, VerificationType, catalog_record, keys, remote_keys
from rustybackup.errors import CatalogError
from rustybackup.repo_url import parse_url
from rustybackup.timestamps import to_us
from rustybackup.verify import Verifier
from s3_support import SeaweedFS
from test_encryption_repo import _cheap_argon2, marked_tree  # noqa: F401 - autouse fixture
from test_encryption_s3 import PASSWORD, bucket, flip_block, host, run
from test_remote_commands import s3_env  # noqa: F401 - the fixture

pytestmark = pytest.mark.usefixtures("s3_env")


def _two_databases(url: str, tmp_path: Path) -> dict[str, list[str]]:
    """FULL + INCREMENTAL of two databases, written with the passphrase; set ids by db."""
    remote_keys.init_encryption(parse_url(url), password=PASSWORD)
    m = BackupManager(url)
    out: dict[str, list[str]] = {}
    for name in ("alpha", "beta"):
        src = tmp_path / name
        marked_tree(src, 3, [20_000, 5_000])
        m.register_database(name, src, block_size=4096)
        full = m.backup(name, "full")
        (src / "more").write_bytes(b"x" * 9000)
        inc = m.backup(name, "incremental")
        out[name] = [full.id, inc.id]
    return out


def test_fresh_keyless_host_lists_and_verifies(
    s3_server: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3_server.url(s3_prefix)
    monkeypatch.setenv(keys.PASSWORD_ENV, PASSWORD)
    sets = _two_databases(url, tmp_path)
    every = {i for ids in sets.values() for i in ids}
    monkeypatch.delenv(keys.PASSWORD_ENV)

    # Each set's record is in the bucket, holds its row, and is clear JSON.
    objs = bucket(s3_server, s3_prefix)
    for sid in every:
        rec = json.loads(objs[f"sets/{sid}/{catalog_record.RECORD}"])
        assert rec["id"] == sid and rec["pieces"] and "files" not in rec

    host(monkeypatch, tmp_path, "fresh")
    listed = run(url, "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert all(sid in listed.output for sid in every)
    for level in ("quick", "standard"):
        r = run(url, "verify", "--all", "--level", level)
        assert r.exit_code == 0, r.output
    mon = BackupManager(url, create=False)
    assert {s.id for s in mon.catalog.list_sets()} == every
    inc = mon.catalog.get_set(sets["beta"][1])
    assert inc.parent_id == sets["beta"][0] and inc.database == "beta"

    # A flipped byte in a stored block: STANDARD names the set and the piece whose
    # checksum (the one the record carries) no longer matches. The block and its offset
    # are FULL's, which needs the key (the index of sealed blocks is read with it).
    full = sets["alpha"][0]
    flip_block(s3_server, s3_prefix, full, 1)
    host(monkeypatch, tmp_path, "fresh2")
    report = Verifier(BackupManager(url, create=False)).verify(full, VerificationType.STANDARD)
    assert not report.ok
    text = json.dumps(report.to_json())
    bad = [f for f in report.findings if f.kind == "bad_checksum"]
    assert bad and bad[0].set_id == full and bad[0].subject == f"{full}/data.piece", text


def test_record_checked_by_keyed_full_and_needs_its_manifest(
    s3_server: SeaweedFS,
    s3_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = s3_server.url(s3_prefix)
    monkeypatch.setenv(keys.PASSWORD_ENV, PASSWORD)
    sets = _two_databases(url, tmp_path)
    c = s3_server.client()
    a_full, a_inc = sets["alpha"]
    b_full, b_inc = sets["beta"]

    # A bucket writer changes alpha's record (its piece checksum): a keyed FULL says so.
    key = f"{s3_prefix}/sets/{a_full}/{catalog_record.RECORD}"
    raw = c.get(s3_server.bucket, key)
    assert raw is not None
    rec = json.loads(raw)
    rec["pieces"][0]["checksum"] = "0" * len(rec["pieces"][0]["checksum"])
    c.put(s3_server.bucket, key, json.dumps(rec).encode())
    host(monkeypatch, tmp_path, "keyed")
    report = Verifier(BackupManager(url, create=False)).verify(a_full, VerificationType.FULL)
    bad = [f for f in report.findings if f.kind == "bad_record"]
    assert not report.ok and bad and "pieces" in bad[0].message and a_full in bad[0].message
    assert Verifier(BackupManager(url, create=False)).verify(b_full, VerificationType.FULL).ok

    # Beta's incremental loses its manifest (an abandoned set: the record alone), and
    # beta's full loses its record (a set written before records): the keyless host
    # registers neither, and names the one without a record.
    for gone in (f"sets/{b_inc}/manifest.json", f"sets/{b_full}/{catalog_record.RECORD}"):
        status, _ = c.request("DELETE", f"/{s3_server.bucket}/{s3_prefix}/{gone}")
        assert status == 204, status
    monkeypatch.delenv(keys.PASSWORD_ENV)
    host(monkeypatch, tmp_path, "fresh")
    with caplog.at_level(logging.WARNING, logger="rustybackup"):
        mon = BackupManager(url, create=False)
    records = [r.getMessage() for r in caplog.records]
    assert {s.id for s in mon.catalog.list_sets()} == {a_full, a_inc}
    assert any(b_full in r and "no clear catalog record" in r for r in records), records


def test_record_parse_refuses_damage() -> None:
    good = {
        "format": 1,
        "id": "20260101T000000000000Z-00000000",
        "database": "d",
        "backup_type": "full",
        "parent_id": None,
        "started_at_us": 1,
        "finished_at_us": 2,
        "size": 3,
        "bytes_read": 3,
        "block_size": 4096,
        "algorithm": "blake3",
        "compression": None,
        "tags": [],
        "file_count": 1,
        "kind": "files",
        "source_path": "/src",
        "archive_dir": None,
        "blockmap": {"path": "sets/20260101T000000000000Z-00000000/blockmap", "checksum": "c"},
        "pieces": [],
        "archive": [],
    }
    sid = good["id"]
    assert isinstance(sid, str)
    rec = catalog_record.parse(json.dumps(good).encode(), sid, "r")
    assert rec.backup_set.id == sid and rec.kind == "files"
    for field, value, words in [
        ("id", "20260101T000000000000Z-11111111", "expected"),
        ("size", -1, "negative"),
        ("size", True, "'size'"),
        ("backup_type", "weekly", "backup_type"),
        ("blockmap", {"path": "sets/other/blockmap", "checksum": "c"}, "not a file of"),
        ("format", 9, "format 9"),
    ]:
        with pytest.raises(CatalogError, match=words):
            catalog_record.parse(json.dumps(good | {field: value}).encode(), sid, "r")
    with pytest.raises(CatalogError, match="not a JSON"):
        catalog_record.parse(b"{", sid, "r")


_SID = "20260101T000000000000Z-00000000"
_counts = st.integers(min_value=0, max_value=2**62)
_text = st.text(max_size=20)


@settings(deadline=None)
@given(
    size=_counts,
    bytes_read=_counts,
    started=st.integers(min_value=0, max_value=2**50),
    took=st.integers(min_value=0, max_value=2**30),
    tags=st.lists(_text, max_size=3),
    compression=st.none() | _text,
    database=_text,
    pieces=st.lists(st.tuples(_counts, _text, _counts), max_size=3),
    archive=st.lists(st.tuples(_text, _text), max_size=3),
)
def test_record_parse_matches_the_document(
    size: int,
    bytes_read: int,
    started: int,
    took: int,
    tags: list[str],
    compression: str | None,
    database: str,
    pieces: list[tuple[int, str, int]],
    archive: list[tuple[str, str]],
) -> None:
    """The parsed row holds exactly what the JSON document says (the oracle: the dict)."""
    doc = {
        "format": 1,
        "id": _SID,
        "database": database,
        "backup_type": "archive_log" if archive else "full",
        "parent_id": None,
        "started_at_us": started,
        "finished_at_us": started + took,
        "size": size,
        "bytes_read": bytes_read,
        "block_size": 4096,
        "algorithm": "xxh3-128",
        "compression": compression,
        "tags": tags,
        "file_count": len(archive),
        "kind": "files",
        "source_path": "/src",
        "archive_dir": "/arch" if archive else None,
        "blockmap": {"path": f"sets/{_SID}/blockmap", "checksum": "ab"},
        "pieces": [
            {
                "id": f"{_SID}/p{i}",
                "path": f"sets/{_SID}/p{i}",
                "size": n,
                "checksum": c,
                "algorithm": "x",
                "block_count": b,
            }
            for i, (n, c, b) in enumerate(pieces)
        ],
        "archive": [list(a) for a in archive],
    }
    rec = catalog_record.parse(json.dumps(doc).encode(), _SID, "r")
    s = rec.backup_set
    assert (s.database, s.size, s.bytes_read, s.compression, list(s.tags)) == (
        database,
        size,
        bytes_read,
        compression,
        tags,
    )
    assert to_us(s.started_at) == started and to_us(s.finished_at) == started + took
    assert [(p.size, p.checksum, p.block_count) for p in s.pieces] == pieces
    assert list(rec.archive) == archive and s.blockmap_checksum == "ab"
