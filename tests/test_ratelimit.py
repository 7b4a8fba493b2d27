"""IO rate limit: the token bucket's arithmetic under a fake clock (bytes never run ahead
of burst + rate x time, and a steady reader is held to exactly the rate), rate parsing,
the paced progress callback, and a real backup paced by a fake clock (no timing)."""

from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager
from rustybackup import ratelimit as rl
from rustybackup.enums import BackupType
from rustybackup.errors import ConfigError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


MiB = 1 << 20


@settings(deadline=None, max_examples=300)
@given(
    rate=st.floats(1024, 1e9),
    burst=st.floats(1, 1e8),
    steps=st.lists(st.tuples(st.integers(0, 64 * MiB), st.floats(0, 30)), min_size=1, max_size=40),
)
def test_reads_never_run_ahead_of_burst_plus_rate_times_time(
    rate: float, burst: float, steps: list[tuple[int, float]]
) -> None:
    clock = FakeClock()
    bucket = rl.TokenBucket(rate, burst, clock)
    t0, total = clock.now, 0
    for nbytes, idle in steps:
        total += nbytes
        delay = bucket.charge(nbytes)
        assert delay >= 0
        clock.now += delay  # the reader waits as told before reading on
        # The oracle: what was read by the time reading resumes fits in burst + rate * t.
        # (Float slack: the clock's last bit at ~1000 s is worth rate * 1e-13 bytes.)
        assert total <= burst + rate * (clock.now - t0) + 1e-6 * total + rate * 1e-9
        clock.now += idle


def test_a_steady_reader_is_held_to_the_rate() -> None:
    clock = FakeClock()
    bucket = rl.TokenBucket(4 * MiB, 16 * MiB, clock)
    start = clock.now
    for _ in range(100):  # 800 MiB in 8 MiB reports, reading takes no time
        clock.now += bucket.charge(8 * MiB)
    # The first 16 MiB ride on the full bucket; the other 784 MiB take 784 / 4 seconds.
    assert clock.now - start == pytest.approx(784 / 4)


def test_idle_time_refills_only_up_to_the_burst() -> None:
    clock = FakeClock()
    bucket = rl.TokenBucket(MiB, 2 * MiB, clock)
    assert bucket.charge(2 * MiB) == 0.0
    clock.now += 3600  # an hour idle is worth 2 MiB, not 3600 MiB
    assert bucket.charge(2 * MiB) == 0.0
    assert bucket.charge(MiB) == pytest.approx(1.0)


def test_bad_buckets_and_charges_are_refused() -> None:
    with pytest.raises(ConfigError, match="rate must be positive"):
        rl.TokenBucket(0)
    with pytest.raises(ConfigError, match="burst must be positive"):
        rl.TokenBucket(1, 0)
    with pytest.raises(ValueError, match="cannot charge -1"):
        rl.TokenBucket(1).charge(-1)


@pytest.mark.parametrize(
    ("text", "rate"),
    [("50MiB/s", 50 * MiB), ("800KB/s", 800_000), ("1GiB", 1 << 30), ("2.5 MB / s", 2_500_000), ("4096", 4096)],
)
def test_rates_parse(text: str, rate: float) -> None:
    assert rl.parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "fast", "50MiB/h", "-5MiB/s", "10 parsecs", "100B/s", "1e3MB"])
def test_bad_rates_name_the_field(text: str) -> None:
    with pytest.raises(ConfigError, match="--io-limit: "):
        rl.parse_rate(text, "--io-limit")


def test_rates_format_back() -> None:
    assert [rl.format_rate(r) for r in (50 * MiB, 1.5 * MiB, 1 << 30, 512)] == [
        "50MiB/s",
        "1.50MiB/s",
        "1GiB/s",
        "512B/s",
    ]


@dataclass
class Report:
    bytes_done: int


def test_paced_charges_the_bytes_between_reports_and_restarts_with_a_pass() -> None:
    clock = FakeClock()
    slept: list[float] = []
    seen: list[int] = []

    def sleep(d: float) -> None:
        slept.append(d)
        clock.now += d

    report = rl.paced(lambda p: seen.append(p.bytes_done), rl.TokenBucket(MiB, MiB, clock), sleep=sleep)
    for done in (MiB, 3 * MiB, 4 * MiB, MiB, 2 * MiB):  # the fourth report starts a new pass
        report(Report(done))
    assert seen == [MiB, 3 * MiB, 4 * MiB, MiB, 2 * MiB]
    assert slept == pytest.approx([2.0, 1.0, 1.0, 1.0])


def test_a_cancelled_backup_is_not_held_back() -> None:
    class Flag:
        def __init__(self) -> None:
            self.waits: list[float] = []

        def is_set(self) -> bool:
            return True

        def wait(self, timeout: float) -> bool:
            self.waits.append(timeout)
            return True

    flag = Flag()
    report = rl.paced(None, rl.TokenBucket(1024, 1024, FakeClock()), cancel=flag)
    report(Report(10 * MiB))
    assert flag.waits == []


def test_a_real_backup_is_paced_and_restores_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()

    def sleep(d: float) -> None:
        clock.now += d

    # The engine's reads take no fake time: only the bucket's waits move the clock.
    monkeypatch.setattr(rl, "time", types.SimpleNamespace(monotonic=clock, sleep=sleep))
    src = tmp_path / "src"
    src.mkdir()
    data = bytes(range(256)) * (40 * MiB // 256)
    (src / "big.bin").write_bytes(data)
    manager = BackupManager(tmp_path / "repo")
    manager.register_database("files", src)
    s = manager.backup("files", BackupType.FULL, io_limit=4 * MiB)
    waited = clock.now - 1000.0
    # 40 MiB at 4 MiB/s with a 16 MiB bucket: 6 s of waiting, less up to one report
    # (8 MiB, 2 s) that the engine had not reported when the pass ended.
    assert 4.0 - 1e-6 <= waited <= 6.0 + 1e-6
    manager.restore("files", tmp_path / "out", backup_set_id=s.id)
    assert (tmp_path / "out" / "big.bin").read_bytes() == data
    with pytest.raises(ConfigError, match="rate must be positive"):
        manager.backup("files", BackupType.FULL, io_limit=0)


def test_a_jobs_io_limit_is_kept_and_handed_to_the_backup(tmp_path: Path) -> None:
    from datetime import UTC, datetime
    from typing import Any

    from click.testing import CliRunner
    from rustybackup import BackupScheduler, ScheduledBackup
    from rustybackup.cli import cli
    from rustybackup.config import load_config
    from sched_fakes import FakeClock as SchedClock
    from sched_fakes import FakeManager

    class LimitedManager(FakeManager):
        limits: list[float | None]

        def backup(
            self,
            database: str,
            backup_type: BackupType,
            tags: tuple[str, ...] = (),
            progress: Any = None,
            cancel: Any = None,
            io_limit: float | None = None,
        ) -> Any:
            self.limits.append(io_limit)
            return super().backup(database, backup_type, tags, progress, cancel)

    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    clock = SchedClock(t0)
    manager = LimitedManager(tmp_path, clock=clock)
    manager.limits = []
    s = BackupScheduler(manager, clock=clock)
    s.add_job(ScheduledBackup("slow", "s", "app", BackupType.FULL, "0 1 * * *", io_limit=50 * MiB))
    s.add_job(ScheduledBackup("fast", "f", "db2", BackupType.FULL, "0 1 * * *"))
    s.execute_due_jobs(t0.replace(hour=1))
    assert sorted(manager.limits, key=str) == sorted([50 * MiB, None], key=str)
    kept = load_config(s.config_file).jobs["slow"]
    assert isinstance(kept, ScheduledBackup) and kept.io_limit == 50 * MiB
    with pytest.raises(ConfigError, match="job 'x' field 'io_limit'"):
        ScheduledBackup("x", "x", "app", BackupType.FULL, "0 1 * * *", io_limit=-1)
    repo = tmp_path / "cli"
    repo.mkdir()
    r = CliRunner().invoke(
        cli, ["--repo", str(repo), "job", "add", "j", "--db", "app", "--cron", "0 1 * * *", "--io-limit", "20MiB/s"]
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["--repo", str(repo), "job", "list", "--json"])
    assert '"io_limit": "20MiB/s"' in r.output
    r = CliRunner().invoke(
        cli, ["--repo", str(repo), "job", "add", "k", "--db", "app", "--cron", "0 1 * * *", "--io-limit", "lots"]
    )
    assert r.exit_code == 2 and "--io-limit: 'lots' is not a rate" in r.output
