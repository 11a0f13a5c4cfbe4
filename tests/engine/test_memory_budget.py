"""A DuckDB store opens its connection with a bounded memory budget and a spill folder beside the file."""

from pathlib import Path

import duckdb

import metaxy_core as mx
from metaxy_core.stores.duckdb import default_memory_limit


def _setting(store: mx.DuckDBMetadataStore, name: str) -> str:
    with store:
        return str(store.connection.execute(f"SELECT current_setting('{name}')").fetchall()[0][0])


def _rendered(limit: str) -> str:
    """How DuckDB prints a memory limit (e.g. '4.0 GiB')."""
    con = duckdb.connect(":memory:", config={"memory_limit": limit})
    try:
        return str(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])
    finally:
        con.close()


def test_default_budget_is_applied(tmp_path: Path) -> None:
    limit = default_memory_limit()
    assert limit is not None
    mib = int(limit.removesuffix("MiB"))
    assert 0 < mib <= 256
    store = mx.DuckDBMetadataStore(tmp_path / "m.duckdb")
    assert _setting(store, "memory_limit") == _rendered(limit)
    assert _setting(store, "temp_directory") == f"{tmp_path / 'm.duckdb'}.tmp"
    # DuckDB's own default (80% of RAM) is above the budget on any machine with more than 5 GiB.
    assert _rendered(limit) != _setting(mx.DuckDBMetadataStore(":memory:", memory_limit=None), "memory_limit")


def test_budget_is_overridable(tmp_path: Path) -> None:
    assert (
        _setting(mx.DuckDBMetadataStore(tmp_path / "a.duckdb", memory_limit="1GiB"), "memory_limit")
        == "1.0 GiB"
    )
    by_config = mx.DuckDBMetadataStore(
        tmp_path / "b.duckdb", config={"memory_limit": "512MiB", "temp_directory": str(tmp_path / "spill")}
    )
    assert _setting(by_config, "memory_limit") == "512.0 MiB"
    assert _setting(by_config, "temp_directory") == str(tmp_path / "spill")


def test_external_connection_keeps_its_settings(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "m.duckdb"), config={"memory_limit": "300MiB"})
    assert (
        _setting(mx.DuckDBMetadataStore(tmp_path / "m.duckdb", connection=con), "memory_limit") == "300.0 MiB"
    )
    con.close()


def test_default_budget_follows_the_largest_table(tmp_path: Path) -> None:
    """256 MiB for small stores; 100 bytes per row of the largest feature table beyond that (capped)."""
    assert default_memory_limit(0) == default_memory_limit(1_000_000)
    big = default_memory_limit(10_000_000)
    assert big is not None
    assert int(big.removesuffix("MiB")) > 256
    path = tmp_path / "big.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE main.video AS SELECT range AS i FROM range(4_000_000)")
    con.close()
    store = mx.DuckDBMetadataStore(path)
    assert _setting(store, "memory_limit") == _rendered(default_memory_limit(4_000_000) or "")
    assert _setting(store, "memory_limit") != _rendered(default_memory_limit(0) or "")
    # an explicit budget is kept whatever the tables
    assert _setting(mx.DuckDBMetadataStore(path, memory_limit="300MiB"), "memory_limit") == "300.0 MiB"
