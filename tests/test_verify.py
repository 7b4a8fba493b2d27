"""Verification over real repositories written by the engine: every level, chains,
damage of every kind as a clear finding (never a crash), persisted status and records."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from manifest_support import stored
from rustybackup import SetStatus, VerificationError, VerificationType, Verifier
from verify_support import Repo, read_index, rewrite_trailer_checksum


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path)


def kinds(report: object) -> list[str]:
    return [f.kind for f in report.findings]  # type: ignore[attr-defined]


@pytest.mark.parametrize("level", list(VerificationType))
def test_a_clean_chain_verifies_ok_at_every_level(repo: Repo, level: VerificationType) -> None:
    full = repo.backup("full")
    repo.touch()
    inc = repo.backup("incremental")
    r = Verifier(repo.manager).verify(inc.id, level)
    assert r.ok and r.complete, r.findings
    assert r.sets == (full.id, inc.id)
    assert r.level is level
    if level is VerificationType.RESTORE_TEST:
        assert r.outcomes == {"ok": 1}
    else:
        assert r.outcomes == {"ok": 4}  # two pieces, two block maps
        assert r.pieces_checked == 4
    if level in (VerificationType.STANDARD, VerificationType.FULL):
        assert r.bytes_read >= full.pieces[0].size + inc.pieces[0].size
    if level is VerificationType.QUICK:
        assert r.bytes_read == 0
    assert repo.manager.catalog.get_set(full.id).status is SetStatus.AVAILABLE


def test_full_names_every_corrupt_block_with_file_and_set_and_marks_the_set_corrupt(repo: Repo) -> None:
    full = repo.backup("full")
    repo.touch()
    inc = repo.backup("incremental")
    entries, _ = read_index(repo.piece(full))
    targets = [entries[1], entries[7], entries[-1]]
    for e in targets:
        repo.flip(repo.piece(full), e.offset + e.stored_len // 2, 3)
    v = Verifier(repo.manager)
    r = v.verify(inc.id, "full")
    assert not r.ok
    got = {(b.offset, b.block_index, b.file) for b in r.corrupt_blocks}
    manifest = json.loads((repo.manager.repository / full.manifest).read_text())
    assert got == {(e.offset, e.block_index, manifest["files"][e.file_no]["path"]) for e in targets}
    assert {b.set_id for b in r.corrupt_blocks} == {full.id}
    assert {b.piece for b in r.corrupt_blocks} == {full.pieces[0].id}
    assert all(
        b.expected == e.digest.hex()
        for b, e in zip(sorted(r.corrupt_blocks, key=lambda b: b.offset), targets, strict=True)
    )
    assert "corrupt_block" in kinds(r) and "bad_checksum" in kinds(r)
    assert r.marked == {full.id: "corrupt"}
    assert repo.manager.catalog.get_set(full.id).status is SetStatus.CORRUPT
    assert repo.manager.catalog.get_set(inc.id).status is SetStatus.AVAILABLE
    assert v.stats.corrupt_blocks == 3 and v.stats.runs == 1


def test_standard_flags_the_piece_but_does_not_mark_the_set(repo: Repo) -> None:
    full = repo.backup("full")
    entries, _ = read_index(repo.piece(full))
    repo.flip(repo.piece(full), entries[2].offset)
    r = Verifier(repo.manager).verify(full.id, "standard")
    assert kinds(r) == ["bad_checksum"]
    assert r.findings[0].subject == full.pieces[0].id
    assert "changed after it was written" in r.findings[0].message
    assert r.corrupt_blocks == () and r.marked == {}


def test_quick_flags_truncation_and_a_set_with_every_piece_gone_expires(repo: Repo) -> None:
    a = repo.backup("full")
    b = repo.backup("full")
    pa = repo.piece(a)
    pa.write_bytes(pa.read_bytes()[:-10])
    repo.piece(b).unlink()
    v = Verifier(repo.manager)
    r = v.verify("db", "quick")
    assert not r.ok
    assert [(f.kind, f.set_id) for f in r.findings] == [("wrong_size", a.id), ("missing", b.id)]
    assert "catalog recorded" in r.findings[0].message
    assert [m.piece for m in r.missing_pieces] == [b.pieces[0].id]
    assert r.marked == {b.id: "expired"}
    assert repo.manager.catalog.get_set(b.id).status is SetStatus.EXPIRED
    # RMAN crosscheck: the piece is back, the set is AVAILABLE again.
    assert repo.manager.catalog.get_set(a.id).status is SetStatus.AVAILABLE


def test_a_truncated_trailer_is_a_finding_at_standard_and_full(repo: Repo) -> None:
    s = repo.backup("full")
    p = repo.piece(s)
    p.write_bytes(p.read_bytes()[:-40])
    for level in ("standard", "full"):
        r = Verifier(repo.manager).verify(s.id, level)
        assert kinds(r) == ["wrong_size", "unreadable"]
        assert "trailer" in r.findings[1].message


def test_a_zeroed_block_is_exactly_one_corrupt_block(repo: Repo) -> None:
    s = repo.backup("full")
    entries, _ = read_index(repo.piece(s))
    e = entries[4]
    with open(repo.piece(s), "r+b") as f:
        f.seek(e.offset)
        f.write(bytes(e.stored_len))
    r = Verifier(repo.manager).verify(s.id, "full")
    assert [(b.block_index, b.offset) for b in r.corrupt_blocks] == [(e.block_index, e.offset)]


def test_pieces_swapped_between_sets_are_catalog_mismatches(repo: Repo) -> None:
    a = repo.backup("full")
    repo.touch()
    b = repo.backup("full")
    pa, pb = repo.piece(a), repo.piece(b)
    da, db = pa.read_bytes(), pb.read_bytes()
    pa.write_bytes(db)
    pb.write_bytes(da)
    r = Verifier(repo.manager).verify("db", "standard")
    mism = [f for f in r.findings if f.kind == "catalog_mismatch"]
    assert {f.set_id for f in mism} == {a.id, b.id}
    assert all("swapped" in f.message for f in mism)


def test_a_missing_manifest_is_a_finding_and_full_marks_the_set(repo: Repo) -> None:
    s = repo.backup("full")
    (repo.manager.repository / s.manifest).unlink()
    r = Verifier(repo.manager).verify(s.id, "full")
    assert kinds(r) == ["missing_manifest"]
    assert "cannot be restored" in r.findings[0].message
    assert r.marked == {s.id: "corrupt"}


def test_corrupt_catalog_rows_are_findings_not_crashes(repo: Repo) -> None:
    s = repo.backup("full")
    conn = sqlite3.connect(repo.manager.repository / "catalog.db")
    conn.execute("UPDATE pieces SET size = -5, checksum = '', algorithm = 'rot13' WHERE set_id = ?", (s.id,))
    conn.execute("UPDATE sets SET backup_type = 'weekly' WHERE id = ?", (s.id,))
    conn.commit()
    conn.close()
    r = Verifier(repo.manager).verify(s.id, "full")
    assert not r.ok
    assert kinds(r).count("bad_catalog_row") == 4, r.findings
    messages = " | ".join(f.message for f in r.findings)
    assert "unknown backup_type 'weekly'" in messages
    assert "no valid size" in messages and "no checksum" in messages and "no known algorithm" in messages
    # Only damaged data marks a set; a damaged catalog row is reported.
    assert r.marked == {}


def test_a_broken_parent_link_is_reported_and_the_rest_still_verified(repo: Repo) -> None:
    repo.backup("full")
    repo.touch()
    inc = repo.backup("incremental")
    conn = sqlite3.connect(repo.manager.repository / "catalog.db")
    conn.execute("UPDATE sets SET parent_id = 'nope' WHERE id = ?", (inc.id,))
    conn.commit()
    conn.close()
    r = Verifier(repo.manager).verify(inc.id, "standard")
    # The manifest still names the real parent: what a rebuild would restore.
    assert kinds(r) == ["broken_chain", "catalog_mismatch"]
    assert "disagree on parent_id: catalog 'nope'" in r.findings[1].message
    assert 'the parent "nope" of backup set' in r.findings[0].message
    assert r.outcomes == {"ok": 2}


def test_restore_test_catches_a_consistent_rewrite_that_full_cannot(repo: Repo) -> None:
    s = repo.backup("full")
    p = repo.piece(s)
    entries, index_off = read_index(p)
    e = next(x for x in entries if x.flags == 0)
    data = bytearray(p.read_bytes())
    new_block = bytes(reversed(data[e.offset : e.offset + e.stored_len]))
    import blake3

    data[e.offset : e.offset + e.stored_len] = new_block
    at = index_off + entries.index(e) * (29 + 32) + 29
    data[at : at + 32] = blake3.blake3(new_block).digest()
    p.write_bytes(bytes(data))
    checksum = rewrite_trailer_checksum(p)
    conn = sqlite3.connect(repo.manager.repository / "catalog.db")
    conn.execute("UPDATE pieces SET checksum = ? WHERE set_id = ?", (checksum, s.id))
    conn.commit()
    conn.close()
    mpath = repo.manager.repository / s.manifest
    doc = json.loads(mpath.read_text())
    doc["pieces"][0]["checksum"] = checksum
    mpath.write_bytes(stored(doc))
    v = Verifier(repo.manager)
    assert v.verify(s.id, "full").ok  # index and data agree: FULL cannot see it
    r = v.verify(s.id, "restore_test")
    assert not r.ok
    assert set(kinds(r)) <= {"digest_mismatch", "restore_failed"}, r.findings
    # The block is named, against the block map's digest (what the restore needed).
    assert [(b.block_index, b.offset, b.set_id) for b in r.corrupt_blocks] == [(e.block_index, e.offset, s.id)]
    assert r.marked == {s.id: "corrupt"}
    assert repo.manager.catalog.get_set(s.id).status is SetStatus.CORRUPT


def test_restore_test_removes_its_sandbox_even_when_the_restore_fails(repo: Repo, tmp_path: Path) -> None:
    s = repo.backup("full")
    sandbox = tmp_path / "sandboxes"
    sandbox.mkdir()
    p = repo.piece(s)
    p.write_bytes(p.read_bytes()[:100])
    r = Verifier(repo.manager, sandbox_dir=sandbox).verify(s.id, "restore-test")
    assert kinds(r) == ["restore_failed"]
    # Every block of the truncated piece is named, not just the first the restore hit.
    assert len(r.corrupt_blocks) == s.pieces[0].block_count
    assert all("bytes at" in b.actual for b in r.corrupt_blocks)
    assert list(sandbox.iterdir()) == []
    assert Verifier(repo.manager, sandbox_dir=sandbox).verify(s.id, "restore_test").findings[0].kind == "not_restorable"


def test_restore_test_runs_integrity_check_on_sqlite_sources(tmp_path: Path) -> None:
    db = tmp_path / "app.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (x INTEGER PRIMARY KEY, y TEXT)")
    conn.executemany("INSERT INTO t (y) VALUES (?)", [(f"row {i}",) for i in range(2000)])
    conn.commit()
    conn.close()
    repo = Repo(tmp_path / "r")
    repo.manager.register_database("app", db, kind="sqlite")
    s = repo.manager.backup("app", "full")
    assert Verifier(repo.manager).verify(s.id, "restore_test").ok


def test_records_and_coverage_say_what_was_verified_when(repo: Repo) -> None:
    a = repo.backup("full")
    b = repo.backup("full")
    v = Verifier(repo.manager)
    cov = v.coverage()
    assert len(cov.never_verified) == 4 and cov.oldest is None
    t1 = repo.clock.advance(hours=1)
    v.verify(a.id, "full")
    repo.clock.advance(hours=1)
    cov = v.coverage()
    assert [c.set_id for c in cov.never_verified] == [b.id, b.id]
    stale = cov.not_verified_since(t1)
    assert {c.set_id for c in stale} == {b.id}
    assert {c.set_id for c in cov.not_verified_since(t1, "restore_test")} == {b.id}
    v.verify(b.id, "quick")
    cov = v.coverage()
    assert cov.oldest == t1
    assert {c.set_id for c in cov.not_verified_since(t1, "standard")} == {b.id}
    assert [c.set_id for c in cov.items][:2] == [a.id, a.id]  # least recently verified first


def test_bad_targets_and_levels_are_verification_errors(repo: Repo) -> None:
    repo.backup("full")
    v = Verifier(repo.manager)
    with pytest.raises(VerificationError, match="'nope' is neither a backup set id nor a registered database"):
        v.verify("nope", "quick")
    with pytest.raises(VerificationError, match="unknown verification level 'deep'; valid levels: quick"):
        v.verify(None, "deep")
    from datetime import timedelta

    with pytest.raises(VerificationError, match="budget must be a positive timedelta"):
        v.verify(None, "quick", budget=timedelta(0))


def test_a_catalog_path_escaping_the_repository_is_never_read(repo: Repo) -> None:
    s = repo.backup("full")
    conn = sqlite3.connect(repo.manager.repository / "catalog.db")
    conn.execute("UPDATE pieces SET path = '../../etc/passwd' WHERE set_id = ?", (s.id,))
    conn.commit()
    conn.close()
    r = Verifier(repo.manager).verify(s.id, "standard")
    assert kinds(r) == ["bad_catalog_row"]
    assert "has no usable path ('../../etc/passwd')" in r.findings[0].message
    assert r.pieces_checked == 1  # the block map only


def test_check_restored_names_the_differing_block_and_the_chain_member_that_stored_it(
    repo: Repo, tmp_path: Path
) -> None:
    from rustybackup import _core

    repo.backup("full")
    repo.touch("f2.bin", at=4096 * 3 + 10)
    inc = repo.backup("incremental")
    out = tmp_path / "out"
    repo.manager.restore("db", out, backup_set_id=inc.id)
    manifest = json.loads((repo.manager.repository / inc.manifest).read_text())
    f = next(x for x in manifest["files"] if x["path"] == "f2.bin")
    blockmap = repo.manager.repository / inc.blockmap
    args = dict(blockmap=blockmap, first_block=f["first_block"], block_count=f["block_count"])
    good = _core.check_restored(out / "f2.bin", "blake3", f["digest"], **args)
    assert good.matches and good.bad_blocks == []
    with open(out / "f2.bin", "r+b") as fh:
        for block in (0, 3):
            fh.seek(block * 4096 + 1)
            fh.write(b"\xff\x00")
    bad = _core.check_restored(out / "f2.bin", "blake3", f["digest"], **args)
    assert not bad.matches
    # Block 0 came from the FULL (source 0), block 3 was rewritten by the INCREMENTAL (source 1).
    assert [(b[0], manifest["sources"][b[1]]["set_id"]) for b in bad.bad_blocks] == [
        (0, manifest["sources"][0]["set_id"]),
        (3, inc.id),
    ]
    with pytest.raises(FileNotFoundError) as info:
        _core.check_restored(out / "nope.bin", "blake3", f["digest"])
    assert info.value.filename == str(out / "nope.bin")


def test_a_set_under_verification_cannot_be_deleted(repo: Repo) -> None:
    from rustybackup import CatalogError

    s = repo.backup("full")
    v = Verifier(repo.manager)
    attempts: list[str] = []

    def try_delete(_: object) -> None:
        if attempts:
            return
        try:
            repo.manager.delete(s.id)
            attempts.append("deleted")
        except CatalogError as exc:
            attempts.append(str(exc))

    r = v.verify(s.id, "standard", progress=try_delete)
    assert r.ok
    assert attempts and attempts[0] != "deleted", attempts
    assert repo.manager.catalog.get_set(s.id).id == s.id
