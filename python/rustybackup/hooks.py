"""Pre- and post-run hooks: shell commands a job runs around its backup.

A hook runs with ``/bin/sh -c`` in the scheduler's environment plus:

=========================== ============================================================
``RUSTYBACKUP_JOB``         the job id
``RUSTYBACKUP_DATABASE``    the database name
``RUSTYBACKUP_BACKUP_TYPE`` full, incremental, differential, archive_log (empty for a
                            verification job)
``RUSTYBACKUP_PHASE``       ``pre`` or ``post``
``RUSTYBACKUP_STATUS``      post only: completed, failed, cancelled or skipped
``RUSTYBACKUP_SET_ID``      post only: the new set's id (empty when none was made)
``RUSTYBACKUP_ERROR``       post only: the run's error (empty when it succeeded)
=========================== ============================================================

A hook that runs past its timeout is killed (its whole process group: ``sh -c`` may have
started children) and counts as failed. A failing pre-hook either skips the run
(``pre_hook_failure="skip"``: recorded SKIPPED with the hook's reason) or is only
logged (``"run"``). A post-hook's failure is only logged: the backup is already registered.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .errors import ConfigError

__all__ = ["PRE_HOOK_POLICIES", "HookResult", "hook_env", "run_hook"]

log = logging.getLogger(__name__)

PRE_HOOK_POLICIES = ("skip", "run")
#: The end of a hook's output kept for the history's reason (the rest goes to the log).
_TAIL = 400


@dataclass(frozen=True)
class JobHooks:
    """A job's hooks: commands before and after its run, each limited to ``timeout``;
    ``pre_failure`` ``skip`` records the run SKIPPED when the pre-hook fails, ``run``
    only logs it."""

    pre: str | None = None
    post: str | None = None
    timeout: timedelta = timedelta(minutes=5)
    pre_failure: str = "skip"

    def __post_init__(self) -> None:
        for name, cmd in (("pre_hook", self.pre), ("post_hook", self.post)):
            if cmd is not None and (not isinstance(cmd, str) or not cmd.strip()):
                raise ConfigError(f"{name}: expected a shell command, got {cmd!r}")
        if not isinstance(self.timeout, timedelta) or self.timeout <= timedelta(0):
            raise ConfigError(f"hook_timeout: must be a positive duration, got {self.timeout!r}")
        if self.pre_failure not in PRE_HOOK_POLICIES:
            raise ConfigError(f"pre_hook_failure: {self.pre_failure!r} is not one of {', '.join(PRE_HOOK_POLICIES)}")

    def to_json(self) -> dict[str, Any]:
        return {
            "pre": self.pre,
            "post": self.post,
            "timeout": self.timeout.total_seconds(),
            "pre_failure": self.pre_failure,
        }

    @classmethod
    def from_json(cls, data: object, where: str) -> JobHooks:
        """Reads ``to_json``'s form; a ConfigError names ``where`` and the field."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where} field 'hooks': expected an object, got {data!r:.60}")
        unknown = sorted(set(data) - {"pre", "post", "timeout", "pre_failure"})
        if unknown:
            raise ConfigError(f"{where} field 'hooks.{unknown[0]}': unknown field")
        timeout = data.get("timeout", 300)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < 1e9:
            raise ConfigError(
                f"{where} field 'hooks.timeout': expected a positive number of seconds, got {timeout!r:.60}"
            )
        for key in ("pre", "post", "pre_failure"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise ConfigError(f"{where} field 'hooks.{key}': expected a string, got {data[key]!r:.60}")
        try:
            return cls(
                data.get("pre"),
                data.get("post"),
                timedelta(seconds=timeout),
                data.get("pre_failure") or "skip",
            )
        except ConfigError as exc:
            raise ConfigError(f"{where} field 'hooks': {exc}") from None


@dataclass(frozen=True)
class HookResult:
    """How a hook ended: ``ok`` when it exited 0 within its timeout."""

    command: str
    returncode: int | None  # None: killed at the timeout
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def reason(self, phase: str) -> str:
        """One line for the history: what failed and the end of what it printed."""
        what = "timed out" if self.returncode is None else f"exited with status {self.returncode}"
        tail = " ".join(self.output.split())[-_TAIL:]
        return f"{phase}-hook {self.command!r} {what}" + (f": {tail}" if tail else "")


def hook_env(
    phase: str,
    job_id: str,
    database: str,
    backup_type: str | None,
    *,
    status: str | None = None,
    set_id: str | None = None,
    error: str | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment a hook runs in (the documented variables over ``base``)."""
    env = dict(os.environ if base is None else base)
    env.update(
        RUSTYBACKUP_PHASE=phase,
        RUSTYBACKUP_JOB=job_id,
        RUSTYBACKUP_DATABASE=database,
        RUSTYBACKUP_BACKUP_TYPE=backup_type or "",
        RUSTYBACKUP_STATUS=status or "",
        RUSTYBACKUP_SET_ID=set_id or "",
        RUSTYBACKUP_ERROR=error or "",
    )
    return env


def run_hook(command: str, env: Mapping[str, str], timeout: timedelta) -> HookResult:
    """Runs ``command`` with ``/bin/sh -c``; never raises for the command's own failure
    (a command that cannot start is returned as status 127, as the shell reports it)."""
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return HookResult(command, 127, f"cannot start /bin/sh: {exc}")
    try:
        out, _ = proc.communicate(timeout=timeout.total_seconds())
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        # The session holds sh and whatever it started; killing only sh leaves them running
        # with our pipe open, and communicate() would wait for them.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, _ = proc.communicate()
        code = None
    text = out.decode("utf-8", "replace")
    result = HookResult(command, code, text)
    if not result.ok:
        log.warning("%s", result.reason("hook"))
    elif text.strip():
        log.info("hook %r: %s", command, text.strip()[-_TAIL:])
    return result
