"""An INCREMENTAL's block map names its parent's map and that map's checksum in its
trailer, outside its own checksum (docs/FORMAT.md "Block map, version 2"): STANDARD
checks the reference against the catalog, so a changed one is a finding there, not only
when FULL or a restore resolves the chain."""

from __future__ import annotations

from pathlib import Path

import pytest
from rustybackup import BackupManager, SetStatus, VerificationType, _core
from rustybackup.errors import BackupError, NoRecoveryPath
from rustybackup.verify import Verifier


@pytest.fixture
def chain(tmp_path: Path) -> tuple[BackupManager, list[str]]:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}").write_bytes(bytes([i]) * 20_000)
    m = BackupManager(tmp_path / "repo")
    m.register_database("t", src, block_size=4096)
    ids = [m.backup("t", "full").id]
    (src / "f0").write_bytes(b"x" * 20_000)
    ids.append(m.backup("t", "incremental").id)
    (src / "f1").write_bytes(b"y" * 20_000)
    ids.append(m.backup("t", "incremental").id)
    return m, ids


def _map(m: BackupManager, set_id: str) -> Path:
    return m.repository / "sets" / set_id / "blockmap"


def test_the_reference_is_the_parent_sets_map_and_checksum(chain: tuple[BackupManager, list[str]]) -> None:
    m, ids = chain
    assert _core.blockmap_parent(_map(m, ids[0]))[1] is None
    for child, parent in zip(ids[1:], ids, strict=False):
        _, named = _core.blockmap_parent(_map(m, child))
        assert named == (_map(m, parent), m.catalog.get_set(parent).blockmap_checksum)
    assert Verifier(m).verify("t", VerificationType.STANDARD).ok


def test_a_changed_parent_checksum_is_a_standard_finding(chain: tuple[BackupManager, list[str]]) -> None:
    m, ids = chain
    path = _map(m, ids[2])
    data = bytearray(path.read_bytes())
    recorded = bytes.fromhex(m.catalog.get_set(ids[1]).blockmap_checksum)
    at = data.index(recorded)
    data[at + 5] ^= 0x01
    path.write_bytes(bytes(data))
    report = Verifier(m).verify("t", VerificationType.STANDARD)
    (finding,) = report.findings
    assert finding.kind == "catalog_mismatch" and finding.set_id == ids[2]
    assert f"set {ids[1]}'s map" in finding.message and "cannot be restored" in finding.message
    # FULL marks what it finds (STANDARD reports, as for every finding).
    assert m.catalog.get_set(ids[2]).status is SetStatus.AVAILABLE
    assert not Verifier(m).verify(ids[2], VerificationType.FULL).ok
    assert m.catalog.get_set(ids[2]).status is SetStatus.CORRUPT
    with pytest.raises(NoRecoveryPath):
        m.restore("t", m.repository.parent / "out", backup_set_id=ids[2])


def test_a_map_that_names_another_sets_map_is_a_standard_finding(chain: tuple[BackupManager, list[str]]) -> None:
    """The third set's map made to name the FULL's map, with the FULL's real checksum: a
    well-formed reference, only not to its parent."""
    m, ids = chain
    path = _map(m, ids[2])
    data = path.read_bytes()
    parent_sum = bytes.fromhex(m.catalog.get_set(ids[1]).blockmap_checksum)
    full_sum = bytes.fromhex(m.catalog.get_set(ids[0]).blockmap_checksum)
    data = data.replace(f"../{ids[1]}/blockmap".encode(), f"../{ids[0]}/blockmap".encode())
    data = data.replace(parent_sum, full_sum)
    path.write_bytes(data)
    report = Verifier(m).verify(ids[2], VerificationType.STANDARD)
    kinds = {(f.kind, f.set_id) for f in report.findings}
    assert ("catalog_mismatch", ids[2]) in kinds, report.findings
    # A restore resolves the FULL's records instead of the parent's: the files' digests
    # refuse it (nothing wrong is left as restored).
    with pytest.raises(BackupError, match="does not match its manifest"):
        m.restore("t", m.repository.parent / "out", backup_set_id=ids[2])
