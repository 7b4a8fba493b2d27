"""What one ``rustybackup`` process loads, and the per-segment push it runs.

PostgreSQL starts ``rustybackup archive-push`` once per WAL segment, so the package root
and the command group import a command's module only when it runs. Checked by what lands
in ``sys.modules`` of a fresh interpreter (behaviour, not timing), plus the static
command table against what the modules register, and the push's copy, digest and
durability order."""

from __future__ import annotations

import errno
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import rustybackup
from archive_support import pg_archive_manager
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager, hash_bytes, store
from rustybackup.cli import COMMANDS, cli
from rustybackup.postgres import archive, wal

# Modules the push never needs; each costs more to import than a push takes.
HEAVY = (
    "rich",
    "prometheus_client",
    "holidays",
    "psycopg",
    "hypothesis",
    "smtplib",
    "rustybackup.jobs",
    "rustybackup.scheduler",
    "rustybackup.notify",
    "rustybackup.metrics",
    "rustybackup.verify",
    "rustybackup.holidays_cal",
)


def loaded_after(code: str, env: dict[str, str] | None = None) -> list[str]:
    """The HEAVY modules a fresh interpreter holds after running `code`."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


manager = pytest.fixture(pg_archive_manager)


def segment(d: Path, n: int, data: bytes) -> Path:
    p = d / wal.segment_name(1, n, 1 << 24)
    p.write_bytes(data)
    return p


def test_importing_the_package_loads_only_the_native_module_enums_and_errors() -> None:
    code = "import json, sys, rustybackup; print(json.dumps(sorted(m for m in sys.modules if 'rustybackup' in m)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == ["rustybackup", "rustybackup._core", "rustybackup.enums", "rustybackup.errors"]


def test_importing_the_cli_loads_no_command_module() -> None:
    assert loaded_after("import rustybackup.cli") == []
    out = subprocess.run(
        [sys.executable, "-c", "import sys, rustybackup.cli; print(any(m.endswith('_cmds') for m in sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_archive_push_and_get_run_without_the_heavy_modules(manager: BackupManager, tmp_path: Path) -> None:
    src = segment(tmp_path, 1, os.urandom(1 << 16))
    back = tmp_path / "back"
    code = f"""
from rustybackup.cli import main
for argv in (["--repo", {str(manager.repository)!r}, "archive-push", "pg", {str(src)!r}],
             ["--repo", {str(manager.repository)!r}, "archive-get", "pg", {src.name!r}, {str(back)!r}]):
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code == 0, (argv, exc.code)
"""
    # A group of one: this push also seals, through the engine's ARCHIVE_LOG backup.
    assert loaded_after(code, {archive.GROUP_ENV: "1"}) == []
    assert back.read_bytes() == src.read_bytes()
    assert manager.catalog.archive_file("pg", src.name) is not None


def test_the_command_table_is_exactly_what_the_modules_register() -> None:
    cli_dir = Path(importlib.import_module("rustybackup.cli").__file__ or "").parent
    modules = sorted(p.stem for p in cli_dir.glob("*_cmds.py"))
    registered: dict[str, str] = {}
    for module in modules:
        group = click.Group()
        importlib.import_module(f"rustybackup.cli.{module}").register(group)
        for name in group.commands:
            assert name not in registered, f"{name} is registered by {registered[name]} and {module}"
            registered[name] = module
    assert registered == COMMANDS


def test_help_lists_every_command_and_each_runs(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()]
    assert listed == sorted(COMMANDS)
    for name in COMMANDS:
        sub = CliRunner().invoke(cli, [name, "--help"])
        assert sub.exit_code == 0, (name, sub.output)
    unknown = CliRunner().invoke(cli, ["no-such-command"])
    assert unknown.exit_code == 2 and "No such command" in unknown.output


def test_every_lazy_public_name_is_the_defining_modules_object() -> None:
    # Every public name is eager or lazy, and every lazy one is public.
    eager = {n for n in rustybackup.__all__ if n in vars(rustybackup) and n not in rustybackup._LAZY}
    assert set(rustybackup.__all__) == eager | set(rustybackup._LAZY)
    for name, module in rustybackup._LAZY.items():
        assert getattr(rustybackup, name) is getattr(importlib.import_module(f"rustybackup.{module}"), name)
        assert name in rustybackup.__all__ and name in dir(rustybackup)
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = rustybackup.no_such_name


@settings(deadline=None, max_examples=40)
@given(data=st.binary(max_size=5000), chunk=st.integers(1, 700), sendfile_works=st.booleans())
def test_copy_gives_the_source_bytes(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, chunk: int, sendfile_works: bool
) -> None:
    """The kernel copy and the read fallback, in chunks of any size, against the bytes."""
    d = tmp_path_factory.mktemp("copy")
    (d / "src").write_bytes(data)
    real_sendfile = os.sendfile

    def refusing(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        raise OSError(errno.EINVAL, "sendfile refused")

    def small(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        return real_sendfile(out_fd, in_fd, offset, min(count, chunk))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(archive, "_CHUNK", chunk)
        mp.setattr(os, "sendfile", small if sendfile_works else refusing)
        with open(d / "src", "rb") as fin:
            fd = archive._create(d / "dst")
            try:
                archive._copy(fin.fileno(), fd)
            finally:
                os.close(fd)
    assert (d / "dst").read_bytes() == data


@pytest.mark.parametrize("size", [0, 1, 3 << 20])
def test_push_records_the_digest_of_what_it_stored(manager: BackupManager, tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    result = archive.push(manager, "pg", segment(tmp_path, 7, data), seal=False)
    spool = archive.spool_dir(manager.repository, "pg")
    assert result.digest == hash_bytes(data, "blake3")
    assert (spool / result.name).read_bytes() == data
    assert sorted(p.name for p in spool.iterdir() if not p.name.startswith(".push") and p.name != ".seal.lock") == [
        result.name
    ]


def test_a_refused_or_repeated_push_leaves_no_temporary_file(manager: BackupManager, tmp_path: Path) -> None:
    p = segment(tmp_path, 8, b"a" * 1000)
    archive.push(manager, "pg", p, seal=False)
    assert archive.push(manager, "pg", p, seal=False).already
    p.write_bytes(b"b" * 1000)
    with pytest.raises(archive.ArchiveMismatch):
        archive.push(manager, "pg", p, seal=False)
    spool = archive.spool_dir(manager.repository, "pg")
    assert [q.name for q in spool.iterdir() if ".tmp-" in q.name] == []
    assert (spool / p.name).read_bytes() == b"a" * 1000


def test_success_is_reported_only_after_the_file_and_its_name_are_durable(
    manager: BackupManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order every push keeps: file fsynced, then linked, then the spool directory
    fsynced, before push returns; a repeated push (the archiver retrying after a crash
    of the first) fsyncs the directory too before it reports success."""
    events: list[str] = []
    spool = archive.spool_dir(manager.repository, "pg")
    real_fsync, real_link, real_fsync_dir = os.fsync, os.link, store.fsync_dir

    def fsync(fd: int) -> None:
        if Path(f"/proc/self/fd/{fd}").resolve().parent == spool:
            events.append("fsync file")
        real_fsync(fd)

    def link(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> None:
        events.append("link")
        real_link(a, b)

    def fsync_dir(path: Path) -> None:
        events.append(f"fsync dir {Path(path).name}")
        real_fsync_dir(path)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(store, "fsync_dir", fsync_dir)
    p = segment(tmp_path, 9, os.urandom(1 << 16))
    archive.push(manager, "pg", p, seal=False)
    assert events == ["fsync file", "link", "fsync dir pg"]
    events.clear()
    assert archive.push(manager, "pg", p, seal=False).already
    assert events == ["fsync dir pg"]


def test_a_missing_source_is_an_error_naming_it_and_creates_nothing(manager: BackupManager, tmp_path: Path) -> None:
    missing = tmp_path / "000000010000000000000011"
    with pytest.raises(FileNotFoundError, match="000000010000000000000011"):
        archive.push(manager, "pg", missing)
    spool = archive.spool_dir(manager.repository, "pg")
    assert [q.name for q in spool.iterdir() if not q.name.startswith(".") or ".tmp-" in q.name] == []
