"""BackupScheduler: runs the right job at the right time, once.

Each job has a cursor (its latest handled occurrence) and a next due entry ``(due_at,
scheduled_for)``; ``due_at`` differs from ``scheduled_for`` only while a ``defer`` job
waits for its window. Due entries sit in a heap (stale entries are dropped lazily), so an
idle tick looks at the heap top only and costs the same with 100 or 10,000 jobs.

A tick plans under the lock (which occurrences run, which are SKIPPED and why), then runs
them in priority order without the lock, claiming each occurrence in the catalog
database first (see :mod:`rustybackup.history`). Misfires after downtime follow cron's
and anacron's lead: an occurrence later than ``misfire_grace`` is missed; ``run_once``
runs only the newest missed one, ``skip`` records them all SKIPPED.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from .catalog_db import REGISTRATION_FENCE
from .config import CONFIG_NAME, SchedulerConfig, load_config, save_config
from .enums import BackupType, ExecutionStatus, VerificationType
from .errors import BackupCancelled, ConfigError, CronError
from .forecast import DEFAULT_WINDOW as DEFAULT_FORECAST_RUNS
from .forecast import forecast_job, p90_overrun
from .history import History
from .job_targets import JobTargets
from .jobs import BackupExecution, Job, ScheduledBackup, ScheduledVerification, sort_key
from .locks import LeaseKeeper
from .notify import Notifier
from .retention import RetentionPolicy
from .run_events import DAMAGE_PREFIX, RunEvents
from .windows import BackupWindow, load_zone

if TYPE_CHECKING:
    from .claims import SharedHistory
    from .nodes import NodeRuntime

__all__ = ["BackupScheduler", "DueRun", "ManagerLike"]

log = logging.getLogger(__name__)

#: Missed occurrences recorded one by one per catch-up; older ones are summarised.
MAX_RECORDED_MISSES = 1000


class ManagerLike(Protocol):
    """What the scheduler needs from ``BackupManager``."""

    @property
    def repository(self) -> Path: ...

    def backup(
        self,
        database: str,
        backup_type: BackupType,
        tags: tuple[str, ...] = (),
        progress: Any = None,
        cancel: Any = None,
    ) -> Any: ...

    def apply_retention(self, database: str, policy: Any, dry_run: bool = False) -> list[str]: ...


@dataclass(frozen=True)
class DueRun:
    """An occurrence the next tick will start: ``due_at`` is when it became runnable."""

    job_id: str
    scheduled_for: datetime
    due_at: datetime
    priority: int
    catch_up: bool = False


@dataclass
class _Plan:
    run: DueRun | None
    skipped: list[tuple[datetime, str]]
    next_due: tuple[datetime, datetime] | None  # (due_at, scheduled_for)
    cursor: datetime


def _utc_now() -> datetime:
    return datetime.now(UTC)


class BackupScheduler:
    """Jobs, windows, a heap of next due times, and the loop that runs them.

    With a manager on a shared catalog (``BackupManager(repo, catalog="postgresql://...")``)
    the scheduler is a node (nodes.py): ``node`` names it (default: the host name),
    ``labels`` are what pinned jobs ask for, ``max_concurrent`` caps its runs at once,
    ``heartbeat`` is the seconds between lease renewals (default a third of ``lease``).
    Jobs, windows and history then live in the catalog; without ``node`` such a
    scheduler only edits jobs and reads history."""

    def __init__(
        self,
        manager: ManagerLike,
        config_path: Path | str | None = None,
        clock: Callable[[], datetime] | None = None,
        *,
        lease: timedelta = timedelta(minutes=5),
        misfire_grace: timedelta = timedelta(minutes=1),
        notifier: Notifier | None = None,
        node: str | None = None,
        labels: Iterable[str] = (),
        max_concurrent: int = 1,
        heartbeat: float | None = None,
    ) -> None:
        self._manager = manager
        self._clock = clock or _utc_now
        self._lease = lease
        self._grace = misfire_grace
        # Hooks and notifications (run_events.py); the notifier is made from the
        # environment on first use unless given.
        self.events = RunEvents(notifier)
        repo = Path(manager.repository)
        where = Path(config_path) if config_path is not None else repo
        self.config_file = where if where.suffix == ".json" else where / CONFIG_NAME
        self._lock = threading.RLock()
        self._changed = threading.Event()
        self._batch_depth = 0
        self._dirty = False
        self._leases = LeaseKeeper(self._renew, lease.total_seconds() / 3)
        # Jobs that name another repository run on a manager opened on it (job_targets.py).
        self._targets = JobTargets(manager)
        # With a shared catalog (the manager's is PostgreSQL) this scheduler is a node
        # (nodes.py): jobs, windows and history live in the catalog, claims are fenced.
        url = getattr(manager, "catalog_url", None)
        self.node: NodeRuntime | None = None
        if url is not None:
            from .nodes import NodeRuntime

            self.node = NodeRuntime(
                url,
                repo,
                node or socket.gethostname(),
                labels=labels,
                lease=lease,
                clock=self._now,
                max_concurrent=max_concurrent,
                heartbeat=heartbeat,
                member=node is not None,
            )
        elif node is not None:
            raise ConfigError(f"node {node!r}: a node needs a shared catalog (BackupManager(repo, catalog=URL))")
        # Refuses to start on a corrupt file: ConfigError propagates from here.
        self._config: SchedulerConfig = self.node.load_config() if self.node else load_config(self.config_file)
        self._history: History | SharedHistory = self.node.history if self.node else History(repo / "catalog.db")
        now = self._now()
        self._history.recover(now)
        last = self._history.last_scheduled()
        self._cursor: dict[str, datetime] = {}
        self._due: dict[str, tuple[datetime, datetime]] = {}
        self._heap: list[tuple[datetime, str]] = []
        for job in self._config.jobs.values():
            start = max(filter(None, (last.get(job.id), self._config.added_at.get(job.id))), default=now)
            self._cursor[job.id] = start
            try:
                self._schedule_next(job)
            except CronError as exc:  # a cursor near year 9999: damage in the file or the history
                raise ConfigError(
                    f"{self.config_file}: job {job.id!r}: no run after {start.isoformat()} "
                    f"(when it was added or last ran): {exc}"
                ) from None

    def _renew(self, exec_id: str) -> None:
        now = self._now()
        if self.node is not None:
            self.node.history.renew(exec_id, now + self._lease, now)  # never revives a lapsed lease
        else:
            self._history.renew(exec_id, now + self._lease)

    # --- time -----------------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ConfigError("clock: must return an aware datetime")
        return now

    # --- persistence ------------------------------------------------------------------------

    def _save(self) -> None:
        if self._batch_depth:
            self._dirty = True
        else:
            self._write_config()
        self._changed.set()

    def _write_config(self) -> None:
        if self.node is None:
            save_config(self.config_file, self._config)
            return
        try:
            self.node.save_config(self._config)
        except ConfigError:
            self._adopt_config(self.node.load_config())  # another node's change wins
            raise

    def _adopt_config(self, config: SchedulerConfig) -> None:
        """Takes the job list another node saved: new jobs start from the shared history
        (or when they were added), changed ones are rescheduled, removed ones dropped."""
        with self._lock:
            old, self._config = self._config.jobs, config
            now = self._now()
            last = self._history.last_scheduled()
            for jid in [j for j in self._cursor if j not in config.jobs]:
                self._cursor.pop(jid, None)
                self._due.pop(jid, None)
            for job in config.jobs.values():
                if job.id not in self._cursor:
                    found = (last.get(job.id), config.added_at.get(job.id))
                    self._cursor[job.id] = max(filter(None, found), default=now)
                    self._schedule_next(job)
                elif old.get(job.id) != job:
                    self._schedule_next(job)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Groups many changes into one atomic save (adding 10,000 jobs: one write)."""
        with self._lock:
            self._batch_depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._batch_depth -= 1
                if self._batch_depth == 0 and self._dirty:
                    self._dirty = False
                    self._write_config()

    # --- windows ---------------------------------------------------------------------------

    def add_window(self, window: BackupWindow, *, replace: bool = False) -> None:
        with self._lock:
            if window.id in self._config.windows and not replace:
                raise ConfigError(f"window {window.id!r}: already exists (remove it first or pass replace=True)")
            self._config.windows[window.id] = window
            for job in self._config.jobs.values():
                if job.window_id == window.id:
                    self._schedule_next(job)
            self._save()

    def remove_window(self, window_id: str) -> None:
        with self._lock:
            if window_id not in self._config.windows:
                raise ConfigError(f"window {window_id!r}: no such window")
            users = sorted(j.id for j in self._config.jobs.values() if j.window_id == window_id)
            if users:
                raise ConfigError(f"window {window_id!r}: still used by job(s) {', '.join(users)}")
            del self._config.windows[window_id]
            self._save()

    def list_windows(self) -> list[BackupWindow]:
        with self._lock:
            return sorted(self._config.windows.values(), key=lambda w: w.id)

    # --- jobs -------------------------------------------------------------------------------

    def add_job(self, job: Job, *, replace: bool = False) -> None:
        """Adds (or with ``replace`` updates) a job; saved atomically unless in ``batch()``."""
        if not isinstance(job, (ScheduledBackup, ScheduledVerification)):
            raise ConfigError(f"add_job: expected a ScheduledBackup or ScheduledVerification, got {job!r}")
        with self._lock:
            if job.id in self._config.jobs and not replace:
                raise ConfigError(f"job {job.id!r}: duplicate id (remove it first or pass replace=True)")
            if job.window_id is not None and job.window_id not in self._config.windows:
                raise ConfigError(f"job {job.id!r} field 'window_id': unknown window {job.window_id!r}")
            self._check_database(job)
            now = self._now()
            self._config.jobs[job.id] = job
            self._config.added_at.setdefault(job.id, now)
            self._cursor.setdefault(job.id, now)
            self._schedule_next(job)
            self._save()

    def add_jobs(self, jobs: Iterable[Job]) -> None:
        """Adds many jobs with one save; all or nothing if one is invalid."""
        with self._lock, self.batch():
            snapshot = (dict(self._config.jobs), dict(self._config.added_at), dict(self._cursor), dict(self._due))
            try:
                for job in jobs:
                    self.add_job(job)
            except BaseException:
                self._config.jobs, self._config.added_at, self._cursor, self._due = snapshot
                self._dirty = False
                raise

    def add_verification(
        self, id: str, database: str, level: VerificationType | str, schedule: str, **options: Any
    ) -> ScheduledVerification:
        """Schedules ``Verifier(manager).verify(database, level)``; options as for jobs."""
        job = ScheduledVerification(
            id=id,
            name=options.pop("name", f"verify {database}"),
            database=database,
            level=level,  # type: ignore[arg-type]  # a level name is converted (and checked) by the job
            schedule=schedule,
            **options,
        )
        self.add_job(job)
        return job

    def remove_job(self, job_id: str) -> None:
        with self._lock:
            if job_id not in self._config.jobs:
                raise ConfigError(f"job {job_id!r}: no such job")
            del self._config.jobs[job_id]
            self._config.added_at.pop(job_id, None)
            self._cursor.pop(job_id, None)
            self._due.pop(job_id, None)
            self._save()

    def get_job(self, job_id: str) -> Job:
        with self._lock:
            try:
                return self._config.jobs[job_id]
            except KeyError:
                raise ConfigError(f"job {job_id!r}: no such job") from None

    def list_jobs(self) -> list[Job]:
        with self._lock:
            return sorted(self._config.jobs.values(), key=lambda j: j.id)

    def set_job_enabled(self, job_id: str, enabled: bool) -> None:
        """Per-job switch; re-enabling does not catch up on the disabled period."""
        with self._lock:
            job = self.get_job(job_id)
            if job.enabled == enabled:
                return
            self._config.jobs[job_id] = job.with_changes(enabled=enabled)
            if enabled:
                self._cursor[job_id] = max(self._cursor[job_id], self._now())
                self._schedule_next(self._config.jobs[job_id])
            self._save()

    @property
    def enabled(self) -> bool:
        return self._config.enabled

    def enable(self) -> None:
        """Switches the whole scheduler on; the time it was off is not caught up."""
        with self._lock:
            if self._config.enabled:
                return
            self._config.enabled = True
            now = self._now()
            for job in self._config.jobs.values():
                self._cursor[job.id] = max(self._cursor[job.id], now)
                self._schedule_next(job)
            self._save()

    def disable(self) -> None:
        with self._lock:
            self._config.enabled = False
            self._save()

    def _check_database(self, job: Job) -> None:
        """A job for a database the repository does not know is an error, when the
        manager can list its databases (``BackupManager.databases()``). A job for another
        repository is checked when it runs (job_targets.py: no network to edit jobs)."""
        if job.repository is not None:
            return
        lister = getattr(self._manager, "databases", None)
        if callable(lister):
            names = {getattr(d, "name", d) for d in lister()}
            if job.database not in names:
                raise ConfigError(f"job {job.id!r} field 'database': unknown database {job.database!r}")

    # --- next times ------------------------------------------------------------------------

    def _window(self, job: Job) -> BackupWindow | None:
        return self._config.windows.get(job.window_id) if job.window_id else None

    def _due_at(self, job: Job, scheduled_for: datetime) -> datetime:
        window = self._window(job)
        if window is not None and job.window_policy == "defer":
            return window.next_open(scheduled_for)
        return scheduled_for

    def _schedule_next(self, job: Job, pending: datetime | None = None, not_before: datetime | None = None) -> None:
        """Sets the job's next due entry from its cursor (or keeps ``pending`` waiting)."""
        if pending is not None:
            due_at = self._due_at(job, max(pending, not_before or pending))
            entry = (due_at, pending)
        else:
            t = job.cron.next_after(self._cursor[job.id])
            entry = (self._due_at(job, t), t)
        self._due[job.id] = entry
        heapq.heappush(self._heap, (entry[0], job.id))

    def _valid(self, due_at: datetime, job_id: str) -> bool:
        entry = self._due.get(job_id)
        return entry is not None and entry[0] == due_at

    def next_run_times(self) -> dict[str, datetime]:
        """When each enabled job next becomes runnable (empty while the scheduler is off)."""
        with self._lock:
            if not self._config.enabled:
                return {}
            jobs = self._config.jobs
            return {jid: entry[0] for jid, entry in self._due.items() if jobs[jid].enabled}

    def _next_wake(self) -> datetime | None:
        with self._lock:
            heap = self._heap
            while heap and not (self._valid(*heap[0]) and self._config.jobs[heap[0][1]].enabled):
                heapq.heappop(heap)
            return heap[0][0] if heap and self._config.enabled else None

    def _due_ids(self, now: datetime) -> list[str]:
        """Ids of enabled jobs due at ``now``: walks only heap nodes <= now (no change)."""
        heap, stack = self._heap, [0]
        found: dict[str, None] = {}
        while stack:
            i = stack.pop()
            if i >= len(heap) or heap[i][0] > now:
                continue
            due_at, jid = heap[i]
            if self._valid(due_at, jid) and self._config.jobs[jid].enabled:
                found[jid] = None
            stack.extend((2 * i + 1, 2 * i + 2))
        return list(found)

    def _pop_due(self, now: datetime) -> list[str]:
        """Pops every heap entry <= now; returns the ids of the enabled jobs they were due for.

        Stale entries (a job rescheduled, removed or disabled) are dropped on the way; a
        disabled job gets a fresh entry when it is enabled again.
        """
        heap = self._heap
        found: dict[str, None] = {}
        while heap and heap[0][0] <= now:
            due_at, jid = heapq.heappop(heap)
            if self._valid(due_at, jid) and self._config.jobs[jid].enabled:
                found[jid] = None
        return list(found)

    # --- planning --------------------------------------------------------------------------

    def _plan(self, job: Job, now: datetime) -> _Plan:
        """What a tick at ``now`` does with ``job`` (pure: nothing is changed)."""
        due_at, t = self._due[job.id]
        window = self._window(job)
        occurrences: list[tuple[datetime, datetime]] = []
        elided = 0
        while t <= now:
            eff = self._due_at(job, t)
            if eff > now:
                break
            occurrences.append((t, eff))
            if len(occurrences) > MAX_RECORDED_MISSES:
                occurrences.pop(0)
                elided += 1
            t = job.cron.next_after(t)
        if not occurrences:
            return _Plan(None, [], self._due[job.id], self._cursor[job.id])
        last_t, last_eff = occurrences[-1]
        late = now - last_eff > self._grace
        skipped: list[tuple[datetime, str]] = []
        for t_old, eff_old in occurrences[:-1]:
            if job.misfire == "skip" and now - eff_old > self._grace:
                reason = "missed while the scheduler was not running (misfire policy skip)"
            else:
                reason = f"superseded by the run for {last_t.isoformat()}"
            skipped.append((t_old, reason))
        if elided and skipped:
            t0, reason = skipped[0]
            skipped[0] = (t0, f"{reason}; {elided} earlier occurrences were also missed")
        run: DueRun | None = None
        next_due: tuple[datetime, datetime] | None = None
        holiday = job.holiday_at(last_t)
        if late and job.misfire == "skip":
            skipped.append((last_t, "missed while the scheduler was not running (misfire policy skip)"))
        elif holiday is not None:
            skipped.append((last_t, f"holiday: {holiday}"))
        elif window is not None and not window.is_active(now):
            if job.window_policy == "defer":
                next_due = (window.next_open(now), last_t)  # still waiting; keeps its occurrence
            else:
                closed_for = window.holiday_at(now)
                reason = f"holiday: {closed_for} (window {window.id})" if closed_for else f"outside window {window.id}"
                skipped.append((last_t, reason))
        else:
            run = DueRun(job.id, last_t, last_eff, job.priority, catch_up=late)
        return _Plan(run, skipped, next_due, last_t)

    def due_jobs(self, now: datetime | None = None) -> list[DueRun]:
        """The runs a tick at ``now`` would start, in the order it would start them."""
        with self._lock:
            now = now or self._now()
            if not self._config.enabled:
                return []
            runs = [p.run for jid in self._due_ids(now) if (p := self._plan(self._config.jobs[jid], now)).run]
        return sorted(runs, key=lambda r: (-r.priority, r.due_at, r.job_id))

    # --- execution -------------------------------------------------------------------------

    def execute_due_jobs(self, now: datetime | None = None, stop: threading.Event | None = None) -> list[str]:
        """Runs every due job once, highest priority first (ties: earlier due, then id).

        Returns the ids of the backup sets made. Missed, out-of-window and superseded
        occurrences are recorded SKIPPED with the reason; ``stop`` is checked between jobs.
        """
        explicit = now is not None
        now = now or self._now()
        if self.node is not None and not self.node.member:
            raise ConfigError("this scheduler edits a shared catalog's jobs; to run them, pass node= (run --node NAME)")
        taken = self._node_tick(now) if self.node is not None else []
        with self._lock:
            if not self._config.enabled:
                return []
            runs: list[tuple[Job, DueRun]] = []
            skips: list[tuple[str, datetime, str]] = []
            for jid in self._pop_due(now):
                job = self._config.jobs[jid]
                plan = self._plan(job, now)
                # A node plans every job but records and runs only those it may run.
                mine = self.node is None or self.node.eligible(job)
                if not mine:
                    plan.skipped, plan.run = [], None
                skips.extend((jid, t, why) for t, why in plan.skipped)
                self._cursor[jid] = plan.cursor
                if plan.next_due is not None:
                    self._due[jid] = plan.next_due
                    heapq.heappush(self._heap, (plan.next_due[0], jid))
                else:
                    self._schedule_next(job)
                if plan.run is not None:
                    runs.append((job, plan.run))
        if runs or skips:
            self._history.recover(now)
        for jid, t, why in skips:
            skipped_job = self._config.jobs.get(jid)  # another thread may have removed it since
            if self._history.record_skipped(jid, t, now, why) and skipped_job is not None:
                self.events.skipped(skipped_job, t, why, now)
        runs.sort(key=lambda jr: sort_key(jr[0], jr[1].due_at))
        made: list[str] = []
        work: list[Callable[[], str | None]] = [
            functools.partial(self._run_claimed, job, run, now, exec_id) for job, run, exec_id in taken
        ]
        work += [functools.partial(self._run, job, run, now if explicit else None) for job, run in runs]
        if self.node is not None and self.node.max_concurrent > 1 and len(work) > 1:
            # The node's concurrency limit: that many runs at once, started in priority order.
            with ThreadPoolExecutor(self.node.max_concurrent, thread_name_prefix="rustybackup-run") as pool:
                futures = [pool.submit(self._unless_stopped, w, stop) for w in work]
                made = [sid for f in futures if (sid := f.result()) is not None]
        else:
            for w in work:
                if stop is not None and stop.is_set():
                    break
                set_id = w()
                if set_id is not None:
                    made.append(set_id)
        if self.node is not None:
            self.node.beat(seen_clock=now)
        return made

    @staticmethod
    def _unless_stopped(work: Callable[[], str | None], stop: threading.Event | None) -> str | None:
        return None if stop is not None and stop.is_set() else work()

    def _node_tick(self, now: datetime) -> list[tuple[Job, DueRun, str]]:
        """A node's part of a tick: the job list another node changed, then the claims of
        dead nodes (lease run out) taken over. A taken-over occurrence runs under its
        job's misfire policy: ``run_once`` runs it (a catch-up), ``skip`` records it
        SKIPPED."""
        node = self.node
        assert node is not None
        if node.config_changed():
            self._adopt_config(node.load_config())
        with self._lock:
            mine = [j.id for j in self._config.jobs.values() if node.eligible(j) and j.enabled]
        out: list[tuple[Job, DueRun, str]] = []
        for t in node.history.take_over(now, self._lease, mine):
            job = self._config.jobs.get(t.job_id)
            if job is None:
                continue
            log.warning("node %s: took over job %s at %s from %s", node.name, job.id, t.scheduled_for, t.previous_owner)
            if job.misfire == "skip":
                why = f"taken over from {t.previous_owner}, whose lease ran out (misfire policy skip)"
                node.history.finish(t.execution_id, ExecutionStatus.SKIPPED, now, error=why)
                self.events.skipped(job, t.scheduled_for, why, now)
                continue
            out.append(
                (job, DueRun(job.id, t.scheduled_for, t.scheduled_for, job.priority, catch_up=True), t.execution_id)
            )
        return out

    def _run(self, job: Job, run: DueRun, now: datetime | None) -> str | None:
        now = now or self._now()
        claim = self._history.claim(job.id, run.scheduled_for, now, self._lease)
        if claim.outcome != "claimed":
            log.info("job %s at %s: %s", job.id, run.scheduled_for, claim.reason or "claimed by another scheduler")
            return None
        exec_id = claim.execution_id
        assert exec_id is not None
        return self._run_claimed(job, run, now, exec_id)

    def _run_claimed(self, job: Job, run: DueRun, now: datetime, exec_id: str) -> str | None:
        # On a node, the set is registered only while this claim is still ours (claims.py).
        # The check runs inside the shared catalog's transaction; a job whose target is
        # another repository registers in that repository's own catalog, which cannot run
        # it, so there a claim lost mid-run can leave a second set of the occurrence.
        fence = None
        if self.node is not None and job.repository is None:
            fence = REGISTRATION_FENCE.set(self.node.history.fence(exec_id, self._now))
        try:
            return self._execute(job, run, now, exec_id)
        finally:
            if fence is not None:
                REGISTRATION_FENCE.reset(fence)

    def _execute(self, job: Job, run: DueRun, now: datetime, exec_id: str) -> str | None:
        cancel = threading.Event()
        timer = None
        if job.max_duration is not None:
            timer = threading.Timer(job.max_duration.total_seconds(), cancel.set)
            timer.daemon = True
            timer.start()
        self._leases.start(exec_id)
        skip_reason = self.events.pre_hook(job)
        if skip_reason is not None:
            self._leases.stop(exec_id)
            if timer is not None:
                timer.cancel()
            self._history.finish(exec_id, ExecutionStatus.SKIPPED, max(self._now(), now), error=skip_reason)
            self.events.finished(job, run.scheduled_for, ExecutionStatus.SKIPPED, None, skip_reason, self._now())
            return None
        status, set_id, error, read, written = ExecutionStatus.FAILED, None, None, None, None
        manager: Any = None
        try:
            manager = self._targets.open(job)
            if isinstance(job, ScheduledBackup):
                # Only when set: a manager without the parameter (a test's fake) still works.
                limit: dict[str, Any] = {} if job.io_limit is None else {"io_limit": job.io_limit}
                if job.selection is not None:
                    limit["selection"] = job.selection
                result = manager.backup(job.database, job.backup_type, tags=job.tags, cancel=cancel, **limit)
                set_id = str(result.id)
                read, written = getattr(result, "bytes_read", None), getattr(result, "size", None)
                status = ExecutionStatus.COMPLETED
                # A run that went on from a cut one says so in its history (resume.py).
                resumed = getattr(manager, "resumed", {}).get(set_id)
                if resumed is not None:
                    error = resumed.describe()
                if job.retention is not None:
                    try:
                        # dry_run=False said out loud: BackupManager's default is a dry run.
                        policy = RetentionPolicy.parse(job.retention)
                        manager.apply_retention(job.database, policy, dry_run=False)
                    except Exception as exc:  # the backup itself is good and registered
                        log.warning("job %s: retention failed: %s", job.id, exc)
                        error = "; ".join(filter(None, [error, f"backup completed; retention failed: {exc}"]))
            else:
                status, error = self._verify(job, manager)
        except BackupCancelled as exc:
            status, error = ExecutionStatus.CANCELLED, f"max_duration {job.max_duration} reached: {exc}"
        except Exception as exc:
            log.warning("job %s failed: %s", job.id, exc)
            status, error = ExecutionStatus.FAILED, f"{type(exc).__name__}: {exc}"
        finally:
            self._leases.stop(exec_id)
            if timer is not None:
                timer.cancel()
        finished = max(self._now(), now)  # an explicit past `now` (a replay) never ends before it began
        try:
            recorded = self._history.finish(
                exec_id,
                status,
                finished,
                backup_set_id=set_id,
                error=error,
                bytes_read=read,
                bytes_written=written,
                repository=job.repository,
            )
            if recorded is False:  # a node whose claim was taken over: the new holder reports
                return None
            self.events.finished(job, run.scheduled_for, status, set_id, error, finished, self.list_jobs())
            if manager is not None:
                self._check_window(job, finished, manager)
        finally:
            if manager is not None:
                self._targets.release(manager)
        if status is ExecutionStatus.COMPLETED:
            self._check_forecast(job, finished)
        return set_id if status is ExecutionStatus.COMPLETED else None

    def _check_forecast(self, job: Job, now: datetime) -> None:
        """Warns when the job's P90 duration no longer fits its window at its next run."""
        window = self._window(job)
        if window is None:
            return
        try:
            start = self._due_at(job, job.cron.next_after(now))
        except (CronError, ConfigError):  # no next run, or a window that never opens again
            return
        runs = self._history.query(job.id, ExecutionStatus.COMPLETED, None, DEFAULT_FORECAST_RUNS)
        problem = p90_overrun(window, start, forecast_job(job.id, runs, start, load_zone(job.tz)).duration_p90)
        if problem is not None:
            log.warning("job %s: %s (rustybackup plan suggests start times that fit)", job.id, problem)

    def _check_window(self, job: Job, now: datetime, manager: Any) -> None:
        catalog = getattr(manager, "catalog", None)
        if catalog is None:  # a manager without a catalog (tests' fakes): nothing to resolve
            return
        try:
            # Only the jobs writing to the same repository say what its window is.
            same = [j for j in self.list_jobs() if j.repository == job.repository]
            self.events.check_window(same, job.database, catalog, now)
        except Exception:
            log.exception("job %s: recovery window check", job.id)

    def _verify(self, job: ScheduledVerification, manager: Any) -> tuple[ExecutionStatus, str | None]:
        # Imported here: verification pulls in the whole engine, which a scheduler that
        # only runs backups (and the scheduler's tests, with a fake manager) never needs.
        from .verify import Verifier

        # The verifier reads the repository through the real manager's catalog; the
        # protocol above is only what backups need.
        verifier = Verifier(cast(Any, manager))
        if self.node is not None:
            # Nodes split a day's round of this database's pieces at this level (in the
            # job's zone): no piece checked twice in a round, whichever node runs.
            day = self._now().astimezone(load_zone(job.tz)).date().isoformat()
            round_id = f"{job.database}:{job.level.value}:{day}"
            verifier.share = functools.partial(self.node.history.claim_items, round_id, now=self._now())
        report = verifier.verify(job.database, job.level, budget=job.budget)
        if report.ok:
            return ExecutionStatus.COMPLETED, None
        corrupt, missing = len(report.corrupt_blocks), len(report.missing_pieces)
        return ExecutionStatus.FAILED, (
            f"{DAMAGE_PREFIX}{corrupt} corrupt block(s), {missing} missing piece(s), "
            f"{len(report.findings)} finding(s) in all"
        )

    # --- loop and history ------------------------------------------------------------------

    def run_forever(self, stop: threading.Event) -> None:
        """Runs jobs as they fall due until ``stop`` is set; sleeps until the next due time.

        Wakes early on ``stop`` or on a configuration change; a failing job is recorded
        FAILED and the loop goes on. Sleeps are capped at an hour so that a stepped
        system clock is noticed.
        """

        def wake_on_stop() -> None:
            stop.wait()
            self._changed.set()

        waker = threading.Thread(target=wake_on_stop, daemon=True)
        waker.start()
        while not stop.is_set():
            self._changed.clear()
            try:
                self.execute_due_jobs(stop=stop)
            except Exception:
                log.exception("scheduler tick failed; continuing")
            wake = self._next_wake()
            timeout = 3600.0 if wake is None else (wake - self._now()).total_seconds()
            if self.node is not None:
                # Other nodes change jobs and die: look again within a tenth of a lease.
                timeout = min(timeout, max(self._lease.total_seconds() / 10, 0.05))
            if timeout > 0 and not stop.is_set():
                self._changed.wait(min(timeout, 3600.0))

    def history(
        self,
        job_id: str | None = None,
        status: ExecutionStatus | str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[BackupExecution]:
        """Executions (newest scheduled first) by job, status and scheduled time."""
        return self._history.query(job_id, status, since, limit)

    def close(self) -> None:
        """Delivers queued notifications (up to a minute), then closes the history (and
        leaves the shared catalog's nodes, for a node)."""
        self.events.close()
        if self.node is not None:
            self.node.close()
        else:
            self._history.close()
