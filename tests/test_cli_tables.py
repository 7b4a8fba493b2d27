"""Tables never cut an id or a path short, at any terminal width (``rustybackup ... | cat``
in an 80-column pipe used to print ``20261…``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rich.console import Console
from rich.table import Table
from rustybackup.cli import cli
from rustybackup.cli.context import print_table


def run(repo: Path, columns: int, *args: str) -> Result:
    result = CliRunner(env={"COLUMNS": str(columns)}).invoke(cli, ["--repo", str(repo), *args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    src = tmp_path / ("a-source-directory-with-a-rather-long-name" * 2)
    src.mkdir()
    (src / "f").write_text("x")
    run(repo, 200, "init")
    run(repo, 200, "db", "add", "orders_database_primary", "--path", str(src))
    run(repo, 200, "backup", "orders_database_primary")
    run(
        repo,
        200,
        "job",
        "add",
        "nightly-orders-incremental-backup",
        "--db",
        "orders_database_primary",
        "--cron",
        "0 2 * * *",
        "--tz",
        "America/Argentina/Buenos_Aires",
    )
    return repo


@pytest.mark.parametrize("columns", [20, 40, 80])
def test_ids_names_and_paths_stay_whole(repo: Path, tmp_path: Path, columns: int) -> None:
    path = str(tmp_path / ("a-source-directory-with-a-rather-long-name" * 2))
    for args, whole in [
        (("db", "list"), ["orders_database_primary", path]),
        (
            ("job", "list"),
            ["nightly-orders-incremental-backup", "orders_database_primary", "America/Argentina/Buenos_Aires"],
        ),
        (("report",), ["orders_database_primary"]),
    ]:
        out = run(repo, columns, *args).output
        assert "…" not in out, (args, out)
        for text in whole:
            assert any(text in line for line in out.splitlines()), (args, text, out)


def test_a_table_that_fits_is_unchanged_and_prose_wraps_at_spaces() -> None:
    table = Table("id", "error")
    table.add_row("20261130T100916979972Z-2690d60b", "the piece is missing " * 4)
    console = Console(width=60, record=True)
    print_table(table, prose=("error",), console=console)
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 60
    assert any("20261130T100916979972Z-2690d60b" in line for line in lines)
    assert sum("the piece is missing" in line for line in lines) >= 4
