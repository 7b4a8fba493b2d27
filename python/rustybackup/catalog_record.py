"""The clear catalog record of a set in an encrypted bucket (``sets/<id>/catalog.json``,
docs/FORMAT.md): exactly the catalog row a sealed manifest gives (the set, its pieces
with sizes and checksums, its block map's checksum, the database's name, kind, source
path and archive directory, an archive set's WAL file names), so a host without the key
can build its catalog from the bucket and run QUICK/STANDARD on the ciphertext. It holds
nothing the README says a keyed repository hides (no file names, no paths inside the
tree, no per-file sizes). It goes up before the manifest (the commit point): a record
without a manifest is an abandoned set. It is not authenticated (a MAC needs the key): a
keyless host checks stored bytes against it; a keyed FULL checks it against the manifest."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import manifest, store
from .catalog import BackupPiece, BackupSet, _source_kind, from_us, set_from_manifest
from .enums import BackupType, SetStatus
from .errors import CatalogError, StorageNotFound

if TYPE_CHECKING:
    from .remote_repo import RemoteRepository

log = logging.getLogger(__name__)

RECORD = "catalog.json"
FORMAT = 1


@dataclass(frozen=True)
class Record:
    """A parsed record: the set row, an archive set's (name, digest) files, and the
    databases row's (path, kind, archive_dir) for the set's database."""

    backup_set: BackupSet
    archive: tuple[tuple[str, str], ...]
    source_path: str | None
    kind: str
    archive_dir: str | None


def document(m: manifest.Manifest) -> dict[str, Any]:
    """The record of a (validated) manifest's set."""
    s, archive = set_from_manifest(m)
    r = m.record
    return {
        "format": FORMAT,
        "id": s.id,
        "database": s.database,
        "backup_type": s.backup_type.value,
        "parent_id": s.parent_id,
        "started_at_us": r.started_at_us,
        "finished_at_us": r.finished_at_us,
        "size": s.size,
        "bytes_read": s.bytes_read,
        "block_size": s.block_size,
        "algorithm": s.algorithm,
        "compression": s.compression,
        "tags": list(s.tags),
        "file_count": s.file_count,
        "kind": _source_kind(m),
        "source_path": r.source_path,
        "archive_dir": r.archive_dir,
        "blockmap": {"path": s.blockmap, "checksum": s.blockmap_checksum},
        "pieces": [
            {
                "id": p.id,
                "path": p.path,
                "size": p.size,
                "checksum": p.checksum,
                "algorithm": p.algorithm,
                "block_count": p.block_count,
            }
            for p in s.pieces
        ],
        "archive": [[name, digest] for name, digest in archive],
    }


def write(set_dir: Path, root: Path, set_id: str) -> None:
    """Writes the record of set `set_id` staged in `set_dir` (a staging directory, or a
    cut upload's resend directory inside one) from its sealed manifest, opened with the
    keys of the repository at `root`: this host wrote it, so it can."""
    from . import keys

    name = f"{store.SETS_DIR}/{set_id}/{store.MANIFEST}"
    text = (set_dir / store.MANIFEST).read_bytes()
    envelope = keys.envelope_of(text)
    if envelope is not None:
        text = keys.open_manifest(root, envelope, name)
    m = manifest.loads(text, name)
    if m.id != set_id:
        raise CatalogError(f"{name}: set.id: expected {set_id!r}, got {m.id!r}")
    # Replaced, not created: a cut upload sent again writes it again.
    store.atomic_write_bytes(set_dir / RECORD, json.dumps(document(m), sort_keys=True).encode())


def _field(data: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise CatalogError(f"{where}: field {name!r}: unexpected value {value!r:.60}")
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        raise CatalogError(f"{where}: field {name!r}: negative ({value})")
    return value


def parse(text: bytes, set_id: str, where: str) -> Record:
    """The record of `set_id` in `text`; CatalogError naming `where` and the field when
    it is not one (damage, or a record another set's)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CatalogError(f"{where}: not a JSON catalog record ({exc})") from None
    if not isinstance(data, dict):
        raise CatalogError(f"{where}: not a JSON object")
    if data.get("format") != FORMAT:
        raise CatalogError(f"{where}: format {data.get('format')!r} (this rustybackup reads {FORMAT})")
    sid = _field(data, "id", str, where)
    if sid != set_id:
        raise CatalogError(f"{where}: field 'id': expected {set_id!r} (the set it was read for), got {sid!r}")
    parent = data.get("parent_id")
    if parent is not None and not manifest.is_set_id(parent):
        raise CatalogError(f"{where}: field 'parent_id': {parent!r:.60} is not a backup set id")
    try:
        btype = BackupType(_field(data, "backup_type", str, where))
    except ValueError:
        raise CatalogError(f"{where}: field 'backup_type': unknown {data['backup_type']!r:.40}") from None
    bm = _field(data, "blockmap", dict, where)
    pieces = []
    for i, p in enumerate(_field(data, "pieces", list, where)):
        at = f"{where}: pieces[{i}]"
        if not isinstance(p, dict):
            raise CatalogError(f"{at}: not an object")
        path = _field(p, "path", str, at)
        if path.rsplit("/", 1)[0] != f"{store.SETS_DIR}/{set_id}":
            raise CatalogError(f"{at}: field 'path': {path!r:.80} is not a file of {store.SETS_DIR}/{set_id}/")
        pieces.append(
            BackupPiece(
                id=_field(p, "id", str, at),
                set_id=set_id,
                path=path,
                size=_field(p, "size", int, at),
                checksum=_field(p, "checksum", str, at),
                algorithm=_field(p, "algorithm", str, at),
                block_count=_field(p, "block_count", int, at),
            )
        )
    bm_path = _field(bm, "path", str, f"{where}: blockmap")
    if bm_path.rsplit("/", 1)[0] != f"{store.SETS_DIR}/{set_id}":
        raise CatalogError(
            f"{where}: blockmap: field 'path': {bm_path!r:.80} is not a file of {store.SETS_DIR}/{set_id}/"
        )
    archive = []
    for i, a in enumerate(_field(data, "archive", list, where)):
        if not (isinstance(a, list) and len(a) == 2 and all(isinstance(x, str) for x in a)):
            raise CatalogError(f"{where}: archive[{i}]: not a [name, digest] pair")
        archive.append((a[0], a[1]))
    source_path = data.get("source_path")
    archive_dir = data.get("archive_dir")
    for name, v in (("source_path", source_path), ("archive_dir", archive_dir)):
        if v is not None and not isinstance(v, str):
            raise CatalogError(f"{where}: field {name!r}: not a string")
    tags = _field(data, "tags", list, where)
    if not all(isinstance(t, str) for t in tags):
        raise CatalogError(f"{where}: field 'tags': not a list of strings")
    s = BackupSet(
        id=set_id,
        database=_field(data, "database", str, where),
        backup_type=btype,
        parent_id=parent,
        started_at=from_us(_field(data, "started_at_us", int, where)),
        finished_at=from_us(_field(data, "finished_at_us", int, where)),
        status=SetStatus.AVAILABLE,
        size=_field(data, "size", int, where),
        block_size=_field(data, "block_size", int, where),
        algorithm=_field(data, "algorithm", str, where),
        compression=_field(data, "compression", (str, type(None)), where),
        tags=tuple(tags),
        bytes_read=_field(data, "bytes_read", int, where),
        file_count=_field(data, "file_count", int, where),
        manifest=f"{store.SETS_DIR}/{set_id}/{store.MANIFEST}",
        blockmap=bm_path,
        blockmap_checksum=_field(bm, "checksum", str, f"{where}: blockmap"),
        pieces=tuple(pieces),
    )
    return Record(s, tuple(archive), source_path, _field(data, "kind", str, where), archive_dir)


def disagreement(m: manifest.Manifest, text: bytes) -> str | None:
    """What in a record (`text`) differs from the set's manifest `m` (a keyed host's
    check that a bucket writer did not change what a keyless host verifies), or None."""
    try:
        stored = json.loads(text)
    except ValueError as exc:
        return f"not JSON ({exc})"
    want = json.loads(json.dumps(document(m)))
    if not isinstance(stored, dict):
        return "not a JSON object"
    fields = sorted(k for k in want.keys() | stored.keys() if want.get(k) != stored.get(k))
    return None if not fields else "differs from the manifest in " + ", ".join(fields)


def check_against(remote: RemoteRepository, root: Path, m: manifest.Manifest) -> str | None:
    """A keyed host's check of a set's record in the bucket against its (opened)
    manifest: what differs, with the object named, or None (agreeing, or no record: a set
    written before records existed)."""
    from . import reencrypt_refresh

    # While a re-encryption's chain commit is pending, keyless hosts read its staged record.
    rel = reencrypt_refresh.record_key(remote, m.id)
    dest = root / f"{store.SETS_DIR}/{m.id}/{RECORD}"
    try:
        # Fetched every time: what a keyless host would read is what is in the bucket now.
        remote._get(rel, dest)
        text = dest.read_bytes()
    except StorageNotFound:
        return None
    except OSError as exc:
        return f"{rel}: cannot be read ({exc})"
    why = disagreement(m, text)
    return None if why is None else f"{rel}: {why}; a host without the key would verify against it"
