"""The repository a scheduled job writes to, and the upload pace it writes at.

A job without ``repository`` runs on the scheduler's own manager, as before. A job with
one (``s3://bucket/prefix`` or a directory) runs on a manager opened on that repository
for the run and closed after it: a remote repository's catalog cache is brought up to
date from the bucket on open, so every run sees the sets other hosts wrote since the
last one (a manager kept open for days would apply retention to a stale list). The
database must be registered in the target repository; it is not checked when the job is
added, because a remote repository may be unreachable then and editing jobs must not
need the network. A run against a missing repository or database fails with the error
in the job's history.

Uploads to the target go at the job's own ``upload_limits`` (``RATE@HH:MM-HH:MM`` in
``upload_tz``) when it has some, else at the scheduler's (``run --upload-limit``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .repo_url import RepoUrl, parse_repository
from .upload_limits import UploadSchedule
from .windows import load_zone

if TYPE_CHECKING:
    from .jobs import Job

__all__ = ["JobTargets", "check_target", "open_target", "upload_schedule_of"]

log = logging.getLogger(__name__)


def check_target(job: Any) -> None:
    """Validates and normalizes a job's ``repository`` (a URL written canonically, or an
    absolute directory: the job runs later, in a process whose working directory is not
    the one it was added from) and upload limits; ConfigError names the job and field."""
    where = f"job {job.id!r} field"
    target = job.repository
    if target is not None:
        if not isinstance(target, (str, os.PathLike)) or not os.fspath(target):
            raise ConfigError(f"{where} 'repository': expected s3://bucket/prefix or a directory, got {target!r}")
        try:
            parsed = parse_repository(target)
        except ConfigError as exc:
            raise ConfigError(f"{where} 'repository': {exc}") from None
        if isinstance(parsed, Path) and not os.path.isabs(os.fspath(target)):
            raise ConfigError(f"{where} 'repository': {os.fspath(target)!r} is a relative path; give an absolute one")
        object.__setattr__(job, "repository", str(parsed))
    limits = getattr(job, "upload_limits", ())
    if isinstance(limits, str) or not all(isinstance(x, str) for x in limits):
        raise ConfigError(f"{where} 'upload_limits': expected a list of RATE@HH:MM-HH:MM, got {limits!r}")
    if hasattr(job, "upload_limits"):
        object.__setattr__(job, "upload_limits", tuple(limits))
        if limits and target is None:
            # The scheduler's own repository uploads only to its mirrors, at the pace
            # `run --upload-limit` sets for all of them.
            raise ConfigError(
                f"{where} 'upload_limits': paces the uploads to the job's target repository; "
                "set 'repository' too (the scheduler's own mirrors follow `run --upload-limit`)"
            )
        try:
            upload_schedule_of(job)
        except ConfigError as exc:
            raise ConfigError(f"{where} 'upload_limits': {exc}") from None
        try:
            load_zone(job.upload_tz, "zone")
        except ConfigError as exc:
            raise ConfigError(f"{where} 'upload_tz': {exc}") from None


def upload_schedule_of(job: Any) -> UploadSchedule | None:
    """The job's own upload schedule, None when it has none."""
    limits = getattr(job, "upload_limits", ())
    if not limits:
        return None
    return UploadSchedule.parse(limits, tz=getattr(job, "upload_tz", "UTC"))


def open_target(repository: str) -> Any:
    """A BackupManager on an existing repository; never creates one (a typo in a job must
    not start an empty repository and fill it)."""
    from .engine import BackupManager

    where = parse_repository(repository)
    if isinstance(where, Path):
        if not (where / "format").exists():
            raise ConfigError(f"target repository {where}: no repository there (run `rustybackup --repo {where} init`)")
        return BackupManager(where)
    return BackupManager(str(where), create=False)


class JobTargets:
    """Gives each run the manager of its job's repository (see the module's docstring)."""

    def __init__(self, home: Any, opener: Callable[[str], Any] | None = None) -> None:
        self._home = home
        self._opener = opener or open_target

    def _is_home(self, target: str) -> bool:
        where = parse_repository(target)
        if isinstance(where, RepoUrl):
            remote = getattr(self._home, "remote", None)
            return remote is not None and str(remote.url) == str(where)
        remote = getattr(self._home, "remote", None)
        return remote is None and Path(self._home.repository) == where

    def open(self, job: Job) -> Any:
        """The manager this run of `job` uses; hand it back to `release` after the run."""
        if job.repository is None or self._is_home(job.repository):
            return self._home
        manager = self._opener(job.repository)
        limits = upload_schedule_of(job)
        manager.upload_limits = limits if limits is not None else getattr(self._home, "upload_limits", None)
        log.info("job %s: runs on repository %s", job.id, job.repository)
        return manager

    def release(self, manager: Any) -> None:
        if manager is self._home:
            return
        catalog = getattr(manager, "catalog", None)
        if catalog is not None:
            try:
                catalog.close()
            except Exception:  # the run's outcome is recorded already; a close must not change it
                log.exception("closing the catalog of %s", getattr(manager, "repository", manager))
