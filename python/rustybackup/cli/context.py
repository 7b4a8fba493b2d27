"""State shared by all subcommands, and helpers every subcommand uses."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click


@dataclass
class CliState:
    """What the top-level options decided."""

    repo: Path | None
    debug: bool = False

    def require_repo(self) -> Path:
        """The repository directory, or a usage error naming both ways to give it."""
        if self.repo is None:
            raise click.UsageError("no repository: pass --repo DIR or set RUSTYBACKUP_REPO")
        return self.repo


pass_state = click.make_pass_decorator(CliState)


def print_json(data: Any) -> None:
    """One JSON document on stdout, for scripts."""
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
