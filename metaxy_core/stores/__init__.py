"""Metadata stores. Engine drivers are imported lazily: importing this package loads none of them."""

from typing import Any

from metaxy_core.stores.base import MetadataStore as MetadataStore
from metaxy_core.stores.memory import InMemoryMetadataStore as InMemoryMetadataStore

_LAZY = {
    "DuckDBMetadataStore": "metaxy_core.stores.duckdb",
    "SQLiteMetadataStore": "metaxy_core.stores.sqlite",
    "PostgreSQLMetadataStore": "metaxy_core.stores.postgres",
    "ClickHouseMetadataStore": "metaxy_core.stores.clickhouse",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
