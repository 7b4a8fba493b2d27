"""Enumerations shared by every area (engine, catalog, scheduler, verification).

They are ``StrEnum``s so that the lower-case value is what the catalog stores, what the
JSON files hold, and what the Rust core accepts as a plain string.
"""

from __future__ import annotations

from enum import StrEnum


class BackupType(StrEnum):
    """What a backup set holds (RMAN's levels, pgBackRest's types)."""

    FULL = "full"
    INCREMENTAL = "incremental"
    DIFFERENTIAL = "differential"
    ARCHIVE_LOG = "archive_log"


class SetStatus(StrEnum):
    """A set's standing in the catalog; recovery paths use only AVAILABLE sets."""

    AVAILABLE = "available"
    CORRUPT = "corrupt"
    EXPIRED = "expired"


class ExecutionStatus(StrEnum):
    """The life of one scheduled run."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class ChecksumAlgorithm(StrEnum):
    """Digest algorithms; the value is the name the Rust core and hashlib use."""

    MD5 = "md5"
    SHA1 = "sha1"
    SHA256 = "sha256"
    SHA512 = "sha512"
    BLAKE3 = "blake3"


class VerificationType(StrEnum):
    """How deep a verification reads (RMAN VALIDATE, restic check --read-data)."""

    QUICK = "quick"
    STANDARD = "standard"
    FULL = "full"
    RESTORE_TEST = "restore_test"
