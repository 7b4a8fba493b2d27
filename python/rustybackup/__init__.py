"""rustybackup: schedule, perform, catalog, retain and verify backups, with a Rust core.

Importing the package loads only the native module, the enums and the errors. Every
other public name is imported the first time it is used (PEP 562 ``__getattr__``):
``rustybackup archive-push`` runs once per WAL segment as PostgreSQL's archive_command,
and must not pay for the scheduler, holidays, notifications or metrics on each call.
``from rustybackup import X`` works for every name in ``__all__`` exactly as before.
"""

from __future__ import annotations

import importlib

from ._core import FileScan as FileScan
from ._core import __version__ as __version__
from ._core import hash_bytes as hash_bytes
from ._core import hash_file as hash_file
from ._core import hash_files as hash_files
from ._core import scan_file as scan_file
from .enums import BackupType as BackupType
from .enums import ChecksumAlgorithm as ChecksumAlgorithm
from .enums import ExecutionStatus as ExecutionStatus
from .enums import SetStatus as SetStatus
from .enums import VerificationType as VerificationType
from .errors import BackupCancelled as BackupCancelled
from .errors import BackupError as BackupError
from .errors import CatalogError as CatalogError
from .errors import ConfigError as ConfigError
from .errors import CronError as CronError
from .errors import EncryptionError as EncryptionError
from .errors import NoRecoveryPath as NoRecoveryPath
from .errors import RustyBackupError as RustyBackupError
from .errors import VerificationError as VerificationError

# Not typing's: importing typing (re, collections, contextlib) is a third of what an
# archive-push answered from the spool costs. Type checkers read any TYPE_CHECKING as true.
TYPE_CHECKING = False

if TYPE_CHECKING:
    # What type checkers see; at run time `__getattr__` below imports these on first use.
    from typing import Any

    from .catalog import BackupCatalog as BackupCatalog
    from .catalog import BackupPiece as BackupPiece
    from .catalog import BackupSet as BackupSet
    from .catalog import DatabaseEntry as DatabaseEntry
    from .catalog_shared import SharedCatalog as SharedCatalog
    from .claims import ClaimLost as ClaimLost
    from .copy import CopyError as CopyError
    from .copy import CopyReport as CopyReport
    from .copy import copy_sets as copy_sets
    from .copy_reencrypt import SourceCredentials as SourceCredentials
    from .cron import CronField as CronField
    from .cron import CronSchedule as CronSchedule
    from .cron import daily as daily
    from .cron import hourly as hourly
    from .cron import monthly as monthly
    from .cron import weekly as weekly
    from .engine import BackupManager as BackupManager
    from .engine import BackupProgress as BackupProgress
    from .jobs import BackupExecution as BackupExecution
    from .jobs import ScheduledBackup as ScheduledBackup
    from .jobs import ScheduledVerification as ScheduledVerification
    from .repo_url import RepoUrl as RepoUrl
    from .restore import NotRestored as NotRestored
    from .restore import RestoreOptions as RestoreOptions
    from .restore import RestoreReport as RestoreReport
    from .restore import RestoreResult as RestoreResult
    from .retention import RetentionDecision as RetentionDecision
    from .retention import RetentionPolicy as RetentionPolicy
    from .retention import plan_retention as plan_retention
    from .scheduler import BackupScheduler as BackupScheduler
    from .upload_limits import UploadSchedule as UploadSchedule
    from .verify import Verifier as Verifier
    from .verify_report import CorruptBlock as CorruptBlock
    from .verify_report import Coverage as Coverage
    from .verify_report import Finding as Finding
    from .verify_report import MissingPiece as MissingPiece
    from .verify_report import VerificationReport as VerificationReport
    from .windows import BackupWindow as BackupWindow
    from .windows import business_hours as business_hours
    from .windows import off_hours as off_hours

# Public name -> the module that defines it, for the names imported on first use.
_LAZY: dict[str, str] = {
    # cron (issue 2)
    "CronField": "cron",
    "CronSchedule": "cron",
    "daily": "cron",
    "hourly": "cron",
    "monthly": "cron",
    "weekly": "cron",
    # repository, catalog, backups (issue 4)
    "BackupCatalog": "catalog",
    "BackupPiece": "catalog",
    "BackupSet": "catalog",
    "DatabaseEntry": "catalog",
    "BackupManager": "engine",
    "BackupProgress": "engine",
    # verification (issue 5)
    "Verifier": "verify",
    "VerificationReport": "verify_report",
    "CorruptBlock": "verify_report",
    "Coverage": "verify_report",
    "Finding": "verify_report",
    "MissingPiece": "verify_report",
    # windows, jobs, scheduler (issue 6)
    "BackupExecution": "jobs",
    "ScheduledBackup": "jobs",
    "ScheduledVerification": "jobs",
    "BackupScheduler": "scheduler",
    "BackupWindow": "windows",
    "business_hours": "windows",
    "off_hours": "windows",
    # retention (issue 7)
    "RetentionDecision": "retention",
    "RetentionPolicy": "retention",
    "plan_retention": "retention",
    # file trees: restore options and what a restore reports (issue 17)
    "NotRestored": "restore",
    "RestoreOptions": "restore",
    "RestoreReport": "restore",
    "RestoreResult": "restore",
    # a shared catalog and nodes (issue 18)
    "SharedCatalog": "catalog_shared",
    "ClaimLost": "claims",
    # remote repositories, copy, mirrors, upload windows (issue 15)
    "CopyError": "copy",
    "CopyReport": "copy",
    "copy_sets": "copy",
    "SourceCredentials": "copy_reencrypt",
    "RepoUrl": "repo_url",
    "UploadSchedule": "upload_limits",
}

# Everything public, eager or imported on first use (`_LAZY`).
__all__: list[str] = [
    "BackupCancelled",
    "EncryptionError",
    "BackupCatalog",
    "BackupError",
    "BackupExecution",
    "BackupManager",
    "BackupPiece",
    "BackupProgress",
    "BackupScheduler",
    "BackupSet",
    "BackupType",
    "BackupWindow",
    "CatalogError",
    "ChecksumAlgorithm",
    "ClaimLost",
    "ConfigError",
    "CorruptBlock",
    "Coverage",
    "CronError",
    "CronField",
    "CronSchedule",
    "DatabaseEntry",
    "ExecutionStatus",
    "FileScan",
    "Finding",
    "MissingPiece",
    "NoRecoveryPath",
    "NotRestored",
    "RetentionDecision",
    "RetentionPolicy",
    "RestoreOptions",
    "RestoreReport",
    "RestoreResult",
    "RustyBackupError",
    "ScheduledBackup",
    "ScheduledVerification",
    "SetStatus",
    "SharedCatalog",
    "VerificationError",
    "VerificationReport",
    "VerificationType",
    "Verifier",
    "__version__",
    "business_hours",
    "daily",
    "hash_bytes",
    "hash_file",
    "hash_files",
    "hourly",
    "monthly",
    "off_hours",
    "plan_retention",
    "scan_file",
    "copy_sets",
    "CopyError",
    "CopyReport",
    "SourceCredentials",
    "RepoUrl",
    "UploadSchedule",
    "weekly",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    # Cached as a module global: the next look-up does not come back here.
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
