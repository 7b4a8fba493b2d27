"""Page checksums of a resumed base backup: the files it adopts from a killed run are not
read by its pass (so the pass's own page checks never see them), and are checked on
their own; a page damaged in such a file is still named in the set's manifest."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from pg_support import archived_cluster, rb
from rustybackup import _core, manifest
from test_postgresql_pages import _flip
from test_resume_postgresql import NAME, Origin, _cut_backup, _relation_path


@pytest.fixture
def origin() -> Iterator[Origin]:
    with archived_cluster("rb-pg-pages-resume-", NAME, conf={"autovacuum": "off"}) as a:
        cluster = a.cluster
        # Created in this order, so their files are read in it (relfilenodes ascend).
        for t in ("victim", "later"):
            cluster.query(f"CREATE TABLE {t} AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g")
        cluster.query("CHECKPOINT")
        yield Origin(a.bin, a.base, a.repo, cluster)


def test_a_damaged_page_in_a_file_adopted_from_a_killed_run_is_still_reported(origin: Origin) -> None:
    c = origin.cluster
    victim = _relation_path(c, "victim")
    _flip(victim, 3)
    # Adopted only if last written more than a timestamp tick before the cut run read it.
    time.sleep(1.2)
    staging = _cut_backup(origin, _relation_path(c, "later"))
    assert victim in _core.checkpoint_adoptable(staging / "checkpoint")

    out = rb(origin.repo, "-v", "backup", NAME, "--type", "full", "--json")
    doc = json.loads(out.stdout)
    assert doc["id"] == staging.name and "resumed from" in out.stderr
    final = manifest.load(origin.repo / "sets" / str(doc["id"]) / "manifest.json", set_id=str(doc["id"]))
    # Not read by this run: its bytes came from the killed run's piece.
    assert int(doc["bytes_read"]) < sum(f.size for f in final.files)
    rel = str(victim.relative_to(c.data))
    assert final.postgresql is not None
    assert [(p.path, p.block) for p in final.postgresql.damaged_pages] == [(rel, 3)]
    assert f"{rel} block 3 (checksum mismatch)" in out.stderr
