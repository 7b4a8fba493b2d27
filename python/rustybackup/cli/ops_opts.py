"""The notification and hook options of ``job add``, gathered into one ``ops`` argument
(a :class:`JobOps`) so the command's signature does not grow by eight parameters."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import click

from ..durations import parse_duration
from ..hooks import PRE_HOOK_POLICIES, JobHooks
from ..notify import DEFAULT_EVENTS, WEBHOOK_FORMATS, Event, NotifyTargets, parse_events

_NAMES = (
    "notify_webhooks",
    "notify_emails",
    "notify_on",
    "notify_webhook_format",
    "pre_hook",
    "post_hook",
    "hook_timeout",
    "pre_hook_failure",
)


@dataclass(frozen=True)
class JobOps:
    """What ``job add`` passes to the job: its notification targets and hooks (or None)."""

    notify: NotifyTargets | None
    hooks: JobHooks | None


def _build(values: dict[str, Any]) -> JobOps:
    webhooks, emails = tuple(values["notify_webhooks"]), tuple(values["notify_emails"])
    on = values["notify_on"]
    if (on is not None or values["notify_webhook_format"] != "json") and not webhooks and not emails:
        raise click.UsageError("--notify-on/--notify-webhook-format need a --notify-webhook or --notify-email")
    notify = None
    if webhooks or emails:
        events = DEFAULT_EVENTS if on is None else parse_events(on)
        notify = NotifyTargets(webhooks, emails, events, values["notify_webhook_format"])
    pre, post = values["pre_hook"], values["post_hook"]
    hooks = None
    if pre is not None or post is not None:
        hooks = JobHooks(pre, post, values["hook_timeout"] or timedelta(minutes=5), values["pre_hook_failure"])
    elif values["hook_timeout"] is not None or values["pre_hook_failure"] != "skip":
        raise click.UsageError("--hook-timeout/--pre-hook-failure need a --pre-hook or --post-hook")
    return JobOps(notify, hooks)


def duration_value(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
    """A click callback: an option's duration (e.g. 90s, 2h), None when not given."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def ops_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Adds the options; the command receives ``ops: JobOps`` instead of them."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in _NAMES}
        return f(*args, ops=_build(values), **kwargs)

    events = ",".join(e.value for e in Event)
    for decorator in reversed(
        (
            click.option(
                "--notify-webhook",
                "notify_webhooks",
                multiple=True,
                help="POST a JSON notification to this URL (repeatable).",
            ),
            click.option(
                "--notify-email",
                "notify_emails",
                multiple=True,
                help="Mail notifications to this address (repeatable; SMTP from RUSTYBACKUP_SMTP_*).",
            ),
            click.option(
                "--notify-on",
                default=None,
                help=f"Events to notify, comma-separated from {events} (default: all but success).",
            ),
            click.option(
                "--notify-webhook-format",
                type=click.Choice(WEBHOOK_FORMATS),
                default="json",
                show_default=True,
                help="'slack' posts {\"text\": ...} for Slack-compatible webhooks.",
            ),
            click.option("--pre-hook", default=None, help="Shell command run before each run (sh -c)."),
            click.option("--post-hook", default=None, help="Shell command run after each run (sh -c)."),
            click.option(
                "--hook-timeout",
                callback=duration_value,
                default=None,
                help="Kill a hook after this long (default 5m).",
            ),
            click.option(
                "--pre-hook-failure",
                type=click.Choice(PRE_HOOK_POLICIES),
                default="skip",
                show_default=True,
                help="When the pre-hook fails: skip the run (recorded SKIPPED) or run anyway.",
            ),
        )
    ):
        wrapper = decorator(wrapper)
    return wrapper
