"""Whatever one changed byte range of one repository file (plain or encrypted: pieces,
block maps, manifests and their envelopes, key slots, the keyring, the format file),
every call gives a result or a RustyBackupError, never another exception: a restore
gives the set's bytes exactly or refuses, verification reports (or says it cannot run),
and the next backup runs or refuses. A damaged catalog.db is test_catalog_file_damage's."""

from __future__ import annotations

import hashlib
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keys_support import cheap_argon2, forget_keys
from rustybackup import BackupManager, keys
from rustybackup.errors import RustyBackupError
from rustybackup.verify import Verifier

PASSWORD = "damage-pw"


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(autouse=True)
def _cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    cheap_argon2(monkeypatch)
    monkeypatch.setenv(keys.PASSWORD_ENV, PASSWORD)
    forget_keys()
    yield
    forget_keys()


def _build(root: Path, encrypted: bool) -> tuple[Path, dict[str, dict[str, str]], list[str]]:
    """A repository with a FULL and an INCREMENTAL of a small tree; the digests of the
    tree each set holds, and the repository's files (catalog.db aside)."""
    src = root / "src"
    (src / "d").mkdir(parents=True)
    m = BackupManager(root / "repo")
    if encrypted:
        keys.init_encryption(root / "repo", password=PASSWORD)
    m.register_database("t", src, block_size=4096, compression="zstd")
    want = {}
    for tag in (b"a", b"b"):
        for i in range(4):
            noise = random.Random(f"{tag!r}{i}").randbytes(64)
            (src / f"f{i}").write_bytes((tag + bytes(range(256)) * 40 + noise * 30)[: 5000 * (i + 1)])
        (src / "d" / "same").write_bytes(b"same" * 3000)
        s = m.backup("t", "full" if tag == b"a" else "incremental")
        want[s.id] = _digests(src)
    m.catalog.close()
    files = sorted(
        p.relative_to(root / "repo").as_posix()
        for p in (root / "repo").rglob("*")
        if p.is_file() and not p.name.startswith("catalog.db")
    )
    return root / "repo", want, files


@pytest.fixture(scope="module", params=["plain", "encrypted"])
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, dict[str, dict[str, str]], list[str]]]:
    root = tmp_path_factory.mktemp(f"damage-{request.param}")
    with pytest.MonkeyPatch.context() as mp:
        cheap_argon2(mp)
        mp.setenv(keys.PASSWORD_ENV, PASSWORD)
        yield _build(root, request.param == "encrypted")
    forget_keys()


DAMAGE = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**31), st.integers(0, 7)),
    st.tuples(st.just("cut"), st.integers(0, 2**31), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 2**31), st.integers(1, 16)),
    st.tuples(st.just("word"), st.integers(0, 2**31), st.sampled_from([0, 0xFFFFFFFF, 0x7FFFFFFF])),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pick=st.integers(0, 2**31), damage=DAMAGE)
def test_one_damaged_file_gives_exact_bytes_or_a_clear_error(
    built: tuple[Path, dict[str, dict[str, str]], list[str]], tmp_path: Path, pick: int, damage: tuple[str, int, int]
) -> None:
    repo, want, files = built
    # One directory per example: hypothesis runs them all in this test's tmp_path.
    work = Path(tempfile.mkdtemp(dir=tmp_path)) / "repo"
    shutil.copytree(repo, work)
    victim = work / files[pick % len(files)]
    original = victim.read_bytes()
    data = bytearray(original)
    kind, at, arg = damage
    at = at % (len(data) + 1)
    if kind == "flip" and data:
        data[at % len(data)] ^= 1 << arg
    elif kind == "cut":
        del data[at:]
    elif kind == "insert":
        data[at:at] = bytes((at + k) % 256 for k in range(arg))
    elif data:
        data[at : at + 4] = arg.to_bytes(4, "little")
    victim.write_bytes(bytes(data))
    forget_keys()
    try:
        m = BackupManager(work)
    except RustyBackupError:
        return
    for set_id, digests in want.items():
        out = work.parent / f"out-{work.name}-{set_id}"
        try:
            m.restore("t", out, backup_set_id=set_id)
        except RustyBackupError:
            continue
        assert _digests(out) == digests, f"{victim.relative_to(work)} {damage}: set {set_id} restored wrong bytes"
    in_a_set = victim.relative_to(work).parts[0] == "sets"
    for level in ("quick", "standard", "full"):
        try:
            report = Verifier(m).verify(None, level)
        except RustyBackupError:
            # Only what the whole repository stands on (its keys, its format file) may
            # stop a verification; a set's damaged file is a finding in its report.
            assert not in_a_set, f"{victim.relative_to(work)} {damage}: {level} verification raised"
            continue
        if in_a_set and level != "quick" and bytes(data) != original:
            # Every byte of a set's files is covered: pieces and block maps by the
            # catalog's checksums (a map's parent reference, outside its checksum, by
            # the catalog's parent row), the manifest by its own checksum (or its
            # envelope's tag).
            assert not report.ok, f"{victim.relative_to(work)} {damage}: {level} verification found nothing"
    try:
        m.backup("t", "incremental")
    except RustyBackupError:
        pass
