"""``rustybackup init --encryption`` and ``rustybackup key list|add|remove|rotate`` from
the command line, with the settled sources of passphrases: RUSTYBACKUP_PASSWORD or
--password-file, RUSTYBACKUP_NEW_PASSWORD or --new-password-file, --key-file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from keys_support import cheap_argon2, forget_keys
from rustybackup import keys
from rustybackup.cli import cli


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    cheap_argon2(monkeypatch)
    for var in (keys.PASSWORD_ENV, keys.KEY_FILE_ENV, keys.NEW_PASSWORD_ENV, "RUSTYBACKUP_REPO"):
        monkeypatch.delenv(var, raising=False)
    yield
    forget_keys()


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    # Each command is a new process in real use: nothing unlocked carries over.
    keys._credentials.clear()
    with keys._lock:
        keys._unlocked.clear()
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_init_backup_restore_and_slots(tmp_path: Path) -> None:
    repo = str(tmp_path / "repo")
    src = tmp_path / "src"
    src.mkdir()
    (src / "secret-name.txt").write_bytes(b"the plaintext 0123456789abcdef" * 500)
    pw = {keys.PASSWORD_ENV: "first passphrase"}
    r = run("--repo", repo, "init", "--encryption", env=pw)
    assert r.exit_code == 0, r.output
    assert "encryption on" in r.output
    r = run("--repo", repo, "key", "list", "--json")
    assert r.exit_code == 0, r.output
    slots = json.loads(r.output)
    assert [s["kind"] for s in slots] == ["passphrase"]
    assert run("--repo", repo, "db", "add", "d", "--path", str(src), env=pw).exit_code == 0
    r = run("--repo", repo, "backup", "d", "--json", env=pw)
    assert r.exit_code == 0, r.output
    # Without a key: one clear line, exit 1.
    r = run("--repo", repo, "restore", "d", "--to", str(tmp_path / "out0"))
    assert r.exit_code == 1
    assert "repository is encrypted" in r.output
    # A second passphrase from --new-password-file, then the first one removed.
    new = tmp_path / "new.pw"
    new.write_text("second passphrase\n")
    r = run("--repo", repo, "key", "add", "--new-password-file", str(new), "--json", env=pw)
    assert r.exit_code == 0, r.output
    added = json.loads(r.output)["id"]
    r = run("--repo", repo, "key", "remove", slots[0]["id"], env=pw)
    assert r.exit_code == 0, r.output
    r = run("--repo", repo, "--password-file", str(new), "restore", "d", "--to", str(tmp_path / "out"))
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "secret-name.txt").read_bytes() == (src / "secret-name.txt").read_bytes()
    # The removed passphrase opens nothing: one line, nothing changed.
    r = run("--repo", repo, "restore", "d", "--to", str(tmp_path / "out2"), env=pw)
    assert r.exit_code == 1 and "opens no key slot" in r.output
    # The last decrypting slot stays.
    r = run("--repo", repo, "--password-file", str(new), "key", "remove", added)
    assert r.exit_code == 1 and "last one that can decrypt" in r.output
    r = run("--repo", repo, "--password-file", str(new), "key", "rotate", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["generation"] == "g2"


def test_key_file_and_write_only_from_the_command_line(tmp_path: Path) -> None:
    repo = str(tmp_path / "repo")
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"x" * 10_000)
    kf = tmp_path / "repo.key"
    assert run("--repo", repo, "--key-file", str(kf), "init", "--encryption").exit_code == 0
    assert kf.stat().st_mode & 0o077 == 0
    assert run("--repo", repo, "db", "add", "d", "--path", str(src)).exit_code == 0
    wo = tmp_path / "wo.key"
    r = run("--repo", repo, "--key-file", str(kf), "key", "add", "--write-only", str(wo))
    assert r.exit_code == 0, r.output
    assert run("--repo", repo, "--key-file", str(wo), "backup", "d").exit_code == 0
    r = run("--repo", repo, "--key-file", str(wo), "restore", "d", "--to", str(tmp_path / "out"))
    assert r.exit_code == 1 and "write-only key" in r.output
    # A write-only key cannot add slots either.
    r = run("--repo", repo, "--key-file", str(wo), "key", "rotate")
    assert r.exit_code == 1 and "write-only" in r.output
    r = run("--repo", repo, "--key-file", str(kf), "restore", "d", "--to", str(tmp_path / "out"))
    assert r.exit_code == 0, r.output


def test_usage_errors(tmp_path: Path) -> None:
    repo = str(tmp_path / "repo")
    r = run("--repo", repo, "init", "--encryption")
    assert r.exit_code == 1 and "needs a passphrase" in r.output
    r = run("--repo", repo, "key", "list")
    assert r.exit_code == 1 and "not encrypted" in r.output
    r = run("--repo", repo, "init", "--encryption", env={keys.PASSWORD_ENV: "p"})
    assert r.exit_code == 0
    r = run("--repo", repo, "key", "remove", "nothex!")
    assert r.exit_code == 1 and "8 lower-case hex digits" in r.output
    r = run("--repo", repo, "key", "add", env={keys.PASSWORD_ENV: "p"})
    assert r.exit_code == 2 and "no new passphrase" in r.output
