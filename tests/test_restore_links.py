"""Links are data: backed up as links whatever they point to, restored without being
followed, and a restore never writes through one, so nothing lands outside the target.

Every test looks at the directory *around* the target as well: the check is not "the
restore failed" but "nothing outside the target changed"."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from engine_support import SimClock, repo_manager, sim_clock, snapshot_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from manifest_support import stored
from rustybackup import BackupError, BackupManager, RustyBackupError, manifest
from rustybackup.manifest import Manifest
from rustybackup.restore import restore_set_files
from rustybackup.restore_target import RestoreTarget

clock = pytest.fixture(sim_clock)
manager = pytest.fixture(repo_manager)


def listing(root: Path) -> dict[str, object]:
    """Everything under ``root`` (links not followed), to prove nothing else changed."""
    return snapshot_tree(root, with_meta=False)


TRICKS = {
    "abs": "/etc/passwd",
    "up": "..",
    "d/x": "..",
    "y": "d/x/..",  # looks in-tree, but d/x is itself a link to ..: it points above
    "d/deep": "../../../../../../../../../tmp",
    "dangling": "no/such/file",
    "self": "self",
    "inside": "d/file",
}


def make_tricky_tree(src: Path) -> None:
    (src / "d").mkdir(parents=True)
    (src / "d" / "file").write_bytes(b"data")
    for rel, target in TRICKS.items():
        (src / rel).symlink_to(target)


def test_every_link_is_backed_up_and_restored_as_it_was(manager: BackupManager, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tricky_tree(src)
    manager.register_database("t", src)
    s = manager.backup("t", "full")
    around = tmp_path / "around"
    around.mkdir()
    (around / "keep").write_text("mine")
    before = listing(tmp_path / "around")
    target = around / "out"
    manager.restore("t", target, backup_set_id=s.id)
    for rel, link_target in TRICKS.items():
        assert os.readlink(target / rel) == link_target
    assert snapshot_tree(target) == snapshot_tree(src)
    after = listing(around)
    assert {k: v for k, v in after.items() if not k.startswith("out")} == before


def _full_and_archive_log(manager: BackupManager, clock: SimClock, tmp_path: Path, data: Path, log: bytes) -> None:
    """`data` registered as "pg" with the archive directory ``tmp_path/wal`` holding the
    one log ``000001`` (`log`): a FULL, and five minutes later an ARCHIVE_LOG."""
    wal = tmp_path / "wal"
    wal.mkdir()
    (wal / "000001").write_bytes(log)
    manager.register_database("pg", data, archive_dir=wal)
    manager.backup("pg", "full")
    clock.advance(minutes=5)
    manager.backup("pg", "archive_log")


def test_a_link_named_archive_never_receives_archive_logs(
    manager: BackupManager, tmp_path: Path, clock: SimClock
) -> None:
    """The issue's case: a files source holding a link called ``archive`` that points out
    of the target; the archive logs must not be written through it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    (data / "base").write_text("base")
    (data / "archive").symlink_to(outside)
    _full_and_archive_log(manager, clock, tmp_path, data, b"log" * 100)
    target = tmp_path / "restore" / "t"
    with pytest.raises(BackupError, match=r"archive is a symlink or not a directory; refusing to write through it"):
        manager.restore("pg", target)
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "restore").iterdir()) == ["t"]


def test_a_link_named_archive_pointing_up_never_receives_archive_logs(
    manager: BackupManager, tmp_path: Path, clock: SimClock
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "archive").symlink_to("..")
    _full_and_archive_log(manager, clock, tmp_path, data, b"log")
    (tmp_path / "restore").mkdir()
    with pytest.raises(BackupError, match="refusing to write through it"):
        manager.restore("pg", tmp_path / "restore" / "t")
    assert sorted(p.name for p in (tmp_path / "restore").iterdir()) == ["t"]
    assert not (tmp_path / "restore" / "000001").exists()


def test_a_restored_link_at_an_archive_file_path_is_not_written_through(
    manager: BackupManager, tmp_path: Path, clock: SimClock
) -> None:
    """The data set restores ``archive/000001`` as a link to a file outside; the archive
    set's ``000001`` must then fail on it (O_EXCL), not overwrite what it points to."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    data = tmp_path / "data"
    (data / "archive").mkdir(parents=True)
    (data / "archive" / "000001").symlink_to(victim)
    _full_and_archive_log(manager, clock, tmp_path, data, b"log")
    with pytest.raises(RustyBackupError, match="000001"):
        manager.restore("pg", tmp_path / "out")
    assert victim.read_text() == "precious"
    assert os.readlink(tmp_path / "out" / "archive" / "000001") == str(victim)


def _edit_manifest(manager: BackupManager, set_id: str, change: object) -> None:
    path = manager.repository / "sets" / set_id / "manifest.json"
    m = json.loads(path.read_text())
    assert callable(change)
    change(m)
    path.write_bytes(stored(m))


def test_a_manifest_link_over_a_directory_of_files_fails_without_writing_outside(
    manager: BackupManager, tmp_path: Path
) -> None:
    """A crafted manifest lists ``d`` as a link to a directory outside and ``d/f`` as a
    file: ``d`` is created as a real directory first, so the link can never be written
    through (whichever check refuses the manifest first)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_text("f")
    manager.register_database("t", src)
    s = manager.backup("t", "full")

    def add_link(m: dict[str, list[dict[str, object]]]) -> None:
        m["dirs"] = [e for e in m["dirs"] if e["path"] != "d"]
        m["symlinks"] = [{"path": "d", "target": str(outside), "mtime_ns": 0}]

    _edit_manifest(manager, s.id, add_link)
    with pytest.raises(RustyBackupError):
        manager.restore("t", tmp_path / "out", backup_set_id=s.id)
    assert list(outside.iterdir()) == []


# --- the target walker, with links planted before the restore -----------------------------


def test_a_planted_link_at_a_parent_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "t"
    target.mkdir()
    (target / "a").symlink_to(outside)
    with RestoreTarget(target, "restore of set s") as tree:
        with pytest.raises(BackupError, match=rf"^restore of set s: {target / 'a'} is a symlink or not a directory"):
            tree.make_dirs(["a/b"])
        with pytest.raises(BackupError, match=rf"{target / 'a'} is a symlink or not a directory"):
            tree.open_dir("a")
        with pytest.raises(BackupError, match="is a symlink or not a directory"):
            tree.subdir("a")
    assert list(outside.iterdir()) == []


def test_a_planted_file_where_a_directory_belongs_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    (target / "a").write_text("file")
    with RestoreTarget(target, "r") as tree, pytest.raises(BackupError, match="is a symlink or not a directory"):
        tree.make_dirs(["a/b/c"])


def test_links_are_never_created_over_an_entry_nor_followed_for_metadata(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("v")
    os.chmod(victim, 0o644)
    target = tmp_path / "t"
    target.mkdir()
    (target / "l").symlink_to(victim)
    with RestoreTarget(target, "r") as tree:
        with pytest.raises(BackupError, match=rf"^r: {target / 'l'} already exists; a link is never written over it$"):
            tree.symlink("l", "/etc/passwd", 0)
        with pytest.raises(BackupError, match="was replaced by a symlink"):
            tree.set_meta("l", 0o777, 0, directory=False)
        with pytest.raises(BackupError, match="was replaced by a symlink"):
            tree.set_meta("l", 0o777, 0, directory=True)
    assert victim.read_text() == "v" and (victim.stat().st_mode & 0o777) == 0o644


def test_make_dirs_creates_every_parent_in_one_walk(tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    rels = ["a/b/c", "a/b2", "z", "a-b/c", "a/b/c/d/e"]
    with RestoreTarget(target, "r") as tree:
        tree.make_dirs(rels)
        tree.make_dirs(rels)  # existing real directories are fine
    found = sorted(p.relative_to(target).as_posix() for p in target.rglob("*"))
    assert found == ["a", "a-b", "a-b/c", "a/b", "a/b/c", "a/b/c/d", "a/b/c/d/e", "a/b2", "z"]


# --- property: any tree of links and files round-trips, and nothing leaks out --------------

NAMES = st.sampled_from(["a", "b", "c", "archive", "..a", "x y"])
LINK_TARGETS = st.one_of(
    st.sampled_from(["..", "../..", "/", "/etc/passwd", ".", "a", "a/..", "../a", "b/../../.."]),
    st.lists(st.sampled_from(["..", "a", "b", "c", "."]), min_size=1, max_size=5).map("/".join),
)
TREES = st.lists(st.tuples(st.lists(NAMES, min_size=1, max_size=3), st.one_of(st.none(), LINK_TARGETS)), max_size=12)


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(TREES)
def test_any_tree_of_links_round_trips_and_nothing_leaks(
    tmp_path: Path, tree: list[tuple[list[str], str | None]]
) -> None:
    case = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
    src = case / "src"
    src.mkdir(parents=True)
    for parts, link in tree:
        # Build the source without ever going through one of its own links (the test
        # must not write outside its tree either): skip paths that run through one.
        prefixes = [src.joinpath(*parts[:i]) for i in range(1, len(parts))]
        if any(p.is_symlink() or p.is_file() for p in prefixes) or os.path.lexists(src.joinpath(*parts)):
            continue
        entry = src.joinpath(*parts)
        entry.parent.mkdir(parents=True, exist_ok=True)
        if link is None:
            entry.write_text("/".join(parts))
        else:
            entry.symlink_to(link)
    manager = BackupManager(case / "repo", clock=SimClock())
    manager.register_database("t", src)
    manager.backup("t", "full")
    box = case / "box"
    box.mkdir()
    target = box / "out"
    manager.restore("t", target)
    # Oracle: the source tree read back by os.walk/lstat/readlink (no rustybackup code).
    assert snapshot_tree(target) == snapshot_tree(src)
    assert sorted(p.name for p in box.iterdir()) == ["out"]
    assert sorted(p.name for p in case.iterdir()) == ["box", "repo", "src"]


def _set_with_tree(manager: BackupManager, tmp_path: Path) -> tuple[str, Manifest]:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f.bin").write_bytes(b"new data")
    (src / "top.bin").write_bytes(b"top")
    manager.register_database("t", src)
    s = manager.backup("t", "full")
    return s.id, manifest.load(manager.repository / s.manifest, set_id=s.id)


@pytest.mark.parametrize("planted", ["top.bin", "sub/f.bin"])
def test_a_planted_link_at_a_files_path_is_not_written_through(
    manager: BackupManager, tmp_path: Path, planted: str
) -> None:
    set_id, m = _set_with_tree(manager, tmp_path)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    target = tmp_path / "target"
    (target / "sub").mkdir(parents=True)
    (target / planted).symlink_to(victim)
    with pytest.raises(BackupError, match=f"restore of set {set_id} failed"):
        restore_set_files(manager.repository, set_id, m, target, None, archive=False)
    assert victim.read_bytes() == b"precious"


def test_a_planted_link_at_a_parents_path_is_not_written_through(manager: BackupManager, tmp_path: Path) -> None:
    set_id, m = _set_with_tree(manager, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    (target / "sub").symlink_to(outside)
    with pytest.raises(BackupError, match=rf"{target / 'sub'} is a symlink or not a directory"):
        restore_set_files(manager.repository, set_id, m, target, None, archive=False)
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in target.iterdir()) == ["sub"]  # nothing written before the check failed


def test_files_a_restore_adds_are_never_written_through_a_restored_link(tmp_path: Path) -> None:
    """PostgreSQL's restore adds recovery.signal and appends to postgresql.auto.conf in a
    data directory whose restored entries may be links: they are written only as files."""
    victim = tmp_path / "victim.conf"
    victim.write_text("keep\n")
    target = tmp_path / "data"
    (target / "sub").mkdir(parents=True)
    (target / "postgresql.auto.conf").symlink_to(victim)
    (target / "pg_wal").symlink_to(tmp_path)
    with RestoreTarget(target, "restore of 'main'") as tree:
        with pytest.raises(BackupError, match=r"postgresql.auto.conf is a symlink; refusing to write through it$"):
            tree.write_file("postgresql.auto.conf", b"restore_command = 'x'\n", append=True)
        with pytest.raises(BackupError, match=r"pg_wal is a symlink or not a directory"):
            tree.make_dirs(["pg_wal/archive_status"])
        tree.write_file("sub/recovery.signal", b"")
        tree.write_file("sub/conf", b"a\n")
        tree.write_file("sub/conf", b"b\n", append=True)
    assert victim.read_text() == "keep\n" and not (tmp_path / "archive_status").exists()
    assert (target / "sub" / "conf").read_bytes() == b"a\nb\n"
    assert (target / "sub" / "recovery.signal").stat().st_mode & 0o777 == 0o600
