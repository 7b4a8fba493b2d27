"""``rustybackup hash``: sha256sum/b3sum line format, --check, --blocks."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import blake3
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from rustybackup.cli import cli
from rustybackup.cli.hash_cmds import escape_name, parse_sums, sum_line, unescape_name


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    monkeypatch.chdir(tmp_path)
    contents = {"a.db": b"hello\n", "b c.log": os.urandom(100_000), "empty": b""}
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
    return contents


def test_lines_match_b3sum_and_sha256sum_format(files: dict[str, bytes]) -> None:
    code, out, _ = run("hash", *files)
    assert code == 0
    assert out == "".join(f"{blake3.blake3(d).hexdigest()}  {n}\n" for n, d in files.items())
    code, out, _ = run("hash", "--algorithm", "SHA256", *files)
    assert out == "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in files.items())
    code, out, _ = run("hash", "--no-mmap", "-a", "md5", "a.db")
    assert out == hashlib.md5(files["a.db"]).hexdigest() + "  a.db\n"
    code, out, _ = run("hash", "--mmap", "a.db")  # opt-in, as hash_file(mmap=True)
    assert code == 0 and out == blake3.blake3(files["a.db"]).hexdigest() + "  a.db\n"


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="sha256sum not installed")
def test_sha256sum_accepts_our_list(files: dict[str, bytes], tmp_path: Path) -> None:
    _, out, _ = run("hash", "-a", "sha256", *files)
    (tmp_path / "SUMS").write_text(out)
    done = subprocess.run(["sha256sum", "-c", "SUMS"], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_unreadable_file_is_reported_and_the_rest_still_printed(files: dict[str, bytes]) -> None:
    code, out, err = run("hash", "a.db", "missing", "empty")
    assert code == 1
    assert out.splitlines()[0].endswith("  a.db") and out.splitlines()[1].endswith("  empty")
    assert "rustybackup: [Errno 2] No such file or directory: 'missing'" in err
    code, _, err = run("hash", "missing")
    assert code == 1 and "'missing'" in err


def test_check_says_ok_per_line_and_exits_zero(files: dict[str, bytes], tmp_path: Path) -> None:
    _, out, _ = run("hash", *files)
    (tmp_path / "SUMS").write_text("# made by rustybackup\n\n" + out)
    code, out, err = run("hash", "--check", "SUMS")
    assert (code, err) == (0, "")
    assert out == "a.db: OK\nb c.log: OK\nempty: OK\n"
    code, out, _ = run("hash", "--check", "SUMS", "--quiet")
    assert (code, out) == (0, "")


def test_check_fails_on_a_mismatch_or_a_missing_file(files: dict[str, bytes], tmp_path: Path) -> None:
    _, out, _ = run("hash", "-a", "sha512", *files)
    (tmp_path / "SUMS").write_text(out)
    (tmp_path / "a.db").write_bytes(b"changed")
    (tmp_path / "empty").unlink()
    code, out, err = run("hash", "-a", "sha512", "-c", "SUMS")
    assert code == 1
    assert out == "a.db: FAILED\nb c.log: OK\nempty: FAILED open or read\n"
    assert "rustybackup: WARNING: 1 computed checksum did NOT match" in err
    assert "rustybackup: WARNING: 1 listed file could not be read" in err
    assert "No such file or directory: 'empty'" in err
    code, out, _ = run("hash", "-a", "sha512", "-c", "SUMS", "--json")
    doc = json.loads(out)
    assert code == 1 and doc["ok"] is False
    assert [f["status"] for f in doc["files"]] == ["FAILED", "OK", "FAILED open or read"]


def test_check_rejects_malformed_lines_with_their_numbers(files: dict[str, bytes], tmp_path: Path) -> None:
    good = hashlib.sha1(files["a.db"]).hexdigest()
    (tmp_path / "SUMS").write_text(f"{good}  a.db\nnot a checksum line\n{good[:-1]}  a.db\n{good}xa.db\n")
    code, out, err = run("hash", "-a", "sha1", "-c", "SUMS")
    assert code == 1
    assert out == "a.db: OK\n"
    for n in (2, 3, 4):
        assert f"rustybackup: SUMS: line {n}: improperly formatted sha1 checksum line" in err
    assert "WARNING: 3 lines are improperly formatted" in err
    (tmp_path / "EMPTY").write_text("\n# nothing\n")
    code, _, err = run("hash", "-c", "EMPTY")
    assert code == 1 and "no properly formatted blake3 checksum lines found" in err


def test_check_of_a_missing_list_is_one_line(files: dict[str, bytes]) -> None:
    code, _, err = run("hash", "-c", "NOPE")
    assert code == 1
    assert err == "error: [Errno 2] No such file or directory: 'NOPE'\n"


def test_usage_errors_exit_2(files: dict[str, bytes]) -> None:
    assert run("hash")[0] == 2
    assert run("hash", "-c", "SUMS", "a.db")[0] == 2
    assert run("hash", "-a", "crc32", "a.db")[0] == 2
    code, _, err = run("hash", "--blocks", "--block-size", "1000", "a.db")
    assert code == 2
    assert "error: invalid block_size 1000: must be a power of two between 512 and 16777216 bytes (16 MiB)" in err


def test_blocks_prints_each_block_digest(files: dict[str, bytes]) -> None:
    data = files["b c.log"]
    code, out, _ = run("hash", "--blocks", "--block-size", "4096", "-a", "sha256", "b c.log")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"{hashlib.sha256(data).hexdigest()}  b c.log"
    assert lines[1] == "# 25 blocks of 4096 bytes (100000 bytes): index, offset, sha256"
    for i, line in enumerate(lines[2:]):
        assert line == f"{i}\t{i * 4096}\t{hashlib.sha256(data[i * 4096 : (i + 1) * 4096]).hexdigest()}"
    assert len(lines) == 27
    code, out, _ = run("hash", "--blocks", "--json", "a.db")
    doc = json.loads(out)
    assert doc[0]["blocks"] == [blake3.blake3(b"hello\n").hexdigest()]


def test_names_with_newlines_and_backslashes_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    name = "odd\nname\\x"
    (tmp_path / name).write_bytes(b"data")
    code, out, _ = run("hash", name)
    assert out == f"\\{blake3.blake3(b'data').hexdigest()}  odd\\nname\\\\x\n"
    (tmp_path / "SUMS").write_text(out)
    code, out, _ = run("hash", "-c", "SUMS")
    assert code == 0 and out.endswith(": OK\n")


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1))
def test_escaping_round_trips(name: str) -> None:
    prefix, shown = escape_name(name)
    assert "\n" not in shown
    assert (unescape_name(shown) if prefix else shown) == name
    entries, bad = parse_sums(sum_line("0" * 64, name) + "\n", "blake3")
    assert bad == []
    assert [e.name for e in entries] == [name]
