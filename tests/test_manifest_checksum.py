"""Manifest format 4's own checksum (docs/FORMAT.md "Manifest format 4"): every byte of a
written manifest is covered, a change anywhere is a CatalogError before any field is
read, verification reports it and a restore refuses the set; formats 1 to 3 read as
before, and a format-4 document without its checksum is refused."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from manifest_support import stored
from rustybackup import BackupManager, CatalogError, _core, manifest
from rustybackup.verify import Verifier


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, bytes]:
    root = tmp_path_factory.mktemp("sum")
    src = root / "src"
    (src / "d").mkdir(parents=True)
    (src / "a").write_bytes(b"a" * 9000)
    (src / "d" / "b").write_bytes(b"b" * 100)
    os.symlink("d/b", src / "l")
    m = BackupManager(root / "repo")
    m.register_database("t", src)
    s = m.backup("t", "full")
    path = root / "repo" / "sets" / s.id / "manifest.json"
    return path, s.id, path.read_bytes()


def test_a_written_manifest_begins_with_the_blake3_of_its_bytes(written: tuple[Path, str, bytes]) -> None:
    _, set_id, text = written
    assert text.startswith(b'{"checksum":"') and text[77:79] == b'",'
    # The oracle: the blake3 package (the reference implementation's bindings, not our
    # crate) over the bytes with the digits zeroed, as the format says.
    zeroed = text[:13] + b"0" * 64 + text[77:]
    assert text[13:77].decode() == blake3.blake3(zeroed).hexdigest()
    doc = json.loads(text)
    assert doc["format"] == manifest.FORMAT == 4
    m = manifest.loads(text)
    assert m.id == set_id and "checksum" not in m.dump()
    # Written again, the same bytes.
    assert manifest.document(m) == text


@settings(max_examples=300, deadline=None)
@given(at=st.integers(0, 2**31), bit=st.integers(0, 7))
def test_every_changed_bit_is_a_catalog_error(written: tuple[Path, str, bytes], at: int, bit: int) -> None:
    _, set_id, text = written
    damaged = bytearray(text)
    damaged[at % len(damaged)] ^= 1 << bit
    with pytest.raises(CatalogError, match=r"^sets/x/manifest\.json: "):
        manifest.loads(bytes(damaged), "sets/x/manifest.json")


def test_a_changed_mode_is_found_by_standard_verification_and_refused_by_restore(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"hello" * 1000)
    m = BackupManager(tmp_path / "repo")
    m.register_database("t", src)
    s = m.backup("t", "full")
    path = tmp_path / "repo" / "sets" / s.id / "manifest.json"
    text = path.read_bytes()
    # A digit of the file's mode: still valid JSON, still a valid mode (420 -> 421).
    changed = text.replace(b'"mode":420', b'"mode":421', 1)
    assert changed != text
    path.write_bytes(changed)
    assert Verifier(m).verify(s.id, "quick").ok  # sizes only: QUICK reads no manifest
    report = Verifier(m).verify(s.id, "standard")
    (finding,) = report.findings
    assert finding.kind == "bad_manifest" and "checksum" in finding.message
    with pytest.raises(CatalogError):
        m.restore("t", tmp_path / "out")
    assert not (tmp_path / "out" / "a").exists()


def test_a_format_4_document_without_its_checksum_is_refused(written: tuple[Path, str, bytes]) -> None:
    _, _, text = written
    doc = json.loads(text)
    del doc["checksum"]
    with pytest.raises(
        CatalogError, match=r"checksum: a format-4 manifest begins with its checksum; this one has none"
    ):
        manifest.loads(json.dumps(doc))
    # A damaged first byte cannot make it an unchecked document either.
    flipped = bytearray(text)
    flipped[2] ^= 0x20  # "checksum" -> "Checksum": no longer the prefix
    with pytest.raises(CatalogError, match="this one has none"):
        manifest.loads(bytes(flipped))
    # Stored again as a writer stores it, it reads.
    assert manifest.loads(stored(doc)).id == manifest.loads(text).id


@pytest.mark.parametrize("fmt", [1, 2, 3])
def test_earlier_formats_read_without_a_checksum(written: tuple[Path, str, bytes], fmt: int) -> None:
    _, _, text = written
    doc = json.loads(text)
    del doc["checksum"]
    doc["format"] = fmt
    if fmt < 3:
        doc.pop("root", None)
    m = manifest.loads(json.dumps(doc))
    assert m.format == fmt
    assert json.loads(manifest.document(m)) == json.loads(json.dumps(m.dump()))  # as it was: no checksum


@pytest.mark.parametrize(
    ("digits", "message"),
    [
        ("A" * 64, "is not 64 lower-case hex digits"),
        ("0" * 63 + '"', "is not 64 lower-case hex digits"),
        ("f" * 64, "changed after it was written"),
    ],
)
def test_a_malformed_or_wrong_checksum_is_named(written: tuple[Path, str, bytes], digits: str, message: str) -> None:
    _, _, text = written
    bad = text[:13] + digits.encode() + text[77:]
    with pytest.raises(CatalogError, match=message):
        manifest.loads(bad)


@given(doc=st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=6))
def test_any_object_sealed_reads_back_with_the_reference_digest(doc: dict[str, object]) -> None:
    text = json.dumps(doc).encode()
    sealed = _core.manifest_sum_seal(text)
    assert sealed[13:77].decode() == blake3.blake3(sealed[:13] + b"0" * 64 + sealed[77:]).hexdigest()
    assert json.loads(sealed) == {"checksum": sealed[13:77].decode(), **doc} or "checksum" in doc
    assert _core.manifest_sum_check(sealed) == (sealed[13:77].decode(),) * 2
    assert _core.manifest_sum_check(text) is None or text.startswith(b'{"checksum":"')
    with pytest.raises(ValueError, match="JSON object"):
        _core.manifest_sum_seal(b"[]")


def test_the_tables_sealed_document_is_the_sealed_unsealed_one(written: tuple[Path, str, bytes]) -> None:
    """The writer's one-buffer path (rows spliced and sealed in Rust) gives the bytes the
    generic seal gives for the same document unsealed."""
    _, _, text = written
    m = manifest.loads(text)
    assert isinstance(m.files, manifest.FileTable)
    sealed = manifest.document(m)
    head = b'{"checksum":"' + sealed[13:77] + b'",'
    assert sealed.startswith(head)
    assert _core.manifest_sum_seal(b"{" + sealed[len(head) :]) == sealed == text
    # Written as format 3 (an older set kept as it is), no checksum at all.
    assert not manifest.document(replace(m, format=3)).startswith(b'{"checksum"')
