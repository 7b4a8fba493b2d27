"""The backup tools we race (borg, restic from Debian's packages): how to find and run them.
A missing peer skips its bench with the package to install, never a silent pass."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

PEER_ENV = {
    **os.environ,
    "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
    "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
    "RESTIC_PASSWORD": "bench",
}


def tool(name: str) -> str:
    """The peer's executable, or a skip naming the Debian package (benches/setup.sh installs it)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package '{name}{'backup' if name == 'borg' else ''}')")
    return path


def run_quiet(*args: str, cwd: Path | None = None) -> None:
    """Runs a peer command with the bench environment, failing loudly on a non-zero exit."""
    subprocess.run(args, check=True, env=PEER_ENV, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
