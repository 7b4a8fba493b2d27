"""Helpers for the verification tests: a repository with a small chain, and an
independent reader of the piece layout (docs/FORMAT.md) to say where bits land."""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass
from pathlib import Path

import blake3
import xxhash
from engine_support import SimClock
from rustybackup.catalog import BackupSet
from rustybackup.engine import BackupManager


@dataclass(frozen=True)
class Entry:
    """One piece index entry, decoded here in Python (not by the engine)."""

    file_no: int
    block_index: int
    offset: int
    stored_len: int
    raw_len: int
    flags: int
    digest: bytes


XXH3_TREE_CHUNK = 8 << 20


def xxh3_tree(covered: bytes) -> bytes:
    """The fast checksum of a version-2 piece, written out from docs/FORMAT.md with the
    `xxhash` package: XXH3-128 of each 8 MiB chunk, then XXH3-128 of those digests."""
    chunks = range(0, max(len(covered), 1), XXH3_TREE_CHUNK)
    digests = b"".join(xxhash.xxh3_128(covered[i : i + XXH3_TREE_CHUNK]).digest() for i in chunks)
    return xxhash.xxh3_128(digests).digest()


def trailer_layout(data: bytes) -> tuple[int, int, int | None]:
    """(trailer length, checksum offset, XXH3-128 offset) in the trailer of a piece of
    the version its header names (docs/FORMAT.md)."""
    version = struct.unpack_from("<I", data, 8)[0]
    return (96, 32, None) if version == 1 else (112, 48, 32)


def read_index(path: Path) -> tuple[list[Entry], int]:
    """(entries, index_off) of a piece, parsed straight from the bytes."""
    data = path.read_bytes()
    trailer = data[-trailer_layout(data)[0] :]
    assert trailer[:8] == b"RBTRAIL\0"
    index_off, count = struct.unpack_from("<QQ", trailer, 8)
    dl = data[17]
    out = []
    for i in range(count):
        at = index_off + i * (29 + dl)
        file_no, block_index, offset, stored_len, raw_len, flags = struct.unpack_from("<IQQIIB", data, at)
        out.append(Entry(file_no, block_index, offset, stored_len, raw_len, flags, data[at + 29 : at + 29 + dl]))
    return out, index_off


def rewrite_trailer_checksum(path: Path) -> str:
    """Recomputes a (blake3) piece's trailer checksum (and XXH3-128 tree) after a deliberate
    edit; returns the checksum's hex."""
    data = bytearray(path.read_bytes())
    tlen, sum_at, fast_at = trailer_layout(bytes(data))
    digest = blake3.blake3(bytes(data[:-tlen])).digest()
    data[-tlen + sum_at : -tlen + sum_at + 32] = digest
    if fast_at is not None:
        data[-tlen + fast_at : -tlen + fast_at + 16] = xxh3_tree(bytes(data[:-tlen]))
    path.write_bytes(bytes(data))
    return digest.hex()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Repo:
    """A repository with database `db` (files) and helpers to damage it."""

    def __init__(
        self,
        root: Path,
        *,
        files: int = 4,
        size: int = 40_000,
        block_size: int = 4096,
        compression: str | None = None,
        seed: int = 0,
    ) -> None:
        self.clock = SimClock()
        self.src = root / "src"
        self.src.mkdir(parents=True)
        rnd = random.Random(seed)
        for i in range(files):
            (self.src / f"f{i}.bin").write_bytes(rnd.randbytes(size + i * 1000))
        self.manager = BackupManager(root / "repo", clock=self.clock)
        self.manager.register_database("db", self.src, block_size=block_size, compression=compression)

    def backup(self, kind: str = "full") -> BackupSet:
        self.clock.advance(minutes=1)
        return self.manager.backup("db", kind)

    def touch(self, name: str = "f1.bin", at: int = 0, data: bytes = b"changed!") -> None:
        with open(self.src / name, "r+b") as f:
            f.seek(at)
            f.write(data)

    def piece(self, s: BackupSet) -> Path:
        return self.manager.repository / s.pieces[0].path

    def flip(self, path: Path, offset: int, bit: int = 0) -> None:
        with open(path, "r+b") as f:
            f.seek(offset)
            b = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([b ^ (1 << bit)]))


__all__ = ["Entry", "Repo", "read_index", "rewrite_trailer_checksum", "sha"]
