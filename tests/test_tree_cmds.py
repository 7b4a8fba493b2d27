"""``rustybackup ls``, ``diff`` and ``dump``: a set looked into without restoring it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from rustybackup import BackupManager, store
from rustybackup.cli import cli


def run(repo: Path, *args: str) -> tuple[int, str, str]:
    r = CliRunner(env={"COLUMNS": "250"}).invoke(cli, ["--repo", str(repo), *args])
    return r.exit_code, r.stdout, r.stderr


def two_sets(tmp_path: Path) -> tuple[Path, str, str, Path]:
    src = tmp_path / "src"
    (src / "etc" / "empty").mkdir(parents=True)
    (src / "etc" / "hosts").write_bytes(b"127.0.0.1 localhost\n")
    (src / "etc" / "gone").write_bytes(b"bye")
    (src / "etc" / "link").symlink_to("hosts")
    (src / "big").write_bytes(os.urandom(3 << 20))
    os.link(src / "big", src / "big2")
    m = BackupManager(tmp_path / "repo")
    m.register_database("t", src)
    s1 = m.backup("t", "full")
    (src / "etc" / "hosts").write_bytes(b"127.0.0.1 localhost myhost\n")
    (src / "etc" / "gone").unlink()
    (src / "etc" / "new").write_bytes(b"hello")
    os.chmod(src / "big", 0o600)
    s2 = m.backup("t", "incremental")
    return tmp_path / "repo", s1.id, s2.id, src


def test_ls_lists_every_entry_or_those_below_a_path(tmp_path: Path) -> None:
    repo, s1, _, src = two_sets(tmp_path)
    code, out, _ = run(repo, "ls", s1, "--json")
    assert code == 0
    rows = {r["path"]: r for r in json.loads(out)}
    assert sorted(rows) == ["big", "big2", "etc", "etc/empty", "etc/gone", "etc/hosts", "etc/link"]
    assert rows["etc/link"]["kind"] == "symlink" and rows["etc/link"]["target"] == "hosts"
    assert rows["big2"]["kind"] == "hardlink" and rows["big2"]["size"] == 3 << 20
    assert rows["etc/hosts"]["owner"]["uid"] == os.lstat(src / "etc" / "hosts").st_uid
    code, out, _ = run(repo, "ls", s1, "etc/")
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[-1] for line in lines if "->" not in line] == ["etc", "etc/empty", "etc/gone", "etc/hosts"]
    assert any(line.endswith("etc/link -> hosts") and line.startswith("l") for line in lines)
    code, _, err = run(repo, "ls", s1, "nope")
    assert code != 0 and "holds no entry 'nope'" in err


def test_diff_names_added_removed_and_changed_with_sizes(tmp_path: Path) -> None:
    repo, s1, s2, _ = two_sets(tmp_path)
    code, out, _ = run(repo, "diff", s1, s2, "--json")
    assert code == 0
    d = json.loads(out)
    assert d["added"] == [{"path": "etc/new", "kind": "file", "size": 5}]
    assert d["removed"] == [{"path": "etc/gone", "kind": "file", "size": 3}]
    changed = {c["path"]: c for c in d["changed"]}
    assert changed["etc/hosts"]["old_size"] == 20 and changed["etc/hosts"]["new_size"] == 27
    assert "digest" in changed["etc/hosts"]["fields"]
    assert changed["big"]["fields"] == ["mode"] and changed["big2"]["fields"] == ["mode"]
    # The directory's mtime changed with its entries; nothing else did.
    assert set(changed) == {"etc", "etc/hosts", "big", "big2"}
    code, out, _ = run(repo, "diff", s1, s2)
    assert code == 0 and "+ etc/new (5 bytes)" in out and "- etc/gone (3 bytes)" in out
    assert "M etc/hosts (20 -> 27 bytes; " in out


def test_dump_streams_one_file_byte_for_byte(tmp_path: Path) -> None:
    repo, s1, s2, src = two_sets(tmp_path)
    for sid, rel in ((s1, "big2"), (s2, "etc/hosts"), (s1, "etc/gone")):
        p = subprocess.run(
            [sys.executable, "-m", "rustybackup", "--repo", str(repo), "dump", sid, rel],
            capture_output=True,
            check=False,
        )
        assert p.returncode == 0, p.stderr
        want = {
            "big2": (src / "big").read_bytes(),
            "etc/hosts": (src / "etc" / "hosts").read_bytes(),
            "etc/gone": b"bye",
        }
        assert hashlib.sha256(p.stdout).digest() == hashlib.sha256(want[rel]).digest()
    for rel, message in (
        ("etc", "is a directory"),
        ("etc/link", "is a symbolic link to 'hosts'"),
        ("x", "holds no file"),
    ):
        p = subprocess.run(
            [sys.executable, "-m", "rustybackup", "--repo", str(repo), "dump", s1, rel],
            capture_output=True,
            check=False,
        )
        assert p.returncode != 0 and message in p.stderr.decode() and p.stdout == b""


def test_dump_of_a_damaged_block_fails_and_names_it(tmp_path: Path) -> None:
    repo, s1, _, _ = two_sets(tmp_path)
    piece = repo / "sets" / s1 / store.PIECE
    data = bytearray(piece.read_bytes())
    data[len(data) // 2] ^= 0xFF
    piece.write_bytes(bytes(data))
    p = subprocess.run(
        [sys.executable, "-m", "rustybackup", "--repo", str(repo), "dump", s1, "big"], capture_output=True, check=False
    )
    assert p.returncode != 0 and "big" in p.stderr.decode()


def test_dump_of_an_encrypted_set_opens_its_blocks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"secret")
    env = {**os.environ, "RUSTYBACKUP_PASSWORD": "pw"}
    repo = str(tmp_path / "repo")

    def cli_run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "rustybackup", "--repo", repo, *args], capture_output=True, env=env
        )

    assert cli_run("init", "--encryption").returncode == 0
    assert cli_run("db", "add", "t", "--path", str(src)).returncode == 0
    sid = json.loads(cli_run("backup", "t", "--json").stdout)["id"]
    p = cli_run("dump", sid, "f")
    assert p.returncode == 0 and p.stdout == b"secret", p.stderr
    # Without the key: one clear line, nothing on stdout.
    env.pop("RUSTYBACKUP_PASSWORD")
    p = cli_run("dump", sid, "f")
    assert p.returncode == 1 and p.stdout == b""
    assert "repository is encrypted" in p.stderr.decode()
