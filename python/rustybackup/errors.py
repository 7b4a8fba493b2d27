"""The exception hierarchy. Pure Python: the Rust core imports these classes lazily,
so this module must never import ``_core``."""

from __future__ import annotations

__all__ = [
    "RustyBackupError",
    "CronError",
    "CatalogError",
    "NoRecoveryPath",
    "VerificationError",
    "ConfigError",
    "BackupError",
    "BackupCancelled",
    "EncryptionError",
    "StorageError",
    "StorageAuthError",
    "BucketNotFound",
    "StorageUnreachable",
    "StorageNotFound",
    "StorageObjectExists",
    "RepositoryLocked",
]


class RustyBackupError(Exception):
    """Base of every error rustybackup raises on purpose."""


class CronError(RustyBackupError, ValueError):
    """An invalid cron expression, time zone or schedule argument."""


class CatalogError(RustyBackupError):
    """The catalog cannot answer or cannot be changed as asked."""


class NoRecoveryPath(CatalogError):
    """No chain of usable backup sets reaches the requested point in time."""


class VerificationError(RustyBackupError):
    """A verification could not run (not: it found corruption; that is a report)."""


class ConfigError(RustyBackupError, ValueError):
    """Invalid configuration: a scheduler file, a job, a window, a database entry or a
    retention policy. Also a ``ValueError`` (as ``CronError``): it is a bad value, and
    callers that caught the ``ValueError`` retention policies used to raise still work."""


class BackupError(RustyBackupError):
    """A backup or restore failed; nothing half-written was registered."""


class BackupCancelled(BackupError):
    """A backup stopped on request or at its max_duration; nothing was registered."""


class EncryptionError(RustyBackupError):
    """An encrypted repository cannot be opened or changed as asked: no key given, a
    wrong passphrase or key file, a key that cannot do this (a write-only host's), a tag
    that does not match (changed bytes), or mixing encrypted and unencrypted data."""


class StorageError(RustyBackupError):
    """The repository's storage (a directory or an S3 bucket) failed an operation; the
    message names the repository, bucket or object key."""


class StorageAuthError(StorageError):
    """The S3 server refused the credentials (wrong key id or secret, or no permission)."""


class BucketNotFound(StorageError):
    """The bucket of an ``s3://`` repository does not exist (it is never created implicitly)."""


class StorageUnreachable(StorageError):
    """The storage server could not be reached, or kept failing, for the whole retry budget."""


class StorageNotFound(StorageError):
    """The object asked for does not exist."""


class StorageObjectExists(StorageError):
    """A create-only write found the object already there (with different content)."""


class RepositoryLocked(StorageError):
    """A live lock of another process forbids this operation; the message names its holder
    (host, pid, purpose, expiry)."""
