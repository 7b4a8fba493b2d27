"""The package imports, exposes its version and its error hierarchy."""

from __future__ import annotations

import importlib.metadata
import pickle
import subprocess
import sys
import tomllib
from pathlib import Path

import rustybackup
from rustybackup import errors

ROOT = Path(__file__).resolve().parent.parent


def test_version_is_the_crate_version_and_the_installed_one() -> None:
    """``__version__`` comes from the native module; check it against the two places a
    release sets it independently: Cargo.toml (maturin's dynamic version) and the
    installed distribution's metadata."""
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
    assert rustybackup.__version__ == cargo
    assert importlib.metadata.version("rustybackup") == cargo


def test_every_error_is_a_rustybackup_error() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.RustyBackupError), name
    # ConfigError is also a ValueError, so callers of the old bare ValueError still work.
    assert issubclass(errors.ConfigError, ValueError)


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
    out = subprocess.run([sys.executable, "-m", "rustybackup", "--help"], capture_output=True, text=True, check=True)
    assert "rustybackup" in out.stdout


def test_every_public_name_exists() -> None:
    for name in rustybackup.__all__:
        assert hasattr(rustybackup, name), name
