"""DuckDB store: the embedded default. All resolution runs as SQL inside DuckDB.

Layout in the database file: one current table per feature in ``main`` (``video__raw``), superseded
row versions in ``metaxy_history``, and system tables in ``metaxy_system``. Writes replace rows by
key with ``DELETE`` + ``INSERT`` in one transaction (no index: an index makes bulk upserts ~10x
slower), so reads of current state never merge history.

A DuckDB file can be opened by one writing process, or by several reading ones, at a time. The store
opens it per ``with store:`` block (or per call outside one) after queueing in ``<database>.locks/``
beside the file: processes are served in arrival order, consecutive readers together, so several
processes (e.g. Dagster's multiprocess executor) share a file fairly if they keep their blocks short.
Calls outside a ``with`` block that only read (``read``, ``resolve_update``, ``list_features``, ...)
open the file read-only; a ``with store:`` block opens it for writing.

Root samples given to ``resolve_update`` are registered with DuckDB for the query: an eager resolve
releases them before it returns, a lazy one keeps them until the store closes (the end of the
``with store:`` block), since its frames read them until then.

Memory: DuckDB's own default budget is 80% of RAM per process, so a few large resolves side by side
can exhaust a machine. A store that opens its own connection gives DuckDB
``memory_limit`` = 256 MiB or 100 bytes per row of its largest feature table, whichever is more, at
most 25% of RAM (see :func:`default_memory_limit`), and spills to ``<database>.tmp`` beside the
file; ``memory_limit=`` or ``config={"memory_limit": ...}`` override it, ``memory_limit=None`` keeps
DuckDB's default. An external ``connection`` keeps its own settings.
"""

import contextlib
import logging
import os
import random
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import narwhals as nw
import polars as pl

from metaxy_core import columns as C
from metaxy_core.errors import FilterError, MetadataValidationError, ResolveError, StoreError
from metaxy_core.feature import BaseFeature
from metaxy_core.filters import compile_filters
from metaxy_core.increment import Increment
from metaxy_core.keys import FeatureKey
from metaxy_core.lineage import ResolvePlan, TableSchema
from metaxy_core.schema import widened_columns
from metaxy_core.stores import _incremental, _queue_lock
from metaxy_core.stores._incremental import CHECKPOINTS, EVENTS, KeyRestriction, prune_statements
from metaxy_core.stores._sql import (
    STATUS,
    STORED_PBF,
    STORED_PROV,
    SqlDialect,
    changed_keys_sql,
    compact_victims_sql,
    diff_sql,
    expected_sql,
    in_keys,
    q,
    removed_fields,
    restrict,
    restricted_dep_sources,
    restriction_keys,
    split_by_status,
    stored_sql,
)
from metaxy_core.stores.base import MetadataStore, ParentCover, require_open

_log = logging.getLogger(__name__)

HISTORY = "metaxy_history"
SYSTEM = "metaxy_system"
PARENTS = "metaxy_parents"
"""Expansion parents written with no children (one marker row per parent), per feature table."""

_BASE_MEMORY = 256 * 2**20
_MEMORY_PER_ROW = 100
_COMPACT_ROWS_PER_PASS = 4_000_000
"""History rows ranked per pass of a compaction (see ``_compact``)."""
_CHANGED_FIRST_SHARE = 0.25
"""Above this share of differing samples an eager resolve fetches the whole diff in one pass."""
_DEAD_ROW_SHARE = 0.2
"""A write rewrites a feature table once its deleted row slots exceed this share of its rows."""


def _arrow(frame: pl.DataFrame) -> Any:
    """The frame as Arrow for DuckDB to scan, without copying its strings.

    polars keeps strings as Arrow string views; its default export converts every string column to
    ``large_string``, a full copy (about 400 MB more at a million rows). DuckDB reads views as
    VARCHAR, so export them as they are.
    """
    return frame.to_arrow(compat_level=pl.CompatLevel.newest())


def _total_memory() -> int | None:
    """Physical RAM, or the cgroup limit of this container when that is lower."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            total = min(total, int(limit))
    return total


def default_memory_limit(rows: int = 0) -> str | None:
    """The DuckDB ``memory_limit`` a store uses unless told otherwise, for a largest table of ``rows``.

    256 MiB, or 100 bytes per row of the largest feature table when that is more (about 1 GB at
    ten million rows), at most a quarter of RAM. DuckDB keeps the table blocks it read or wrote
    cached up to its budget, so the budget is most of a process's memory: at a million samples
    with ten versions of history a 4 GiB budget ended at a 3.2 GB peak, 256 MiB at 0.9 GB with
    resolves as fast. Larger tables get more: their writes and joins spill to disk beside the file
    otherwise (at ten million rows a 256 MiB budget made a full rewrite 1.3x slower). A quarter of
    RAM leaves room for the pipeline itself and for other processes sharing the file.
    """
    total = _total_memory()
    if total is None:
        return None
    wanted = max(_BASE_MEMORY, _MEMORY_PER_ROW * rows)
    return f"{min(wanted, total // 4) // 2**20}MiB"


class DuckDBMetadataStore(MetadataStore):
    """Metadata in a DuckDB database file (or ``":memory:"``).

    ``compression="fast"`` (default) favours write speed over file size; ``"small"`` keeps DuckDB's
    default compression (about half the write speed, a quarter of the file size). ``connection``
    reuses an open DuckDB connection (e.g. from dagster-duckdb's ``DuckDBResource``).
    ``read_only=True`` (or ``config={"access_mode": "READ_ONLY"}``) opens the file read-only: reads
    and resolves work, writes raise. ``lock_timeout`` bounds the wait for other processes (seconds).
    ``memory_limit`` caps DuckDB's memory (default ``"auto"``: 256 MiB or 100 B per row of the largest
    feature table if more, at most 25% of RAM, set when the store opens; ``None``:
    DuckDB's own default); ``config`` passes DuckDB settings and wins over both.

    >>> import metaxy_core as mx
    >>> store = mx.DuckDBMetadataStore(database=":memory:")
    >>> with store:
    ...     store.list_features()
    []
    """

    kind = "duckdb"
    supports_parent_markers = True
    supports_incremental = True
    _read_sessions_read_only = True

    def __init__(
        self,
        database: str | Path = ":memory:",
        *,
        hash_algorithm: str = "sha256",
        hash_length: int | None = None,
        lock_timeout: float = 120.0,
        connection: duckdb.DuckDBPyConnection | None = None,
        config: dict[str, Any] | None = None,
        compression: str = "fast",
        memory_limit: str | None = "auto",
        read_only: bool = False,
    ) -> None:
        super().__init__(hash_algorithm=hash_algorithm, hash_length=hash_length)
        self.database = str(database)
        self.lock_timeout = lock_timeout
        self.config = dict(config or {})
        if str(self.config.get("access_mode", "")).upper() == "READ_ONLY":
            read_only = True
            del self.config["access_mode"]  # passed to DuckDB as read_only=
        self.read_only = read_only
        self._queued = False
        self._auto_memory = memory_limit == "auto" and "memory_limit" not in self.config
        self.memory_limit = default_memory_limit() if memory_limit == "auto" else memory_limit
        if compression not in ("fast", "small"):
            raise StoreError(f"compression={compression!r}: use 'fast' (default) or 'small'.")
        self.compression = compression
        self._external = connection
        self._con: duckdb.DuckDBPyConnection | None = None
        # Samples registered for lazy increments: their relations read them until the store closes.
        self._lazy_views: list[str] = []
        if self.database != ":memory:" and connection is None and not read_only:
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"DuckDBMetadataStore(database={self.database!r})"

    # -- connection -------------------------------------------------------------------------------
    def _open(self) -> None:
        if self._external is not None:
            self._con, read_only = self._external, self.read_only
        else:
            self._con, read_only = self._connect()
        self._configure(self._con, read_only)

    def _configure(self, con: duckdb.DuckDBPyConnection, read_only: bool) -> None:
        """Session settings and the store's schemas, on a connection just opened."""
        con.execute("SET TimeZone = 'UTC'").fetchall()
        if self._auto_memory and self._external is None:
            # The default budget follows the largest feature table (see default_memory_limit).
            rows = con.execute(
                "SELECT coalesce(max(estimated_size), 0) FROM duckdb_tables() WHERE schema_name = 'main'"
            ).fetchall()[0][0]
            limit = default_memory_limit(int(rows))
            if limit is not None and limit != self.memory_limit:
                self.memory_limit = limit
                con.execute(f"SET memory_limit = '{limit}'").fetchall()
        if self.compression == "fast":
            # Provenance hashes are random hex: DuckDB's dictionary+FSST analysis spends ~0.3 s per
            # million rows per column on them for little gain. Skipping it halves write time; files
            # grow ~4x. compression="small" keeps DuckDB's default.
            con.execute("SET disabled_compression_methods = 'dict_fsst'").fetchall()
        if not read_only:
            # A read-only connection cannot create them; every reader checks that a table exists.
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {HISTORY}").fetchall()
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {SYSTEM}").fetchall()

    def connect_config(self) -> dict[str, Any]:
        """DuckDB settings this store opens its connection with (the memory budget, the spill folder,
        no checkpoint vacuum), then ``config``, which wins."""
        # Results leave DuckDB as Arrow string views, which polars takes over without copying
        # (plain Arrow strings would be copied into views: one more copy of every resolved string).
        settings: dict[str, Any] = {"arrow_output_version": "1.4", "produce_arrow_string_view": True}
        # DuckDB's checkpoint "vacuums" row groups that lost rows by rewriting them merged: after a
        # 1% rewrite of 10M rows, where every row group lost some rows, that took 5.6 s of a 6 s
        # write (0.2 s without). The store reclaims deleted slots itself, in bulk (_drop_dead_rows).
        settings["max_vacuum_tasks"] = 0
        if self.memory_limit is not None:
            settings["memory_limit"] = self.memory_limit
        if self.database != ":memory:":
            # Spill next to the database (same disk, cleaned up by DuckDB), not in the working directory.
            settings["temp_directory"] = f"{self.database}.tmp"
        return settings | self.config

    def _connect(self) -> tuple[duckdb.DuckDBPyConnection, bool]:
        """Queue for the file (see ``_queue_lock``), then open it; returns the connection and its mode.

        Reads outside a ``with store:`` block (and every use of a read-only store) open read-only,
        so several readers share the file; writers get it alone, in arrival order.
        """
        if self.database == ":memory:":
            return duckdb.connect(":memory:", config=self.connect_config()), False
        path = Path(self.database)
        if path.is_dir():
            raise StoreError(
                f"Cannot open DuckDB file {self.database}: it is a directory. Point database= at a file, e.g. "
                f"{path / 'metadata.duckdb'}."
            )
        shared = self.read_only or self._opening_for_read
        if shared and not path.exists():
            if self.read_only:
                raise StoreError(
                    f"Cannot open DuckDB file {self.database} read-only: it does not exist. Write to it with a store "
                    "without read_only first, or check the path."
                )
            shared = False  # a read of a store never written: create the (empty) file
        deadline = time.monotonic() + self.lock_timeout
        queued = False
        try:
            shared = _queue_lock.acquire(self.database, shared, self.lock_timeout)
            queued = True
        except PermissionError as exc:
            # A read-only store on a folder it cannot write: no queue, DuckDB's own lock still holds.
            if not shared:
                raise self._permission_error(exc) from exc
        try:
            con = self._connect_with_retry(shared, deadline)
        except BaseException:
            if queued:
                _queue_lock.release(self.database)
            raise
        self._queued = queued
        return con, shared

    def _permission_error(self, exc: BaseException) -> StoreError:
        return StoreError(
            f"Cannot open DuckDB file {self.database}: permission denied ({exc}). Give this user read access to "
            "the file (and write access to it and its folder to write), or use read_only=True to only read."
        )

    def _connect_with_retry(self, read_only: bool, deadline: float) -> duckdb.DuckDBPyConnection:
        delay = 0.02
        while True:
            try:
                return duckdb.connect(self.database, read_only=read_only, config=self.connect_config())
            except duckdb.Error as exc:
                message = str(exc)
                # Held by a process outside the queue (e.g. a DuckDB shell): wait for it.
                locked = "could not set lock" in message.lower() or "conflicting lock" in message.lower()
                if locked and time.monotonic() < deadline:
                    time.sleep(delay * (1 + random.random()))
                    delay = min(delay * 2, 0.5)
                    continue
                raise self._open_error(exc, locked) from exc

    def _open_error(self, exc: duckdb.Error, locked: bool) -> StoreError:
        message = str(exc)
        if locked:
            return _queue_lock.LockTimeoutError(
                f"Timed out after {self.lock_timeout:g} s waiting for DuckDB file {self.database}: {message}. "
                "Close the store or program that holds it, or raise lock_timeout."
            )
        if "not a valid DuckDB database file" in message:
            return StoreError(
                f"Cannot open {self.database}: the file exists but is not a DuckDB database. Check database= (a "
                "typo, or another tool's file?), or move the file away to start a new store there."
            )
        if "Is a directory" in message:
            return StoreError(
                f"Cannot open DuckDB file {self.database}: it is a directory. Point database= at a file."
            )
        if "Permission denied" in message or "Operation not permitted" in message:
            return self._permission_error(exc)
        if "different configuration" in message:
            return StoreError(
                f"Cannot open DuckDB file {self.database}: this process already has it open with other settings "
                f"(read-only or not, or other config=): {message}. Close the other connection first."
            )
        return StoreError(f"Cannot open DuckDB file {self.database}: {message}")

    def _close(self) -> None:
        if self._con is not None:
            # An external connection outlives the store: release what this store registered on it.
            for view in self._lazy_views:
                with contextlib.suppress(duckdb.Error):
                    self._con.unregister(view)
            if self._external is None:
                self._con.close()
        self._lazy_views.clear()
        self._con = None
        if self._queued:
            self._queued = False
            _queue_lock.release(self.database)

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise StoreError(f"{self!r} is closed: use `with store:`.")
        return self._con

    def _run(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Execute and drain one statement."""
        return self.connection.execute(sql, params).fetchall()

    def _arrow_schema(self, sql: str) -> Any:
        return self.connection.sql(sql).to_arrow_table().schema

    @property
    def dialect(self) -> SqlDialect:
        return SqlDialect(self.hash_algorithm, self.hash_length)

    # -- schema -----------------------------------------------------------------------------------
    def _table_exists(self, table: str, schema: str = "main") -> bool:
        rows = self._run(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
            [schema, table],
        )
        return bool(rows[0][0])

    def _schema(self, key: FeatureKey) -> TableSchema | None:
        table = key.table_name
        if not self._table_exists(table):
            return None
        types = {row[0]: row[1] for row in self._run(f"DESCRIBE {q(table)}")}
        empty = pl.from_arrow(self.connection.sql(f"SELECT * FROM {q(table)} LIMIT 0").to_arrow_table())
        assert isinstance(empty, pl.DataFrame)
        structs = {
            name: tuple(f.name for f in empty.schema[name].fields)  # type: ignore[attr-defined]
            for name in C.STRUCT_COLUMNS
            if name in types
        }
        return TableSchema(
            columns=tuple(c for c in types if not C.is_system(c)),
            struct_fields=structs,
            types=types,
            dtypes=dict(empty.schema),
        )

    def _list_features(self) -> list[FeatureKey]:
        # Only metaxy tables: a shared DuckDB file may hold the user's own tables too.
        rows = self._run(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = 'main' AND column_name = ?",
            [C.PROVENANCE],
        )
        keys = []
        for (name,) in rows:
            with contextlib.suppress(Exception):
                keys.append(FeatureKey(name.split("__")))
        return keys

    # -- system tables ----------------------------------------------------------------------------
    def _append_system(self, name: str, frame: pl.DataFrame) -> None:
        table = f"{SYSTEM}.{q(name)}"
        view = f"__metaxy_system_{uuid.uuid4().hex[:12]}"
        self.connection.register(view, _arrow(frame))
        try:
            if not self._table_exists(name, SYSTEM):
                self._run(f"CREATE TABLE {table} AS SELECT * FROM {q(view)}")
            else:
                self._run(f"INSERT INTO {table} BY NAME SELECT * FROM {q(view)}")
        finally:
            self.connection.unregister(view)

    def _read_system(self, name: str) -> pl.DataFrame | None:
        if not self._table_exists(name, SYSTEM):
            return None
        return self.connection.sql(f"SELECT * FROM {SYSTEM}.{q(name)}").pl()

    def _prune_bookkeeping(self, keep_fingerprints: int, events_before: datetime) -> None:
        tables = [
            f"{SYSTEM}.{q(n)}" if self._table_exists(n, SYSTEM) else None for n in (CHECKPOINTS, EVENTS)
        ]
        statements = prune_statements(
            tables[0], tables[1], keep_fingerprints, self.dialect.timestamp(events_before)
        )
        self._in_transaction("prune bookkeeping", [(sql, None) for sql in statements])

    # -- filters ----------------------------------------------------------------------------------
    def _filtered(self, source: str, filters: Sequence[Any]) -> str:
        """``source`` (a SELECT) restricted by filters, each parsed and checked by compile_filters."""
        if not filters:
            return source
        schema = pl.from_arrow(self.connection.sql(f"SELECT * FROM ({source}) AS s LIMIT 0").to_arrow_table())
        assert isinstance(schema, pl.DataFrame)
        predicates = compile_filters(filters, dialect="duckdb", schema=schema.schema)

        def where(preds: Sequence[str]) -> str:
            return f"SELECT * FROM ({source}) AS f WHERE " + " AND ".join(f"({p})" for p in preds)

        try:
            self.connection.sql(where(predicates))  # binds only: type errors surface here, per filter
        except duckdb.Error:
            for f, p in zip(filters, predicates, strict=True):
                try:
                    self.connection.sql(where([p]))
                except duckdb.Error as exc:
                    reason = str(exc).split("\n")[0]
                    raise FilterError(f"Filter {f!r} does not fit the column types: {reason}") from None
            raise
        return where(predicates)

    @staticmethod
    def _filled(source: str) -> str:
        """Rows with their data versions filled in.

        A data version equal to the provenance (the common case) is stored as NULL: every string
        column costs DuckDB ~0.4 s per million rows to compress on write, and NULLs are nearly free.
        """
        return (
            f"SELECT * REPLACE (coalesce({q(C.DATA_VERSION_BY_FIELD)}, {q(C.PROVENANCE_BY_FIELD)}) AS "
            f"{q(C.DATA_VERSION_BY_FIELD)}, coalesce({q(C.DATA_VERSION)}, {q(C.PROVENANCE)}) AS {q(C.DATA_VERSION)}) "
            f"FROM ({source}) AS raw"
        )

    def _current(self, table: str, filters: Sequence[Any] = ()) -> str:
        return self._filtered(
            self._filled(f"SELECT * FROM {q(table)} WHERE {q(C.DELETED_AT)} IS NULL"), filters
        )

    def _stored_rows(self, plan: ResolvePlan, filters: Sequence[Any]) -> str:
        """Live stored rows of the target; for expansion with its parent markers (child columns NULL)."""
        if plan.key_columns == plan.target_ids or not self._table_exists(plan.table, PARENTS):
            return self._current(plan.table, filters)
        both = f"SELECT * FROM {q(plan.table)} UNION ALL BY NAME SELECT * FROM {PARENTS}.{q(plan.table)}"
        return self._filtered(
            self._filled(f"SELECT * FROM ({both}) AS m WHERE {q(C.DELETED_AT)} IS NULL"), filters
        )

    # -- resolve ----------------------------------------------------------------------------------
    def _resolve(
        self,
        cls: type[BaseFeature],
        plan: ResolvePlan,
        samples: pl.DataFrame | None,
        filters: list[Any],
        lazy: bool,
        restriction: KeyRestriction | None = None,
    ) -> Increment:
        if samples is None:
            narrow = not lazy and restriction is None and _incremental.eligible(cls, plan)
            return self._resolve_sql(plan, None, [], filters, lazy, restriction, changed_first=narrow)
        # The samples are registered as a view only for as long as a query can read them: an eager
        # resolve releases them at once (a registered Arrow table stays in memory until
        # unregistered), a lazy one when the store closes (its relations read the view until then).
        name = f"__metaxy_samples_{uuid.uuid4().hex[:12]}"
        self.connection.register(name, _arrow(samples))
        if lazy:
            self._lazy_views.append(name)
            return self._resolve_sql(plan, name, samples.columns, filters, lazy, restriction)
        try:
            narrow = restriction is None
            return self._resolve_sql(
                plan, name, samples.columns, filters, lazy, restriction, changed_first=narrow
            )
        finally:
            self.connection.unregister(name)

    def _changed_keys(self, plan: ResolvePlan, since: datetime) -> str:
        # Every stored row, soft-deleted ones included: deletes are change events of their own.
        deps = {dep.index: f"SELECT * FROM {q(dep.table)}" for dep in plan.deps}
        target = f"SELECT * FROM {q(plan.table)}" if self._table_exists(plan.table) else None
        return changed_keys_sql(self.dialect, plan, deps, target, since)

    def _count_changed(self, plan: ResolvePlan, since: datetime) -> int:
        return int(self._run(f"SELECT count(*) FROM ({self._changed_keys(plan, since)}) AS c")[0][0])

    def _resolve_sql(
        self,
        plan: ResolvePlan,
        samples_view: str | None,
        samples_frame_columns: Sequence[str],
        filters: list[Any],
        lazy: bool,
        restriction: KeyRestriction | None = None,
        changed_first: bool = False,
    ) -> Increment:
        """The increment as DuckDB computes it.

        ``changed_first`` (eager resolves of roots and of plans whose keys can be restricted, see
        :func:`~metaxy_core.stores._incremental.eligible`): find the keys that differ with a narrow
        comparison first, then fetch the full rows of those keys only (see :meth:`_changed_first`).
        """
        d = self.dialect
        target_schema = self._schema(plan.feature)
        samples_source = None
        samples_columns: list[str] = []
        if samples_view is not None:
            samples_source = f"SELECT * FROM {q(samples_view)}"
            samples_columns = [c for c in samples_frame_columns if not C.is_system(c)]
        carried = samples_columns if samples_view is not None else plan.carried_columns
        keys = restriction_keys(
            plan, samples_source, restriction, lambda since: self._changed_keys(plan, since)
        )
        only = None if restriction is None else in_keys(plan.key_columns, keys)
        if samples_source is not None and restriction is not None and not restriction.samples_only:
            samples_source = restrict(samples_source, only)
        if plan.missing_required:
            expected = None
        else:
            schemas = {}
            sources = {}
            for dep in plan.deps:
                schema = self._schema(dep.feature)
                assert schema is not None
                schemas[dep.index] = schema
                sources[dep.index] = self._current(dep.table, dep.filters)
            if restriction is not None:
                sources = restricted_dep_sources(plan, sources, keys)
            expected = self._filtered(
                expected_sql(d, plan, sources, schemas, samples_source, [], samples_columns), filters
            )
        stored = None
        if target_schema is not None:
            stored = stored_sql(d, plan, restrict(self._stored_rows(plan, filters), only), target_schema)
        if expected is None:
            return self._orphans_only(plan, stored, carried, lazy)
        diff = diff_sql(d, plan, expected, stored, carried, removed_fields(plan, target_schema))
        if changed_first and stored is not None:
            found = self._changed_first(plan, diff, filters, samples_view, samples_frame_columns)
            if found is not None:
                return found
        return self._split(plan, diff, carried, lazy)

    def _changed_first(
        self,
        plan: ResolvePlan,
        diff: str,
        filters: list[Any],
        samples_view: str | None,
        samples_columns: Sequence[str],
    ) -> Increment | None:
        """Resolve by keys: the differing keys first, then the rows of those keys (None: too many).

        The diff's join holds whatever its rows carry (upstream columns, provenance structs,
        changed fields) for every sample, in sync or not. Asked only for keys, DuckDB prunes all of
        that and joins keys and provenance: at 10M samples the full diff spilled to disk for three
        times as long. The rows of the differing keys are then computed on those keys alone. When
        most samples differ (a code change), the narrow pass saves nothing: the full diff runs.
        """
        keys = ", ".join(q(k) for k in plan.key_columns)
        changed = self.connection.sql(f"SELECT {keys} FROM ({diff}) AS r").to_arrow_table()
        if changed.num_rows == 0:
            nothing = KeyRestriction(nothing=True)
            return self._resolve_sql(plan, samples_view, samples_columns, filters, False, nothing)
        stored_rows = int(self._run(f"SELECT count(*) FROM {q(plan.table)}")[0][0])
        if changed.num_rows > _CHANGED_FIRST_SHARE * stored_rows:
            return None
        view = f"__metaxy_changed_{uuid.uuid4().hex[:12]}"
        self.connection.register(view, changed)
        try:
            restriction = KeyRestriction(keys=f"SELECT * FROM {q(view)}")
            return self._resolve_sql(plan, samples_view, samples_columns, filters, False, restriction)
        finally:
            self.connection.unregister(view)

    def _split(self, plan: ResolvePlan, diff: str, carried: Sequence[str], lazy: bool) -> Increment:
        keys = list(plan.key_columns)
        non_key = [c for c in carried if c not in keys]
        new_cols = [*keys, *non_key, C.PROVENANCE_BY_FIELD, C.PROVENANCE, C.CHANGED_FIELDS]
        stale_cols = new_cols
        orphan_exprs = [
            *(q(k) for k in keys),
            f"{q(STORED_PBF)} AS {q(C.PROVENANCE_BY_FIELD)}",
            f"{q(STORED_PROV)} AS {q(C.PROVENANCE)}",
        ]
        con = self.connection
        if lazy:

            def rel(status: str, cols: Sequence[str]) -> Any:
                sql = f"SELECT {', '.join(cols)} FROM ({diff}) AS r WHERE {STATUS} = '{status}'"
                return nw.from_native(con.sql(sql))

            def counter() -> dict[str, int]:
                # one pass over the diff instead of one per part
                rows = self._run(f"SELECT {STATUS}, count(*) FROM ({diff}) AS r GROUP BY {STATUS}")
                return {"new": 0, "stale": 0, "orphaned": 0} | {status: int(n) for status, n in rows}

            return Increment(
                new=rel("new", [q(c) for c in new_cols]),
                stale=rel("stale", [q(c) for c in stale_cols]),
                orphaned=rel("orphaned", orphan_exprs),
                counter=counter,
            )
        try:
            frame = con.sql(diff).pl()
        except duckdb.Error as exc:
            raise ResolveError(f"Resolving '{plan.feature}' failed in DuckDB: {exc}") from exc
        parts = split_by_status(frame)
        orphaned = parts["orphaned"].select(
            *keys, pl.col(STORED_PBF).alias(C.PROVENANCE_BY_FIELD), pl.col(STORED_PROV).alias(C.PROVENANCE)
        )
        return Increment(
            new=nw.from_native(parts["new"].select(new_cols)),
            stale=nw.from_native(parts["stale"].select(stale_cols)),
            orphaned=nw.from_native(orphaned),
        )

    def _stream(self, frame: Any, batch_size: int) -> Iterator[pl.DataFrame]:
        native = nw.to_native(frame) if isinstance(frame, nw.LazyFrame | nw.DataFrame) else frame
        if not isinstance(native, duckdb.DuckDBPyRelation):
            yield from super()._stream(frame, batch_size)
            return
        # DuckDB hands the result over one Arrow record batch at a time, so only one chunk is in
        # Python's hands at once however large the increment is.
        reader = native.to_arrow_reader(batch_size)
        empty = True
        for batch in reader:
            if batch.num_rows == 0:
                continue
            empty = False
            chunk = pl.from_arrow(batch)
            assert isinstance(chunk, pl.DataFrame)
            yield from chunk.iter_slices(batch_size) if chunk.height > batch_size else (chunk,)
        if empty:
            chunk = pl.from_arrow(reader.schema.empty_table())
            assert isinstance(chunk, pl.DataFrame)
            yield chunk

    def _orphans_only(
        self, plan: ResolvePlan, stored: str | None, carried: Sequence[str], lazy: bool
    ) -> Increment:
        """A required upstream has no metadata: nothing is expected, every stored sample is orphaned."""
        keys = ", ".join(q(k) for k in plan.key_columns)
        con = self.connection
        if stored is None:
            stored = (
                f"SELECT {', '.join(f'CAST(NULL AS VARCHAR) AS {q(k)}' for k in plan.key_columns)}, "
                f"CAST(NULL AS VARCHAR) AS {q(STORED_PBF)}, CAST(NULL AS VARCHAR) AS {q(STORED_PROV)} WHERE false"
            )
        orphan_sql = (
            f"SELECT {keys}, {q(STORED_PBF)} AS {q(C.PROVENANCE_BY_FIELD)}, {q(STORED_PROV)} AS "
            f"{q(C.PROVENANCE)} FROM ({stored}) AS s"
        )
        empty = pl.DataFrame(
            {
                **{k: pl.Series([], dtype=pl.String) for k in plan.key_columns},
                C.PROVENANCE_BY_FIELD: pl.Series(
                    [], dtype=pl.Struct({f.key: pl.String for f in plan.fields})
                ),
                C.PROVENANCE: pl.Series([], dtype=pl.String),
            }
        )
        empty = empty.with_columns(pl.lit(None, dtype=pl.List(pl.String)).alias(C.CHANGED_FIELDS))
        stale = empty
        if lazy:
            return Increment(
                nw.from_native(empty.lazy()),
                nw.from_native(stale.lazy()),
                nw.from_native(con.sql(orphan_sql)),
            )
        return Increment(
            nw.from_native(empty), nw.from_native(stale), nw.from_native(con.sql(orphan_sql).pl())
        )

    # -- write ------------------------------------------------------------------------------------
    def _write(
        self,
        cls: type[BaseFeature],
        frame: pl.DataFrame,
        replace_key: tuple[str, ...],
        parents: ParentCover | None = None,
        *,
        stamped: bool = False,
    ) -> None:
        con = self.connection
        table = cls.spec.key.table_name
        tag = uuid.uuid4().hex[:12]
        incoming, covered, markers = (f"__metaxy_{what}_{tag}" for what in ("incoming", "covered", "markers"))
        views = {incoming: frame}
        joined = None
        if stamped and all(c in frame.columns for c in C.STAMP_COLUMNS):
            # polars keeps a column of one repeated value as a scalar, but its Arrow export writes the
            # value once per row: the six stamp columns cost ~230 MB per million rows. DuckDB gets
            # them as one row and repeats them itself while it inserts.
            body, stamps = f"__metaxy_body_{tag}", f"__metaxy_stamps_{tag}"
            views = {body: frame.drop(C.STAMP_COLUMNS), stamps: frame.select(C.STAMP_COLUMNS).head(1)}
            joined = incoming
        if parents is not None:
            views |= {covered: parents.covered, markers: parents.empty}
        for name, data in views.items():
            con.register(name, _arrow(data))
        if joined is not None:
            columns = ", ".join(q(c) for c in frame.columns)
            self._run(
                f"CREATE TEMP VIEW {q(joined)} AS SELECT {columns} FROM {q(body)} CROSS JOIN {q(stamps)}"
            )
        try:
            self._run("BEGIN TRANSACTION")
            try:
                if self._ensure_table(table, incoming, frame):
                    self._upsert(table, incoming, frame, replace_key, covered if parents else None)
                if parents is not None:
                    self._write_markers(table, replace_key, covered, markers, parents.empty)
                self._run("COMMIT")
            except BaseException:
                self._run("ROLLBACK")
                raise
            self._drop_dead_rows(table)
        except duckdb.ConversionException as exc:
            raise MetadataValidationError(
                f"write({cls.spec.key}): a value does not fit the stored column type ({exc}). Convert the column to "
                "the stored type; nothing was written."
            ) from exc
        except duckdb.Error as exc:
            raise StoreError(f"write({cls.spec.key}) failed in DuckDB and was rolled back: {exc}") from exc
        finally:
            if joined is not None:
                with contextlib.suppress(duckdb.Error):
                    self._run(f"DROP VIEW IF EXISTS {q(joined)}")
            for name in views:
                con.unregister(name)

    def _write_markers(
        self, table: str, on: tuple[str, ...], covered: str, markers: str, empty: pl.DataFrame
    ) -> None:
        """Drop the markers of every covered parent, record the covered parents without children."""
        target = f"{PARENTS}.{q(table)}"
        if not self._table_exists(table, PARENTS):
            if empty.height:
                self._run(f"CREATE SCHEMA IF NOT EXISTS {PARENTS}")
                self._run(f"CREATE TABLE {target} AS SELECT * FROM {q(markers)}")
            return
        for column in C.STRUCT_COLUMNS:
            self._widen_struct(table, column, empty.schema[column], targets=(target,))
        key_match = " AND ".join(f"t.{q(c)} = k.{q(c)}" for c in on)
        self._run(f"DELETE FROM {target} AS t USING {q(covered)} AS k WHERE {key_match}")
        if empty.height:
            self._run(f"INSERT INTO {target} BY NAME SELECT * FROM {q(markers)}")

    def _ensure_table(self, table: str, incoming: str, frame: pl.DataFrame) -> bool:
        """Create or evolve the feature's tables; False when creating them already stored the rows.

        A first write creates the table *with* its rows (CREATE TABLE AS SELECT): DuckDB 2.0 loses
        the rows of a large INSERT into a table created empty (``LIMIT 0``) in the same transaction
        when a column is all NULL, so they would be invisible on this connection.
        """
        if not self._table_exists(table):
            dv, dvbf, prov, pbf = (
                q(c) for c in (C.DATA_VERSION, C.DATA_VERSION_BY_FIELD, C.PROVENANCE, C.PROVENANCE_BY_FIELD)
            )
            self._run(
                f"CREATE TABLE {q(table)} AS SELECT * REPLACE ("
                f"CASE WHEN {dvbf} IS NOT DISTINCT FROM {pbf} THEN NULL ELSE {dvbf} END AS {dvbf}, "
                f"CASE WHEN {dv} = {prov} THEN NULL ELSE {dv} END AS {dv}) FROM {q(incoming)}"
            )
            self._run(f"CREATE TABLE {HISTORY}.{q(table)} AS SELECT * FROM {q(table)} WHERE false")
            return False
        stored = {row[0]: row[1] for row in self._run(f"DESCRIBE {q(table)}")}
        wanted = {row[0]: row[1] for row in self._run(f"DESCRIBE SELECT * FROM {q(incoming)}")}
        for column, ctype in wanted.items():
            if column not in stored:
                for target in (q(table), f"{HISTORY}.{q(table)}"):
                    self._run(f"ALTER TABLE {target} ADD COLUMN {q(column)} {ctype}")
        # The prepared frame widens a stored user column only losslessly (int -> float, int -> str,
        # narrower -> wider int): convert the stored values in every table holding the column.
        stored_dtypes = dict(
            pl.from_arrow(self.connection.sql(f"SELECT * FROM {q(table)} LIMIT 0").to_arrow_table()).schema
        )  # type: ignore[union-attr]
        for column in widened_columns(dict(frame.schema), stored_dtypes):
            self._set_column_type(table, column, wanted[column])
        for column in C.STRUCT_COLUMNS:
            self._widen_struct(table, column, frame.schema[column])
        return True

    def _tables_with(self, table: str, column: str) -> list[str]:
        """The feature's current, history and parent-marker tables that have ``column``."""
        out = []
        for schema in ("main", HISTORY, PARENTS):
            rows = self._run(
                "SELECT count(*) FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
                "AND column_name = ?",
                [schema, table, column],
            )
            if rows[0][0]:
                out.append(q(table) if schema == "main" else f"{schema}.{q(table)}")
        return out

    def _set_column_type(self, table: str, column: str, ctype: str) -> None:
        for target in self._tables_with(table, column):
            self._run(f"ALTER TABLE {target} ALTER COLUMN {q(column)} SET DATA TYPE {ctype}")

    def _widen_struct(
        self, table: str, column: str, incoming: Any = None, targets: Sequence[str] | None = None
    ) -> None:
        """Make the stored struct hold every field it had plus every incoming one (old rows stay readable).

        ``targets``: the tables to alter (default: the feature's current and history tables).
        """
        if incoming is None:
            return
        targets = targets or (q(table), f"{HISTORY}.{q(table)}")
        arrow = self._arrow_schema(f"SELECT {q(column)} FROM {targets[0]} LIMIT 0").field(0).type
        have = [arrow.field(i).name for i in range(arrow.num_fields)]
        add = [f.name for f in incoming.fields if f.name not in have]
        if not add:
            return
        fields = sorted([*have, *add])
        new_type = "STRUCT(" + ", ".join(f"{q(f)} VARCHAR" for f in fields) + ")"
        using = (
            "struct_pack("
            + ", ".join(
                f"{q(f)} := " + (f"{q(column)}.{q(f)}" if f in have else "CAST(NULL AS VARCHAR)")
                for f in fields
            )
            + ")"
        )
        # a NULL struct (data version stored as "same as provenance") must stay NULL
        using = f"CASE WHEN {q(column)} IS NULL THEN NULL ELSE {using} END"
        for target in targets:
            self._run(f"ALTER TABLE {target} ALTER COLUMN {q(column)} SET DATA TYPE {new_type} USING {using}")

    def _upsert(
        self,
        table: str,
        incoming: str,
        frame: pl.DataFrame,
        replace_key: tuple[str, ...],
        covered: str | None = None,
    ) -> None:
        """Move the stored rows of every replaced key to history and insert the new rows.

        ``covered``: a view of the replaced keys when it is more than the incoming rows' keys
        (expansion parents written without children).
        """
        stored_cols = [row[0] for row in self._run(f"DESCRIBE {q(table)}")]
        struct_fields = self._arrow_schema(f"SELECT * FROM {q(table)} LIMIT 0")
        select: list[str] = []
        for column in stored_cols:
            if column in C.STRUCT_COLUMNS:
                stype = struct_fields.field(column).type
                names = [stype.field(k).name for k in range(stype.num_fields)]
                have = set(
                    frame.schema[column].fields[k].name for k in range(len(frame.schema[column].fields))
                )
                packed = (
                    "struct_pack("
                    + ", ".join(
                        f"{q(n)} := " + (f"i.{q(column)}.{q(n)}" if n in have else "CAST(NULL AS VARCHAR)")
                        for n in names
                    )
                    + ")"
                )
                if column == C.DATA_VERSION_BY_FIELD:
                    same = f"i.{q(C.DATA_VERSION_BY_FIELD)} IS NOT DISTINCT FROM i.{q(C.PROVENANCE_BY_FIELD)}"
                    packed = f"CASE WHEN {same} THEN NULL ELSE {packed} END"
                select.append(packed)
            elif column == C.DATA_VERSION:
                select.append(
                    f"CASE WHEN i.{q(C.DATA_VERSION)} = i.{q(C.PROVENANCE)} THEN NULL ELSE i.{q(C.DATA_VERSION)} END"
                )
            elif column in frame.columns:
                select.append(f"i.{q(column)}")
            else:
                select.append("NULL")
        insert = f"INSERT INTO {q(table)} SELECT {', '.join(select)} FROM {q(incoming)} AS i"
        stored = self._run(f"SELECT count(*) FROM {q(table)}")[0][0]
        if stored == 0:
            self._run(insert)
            return
        key_match = " AND ".join(f"t.{q(c)} = k.{q(c)}" for c in replace_key)
        # Superseded versions move to history, then the new rows replace them: no index, no
        # merge-on-read. The replaced rows are found once, by one join on the key columns alone,
        # and then moved and deleted by row id: joining every stored column on string keys twice
        # (copy, then delete) cost 1.8x as long for a full rewrite of 10M rows and 2.5x for 1%.
        victims = f"__metaxy_replaced_{uuid.uuid4().hex[:12]}"
        self._run(
            f"CREATE TEMP TABLE {q(victims)} AS SELECT t.rowid AS r FROM {q(table)} AS t "
            f"SEMI JOIN {q(covered or incoming)} AS k ON {key_match}"
        )
        try:
            replaced = f"rowid IN (SELECT r FROM {q(victims)})"
            if self._run(f"SELECT count(*) FROM {q(victims)}")[0][0] == stored:
                replaced = "true"  # every stored row is replaced: no row ids to look up
            self._run(f"INSERT INTO {HISTORY}.{q(table)} SELECT * FROM {q(table)} WHERE {replaced}")
            self._run(f"DELETE FROM {q(table)} WHERE {replaced}")
        finally:
            self._run(f"DROP TABLE IF EXISTS {q(victims)}")
        self._run(insert)

    def _drop_dead_rows(self, table: str) -> None:
        """After a committed change: rewrite ``table`` with its live rows alone if a fifth of its row
        slots hold deleted rows (``_DEAD_ROW_SHARE``).

        A DELETE only marks rows, and the store turns off DuckDB's checkpoint vacuum (see
        ``connect_config``), so every partial rewrite leaves its old rows' slots behind for scans to
        skip. Row groups whose rows were all deleted (a full rewrite) cost nothing: the next
        checkpoint frees them, so one is run before judging. Rewriting the rest when a fifth of the
        slots are dead keeps scans within 1.25x of a compact table, at a cost spread over the writes
        that made the slots: at 1% per write, one copy of the table per twenty writes. The rewrite
        is its own transaction; if it fails the committed change stands and only the slots stay.
        """

        def dead_share() -> float:
            slots = self._run(
                "SELECT estimated_size FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = ?",
                [table],
            )
            live = self._run(f"SELECT count(*) FROM {q(table)}")[0][0]
            return (slots[0][0] - live) / live if slots and live else 0.0

        if dead_share() <= _DEAD_ROW_SHARE:
            return
        try:
            self._run("CHECKPOINT")
        except duckdb.Error:
            return  # another transaction is open on this database: judge after the next write
        if dead_share() <= _DEAD_ROW_SHARE:
            return
        fresh = f"__metaxy_rewrite_{uuid.uuid4().hex[:12]}"
        try:
            self._in_transaction(
                f"reclaiming the deleted row slots of {table}",
                [
                    (f"CREATE TABLE {q(fresh)} AS SELECT * FROM {q(table)}", None),
                    (f"DROP TABLE {q(table)}", None),
                    (f"ALTER TABLE {q(fresh)} RENAME TO {q(table)}", None),
                ],
            )
        except duckdb.Error as exc:
            _log.warning("%s: the change is committed; reclaiming deleted row slots failed: %s", table, exc)

    # -- schema changes ---------------------------------------------------------------------------
    def _duckdb_type(self, dtype: pl.DataType) -> str:
        """DuckDB's name for a polars dtype (as a write of that dtype would create the column)."""
        view = f"__metaxy_type_{uuid.uuid4().hex[:12]}"
        self.connection.register(view, _arrow(pl.DataFrame(schema={"c": dtype})))
        try:
            return str(self._run(f"DESCRIBE SELECT * FROM {q(view)}")[0][1])
        finally:
            self.connection.unregister(view)

    def _in_transaction(self, what: str, statements: Sequence[tuple[str, Sequence[Any] | None]]) -> None:
        self._run("BEGIN TRANSACTION")
        try:
            for sql, params in statements:
                self._run(sql, params)
            self._run("COMMIT")
        except duckdb.ConversionException as exc:
            self._run("ROLLBACK")
            raise MetadataValidationError(
                f"{what}: stored values do not convert ({exc}); nothing changed."
            ) from exc
        except BaseException:
            self._run("ROLLBACK")
            raise

    def _alter_column(self, cls: type[BaseFeature], column: str, dtype: pl.DataType) -> int:
        table = cls.spec.key.table_name
        ctype = self._duckdb_type(dtype)
        self._in_transaction(
            f"alter_column_type({cls.spec.key}, {column!r}, {dtype})",
            [
                (f"ALTER TABLE {target} ALTER COLUMN {q(column)} SET DATA TYPE {ctype}", None)
                for target in self._tables_with(table, column)
            ],
        )
        return int(self._run(f"SELECT count(*) FROM {q(table)}")[0][0])

    def _add_id_column(self, cls: type[BaseFeature], column: str, dtype: pl.DataType, default: Any) -> int:
        table = cls.spec.key.table_name
        ctype = self._duckdb_type(dtype)
        statements: list[tuple[str, Sequence[Any] | None]] = []
        for target in (q(table), f"{HISTORY}.{q(table)}"):
            statements += [
                (f"ALTER TABLE {target} ADD COLUMN {q(column)} {ctype}", None),
                (f"UPDATE {target} SET {q(column)} = CAST(? AS {ctype})", [default]),
            ]
        self._in_transaction(f"add_id_column({cls.spec.key}, {column!r})", statements)
        return int(self._run(f"SELECT count(*) FROM {q(table)}")[0][0])

    # -- history retention ------------------------------------------------------------------------
    def _compact(self, cls: type[BaseFeature], keep_versions: int, before: datetime | None) -> int:
        history = f"{HISTORY}.{q(cls.spec.key.table_name)}"
        ids = cls.spec.id_columns
        # Ranking every version of every sample at once needs memory in proportion to the whole
        # history (100M rows at 10M samples rewritten 10 times ran out of a 256 MiB budget): rank
        # the samples in groups by a hash of their ids, a bounded number of rows at a time.
        rows = int(self._run(f"SELECT count(*) FROM {history}")[0][0])
        groups = max(1, -(-rows // _COMPACT_ROWS_PER_PASS))
        by_ids = ", ".join(q(c) for c in ids)
        if not self._may_compact(history, by_ids, keep_versions, before):
            return 0
        in_group = f"hash({by_ids}) % {groups} = {{group}}"
        # The kept rows are copied into a fresh table that then replaces the history table, rather
        # than the removed ones deleted: DuckDB keeps per-vector delete information in memory, and
        # deleting 90M of 100M rows, a few in every vector, ran out of a 953 MiB budget. Copying
        # the kept tenth is cheaper too. One transaction: a failure leaves the history as it was.
        fresh = f"{HISTORY}.{q('__metaxy_compact_' + uuid.uuid4().hex[:12])}"
        statements: list[tuple[str, Sequence[Any] | None]] = [
            (f"CREATE TABLE {fresh} AS SELECT * FROM {history} WHERE false", None)
        ]
        for group in range(groups):
            where = in_group.format(group=group)
            source = f"(SELECT rowid AS __metaxy_rowid, * FROM {history} WHERE {where})"
            victims = compact_victims_sql(self.dialect, source, ids, "__metaxy_rowid", keep_versions, before)
            statements.append(
                (
                    f"INSERT INTO {fresh} SELECT * FROM {history} WHERE {where} AND rowid NOT IN ({victims})",
                    None,
                )
            )
        statements += [
            (f"DROP TABLE {history}", None),
            (f"ALTER TABLE {fresh} RENAME TO {q(cls.spec.key.table_name)}", None),
        ]
        self._in_transaction(f"compact({cls.spec.key})", statements)
        return rows - int(self._run(f"SELECT count(*) FROM {history}")[0][0])

    def _may_compact(self, history: str, by_ids: str, keep_versions: int, before: datetime | None) -> bool:
        """False when no history row can be removed, so compaction need not copy the table.

        Two cheap proofs: no row was written before ``before``, or no sample has more than
        ``keep_versions`` versions (one aggregate, no window, no copy). Otherwise True.
        """
        if before is not None:
            older = (
                f"SELECT 1 FROM {history} WHERE {q(C.UPDATED_AT)} < {self.dialect.timestamp(before)} LIMIT 1"
            )
            if not self._run(older):
                return False
        most = self._run(f"SELECT max(n) FROM (SELECT count(*) AS n FROM {history} GROUP BY {by_ids}) AS v")[
            0
        ][0]
        return most is not None and int(most) > keep_versions

    def _reclaim_space(self) -> None:
        """Write the database file anew, so that the disk gets back what compaction removed.

        DuckDB reuses the blocks of deleted rows for later writes but keeps the file at its
        largest size. The kept data is copied into a fresh file beside it, which then replaces the
        file in one rename while this store still holds the file alone: a crash before the rename
        leaves the old file whole (the half-written copy is removed next time), one after it the
        new file. Skipped for in-memory databases, external connections, and sessions whose lazy
        results still read the connection.
        """
        if self.database == ":memory:" or self._external is not None or self._lazy_views or self.read_only:
            return
        path = Path(self.database)
        fresh = path.with_name(path.name + ".compacting")
        for leftover in (fresh, Path(f"{fresh}.wal")):
            leftover.unlink(missing_ok=True)
        self._run("CHECKPOINT")
        name = self._run("SELECT current_database()")[0][0]
        literal = "'" + str(fresh).replace("'", "''") + "'"
        self._run(f"ATTACH {literal} AS __metaxy_fresh")
        try:
            self._run(f"COPY FROM DATABASE {q(name)} TO __metaxy_fresh")
        finally:
            self._run("DETACH __metaxy_fresh")
        self.connection.close()
        self._con = None
        try:
            if Path(f"{path}.wal").exists():
                # unapplied changes would be replayed onto the new file: keep the old one
                fresh.unlink(missing_ok=True)
            else:
                os.replace(fresh, path)
        finally:
            self._con = self._connect_with_retry(False, time.monotonic() + self.lock_timeout)
            self._configure(self._con, False)

    # -- read / delete ----------------------------------------------------------------------------
    def _read(
        self,
        cls: type[BaseFeature],
        columns: Sequence[str] | None,
        filters: list[Any],
        include_deleted: bool,
        history: bool,
        lazy: bool,
    ) -> Any:
        table = q(cls.spec.key.table_name)
        source = f"SELECT * FROM {table}"
        if history:
            source = f"SELECT * FROM {table} UNION ALL BY NAME SELECT * FROM {HISTORY}.{table}"
        source = self._filled(source)
        if not include_deleted:
            source = f"SELECT * FROM ({source}) AS s WHERE {q(C.DELETED_AT)} IS NULL"
        source = self._filtered(source, filters)
        if columns is not None:
            source = f"SELECT {', '.join(q(c) for c in columns)} FROM ({source}) AS c"
        rel = self.connection.sql(source)
        if lazy:
            require_open(self)
            return nw.from_native(rel)
        return nw.from_native(rel.pl())

    def _delete(self, cls: type[BaseFeature], filters: list[Any], soft: bool) -> int:
        table = q(cls.spec.key.table_name)
        ids = tuple(cls.spec.id_columns)
        source = f"SELECT * FROM {table}" + ("" if not soft else f" WHERE {q(C.DELETED_AT)} IS NULL")
        matched = self._filtered(source, filters)
        key_match = " AND ".join(f"t.{q(c)} = k.{q(c)}" for c in ids)
        selection = f"(SELECT DISTINCT {', '.join(q(c) for c in ids)} FROM ({matched}) AS m) AS k"
        self._run("BEGIN TRANSACTION")
        try:
            count = int(self._run(f"SELECT count(*) FROM {selection}")[0][0])
            if soft:
                self._run(
                    f"INSERT INTO {HISTORY}.{table} SELECT t.* FROM {table} AS t SEMI JOIN {selection} ON {key_match}"
                )
                self._run(
                    f"UPDATE {table} AS t SET {q(C.DELETED_AT)} = now(), {q(C.UPDATED_AT)} = now() "
                    f"FROM {selection} WHERE {key_match}"
                )
            else:
                self._run(f"DELETE FROM {HISTORY}.{table} AS t USING {selection} WHERE {key_match}")
                self._run(f"DELETE FROM {table} AS t USING {selection} WHERE {key_match}")
            self._run("COMMIT")
        except BaseException:
            self._run("ROLLBACK")
            raise
        if not soft:
            self._drop_dead_rows(cls.spec.key.table_name)
        return count
