"""`list` and the retention table on 50,000 sets: the right rows, streamed (no timing
threshold here; the figures measured by hand are in the issue's report)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from rustybackup import BackupManager
from rustybackup.catalog import to_us
from rustybackup.cli import cli
from rustybackup.manifest import is_set_id

SETS = 50_000
CHAIN = 10  # a FULL, then nine INCREMENTALs on it
START = datetime(2020, 1, 1, tzinfo=UTC)


def _set_id(n: int) -> str:
    return f"{(START + timedelta(hours=n)).strftime('%Y%m%dT%H%M%S%fZ')}-{n:08x}"


@pytest.fixture(scope="module")
def big_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """50,000 sets written straight into the catalog (no files: listings read rows only)."""
    root = tmp_path_factory.mktemp("scale")
    (root / "src").mkdir()
    m = BackupManager(root / "repo", clock=lambda: START, max_backup_sets=SETS + 10)
    m.register_database("db", root / "src")
    rows, pieces = [], []
    for n in range(SETS):
        sid = _set_id(n)
        full = n % CHAIN == 0
        parent = None if full else _set_id(n - 1)
        at = to_us(START + timedelta(hours=n))
        rows.append(
            (
                sid,
                "db",
                "full" if full else "incremental",
                parent,
                at,
                at + 1_000_000,
                "available",
                1000 + n,
                8192,
                "blake3",
                None,
                json.dumps([f"t{n % 3}"]),
                2000 + n,
                1,
                f"sets/{sid}/manifest.json",
                f"sets/{sid}/blockmap",
                "00",
            )
        )
        pieces.append((f"{sid}/data.piece", sid, f"sets/{sid}/data.piece", 1000 + n, "00", "blake3", 1))
    with m.catalog.transaction() as c:
        c.executemany(f"INSERT INTO sets VALUES ({', '.join('?' * 17)})", rows)
        c.executemany("INSERT INTO pieces VALUES (?, ?, ?, ?, ?, ?, ?)", pieces)
    m.catalog.close()
    return root / "repo"


def _run(repo: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--repo", str(repo), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_list_with_a_limit_prints_the_newest_sets_oldest_first(big_repo: Path) -> None:
    out = _run(big_repo, "list", "db", "--limit", "5").splitlines()
    ids = [line.split()[0] for line in out[1:]]
    assert ids == [_set_id(n) for n in range(SETS - 5, SETS)]
    assert out[0].split()[:3] == ["id", "database", "type"]
    # Ids are printed whole (never ellipsized), at any terminal width.
    assert all(len(i) == len(_set_id(0)) for i in ids)
    # Every column starts where its header does (a header wider than its values too).
    starts = [out[0].index(name) for name in ("database", "type", "parent", "finished", "status", "size")]
    for line in out[1:]:
        assert all(line[at - 1] == " " and line[at] != " " for at in starts), line


def test_list_since_filters_by_start_time(big_repo: Path) -> None:
    since = (START + timedelta(hours=SETS - 3)).isoformat()
    out = _run(big_repo, "list", "db", "--since", since).splitlines()
    assert [line.split()[0] for line in out[1:]] == [_set_id(n) for n in range(SETS - 3, SETS)]


def test_list_json_streams_every_set_with_its_pieces(big_repo: Path) -> None:
    doc = json.loads(_run(big_repo, "list", "--json"))
    assert len(doc) == SETS
    assert [d["id"] for d in doc[:2]] == [_set_id(0), _set_id(1)]
    last = doc[-1]
    assert last["id"] == _set_id(SETS - 1) and last["parent_id"] == _set_id(SETS - 2)
    assert last["pieces"] == [
        {
            "id": f"{last['id']}/data.piece",
            "set_id": last["id"],
            "path": f"sets/{last['id']}/data.piece",
            "size": 1000 + SETS - 1,
            "checksum": "00",
            "algorithm": "blake3",
            "block_count": 1,
        }
    ]
    assert last["tags"] == [f"t{(SETS - 1) % 3}"]


def test_the_whole_plain_list_has_one_row_per_set(big_repo: Path) -> None:
    out = _run(big_repo, "list").splitlines()
    assert len(out) == SETS + 1
    assert out[1].split()[0] == _set_id(0) and out[-1].split()[0] == _set_id(SETS - 1)


def test_the_retention_table_on_50000_sets_is_the_plan(big_repo: Path) -> None:
    out = _run(big_repo, "retention", "db", "--redundancy", "2").splitlines()
    rows = [line.split(None, 2) for line in out if is_set_id(line.split(" ", 1)[0])]
    assert len(rows) == SETS
    kept = [r[0] for r in rows if r[1] == "keep"]
    assert kept == [_set_id(n) for n in range(SETS - 2 * CHAIN, SETS)]
    assert all(r[1] == "delete" for r in rows[: SETS - 2 * CHAIN])
    assert out[-1] == f"{2 * CHAIN} kept, {SETS - 2 * CHAIN} to delete (dry run: pass --apply to delete them)"
