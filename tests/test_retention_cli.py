"""``rustybackup retention``: option parsing, policy construction, the guard, and output
(with a stand-in manager; test_retention_apply.py runs it on a real repository)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rustybackup.cli import cli, retention_cmds
from rustybackup.retention import RetentionDecision, RetentionPolicy


class FakeCatalog:
    def __init__(self) -> None:
        self.asked: list[tuple[str, RetentionPolicy]] = []


class FakeManager:
    def __init__(self) -> None:
        self.catalog = FakeCatalog()
        self.applied: list[tuple[str, RetentionPolicy, bool, list[RetentionDecision] | None]] = []

    def retention_plan(self, database: str, policy: RetentionPolicy) -> list[RetentionDecision]:
        self.catalog.asked.append((database, policy))
        return [
            RetentionDecision("f1", False, "obsolete: older than the 1st newest FULL f2"),
            RetentionDecision("f2", True, "1st newest FULL"),
        ]

    def apply_retention(
        self,
        database: str,
        policy: RetentionPolicy,
        dry_run: bool = True,
        *,
        plan: Sequence[RetentionDecision] | None = None,
    ) -> list[str]:
        self.applied.append((database, policy, dry_run, None if plan is None else list(plan)))
        return ["f1"]


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch) -> FakeManager:
    fake = FakeManager()
    monkeypatch.setattr(retention_cmds, "open_manager", lambda repo: fake)
    return fake


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def test_rules_combine_into_one_policy(manager: FakeManager, tmp_path: Path) -> None:
    result = run(
        "--repo",
        str(tmp_path),
        "retention",
        "orders",
        "--redundancy",
        "2",
        "--window",
        "1d12h",
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
    )
    assert result.exit_code == 0, result.output
    database, policy = manager.catalog.asked[0]
    assert database == "orders"
    assert policy == RetentionPolicy(full_copies=2, window=timedelta(hours=36), keep_daily=7, keep_weekly=4)
    assert manager.applied == []
    assert "1 kept, 1 to delete (dry run: pass --apply to delete them)" in result.output
    assert "1st newest FULL" in result.output


def test_apply_deletes_and_json_lists_the_decisions(manager: FakeManager, tmp_path: Path) -> None:
    result = run("--repo", str(tmp_path), "retention", "orders", "--window", "7d", "--apply", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["applied"] is True and data["deleted"] == ["f1"]
    assert data["policy"] == {"window": "604800s"}
    assert data["decisions"][1] == {"set_id": "f2", "keep": True, "reason": "1st newest FULL"}
    policy = RetentionPolicy.recovery_window(timedelta(days=7))
    # --apply carries out the very plan the command shows, not a second one.
    assert manager.applied == [
        ("orders", RetentionPolicy.recovery_window(timedelta(days=7)), False, manager.retention_plan("orders", policy))
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give a rule: --redundancy N, --window 7d, or --keep-daily 7"),
        (["--window", "7days"], "Invalid value for '--window': invalid duration '7days'"),
        (["--redundancy", "0"], "Invalid value for '--redundancy': 0 is not in the range x>=1"),
        (["--keep-daily", "-1"], "Invalid value for '--keep-daily': -1 is not in the range x>=0"),
    ],
)
def test_bad_rules_are_usage_errors(manager: FakeManager, tmp_path: Path, args: list[str], message: str) -> None:
    result = run("--repo", str(tmp_path), "retention", "orders", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert manager.catalog.asked == []


def test_a_repository_is_required(manager: FakeManager) -> None:
    result = CliRunner(env={"RUSTYBACKUP_REPO": None}).invoke(cli, ["retention", "orders", "--redundancy", "1"])
    assert result.exit_code == 2
    assert "no repository: pass --repo DIR or set RUSTYBACKUP_REPO" in result.output


def test_build_policy_is_the_union_of_the_rules() -> None:
    counts = dict.fromkeys(("last", "hourly", "daily", "weekly", "monthly", "yearly"), 0)
    assert retention_cmds.build_policy(3, None, counts) == RetentionPolicy.redundancy(3)
    counts["monthly"] = 12
    assert retention_cmds.build_policy(None, timedelta(days=7), counts) == RetentionPolicy(
        window=timedelta(days=7), keep_monthly=12
    )
