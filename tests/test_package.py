"""The package imports, exposes its version and its error hierarchy."""

from __future__ import annotations

import pickle
import subprocess
import sys

import rustybackup
from rustybackup import errors


def test_version_matches_native_module() -> None:
    from rustybackup import _core

    assert rustybackup.__version__ == _core.__version__


def test_cron_error_is_a_value_error() -> None:
    assert issubclass(errors.CronError, ValueError)
    assert issubclass(errors.CronError, errors.RustyBackupError)
    assert issubclass(errors.NoRecoveryPath, errors.CatalogError)


def test_errors_pickle() -> None:
    exc = errors.NoRecoveryPath("nothing reaches 2026-01-01")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is errors.NoRecoveryPath
    assert str(back) == "nothing reaches 2026-01-01"


def test_python_dash_m_runs_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rustybackup", "--help"], capture_output=True, text=True, check=True
    )
    assert "rustybackup" in out.stdout


def test_every_public_name_exists() -> None:
    for name in rustybackup.__all__:
        assert hasattr(rustybackup, name), name
