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

# --- retention (issue 7) ---
