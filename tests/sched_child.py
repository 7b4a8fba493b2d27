"""A scheduler process for the multi-process tests (run as a script, not collected).

usage: sched_child.py REPO MODE ISO_TIME
  race  - one tick at ISO_TIME; writes the set ids it made to REPO/ran-<pid>.txt
  hang  - one tick at ISO_TIME whose backup blocks (the parent SIGKILLs us)
"""

from __future__ import annotations

import os
import sys
import threading
from datetime import datetime
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sched_fakes import FakeClock, FakeManager, install_cron  # noqa: E402

from rustybackup.scheduler import BackupScheduler  # noqa: E402


def main() -> None:
    repo, mode, when = Path(sys.argv[1]), sys.argv[2], datetime.fromisoformat(sys.argv[3])
    install_cron()
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


if __name__ == "__main__":
    main()
