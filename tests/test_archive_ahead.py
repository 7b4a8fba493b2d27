"""archive-push archives ahead what PostgreSQL has marked ready (pgBackRest's
archive-async model), and the fast path answers the archiver's later calls for those
files from the spool, before the command group is imported; changed content still
goes to the full push and is refused there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from archive_support import pg_archive_manager
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager, BackupType, store
from rustybackup.postgres import archive, archive_fast, wal

SEG = 1 << 16


manager = pytest.fixture(pg_archive_manager)


def pg_wal(base: Path, names: list[str], ready: bool = True) -> Path:
    """A pg_wal directory as the archiver leaves it: each file and its `.ready` marker."""
    d = base / "pg_wal"
    (d / "archive_status").mkdir(parents=True, exist_ok=True)
    for name in names:
        (d / name).write_bytes(os.urandom(SEG))
        if ready:
            (d / "archive_status" / f"{name}.ready").touch()
    return d


def seg(n: int, tli: int = 1) -> str:
    return wal.segment_name(tli, n, 1 << 24)


def spool_names(m: BackupManager) -> list[str]:
    return sorted(e.name for e in archive.spool_dir(m.repository, "pg").iterdir() if not e.name.startswith("."))


def leftovers(m: BackupManager) -> list[str]:
    return [e.name for e in archive.spool_dir(m.repository, "pg").iterdir() if ".tmp-" in e.name]


def test_a_push_from_pg_wal_archives_the_other_ready_files(manager: BackupManager, tmp_path: Path) -> None:
    names = [seg(n) for n in range(1, 6)]
    d = pg_wal(tmp_path, [*names, "00000002.history"])
    # Not ready (still being written, or already archived): never pushed ahead.
    (d / seg(9)).write_bytes(b"x" * SEG)
    (d / "archive_status" / f"{seg(10)}.done").touch()
    archive.push(manager, "pg", d / names[0], seal=False)
    assert spool_names(manager) == sorted([*names, "00000002.history"])
    for name in [*names, "00000002.history"]:
        assert (archive.spool_dir(manager.repository, "pg") / name).read_bytes() == (d / name).read_bytes()
    assert leftovers(manager) == []


def test_without_its_own_ready_marker_a_push_archives_only_its_file(manager: BackupManager, tmp_path: Path) -> None:
    names = [seg(n) for n in range(1, 4)]
    d = pg_wal(tmp_path, names)
    (d / "archive_status" / f"{names[0]}.ready").unlink()
    archive.push(manager, "pg", d / names[0], seal=False)
    assert spool_names(manager) == [names[0]]


def test_files_the_archive_holds_are_left_to_postgresqls_own_call(manager: BackupManager, tmp_path: Path) -> None:
    names = [seg(n) for n in range(1, 5)]
    d = pg_wal(tmp_path, names)
    other = tmp_path / "other"
    other.mkdir()
    # names[1] archived with other content and sealed; names[2] waiting in the spool.
    (other / names[1]).write_bytes(b"old" * 100)
    archive.push(manager, "pg", other / names[1], seal=False)
    archive.seal_if_due(manager, "pg", force=True)
    (other / names[2]).write_bytes(b"waiting")
    archive.push(manager, "pg", other / names[2], seal=False)
    archive.push(manager, "pg", d / names[0], seal=False)
    spool = archive.spool_dir(manager.repository, "pg")
    assert spool_names(manager) == [names[0], names[2], names[3]]
    assert (spool / names[2]).read_bytes() == b"waiting"
    # PostgreSQL's call for each: the changed ones are refused as always.
    for name in names[1:3]:
        with pytest.raises(archive.ArchiveMismatch, match=name):
            archive.push(manager, "pg", d / name, seal=False)
    assert archive.push(manager, "pg", d / names[3], seal=False).already


def test_ahead_stops_at_the_batch_limit_history_files_first(
    manager: BackupManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive, "AHEAD_FILES", 3)
    names = [seg(n) for n in range(1, 8)]
    d = pg_wal(tmp_path, [*names, "00000003.history"])
    archive.push(manager, "pg", d / names[0], seal=False)
    assert spool_names(manager) == sorted([names[0], "00000003.history", names[1], names[2]])


def test_every_file_ahead_is_durable_before_any_is_linked(
    manager: BackupManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [seg(n) for n in range(1, 5)]
    d = pg_wal(tmp_path, names)
    archive.push(manager, "pg", d / names[0], seal=False, ahead=False)
    events: list[str] = []
    real_fsync, real_link, real_fsync_dir = os.fsync, os.link, store.fsync_dir

    spool = archive.spool_dir(manager.repository, "pg")

    def fsync(fd: int) -> None:
        if Path(f"/proc/self/fd/{fd}").resolve().parent == spool:  # not the directory's own fsync
            events.append("fsync file")
        real_fsync(fd)

    def link(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> None:
        events.append(f"link {Path(b).name}")
        real_link(a, b)

    def fsync_dir(path: Path) -> None:
        events.append("fsync dir")
        real_fsync_dir(path)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(store, "fsync_dir", fsync_dir)
    assert archive.push_ahead(manager, "pg", d / names[0]) == names[1:]
    assert events == ["fsync file"] * 3 + [f"link {n}" for n in names[1:]] + ["fsync dir"]


def test_a_failure_ahead_links_nothing_and_the_push_itself_succeeds(
    manager: BackupManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [seg(n) for n in range(1, 6)]
    d = pg_wal(tmp_path, names)
    real_copy = archive._copy
    copies: list[int] = []

    def failing(in_fd: int, out_fd: int) -> None:
        copies.append(in_fd)
        if len(copies) == 3:  # the current file, then two ahead, then a disk error
            raise OSError(5, "Input/output error")
        real_copy(in_fd, out_fd)

    monkeypatch.setattr(archive, "_copy", failing)
    result = archive.push(manager, "pg", d / names[0], seal=False)
    assert not result.already
    assert spool_names(manager) == [names[0]]
    assert leftovers(manager) == []


def test_ahead_files_are_sealed_only_after_postgresql_asked_for_them(
    manager: BackupManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(archive.GROUP_ENV, "2")
    names = [seg(n) for n in range(1, 5)]
    d = pg_wal(tmp_path, names)
    first = archive.push(manager, "pg", d / names[0])
    # The seal ran before the files ahead arrived: they wait where the fast path looks.
    assert first.sealed is None
    assert spool_names(manager) == names
    for name in names[1:]:
        assert archive_fast.answer(["--repo", str(manager.repository), "archive-push", "pg", str(d / name)], {}) == 0
        (d / "archive_status" / f"{name}.ready").rename(d / "archive_status" / f"{name}.done")
    nxt = seg(5)
    pg_wal(tmp_path, [nxt])
    assert archive.push(manager, "pg", d / nxt).sealed is not None
    sealed = {name for name, (where, _) in archive.archived(manager, "pg").items() if where != "spool"}
    assert sealed == set(names) | {nxt}
    assert len(manager.catalog.list_sets("pg", BackupType.ARCHIVE_LOG)) == 1
    assert spool_names(manager) == []


def test_the_fast_path_answers_only_a_byte_identical_spool_file(manager: BackupManager, tmp_path: Path) -> None:
    names = [seg(n) for n in range(1, 4)]
    d = pg_wal(tmp_path, names)
    repo = str(manager.repository)
    archive.push(manager, "pg", d / names[0], seal=False)
    argv = ["--repo", repo, "archive-push", "pg", str(d / names[1])]
    assert archive_fast.answer(argv, {}) == 0
    assert archive_fast.answer(argv[2:], {"RUSTYBACKUP_REPO": repo}) == 0
    assert archive_fast.answer([f"--repo={repo}", *argv[2:]], {}) == 0
    # Everything the full command must see.
    assert archive_fast.answer(argv, {"RUSTYBACKUP_CATALOG": "postgresql://x/y"}) is None
    assert archive_fast.answer(["-v", *argv], {}) is None
    assert archive_fast.answer([*argv, "--extra"], {}) is None
    assert archive_fast.answer(["--repo", "s3://b/p", *argv[2:]], {}) is None
    assert archive_fast.answer(argv[2:], {}) is None  # no repository at all
    assert archive_fast.answer(["--repo", repo, "archive-push", "../wal/pg", str(d / names[1])], {}) is None
    assert archive_fast.answer(["--repo", repo, "archive-push", "pg", str(d / seg(7))], {}) is None  # not in the spool
    (d / names[2]).write_bytes(b"changed" + (d / names[2]).read_bytes()[7:])
    assert archive_fast.answer(["--repo", repo, "archive-push", "pg", str(d / names[2])], {}) is None
    (d / names[2]).write_bytes((d / names[2]).read_bytes()[:-1])
    assert archive_fast.answer(["--repo", repo, "archive-push", "pg", str(d / names[2])], {}) is None


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    a=st.binary(max_size=3000),
    edit=st.one_of(st.none(), st.tuples(st.integers(0, 3000), st.binary(max_size=5)), st.integers(0, 3000)),
    chunk=st.integers(1, 700),
)
def test_same_bytes_agrees_with_comparing_the_whole_files(
    tmp_path_factory: pytest.TempPathFactory, a: bytes, edit: object, chunk: int
) -> None:
    """The chunked comparison against reading both files whole: any chunk size, edits
    anywhere (including none, and truncation)."""
    d = tmp_path_factory.mktemp("same")
    if edit is None:
        b = a
    elif isinstance(edit, int):
        b = a[:edit]
    else:
        assert isinstance(edit, tuple)
        at, data = edit
        b = a[:at] + data + a[at + len(data) :]
    (d / "a").write_bytes(a)
    (d / "b").write_bytes(b)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(archive_fast, "_CHUNK", chunk)
        assert archive_fast._same_bytes(d / "a", d / "b") == (a == b)
    assert archive_fast._same_bytes(d / "a", d / "absent") is False


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``python -m rustybackup ARGV``, and which of click and the command group it loaded."""
    probe = (
        "import json, runpy, sys\n"
        f"sys.argv = ['rustybackup', *{argv!r}]\n"
        "try:\n"
        "    runpy.run_module('rustybackup', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "else:\n"
        "    code = 0\n"
        "print(json.dumps([code, sorted(m for m in ('click', 'rustybackup.cli', 'rustybackup.catalog') "
        "if m in sys.modules)]), file=sys.stderr)\n"
    )
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)


def test_the_command_answers_ahead_files_without_the_command_group_and_refuses_changes(
    manager: BackupManager, tmp_path: Path
) -> None:
    names = [seg(n) for n in range(1, 4)]
    d = pg_wal(tmp_path, names)
    repo = str(manager.repository)
    first = run(["--repo", repo, "archive-push", "pg", str(d / names[0])])
    assert json.loads(first.stderr.splitlines()[-1]) == [0, ["click", "rustybackup.catalog", "rustybackup.cli"]]
    second = run(["--repo", repo, "archive-push", "pg", str(d / names[1])])
    assert json.loads(second.stderr.splitlines()[-1]) == [0, []]
    (d / names[2]).write_bytes(os.urandom(SEG))
    third = run(["--repo", repo, "archive-push", "pg", str(d / names[2])])
    lines = third.stderr.splitlines()
    assert json.loads(lines[-1])[0] == 1
    assert names[2] in lines[0] and "refusing to replace an archived WAL file" in lines[0]


def test_readmes_cmp_archive_command_keeps_the_push_rules(manager: BackupManager, tmp_path: Path) -> None:
    """README's line for busy servers, run by sh as PostgreSQL does (from the data
    directory, %p relative): an ahead file succeeds without Python, a changed or new
    file goes to the full push (refused, or archived)."""
    names = [seg(n) for n in range(1, 4)]
    d = pg_wal(tmp_path, names)
    spool = archive.spool_dir(manager.repository, "pg")
    line = (
        f"cmp -s %p {spool}/%f && sync {spool} || "
        f"{sys.executable} -m rustybackup --repo {manager.repository} archive-push pg %p"
    )

    def archive_command(name: str) -> subprocess.CompletedProcess[str]:
        cmd = line.replace("%p", f"pg_wal/{name}").replace("%f", name)
        return subprocess.run(["sh", "-c", cmd], cwd=tmp_path, capture_output=True, text=True, check=False)

    assert archive_command(names[0]).returncode == 0  # not in the spool: the full push, which pushes ahead
    assert spool_names(manager) == names
    assert archive_command(names[1]).returncode == 0
    (d / names[2]).write_bytes(os.urandom(SEG))
    refused = archive_command(names[2])
    assert refused.returncode == 1 and "refusing to replace an archived WAL file" in refused.stderr
    assert (spool / names[2]).read_bytes() != (d / names[2]).read_bytes()
