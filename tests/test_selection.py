"""Selection (issue 17): the gitignore matcher (_core.PathMatcher) against git itself
(`git check-ignore` on a temporary repository is the oracle), hand-written edge cases, and
the walk with --exclude, --exclude-file, --exclude-caches and --one-file-system, through
backups whose summary counts what was left out."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager, BackupType, ConfigError, _core
from rustybackup.selection import CACHEDIR_SIGNATURE, Selection
from rustybackup.sources import walk

GIT = ["git", "-c", "core.excludesFile=/dev/null", "-c", "init.defaultBranch=main"]


def git_ignored(repo: Path, patterns: list[str], paths: list[str]) -> set[str]:
    """What git excludes of `paths` (files and directories that exist under `repo`) with
    `patterns` as the repository's info/exclude: the oracle."""
    if not (repo / ".git").exists():
        subprocess.run([*GIT, "init", "-q", str(repo)], check=True)
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "exclude").write_text("".join(p + "\n" for p in patterns))
    out = subprocess.run(
        [*GIT, "-C", str(repo), "check-ignore", "--no-index", "--stdin"],
        input="".join(p + "\n" for p in paths),
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode in (0, 1), out.stderr
    return set(out.stdout.splitlines())


def build_tree(root: Path, files: set[str]) -> tuple[set[str], set[str]]:
    """Creates `files` (and their directories) under `root`; a name that is also a
    directory's prefix stays a directory. Returns (files, dirs)."""
    dirs = {"/".join(f.split("/")[:i]) for f in files for i in range(1, f.count("/") + 1)}
    made = {f for f in files if f not in dirs}
    for d in sorted(dirs):
        (root / d).mkdir(parents=True, exist_ok=True)
    for f in made:
        (root / f).write_bytes(f.encode())
    return made, dirs


NAMES = ["a", "b", "x.log", "y.txt", "tmp", "c.d", "{a,b}"]
SEGMENTS = ["a", "b", "tmp", "*.log", "*", "**", "?", "[ab]", "x.*", "*.txt", "c.d", "y*", "{a,b}", "[!a]"]


@st.composite
def patterns(draw: st.DrawFn) -> str:
    segs = draw(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=3))
    text = "/".join(segs)
    if draw(st.booleans()):
        text = "/" + text
    if draw(st.booleans()):
        text += "/"
    if draw(st.integers(0, 3)) == 0:
        text = "!" + text
    return text


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    files=st.sets(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4).map("/".join), min_size=1, max_size=14),
    rules=st.lists(patterns(), min_size=1, max_size=5),
)
def test_matcher_and_walk_agree_with_git(
    tmp_path_factory: pytest.TempPathFactory, files: set[str], rules: list[str]
) -> None:
    repo = tmp_path_factory.mktemp("sel")
    made, dirs = build_tree(repo, files)
    everything = sorted(made | dirs)
    ignored = git_ignored(repo, rules, everything)
    m = _core.PathMatcher(rules)
    ours = {p for p in everything if m.matches_path_or_parents(p, p in dirs)}
    assert ours == ignored, (rules, sorted(ours ^ ignored))
    # The walk never descends into an excluded directory and keeps what git keeps.
    tree = walk(repo, Selection(exclude=tuple(rules)))
    walked = {r for r, _, _ in tree.files} | {r for r, _ in tree.dirs}
    walked = {p for p in walked if p != ".git" and not p.startswith(".git/")}
    assert walked == set(everything) - ignored


# --- hand-written edge cases -------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "path", "is_dir", "excluded"),
    [
        (["*.log"], "deep/er/x.log", False, True),
        (["/build"], "build", True, True),
        (["/build"], "src/build", True, False),
        (["doc/*.txt"], "doc/a.txt", False, True),
        (["doc/*.txt"], "doc/sub/a.txt", False, False),
        (["doc/**/*.txt"], "doc/sub/deeper/a.txt", False, True),
        (["**/cache"], "a/b/cache", True, True),
        (["cache/"], "cache", False, False),
        (["cache/"], "cache", True, True),
        (["logs/**"], "logs", True, False),
        (["logs/**"], "logs/x", False, True),
        (["*.log", "!keep.log"], "keep.log", False, False),
        (["!keep.log", "*.log"], "keep.log", False, True),
        (["tmp/", "!tmp/keep"], "tmp/keep", False, True),
        (["\\#x"], "#x", False, True),
        (["\\!x"], "!x", False, True),
        (["# comment"], "# comment", False, False),
        (["a[bc]d"], "acd", False, True),
        (["a?c"], "a/c", False, False),
        (["trailing  "], "trailing", False, True),
    ],
)
def test_edge_cases(rules: list[str], path: str, is_dir: bool, excluded: bool) -> None:
    assert _core.PathMatcher(rules).matches_path_or_parents(path, is_dir) is excluded


def test_a_bad_pattern_names_its_position() -> None:
    with pytest.raises(ConfigError, match=r"pattern 1 \(\"two\\nlines\"\) is invalid: a pattern is one line"):
        _core.PathMatcher(["ok", "two\nlines"])
    m = _core.PathMatcher(["*.log"])
    assert m.patterns == ["*.log"] and len(m) == 1 and "*.log" in repr(m)


# --- the walk and backups ----------------------------------------------------------------


def tree(root: Path) -> None:
    for rel in ["keep.txt", "a.log", "build/out.o", "build/sub/x", "src/main.c", "src/b.log", "cache/data", "node/m"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rel.encode() * 100)


def test_backup_stores_what_the_database_selection_keeps(tmp_path: Path) -> None:
    src = tmp_path / "src"
    tree(src)
    (src / "cache" / "CACHEDIR.TAG").write_bytes(CACHEDIR_SIGNATURE + b"\n# a cache\n")
    rules = tmp_path / "rules"
    rules.write_text("# from a file\nnode/\n")
    m = BackupManager(tmp_path / "repo")
    m.register_database("t", src, exclude=["*.log", "/build/"], exclude_files=[rules], exclude_caches=True)
    assert m.catalog.get_database("t").selection.exclude == ("*.log", "/build/")
    s = m.backup("t", BackupType.FULL)
    got = {f.path for f in m.set_manifest(s.id).files}
    assert got == {"keep.txt", "src/main.c", "cache/CACHEDIR.TAG"}
    summary = m.summary(s.id)
    # a.log, build, src/b.log, node (4 entries), and cache/data (the cache's contents).
    assert summary.excluded == 5
    m.restore("t", tmp_path / "out")
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file()) == [
        "cache/CACHEDIR.TAG",
        "keep.txt",
        "src/main.c",
    ]


def test_a_tag_without_the_signature_is_not_a_cache(tmp_path: Path) -> None:
    src = tmp_path / "src"
    tree(src)
    (src / "cache" / "CACHEDIR.TAG").write_bytes(b"Signature: not the one\n")
    walked = walk(src, Selection(exclude_caches=True))
    assert "cache/data" in {r for r, _, _ in walked.files} and walked.excluded == 0
    os.unlink(src / "cache" / "CACHEDIR.TAG")
    os.mkfifo(src / "cache" / "CACHEDIR.TAG")  # never opened for reading: no hang
    assert walk(src, Selection(exclude_caches=True)).excluded == 0


def test_job_rules_add_to_the_database_rules(tmp_path: Path) -> None:
    src = tmp_path / "src"
    tree(src)
    m = BackupManager(tmp_path / "repo")
    m.register_database("t", src, exclude=["*.log"])
    s = m.backup("t", "full", selection=Selection(exclude=("src/",)))
    assert {f.path for f in m.set_manifest(s.id).files} == {
        "keep.txt",
        "build/out.o",
        "build/sub/x",
        "cache/data",
        "node/m",
    }


def test_bad_rules_fail_the_registration(tmp_path: Path) -> None:
    m = BackupManager(tmp_path / "repo")
    with pytest.raises(ConfigError, match=r"exclude\[1\]: .* is not one pattern line"):
        m.register_database("t", tmp_path, exclude=["ok", "a\nb"])
    with pytest.raises(ConfigError, match="exclude file .*missing.*cannot be read"):
        m.register_database("t", tmp_path, exclude_files=[tmp_path / "missing"])
    with pytest.raises(ConfigError, match="for file trees"):
        m.register_database("s", tmp_path / "x.db", kind="sqlite", exclude=["*.log"])
    with pytest.raises(ConfigError, match="exclude must be a list of strings"):
        Selection.build(exclude="*.log")
    assert m.databases() == []


def test_one_file_system_keeps_the_mount_point_empty(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "mnt").mkdir(parents=True)
    (src / "f").write_bytes(b"x")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "none", str(src / "mnt")], capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        (src / "mnt" / "other-fs").write_bytes(b"y")
        (src / "mnt" / "d").mkdir()
        whole = walk(src)
        assert {r for r, _, _ in whole.files} == {"f", "mnt/other-fs"}
        one = walk(src, Selection(one_file_system=True))
        assert {r for r, _, _ in one.files} == {"f"} and {r for r, _ in one.dirs} == {"mnt"}
    finally:
        subprocess.run(["umount", str(src / "mnt")], check=True)


def test_selection_round_trips_through_the_catalog_form() -> None:
    s = Selection.build(exclude=["a", "!b"], exclude_files=["/x"], exclude_caches=True, one_file_system=True)
    assert Selection.from_json(s.to_json()) == s
    assert Selection().to_json() is None and Selection.from_json(None) == Selection()
    with pytest.raises(ConfigError, match="selection: exclude_caches must be true or false"):
        Selection.from_json(json.dumps({"exclude_caches": "yes"}))


def test_a_jobs_selection_round_trips_through_the_scheduler_file(tmp_path: Path) -> None:
    from rustybackup.config import SchedulerConfig, encode_config, parse_config
    from rustybackup.jobs import ScheduledBackup

    sel = Selection.build(exclude=["*.tmp", "!keep.tmp"], exclude_caches=True)
    job = ScheduledBackup(
        id="j", name="j", database="t", backup_type=BackupType.INCREMENTAL, schedule="0 2 * * *", selection=sel
    )
    cfg = SchedulerConfig(jobs={"j": job})
    back = parse_config(encode_config(cfg).decode(), tmp_path / "scheduler_config.json")
    again = back.jobs["j"]
    assert isinstance(again, ScheduledBackup) and again.selection == sel
    text = encode_config(cfg).decode().replace('"exclude_caches":true', '"exclude_caches":"yes"')
    text = text.replace('"exclude_caches": true', '"exclude_caches": "yes"')
    with pytest.raises(ConfigError, match="selection: exclude_caches must be true or false"):
        parse_config(text, tmp_path / "scheduler_config.json")
