"""``rustybackup plan`` and ``rustybackup metrics`` on a shared (PostgreSQL) catalog:
with ``--catalog`` they read its job list, its execution history and its sets (through
the same seams as for ``catalog.db``: the scheduler's history, the manager's catalog),
and without it the repository's own. The two sides are made to differ (other run
durations, another set, another retention window) so each answer shows where it came
from."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import shared_catalog_support
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from rustybackup.claims import SharedHistory
from rustybackup.cli import cli
from rustybackup.enums import ExecutionStatus
from rustybackup.history import History

catalog_server = shared_catalog_support.catalog_server
catalog_url = shared_catalog_support.catalog_url

AFTER = datetime(2026, 3, 2, 12, tzinfo=UTC)


def rb(repo: Path, *args: str, catalog: str | None = None) -> Any:
    pre = ["--repo", str(repo)] + (["--catalog", catalog] if catalog else [])
    r = CliRunner().invoke(cli, [*pre, *args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r


@pytest.fixture
def repo(tmp_path: Path, catalog_url: str) -> Path:
    """One set and a nightly job (2-day window) in catalog.db, copied into the shared
    catalog; then a second set and a weekly job (5-day window) in the shared one only."""
    repo = tmp_path / "repo"
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x" * 5000)
    rb(repo, "init")
    rb(repo, "db", "add", "app", "--path", str(src))
    rb(repo, "backup", "app", "--type", "full")
    rb(repo, "job", "add", "nightly", "--db", "app", "--cron", "0 2 * * *", "--retention", "window=2d")
    rb(repo, "catalog", "import", "--json", catalog=catalog_url)
    (src / "f").write_bytes(b"y" * 5000)
    rb(repo, "backup", "app", "--type", "full", catalog=catalog_url)
    rb(
        repo,
        "job",
        "add",
        "weekly",
        "--db",
        "app",
        "--cron",
        "0 3 * * 0",
        "--retention",
        "window=5d",
        catalog=catalog_url,
    )
    return repo


def _runs(history: History | SharedHistory, job: str, minutes: int, count: int) -> None:
    for day in range(count):
        at = datetime(2026, 2, 1, 2, tzinfo=UTC) + timedelta(days=day)
        claim = history.claim(job, at, at, timedelta(hours=1))
        assert claim.execution_id is not None
        history.finish(claim.execution_id, ExecutionStatus.COMPLETED, at + timedelta(minutes=minutes), bytes_read=10**6)
    history.close()


def _plan(repo: Path, catalog: str | None = None) -> dict[str, dict[str, Any]]:
    r = rb(repo, "plan", "--after", AFTER.isoformat(), "--json", catalog=catalog)
    return {row["id"]: row for row in json.loads(r.stdout)["jobs"]}


def test_plan_forecasts_from_the_shared_history(repo: Path, catalog_url: str) -> None:
    _runs(History(repo / "catalog.db"), "nightly", 30, 5)
    _runs(SharedHistory(catalog_url, repo, "n1", "n1@test"), "nightly", 90, 12)
    _runs(SharedHistory(catalog_url, repo, "n1", "n1@test"), "weekly", 45, 4)
    local = _plan(repo)
    assert set(local) == {"nightly"}
    assert local["nightly"]["runs"] == 5 and local["nightly"]["duration_p90"] == 30 * 60
    shared = _plan(repo, catalog_url)
    assert set(shared) == {"nightly", "weekly"}
    assert shared["nightly"]["runs"] == 12 and shared["nightly"]["duration_p90"] == 90 * 60
    assert shared["weekly"]["runs"] == 4 and shared["weekly"]["duration_p50"] == 45 * 60


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_read_the_shared_catalog(repo: Path, catalog_url: str, tmp_path: Path) -> None:
    sets = ("rustybackup_sets", (("database", "app"), ("status", "available")))
    window = ("rustybackup_recovery_window_seconds", (("database", "app"),))
    local = _samples(rb(repo, "metrics").stdout)
    assert local[sets] == 1 and local[window] == 2 * 86400
    shared = _samples(rb(repo, "metrics", catalog=catalog_url).stdout)
    assert shared[sets] == 2 and shared[window] == 5 * 86400
    out = tmp_path / "rustybackup.prom"
    rb(repo, "metrics", "--output", str(out), catalog=catalog_url)
    assert _samples(out.read_text())[sets] == 2
