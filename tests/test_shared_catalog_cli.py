"""The shared catalog from the command line: --catalog / RUSTYBACKUP_CATALOG on the
commands that read sets, ``catalog import|export`` (idempotent, checked), ``run --node``
and ``nodes``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import shared_catalog_support
from click.testing import CliRunner
from rustybackup.catalog import BackupCatalog
from rustybackup.catalog_move import export_from_shared, import_to_shared
from rustybackup.cli import cli
from rustybackup.errors import CatalogError

catalog_server = shared_catalog_support.catalog_server
catalog_url = shared_catalog_support.catalog_url


def rb(repo: Path, *args: str, catalog: str | None = None, env: dict[str, str] | None = None) -> Any:
    pre = ["--repo", str(repo)] + (["--catalog", catalog] if catalog else [])
    return CliRunner().invoke(cli, [*pre, *args], catch_exceptions=False, env=env)


def _sets(repo: Path, catalog: str | None = None) -> list[str]:
    r = rb(repo, "list", "--json", catalog=catalog)
    assert r.exit_code == 0, r.output
    return [s["id"] for s in json.loads(r.output)]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x" * 5000)
    assert rb(repo, "init").exit_code == 0
    assert rb(repo, "db", "add", "app", "--path", str(src)).exit_code == 0
    for kind in ("full", "incremental"):
        (src / "f").write_bytes(kind.encode() * 1000)
        r = rb(repo, "backup", "app", "--type", kind)
        assert r.exit_code == 0, r.output
    r = rb(repo, "job", "add", "nightly", "--db", "app", "--cron", "0 2 * * *", "--node-label", "east")
    assert r.exit_code == 0, r.output
    return repo


def test_import_then_export_round_trip(repo: Path, catalog_url: str) -> None:
    local = _sets(repo)
    r = rb(repo, "catalog", "import", "--json", catalog=catalog_url)
    assert r.exit_code == 0, r.output
    first = json.loads(r.output)
    assert first["rows"]["sets"] == 2 and first["rows"]["databases"] == 1 and first["jobs"] == 1
    # Idempotent: the second import finds everything in place and adds nothing.
    again = json.loads(rb(repo, "catalog", "import", "--json", catalog=catalog_url).output)
    assert again["rows"] == first["rows"]
    # The same answers from the shared catalog, given by flag or by environment.
    assert _sets(repo, catalog_url) == local
    r = rb(repo, "list", "--json", env={"RUSTYBACKUP_CATALOG": catalog_url})
    assert [s["id"] for s in json.loads(r.output)] == local
    r = rb(repo, "job", "list", "--json", catalog=catalog_url)
    jobs = json.loads(r.output)["jobs"]
    assert [j["id"] for j in jobs] == ["nightly"]
    # Back into a catalog.db that was lost.
    (repo / "catalog.db").unlink()
    for extra in ("catalog.db-wal", "catalog.db-shm", "scheduler.json"):
        (repo / extra).unlink(missing_ok=True)
    r = rb(repo, "catalog", "export", "--json", catalog=catalog_url)
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["rows"]["sets"] == 2 and out["jobs"] == 1
    assert _sets(repo) == local
    assert [j["id"] for j in json.loads(rb(repo, "job", "list", "--json").output)["jobs"]] == ["nightly"]


def test_restore_reads_the_shared_catalog(repo: Path, catalog_url: str, tmp_path: Path) -> None:
    import_to_shared(repo, catalog_url)
    (repo / "catalog.db").unlink()
    r = rb(repo, "restore", "app", "--to", str(tmp_path / "out"), catalog=catalog_url)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "f").read_bytes() == b"incremental" * 1000
    # No catalog.db came back: the shared catalog answered.
    assert not (repo / "catalog.db").exists()


def test_a_difference_after_the_copy_rolls_the_move_back(repo: Path, catalog_url: str) -> None:
    import_to_shared(repo, catalog_url)
    # A catalog.db whose row clashes with the shared catalog's UNIQUE (job, occurrence).
    import sqlite3

    conn = sqlite3.connect(repo / "catalog.db")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS sched_executions (id TEXT PRIMARY KEY, job_id TEXT NOT NULL, scheduled_for"
        " INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER, status TEXT NOT NULL, backup_set_id TEXT,"
        " error TEXT, bytes_read INTEGER, bytes_written INTEGER, owner TEXT, lease_until INTEGER,"
        " UNIQUE (job_id, scheduled_for))"
    )
    conn.execute("INSERT INTO sched_executions (id, job_id, scheduled_for, status) VALUES ('a', 'j', 1, 'skipped')")
    conn.commit()
    import_to_shared(repo, catalog_url)
    conn.execute("DELETE FROM sched_executions")
    conn.execute("INSERT INTO sched_executions (id, job_id, scheduled_for, status) VALUES ('b', 'j', 1, 'skipped')")
    conn.commit()
    conn.close()
    with pytest.raises(CatalogError, match="table sched_executions"):
        import_to_shared(repo, catalog_url)
    # Rolled back: the shared catalog still holds the first row only.
    shared = BackupCatalog(repo, url=catalog_url)
    assert [tuple(r) for r in shared._query("SELECT id FROM sched_executions")] == [("a",)]
    shared.close()
    # The other way clashes the same way, and is refused the same way.
    with pytest.raises(CatalogError, match="table sched_executions: UNIQUE constraint failed"):
        export_from_shared(repo, catalog_url)


def test_run_as_a_node_and_list_nodes(repo: Path, catalog_url: str) -> None:
    import_to_shared(repo, catalog_url)
    r = rb(repo, "run", "--once", "--node", "n1", "--labels", "east,ssd", catalog=catalog_url)
    assert r.exit_code == 0, r.output
    r = rb(repo, "nodes", "--json", env={"RUSTYBACKUP_CATALOG": catalog_url})
    assert r.exit_code == 0, r.output
    (n1,) = json.loads(r.output)
    assert n1["name"] == "n1" and n1["labels"] == ["east", "ssd"] and n1["live"] is False  # it left
    assert n1["running"] == []
    r = rb(repo, "nodes", catalog=catalog_url)
    assert r.exit_code == 0 and "n1" in r.output


def test_node_options_need_a_catalog(repo: Path) -> None:
    r = rb(repo, "run", "--once", "--node", "n1")
    assert r.exit_code == 2 and "--node and --labels need a shared catalog" in r.output
    r = rb(repo, "nodes")
    assert r.exit_code == 2 and "no shared catalog" in r.output
    r = rb(repo, "list", catalog="mysql://x")
    assert r.exit_code == 2 and "is not a postgresql:// URL" in r.output


def test_report_and_recovery_path_across_repositories(repo: Path, catalog_url: str) -> None:
    import_to_shared(repo, catalog_url)
    r = rb(repo, "catalog", "report", "--json", catalog=catalog_url)
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["total_sets"] == 2 and list(rep["repositories"]) == [f"file://{repo.resolve()}"]
    r = rb(repo, "catalog", "recovery-path", "app", "--json", catalog=catalog_url)
    assert r.exit_code == 0, r.output
    assert [s["id"] for s in json.loads(r.output)] == _sets(repo)
    r = rb(repo, "catalog", "recovery-path", "ghost", catalog=catalog_url)
    assert r.exit_code == 1 and "no repository has a database 'ghost'" in r.output
    r = rb(repo, "catalog", "recovery-path", "app", "--until", "yesterday", catalog=catalog_url)
    assert r.exit_code == 2 and "not an ISO 8601 instant" in r.output
