"""A scheduler process for the multi-process tests (run as a script, not collected).

usage: sched_child.py REPO MODE ISO_TIME
  race  - one tick at ISO_TIME; writes the set ids it made to REPO/ran-<pid>.txt
  hang  - one tick at ISO_TIME whose backup blocks (the parent SIGKILLs us)
  cli-run - ``rustybackup --repo REPO run`` (real clock) with a fake manager whose
          backups take a second each (the parent sends SIGTERM)
"""

from __future__ import annotations

import os
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rustybackup.scheduler import BackupScheduler  # noqa: E402
from sched_fakes import FakeClock, FakeManager  # noqa: E402


def main() -> None:
    repo, mode, when = Path(sys.argv[1]), sys.argv[2], datetime.fromisoformat(sys.argv[3])
    if mode == "cli-run":
        run_cli(repo)
        return
    clock = FakeClock(when)
    manager = FakeManager(repo, clock=clock, log_path=repo / f"started-{os.getpid()}.txt")
    if mode == "hang":
        manager.hold = threading.Event()
    scheduler = BackupScheduler(manager, clock=clock)
    go = repo / "go"
    while not go.exists():  # both racers start their tick together
        threading.Event().wait(0.005)
    scheduler.execute_due_jobs()
    ran = [c[0] for c in manager.calls]
    (repo / f"ran-{os.getpid()}.txt").write_text("\n".join(ran) + "\n")


class SlowManager(FakeManager):
    def backup(
        self, database: str, backup_type: Any, tags: tuple[str, ...] = (), progress: Any = None, cancel: Any = None
    ) -> Any:
        result = super().backup(database, backup_type, tags, progress, cancel)
        threading.Event().wait(1.0)
        return result


def run_cli(repo: Path) -> None:
    import rustybackup.cli.schedule_cmds as schedule_cmds
    from rustybackup.cli import main as cli_main

    manager = SlowManager(repo, log_path=repo / "started.txt")
    schedule_cmds.open_manager = lambda _repo, _catalog=None: manager  # type: ignore[assignment]
    try:
        cli_main(["--repo", str(repo), "run"])
    finally:
        (repo / "ran.txt").write_text("\n".join(c[0] for c in manager.calls) + "\n")


if __name__ == "__main__":
    main()
