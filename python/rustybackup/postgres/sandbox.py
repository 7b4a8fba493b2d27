"""RESTORE_TEST of a postgresql set: the restored data directory is started by a
temporary PostgreSQL server (archive_mode off, no TCP, a Unix socket in a private
directory), which replays the WAL to the set's consistency point
(``recovery_target = 'immediate'``) through archive-get; then ``pg_amcheck`` checks every
table and B-tree index and an optional user SQL check runs. The server is always stopped
(fast, then immediate) before this returns."""

from __future__ import annotations

import glob
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .. import manifest
from ..errors import VerificationError
from .recovery import _conf_quote, restore_command

log = logging.getLogger(__name__)

START_SECONDS = 300


def bindir(server_version: int) -> Path:
    """The binaries of the set's major version (Debian's layout first, then PATH)."""
    major = server_version // 10000
    debian = Path(f"/usr/lib/postgresql/{major}/bin")
    if (debian / "pg_ctl").exists():
        return debian
    found = shutil.which("pg_ctl")
    if found is None:
        others = ", ".join(sorted(glob.glob("/usr/lib/postgresql/*/bin"))) or "none"
        raise VerificationError(
            f"restore test needs PostgreSQL {major}'s pg_ctl (not in /usr/lib/postgresql/{major}/bin or PATH; "
            f"found: {others})"
        )
    return Path(found).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _user(dsn: str | None) -> str:
    if dsn:
        try:
            from psycopg.conninfo import conninfo_to_dict

            user = conninfo_to_dict(dsn).get("user")
            if user:
                return str(user)
        except Exception:  # noqa: BLE001 - an unparsable dsn only loses the user name
            log.debug("cannot parse dsn %r for its user name", dsn)
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def check_restored(
    data: Path,
    info: manifest.PostgresInfo,
    repository: Path,
    database: str,
    dsn: str | None,
    *,
    sql: str | None = None,
) -> list[str]:
    """Starts a server on restored data directory `data`, waits for recovery, runs
    pg_amcheck and `sql`; returns the problems found (empty: the restore works).
    Raises VerificationError when this machine cannot run the check (root, no binaries)."""
    if os.geteuid() == 0:
        raise VerificationError(
            "the server was not started: PostgreSQL cannot run as root; run the restore test as the database's OS user"
        )
    import psycopg

    bin = bindir(info.server_version)
    (data / "backup_label").write_text(info.backup_label, encoding="utf-8")
    if info.tablespace_map:
        (data / "tablespace_map").write_text(info.tablespace_map, encoding="utf-8")
    (data / "pg_wal" / "archive_status").mkdir(parents=True, exist_ok=True)
    (data / "recovery.signal").write_text("", encoding="utf-8")
    with open(data / "postgresql.auto.conf", "a", encoding="utf-8") as fh:
        fh.write(
            f"\nrestore_command = {_conf_quote(restore_command(repository, database))}\n"
            "recovery_target = 'immediate'\nrecovery_target_action = 'promote'\n"
        )
    os.chmod(data, 0o700)
    sock = Path(tempfile.mkdtemp(prefix="rb-pgsock-"))
    logfile = data.parent / "restore-test-server.log"
    port = _free_port()
    opts = f"-c port={port} -c listen_addresses='' -c unix_socket_directories='{sock}' -c archive_mode=off"
    problems: list[str] = []
    ctl = [str(bin / "pg_ctl"), "-D", str(data)]
    try:
        start = subprocess.run(
            [*ctl, "-l", str(logfile), "-o", opts, "-w", "-t", str(START_SECONDS), "start"],
            capture_output=True, text=True, timeout=START_SECONDS + 30, check=False,
        )  # fmt: skip
        if start.returncode != 0:
            return [f"the server did not start on the restored data directory: {_tail(logfile)}"]
        conninfo = f"host={sock} port={port} user={_user(dsn)} dbname=postgres"
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
                    if conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,):
                        break
            except psycopg.OperationalError:
                pass
            if time.monotonic() > deadline:
                return [f"recovery did not end within {START_SECONDS} s: {_tail(logfile)}"]
            time.sleep(0.2)
        amcheck = subprocess.run(
            [str(bin / "pg_amcheck"), "-h", str(sock), "-p", str(port), "-U", _user(dsn), "--all", "--install-missing"],
            capture_output=True, text=True, timeout=3600, check=False,
        )  # fmt: skip
        if amcheck.returncode != 0:
            problems.append(f"pg_amcheck found problems: {(amcheck.stdout + amcheck.stderr).strip()[-2000:]}")
        if sql:
            try:
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
                    cur = conn.execute(sql)
                    row = cur.fetchone() if cur.description is not None else None
                if row is not None and (row[0] is None or row[0] is False):
                    problems.append(f"the check SQL returned {row[0]!r}: {sql}")
            except psycopg.Error as exc:
                problems.append(f"the check SQL failed: {exc}".strip())
    finally:
        stop = subprocess.run([*ctl, "-m", "fast", "-w", "-t", "60", "stop"], capture_output=True, check=False)
        if stop.returncode != 0 and (data / "postmaster.pid").exists():
            subprocess.run([*ctl, "-m", "immediate", "-w", "-t", "60", "stop"], capture_output=True, check=False)
        shutil.rmtree(sock, ignore_errors=True)
    return problems


def _tail(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-1500:].strip()
    except OSError:
        return "(no server log)"
