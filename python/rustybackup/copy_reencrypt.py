"""`copy` into a repository under other keys: each set re-encrypted on its way.

Three directions (the same-keys copy moves ciphertext as it is, copy_keys.py):
encrypted under A's keys -> encrypted under B's, plain -> encrypted, and encrypted ->
plain (only when asked: ``--decrypt`` writes plaintext). The source's keys come from
``--from-password-file``/``--from-key-file`` (or, when not given, the usual
``--password-file``/``--key-file``/environment, which then opens both); the target's from
the usual options. A write-only key is enough for the target: sealing needs only the
public key and the MAC key, as a write-only host's backups do.

Per set, parents first, in the target's ``staging/<id>/`` (nothing is visible before the
catalog registers it, as for a backup):

1. every piece re-keyed block by block (``_core.rekey_piece``, streaming: each block
   opened with the source's set key or read plain, its digest checked, sealed under a new
   set key of the target, or stored plain, its digest recomputed under the target's MAC
   key, so the target's dedup and change detection work for the next backup into it);
2. the block map rewritten (``_core.rekey_map``): every stored record pointing where its
   block now is, records naming an earlier set's piece included (that piece was copied
   by the same pass, so where its blocks went follows from its index), parent and copy
   runs as they were, sealed under the new map key and naming the parent's new checksum;
3. the manifest, identical but for the pieces' sizes and checksums and the map's
   checksum, sealed in an envelope wrapped to the target's current generation;
4. then exactly as a same-keys copy: published, FULL-checked under the target's keys,
   uploaded (s3://), registered. A failure removes the set's staging directory.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from . import _core, keys, locks, manifest, store
from .errors import EncryptionError

if TYPE_CHECKING:
    from .catalog import BackupSet
    from .engine import BackupManager

log = logging.getLogger(__name__)

# An encrypted repository keys its digests with BLAKE3 (docs/FORMAT.md "Blocks").
ENCRYPTED_ALGORITHM = "blake3"


@dataclasses.dataclass(frozen=True)
class SourceCredentials:
    """``--from-password-file`` / ``--from-key-file``: what opens the source's keys."""

    password_file: Path | None = None
    key_file: Path | None = None

    @property
    def given(self) -> bool:
        return self.password_file is not None or self.key_file is not None


def unlock_source(root: Path, creds: SourceCredentials) -> None:
    """Opens the source's keys with its own credentials (kept for this process, as
    `keys.unlock` does), so the target's options stay the target's."""
    if not creds.given:
        return
    if not keys.is_encrypted(root):
        raise EncryptionError(f"{root}: --from-password-file/--from-key-file given, but the source is not encrypted")
    password = None
    if creds.password_file is not None:
        try:
            password = creds.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise EncryptionError(
                f"password file {creds.password_file}: cannot be read: {exc.strerror or exc}"
            ) from None
    keys.unlock(root, password=password if creds.key_file is None else None, key_file=creds.key_file)


def needs_rekey(source: BackupManager, target: BackupManager, *, decrypt: bool) -> bool:
    """Whether sets must be re-encrypted on their way (the keys differ), or refused (see
    `refuse_plaintext`); False: the ciphertext (or plain data) is copied as it is."""
    src, dst = source.repository, target.repository
    src_enc, dst_enc = keys.is_encrypted(src), keys.is_encrypted(dst)
    where = _where(target)
    if decrypt and dst_enc:
        raise EncryptionError(f"{where}: --decrypt writes plaintext, and the target is encrypted; nothing was copied")
    if decrypt and not src_enc:
        raise EncryptionError(f"{src}: --decrypt: the source is not encrypted; nothing was copied")
    if src_enc and not dst_enc:
        return decrypt
    if not dst_enc:
        return False
    if not src_enc:
        return True
    ring = keys.KEYS_DIR + "/" + keys.KEYRING
    if (src / ring).read_bytes() == (dst / ring).read_bytes():
        return False  # the same keyring (adopted, or copied from one origin)
    mine = keys.reading_keys(src)
    theirs = keys.keys_for(dst)
    return mine is None or theirs is None or mine.mac_key != theirs.mac_key


def refuse_plaintext(source: BackupManager, target: BackupManager) -> None:
    """An encrypted source into a plain target that already holds sets: the copy would
    write plaintext, which happens only with ``--decrypt``."""
    if not keys.is_encrypted(source.repository) or keys.is_encrypted(target.repository):
        return
    held = target.catalog.set_ids() or (target.remote is not None and target.remote.remote_manifests())
    if held:
        raise EncryptionError(
            f"{_where(target)}: the target is not encrypted and the source {source.repository} is; copying would "
            "write the sets decrypted, which happens only with --decrypt (copy into a new repository to keep them "
            "encrypted under the source's keys); nothing was copied"
        )


def _where(m: BackupManager) -> str:
    return str(m.remote.url) if m.remote is not None else str(m.repository)


def open_staging(target: BackupManager, set_id: str) -> tuple[Path, int]:
    """The set's new ``staging/<id>/`` and the descriptor holding its lock. A directory a
    killed copy left (its lock no longer held) is emptied and taken over, so a rerun goes
    on; one a live process holds is an error."""
    staging = target.repo.staging_dir(set_id)
    with locks.creating_staging(target.repo.root):
        try:
            staging.mkdir()
        except FileExistsError:
            fd = locks.take_abandoned_staging(staging)
            if fd is None:
                raise EncryptionError(f"set {set_id}: {staging} is being written by another process") from None
            for entry in staging.iterdir():
                if entry.name != locks.STAGING_LOCK:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            log.info("set %s: took over %s, left by a copy that was stopped", set_id, staging)
            return staging, fd
        return staging, locks.hold_staging_lock(staging)


@dataclasses.dataclass(frozen=True)
class _SetKeys:
    blocks: tuple[bytes, bytes] | None
    map_key: bytes | None


def _source_keys(root: Path, set_id: str) -> _SetKeys:
    opened = keys.reading_keys(root)
    if opened is None:
        return _SetKeys(None, None)
    set_key, _gen = keys.stored_set_key(root, set_id)
    blocks, map_key = keys.set_key_parts(opened, set_key)
    return _SetKeys(blocks, map_key)


def rekey_into_staging(
    source: BackupManager, target: BackupManager, s: BackupSet, staging: Path
) -> tuple[manifest.Manifest, dict[str, tuple[bytes, bytes]] | None]:
    """Steps 1-3 of the module's docstring for set `s` into `staging`; returns its new
    manifest and the block keys that open its copy (None: plain), which this process
    holds even with a write-only target key (it made the set key). An EncryptionError
    names the piece, file, block and offset of a block that does not open or check."""
    src_root, dst_root = source.repository, target.repository
    m = manifest.load(src_root / s.manifest, set_id=s.id)
    opened = keys.keys_for(dst_root)
    if opened is not None and m.record.algorithm != ENCRYPTED_ALGORITHM:
        raise EncryptionError(
            f"set {s.id}: its digests are {m.record.algorithm}; an encrypted repository keys every digest with "
            f"{ENCRYPTED_ALGORITHM}, so it cannot hold this set"
        )
    old = _source_keys(src_root, s.id)
    new_set_key = secrets.token_bytes(32)
    new_blocks, new_map_key = keys.set_key_parts(opened, new_set_key) if opened is not None else (None, None)
    cipher = opened.block_cipher if opened is not None else keys.BLOCK_CIPHER_OLD
    pieces = []
    for p in m.pieces:
        name = p.path.rsplit("/", 1)[-1]
        size, checksum, count, _ = _core.rekey_piece(
            src_root / p.path, staging / name, old.blocks, new_blocks, cipher, with_moved=False
        )
        if count != p.block_count:
            raise EncryptionError(f"set {s.id}: piece {p.id} holds {count} blocks, its manifest says {p.block_count}")
        pieces.append(dataclasses.replace(p, size=size, checksum=checksum))
    map_sum = _rekey_map(source, target, m, old, staging, (new_blocks, new_map_key, cipher))
    new_m = dataclasses.replace(m, pieces=tuple(pieces), blockmap=dataclasses.replace(m.blockmap, checksum=map_sum))
    if opened is None:
        manifest.write(staging / store.MANIFEST, new_m)
    else:
        # manifest.write seals with this process's key of the set (keys.seal_manifest).
        opened.set_keys[s.id] = new_set_key
        try:
            manifest.write(staging / store.MANIFEST, new_m)
        finally:
            opened.set_keys.pop(s.id, None)
        # The FULL check and the catalog open the new map under this key.
        assert new_map_key is not None and new_blocks is not None
        _core.blockmap_read_key(new_map_key)
        return new_m, {s.id: new_blocks}
    return new_m, None


def _rekey_map(
    source: BackupManager,
    target: BackupManager,
    m: manifest.Manifest,
    old: _SetKeys,
    staging: Path,
    new: tuple[tuple[bytes, bytes] | None, bytes | None, str],
) -> str:
    src_root = source.repository
    rows: list[tuple[str | os.PathLike[str], tuple[bytes, bytes] | None, str | os.PathLike[str] | None]] = []
    for src in m.sources:
        # `piece` is the piece's file name in its set's directory (manifest.py).
        rel = f"{store.SETS_DIR}/{src.set_id}/{src.piece}"
        copied: Path | None
        if src.set_id == m.id:
            blocks, copied = old.blocks, staging / src.piece
        else:
            blocks = _source_keys(src_root, src.set_id).blocks
            there = target.repository / rel
            # A local target's copy of the piece is read by its index; a remote one's
            # is in the bucket, and its places follow from the source piece.
            copied = there if target.remote is None and there.is_file() else None
        rows.append((src_root / rel, blocks, copied))
    parent = None
    if m.record.parent_id is not None:
        p = target.catalog.get_set(m.record.parent_id)
        name = p.blockmap.rsplit("/", 1)[-1] if p.blockmap else store.BLOCKMAP
        parent = (f"../{p.id}/{name}", bytes.fromhex(p.blockmap_checksum))
    new_blocks, new_map_key, cipher = new
    dst = staging / m.blockmap.path.rsplit("/", 1)[-1]

    def run() -> str:
        dst.unlink(missing_ok=True)
        checksum, count = _core.rekey_map(
            src_root / m.blockmap.path, dst, rows, old.map_key, new_map_key, new_blocks, cipher, parent
        )
        if count != m.blockmap.block_count:
            raise EncryptionError(
                f"set {m.id}: its block map holds {count} records, its manifest says {m.blockmap.block_count}"
            )
        return checksum

    try:
        return run()
    except FileNotFoundError as exc:
        # A remote source's cache holds the set's own pieces; a record naming an earlier
        # set's block needs that set's piece too (rare: the writer names parent records).
        if source.remote is None or exc.errno != errno.ENOENT:
            raise
        log.info("set %s: fetching the pieces of its chain (%s)", m.id, exc.filename)
        source.remote.fetch_chain(source.repo, m, with_pieces=True)
        return run()


def copy_one_rekeyed(source: BackupManager, target: BackupManager, s: BackupSet) -> int:
    """Copies one set whose parent the target has, re-encrypting it (module docstring).
    Returns the bytes written. Nothing of it stays in the target when it fails."""
    from .copy import CopyError, staged_copy

    with source.reading([s.id]):
        if source.remote is not None:
            source.remote.fetch(source.repo, [s.id], with_pieces=True)
        with staged_copy(target, s.id) as st:
            staging = st.staging
            try:
                m, new_keys = rekey_into_staging(source, target, s, staging)
            except EncryptionError as exc:
                raise CopyError(f"set {s.id}: {exc}; nothing of it was published in the target") from None
            written = sum(p.size for p in m.pieces)
            for name in os.listdir(staging):
                if name != locks.STAGING_LOCK:
                    with open(staging / name, "rb") as fh:
                        os.fsync(fh.fileno())
            store.fsync_dir(staging)
            st.publish(target, s, m, new_keys)
    log.info("copied set %s re-encrypted (%d bytes)", s.id, written)
    return written


__all__ = [
    "SourceCredentials",
    "copy_one_rekeyed",
    "needs_rekey",
    "open_staging",
    "refuse_plaintext",
    "rekey_into_staging",
    "unlock_source",
]
