"""`rustybackup verify`: targets, levels, budget parsing, JSON, tables and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from rustybackup.cli import cli
from verify_support import Repo, read_index


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path)


def run(repo: Repo, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, ["--repo", str(repo.manager.repository), "verify", *args])
    return r.exit_code, r.stdout, r.stderr


def test_a_clean_database_exits_0_with_a_summary(repo: Repo) -> None:
    repo.backup("full")
    code, out, _ = run(repo, "db", "--level", "full")
    assert code == 0, out
    assert "OK: full verification of 1 set(s)" in out


def test_corruption_exits_1_with_a_table_and_json_names_the_block(repo: Repo) -> None:
    s = repo.backup("full")
    e = read_index(repo.piece(s))[0][2]
    repo.flip(repo.piece(s), e.offset)
    code, out, _ = run(repo, "--set", s.id, "--level", "full", "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["ok"] is False
    assert [(b["block_index"], b["offset"], b["set_id"]) for b in doc["corrupt_blocks"]] == [
        (e.block_index, e.offset, s.id)
    ]
    assert doc["marked"] == {s.id: "corrupt"}
    code, out, _ = run(repo, "--all", "--level", "standard")
    assert code == 1 and "bad_checksum" in out and "PROBLEMS FOUND" in out


def test_missing_data_exits_1(repo: Repo) -> None:
    s = repo.backup("full")
    repo.piece(s).unlink()
    code, out, _ = run(repo, "--all", "--level", "quick")
    assert code == 1 and "missing" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give exactly one of NAME, --set ID or --all"),
        (("db", "--all"), "give exactly one of NAME, --set ID or --all"),
        (("--all", "--level", "deep"), "'deep' is not one of"),
        (("--all", "--budget", "10 minutes"), "is not a duration like 90s, 10m, 1h or 2d"),
        (("--all", "--budget", "0m"), "must be longer than zero"),
        (("nope",), "'nope' is neither a backup set id nor a registered database"),
    ],
)
def test_usage_errors_exit_2_and_say_what_is_wrong(repo: Repo, args: tuple[str, ...], message: str) -> None:
    repo.backup("full")
    code, out, err = run(repo, *args)
    assert code == 2
    assert message in err


def test_a_budget_is_accepted_and_reported(repo: Repo) -> None:
    repo.backup("full")
    code, out, _ = run(repo, "--all", "--budget", "10m", "--json")
    assert code == 0
    assert json.loads(out)["complete"] is True
