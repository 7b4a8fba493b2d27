"""``rustybackup`` subcommands for this area."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Adds this module's commands to the top-level group."""
