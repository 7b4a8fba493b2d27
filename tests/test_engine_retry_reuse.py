"""An incremental whose pass leaves out a file it cannot read starts over without it; the
unchanged files after it keep being taken over from the parent at their new positions
(engine._read shifts them, issue 17) and restore as they were."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from engine_support import SimClock
from privileges import fork_and_run
from rustybackup import BackupManager

# Imported here: the children run as nobody, who may not read the interpreter's modules.
from rustybackup import restore as _restore  # noqa: F401


def test_files_after_one_left_out_are_still_taken_over_and_restore() -> None:
    # Root reads any file: the backups run as nobody, in a directory nobody may write.
    work = Path(tempfile.mkdtemp(prefix="rb-retry-reuse-"))
    try:
        work.chmod(0o777)
        src = work / "src"
        src.mkdir()
        src.chmod(0o777)
        # "0-secret" sorts first: every unchanged file comes after it in the pass.
        names = ["0-secret", *(f"f{i}" for i in range(9))]
        for name in names:
            (src / name).write_bytes(name.encode() * 300)
            os.chmod(src / name, 0o666)

        def manager() -> BackupManager:
            m = BackupManager(work / "repo", clock=SimClock())
            m.register_database("u", src)
            return m

        def full() -> str:
            return manager().backup("u", "full").backup_type.value

        def incremental() -> str:
            m = manager()
            s = m.backup("u", "incremental")
            summary = m.summary(s.id)
            out = work / "out"
            m.restore("u", out, backup_set_id=s.id)
            restored = sorted(p.name for p in out.iterdir())
            same = all((out / n).read_bytes() == (src / n).read_bytes() for n in restored)
            skipped = [(e.path, e.reason) for e in summary.skipped]
            return f"{skipped} unread={summary.unread} files={s.file_count} {restored} {same}"

        nobody = os.geteuid() == 0
        assert fork_and_run(full, drop_to_nobody=nobody) == "full"
        # Changed (so the incremental must read it) and no longer readable.
        (src / "0-secret").write_bytes(b"changed")
        os.chmod(src / "0-secret", 0)
        out = fork_and_run(incremental, drop_to_nobody=nobody)
        expected = [f"f{i}" for i in range(9)]
        assert out == f"[('0-secret', 'cannot be read (Permission denied)')] unread=9 files=9 {expected} True"
    finally:
        shutil.rmtree(work)
