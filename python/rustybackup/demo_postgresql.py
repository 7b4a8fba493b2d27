"""``rustybackup demo --postgresql``: a real PostgreSQL cluster end to end. initdb with data
checksums, WAL archived by ``rustybackup archive-push``, a writer committing timestamped
rows while a FULL base backup runs, a restore to an instant between two commits that
PostgreSQL itself recovers (through ``archive-get``), and the recovered rows checked
against the writer's own log: exactly the rows committed by then."""

from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from .demo import DemoFailure

NAME = "demo"


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise DemoFailure("PostgreSQL is not installed (Debian: apt-get install postgresql); the plain demo needs none")
    return Path(initdb).parent


def _prefix() -> list[str]:
    """Runs a command as ``postgres`` when we are root (PostgreSQL refuses root); the
    ambient CAP_DAC_READ_SEARCH lets the archive_command run this interpreter wherever
    it lives."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise DemoFailure("running as root needs a 'postgres' user to run the server as") from None
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
            "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]  # fmt: skip


def _give(path: Path) -> None:
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(path, pw.pw_uid, pw.pw_gid)


def _run(*args: str, timeout: float = 300) -> str:
    proc = subprocess.run([*_prefix(), *args], capture_output=True, text=True, timeout=timeout, check=False, cwd="/")
    if proc.returncode != 0:
        raise DemoFailure(f"{Path(args[0]).name} {' '.join(args[1:3])} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def _rb(repo: Path, *args: str) -> str:
    return _run(sys.executable, "-m", "rustybackup", "--repo", str(repo), *args)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class _Server:
    bin: Path
    data: Path
    sock: Path
    port: int = field(default_factory=_port)

    @property
    def dsn(self) -> str:
        return f"host={self.sock} port={self.port} user=postgres dbname=postgres"

    def start(self, extra: str = "") -> None:
        opts = f"-c port={self.port} -c listen_addresses='' -c unix_socket_directories='{self.sock}' {extra}"
        _run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.data.parent / "server.log"),
             "-o", opts, "-w", "-t", "120", "start")  # fmt: skip

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run([*_prefix(), str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60",
                            "stop"], capture_output=True, check=False)  # fmt: skip

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)


@dataclass
class PgDemoResult:
    directory: Path
    rows_written: int
    rows_restored: int
    until: datetime


def run_postgresql_demo(directory: Path | None, console: Console) -> PgDemoResult:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise DemoFailure("the PostgreSQL demo needs psycopg 3: pip install 'rustybackup[postgresql]'") from None
    bin = _bindir()
    root = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="rustybackup-pgdemo-"))
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise DemoFailure(f"demo directory {root} is not empty; pass an empty or new --dir")
    root.chmod(0o755)
    _give(root)
    repo, sock = root / "repo", root / "sock"
    sock.mkdir()
    _give(sock)
    (root / "origin").mkdir()
    _give(root / "origin")
    origin = _Server(bin, root / "origin" / "data", sock)
    _run(str(bin / "initdb"), "-D", str(origin.data), "-U", "postgres", "--auth=trust", "-k", "--wal-segsize=1", "-N")
    push = f"{shlex.quote(sys.executable)} -m rustybackup --repo {shlex.quote(str(repo))} archive-push {NAME} %p"
    with open(origin.data / "postgresql.conf", "a", encoding="utf-8") as fh:
        fh.write(f"\narchive_mode = on\narchive_command = '{push}'\nshared_buffers = 16MB\n")
    _rb(repo, "init")
    _rb(repo, "db", "add", NAME, "--kind", "postgresql", "--pgdata", str(origin.data), "--dsn", origin.dsn)
    console.print(f"[bold]1.[/] cluster initialised with data checksums; archive_command = [cyan]{push}[/]")
    origin.start()
    restored: _Server | None = None
    try:
        log: list[tuple[int, datetime, datetime]] = []
        stop = threading.Event()
        errors: list[BaseException] = []

        def writer() -> None:
            try:
                with origin.connect() as conn:
                    conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY, at timestamptz NOT NULL)")
                    n = 0
                    while not stop.is_set():
                        n += 1
                        ((at,),) = conn.execute(
                            "INSERT INTO orders VALUES (%s, clock_timestamp()) RETURNING at", (n,)
                        ).fetchall()
                        log.append((n, at, datetime.now(UTC)))
                        time.sleep(0.01)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        time.sleep(1.0)
        _rb(repo, "backup", NAME, "--type", "full")
        backed_up = datetime.now(UTC)
        console.print(f"[bold]2.[/] FULL base backup taken while the writer committed ({len(log)} rows so far)")
        time.sleep(2.0)
        stop.set()
        thread.join(timeout=60)
        if errors:
            raise DemoFailure(f"the writer failed: {errors[0]}")
        with origin.connect() as conn:
            ((seg,),) = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchall()
            deadline = time.monotonic() + 120
            while conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone() < (seg,):
                if time.monotonic() > deadline:
                    raise DemoFailure(f"{seg} was not archived within 120 s")
                time.sleep(0.1)
        after = [i for i, r in enumerate(log[:-1]) if r[2] > backed_up]
        if not after:
            raise DemoFailure("the writer committed nothing after the backup")
        i = after[len(after) // 2]
        until = log[i][2] + (log[i + 1][1] - log[i][2]) / 2
        console.print(f"[bold]3.[/] {len(log)} rows committed; WAL archived up to {seg}")
        (root / "restored").mkdir()
        _give(root / "restored")
        target = root / "restored" / "data"
        _rb(repo, "restore", NAME, "--to", str(target), "--until", until.isoformat())
        restored = _Server(bin, target, sock)
        restored.start("-c archive_mode=off")
        deadline = time.monotonic() + 300
        while True:
            try:
                with restored.connect() as conn:
                    if conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,):
                        got = [int(r[0]) for r in conn.execute("SELECT id FROM orders ORDER BY id").fetchall()]
                        break
            except Exception:  # noqa: BLE001 - not accepting connections yet
                time.sleep(0.3)
            if time.monotonic() > deadline:
                raise DemoFailure("the restored server did not finish recovery within 300 s")
            time.sleep(0.2)
        want = [r[0] for r in log if r[1] <= until]
        console.print(f"[bold]4.[/] restored to {until.isoformat()} and recovered by PostgreSQL: {len(got)} rows")
        if got != want:
            raise DemoFailure(f"restored rows differ from the writer's log: {len(got)} rows, expected {len(want)}")
        console.print(
            f"    [green]exactly the {len(want)} rows committed by then, none of the {len(log) - len(want)} after[/]"
        )
        return PgDemoResult(root, len(log), len(got), until)
    finally:
        if restored is not None:
            restored.stop()
        origin.stop()
