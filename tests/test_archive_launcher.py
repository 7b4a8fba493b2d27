"""The installed ``rustybackup`` command (python/rustybackup.data/scripts/rustybackup, a
shell script in the wheel's data directory): archive-push of a pushed-ahead file is
answered by the script itself (`cmp`, `sync`) under archive_fast's rule, held to
`archive_fast.answer` over generated command lines; else it starts the interpreter pip
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
from archive_support import pg_archive_manager
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager
from rustybackup.postgres import archive, archive_fast, wal

SOURCE = Path(__file__).resolve().parent.parent / "python" / "rustybackup.data" / "scripts" / "rustybackup"
SCRIPTS = Path(sysconfig.get_path("scripts"))


manager = pytest.fixture(pg_archive_manager)


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


def run(cmd: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, list[str]]:
    """Exit code, stderr without the import profile, and the modules imported."""
    env = {**os.environ, **(env or {}), "PYTHONPROFILEIMPORTTIME": "1"}
    proc = subprocess.run([str(cmd), *args], capture_output=True, text=True, env=env, check=False)
    imported, rest = [], []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:"):
            imported.append(line.rsplit("|", 1)[1].strip())
        else:
            rest.append(line)
    return proc.returncode, "\n".join(rest), imported


def push(cmd: Path, repo: Path, src: Path, env: dict[str, str] | None = None) -> tuple[int, str, list[str]]:
    return run(cmd, "--repo", str(repo), "archive-push", "pg", str(src), env=env)


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


def test_a_pushed_ahead_file_is_answered_without_python(manager: BackupManager, tmp_path: Path) -> None:
    files = queue(tmp_path, 3)
    cmd = SCRIPTS / "rustybackup"
    code, err, imported = push(cmd, manager.repository, files[0])
    assert (code, err) == (0, "")
    # The first call was the full push: site ran (late) and click loaded.
    assert "site" in imported and "click" in imported
    for p in files[1:]:
        assert push(cmd, manager.repository, p) == (0, "", [])
        assert (archive.spool_dir(manager.repository, "pg") / p.name).read_bytes() == p.read_bytes()


def test_without_cmp_python_answers_without_site_or_click(manager: BackupManager, tmp_path: Path) -> None:
    files = queue(tmp_path, 3)
    cmd = SCRIPTS / "rustybackup"
    assert push(cmd, manager.repository, files[0])[0] == 0
    (tmp_path / "empty").mkdir()
    for p in files[1:]:
        code, err, imported = push(cmd, manager.repository, p, env={"PATH": str(tmp_path / "empty")})
        assert (code, err) == (0, "")
        assert "site" not in imported and "click" not in imported
        assert "rustybackup.postgres.archive_fast" in imported


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
    assert push(link, manager.repository, files[1]) == (0, "", [])


def push_two_through_site(cmd: Path, manager: BackupManager, tmp_path: Path) -> list[Path]:
    """Pushes two queued segments through `cmd` with no cmp on the PATH, so the second
    call (pushed ahead) is Python's too; both succeed and import `site`."""
    files = queue(tmp_path, 2)
    (tmp_path / "empty").mkdir()
    for p in files:
        code, err, imported = push(cmd, manager.repository, p, env={"PATH": str(tmp_path / "empty")})
        assert (code, err) == (0, "")
        assert "site" in imported
    return files


def test_an_interpreter_line_it_cannot_use_falls_back_to_pips_launcher(manager: BackupManager, tmp_path: Path) -> None:
    # pip's form for a long interpreter path, or one with spaces.
    cmd = installed_next_to(tmp_path / "bin", "#!/bin/sh\n'''exec' " + f'"{sys.executable}" "$0" "$@"' + "\n' '''")
    push_two_through_site(cmd, manager, tmp_path)


def test_a_package_outside_the_usual_layout_is_found_through_site(manager: BackupManager, tmp_path: Path) -> None:
    """A virtualenv that sees the package only through the system site-packages: the
    launcher finds nothing where pip would have put it and runs `site`, then answers."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True)
    cmd = installed_next_to(venv / "bin", f"#!{venv / 'bin' / 'python'}")
    files = push_two_through_site(cmd, manager, tmp_path)
    assert sorted(archive.archived(manager, "pg")) == sorted(p.name for p in files)


DEFERRED = 99


@pytest.fixture(scope="module")
def parity(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Path]]:
    """The launcher beside a `rustybackup-py` that only exits DEFERRED, a repository
    whose spool holds two pushed-ahead files, and the command-line paths to try."""
    base = tmp_path_factory.mktemp("parity")
    cmd = installed_next_to(base / "bin", f"#!/bin/sh\nexit {DEFERRED}")
    m = BackupManager(base / "repo")
    (base / "pgdata").mkdir()
    m.register_database("pg", base / "pgdata", kind="postgresql", dsn="host=/nonexistent")
    files = queue(base, 3)
    archive.push(m, "pg", files[0], seal=False)
    files[2].write_bytes(b"other" + files[2].read_bytes()[5:])
    missing = files[0].parent / wal.segment_name(1, 9, 1 << 24)
    paths = {
        "ahead": files[1],
        "changed": files[2],
        "not in the spool": missing,
        "lower case": files[1].parent / files[1].name.lower(),
        "short": files[1].parent / files[1].name[:15],
        "trailing slash": Path(f"{files[1]}/"),
        "relative": Path(os.path.relpath(files[1])),
    }
    (base / "short").mkdir()
    return cmd, m.repository, paths


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prefix=st.sampled_from(["--repo R", "--repo=R", "", "--repo", "--repo ''", "--repo s3://b/p", "-v --repo R"]),
    command=st.sampled_from(["archive-push", "archive-get"]),
    database=st.sampled_from(["pg", "", ".pg", "-pg", "../wal/pg", "other"]),
    path=st.sampled_from(["ahead", "changed", "not in the spool", "lower case", "short", "trailing slash", "relative"]),
    extra=st.booleans(),
    env_repo=st.sampled_from([None, "", "R"]),
    catalog=st.booleans(),
)
# The lines it answers (exit 0), whatever hypothesis draws besides.
@example("--repo R", "archive-push", "pg", "ahead", False, None, False)
@example("--repo=R", "archive-push", "pg", "relative", False, "", False)
@example("", "archive-push", "pg", "ahead", False, "R", False)
@example("--repo R", "archive-push", "pg", "changed", False, None, False)
def test_the_scripts_answer_is_archive_fasts(
    parity: tuple[Path, Path, dict[str, Path]],
    prefix: str,
    command: str,
    database: str,
    path: str,
    extra: bool,
    env_repo: str | None,
    catalog: bool,
) -> None:
    """The script answers exactly the command lines archive_fast.answer answers (exit 0)
    and hands every other one on (here: to a stand-in `rustybackup-py`)."""
    cmd, repo, paths = parity
    words = [{"R": str(repo), "''": ""}.get(w, w) for w in prefix.split()]
    argv = [*words, command, database, str(paths[path]), *(["--extra"] if extra else [])]
    env = {k: v for k, v in os.environ.items() if k not in ("RUSTYBACKUP_REPO", "RUSTYBACKUP_CATALOG")}
    if env_repo is not None:
        env["RUSTYBACKUP_REPO"] = str(repo) if env_repo == "R" else ""
    if catalog:
        env["RUSTYBACKUP_CATALOG"] = "postgresql://x/y"
    expected = archive_fast.answer(argv, env)
    got = subprocess.run([str(cmd), *argv], env=env, capture_output=True, check=False).returncode
    assert got == (DEFERRED if expected is None else expected), (argv, env.get("RUSTYBACKUP_REPO"))
