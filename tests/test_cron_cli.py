"""``rustybackup cron next``: output, JSON, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from rustybackup.cli import cli


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_next_prints_times_and_description() -> None:
    code, out, _ = run("cron", "next", "0 2 * * 1-5", "-n", "3", "--tz", "Europe/Berlin", "--after", "2025-01-01T00:00")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "0 2 * * 1-5  (Europe/Berlin): At 02:00, Monday through Friday"
    assert lines[1:] == ["2025-01-01T02:00:00+01:00", "2025-01-02T02:00:00+01:00", "2025-01-03T02:00:00+01:00"]


def test_next_json_for_scripts() -> None:
    code, out, _ = run("cron", "next", "@hourly", "-n", "2", "--after", "2025-01-01T00:30:00+00:00", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["expression"] == "0 * * * *"
    assert data["times"] == ["2025-01-01T01:00:00+00:00", "2025-01-01T02:00:00+00:00"]
    assert data["description"] == "At minute 0 past every hour"


def test_next_defaults_to_now() -> None:
    code, out, _ = run("cron", "next", "* * * * *", "-n", "1")
    assert code == 0 and len(out.splitlines()) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["61 * * * *"], "error: minute: 61 is out of range 0-59"),
        (["* * * * *", "--tz", "Nowhere/Land"], 'error: unknown time zone "Nowhere/Land"'),
        (["* * * * *", "--after", "yesterday"], "error: --after: 'yesterday' is not an ISO-8601 date and time"),
        (["* * * * *", "-n", "ten"], "error: -n: 'ten' is not a whole number"),
        (["* * * * *", "-n", "0"], "error: -n: 0 is out of range 1-100000"),
        (["0 0 30 2 *"], "error: the expression can never fire"),
    ],
)
def test_invalid_input_is_one_line_and_exit_code_2(args: list[str], message: str) -> None:
    code, out, err = run("cron", "next", *args)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith(message)


def test_python_dash_m_works_the_same() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rustybackup", "cron", "next", "0 2 * * *", "-n", "1", "--after", "2025-01-01"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1] == "2025-01-01T02:00:00+00:00"
    bad = subprocess.run(
        [sys.executable, "-m", "rustybackup", "cron", "next", "* * *"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and bad.stderr.strip() == "error: expected 5 fields, got 3"
