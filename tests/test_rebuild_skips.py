"""What registering sets from their manifests (rebuild, register_manifests) or from
their clear catalog records (register_records) skips, and why: a set whose tombstone
the catalog holds, and one that clashes with a set already registered; the others in
the same call are registered all the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rustybackup import BackupManager, catalog_record, manifest, store
from rustybackup.catalog import BackupCatalog, RebuildReport
from test_rebuild import _four_sets


def _sets(tmp_path: Path) -> tuple[BackupManager, list[str]]:
    """The repository of test_rebuild's four sets (FULL, INCREMENTAL x2, FULL), open."""
    repo, clock, taken = _four_sets(tmp_path)
    return BackupManager(repo, clock=clock), [sid for sid, _ in taken]


def _where(set_id: str) -> str:
    return f"{store.SETS_DIR}/{set_id}/{store.MANIFEST}"


def test_a_rebuild_skips_a_deleted_set_and_a_second_registration_clashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m, (a, b, c, d) = _sets(tmp_path)
    # A delete interrupted between its catalog write and its file removal: the set's
    # directory stays, its tombstone says it is gone.
    with monkeypatch.context() as patch:
        patch.setattr(store.Repository, "discard", lambda self, set_id: None)
        m.delete(c)  # a leaf: the newest INCREMENTAL
    report = m.catalog.rebuild_report()
    assert report == RebuildReport(
        3, ((_where(c), f"{_where(c)}: set {c} was deleted (the catalog holds its tombstone)"),)
    )
    assert sorted(s.id for s in m.catalog.list_sets()) == [a, b, d]

    again = m.catalog.register_manifests([m.repository / _where(a)])
    assert again.registered == 0
    ((where, why),) = again.skipped
    assert where == _where(a)
    assert why.startswith(f"{_where(a)}: set {a} clashes with a set already registered (")
    assert sorted(s.id for s in m.catalog.list_sets()) == [a, b, d]


def test_records_of_a_deleted_and_a_known_set_are_skipped_and_the_rest_registered(tmp_path: Path) -> None:
    m, ids = _sets(tmp_path)
    a, b, c, d = ids
    records = []
    for sid in ids:
        doc = catalog_record.document(manifest.load(m.repository / _where(sid), set_id=sid))
        where = f"{store.SETS_DIR}/{sid}/record"
        records.append((where, catalog_record.parse(json.dumps(doc).encode(), sid, where)))
    # A keyless host's catalog that knows set a and holds set b's tombstone.
    other = BackupCatalog(tmp_path / "other.db")
    assert other.register_records(records[:1]) == RebuildReport(1)
    other.remove_set(b)
    report = other.register_records(records)
    assert report.registered == 2
    (wa, why_a), (wb, why_b) = report.skipped
    assert (wa, wb) == (records[0][0], records[1][0])
    assert why_a.startswith(f"{wa}: set {a} clashes with a set already registered (")
    assert why_b == f"{wb}: set {b} was deleted (the catalog holds its tombstone)"
    assert sorted(s.id for s in other.list_sets()) == [a, c, d]
    assert other.get_database("db").path == m.catalog.get_database("db").path
