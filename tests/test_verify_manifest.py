"""A set that cannot be restored is never verified OK: corrupt manifests (issue 12) fail
STANDARD and FULL verification (exit 1 from `rustybackup verify`, the set marked CORRUPT
at FULL), and restoring them is a clean RustyBackupError naming the file and the field,
never a crash or a partial restore reported as success."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from manifest_support import stored
from rustybackup import BackupError, CatalogError, SetStatus, Verifier
from rustybackup.catalog import BackupSet
from rustybackup.cli import cli
from verify_support import Repo

MISSING_ID = "20250101T000000000000Z-00000000"


class Chain:
    """FULL -> INCREMENTAL -> INCREMENTAL of four files; `last` is damaged by each case."""

    def __init__(self, root: Path) -> None:
        self.repo = Repo(root)
        self.full = self.repo.backup("full")
        self.repo.touch("f1.bin")
        self.mid = self.repo.backup("incremental")
        self.repo.touch("f2.bin")
        self.last = self.repo.backup("incremental")

    def path(self, s: BackupSet) -> Path:
        return self.repo.manager.repository / "sets" / s.id / "manifest.json"

    def doc(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.path(self.last).read_text())
        return data

    def put(self, doc: object) -> None:
        self.path(self.last).write_bytes(stored(doc))


def _text(text: str) -> Callable[[Chain], None]:
    def apply(c: Chain) -> None:
        c.path(c.last).write_text(text)

    return apply


def _cut_in_half(c: Chain) -> None:
    c.path(c.last).write_bytes(c.path(c.last).read_bytes()[:300])


def _edit(change: Callable[[dict[str, Any]], object]) -> Callable[[Chain], None]:
    def apply(c: Chain) -> None:
        doc = c.doc()
        change(doc)
        c.put(doc)

    return apply


def _blocks_beyond_the_block_map(d: dict[str, Any]) -> None:
    # Consistent in itself (sizes, counts, offsets agree), but the block map holds fewer records.
    d["files"][-1]["size"] += 5 * d["set"]["block_size"]
    d["files"][-1]["block_count"] += 5
    d["blockmap"]["block_count"] += 5


def _missing_parent(d: dict[str, Any]) -> None:
    d["set"]["parent_id"] = MISSING_ID
    d["sources"][-2]["set_id"] = MISSING_ID


def _another_sets_manifest(c: Chain) -> None:
    shutil.copyfile(c.path(c.mid), c.path(c.last))


# name -> (damage, the exception restore raises, a phrase of its message)
CASES: dict[str, tuple[Callable[[Chain], None], type[Exception], str]] = {
    "not JSON": (_text("{not json"), CatalogError, "not a JSON manifest"),
    "an empty file": (_text(""), CatalogError, "not a JSON manifest"),
    # The cut keeps the checksum at its head, which the rest no longer matches.
    "cut in half": (_cut_in_half, CatalogError, "checksum: the document was written with BLAKE3"),
    "nested too deep": (_text('{"format": ' + "[" * 200_000 + "]" * 200_000 + "}"), CatalogError, "not a JSON"),
    "a list at the top": (_text("[]"), CatalogError, "(top level): expected an object"),
    "a size of the wrong type": (
        _edit(lambda d: d["files"][0].update(size="40000")),
        CatalogError,
        "files[0].size: expected a non-negative",
    ),
    "a removed digest": (_edit(lambda d: d["files"][0].pop("digest")), CatalogError, "files[0].digest: missing"),
    "out-of-range blocks": (
        _edit(lambda d: d["files"][1].update(first_block=10**9)),
        CatalogError,
        "files[1].first_block: expected",
    ),
    "a negative block count": (
        _edit(lambda d: d["files"][0].update(block_count=-1)),
        CatalogError,
        "files[0].block_count: expected",
    ),
    "blocks beyond the block map": (_edit(_blocks_beyond_the_block_map), BackupError, "restore of set"),
    "a missing source set": (
        _edit(lambda d: d["sources"][0].update(set_id=MISSING_ID)),
        CatalogError,
        "sources[0].set_id: set",
    ),
    "a missing parent set": (_edit(_missing_parent), CatalogError, "sources[1].set_id: set"),
    "a source that is not a piece": (
        _edit(lambda d: d["sources"][0].update(piece="blockmap")),
        CatalogError,
        "sources[0].piece:",
    ),
    "duplicate paths": (
        _edit(lambda d: d["files"][1].update(path=d["files"][0]["path"])),
        CatalogError,
        "files[1].path: 'f0.bin' is listed twice",
    ),
    "a file under a file": (
        _edit(lambda d: d["files"][1].update(path="f0.bin/x")),
        CatalogError,
        "lies under 'f0.bin'",
    ),
    "an escaping path": (
        _edit(lambda d: d["files"][0].update(path="../evil")),
        CatalogError,
        "would escape the restore target",
    ),
    "a crafted set id": (
        _edit(lambda d: d["set"].update(id="../../victim")),
        CatalogError,
        "set.id: expected a set id",
    ),
    "another set's manifest": (_another_sets_manifest, CatalogError, "set.id: expected"),
    "an unsupported format": (_edit(lambda d: d.update(format=99)), CatalogError, "format: manifest format 99"),
}


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    return Chain(tmp_path)


@pytest.mark.parametrize("case", list(CASES))
def test_a_corrupt_manifest_fails_verification_and_restore(chain: Chain, tmp_path: Path, case: str) -> None:
    damage, error, phrase = CASES[case]
    damage(chain)
    manager = chain.repo.manager
    target = tmp_path / "out"
    with pytest.raises(error) as info:
        manager.restore("db", target, backup_set_id=chain.last.id)
    assert phrase in str(info.value)
    if error is CatalogError:
        assert f"sets/{chain.last.id}/manifest.json" in str(info.value)
        # Refused before anything was written.
        assert not target.exists() or not any(target.iterdir())

    standard = Verifier(manager).verify(chain.last.id, "standard")
    assert not standard.ok
    assert chain.last.id in {f.set_id for f in standard.findings}, standard.findings

    result = CliRunner().invoke(
        cli, ["--repo", str(manager.repository), "verify", "--set", chain.last.id, "--level", "full"]
    )
    assert result.exit_code == 1, result.output
    assert "PROBLEMS FOUND" in result.stdout
    assert manager.catalog.get_set(chain.last.id).status is SetStatus.CORRUPT
    # The sets it damaged nothing of stay restorable and unmarked.
    assert manager.catalog.get_set(chain.mid.id).status is SetStatus.AVAILABLE
    assert Verifier(manager).verify(chain.mid.id, "full").ok


def test_an_intact_chain_verifies_ok_at_standard_and_full(chain: Chain) -> None:
    v = Verifier(chain.repo.manager)
    for level in ("standard", "full"):
        r = v.verify("db", level)
        assert r.ok, r.findings


def test_a_catalog_row_that_disagrees_with_the_manifest_is_reported(chain: Chain) -> None:
    import sqlite3

    conn = sqlite3.connect(chain.repo.manager.repository / "catalog.db")
    conn.execute("UPDATE pieces SET size = size + 1 WHERE set_id = ?", (chain.mid.id,))
    conn.execute("UPDATE sets SET parent_id = ? WHERE id = ?", (chain.full.id, chain.last.id))
    conn.commit()
    conn.close()
    r = Verifier(chain.repo.manager).verify("db", "standard")
    mismatches = [f.message for f in r.findings if f.kind == "catalog_mismatch" and "disagree" in f.message]
    assert any(
        f"set {chain.mid.id}: the catalog and sets/{chain.mid.id}/manifest.json disagree on pieces[0].size" in m
        for m in mismatches
    ), r.findings
    assert any(f"set {chain.last.id}" in m and "disagree on parent_id" in m for m in mismatches), r.findings
