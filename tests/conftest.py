"""Shared fixtures for the whole test suite.

* Every test runs with a clean metaxy configuration (no ``METAXY_*`` variables from the caller's
  environment, no config cached from an earlier test) and in its own active :class:`FeatureGraph`,
  so feature classes defined by one test never leak into another.
* ``store`` is the store conformance matrix: every test that takes it runs once per entry of
  :data:`STORE_FACTORIES`. A new backend joins the whole suite by adding one factory there (a
  factory may call ``pytest.importorskip`` / ``pytest.skip`` when its driver or server is absent).
"""

import atexit
import importlib.util
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import metaxy_core as mx
from tests import pg_server

StoreFactory = Callable[..., mx.MetadataStore]
"""``factory(tmp_path, **options) -> store``; ``options`` are constructor keywords such as ``hash_algorithm``."""


def _memory_store(tmp_path: Path, **options: Any) -> mx.MetadataStore:
    return mx.InMemoryMetadataStore(**options)


def _duckdb_store(tmp_path: Path, **options: Any) -> mx.MetadataStore:
    # A real file, not ":memory:": the file layout, reopening and transactions are part of the contract.
    return mx.DuckDBMetadataStore(database=tmp_path / "metadata.duckdb", **options)


def _sqlite_store(tmp_path: Path, **options: Any) -> mx.MetadataStore:
    return mx.SQLiteMetadataStore(database=tmp_path / "metadata.sqlite", **options)


def _postgres_store(tmp_path: Path, **options: Any) -> mx.MetadataStore:
    # One server per session, a fresh schema per store: no shared state, no per-test database.
    dsn = pg_server.session_dsn()
    if dsn is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's `postgresql` package or "
            f"set {pg_server.ENV_DSN}"
        )
    return mx.PostgreSQLMetadataStore(dsn, schema=pg_server.fresh_schema(), **options)


CLICKHOUSE_SERVER_DSN = os.environ.get("METAXY_TEST_CLICKHOUSE_DSN")
"""A ClickHouse server for the clickhouse-connect path; read at import (METAXY_* vars are cleared per test)."""
_chdb_path: str | None = None


def _clickhouse_store(tmp_path: Path, **options: Any) -> mx.MetadataStore:
    # chDB binds one path per process: every store of this test process lives in one folder, each in a
    # database of its own. No store stays open between tests, so other tests may use chDB themselves.
    global _chdb_path
    if importlib.util.find_spec("chdb") is None:
        pytest.skip('chdb is not installed (pip install "metaxy-dagster[clickhouse]")')
    from metaxy_core.stores.clickhouse import ClickHouseMetadataStore

    if _chdb_path is None:
        _chdb_path = tempfile.mkdtemp(prefix="metaxy-chdb-")
        atexit.register(shutil.rmtree, _chdb_path, True)
    database = f"test_{uuid.uuid4().hex[:12]}"
    return ClickHouseMetadataStore(dsn=f"chdb://{_chdb_path}?database={database}", **options)


STORE_FACTORIES: dict[str, StoreFactory] = {
    "memory": _memory_store,
    "duckdb": _duckdb_store,
    "sqlite": _sqlite_store,
    "postgres": _postgres_store,
    "clickhouse": _clickhouse_store,
}


def pytest_sessionfinish(session: pytest.Session) -> None:
    pg_server.stop_server()


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """DSN of the session's PostgreSQL server (started on first use)."""
    dsn = pg_server.session_dsn()
    if dsn is None:
        pytest.skip(f"PostgreSQL server binaries not found: install `postgresql` or set {pg_server.ENV_DSN}")
    return dsn


@pytest.fixture(autouse=True)
def _clean_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith("METAXY_"):
            monkeypatch.delenv(name)
    mx.set_config(None)
    yield
    mx.set_config(None)


@pytest.fixture(autouse=True)
def graph() -> Iterator[mx.FeatureGraph]:
    """A fresh feature graph, active for the whole test."""
    fresh = mx.FeatureGraph()
    with fresh.use():
        yield fresh


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., mx.MetadataStore]:
    """Builds stores of one backend: ``store_factory(**options)``. Each call under one test gets its own
    folder, so two stores of the same backend never share state."""
    factory = STORE_FACTORIES[request.param]
    counter = iter(range(1_000))

    def build(**options: Any) -> mx.MetadataStore:
        folder = tmp_path / f"store{next(counter)}"
        folder.mkdir()
        return factory(folder, **options)

    return build


@pytest.fixture
def store(store_factory: Callable[..., mx.MetadataStore]) -> Iterator[mx.MetadataStore]:
    """An open store of each backend (the conformance matrix)."""
    built = store_factory()
    with built:
        yield built
