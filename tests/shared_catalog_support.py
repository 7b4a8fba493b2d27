"""One real PostgreSQL server for the shared-catalog and node tests (started once per
session by `catalog_server`, a Unix socket in its own directory, as pg_support starts
every cluster), and a fresh database on it per test (`catalog_url`)."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pg_support import Cluster, psycopg, require_postgresql, workdir

_names = itertools.count()


@dataclass
class CatalogServer:
    cluster: Cluster

    def url(self, dbname: str = "postgres") -> str:
        c = self.cluster
        return f"postgresql://postgres@/{dbname}?host={c.sockdir}&port={c.port}"

    def fresh(self, prefix: str = "cat") -> str:
        """The URL of a new, empty database on the server."""
        name = f"{prefix}_{next(_names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def catalog_server() -> Iterator[CatalogServer]:
    bin = require_postgresql()
    base = workdir("rb-shared-catalog-")
    cluster = Cluster.init(bin, base, checksums=False, conf={"max_connections": "60"})
    cluster.start()
    try:
        yield CatalogServer(cluster)
    finally:
        cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def catalog_url(catalog_server: CatalogServer) -> str:
    return catalog_server.fresh()
