"""Stores that keep their data in a file (or folder) and can be reopened by another process.

The fault tests (SIGKILL, concurrent writers, disk full) run once per entry of :data:`FILE_ENGINES`.
A backend joins them by adding one function here that builds a store from a folder: the function
must be importable by a child process (module level, no pytest fixtures), because the faults are
injected into real processes. A builder may raise :class:`EngineUnavailable` when its driver is
missing; the tests then skip that engine. An engine that allows one database path per process
also goes into :data:`ISOLATED_ENGINES`.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import metaxy_core as mx


class EngineUnavailable(RuntimeError):
    """The engine's driver or server is not available on this machine."""


def _duckdb(folder: Path, **options: Any) -> mx.MetadataStore:
    return mx.DuckDBMetadataStore(database=folder / "metadata.duckdb", **options)


def _sqlite(folder: Path, **options: Any) -> mx.MetadataStore:
    return mx.SQLiteMetadataStore(database=folder / "metadata.sqlite", **options)


FileEngine = Callable[..., mx.MetadataStore]
"""``engine(folder, **options) -> store``; every call with the same folder opens the same data."""

FILE_ENGINES: dict[str, FileEngine] = {
    "duckdb": _duckdb,
    "sqlite": _sqlite,
}

ISOLATED_ENGINES: set[str] = set()
"""Engines whose process may open only one store path in its lifetime (chDB binds a process to its
first path). The scenarios then open these stores in a fresh child process for every check,
never in the test process itself."""


def build(name: str, folder: str | Path, **options: Any) -> mx.MetadataStore:
    return FILE_ENGINES[name](Path(folder), **options)
