"""rustybackup: schedule, perform, catalog, retain and verify backups, with a Rust core."""

from __future__ import annotations

from ._core import __version__ as __version__
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
from .errors import NoRecoveryPath as NoRecoveryPath
from .errors import RustyBackupError as RustyBackupError
from .errors import VerificationError as VerificationError

__all__: list[str] = [
    "__version__",
    "BackupCancelled",
    "BackupType",
    "ChecksumAlgorithm",
    "ExecutionStatus",
    "SetStatus",
    "VerificationType",
    "BackupError",
    "CatalogError",
    "ConfigError",
    "CronError",
    "NoRecoveryPath",
    "RustyBackupError",
    "VerificationError",
]

# Each area below appends its public names to __all__.

# --- cron (issue 2) ---
from .cron import CronField as CronField
from .cron import CronSchedule as CronSchedule
from .cron import daily as daily
from .cron import hourly as hourly
from .cron import monthly as monthly
from .cron import weekly as weekly

__all__ += ["CronField", "CronSchedule", "daily", "hourly", "monthly", "weekly"]

# --- scan (issue 3) ---
from ._core import FileScan as FileScan  # noqa: E402
from ._core import hash_bytes as hash_bytes  # noqa: E402
from ._core import hash_file as hash_file  # noqa: E402
from ._core import hash_files as hash_files  # noqa: E402
from ._core import scan_file as scan_file  # noqa: E402

__all__ += ["FileScan", "hash_bytes", "hash_file", "hash_files", "scan_file"]

# --- repository, catalog, backups (issue 4) ---
from .catalog import BackupCatalog as BackupCatalog  # noqa: E402
from .catalog import BackupPiece as BackupPiece  # noqa: E402
from .catalog import BackupSet as BackupSet  # noqa: E402
from .catalog import DatabaseEntry as DatabaseEntry  # noqa: E402
from .engine import BackupManager as BackupManager  # noqa: E402
from .engine import BackupProgress as BackupProgress  # noqa: E402

__all__ += ["BackupCatalog", "BackupManager", "BackupPiece", "BackupProgress", "BackupSet", "DatabaseEntry"]

# --- verification (issue 5) ---
from .verify import Verifier as Verifier
from .verify_report import CorruptBlock as CorruptBlock
from .verify_report import Coverage as Coverage
from .verify_report import Finding as Finding
from .verify_report import MissingPiece as MissingPiece
from .verify_report import VerificationReport as VerificationReport

__all__ += ["Verifier", "VerificationReport", "CorruptBlock", "Coverage", "Finding", "MissingPiece"]

# --- windows, jobs, scheduler (issue 6) ---
from .jobs import BackupExecution as BackupExecution  # noqa: E402
from .jobs import ScheduledBackup as ScheduledBackup  # noqa: E402
from .jobs import ScheduledVerification as ScheduledVerification  # noqa: E402
from .scheduler import BackupScheduler as BackupScheduler  # noqa: E402
from .windows import BackupWindow as BackupWindow  # noqa: E402
from .windows import business_hours as business_hours  # noqa: E402
from .windows import off_hours as off_hours  # noqa: E402

__all__ += [
    "BackupExecution",
    "BackupScheduler",
    "BackupWindow",
    "ScheduledBackup",
    "ScheduledVerification",
    "business_hours",
    "off_hours",
]

# --- retention (issue 7) ---
from .retention import RetentionDecision as RetentionDecision  # noqa: E402
from .retention import RetentionPolicy as RetentionPolicy  # noqa: E402
from .retention import plan_retention as plan_retention  # noqa: E402

__all__ += ["RetentionDecision", "RetentionPolicy", "plan_retention"]
