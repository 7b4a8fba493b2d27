"""The files an incremental takes over from its parent, by position in the walk
(dedup.match_parent, engine._read, issue 17): after a file the pass left out they are
still taken over at their shifted positions, and a parent read as entries (not split
in Rust) gives the same match; each restores as it was."""

from __future__ import annotations

import os
from pathlib import Path

from engine_support import SimClock
from privileges import fork_and_run, shared_workdir
from rustybackup import BackupManager
from rustybackup import restore as _restore  # noqa: F401 - imported before a child runs as nobody (below)
from rustybackup.manifest import FileTable


def test_files_after_one_left_out_are_still_taken_over_and_restore() -> None:
    # Root reads any file: the backups run as nobody, in a directory nobody may write
    # (restore is imported above: nobody may not read the interpreter's modules).
    with shared_workdir("rb-retry-reuse-") as (work, src):
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


def test_a_parent_read_as_entries_is_matched_by_position(tmp_path: Path) -> None:
    """A name that is not UTF-8 makes the parent's manifest one the Rust reader does not
    split: its files are entries, matched in Python (dedup.match_parent), with the same
    ranges by position and the same taken-over files."""
    src = tmp_path / "src"
    src.mkdir()
    names = [b"a", b"latin1-\xe9\xff", b"z"]
    for name in names:
        with open(os.path.join(os.fsencode(src), name), "wb") as fh:
            fh.write(name * 5000)
    m = BackupManager(tmp_path / "repo", clock=SimClock())
    m.register_database("u", src)
    m.backup("u", "full")
    with open(os.path.join(os.fsencode(src), b"z"), "ab") as fh:
        fh.write(b"more")
    s = m.backup("u", "incremental")
    assert not isinstance(m.set_manifest(s.id).files, FileTable)
    assert m.summary(s.id).unread == 2
    m.restore("u", tmp_path / "out", backup_set_id=s.id)
    for name in names:
        with open(os.path.join(os.fsencode(tmp_path / "out"), name), "rb") as a:
            with open(os.path.join(os.fsencode(src), name), "rb") as b:
                assert a.read() == b.read()
