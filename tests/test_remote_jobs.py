"""Scheduled jobs that write to another repository (job_targets.py): one job to a real S3
server (SeaweedFS), one to a local repository, from a scheduler whose own repository
stays empty; upload windows applied to the job's uploads; a missing target fails the run
with the reason and creates nothing; the job's target survives the configuration file."""

from __future__ import annotations

import json
import logging
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import shared_catalog_support
from click.testing import CliRunner
from engine_support import SimClock, snapshot_tree
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager, BackupScheduler, ScheduledBackup, ScheduledVerification
from rustybackup.cli import cli
from rustybackup.config import SchedulerConfig, load_config, parse_config, save_config
from rustybackup.enums import BackupType, ExecutionStatus
from rustybackup.errors import ConfigError
from s3_support import SeaweedFS, point_at

T0 = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
catalog_server = shared_catalog_support.catalog_server
catalog_url = shared_catalog_support.catalog_url


@pytest.fixture
def s3_env(s3_server: SeaweedFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SeaweedFS:
    return point_at(s3_server, monkeypatch, tmp_path / "cache-a")


def _tree(root: Path, seed: int) -> None:
    rnd = random.Random(seed)
    root.mkdir(parents=True)
    for i in range(4):
        (root / f"f{i}.bin").write_bytes(rnd.randbytes(rnd.randrange(1, 60_000)))


def _job(jid: str, database: str, **kw: object) -> ScheduledBackup:
    return ScheduledBackup(jid, jid, database, kw.pop("backup_type", BackupType.FULL), "0 * * * *", **kw)  # type: ignore[arg-type]


def test_jobs_write_to_their_own_repositories(
    s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    src_s3, src_local = tmp_path / "src-s3", tmp_path / "src-local"
    _tree(src_s3, 1)
    _tree(src_local, 2)
    url = s3_env.url(s3_prefix)
    BackupManager(url).register_database("app", src_s3)
    other = tmp_path / "other"
    BackupManager(other).register_database("app", src_local)
    home = BackupManager(tmp_path / "home")
    clock = SimClock(T0)
    s = BackupScheduler(home, clock=clock)
    # The database is registered in the targets only: the jobs are still accepted.
    s.add_job(_job("to-s3", "app", repository=url, upload_limits=("64MiB/s@00:00-00:00",)))
    s.add_job(_job("to-local", "app", repository=str(other)))
    caplog.set_level(logging.INFO, logger="rustybackup.upload_limits")
    made = s.execute_due_jobs(clock.advance(minutes=30))
    assert len(made) == 2
    runs = {e.job_id: e for e in s.history()}
    assert {j: e.status for j, e in runs.items()} == {
        "to-s3": ExecutionStatus.COMPLETED,
        "to-local": ExecutionStatus.COMPLETED,
    }
    s3_set, local_set = runs["to-s3"].backup_set_id, runs["to-local"].backup_set_id
    assert s3_set is not None and local_set is not None
    # The history says where each run's set went (a set id alone names no repository).
    assert (runs["to-s3"].repository, runs["to-local"].repository) == (url, str(other))
    assert runs["to-s3"].to_json()["repository"] == url
    # Each set is in its job's repository and nowhere else.
    keys = s3_env.client().list_keys(s3_env.bucket, s3_prefix + "/")
    assert f"{s3_prefix}/sets/{s3_set}/manifest.json" in keys
    assert not any(local_set in k for k in keys)
    assert BackupManager(other).catalog.set_ids() == {local_set}
    assert home.catalog.set_ids() == set()
    # The S3 job's upload went at its window's pace (the pacer set the store's limit);
    # the local job uploads nothing and set none.
    paced = [r.getMessage() for r in caplog.records if r.getMessage().startswith("upload limit now")]
    assert paced == ["upload limit now 64MiB/s"]
    # Another host restores the S3 set byte for byte from the bucket alone.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-b"))
    BackupManager(url, create=False).restore("app", tmp_path / "restored", backup_set_id=s3_set)
    assert snapshot_tree(tmp_path / "restored", with_meta=False) == snapshot_tree(src_s3, with_meta=False)


def test_run_pace_applies_to_a_target_without_its_own(
    s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "src"
    _tree(src, 3)
    url = s3_env.url(s3_prefix)
    BackupManager(url).register_database("app", src)
    home = BackupManager(tmp_path / "home")
    from rustybackup.upload_limits import UploadSchedule

    home.upload_limits = UploadSchedule.parse(["32MiB/s@00:00-00:00"])  # what `run --upload-limit` sets
    clock = SimClock(T0)
    s = BackupScheduler(home, clock=clock)
    s.add_job(_job("nightly", "app", repository=url, retention="redundancy=1"))
    s.add_job(
        ScheduledVerification("check", "check", "app", "quick", "15 * * * *", repository=url)  # type: ignore[arg-type]
    )
    caplog.set_level(logging.INFO, logger="rustybackup.upload_limits")
    first = s.execute_due_jobs(clock.advance(minutes=30))
    second = s.execute_due_jobs(clock.advance(hours=1))
    assert len(first) == len(second) == 1
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("upload limit now")] == [
        "upload limit now 32MiB/s"
    ] * 2
    # Retention ran on the target: only the newest FULL is left in the bucket.
    keys = s3_env.client().list_keys(s3_env.bucket, s3_prefix + "/sets/")
    assert {k.split("/")[2] for k in keys} == set(second)
    checks = [e for e in s.history(job_id="check")]
    assert checks and all(e.status is ExecutionStatus.COMPLETED for e in checks)


def test_a_missing_target_fails_the_run_and_creates_nothing(s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path) -> None:
    home = BackupManager(tmp_path / "home")
    clock = SimClock(T0)
    s = BackupScheduler(home, clock=clock)
    empty_dir = tmp_path / "not-a-repo"
    s.add_job(_job("to-dir", "app", repository=str(empty_dir)))
    s.add_job(_job("to-bucket", "app", repository=s3_env.url(s3_prefix)))
    assert s.execute_due_jobs(clock.advance(minutes=30)) == []
    errors = {e.job_id: (e.status, e.error or "") for e in s.history()}
    assert errors["to-dir"][0] is ExecutionStatus.FAILED
    assert f"target repository {empty_dir}: no repository there" in errors["to-dir"][1]
    assert errors["to-bucket"][0] is ExecutionStatus.FAILED and s3_prefix in errors["to-bucket"][1]
    assert not empty_dir.exists()
    assert s3_env.client().list_keys(s3_env.bucket, s3_prefix + "/") == {}
    # A database the target does not know is named in the history too.
    BackupManager(tmp_path / "other")
    s.add_job(_job("unknown-db", "nope", repository=str(tmp_path / "other")))
    s.execute_due_jobs(clock.advance(hours=1))
    failed = s.history(job_id="unknown-db")[0]
    assert failed.status is ExecutionStatus.FAILED and "nope" in (failed.error or "")


def test_target_and_limits_survive_the_configuration_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    job = _job(
        "j", "app", repository=str(tmp_path / "r"), upload_limits=("5MiB/s@09:00-18:00",), upload_tz="Europe/Berlin"
    )
    # A relative directory would be resolved in whichever directory the scheduler runs.
    with pytest.raises(ConfigError, match="field 'repository': 'relative/repo' is a relative path"):
        _job("k", "app", repository="relative/repo")
    path = tmp_path / "scheduler_config.json"
    save_config(path, SchedulerConfig(jobs={"j": job}))
    assert load_config(path).jobs["j"] == job
    verify = ScheduledVerification("v", "v", "app", "quick", "0 * * * *", repository="s3://bucket-a/p/")  # type: ignore[arg-type]
    assert verify.repository == "s3://bucket-a/p"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"repository": "s3://Bad/x"}, "job 'j' field 'repository': repository 's3://Bad/x': bucket 'Bad'"),
        ({"repository": "gs://b/x"}, "field 'repository': repository 'gs://b/x': scheme 'gs://' is not supported"),
        ({"repository": 7}, "job 'j' field 'repository': expected a string, got 7"),
        ({"upload_limits": ["5MiB/s@09:00-18:00"]}, "field 'upload_limits': paces the uploads to the job's target"),
        (
            {"repository": "s3://bucket-a", "upload_limits": ["5MiB/s@09:00-25:00"]},
            "field 'upload_limits': upload limit #1 '5MiB/s@09:00-25:00': end 25:00",
        ),
        (
            {"repository": "s3://bucket-a", "upload_limits": "5MiB/s@09:00-18:00"},
            "field 'upload_limits': expected a list",
        ),
        ({"repository": "s3://bucket-a", "upload_limits": ["1MiB/s@1:00-2:00"], "upload_tz": "Mars/Base"}, "Mars/Base"),
        ({"upload_tz": "Mars/Base"}, "job 'j' field 'upload_tz': zone: unknown time zone 'Mars/Base'"),
    ],
)
def test_bad_targets_in_the_file_are_named(entry: dict[str, object], message: str) -> None:
    doc = {
        "schema": 1,
        "jobs": [{"id": "j", "database": "app", "schedule": "0 * * * *", "backup_type": "full", **entry}],
    }
    with pytest.raises(ConfigError) as info:
        parse_config(json.dumps(doc), Path("/etc/sched.json"))
    assert message in str(info.value) and str(info.value).startswith("/etc/sched.json: ")


_bucket = st.from_regex(r"[a-z0-9][a-z0-9-]{1,20}[a-z0-9]", fullmatch=True)
_segment = st.from_regex(r"[A-Za-z0-9_.-]{1,8}", fullmatch=True).filter(lambda p: p not in (".", ".."))


@settings(deadline=None, max_examples=50)
@given(_bucket, st.lists(_segment, max_size=3), st.booleans())
def test_any_url_target_round_trips_through_the_file(bucket: str, segments: list[str], slash: bool) -> None:
    written = f"s3://{bucket}/" + "/".join(segments) + ("/" if slash else "")
    job = _job("j", "app", repository=written)
    # Oracle: the canonical form has no trailing slash, and no slash at all for the bucket's root.
    expect = f"s3://{bucket}" + ("/" + "/".join(segments) if segments else "")
    assert job.repository == expect
    text = json.dumps({"schema": 1, "jobs": [json.loads(json.dumps(_as_entry(job)))]})
    assert parse_config(text, Path("x.json")).jobs["j"] == job


def _as_entry(job: ScheduledBackup) -> dict[str, object]:
    from rustybackup.config import job_to_json

    return job_to_json(job, None)


def test_cli_job_add_takes_a_target(s3_env: SeaweedFS, s3_prefix: str, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["--repo", str(tmp_path / "home")]
    assert runner.invoke(cli, [*base, "init"]).exit_code == 0
    url = s3_env.url(s3_prefix)
    add = [*base, "job", "add", "off-site", "--db", "app", "--cron", "0 2 * * *", "--target", url]
    r = runner.invoke(cli, [*add, "--upload-limit", "50MiB/s@22:00-06:00", "--upload-tz", "Europe/Berlin"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, [*base, "job", "list", "--json"])
    row = json.loads(r.output)["jobs"][0]
    assert (row["repository"], row["upload_limits"]) == (url, ["50MiB/s@22:00-06:00"])
    assert url in runner.invoke(cli, [*base, "job", "list"]).output
    bad = runner.invoke(cli, [*base, "job", "add", "x", "--db", "app", "--cron", "0 2 * * *", "--target", "s3://B/x"])
    assert bad.exit_code != 0 and "field 'repository'" in bad.output and "'B'" in bad.output
    # Nothing was written to the bucket by editing jobs.
    assert s3_env.client().list_keys(s3_env.bucket, s3_prefix + "/") == {}
    # A relative --target is taken from where the command runs, and kept absolute.
    r = runner.invoke(cli, [*base, "job", "add", "near", "--db", "app", "--cron", "0 2 * * *", "--target", "other"])
    assert r.exit_code == 0, r.output
    rows = {j["id"]: j for j in json.loads(runner.invoke(cli, [*base, "job", "list", "--json"]).output)["jobs"]}
    assert rows["near"]["repository"] == str(Path.cwd() / "other")


def test_a_history_made_before_targets_gains_the_column(tmp_path: Path) -> None:
    import sqlite3

    from rustybackup.history import History

    db = tmp_path / "catalog.db"
    with sqlite3.connect(db) as old:
        # The table as it was before runs recorded their repository, with one run in it.
        old.execute(
            "CREATE TABLE sched_executions (id TEXT PRIMARY KEY, job_id TEXT NOT NULL, scheduled_for INTEGER NOT NULL,"
            " started_at INTEGER, finished_at INTEGER, status TEXT NOT NULL, backup_set_id TEXT, error TEXT,"
            " bytes_read INTEGER, bytes_written INTEGER, owner TEXT, lease_until INTEGER, UNIQUE (job_id, scheduled_for))"
        )
        old.execute(
            "INSERT INTO sched_executions VALUES ('e1', 'j', 0, 0, 1, 'completed', NULL, NULL, 1, 2, NULL, NULL)"
        )
    h = History(db)
    try:
        (row,) = h.query(None, None, None, None)
        assert (row.id, row.repository) == ("e1", None)
        claim = h.claim("j", T0, T0, timedelta(minutes=5))
        assert claim.execution_id is not None
        h.finish(claim.execution_id, ExecutionStatus.COMPLETED, T0, repository="s3://bucket-a/p")
        assert {e.id: e.repository for e in h.query("j", None, None, None)}[claim.execution_id] == "s3://bucket-a/p"
    finally:
        h.close()
    # A second open finds the column there and leaves it.
    History(db).close()


def test_a_node_runs_a_targeted_job_from_the_shared_catalog(catalog_url: str, tmp_path: Path) -> None:
    # The job list is the shared catalog's document: its target survives another node
    # loading it; the run registers in the target's own catalog (no claim fence there)
    # and the shared history records where it went.
    src = tmp_path / "src"
    _tree(src, 4)
    other = tmp_path / "other"
    BackupManager(other).register_database("app", src)
    clock = SimClock(T0)
    home_a = BackupManager(tmp_path / "home", clock=clock, catalog=catalog_url)
    home_b = BackupManager(tmp_path / "home", clock=clock, catalog=catalog_url)
    a = BackupScheduler(home_a, clock=clock, node="a", heartbeat=3600)
    b = BackupScheduler(home_b, clock=clock, node="b", heartbeat=3600)
    try:
        a.add_job(_job("to-other", "app", repository=str(other)))
        clock.advance(minutes=30)
        made = b.execute_due_jobs()
        assert len(made) == 1 and b.get_job("to-other").repository == str(other)
        assert BackupManager(other).catalog.set_ids() == set(made)
        assert home_a.catalog.set_ids() == set()
        (run,) = a.history(job_id="to-other")
        assert (run.status, run.backup_set_id, run.repository) == (ExecutionStatus.COMPLETED, made[0], str(other))
    finally:
        a.close()
        b.close()


def test_a_job_targeting_the_schedulers_own_repository_uses_its_manager(tmp_path: Path) -> None:
    from rustybackup.job_targets import JobTargets

    home = BackupManager(tmp_path / "home")
    opened: list[str] = []

    def opener(repository: str) -> BackupManager:
        opened.append(repository)
        return BackupManager(repository)

    targets = JobTargets(home, opener)
    assert targets.open(_job("own", "app", repository=str(tmp_path / "home"))) is home
    assert targets.open(_job("none", "app")) is home
    assert opened == []
    BackupManager(tmp_path / "other")
    other = targets.open(_job("other", "app", repository=str(tmp_path / "other")))
    assert opened == [str(tmp_path / "other")] and other is not home
    targets.release(other)
    targets.release(home)  # the scheduler's own stays open
    assert home.catalog.set_ids() == set()
