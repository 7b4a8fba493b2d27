"""The repository commands: init, db add, backup, list, restore, report."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from rustybackup.cli import cli


def run(repo: Path, *args: str) -> tuple[int, str, str]:
    r = CliRunner(env={"COLUMNS": "250"}).invoke(cli, ["--repo", str(repo), *args])
    return r.exit_code, r.stdout, r.stderr


def test_cli_backup_list_restore_round_trip(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"hello" * 3000)
    assert run(repo, "init")[0] == 0
    code, out, _ = run(repo, "db", "add", "web", "--path", str(src), "--compression", "zstd")
    assert code == 0 and "registered web: files at" in out
    code, out, _ = run(repo, "backup", "web", "--type", "full", "--json")
    assert code == 0
    full = json.loads(out)
    assert full["backup_type"] == "full" and full["database"] == "web"
    (src / "a").write_bytes(b"hello" * 3000 + b"!")
    code, out, _ = run(repo, "backup", "web", "--tag", "x")
    assert code == 0 and ": incremental of web, read 14.6 KiB" in out
    code, out, _ = run(repo, "list", "web", "--json")
    sets = json.loads(out)
    assert [s["backup_type"] for s in sets] == ["full", "incremental"] and sets[1]["tags"] == ["x"]
    code, out, _ = run(repo, "list")
    assert code == 0 and "incremental" in out
    code, out, _ = run(repo, "restore", "web", "--to", str(tmp_path / "old"), "--set", full["id"])
    assert code == 0 and (tmp_path / "old" / "a").read_bytes() == b"hello" * 3000
    code, out, _ = run(repo, "restore", "web", "--to", str(tmp_path / "at"), "--until", full["finished_at"])
    assert code == 0 and (tmp_path / "at" / "a").read_bytes() == b"hello" * 3000
    code, out, _ = run(repo, "report", "--json")
    assert json.loads(out)["databases"]["web"]["sets"] == 2


def test_cli_errors_are_one_line_with_exit_codes(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    code, _, err = run(repo, "list")
    assert code == 1 and f"no repository at {repo}; run `rustybackup --repo {repo} init` first" in err
    run(repo, "init")
    code, _, err = run(repo, "backup", "ghost")
    assert code == 1 and err.strip() == "error: unknown database 'ghost' (registered: none)"
    code, _, err = run(repo, "restore", "x", "--to", str(tmp_path / "o"), "--until", "yesterday")
    assert code == 2 and "'yesterday' is not an ISO 8601 time" in err
