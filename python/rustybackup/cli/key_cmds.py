"""``rustybackup key list|add|remove|rotate``: the key slots of an encrypted repository
(keys.py). Changing slots never rewrites data; ``rotate`` gives new sets a new key."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click

from .. import keys
from ..errors import EncryptionError
from .context import CliState, pass_state, print_json


def _when(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, UTC).isoformat(timespec="seconds") if us else "-"


@contextmanager
def _repo(state: CliState, *, exclusive: bool = False) -> Iterator[Path]:
    """The directory whose keys/ keys.py works on: the repository, or for an s3://
    repository its cache, fresh from the bucket, whose changes go back to the bucket
    when the command is done (remote_keys.editing; `exclusive` for remove and rotate)."""
    if state.url is None:
        yield state.require_repo()
        return
    from .. import remote_keys

    with remote_keys.editing(state.url, exclusive=exclusive) as root:
        yield root


def _open(root: Path) -> keys.Keys:
    found = keys.keys_for(root)
    if found is None:
        raise EncryptionError(f"{root}: the repository is not encrypted (create one with `init --encryption`)")
    return found


@click.group("key")
def key_group() -> None:
    """Key slots of an encrypted repository.

    Example: RUSTYBACKUP_NEW_PASSWORD=... rustybackup --repo /backups key add
    """


@key_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def list_cmd(state: CliState, as_json: bool) -> None:
    """List the key slots (no key needed).

    Example: rustybackup --repo /backups key list --json
    """
    with _repo(state) as root:
        slots = keys.list_slots(root)
    if as_json:
        print_json([s.as_json() for s in slots])
        return
    for s in slots:
        click.echo(f"{s.id}  {s.kind:<10}  {_when(s.created_at_us)}  {s.detail}")


@key_group.command("add")
@click.option(
    "--new-password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The new passphrase (else RUSTYBACKUP_NEW_PASSWORD).",
)
@click.option(
    "--new-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A key file to add (created, random, mode 0600, when absent).",
)
@click.option(
    "--write-only",
    "write_only",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Export a write-only key to this file: it backs up, it cannot read or restore.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the new slot as JSON.")
@pass_state
def add_cmd(
    state: CliState,
    new_password_file: Path | None,
    new_key_file: Path | None,
    write_only: Path | None,
    as_json: bool,
) -> None:
    """Add a slot; the repository is opened with --password-file/--key-file (or the
    environment) first.

    Example: rustybackup --repo /backups --password-file old.txt key add --new-password-file new.txt
    """
    chosen = [x for x in (new_password_file, new_key_file, write_only) if x is not None]
    new_password = os.environ.get(keys.NEW_PASSWORD_ENV)
    if len(chosen) > 1:
        raise click.UsageError("give one of --new-password-file, --new-key-file, --write-only")
    if new_password_file is not None:
        new_password = new_password_file.read_text(encoding="utf-8").rstrip("\r\n")
    if not chosen and not new_password:
        raise click.UsageError(
            f"no new passphrase: pass --new-password-file F or set {keys.NEW_PASSWORD_ENV} "
            "(or use --new-key-file / --write-only)"
        )
    with _repo(state) as root:
        opened = _open(root)
        if new_key_file is not None:
            slot = keys.add_key_file(root, opened, new_key_file)
        elif write_only is not None:
            slot = keys.add_write_only(root, opened, write_only)
        else:
            assert new_password is not None
            slot = keys.add_passphrase(root, opened, new_password)
    if as_json:
        print_json(slot.as_json())
    else:
        click.echo(f"added slot {slot.id} ({slot.kind})")


@key_group.command("remove")
@click.argument("slot_id")
@pass_state
def remove_cmd(state: CliState, slot_id: str) -> None:
    """Remove slot SLOT_ID (refused for the last slot that can decrypt).

    Example: rustybackup --repo /backups key remove 3f2a9c1e
    """
    with _repo(state, exclusive=True) as root:
        keys.remove_slot(root, slot_id)
    click.echo(f"removed slot {slot_id}")


@key_group.command("rotate")
@click.option(
    "--reencrypt",
    is_flag=True,
    help="Also re-encrypt the existing sets under the new generation (chain by chain, resumable); "
    "when a re-encryption is pending, continue it instead of making another generation.",
)
@click.option(
    "--drop-old",
    is_flag=True,
    help="With --reencrypt: once every set is under the current generation, remove the older "
    "generations' secrets from the keyring.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the new generation (and the re-encryption) as JSON.")
@pass_state
def rotate_cmd(state: CliState, reencrypt: bool, drop_old: bool, as_json: bool) -> None:
    """Make a new key for new sets; existing sets and their pieces stay as they are
    unless --reencrypt is given.

    Example: RUSTYBACKUP_PASSWORD=... rustybackup --repo /backups key rotate --reencrypt --json
    """
    if drop_old and not reencrypt:
        raise click.UsageError("--drop-old goes with --reencrypt (old generations stay while sets use them)")
    if reencrypt:
        from .key_reencrypt import rotate_reencrypt

        rotate_reencrypt(state, drop_old=drop_old, as_json=as_json)
        return
    with _repo(state, exclusive=True) as root:
        gen = keys.rotate(root, _open(root))
    if as_json:
        print_json({"generation": gen.id, "created_at_us": gen.created_at_us})
    else:
        click.echo(f"new sets are now encrypted with key generation {gen.id}")


@key_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def status_cmd(state: CliState, as_json: bool) -> None:
    """Which key generation each set is wrapped to (no key needed; with one, also the
    current generation and whether a re-encryption is pending).

    Example: rustybackup --repo /backups key status --json
    """
    from .key_reencrypt import key_status

    key_status(state, as_json=as_json)


def register(group: click.Group) -> None:
    group.add_command(key_group)
