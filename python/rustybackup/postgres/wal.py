"""WAL names, LSNs and timeline histories, as PostgreSQL spells them
(src/include/access/xlog_internal.h): pure functions, no I/O.

A segment file is named ``TTTTTTTTXXXXXXXXYYYYYYYY``: the timeline, then the segment
number split at ``0x100000000 / wal_segment_size`` segments per "xlogid". A history file
``TTTTTTTT.history`` lists, one line each, the parent timelines and the LSN at which each
one was left (``1\t0/3000000\tno recovery target specified``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import ConfigError

SEGMENT = re.compile(r"[0-9A-F]{24}")
HISTORY = re.compile(r"[0-9A-F]{8}\.history")
# What an archiver is asked to store besides segments: backup history files
# (``<segment>.<offset>.backup``) and the last, partial segment of a timeline a promoted
# standby left (``<segment>.partial``).
BACKUP_FILE = re.compile(r"[0-9A-F]{24}\.[0-9A-F]{8}\.backup")
PARTIAL = re.compile(r"[0-9A-F]{24}\.partial")

MIN_SEGMENT_SIZE = 1 << 20
MAX_SEGMENT_SIZE = 1 << 30


def is_archive_name(name: str) -> bool:
    """Whether `name` is a file PostgreSQL's archiver may hand to archive_command."""
    return any(p.fullmatch(name) for p in (SEGMENT, HISTORY, BACKUP_FILE, PARTIAL))


def check_segment_size(size: int) -> int:
    """A wal_segment_size: a power of two in 1 MiB .. 1 GiB (initdb --wal-segsize)."""
    if not MIN_SEGMENT_SIZE <= size <= MAX_SEGMENT_SIZE or size & (size - 1):
        raise ConfigError(f"wal_segment_size {size} is not a power of two in 1 MiB..1 GiB")
    return size


def parse_lsn(text: str) -> int:
    """``16/B374D848`` -> an integer byte position."""
    m = re.fullmatch(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})", text.strip())
    if m is None:
        raise ConfigError(f"{text!r} is not an LSN (expected hex 'X/Y', e.g. 0/3000028)")
    return (int(m.group(1), 16) << 32) | int(m.group(2), 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def segment_name(timeline: int, segno: int, segment_size: int) -> str:
    """XLogFileName(): the file holding segment `segno` of `timeline`."""
    per_id = 0x1_0000_0000 // segment_size
    if not 0 <= segno < (1 << 64) // segment_size:
        raise ConfigError(f"segment number {segno} is past the end of the 64-bit WAL space")
    return f"{timeline:08X}{segno // per_id:08X}{segno % per_id:08X}"


def parse_segment(name: str, segment_size: int) -> tuple[int, int]:
    """XLogFromFileName(): (timeline, segment number) of a segment file name."""
    if not SEGMENT.fullmatch(name):
        raise ConfigError(f"{name!r} is not a WAL segment name (24 hex digits)")
    per_id = 0x1_0000_0000 // segment_size
    return int(name[:8], 16), int(name[8:16], 16) * per_id + int(name[16:], 16)


def history_name(timeline: int) -> str:
    return f"{timeline:08X}.history"


@dataclass(frozen=True)
class TimelineSpan:
    """One timeline of a history: the WAL in [begin, end) of `timeline` (end None: open)."""

    timeline: int
    begin: int
    end: int | None


def parse_history(timeline: int, text: str, where: str) -> list[TimelineSpan]:
    """The spans of `timeline`'s history file (readTimeLineHistory()), oldest first,
    ending with `timeline` itself, open-ended. Comment and blank lines are skipped, as
    PostgreSQL does; anything else malformed is an error naming the line."""
    spans: list[TimelineSpan] = []
    begin = 0
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.split(None, 2)
        try:
            tli = int(fields[0])
            switch = parse_lsn(fields[1])
        except (IndexError, ValueError, ConfigError):
            raise ConfigError(
                f"{where}: line {n}: expected 'timeline<TAB>switch LSN<TAB>reason', got {line!r}"
            ) from None
        if spans and tli <= spans[-1].timeline or tli >= timeline or switch < begin:
            raise ConfigError(f"{where}: line {n}: timeline {tli} at {fields[1]} is out of order")
        spans.append(TimelineSpan(tli, begin, switch))
        begin = switch
    spans.append(TimelineSpan(timeline, begin, None))
    return spans


def segments_between(spans: list[TimelineSpan], start: int, stop: int, segment_size: int) -> Iterator[str]:
    """The segment files recovery reads for WAL positions start..stop (inclusive) along
    the history `spans`: each segment from the newest timeline that had begun by it, as
    XLogFileReadAnyTLI() picks them (the segment holding a switch point comes from the
    new timeline, which copied its beginning)."""
    first, last = start // segment_size, stop // segment_size
    for segno in range(first, last + 1):
        owner = spans[0].timeline
        for span in spans:
            if span.begin // segment_size <= segno:
                owner = span.timeline
        yield segment_name(owner, segno, segment_size)
