"""archive-get's fast path (postgres/archive_get_fast.py) and the installed command's
shell answer for it: a file waiting in the spool is copied into place, a file the
archive lacks exits 1 quietly, and everything else goes to the full command, which
answers as it always did. Held against the full command's own answers (archive.get),
against wal.is_archive_name for names, and the shell script against `from_spool` over
generated command lines; what a call imported shows which path answered."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager, keys, manifest, store
from rustybackup.postgres import archive, archive_get_fast, wal
from test_archive_launcher import SCRIPTS, installed_next_to, queue, run

HISTORY = "00000002.history"


@pytest.fixture
def manager(tmp_path: Path) -> BackupManager:
    m = BackupManager(tmp_path / "repo")
    (tmp_path / "pgdata").mkdir()
    m.register_database("pg", tmp_path / "pgdata", kind="postgresql", dsn="host=/nonexistent")
    return m


def get(cmd: Path, repo: Path, name: str, dest: Path, env: dict[str, str] | None = None) -> tuple[int, str, list[str]]:
    return run(cmd, "--repo", str(repo), "archive-get", "pg", name, str(dest), env=env)


NAME_PARTS = st.sampled_from(["0", "9", "A", "F", "a", "G", ".", "history", "partial", "backup", "/", "\n"])


@settings(deadline=None, max_examples=300)
@given(
    st.one_of(
        st.lists(NAME_PARTS, max_size=40).map("".join),
        st.builds(
            lambda seg, off, kind: {
                "segment": seg,
                "history": seg[:8] + ".history",
                "partial": seg + ".partial",
                "backup": f"{seg}.{off}.backup",
            }[kind],
            st.text("0123456789ABCDEFa", min_size=23, max_size=25),
            st.text("0123456789ABCDEF.", min_size=7, max_size=9),
            st.sampled_from(["segment", "history", "partial", "backup"]),
        ),
    )
)
@example("000000010000000000000001")
@example("00000001.history")
@example("000000010000000000000001.00000028.backup")
@example("000000010000000000000001.partial")
@example("000000010000000000000001.0000002.backup")
def test_the_name_rule_is_wals(name: str) -> None:
    assert archive_get_fast.is_wal_name(name) == wal.is_archive_name(name)


def test_a_spool_file_is_copied_and_an_absent_one_exits_1_without_click(manager: BackupManager, tmp_path: Path) -> None:
    files = queue(tmp_path, 2)
    for p in files:
        archive.push(manager, "pg", p, seal=False, ahead=False)
    (tmp_path / "empty").mkdir()
    dest = tmp_path / "restored"
    # No cp on the PATH: Python's fast path answers, without site, click or the engine.
    code, err, imported = get(
        SCRIPTS / "rustybackup", manager.repository, files[0].name, dest, {"PATH": "/nonexistent"}
    )
    assert (code, err) == (0, "")
    assert dest.read_bytes() == files[0].read_bytes()
    assert "site" not in imported and "click" not in imported and "rustybackup.engine" not in imported
    # With cp: the shell answers, no interpreter at all.
    dest.unlink()
    assert get(SCRIPTS / "rustybackup", manager.repository, files[1].name, dest) == (0, "", [])
    assert dest.read_bytes() == files[1].read_bytes()
    code, err, imported = get(SCRIPTS / "rustybackup", manager.repository, HISTORY, tmp_path / "h")
    assert (code, err) == (1, "")
    assert not (tmp_path / "h").exists()
    assert "click" not in imported and "rustybackup.engine" not in imported
    # The catalog is read with sqlite3 alone, not through the catalog module.
    assert "sqlite3" in imported and "rustybackup.catalog" not in imported and "rustybackup.store" not in imported
    assert sorted(os.listdir(tmp_path)) == sorted(["empty", "pg_wal", "pgdata", "repo", "restored"])


def _sealed(manager: BackupManager, tmp_path: Path, n: int = 2) -> list[Path]:
    files = queue(tmp_path, n)
    for p in files:
        archive.push(manager, "pg", p, seal=False, ahead=False)
    assert archive.seal_if_due(manager, "pg", force=True) is not None
    assert not any((archive.spool_dir(manager.repository, "pg") / p.name).exists() for p in files)
    return files


def test_a_sealed_file_is_read_by_the_native_module_without_the_engine(manager: BackupManager, tmp_path: Path) -> None:
    files = _sealed(manager, tmp_path)
    for p in files:
        dest = tmp_path / f"restored-{p.name}"
        code, err, imported = get(SCRIPTS / "rustybackup", manager.repository, p.name, dest)
        assert (code, err) == (0, "")
        assert dest.read_bytes() == p.read_bytes()
        assert "click" not in imported and "rustybackup.engine" not in imported
        assert "rustybackup.manifest" not in imported and "rustybackup.catalog" not in imported
    # Nothing left beside the destinations.
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


def test_a_damaged_sealed_file_is_the_full_commands_error(manager: BackupManager, tmp_path: Path) -> None:
    (p,) = _sealed(manager, tmp_path, 1)
    known = manager.catalog.archive_file("pg", p.name)
    assert known is not None
    set_dir = manager.repository / "sets" / known[1]
    (piece,) = [f for f in set_dir.iterdir() if f.name not in ("manifest.json",) and f.stat().st_size > 4096]
    with open(piece, "r+b") as fh:
        fh.seek(piece.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0xFF]))
    argv = ["--repo", str(manager.repository), "archive-get", "pg", p.name, str(tmp_path / "x")]
    assert archive_get_fast.answer(argv, {}) is None
    code, err, imported = get(SCRIPTS / "rustybackup", manager.repository, p.name, tmp_path / "restored")
    # The full command's error, naming the block, the file and the piece; never a quiet miss.
    assert code != 0 and "corrupt block" in err and p.name in err
    assert "rustybackup.engine" in imported
    assert not (tmp_path / "restored").exists() and not (tmp_path / "x").exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


def test_an_encrypted_repository_is_the_full_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = BackupManager(tmp_path / "repo")
    keys.init_encryption(m.repository, password="a passphrase")
    monkeypatch.setenv(keys.PASSWORD_ENV, "a passphrase")
    (tmp_path / "pgdata").mkdir()
    m.register_database("pg", tmp_path / "pgdata", kind="postgresql", dsn="host=/nonexistent")
    (p,) = _sealed(m, tmp_path, 1)
    argv = ["--repo", str(m.repository), "archive-get", "pg", p.name, str(tmp_path / "x")]
    assert archive_get_fast.answer(argv, {}) is None
    code, err, imported = get(SCRIPTS / "rustybackup", m.repository, p.name, tmp_path / "restored")
    assert (code, err) == (0, "")
    assert "rustybackup.engine" in imported
    assert (tmp_path / "restored").read_bytes() == p.read_bytes()


@pytest.mark.parametrize(
    "argv, environ",
    [
        (["archive-get", "pg", HISTORY, "d"], {}),  # no repository
        (["--repo", "s3://bucket/p", "archive-get", "pg", HISTORY, "d"], {}),
        (["--repo", "R", "archive-get", "pg", HISTORY, "d"], {"RUSTYBACKUP_CATALOG": "postgresql://x/y"}),
        (["--repo", "R", "archive-get", "files", HISTORY, "d"], {}),  # not a postgresql database
        (["--repo", "R", "archive-get", "unknown", HISTORY, "d"], {}),
        (["--repo", "R", "archive-get", "pg", "00000002.History", "d"], {}),  # not a WAL name
        (["--repo", "R", "archive-get", "pg", HISTORY, "d", "extra"], {}),
        (["--repo", "R", "-v", "archive-get", "pg", HISTORY, "d"], {}),
        (["--repo", "R", "archive-push", "pg", HISTORY], {}),
    ],
)
def test_everything_else_is_the_full_commands(
    manager: BackupManager, tmp_path: Path, argv: list[str], environ: dict[str, str]
) -> None:
    (tmp_path / "files").mkdir()
    manager.register_database("files", tmp_path / "files")
    argv = [str(manager.repository) if a == "R" else a for a in argv]
    assert archive_get_fast.answer(argv, environ) is None


def test_the_catalog_read_is_the_catalogs(manager: BackupManager, tmp_path: Path) -> None:
    """The fast path's own read of the catalog (sqlite3, read-only) against the catalog
    module's answers: a sealed name is there (digest and set), an unknown name is
    absent, and a database that is not postgresql, or unknown, is never answered (the
    full command names what is wrong)."""
    assert archive_get_fast.CATALOG_FILE == store.CATALOG_FILE
    assert (archive_get_fast.SETS_DIR, archive_get_fast.MANIFEST) == (store.SETS_DIR, store.MANIFEST)
    assert archive_get_fast.KEYS_DIR == keys.KEYS_DIR
    assert archive_get_fast._READ_FORMATS == manifest.READ_FORMATS
    files = _sealed(manager, tmp_path)
    (tmp_path / "files").mkdir()
    manager.register_database("files", tmp_path / "files")

    def lookup(repo: Path | str, database: str, name: str) -> tuple[str, str] | None | str:
        try:
            return archive_get_fast._lookup(str(repo), database, name)
        except archive_get_fast._Defer:
            return "defer"

    repo = manager.repository
    for name in [f.name for f in files] + [HISTORY, "000000010000000000000063"]:
        assert lookup(repo, "pg", name) == manager.catalog.archive_file("pg", name)
        assert lookup(repo, "files", name) == "defer"
        assert lookup(repo, "unknown", name) == "defer"
    assert lookup(repo, "pg", HISTORY) is None
    assert lookup(repo, "pg", files[0].name) is not None
    # The catalog's path goes into an SQLite URI: characters that mean something there.
    manager.catalog.close()
    odd = tmp_path / "a%3f?#b"
    shutil.copytree(manager.repository, odd)
    assert lookup(odd, "pg", HISTORY) is None
    assert lookup(odd, "pg", files[0].name) == lookup(repo, "pg", files[0].name)
    # A read leaves the catalog as it was: no file created beside a missing one either.
    (manager.repository / "catalog.db").rename(tmp_path / "moved.db")
    assert lookup(repo, "pg", HISTORY) == "defer"
    assert not (manager.repository / "catalog.db").exists()


def test_a_missing_repository_or_catalog_is_the_full_commands(manager: BackupManager, tmp_path: Path) -> None:
    argv = ["--repo", str(manager.repository), "archive-get", "pg", HISTORY, str(tmp_path / "d")]
    assert archive_get_fast.answer(argv, {}) == 1
    (manager.repository / "catalog.db").rename(tmp_path / "catalog.db")
    assert archive_get_fast.answer(argv, {}) is None  # the engine rebuilds a lost catalog
    argv[1] = str(tmp_path / "nowhere")
    assert archive_get_fast.answer(argv, {}) is None


DEFERRED = 99


@pytest.fixture(scope="module")
def parity(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, str]:
    """The launcher beside a `rustybackup-py` that only exits DEFERRED, a repository
    whose spool holds one file, and a directory to restore into."""
    base = tmp_path_factory.mktemp("get-parity")
    cmd = installed_next_to(base / "bin", f"#!/bin/sh\nexit {DEFERRED}")
    m = BackupManager(base / "repo")
    (base / "pgdata").mkdir()
    m.register_database("pg", base / "pgdata", kind="postgresql", dsn="host=/nonexistent")
    (p,) = queue(base, 1)
    archive.push(m, "pg", p, seal=False, ahead=False)
    (base / "out").mkdir()
    return cmd, m.repository, base / "out", p.name


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prefix=st.sampled_from(["--repo R", "--repo=R", "", "--repo", "--repo ''", "--repo s3://b/p", "-v --repo R"]),
    command=st.sampled_from(["archive-get", "archive-push"]),
    database=st.sampled_from(["pg", "", ".pg", "-pg", "../repo/wal/pg", "other"]),
    name=st.sampled_from(["spooled", "absent", "lower case", "history", "../pg/spooled", ".spooled"]),
    dest=st.sampled_from(["out/f", "out/", "-f", "out/sub/f", "out/spooled"]),
    extra=st.booleans(),
    env_repo=st.sampled_from([None, "", "R"]),
    catalog=st.booleans(),
)
@example("--repo R", "archive-get", "pg", "spooled", "out/f", False, None, False)
@example("--repo=R", "archive-get", "pg", "spooled", "out/spooled", False, None, False)
@example("", "archive-get", "pg", "spooled", "out/f", False, "R", False)
def test_the_scripts_answer_is_from_spools(
    parity: tuple[Path, Path, Path, str],
    prefix: str,
    command: str,
    database: str,
    name: str,
    dest: str,
    extra: bool,
    env_repo: str | None,
    catalog: bool,
) -> None:
    """The script answers exactly the command lines `from_spool` answers, writes the same
    bytes, and hands every other one on (here: to a stand-in `rustybackup-py`)."""
    cmd, repo, out, spooled = parity
    words = [{"R": str(repo), "''": ""}.get(w, w) for w in prefix.split()]
    wal_name = {
        "spooled": spooled,
        "absent": spooled[:-1] + "F",
        "lower case": spooled.lower(),
        "history": HISTORY,
        "../pg/spooled": f"../pg/{spooled}",
        ".spooled": f".{spooled}",
    }[name]
    target = str(out.parent / dest) if dest.startswith("out") else dest
    argv = [*words, command, database, wal_name, target, *(["--extra"] if extra else [])]
    env = {k: v for k, v in os.environ.items() if k not in ("RUSTYBACKUP_REPO", "RUSTYBACKUP_CATALOG")}
    if env_repo is not None:
        env["RUSTYBACKUP_REPO"] = str(repo) if env_repo == "R" else ""
    if catalog:
        env["RUSTYBACKUP_CATALOG"] = "postgresql://x/y"
    shutil.rmtree(out)
    out.mkdir()
    expected = archive_get_fast.from_spool(argv, env)
    python_wrote = {e.name: Path(e.path).read_bytes() for e in os.scandir(out)}
    shutil.rmtree(out)
    out.mkdir()
    got = subprocess.run([str(cmd), *argv], env=env, capture_output=True, check=False, cwd=out.parent).returncode
    assert got == (DEFERRED if expected is None else expected), argv
    assert {e.name: Path(e.path).read_bytes() for e in os.scandir(out)} == python_wrote
