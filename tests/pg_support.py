"""Real PostgreSQL clusters for the tests: initdb under a temporary directory as an
unprivileged user, a Unix socket in that directory, started and stopped (bounded in
time) by the tests themselves.

When the suite runs as root, the clusters and everything that writes the repository run
as the ``postgres`` user (PostgreSQL refuses root), with the ambient capability
CAP_DAC_READ_SEARCH so that the archive_command can run this interpreter wherever it is
installed (under /root, say). The repository belongs to that user, as it would in
production, and the tests drive it through the CLI as that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import pytest

psycopg = pytest.importorskip(
    "psycopg",
    reason="psycopg 3 is not installed (pip install 'rustybackup[postgresql]')",
)

STOP_SECONDS = 30


def bindir() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(p.split("/")[4]),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def require_postgresql() -> Path:
    """The PostgreSQL bin directory, or a skip saying why there is none."""
    b = bindir()
    if b is None:
        pytest.skip("PostgreSQL is not installed (scripts/test.sh installs Debian's postgresql as root)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
    return b


def as_user() -> list[str]:
    """The prefix that runs a command as the cluster's user."""
    if os.geteuid() != 0:
        return []
    return [
        "setpriv",
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
    ]


def give(path: Path) -> None:
    """Hands `path` to the cluster's user (as root; a no-op otherwise)."""
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(path, pw.pw_uid, pw.pw_gid)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def workdir(prefix: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    give(d)
    return d


def rb(
    repo: Path, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``rustybackup --repo REPO ARGS`` as the cluster's user."""
    cmd = [*as_user(), sys.executable, "-m", "rustybackup", "--repo", str(repo), *args]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, env=env, cwd="/")
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def archive_command(repo: Path, name: str) -> str:
    return f"{sys.executable} -m rustybackup --repo {repo} archive-push {name} %p"


@dataclass
class Cluster:
    """One PostgreSQL data directory and the server on it."""

    bin: Path
    data: Path
    sockdir: Path
    port: int
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def dsn(self) -> str:
        return f"host={self.sockdir} port={self.port} user=postgres dbname=postgres"

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.env}
        proc = subprocess.run(
            [*as_user(), *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd="/",
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{args[0]} exited {proc.returncode}: {proc.stderr.strip()} {proc.stdout.strip()}")
        return proc

    @classmethod
    def init(
        cls,
        bin: Path,
        base: Path,
        *,
        checksums: bool = True,
        conf: dict[str, str] | None = None,
    ) -> Cluster:
        data, sockdir = base / "data", base / "sock"
        sockdir.mkdir()
        give(sockdir)
        c = cls(bin, data, sockdir, free_port(), base / "server.log")
        args = [
            str(bin / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "--wal-segsize=1",
            "-N",
        ]
        c.run(*args, *(["-k"] if checksums else []))
        c.configure(
            {
                "port": str(c.port),
                "listen_addresses": "''",
                "unix_socket_directories": f"'{sockdir}'",
                "shared_buffers": "16MB",
                "max_wal_size": "64MB",
                "min_wal_size": "4MB",
                "fsync": "off",
                "max_connections": "20",
                **(conf or {}),
            }
        )
        return c

    @classmethod
    def on(cls, bin: Path, data: Path, base: Path, conf: dict[str, str]) -> Cluster:
        """A server for a data directory that exists (a restore), on its own socket."""
        sockdir = base / "sock"
        sockdir.mkdir(exist_ok=True)
        give(sockdir)
        c = cls(bin, data, sockdir, free_port(), base / "server.log")
        c.configure({"port": str(c.port), "unix_socket_directories": f"'{sockdir}'", **conf})
        return c

    def configure(self, settings: dict[str, str]) -> None:
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as fh:
            fh.write("\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))

    def start(self, wait: bool = True) -> None:
        if not self.log.exists():
            self.log.touch()
            give(self.log)
        self.run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-t",
            "120",
            "-w" if wait else "-W",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stops the server if it runs, within STOP_SECONDS, then harder."""
        if not (self.data / "postmaster.pid").exists():
            return
        proc = self.run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-m",
            mode,
            "-t",
            str(STOP_SECONDS),
            "-w",
            "stop",
            check=False,
        )
        if proc.returncode != 0:
            self.kill()

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill(self) -> None:
        """kill -9 of the postmaster (its children exit when they notice)."""
        pid = self.pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + STOP_SECONDS
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        # The children hold the shared memory until they go.
        time.sleep(0.5)

    def connect(self) -> Any:
        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            cur = conn.execute(sql, args)
            return list(cur.fetchall()) if cur.description is not None else []

    def wait_promoted(self, timeout: float = 120, poll: float = 0.05) -> None:
        """Waits until recovery has ended (the server answers and is out of recovery),
        asking every `poll` seconds: a restore bench times this wait, so it must not add
        more than one poll to what recovery takes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.query("SELECT pg_is_in_recovery()") == [(False,)]:
                    return
            except psycopg.OperationalError:
                if self.pid() is None:
                    raise AssertionError(
                        f"the server stopped during recovery:\n{self.log.read_text()[-3000:]}"
                    ) from None
            time.sleep(poll)
        raise AssertionError(f"recovery did not end in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def switch_and_wait_archived(self, timeout: float = 120) -> str:
        """Ends the current segment and waits until the archiver has pushed it."""
        ((name,),) = self.query("SELECT pg_walfile_name(pg_switch_wal())")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ((last, failed),) = self.query("SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver")
            if last is not None and last >= name:
                return str(name)
            time.sleep(0.1)
        raise AssertionError(
            f"{name} was not archived in {timeout} s (last failed: {failed}):\n{self.log.read_text()[-3000:]}"
        )


@dataclass
class Archived:
    """A cluster that `archived_cluster` set up: its work directory, the repository its
    WAL is archived into, and the running server."""

    bin: Path
    base: Path
    repo: Path
    cluster: Cluster


@contextmanager
def archived_cluster(
    prefix: str,
    name: str,
    *,
    checksums: bool = True,
    conf: dict[str, str] | None = None,
    server_env: dict[str, str] | None = None,
    add: Sequence[str] = (),
) -> Iterator[Archived]:
    """A started cluster in a new work directory (`prefix`) whose WAL ``archive-push``
    archives into the repository beside it, where it is the postgresql database `name`
    (`add`: more ``db add`` options; `conf`: more settings; `server_env`: the server's
    environment, which its archive_command inherits). Stopped ("immediate") and removed
    after, whatever the test did."""
    bin = require_postgresql()
    base = workdir(prefix)
    repo = base / "repo"
    archiving = {"archive_mode": "on", "archive_command": f"'{archive_command(repo, name)}'"}
    cluster = Cluster.init(bin, base, checksums=checksums, conf={**archiving, **(conf or {})})
    cluster.env.update(server_env or {})
    try:
        rb(repo, "init")
        rb(repo, "db", "add", name, "--kind", "postgresql", "--pgdata", str(cluster.data), "--dsn", cluster.dsn, *add)
        cluster.start()
        yield Archived(bin, base, repo, cluster)
    finally:
        cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class Row:
    id: int
    ts: datetime
    returned_at: datetime


class Writer:
    """Commits one row per transaction, each holding its own clock_timestamp(), and
    remembers when each commit returned: the oracle of what "until T" must keep."""

    def __init__(self, cluster: Cluster, table: str = "rows", pause: float = 0.01) -> None:
        self.cluster, self.table, self.pause = cluster, table, pause
        self.rows: list[Row] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> Self:
        self.cluster.query(f"CREATE TABLE IF NOT EXISTS {self.table} (id bigint PRIMARY KEY, ts timestamptz NOT NULL)")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        try:
            with self.cluster.connect() as conn:
                ((start,),) = conn.execute(f"SELECT coalesce(max(id), 0) FROM {self.table}").fetchall()
                n = int(start)
                while not self._stop.is_set():
                    n += 1
                    ((ts,),) = conn.execute(
                        f"INSERT INTO {self.table} VALUES (%s, clock_timestamp()) RETURNING ts",
                        (n,),
                    ).fetchall()
                    self.rows.append(Row(n, ts, datetime.now(UTC)))
                    time.sleep(self.pause)
        except BaseException as exc:  # noqa: BLE001 - reported by the test that reads rows
            self.error = exc

    def instant_after(self, i: int) -> datetime:
        """An instant strictly between row i's commit (returned) and row i+1's start."""
        a, b = self.rows[i].returned_at, self.rows[i + 1].ts
        assert a < b, (a, b)
        return a + (b - a) / 2


@dataclass
class Restored:
    cluster: Cluster
    base: Path


def restore_and_start(
    bin: Path,
    repo: Path,
    name: str,
    until: datetime | None,
    *,
    archive: str | None = None,
) -> Iterator[Restored]:
    """Restores NAME to `until` as the cluster's user, starts a server on it and waits for
    recovery to end (archive_mode off unless `archive` gives an archive_command)."""
    base = workdir("rb-pg-restore-")
    target = base / "data"
    args = ["restore", name, "--to", str(target)]
    if until is not None:
        args += ["--until", until.isoformat()]
    c: Cluster | None = None
    try:
        rb(repo, *args)
        conf = {"archive_mode": "off"} if archive is None else {"archive_mode": "on", "archive_command": f"'{archive}'"}
        c = Cluster.on(bin, target, base, conf)
        c.start()
        c.wait_promoted()
        yield Restored(c, base)
    finally:
        if c is not None:
            c.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)
