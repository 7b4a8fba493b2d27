"""What happens around a scheduled run besides the run: hooks and notifications.

The scheduler calls :class:`RunEvents` before a run (the pre-hook, which may skip it),
after it (the post-hook, then the notifications) and for an occurrence it skips. Nothing
here can fail a run: a hook's failure is the hook's result, a notification is queued
for :class:`~rustybackup.notify.Notifier`'s thread, and every unexpected error is logged.

The recovery window event is per database: after each run of a database that has a
recovery window (the largest ``window=`` of its jobs' retention), the chain resolver
says whether the window is still covered (``metrics.recoverable_since_us``); when it
stops being covered, every job of that database that asked for ``window`` events is
told once (a process starts out assuming it was covered, so a window already open when
the scheduler starts is reported once then).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from .enums import ExecutionStatus
from .hooks import hook_env, run_hook
from .jobs import Job, ScheduledBackup
from .notify import Event, Notification, Notifier, NotifyTargets, SmtpSettings
from .retention import RetentionPolicy
from .timestamps import from_us, to_us

__all__ = ["DAMAGE_PREFIX", "RunEvents", "recovery_window"]

log = logging.getLogger(__name__)

#: How the scheduler's verification error starts when it found damage (not an error).
DAMAGE_PREFIX = "verification found "


def recovery_window(jobs: Iterable[Job], database: str) -> timedelta | None:
    """The largest retention recovery window among ``database``'s backup jobs."""
    windows = []
    for job in jobs:
        if isinstance(job, ScheduledBackup) and job.database == database and job.retention:
            window = RetentionPolicy.parse(job.retention).window
            if window is not None:
                windows.append(window)
    return max(windows, default=None)


def _database_targets(jobs: Iterable[Job], database: str, event: Event) -> dict[NotifyTargets, Job]:
    """The distinct targets of ``database``'s jobs that want ``event``, each with the
    first job that names them."""
    seen: dict[NotifyTargets, Job] = {}
    for job in jobs:
        if job.database == database and job.notify is not None and job.notify.wants(event):
            seen.setdefault(job.notify, job)
    return seen


def _backup_type(job: Job) -> str | None:
    return job.backup_type.value if isinstance(job, ScheduledBackup) else None


class RunEvents:
    """Hooks and notifications of one scheduler (``notifier`` is made from the
    environment on first use when not given)."""

    def __init__(self, notifier: Notifier | None = None) -> None:
        self._notifier = notifier
        self._lock = threading.Lock()
        self._covered: dict[str, bool] = {}

    @property
    def notifier(self) -> Notifier:
        with self._lock:
            if self._notifier is None:
                try:
                    smtp = SmtpSettings.from_env()
                except Exception as exc:  # noqa: BLE001 - bad SMTP settings must not fail a run
                    log.warning("email notifications disabled: %s", exc)
                    smtp = None
                self._notifier = Notifier(smtp)
            return self._notifier

    def _send(self, targets: NotifyTargets | None, note: Notification) -> None:
        if targets is None or not targets.wants(note.event):
            return
        try:
            self.notifier.notify(targets, note)
        except Exception:
            log.exception("could not queue a notification for job %s", note.job_id)

    # --- hooks ---------------------------------------------------------------------------

    def pre_hook(self, job: Job) -> str | None:
        """Runs the job's pre-hook; the reason to skip the run, or None to go on."""
        hooks = job.hooks
        if hooks is None or hooks.pre is None:
            return None
        env = hook_env("pre", job.id, job.database, _backup_type(job))
        result = run_hook(hooks.pre, env, hooks.timeout)
        if result.ok:
            return None
        reason = result.reason("pre")
        if hooks.pre_failure == "skip":
            return reason
        log.warning("job %s: %s; running anyway (pre_hook_failure=run)", job.id, reason)
        return None

    def post_hook(self, job: Job, status: ExecutionStatus, set_id: str | None, error: str | None) -> None:
        hooks = job.hooks
        if hooks is None or hooks.post is None:
            return
        env = hook_env(
            "post",
            job.id,
            job.database,
            _backup_type(job),
            status=status.value,
            set_id=set_id,
            error=error,
        )
        result = run_hook(hooks.post, env, hooks.timeout)
        if not result.ok:
            log.warning("job %s: %s", job.id, result.reason("post"))

    # --- notifications -------------------------------------------------------------------

    def skipped(self, job: Job, scheduled_for: datetime, reason: str, now: datetime) -> None:
        self._send(
            job.notify,
            Notification(
                Event.SKIPPED,
                job.id,
                job.database,
                f"job {job.id} ({job.database}) skipped: {reason}",
                now,
                {"scheduled_for": scheduled_for.isoformat(), "reason": reason},
            ),
        )

    def finished(
        self,
        job: Job,
        scheduled_for: datetime,
        status: ExecutionStatus,
        set_id: str | None,
        error: str | None,
        now: datetime,
        jobs: Sequence[Job] = (),
    ) -> None:
        """The post-hook, then the notification the outcome calls for. Damage concerns
        the database: it also goes to the other ``jobs`` of the database that asked."""
        try:
            self.post_hook(job, status, set_id, error)
        except Exception:
            log.exception("job %s: post-hook", job.id)
        details: dict[str, Any] = {
            "scheduled_for": scheduled_for.isoformat(),
            "status": status.value,
            "set_id": set_id,
            "error": error,
        }
        if status is ExecutionStatus.COMPLETED:
            event, what = (
                Event.SUCCESS,
                "completed" + (f": set {set_id}" if set_id else ""),
            )
        elif status is ExecutionStatus.SKIPPED:
            event, what = Event.SKIPPED, f"skipped: {error}"
        elif error is not None and error.startswith(DAMAGE_PREFIX):
            event, what = Event.DAMAGE, f"damage found: {error}"
        else:
            event, what = Event.FAILURE, f"{status.value}: {error}"
        note = Notification(event, job.id, job.database, f"job {job.id} ({job.database}) {what}", now, details)
        targets = list(_database_targets(jobs, job.database, event)) if event is Event.DAMAGE else []
        for t in dict.fromkeys([job.notify, *targets]):
            self._send(t, note)

    def check_window(self, jobs: list[Job], database: str, catalog: Any, now: datetime) -> bool | None:
        """Whether ``database``'s recovery window is covered now (None: it has none);
        notifies the jobs that asked when it stops being covered."""
        from .metrics import recoverable_since_us

        window = recovery_window(jobs, database)
        if window is None:
            return None
        now_us = to_us(now)
        since = recoverable_since_us(catalog.chain_rows(database), now_us)
        covered = since is not None and since <= now_us - int(window.total_seconds() * 1e6)
        with self._lock:
            was = self._covered.get(database, True)
            self._covered[database] = covered
        if was and not covered:
            reached = (
                "nothing is recoverable" if since is None else f"recoverable only since {from_us(since).isoformat()}"
            )
            details = {
                "window_seconds": window.total_seconds(),
                "recoverable_since": None if since is None else since / 1e6,
            }
            summary = f"recovery window of {database} ({window}) is not covered: {reached}"
            for targets, job in _database_targets(jobs, database, Event.WINDOW).items():
                self._send(targets, Notification(Event.WINDOW, job.id, database, summary, now, details))
        return covered

    def counters(self) -> dict[str, int]:
        n = self._notifier
        return (
            {"sent": 0, "failed": 0, "dropped": 0}
            if n is None
            else {
                "sent": n.sent,
                "failed": n.failed,
                "dropped": n.dropped,
            }
        )

    def close(self, timeout: float | None = 60.0) -> None:
        """Delivers what is queued (``run --once`` must not exit before), then stops."""
        if self._notifier is not None:
            self._notifier.close(timeout)
