"""Whatever a damaged scheduler configuration or run-history row holds, loading it gives
a result or a ConfigError/CatalogError with a message: never another exception type."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rustybackup.config import parse_config
from rustybackup.errors import CatalogError, ConfigError
from rustybackup.history import History

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["0 2 * * *", "UTC", "full", "quick", "run_once", "defer", "2026-01-01T00:00:00", "db", "j1"]),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
JOB_KEYS = [
    "id",
    "kind",
    "name",
    "database",
    "schedule",
    "tz",
    "priority",
    "max_duration",
    "window_id",
    "enabled",
    "misfire",
    "window_policy",
    "added_at",
    "backup_type",
    "retention",
    "tags",
    "level",
    "budget",
]
WINDOW_KEYS = ["id", "name", "start", "end", "days", "tz", "also"]


def entries(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), JSON, max_size=len(keys))


DOCUMENTS = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {"schema": st.one_of(st.just(1), JSON)},
        optional={
            "enabled": JSON,
            "jobs": st.one_of(st.lists(entries(JOB_KEYS), max_size=3), JSON),
            "windows": st.one_of(st.lists(entries(WINDOW_KEYS), max_size=2), JSON),
        },
    ),
)


@settings(deadline=None, max_examples=300)
@given(DOCUMENTS)
def test_any_document_loads_or_gives_a_config_error(doc: object) -> None:
    path = Path("/repo/scheduler_config.json")
    try:
        parse_config(json.dumps(doc), path)
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}: ") and len(str(exc)) < 1000, str(exc)


COLUMN_VALUES = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=10),
    st.binary(max_size=6),
    st.sampled_from(["completed", "running", "failed", "j1"]),
)
COLUMNS = [
    "id",
    "job_id",
    "scheduled_for",
    "started_at",
    "finished_at",
    "status",
    "backup_set_id",
    "error",
    "bytes_read",
    "bytes_written",
    "owner",
    "lease_until",
]


@settings(deadline=None, max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(*[COLUMN_VALUES] * len(COLUMNS)), min_size=1, max_size=3))
def test_any_history_row_reads_or_gives_a_catalog_error(tmp_path: Path, rows: list[tuple[object, ...]]) -> None:
    db_path = tmp_path / "catalog.db"
    db_path.unlink(missing_ok=True)
    History(db_path).close()
    with sqlite3.connect(db_path) as db:
        # The table as written by a damaged or foreign program: no constraints at all.
        db.execute("DROP TABLE sched_executions")
        db.execute(f"CREATE TABLE sched_executions ({', '.join(COLUMNS)})")
        db.executemany(f"INSERT INTO sched_executions VALUES ({', '.join('?' * len(COLUMNS))})", rows)
    db.close()
    history = History(db_path)
    try:
        now = datetime(2026, 1, 1, tzinfo=UTC)
        calls = (
            history.query,
            history.last_scheduled,
            lambda: history.recover(now),
            lambda: history.claim("j1", now, now, timedelta(minutes=5)),
        )
        for call in calls:
            try:
                call()
            except CatalogError as exc:
                assert str(exc).startswith(f"{db_path}: ")
    finally:
        history.close()
