"""The spool of a capturer that stopped without registering it (killed, or its last
registration failed), read back so the next step registers it (capture.CaptureStep).

A spool segment is a frame file (a WAL header, then frames `first_frame..`) and its
`.times` file (a JSON line describing the segment, then ``frame seen_us`` per commit),
both written by capture_spool.Spool: frames first, then their time lines. What is
trusted is what both agree on: frames that continue the checksum chain from the
segment's seed, through the last commit that has a time line. Anything after that is
cut, with a log line naming the file and the offset: a torn tail (a frame the kill cut
short, or that a crash left unwritten), frames copied whose time line was never
written (their commits are still in the database; if the WAL still holds them the next
step copies them again), or a time line cut short.

Segments end where the next begins (a set boundary, or a WAL restart the segment's
`follows` names), so a segment cut short leaves the ones after it without the frames
they continue from: those are dropped with an error (only damage does that; a kill
only ever tears the last one). Segments that the newest registered set already holds
(the kill came after the registration, before the spool files were removed) are
dropped too, so nothing is registered twice.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _core
from .capture_spool import TIMES, Segment, times_path
from .errors import BackupError
from .sqlite_wal import FRAME_HEADER_LEN, HEADER_LEN, WalCapture

log = logging.getLogger(__name__)

CHUNK_FRAMES = 1024
"""Frames checked per read: memory stays bounded whatever a segment's length."""


@dataclass(frozen=True)
class _Described:
    generation: int
    salt: tuple[int, int]
    page_size: int
    first_frame: int
    seed: tuple[int, int]
    follows: tuple[int, int, int] | None
    note: str


def _pair(v: Any, what: str) -> tuple[int, int]:
    if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v)):
        raise ValueError(f"{what}: expected two integers")
    return (v[0], v[1])


def _describe(line: bytes) -> _Described:
    doc = json.loads(line)
    if not isinstance(doc, dict):
        raise ValueError("expected an object")
    follows = doc.get("follows")
    if follows is not None and not (
        isinstance(follows, list) and len(follows) == 3 and all(isinstance(x, int) for x in follows)
    ):
        raise ValueError("follows: expected three integers")
    ints = {k: doc.get(k) for k in ("generation", "page_size", "first_frame")}
    for k, v in ints.items():
        if not isinstance(v, int) or v < 0:
            raise ValueError(f"{k}: expected a non-negative integer")
    note = doc.get("note", "")
    if not isinstance(note, str):
        raise ValueError("note: expected a string")
    return _Described(
        generation=int(doc["generation"]),
        salt=_pair(doc.get("salt"), "salt"),
        page_size=int(doc["page_size"]),
        first_frame=int(doc["first_frame"]),
        seed=_pair(doc.get("seed"), "seed"),
        follows=None if follows is None else (follows[0], follows[1], follows[2]),
        note=note,
    )


def _read_times(path: Path) -> tuple[_Described, list[tuple[int, int]]] | None:
    """The description and the commit lines, cutting a torn or damaged line (and what
    follows it) from the file; None when even the description is not whole."""
    data = path.read_bytes()
    end = data.find(b"\n")
    try:
        if end < 0:
            raise ValueError("the line is not complete")
        described = _describe(data[:end])
    except ValueError as exc:
        log.warning("%s: the segment's description at offset 0 is not readable (%s)", path, exc)
        return None
    commits: list[tuple[int, int]] = []
    at = end + 1
    while at < len(data):
        nl = data.find(b"\n", at)
        try:
            if nl < 0:
                raise ValueError("the line is not complete")
            frame_s, seen_s = data[at:nl].split(b" ")
            frame, seen = int(frame_s), int(seen_s)
            if frame <= (commits[-1][0] if commits else described.first_frame - 1):
                raise ValueError(f"frame {frame} does not follow the one before")
        except ValueError as exc:
            log.warning("%s: commit time line at offset %d cut (%s)", path, at, exc)
            _cut(path, at)
            break
        commits.append((frame, seen))
        at = nl + 1
    return described, commits


def _cut(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(offset)
        os.fdatasync(fh.fileno())


def _check_frames(path: Path, d: _Described, through: int) -> tuple[int, list[int], tuple[int, int]]:
    """Frames of `path` from `d.first_frame` through frame `through` that continue the
    checksum chain: (the last commit frame of that run, its commit frames, the checksum
    through the last commit). Reads CHUNK_FRAMES frames at a time."""
    frame_len = FRAME_HEADER_LEN + d.page_size
    commits: list[int] = []
    seed: tuple[int, int] | None = None if d.first_frame == 1 else d.seed
    checksum = d.seed
    last = d.first_frame - 1
    with open(path, "rb") as fh:
        head = fh.read(HEADER_LEN)
        if len(head) < HEADER_LEN:
            return last, commits, checksum
        at, n = d.first_frame, CHUNK_FRAMES
        while at <= through:
            want = min(n, through - at + 1)
            fh.seek(HEADER_LEN + (at - d.first_frame) * frame_len)
            body = fh.read(want * frame_len)
            try:
                scan = _core.wal_scan(head + body, at, seed)
            except (BackupError, ValueError) as exc:
                log.warning("%s: the header does not parse (%s)", path, exc)
                break
            if scan.salt != d.salt or scan.page_size != d.page_size:
                log.warning("%s: the header's salts or page size differ from the segment's description", path)
                break
            if scan.last_commit is not None:
                commits.extend(scan.commits)
                last, checksum = scan.last_commit, scan.checksum
                seed = checksum
                at = last + 1
            elif want < n:
                break  # through `through` without a commit
            else:
                n *= 2  # one transaction longer than the read: read more at once
            if scan.stop_kind != "end" or len(body) < want * frame_len:
                break
        return last, commits, checksum


def _recover_one(path: Path) -> Segment | None:
    """One segment as far as its frames and times agree, its files cut to that."""
    times = times_path(path)
    if not times.exists():
        log.warning("%s: frames without their commit times (the capturer stopped before writing them): removed", path)
        path.unlink()
        return None
    got = _read_times(times)
    if got is None:
        _remove(path)
        return None
    d, commits = got
    frame_len = FRAME_HEADER_LEN + d.page_size
    through = commits[-1][0] if commits else d.first_frame - 1
    last, frames, checksum = _check_frames(path, d, through)
    # The agreeing prefix: time lines for exactly the commit frames the chain holds.
    agree = 0
    for (f, _), g in zip(commits, frames, strict=False):
        if f != g:
            break
        agree += 1
    kept = commits[:agree]
    if not kept:
        log.warning("%s: no commit both copied and timed: removed", path)
        _remove(path)
        return None
    end_frame = kept[-1][0]
    if end_frame != last:
        _, _, checksum = _check_frames(path, d, end_frame)
    size = path.stat().st_size
    good = HEADER_LEN + (end_frame - d.first_frame + 1) * frame_len
    if size > good:
        log.warning(
            "%s: cut at offset %d (frame %d, after the last commit with its time; %d bytes followed: a torn tail "
            "or frames whose time was never written)",
            path,
            good,
            end_frame + 1,
            size - good,
        )
        _cut(path, good)
    if len(kept) < len(commits):
        log.warning(
            "%s: %d commit times name frames the spool does not hold (from frame %d): cut",
            times,
            len(commits) - len(kept),
            commits[len(kept)][0],
        )
        _rewrite_times(times, kept)
    return Segment(
        path,
        d.generation,
        d.salt,
        d.page_size,
        d.first_frame,
        d.seed,
        end_frame,
        checksum,
        commits=list(kept),
        follows=d.follows,
        note=d.note,
    )


def _rewrite_times(times: Path, kept: list[tuple[int, int]]) -> None:
    data = times.read_bytes()
    head = data[: data.index(b"\n") + 1]
    body = "".join(f"{f} {s}\n" for f, s in kept).encode()
    with open(times, "r+b") as fh:
        fh.truncate(len(head))
        fh.seek(len(head))
        fh.write(body)
        os.fdatasync(fh.fileno())


def _continues(prev: Segment | WalCapture, seg: Segment) -> bool:
    if prev.salt is None:
        return False
    if seg.generation == prev.generation:
        return seg.first_frame == prev.last_frame + 1 and seg.seed == prev.checksum and seg.salt == prev.salt
    return (
        seg.generation == prev.generation + 1
        and seg.first_frame == 1
        and seg.follows
        == (
            prev.salt[0],
            prev.salt[1],
            prev.last_frame,
        )
    )


def recover(directory: Path, newest: WalCapture | None) -> list[Segment]:
    """The segments of the spool in `directory` that no registered set holds yet (the
    newest registered capture record is `newest`), checked and cut as the module says;
    every other file of the spool is removed. Call only under the capture lock."""
    if not directory.is_dir():
        return []
    numbered = sorted((p for p in directory.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    for p in directory.iterdir():
        if not p.name.isdigit() and not (p.name.endswith(TIMES) and p.name[: -len(TIMES)].isdigit()):
            log.warning("%s: not a spool file: removed", p)
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        elif p.name.endswith(TIMES) and not (directory / p.name[: -len(TIMES)]).exists():
            log.warning("%s: commit times without their frames: removed", p)
            p.unlink()
    out: list[Segment] = []
    before: Segment | WalCapture | None = newest
    for path in numbered:
        seg = _recover_one(path)
        if seg is None:
            continue
        if newest is not None and (seg.generation, seg.last_frame) <= (newest.generation, newest.last_frame):
            log.info(
                "%s: already registered (generation %d through frame %d): removed", path, seg.generation, seg.last_frame
            )
            _remove(path)
            continue
        if before is not None and not _continues(before, seg):
            # Only damage does this (a kill tears the last segment only): the frames it
            # continues from are gone, so it cannot join the chain.
            log.error(
                "%s: dropped: it does not continue generation %d frame %d (a segment before it was cut short)",
                path,
                before.generation,
                before.last_frame,
            )
            _remove(path)
            continue
        out.append(seg)
        before = seg
    if out:
        log.warning("%s: recovered %d spooled segments a capturer did not register", directory, len(out))
    return out


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    times_path(path).unlink(missing_ok=True)


__all__ = ["recover"]
