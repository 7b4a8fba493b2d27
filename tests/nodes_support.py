"""A driver for scheduler node processes (tests/node_child.py) on one shared catalog:
starts, kills, stops and resumes them, and moves the clock file they all read, one step
at a time, waiting after each step until every live node has handled the new instant
(its ``seen_clock``). Used by tests/test_nodes_procs.py and benches/test_nodes_bench.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from rustybackup import BackupScheduler
from rustybackup.jobs import Job
from rustybackup.nodes import SEEN_CHANNEL
from rustybackup.timestamps import to_us

HERE = Path(__file__).resolve().parent
#: The driver notifies this channel after moving the clock file (node_child.py listens).
CLOCK_CHANNEL = "rustybackup_test_clock"


def step_timeout() -> float:
    """How long a step may take before the driver gives up (RUSTYBACKUP_NODES_STEP_TIMEOUT)."""
    return float(os.environ.get("RUSTYBACKUP_NODES_STEP_TIMEOUT", "120"))


class Nodes:
    def __init__(
        self,
        url: str,
        base: Path,
        start: datetime,
        lease: timedelta,
        manager: str = "fake",
        heartbeat: float = 0.05,
    ) -> None:
        """`heartbeat`: real seconds between a node's background beats (each tick beats
        too, so a driver that steps the clock needs few)."""
        self.url, self.base, self.lease, self.manager = url, base, lease, manager
        self.heartbeat = heartbeat
        self.repo = base / "repo"
        self.repo.mkdir(parents=True, exist_ok=True)
        self.clock_file = base / "clock"
        self.now = start
        self._write_clock(start)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stopped: set[str] = set()
        self.extra: dict[str, dict[str, Any]] = {}
        self._seen: dict[str, int] = {}  # node -> the latest seen_clock it notified
        self._look = 0.0  # when to read the table next, in case a notice went missing
        self._db = self._connect()
        self._spawned = 0
        self._spare: tuple[subprocess.Popen[bytes], Path] | None = None

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.url, autocommit=True)
        conn.execute(f"LISTEN {SEEN_CHANNEL}")
        return conn

    def close(self) -> None:
        for name in list(self.procs):
            self.kill(name)
        if self._spare is not None:
            self._spare[0].kill()
            self._spare[0].wait(timeout=30)
            self._spare = None
        self._db.close()

    def _write_clock(self, moment: datetime) -> None:
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(moment.isoformat())
        os.replace(tmp, self.clock_file)
        try:  # wakes the nodes at once (they also look at the file every few ms)
            self._db.execute(f"NOTIFY {CLOCK_CHANNEL}")
        except (psycopg.OperationalError, AttributeError):  # the server restarting; before _db exists
            pass

    def clock(self) -> datetime:
        return self.now

    def add_jobs(self, jobs: Iterable[Job], manager: Any) -> None:
        """Adds jobs through an in-process node (then gone), as `rustybackup job add` would."""
        sched = BackupScheduler(manager, clock=self.clock, node="admin", lease=self.lease, heartbeat=3600)
        try:
            sched.add_jobs(jobs)
        finally:
            sched.close()

    def start(self, name: str, labels: Iterable[str] = (), **extra: Any) -> None:
        cfg = {
            "url": self.url,
            "repo": str(self.repo),
            "node": name,
            "clock": str(self.clock_file),
            "lease": self.lease.total_seconds(),
            "labels": list(labels),
            "ready": str(self.base / f"{name}.ready"),
            "manager": self.manager,
            "heartbeat": self.heartbeat,
            **self.extra.get(name, {}),
            **extra,
        }
        self.extra[name] = {k: v for k, v in cfg.items() if k in ("labels",)} | extra
        Path(cfg["ready"]).unlink(missing_ok=True)
        cfg["log"] = str(self.base / f"{name}.log")
        # A restart is a new process, but one started (interpreter and imports) while the
        # clock was moving: starting one costs a second of CPU on a busy machine, a
        # hundred kills a week of them.
        proc, path = self._spare if self._spare is not None else self._spawn()
        self._spare = None
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cfg))
        os.replace(tmp, path)
        self.procs[name] = proc
        self._seen.pop(name, None)  # the new process has handled nothing yet
        self._spare = self._spawn()
        deadline = time.monotonic() + 60
        while not Path(cfg["ready"]).exists():
            if self.procs[name].poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"node {name} did not start: {self.log(name)}")
            time.sleep(0.01)

    def _spawn(self) -> tuple[subprocess.Popen[bytes], Path]:
        """A node process that has loaded everything and waits for its config at the path."""
        self._spawned += 1
        path = self.base / f"spare-{self._spawned}.json"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
        log = open(self.base / f"spare-{self._spawned}.log", "ab")  # noqa: SIM115 - until it has a name
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "node_child.py"), str(path)], stdout=log, stderr=log, env=env
        )
        log.close()
        return proc, path

    def log(self, name: str) -> str:
        try:
            return (self.base / f"{name}.log").read_text()[-3000:]
        except OSError:
            return ""

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        if name in self.stopped:
            os.kill(proc.pid, signal.SIGCONT)
            self.stopped.discard(name)
        proc.kill()
        proc.wait(timeout=30)

    def pause(self, name: str) -> None:
        os.kill(self.procs[name].pid, signal.SIGSTOP)
        self.stopped.add(name)

    def resume(self, name: str) -> None:
        os.kill(self.procs[name].pid, signal.SIGCONT)
        self.stopped.discard(name)

    def live(self) -> list[str]:
        return [n for n in self.procs if n not in self.stopped]

    def step(self, delta: timedelta = timedelta(minutes=1), *, wait: bool = True) -> None:
        """Moves the clock and (unless told not to) waits until every live node has
        ticked at the new instant."""
        self.now += delta
        self._write_clock(self.now)
        if wait:
            self.wait_seen(self.live())

    def wait_seen(self, names: list[str]) -> None:
        """Waits until every one of `names` has handled the current instant: each node's
        beat notifies its ``seen_clock`` (nodes.SEEN_CHANNEL), so the driver sleeps
        until told, reading the table only now and then in case a notice was missed."""
        target = to_us(self.now)
        deadline = time.monotonic() + step_timeout()
        while True:
            if time.monotonic() >= self._look:
                self._read_seen()
                self._look = time.monotonic() + 0.5
            behind = [n for n in names if self._seen.get(n, -1) < target]
            if not behind:
                return
            for n in behind:
                if self.procs[n].poll() is not None:
                    raise AssertionError(f"node {n} exited: {self.log(n)}")
            if time.monotonic() > deadline:
                raise AssertionError(f"nodes {behind} did not reach {self.now}: {[self.log(n) for n in behind]}")
            try:
                for note in self._db.notifies(timeout=0.05, stop_after=1):
                    self._note(note)
            except psycopg.OperationalError:
                self._look = 0.0

    def _note(self, note: psycopg.Notify) -> None:
        name, _, seen = note.payload.partition(" ")
        if seen:
            self._seen[name] = max(self._seen.get(name, -1), int(seen))

    def _read_seen(self) -> None:
        while True:
            try:
                if self._db.closed:
                    self._db = self._connect()
                rows = self._db.execute("SELECT name, seen_clock FROM rustybackup.nodes").fetchall()
                break
            except psycopg.OperationalError:
                time.sleep(0.1)
        for name, seen in rows:
            if seen is not None:
                self._seen[name] = max(self._seen.get(name, -1), int(seen))

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        while True:
            try:
                return list(self._db.execute(sql, list(args)).fetchall())
            except psycopg.OperationalError:
                time.sleep(0.1)
                self._db = self._connect()

    def schema(self) -> str:
        ((schema,),) = self.query(
            "SELECT schema_name FROM rustybackup.repositories WHERE location = %s", (f"file://{self.repo.resolve()}",)
        )
        return str(schema)
