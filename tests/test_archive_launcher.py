"""The installed ``rustybackup`` command (python/rustybackup.data/scripts/rustybackup, a
shell script in the wheel's data directory): archive-push starts the interpreter pip
named in ``rustybackup-py`` with -S, finds this package without `site`, and answers a
pushed-ahead file before click loads; the full push under it runs `site` first and
refuses and archives exactly as before; every other command and every installation the
script cannot read goes through ``rustybackup-py``. Checked by exit codes, the archive,
and what the interpreter imported (``PYTHONPROFILEIMPORTTIME``), not by timing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from rustybackup import BackupManager
from rustybackup.postgres import archive, wal

SOURCE = Path(__file__).resolve().parent.parent / "python" / "rustybackup.data" / "scripts" / "rustybackup"
SCRIPTS = Path(sysconfig.get_path("scripts"))


@pytest.fixture
def manager(tmp_path: Path) -> BackupManager:
    m = BackupManager(tmp_path / "repo")
    (tmp_path / "pgdata").mkdir()
    m.register_database("pg", tmp_path / "pgdata", kind="postgresql", dsn="host=/nonexistent")
    return m


def queue(base: Path, n: int) -> list[Path]:
    """`n` WAL segments marked ready in a pg_wal directory, as the archiver leaves them."""
    d = base / "pg_wal"
    (d / "archive_status").mkdir(parents=True)
    out = []
    for i in range(1, n + 1):
        p = d / wal.segment_name(1, i, 1 << 24)
        p.write_bytes(os.urandom(1 << 16))
        (d / "archive_status" / f"{p.name}.ready").touch()
        out.append(p)
    return out


def run(cmd: Path, *args: str) -> tuple[int, str, list[str]]:
    """Exit code, stderr without the import profile, and the modules imported."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    proc = subprocess.run([str(cmd), *args], capture_output=True, text=True, env=env, check=False)
    imported, rest = [], []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:"):
            imported.append(line.rsplit("|", 1)[1].strip())
        else:
            rest.append(line)
    return proc.returncode, "\n".join(rest), imported


def push(cmd: Path, repo: Path, src: Path) -> tuple[int, str, list[str]]:
    return run(cmd, "--repo", str(repo), "archive-push", "pg", str(src))


def installed_next_to(bin_dir: Path, python_line: str) -> Path:
    """The launcher in `bin_dir` beside a ``rustybackup-py`` whose first line is
    `python_line`, as pip lays them out."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(SOURCE, bin_dir / "rustybackup")
    py = bin_dir / "rustybackup-py"
    py.write_text(f"{python_line}\nimport sys\nfrom rustybackup.__main__ import main\nsys.exit(main())\n")
    py.chmod(0o755)
    return bin_dir / "rustybackup"


def test_pip_installed_the_launcher_and_the_entry_point_beside_it() -> None:
    assert (SCRIPTS / "rustybackup").read_bytes() == SOURCE.read_bytes()
    first = (SCRIPTS / "rustybackup-py").read_text().splitlines()[0]
    assert first.startswith("#!") and Path(first[2:]).samefile(sys.executable)


def test_a_pushed_ahead_file_is_answered_without_site_or_click(manager: BackupManager, tmp_path: Path) -> None:
    files = queue(tmp_path, 3)
    cmd = SCRIPTS / "rustybackup"
    code, err, imported = push(cmd, manager.repository, files[0])
    assert (code, err) == (0, "")
    # The first call was the full push: site ran (late) and click loaded.
    assert "site" in imported and "click" in imported
    for p in files[1:]:
        code, err, imported = push(cmd, manager.repository, p)
        assert (code, err) == (0, "")
        assert "site" not in imported and "click" not in imported
        assert "rustybackup.postgres.archive_fast" in imported
        assert (archive.spool_dir(manager.repository, "pg") / p.name).read_bytes() == p.read_bytes()


def test_other_content_under_an_archived_name_is_refused_through_the_launcher(
    manager: BackupManager, tmp_path: Path
) -> None:
    files = queue(tmp_path, 2)
    cmd = SCRIPTS / "rustybackup"
    assert push(cmd, manager.repository, files[0])[0] == 0
    kept = files[1].read_bytes()
    files[1].write_bytes(os.urandom(1 << 16))
    code, err, imported = push(cmd, manager.repository, files[1])
    assert code == 1 and "refusing to replace an archived WAL file" in err
    assert "site" in imported
    assert (archive.spool_dir(manager.repository, "pg") / files[1].name).read_bytes() == kept


def test_other_commands_go_through_pips_launcher(manager: BackupManager) -> None:
    code, err, imported = run(SCRIPTS / "rustybackup", "--repo", str(manager.repository), "db", "list")
    assert code == 0, err
    assert "site" in imported


def test_a_link_to_the_launcher_from_another_directory_works(manager: BackupManager, tmp_path: Path) -> None:
    files = queue(tmp_path, 2)
    (tmp_path / "bin").mkdir()
    link = tmp_path / "bin" / "rustybackup"
    link.symlink_to(SCRIPTS / "rustybackup")
    assert push(link, manager.repository, files[0])[:2] == (0, "")
    code, err, imported = push(link, manager.repository, files[1])
    assert (code, err) == (0, "") and "click" not in imported


def test_an_interpreter_line_it_cannot_use_falls_back_to_pips_launcher(manager: BackupManager, tmp_path: Path) -> None:
    # pip's form for a long interpreter path, or one with spaces.
    cmd = installed_next_to(tmp_path / "bin", "#!/bin/sh\n'''exec' " + f'"{sys.executable}" "$0" "$@"' + "\n' '''")
    files = queue(tmp_path, 2)
    for p in files:
        code, err, imported = push(cmd, manager.repository, p)
        assert (code, err) == (0, "")
        assert "site" in imported


def test_a_package_outside_the_usual_layout_is_found_through_site(manager: BackupManager, tmp_path: Path) -> None:
    """A virtualenv that sees the package only through the system site-packages: the
    launcher finds nothing where pip would have put it and runs `site`, then answers."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True)
    cmd = installed_next_to(venv / "bin", f"#!{venv / 'bin' / 'python'}")
    files = queue(tmp_path, 2)
    for p in files:
        code, err, imported = push(cmd, manager.repository, p)
        assert (code, err) == (0, "")
        assert "site" in imported
    assert sorted(archive.archived(manager, "pg")) == sorted(p.name for p in files)
