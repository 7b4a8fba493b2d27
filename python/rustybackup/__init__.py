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

# --- scan (issue 3) ---

# --- repository, catalog, backups (issue 4) ---

# --- verification (issue 5) ---

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
