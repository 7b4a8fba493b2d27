"""Re-encrypting `copy` with a bucket on either side (SeaweedFS, tests/s3_support.py): a
plain local chain copied into an encrypted s3:// repository under its own keys (no marker
in any object, restored set for set on another host, the next backup into the bucket
dedups against the copied chain), then that bucket copied back out decrypted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from rustybackup import BackupManager, keys, manifest, remote_keys
from rustybackup.copy import copy_sets
from rustybackup.copy_reencrypt import SourceCredentials
from rustybackup.repo_url import parse_url
from s3_support import SeaweedFS
from test_copy_reencrypt import OTHER, assert_same_restores, chain
from test_encryption_repo import _cheap_argon2  # noqa: F401 - autouse fixture
from test_encryption_s3 import bucket, host
from test_remote_commands import s3_env  # noqa: F401 - the fixture: AWS environment and host A's cache

pytestmark = pytest.mark.usefixtures("s3_env")


def test_plain_into_an_encrypted_bucket_and_back_out_decrypted(
    s3_server: SeaweedFS, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3_server.url(s3_prefix)
    a, src, marks, sets = chain(tmp_path, encrypted=False)
    remote_keys.init_encryption(parse_url(url), password=OTHER)
    monkeypatch.setenv(keys.PASSWORD_ENV, OTHER)
    b = BackupManager(url)
    report = copy_sets(a, b)
    assert report.ok and report.copied == [s.id for s in sets], report.failed

    objs = bucket(s3_server, s3_prefix)
    assert sum(k.endswith("/data.piece") for k in objs) == len(sets)
    wanted = set(marks)
    for k, data in objs.items():
        for i in range(len(data) - 15):
            assert data[i : i + 16] not in wanted, f"a marker at offset {i} of {k}"

    # Another host with B's passphrase: the catalog from the bucket, every set restored.
    host(monkeypatch, tmp_path, "b")
    monkeypatch.setenv(keys.PASSWORD_ENV, OTHER)
    other = BackupManager(url, create=False)
    assert {s.id for s in other.catalog.list_sets()} == {s.id for s in sets}
    assert_same_restores(tmp_path, a, other, sets)
    shutil.copyfile(sorted(src.iterdir())[1], src / "new-but-known")
    n = other.backup("db", "incremental")
    assert sum(p.block_count for p in manifest.load(other.repository / n.manifest, set_id=n.id).pieces) == 0

    # Out of the bucket, decrypted (the source's key from its own option).
    monkeypatch.delenv(keys.PASSWORD_ENV)
    host(monkeypatch, tmp_path, "c")
    pw = tmp_path / "b.txt"
    pw.write_text(OTHER)
    c = BackupManager(tmp_path / "c")
    out = copy_sets(
        BackupManager(url, create=False), c, decrypt=True, source_credentials=SourceCredentials(password_file=pw)
    )
    assert out.ok and out.copied == [*(s.id for s in sets), n.id], out.failed
    assert not keys.is_encrypted(c.repository)
    assert_same_restores(tmp_path / "c-out", a, c, sets)
