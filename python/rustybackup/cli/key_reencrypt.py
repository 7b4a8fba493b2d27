"""``key rotate --reencrypt`` and ``key status``: the command-line side of reencrypt.py."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import click

from .. import keys, reencrypt
from ..errors import EncryptionError
from .context import CliState, print_json


def _rotate(state: CliState, root: Path) -> keys.Generation:
    """A new generation; on an s3:// repository written to the bucket under the
    exclusive lock object (remote_keys.editing), as `key rotate` does."""
    if state.url is None:
        opened = keys.keys_for(root)
        assert opened is not None
        return keys.rotate(root, opened)
    from .. import remote_keys

    with remote_keys.editing(state.url, exclusive=True) as cache:
        found = keys.keys_for(cache)
        if found is None:
            raise EncryptionError(f"{state.url}: the repository is not encrypted (create one with `init --encryption`)")
        return keys.rotate(cache, found)


def rotate_reencrypt(state: CliState, *, drop_old: bool, as_json: bool) -> None:
    """Rotates (unless a re-encryption is pending, which it continues) and re-encrypts
    every set under the current generation; progress on stderr (JSON lines with
    ``--json``), the summary on stdout. Exit status 1 when a chain failed."""
    manager = state.open_manager()
    root = manager.repo.root
    opened = keys.keys_for(root)
    if opened is None:
        raise EncryptionError(f"{root}: the repository is not encrypted (create one with `init --encryption`)")
    rotated = None
    if not reencrypt.pending(manager):
        rotated = _rotate(state, root)

    def progress(event: dict[str, Any]) -> None:
        if as_json:
            sys.stderr.write(json.dumps(event) + "\n")
        elif event["event"] == "resealed":
            click.echo(f"re-sealed set {event['set']} ({event['bytes']} bytes of its chain)", err=True)
        else:
            click.echo(f"switched the chain of {event['chain']} ({len(event['sets'])} sets)", err=True)

    report = reencrypt.reencrypt(manager, drop_old=drop_old, progress=progress)
    if as_json:
        print_json({"rotated": rotated is not None} | report.as_json())
    else:
        if rotated is not None:
            click.echo(f"new sets are now encrypted with key generation {rotated.id}")
        click.echo(
            f"re-encrypted {len(report.reencrypted)} set(s) under generation {report.generation}; "
            f"{len(report.current)} already were"
        )
        for chain, why in {**report.postponed, **report.failed}.items():
            click.echo(f"chain of {chain}: {why}")
        if report.dropped:
            click.echo(f"removed generation(s) {', '.join(report.dropped)} from the keyring")
        if not report.done:
            click.echo("not finished: run `key rotate --reencrypt` again to continue")
    if report.failed:
        sys.exit(1)


def key_status(state: CliState, *, as_json: bool) -> None:
    """Each set's generation; the current one when a key is at hand."""
    manager = state.open_manager()
    root = manager.repo.root
    if not keys.is_encrypted(root):
        raise EncryptionError(f"{root}: the repository is not encrypted")
    gens = reencrypt.set_generations(root, [s.id for s in manager.catalog.list_sets()])
    current: str | None = None
    if keys.can_read(root):
        found = keys.keys_for(root)
        current = found.current if found is not None else None
    # A chain commit left by a killed run (in the bucket, or the local work directory) is pending too.
    pending = None if current is None else reencrypt.pending(manager)
    if as_json:
        print_json({"current": current, "pending": pending, "sets": gens})
        return
    if current is not None:
        click.echo(f"current generation: {current}" + ("; a re-encryption is pending" if pending else ""))
    for name, n in sorted(Counter(g or "unreadable" for g in gens.values()).items()):
        click.echo(f"{name}: {n} set(s)")
    for sid, g in gens.items():
        click.echo(f"{sid}  {g or 'unreadable'}")
