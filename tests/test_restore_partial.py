"""Partial restore: ``--include`` gitignore patterns and ``restore_files`` in the API.
A matching directory brings its contents, the directories above a match come with their
metadata, and a hardlink whose first name is left out still gets its data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from fidelity_support import snapshot
from rustybackup import BackupManager, ConfigError
from rustybackup.cli import cli
from rustybackup.restore import RestoreOptions


def tree(tmp_path: Path) -> tuple[BackupManager, str, Path]:
    src = tmp_path / "src"
    for rel in ("etc/nginx/nginx.conf", "etc/nginx/sites/a.conf", "etc/hosts", "var/log/x.log", "var/lib/db"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(rel.encode() * 10)
    os.link(src / "var" / "lib" / "db", src / "etc" / "db-alias")
    (src / "etc" / "link").symlink_to("hosts")
    m = BackupManager(tmp_path / "repo")
    m.register_database("t", src)
    s = m.backup("t", "full")
    return m, s.id, src


def names(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_directory_pattern_brings_its_contents_and_its_parents(tmp_path: Path) -> None:
    m, sid, src = tree(tmp_path)
    out = tmp_path / "out"
    m.restore_files(sid, ["etc/nginx/"], out)
    assert names(out) == ["etc", "etc/nginx", "etc/nginx/nginx.conf", "etc/nginx/sites", "etc/nginx/sites/a.conf"]
    assert snapshot(out / "etc" / "nginx") == snapshot(src / "etc" / "nginx")
    assert os.stat(out / "etc").st_mtime_ns == os.stat(src / "etc").st_mtime_ns


def test_unanchored_globs_match_at_any_depth_and_negation_wins_last(tmp_path: Path) -> None:
    m, sid, _ = tree(tmp_path)
    out = tmp_path / "out"
    m.restore_files(sid, ["*.conf", "!a.conf", "*.log"], out)
    assert names(out) == ["etc", "etc/nginx", "etc/nginx/nginx.conf", "var", "var/log", "var/log/x.log"]


def test_a_hardlink_whose_first_name_is_left_out_gets_the_data(tmp_path: Path) -> None:
    m, sid, src = tree(tmp_path)
    out = tmp_path / "out"
    m.restore_files(sid, ["etc/db-alias", "etc/link"], out)
    assert (out / "etc" / "db-alias").read_bytes() == (src / "var" / "lib" / "db").read_bytes()
    assert os.readlink(out / "etc" / "link") == "hosts"
    assert not (out / "var").exists()


def test_nothing_matching_restores_nothing_and_a_bad_pattern_is_named(tmp_path: Path) -> None:
    m, sid, _ = tree(tmp_path)
    out = tmp_path / "out"
    m.restore_files(sid, ["no-such-thing"], out)
    assert names(out) == []
    with pytest.raises(ConfigError, match=r"\[z-a\]|invalid"):
        m.restore_files(sid, ["[z-a]"], tmp_path / "out2")


def test_cli_restore_include_repeatable(tmp_path: Path) -> None:
    m, sid, _ = tree(tmp_path)
    out = tmp_path / "out"
    r = CliRunner().invoke(
        cli,
        [
            "--repo",
            str(tmp_path / "repo"),
            "restore",
            "t",
            "--to",
            str(out),
            "--include",
            "hosts",
            "--include",
            "/var/log",
        ],
    )
    assert r.exit_code == 0, r.output
    assert names(out) == ["etc", "etc/hosts", "var", "var/log", "var/log/x.log"]


def test_partial_delta_restore_leaves_the_rest_of_the_tree_alone(tmp_path: Path) -> None:
    m, sid, src = tree(tmp_path)
    out = tmp_path / "out"
    m.restore("t", out)
    (out / "etc" / "hosts").write_bytes(b"changed")
    (out / "var" / "log" / "x.log").write_bytes(b"changed too")
    m.restore("t", out, options=RestoreOptions(include=("etc/hosts",), delta=True))
    assert (out / "etc" / "hosts").read_bytes() == (src / "etc" / "hosts").read_bytes()
    assert (out / "var" / "log" / "x.log").read_bytes() == b"changed too"


def test_partial_delta_delete_removes_extras_only_inside_the_selection(tmp_path: Path) -> None:
    m, sid, src = tree(tmp_path)
    out = tmp_path / "out"
    m.restore("t", out)
    (out / "etc" / "nginx" / "stray.conf").write_bytes(b"x")
    (out / "var" / "log" / "other.log").write_bytes(b"x")
    res = m.restore("t", out, options=RestoreOptions(include=("etc/nginx/",), delta=True, delete=True))
    assert res.report.removed == ["etc/nginx/stray.conf"]
    assert (out / "var" / "log" / "other.log").exists()
    assert snapshot(out / "etc" / "nginx") == snapshot(src / "etc" / "nginx")
