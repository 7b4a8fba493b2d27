"""Resumable backups (issue 19): a file-tree backup cut short leaves its finished files
staged, and the next backup of the same job adopts them instead of reading them again.

The cut is made by a progress hook (the same path `max_duration` takes: a cancel flag
the engine sees at its next report) or by SIGKILL of a child process that stops itself
after a known report; nothing depends on timing. What a resumed run read is counted by
the engine (`bytes_read`), and its set is compared with an uninterrupted backup of the
same tree in another repository: the manifests' file records, the piece and block-map
checksums (the bytes are identical), a restore byte for byte and FULL verification."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keys_support import cheap_argon2, forget_keys
from rustybackup import BackupManager
from rustybackup.engine import BackupProgress
from rustybackup.enums import BackupType
from rustybackup.errors import BackupCancelled
from rustybackup.verify import Verifier

MiB = 1 << 20


def make_tree(root: Path, sizes: list[int], seed: int = 0) -> Path:
    """Files f00.. of the given sizes, half repeated bytes (zstd shrinks them), half
    pseudo-random."""
    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(sizes):
        block = bytes((i * 31 + seed + k * 7) % 251 for k in range(4096)) + os.urandom(4096)
        data = (block * (n // len(block) + 1))[:n]
        (src / f"f{i:02}").write_bytes(data)
    return src


class CutAt:
    """A cancel flag the progress hook raises at its `n`-th report: what max_duration's
    timer does, at a known point instead of a known time."""

    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0
        self.flag = threading.Event()

    def progress(self, p: BackupProgress) -> None:
        self.seen += 1
        if self.seen >= self.n:
            self.flag.set()


def manager(
    repo: Path, src: Path, *, compression: str | None = "zstd", clock: Callable[[], datetime] | None = None
) -> BackupManager:
    m = BackupManager(repo, clock=clock)
    m.register_database("tree", src, compression=compression)
    m.checkpoint_every = 0  # commit after every file: each cut keeps all it finished
    return m


def cut(m: BackupManager, btype: str, at: int) -> str:
    c = CutAt(at)
    with pytest.raises(BackupCancelled) as err:
        m.backup("tree", btype, progress=c.progress, cancel=c.flag)
    return str(err.value)


def records(m: BackupManager, set_id: str) -> list[tuple[str, int, str, int, int]]:
    man = m._manifest(m.catalog.get_set(set_id))
    return [(f.path, f.size, f.digest, f.first_block, f.block_count) for f in man.files]


def same_as_uninterrupted(tmp: Path, m: BackupManager, set_id: str, src: Path) -> None:
    """The set equals a fresh backup of `src` in another repository, restores byte for
    byte and passes FULL verification."""
    ref = manager(tmp / f"ref-{set_id}", src, compression=m.catalog.get_database("tree").compression)
    fresh = ref.backup("tree", "full")
    got = m.catalog.get_set(set_id)
    assert records(m, set_id) == records(ref, fresh.id)
    assert [p.checksum for p in got.pieces] == [p.checksum for p in fresh.pieces]
    assert got.blockmap_checksum == fresh.blockmap_checksum
    out = tmp / f"restored-{set_id}"
    m.restore("tree", out, backup_set_id=set_id)
    for f in src.iterdir():
        assert (out / f.name).read_bytes() == f.read_bytes(), f.name
    report = Verifier(m).verify(set_id, "full")
    assert report.ok, report.findings
    # Nothing of the resume machinery is published.
    assert sorted(p.name for p in (m.repository / "sets" / set_id).iterdir()) == [
        "blockmap",
        "data.piece",
        "manifest.json",
    ]


def change_all(src: Path) -> None:
    """One byte of every file changed, so that the next backup reads them all."""
    for f in src.iterdir():
        data = bytearray(f.read_bytes())
        data[0] ^= 0xFF
        f.write_bytes(bytes(data))


def staging_dirs(m: BackupManager) -> list[Path]:
    return sorted((m.repository / "staging").iterdir())


def test_a_backup_cut_by_max_duration_resumes_reading_only_the_rest(tmp_path: Path) -> None:
    src = make_tree(tmp_path, [3 * MiB] * 12 + [5, 0, 70_000])
    total = sum(f.stat().st_size for f in src.iterdir())
    m = manager(tmp_path / "repo", src)
    message = cut(m, "full", 2)  # reports: the first chunk, then every 8 MiB
    assert "stay staged for the next run" in message
    (left,) = staging_dirs(m)
    assert (left / "resume.json").is_file()
    done = m.backup("tree", "full")
    assert done.id == left.name  # the cut backup goes on under its own id
    resumed = m.resumed[done.id]
    assert resumed.files > 0 and resumed.bytes > 0
    assert done.bytes_read == total - resumed.bytes < total
    assert staging_dirs(m) == []
    same_as_uninterrupted(tmp_path, m, done.id, src)


def test_an_incremental_resumes_with_the_same_parent(tmp_path: Path) -> None:
    src = make_tree(tmp_path, [2 * MiB] * 12)
    m = manager(tmp_path / "repo", src)
    full = m.backup("tree", "full")
    for f in sorted(src.iterdir())[::2]:
        data = bytearray(f.read_bytes())
        data[100] ^= 0xFF
        f.write_bytes(bytes(data))
    # The same incremental, uninterrupted, in a copy of the repository before the cut.
    shutil.copytree(tmp_path / "repo", tmp_path / "ref")
    cut(m, "incremental", 2)
    inc = m.backup("tree", "incremental")
    assert inc.parent_id == full.id
    assert m.resumed[inc.id].files > 0
    ref = manager(tmp_path / "ref", src)
    ref_inc = ref.backup("tree", "incremental")
    assert records(m, inc.id) == records(ref, ref_inc.id)
    assert [p.checksum for p in inc.pieces] == [p.checksum for p in ref_inc.pieces]
    assert inc.blockmap_checksum == ref_inc.blockmap_checksum
    out = tmp_path / "out"
    m.restore("tree", out, backup_set_id=inc.id)
    for f in src.iterdir():
        assert (out / f.name).read_bytes() == f.read_bytes()
    assert Verifier(m).verify(inc.id, "full").ok


CHILD = textwrap.dedent(
    """
    import sys, threading
    from rustybackup import BackupManager
    m = BackupManager(sys.argv[1])
    m.checkpoint_every = 0
    seen = 0
    def progress(p):
        global seen
        seen += 1
        if seen == int(sys.argv[2]):
            print("stopped", flush=True)
            threading.Event().wait()  # until SIGKILL
    m.backup("tree", sys.argv[3] if len(sys.argv) > 3 else "full", progress=progress)
    print("finished", flush=True)
    """
)


def test_sigkill_mid_backup_then_resume(tmp_path: Path) -> None:
    src = make_tree(tmp_path, [3 * MiB] * 12)
    total = sum(f.stat().st_size for f in src.iterdir())
    repo = tmp_path / "repo"
    manager(repo, src)
    with subprocess.Popen([sys.executable, "-c", CHILD, str(repo), "2"], stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "stopped"
        child.send_signal(signal.SIGKILL)
        child.wait()
    m = manager(repo, src)
    done = m.backup("tree", "full")
    resumed = m.resumed[done.id]
    assert resumed.files > 0
    assert done.bytes_read == total - resumed.bytes
    same_as_uninterrupted(tmp_path, m, done.id, src)


def test_a_file_changed_between_cut_and_resume_is_read_again(tmp_path: Path) -> None:
    src = make_tree(tmp_path, [2 * MiB] * 10)
    m = manager(tmp_path / "repo", src)
    cut(m, "full", 2)
    changed = src / "f01"
    data = bytearray(changed.read_bytes())
    data[5] ^= 1
    st = changed.stat()
    changed.write_bytes(bytes(data))
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: ctime tells
    done = m.backup("tree", "full")
    resumed = m.resumed[done.id]
    assert resumed.files == 1  # f00 only: f01 and everything after it are read again
    assert resumed.note is not None and "f01 changed since the cut" in resumed.note
    same_as_uninterrupted(tmp_path, m, done.id, src)


def test_a_damaged_staged_piece_is_detected_and_read_again(tmp_path: Path) -> None:
    from rustybackup import _core

    src = make_tree(tmp_path, [2 * MiB] * 10)
    m = manager(tmp_path / "repo", src)
    cut(m, "full", 2)
    (left,) = staging_dirs(m)
    files, _, piece_end = _core.checkpoint_summary(left / "checkpoint")
    assert files >= 2
    piece = left / "data.piece"
    with open(piece, "r+b") as fh:  # the last byte of the last finished file's blocks
        fh.seek(piece_end - 1)
        b = fh.read(1)
        fh.seek(piece_end - 1)
        fh.write(bytes([b[0] ^ 0x20]))
    done = m.backup("tree", "full")
    resumed = m.resumed[done.id]
    assert resumed.files == files - 1
    assert resumed.note is not None and "damaged" in resumed.note
    same_as_uninterrupted(tmp_path, m, done.id, src)


def test_a_cut_before_any_file_finished_leaves_nothing(tmp_path: Path) -> None:
    src = make_tree(tmp_path, [20 * MiB])
    m = manager(tmp_path / "repo", src)
    message = cut(m, "full", 1)
    assert "staged" not in message
    assert staging_dirs(m) == []


# --- stale or mismatched staging: discarded, and the log says why -----------------------


def discarded(caplog: pytest.LogCaptureFixture, m: BackupManager, btype: str, why: str) -> None:
    (left,) = staging_dirs(m)
    with caplog.at_level(logging.INFO, logger="rustybackup"):
        done = m.backup("tree", btype)
    assert done.id != left.name and done.id not in m.resumed
    assert not left.exists()
    assert any(why in r.getMessage() and left.name in r.getMessage() for r in caplog.records), [
        r.getMessage() for r in caplog.records
    ]


def test_another_backup_type_discards_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = make_tree(tmp_path, [2 * MiB] * 6)
    m = manager(tmp_path / "repo", src)
    m.backup("tree", "full")
    change_all(src)
    cut(m, "incremental", 2)
    discarded(caplog, m, "differential", "it was a INCREMENTAL backup, this one is a DIFFERENTIAL")


def test_a_parent_gone_discards_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = make_tree(tmp_path, [2 * MiB] * 6)
    m = manager(tmp_path / "repo", src)
    full = m.backup("tree", "full")
    change_all(src)
    cut(m, "incremental", 2)
    m.delete(full.id)
    discarded(caplog, m, "incremental", f"its parent set {full.id} is gone")


def test_another_parent_discards_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = make_tree(tmp_path, [2 * MiB] * 6)
    m = manager(tmp_path / "repo", src)
    first = m.backup("tree", "full")
    change_all(src)
    cut(m, "differential", 2)
    m.checkpoint_every = None  # a FULL that does not look for cut backups
    second = m.backup("tree", "full")
    m.checkpoint_every = 0
    discarded(caplog, m, "differential", f"its parent is {first.id}, this backup's is {second.id}")


def test_other_settings_discard_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = make_tree(tmp_path, [2 * MiB] * 6)
    m = manager(tmp_path / "repo", src, compression=None)
    cut(m, "full", 2)
    m.register_database("tree", src, compression="zstd")
    discarded(caplog, m, "full", "its compression was None, the database's is now 'zstd'")


def test_an_old_one_is_discarded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = make_tree(tmp_path, [2 * MiB] * 6)
    now = [datetime(2026, 11, 1, tzinfo=UTC)]
    m = manager(tmp_path / "repo", src, clock=lambda: now[0])
    cut(m, "full", 2)
    now[0] += timedelta(days=4)
    discarded(caplog, m, "full", "is older than 3 days, 0:00:00: discarded")


def test_a_cut_backup_of_another_database_is_left_alone(tmp_path: Path) -> None:
    src = make_tree(tmp_path, [2 * MiB] * 6)
    m = manager(tmp_path / "repo", src)
    cut(m, "full", 2)
    (left,) = staging_dirs(m)
    other = make_tree(tmp_path / "other", [1000])
    m.register_database("other", other)
    m.backup("other", "full")
    assert staging_dirs(m) == [left]
    assert m.backup("tree", "full").id == left.name


# --- property: any cut point resumes to the uninterrupted set ---------------------------


@settings(deadline=None, max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.sampled_from([0, 1, 4095, 8192, 100_000, 3 * MiB + 3, 5 * MiB]), min_size=1, max_size=8),
    cuts=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    zstd=st.booleans(),
)
def test_random_cut_points_resume_to_the_uninterrupted_set(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], cuts: list[int], zstd: bool
) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    src = make_tree(tmp, sizes, seed=len(sizes))
    m = manager(tmp / "repo", src, compression="zstd" if zstd else None)
    for at in cuts:  # cut again and again, each run going on from the last
        c = CutAt(at)
        try:
            done = m.backup("tree", BackupType.FULL, progress=c.progress, cancel=c.flag)
            break
        except BackupCancelled:
            continue
    else:
        done = m.backup("tree", BackupType.FULL)
    same_as_uninterrupted(tmp, m, done.id, src)


def test_the_job_history_says_the_run_resumed(tmp_path: Path) -> None:
    from rustybackup import BackupScheduler, ScheduledBackup
    from rustybackup.enums import ExecutionStatus

    src = make_tree(tmp_path, [2 * MiB] * 8)
    m = manager(tmp_path / "repo", src)
    cut(m, "full", 2)  # the night before, cut short
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    s = BackupScheduler(m, clock=lambda: t0)
    s.add_job(ScheduledBackup("nightly", "Nightly", "tree", BackupType.FULL, "0 1 * * *"))
    (set_id,) = s.execute_due_jobs(t0 + timedelta(hours=1))
    [e] = s.history(job_id="nightly")
    resumed = m.resumed[set_id]
    assert e.status is ExecutionStatus.COMPLETED and e.backup_set_id == set_id
    assert e.error == f"resumed from {resumed.files} staged file(s) / {resumed.bytes} bytes"
    assert e.bytes_read == sum(f.stat().st_size for f in src.iterdir()) - resumed.bytes


def test_a_file_vanishing_mid_pass_costs_no_second_read_of_the_files_before_it(tmp_path: Path) -> None:
    src = make_tree(tmp_path, [2 * MiB] * 10)
    total = sum(f.stat().st_size for f in src.iterdir())
    m = manager(tmp_path / "repo", src)
    victim = src / "f08"
    gone = victim.stat().st_size

    def progress(p: BackupProgress) -> None:
        victim.unlink(missing_ok=True)  # after the walk, before the pass reaches it

    done = m.backup("tree", "full", progress=progress)
    resumed = m.resumed[done.id]
    assert resumed.files == 8  # the pass started over without f08, adopting f00..f07
    assert done.bytes_read == total - gone - resumed.bytes
    assert [e.path for e in m.summary(done.id).skipped] == ["f08"]
    same_as_uninterrupted(tmp_path, m, done.id, src)


def _encrypted_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: int) -> tuple[BackupManager, Path, Path]:
    """An encrypted repository whose FULL of `files` 2 MiB files was cut after two:
    (manager, source, the cut set's staging directory)."""
    from rustybackup import keys

    cheap_argon2(monkeypatch)  # cheap slots: the tests are about resuming
    src = make_tree(tmp_path, [2 * MiB] * files)
    repo = tmp_path / "repo"
    m = BackupManager(repo)
    keys.init_encryption(repo, password="pw")
    m.register_database("tree", src, compression="zstd")
    m.checkpoint_every = 0
    cut(m, "full", 2)
    (left,) = staging_dirs(m)
    return m, src, left


def test_an_encrypted_backup_resumes_in_another_process_with_its_set_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rustybackup import keys

    m, src, left = _encrypted_cut(tmp_path, monkeypatch, 10)
    repo = m.repository
    assert (left / keys.SET_KEY_FILE).is_file()
    forget_keys()
    monkeypatch.setenv(keys.PASSWORD_ENV, "pw")
    m2 = BackupManager(repo)
    m2.checkpoint_every = 0
    done = m2.backup("tree", "full")
    assert done.id == left.name and m2.resumed[done.id].files > 0
    out = tmp_path / "out"
    m2.restore("tree", out, backup_set_id=done.id)
    for f in src.iterdir():
        assert (out / f.name).read_bytes() == f.read_bytes(), f.name
    assert Verifier(m2).verify(done.id, "full").ok
    forget_keys()


def test_an_encrypted_cut_without_its_set_key_is_discarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from rustybackup import keys

    m, _src, left = _encrypted_cut(tmp_path, monkeypatch, 6)
    (left / keys.SET_KEY_FILE).unlink()
    try:
        discarded(caplog, m, "full", f"it holds no {keys.SET_KEY_FILE}")
    finally:
        forget_keys()


def test_a_file_rewritten_between_the_walk_and_its_take_over_is_not_adopted_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file the walk found unchanged is taken over with the parent's digest, and its
    journal record carries the identity that decision was made on (the walk's). Rewritten
    in place at the same size after the walk and before a cut, the resumed run must not
    adopt the parent's bytes for the new contents: its ctime moved since the walk."""
    from rustybackup import engine, sources

    src = make_tree(tmp_path, [2 * MiB] * 6)
    m = manager(tmp_path / "repo", src)
    m.backup("tree", "full")
    change_all(src)
    m.backup("tree", "incremental")  # every file now has an identity in the parent
    (src / "f05").write_bytes(b"read by the next pass" * 1000)
    real = sources.walk
    victim = src / "f00"

    def walk_then_rewrite(
        root: Path, selection: object = None, parent: sources.KnownFiles | None = None
    ) -> sources.TreeEntries:
        out = real(root, selection, parent)  # type: ignore[arg-type]
        data = bytearray(victim.read_bytes())
        data[7] ^= 0xFF
        victim.write_bytes(bytes(data))
        return out

    monkeypatch.setattr(engine, "walk", walk_then_rewrite)
    cut(m, "incremental", 1)
    monkeypatch.undo()
    done = m.backup("tree", "incremental")
    out = tmp_path / "out"
    m.restore("tree", out, backup_set_id=done.id)
    for f in src.iterdir():
        assert (out / f.name).read_bytes() == f.read_bytes(), f.name


def test_a_pass_that_reads_nothing_journals_nothing(tmp_path: Path) -> None:
    """Every file taken over unread: nothing to resume, so the pass keeps no checkpoint
    (a cut run would take them over again). A pass that reads even one file journals as
    before. Seen from the progress hook, in the pass's staging directory."""
    src = make_tree(tmp_path, [1 * MiB] * 4)
    m = manager(tmp_path / "repo", src)
    m.backup("tree", "full")
    seen: list[list[str]] = []

    def look(p: BackupProgress) -> None:
        seen.extend(sorted(f.name for f in d.iterdir()) for d in staging_dirs(m))

    done = m.backup("tree", "incremental", progress=look)
    assert done.bytes_read == 0 and seen and all("checkpoint" not in names for names in seen)
    (src / "f01").write_bytes(b"read again")
    seen.clear()
    m.backup("tree", "incremental", progress=look)
    assert any({"checkpoint", "resume.json"} <= set(names) for names in seen)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("set_id", "20261201Tp03346124566Z-41b6ef12"),
        ("set_id", ["a list"]),
        ("started_at_us", 10**30),
        ("started_at_us", "1"),
        ("key", {"database": "tree"}),
        ("key.parent_id", ["not", "hashable"]),
        ("key.block_size", "4096"),
        ("key.backup_type", 7),
        ("format", 99),
    ],
)
def test_a_damaged_resume_marker_is_not_resumed_and_never_stops_a_backup(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, field: str, value: object
) -> None:
    """A cut run's ``resume.json`` changed into any other JSON: the next backup does not
    resume it, says which file and why, sweeps it, and runs fresh; so does the one
    after (a damaged marker once made every later backup fail)."""
    import json

    src = make_tree(tmp_path, [2 * MiB] * 6)
    m = manager(tmp_path / "repo", src)
    cut(m, "full", 2)
    (staging,) = staging_dirs(m)
    doc = json.loads((staging / "resume.json").read_text())
    if field.startswith("key."):
        doc["key"][field[4:]] = value
    else:
        doc[field] = value
    (staging / "resume.json").write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING, logger="rustybackup.resume"):
        done = m.backup("tree", "full")
    assert done.id not in m.resumed and done.bytes_read == 6 * 2 * MiB
    assert f"{staging}/resume.json: unreadable resume marker" in caplog.text
    assert staging_dirs(m) == []
    same_as_uninterrupted(tmp_path, m, done.id, src)
    assert m.backup("tree", "full").bytes_read == 6 * 2 * MiB
