"""``rustybackup demo`` runs the whole job and checks its own outcomes."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from rustybackup.cli import cli


def test_the_demo_runs_every_step_and_exits_zero(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    for step in (
        "FULL backup",
        "INCREMENTAL backup",
        "DIFFERENTIAL backup",
        "ARCHIVE_LOG backup",
        "verify FULL",
        "flip one bit",
        "restore to a point in time",
        "scheduler",
    ):
        assert step in result.output, step
    assert "detected" in result.output
    assert (tmp_path / "demo" / "restored" / "shop.db").exists()
    assert (tmp_path / "demo" / "repo" / "scheduler_config.json").exists()


def test_the_demo_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    result = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert f"demo directory {tmp_path} is not empty; pass an empty or new --dir" in result.output
    assert (tmp_path / "precious.txt").read_text() == "keep me"
