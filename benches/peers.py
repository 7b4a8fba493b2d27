"""The backup tools we race (borg, restic from Debian's packages): how to find and run them,
and one repository of each (ours too) as the backup benches drive it. A missing peer
skips its bench with the package to install, never a silent pass."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from rustybackup import BackupManager, VerificationType
from rustybackup.verify import Verifier

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


class Peer:
    """One tool's repository under `base` and its init/backup/restore/verify commands:
    borg and restic through their CLIs (borg's archives numbered s1, s2, ... and made
    from the working directory), any other name is ours through BackupManager."""

    # borg's ``init -e`` mode; a bench that races encrypted repositories changes it.
    borg_encryption = "none"

    def __init__(self, name: str, base: Path) -> None:
        self.name = name
        self.repo = base / f"{name}-repo"
        self.count = 0
        self.manager: BackupManager | None = None
        self.last = ""  # our newest set's id, for verify_full
        self.exe = tool(name) if name in ("borg", "restic") else ""

    def register(self, src: Path) -> BackupManager:
        """Ours: a new repository at `self.repo` with `src` registered as "bench"."""
        manager = BackupManager(self.repo)
        manager.register_database("bench", src)
        return manager

    def init(self, src: Path) -> None:
        shutil.rmtree(self.repo, ignore_errors=True)
        self.count = 0
        if not self.exe:
            self.manager = self.register(src)
        elif self.name == "borg":
            run_quiet(self.exe, "init", "-e", self.borg_encryption, str(self.repo))
        else:
            run_quiet(self.exe, "init", "--repo", str(self.repo))
        # Flush the previous round's repository deletion and writes now, outside the timing.
        os.sync()

    def backup(self, src: Path, kind: str) -> None:
        self.count += 1
        if self.manager is not None:
            self.last = self.manager.backup("bench", kind).id
        elif self.name == "borg":
            run_quiet(self.exe, "create", f"{self.repo}::s{self.count}", ".", "--files-cache=disabled")
        else:
            run_quiet(self.exe, "backup", "--repo", str(self.repo), "--force", str(src))

    def restore(self, target: Path) -> None:
        """The newest backup into the new directory `target` (restic's under the source's
        absolute path inside it)."""
        shutil.rmtree(target, ignore_errors=True)
        if self.manager is not None:
            self.manager.restore("bench", target)
        elif self.name == "borg":
            target.mkdir()
            run_quiet(self.exe, "extract", f"{self.repo}::s{self.count}", cwd=target)
        else:
            run_quiet(self.exe, "restore", "latest", "--repo", str(self.repo), "--target", str(target))

    def verify_full(self) -> None:
        """Every byte read back and checked: our FULL verification of the newest set,
        restic's ``check --read-data``, borg's ``check --verify-data``."""
        if self.manager is not None:
            assert Verifier(self.manager).verify(self.last, VerificationType.FULL).ok
        elif self.name == "borg":
            run_quiet(self.exe, "check", "--verify-data", str(self.repo))
        else:
            run_quiet(self.exe, "check", "--read-data", "--repo", str(self.repo))
