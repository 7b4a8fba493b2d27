"""A resumed backup in an encrypted repository (issue 19 in an issue 16 repository): a
real child process is SIGKILLed mid-backup (it stops itself after a known progress
report, so nothing depends on timing), and the next run, in this process with no key of
the child's left in memory, resumes the cut set under its own id with the set key the
child sealed into its staging directory. The result restores byte for byte, passes FULL
verification (every block authenticated), every block of its piece is sealed, and the
run read only what the child had not finished."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_support import SimClock
from keys_support import cheap_argon2, forget_keys
from rustybackup import BackupManager, _core, keys, remote_keys
from rustybackup.repo_url import parse_url
from rustybackup.verify import Verifier
from s3_support import SeaweedFS
from test_resume import CHILD, MiB, make_tree, staging_dirs
from test_resume_remote import _cut_full, _source, own_server  # noqa: F401 - the fixture

PASSWORD = "resume me"


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    cheap_argon2(monkeypatch)
    monkeypatch.setenv(keys.PASSWORD_ENV, PASSWORD)
    forget_keys()
    yield
    forget_keys()


def encrypted_repo(tmp_path: Path, src: Path) -> Path:
    repo = tmp_path / "repo"
    m = BackupManager(repo)
    keys.init_encryption(repo, password=PASSWORD)
    m.register_database("tree", src, compression="zstd")
    forget_keys()
    return repo


def kill_child_after(repo: Path, btype: str, reports: int) -> Path:
    """Runs a backup in a child process, SIGKILLs it after its `reports`-th progress
    report, and returns the staging directory it left."""
    args = [sys.executable, "-c", CHILD, str(repo), str(reports), btype]
    with subprocess.Popen(args, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "stopped"
        child.send_signal(signal.SIGKILL)
        child.wait()
    (left,) = staging_dirs(BackupManager(repo))
    assert (left / keys.SET_KEY_FILE).is_file(), "the child sealed its set key into its staging directory"
    forget_keys()
    return left


def check_set(m: BackupManager, set_id: str, src: Path, out: Path) -> None:
    """Restores byte for byte, passes FULL, every stored block sealed, nothing of the
    resume (nor the staged set key) published."""
    m.restore("tree", out, backup_set_id=set_id)
    for f in src.iterdir():
        assert (out / f.name).read_bytes() == f.read_bytes(), f.name
    report = Verifier(m).verify(set_id, "full")
    assert report.ok, report.findings
    set_dir = m.repository / "sets" / set_id
    entries = _core.read_piece_index(set_dir / "data.piece")
    assert entries and all(e[5] & 2 for e in entries), "a block of the resumed set is not sealed"
    assert sorted(p.name for p in set_dir.iterdir()) == ["blockmap", "data.piece", "manifest.json"]


def test_sigkill_mid_encrypted_full_then_resume(tmp_path: Path) -> None:
    src = make_tree(tmp_path, [2 * MiB] * 10)
    total = sum(f.stat().st_size for f in src.iterdir())
    repo = encrypted_repo(tmp_path, src)
    left = kill_child_after(repo, "full", 2)
    m = BackupManager(repo)
    m.checkpoint_every = 0
    done = m.backup("tree", "full")
    assert done.id == left.name  # the cut set goes on under its id, with its set key
    resumed = m.resumed[done.id]
    assert resumed.files > 0
    assert done.bytes_read == total - resumed.bytes < total
    assert staging_dirs(m) == []
    check_set(m, done.id, src, tmp_path / "out")


def test_sigkill_mid_encrypted_incremental_then_resume(tmp_path: Path) -> None:
    src = make_tree(tmp_path, [2 * MiB] * 10)
    repo = encrypted_repo(tmp_path, src)
    m = BackupManager(repo)
    full = m.backup("tree", "full")
    for f in sorted(src.iterdir()):
        data = bytearray(f.read_bytes())
        data[100] ^= 0xFF
        f.write_bytes(bytes(data))
    forget_keys()
    left = kill_child_after(repo, "incremental", 2)
    m = BackupManager(repo)
    m.checkpoint_every = 0
    inc = m.backup("tree", "incremental")
    assert inc.id == left.name and inc.parent_id == full.id
    assert m.resumed[inc.id].files > 0
    check_set(m, inc.id, src, tmp_path / "out")
    # The parent still restores as it was (the resume wrote nothing of it).
    assert Verifier(m).verify(full.id, "full").ok


def test_a_damaged_staged_encrypted_piece_is_read_again(tmp_path: Path) -> None:
    src = make_tree(tmp_path, [2 * MiB] * 8)
    total = sum(f.stat().st_size for f in src.iterdir())
    repo = encrypted_repo(tmp_path, src)
    left = kill_child_after(repo, "full", 2)
    files, _, piece_end = _core.checkpoint_summary(left / "checkpoint")
    assert files >= 2
    with open(left / "data.piece", "r+b") as fh:  # the last sealed byte of the last finished file
        fh.seek(piece_end - 1)
        b = fh.read(1)
        fh.seek(piece_end - 1)
        fh.write(bytes([b[0] ^ 0x20]))
    m = BackupManager(repo)
    m.checkpoint_every = 0
    done = m.backup("tree", "full")
    resumed = m.resumed[done.id]
    assert resumed.files == files - 1
    assert resumed.note is not None and "damaged" in resumed.note
    assert done.bytes_read == total - resumed.bytes
    check_set(m, done.id, src, tmp_path / "out")


@pytest.mark.parametrize("write_only", [False, True], ids=["keyed-host", "write-only-host"])
def test_an_encrypted_set_whose_upload_was_cut_is_sent_by_the_next_backup(
    own_server: SeaweedFS,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    write_only: bool,
) -> None:
    """resume_upload.py in an encrypted bucket: the kept set's sealed blocks are checked
    with its keys (from its staged envelope; a write-only host, which opens no block,
    checks the checksums of the stored bytes) and sent, not discarded and read again."""
    monkeypatch.setenv("RUSTYBACKUP_S3_RETRY_TIMEOUT", "3")  # the dead server is given up on sooner
    src = _source(tmp_path / "src")
    prefix = "cut-encrypted"
    url = own_server.url(prefix)
    remote_keys.init_encryption(parse_url(url), password=PASSWORD)
    if write_only:
        with remote_keys.editing(parse_url(url), exclusive=False) as root:
            keys.add_write_only(root, keys.unlock(root, password=PASSWORD), tmp_path / "wo.key")
        forget_keys()
        monkeypatch.delenv(keys.PASSWORD_ENV)
        monkeypatch.setenv(keys.KEY_FILE_ENV, str(tmp_path / "wo.key"))
    m = BackupManager(url, clock=SimClock())
    m.register_database("db", src)
    kept = _cut_full(own_server, m, prefix)
    caplog.set_level(logging.INFO, logger="rustybackup")
    inc = m.backup("db", "incremental")
    assert any("kept set uploaded" in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert inc.parent_id == kept.name and inc.bytes_read == 0
    forget_keys()
    monkeypatch.delenv(keys.KEY_FILE_ENV, raising=False)
    monkeypatch.setenv(keys.PASSWORD_ENV, PASSWORD)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "other-cache"))
    other = BackupManager(url)
    other.restore("db", tmp_path / "out", backup_set_id=kept.name)
    for f in src.iterdir():
        assert (tmp_path / "out" / f.name).read_bytes() == f.read_bytes(), f.name
    assert Verifier(other).verify(inc.id, "full").ok
