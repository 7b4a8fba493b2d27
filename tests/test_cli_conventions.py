"""Conventions every rustybackup command keeps (issue 8): --help with an example, --json on
listings, one-line errors (tracebacks only with --debug), exit codes 0/1/2."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import rustybackup
from click.testing import CliRunner
from rustybackup.cli import cli
from rustybackup.engine import BackupManager

# Commands that print a list or a table of records; each must offer --json for scripts.
LISTINGS = {"list", "report", "next", "hash", "retention", "runs", "plan", "show", "status"}


def commands(cmd: click.Command = cli, path: tuple[str, ...] = ("rustybackup",)) -> Iterator[tuple[str, click.Command]]:
    yield " ".join(path), cmd
    if isinstance(cmd, click.Group):
        # Through list_commands/get_command: the top-level group loads its commands lazily.
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None, f"{' '.join(path)} lists {name} but has no such command"
            yield from commands(sub, (*path, name))


ALL = list(commands())


@pytest.mark.parametrize(("name", "cmd"), ALL, ids=[n for n, _ in ALL])
def test_every_command_has_help_with_an_example(name: str, cmd: click.Command) -> None:
    result = CliRunner().invoke(cli, [*name.split()[1:], "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output and cmd.help, f"{name} --help has no Example: line"


@pytest.mark.parametrize(("name", "cmd"), [(n, c) for n, c in ALL if n.split()[-1] in LISTINGS])
def test_every_listing_has_json(name: str, cmd: click.Command) -> None:
    assert "--json" in [o for p in cmd.params for o in getattr(p, "opts", [])], f"{name} has no --json"


def test_invalid_settings_are_usage_errors_exit_2(tmp_path: Path) -> None:
    repo = str(tmp_path / "repo")
    runner = CliRunner()
    assert runner.invoke(cli, ["--repo", repo, "init"]).exit_code == 0
    result = runner.invoke(cli, ["--repo", repo, "db", "add", "bad name", "--path", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: database name 'bad name' is invalid: use 1-64 letters, digits, '_', '.' or '-', starting alphanumeric"
    )


def test_an_unexpected_failure_is_one_line_and_debug_shows_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: BackupManager) -> list[object]:
        raise RuntimeError("catalog cursor went away")

    repo = str(tmp_path / "repo")
    runner = CliRunner()
    runner.invoke(cli, ["--repo", repo, "init"])
    monkeypatch.setattr(BackupManager, "databases", broken)
    result = runner.invoke(cli, ["--repo", repo, "db", "list"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: unexpected RuntimeError: catalog cursor went away (rerun with --debug for the traceback)"
    ]
    debug = runner.invoke(cli, ["--repo", repo, "--debug", "db", "list"])
    assert isinstance(debug.exception, RuntimeError) and debug.exit_code == 1


def test_python_dash_m_runs_the_same_cli() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "rustybackup", "cron", "next", "0 2 * * *", "-n", "2", "--after", "2026-01-01T00:00"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.splitlines()[1:] == ["2026-01-01T02:00:00+00:00", "2026-01-02T02:00:00+00:00"]
    version = subprocess.run(
        [sys.executable, "-m", "rustybackup", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert version.strip() == f"rustybackup, version {rustybackup.__version__}"


def test_usage_errors_from_the_script_are_one_line_with_exit_2() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rustybackup", "verify", "--all", "--level", "bogus"],
        capture_output=True,
        text=True,
        env={**os.environ, "RUSTYBACKUP_REPO": "/nonexistent"},
    )
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert out.stderr.startswith("error: Invalid value for '--level': 'bogus' is not one of")
    assert out.stderr.rstrip().endswith("(see 'rustybackup verify --help')")
