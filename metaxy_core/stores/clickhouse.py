"""ClickHouse store: a ClickHouse server (``clickhouse://``) or chDB in-process (``chdb:///path``).

Layout in the store's database, per feature ``video/raw``:

* ``video__raw``: current rows, ``ReplacingMergeTree(__metaxy_write) ORDER BY (id columns)``, read
  with ``FINAL`` so the newest committed version of each sample wins without a merge-on-read
  aggregation. Rows removed from the current state (hard delete, expansion children a parent no
  longer has) stay as small tombstone rows (``__metaxy_tombstone > 0``) that reads skip.
* ``metaxy_history__video__raw``: superseded row versions (MergeTree), each tagged with the write
  that superseded it (``__metaxy_superseded_by``).
* ``metaxy_commits``: one row per committed write id; ``metaxy_system__<name>``: system tables.

Parent markers of an expansion feature (a parent written with no children) are rows of the current
table too, flagged by ``__metaxy_marker`` (a hash of the parent's ids, 0 for ordinary rows, part of
the sorting key): the parent's ids and system columns are set, its children's id columns hold
their type's default and the user columns are NULL. Being in the same table, the markers a write
adds or removes are published by the same ``ATTACH PARTITION`` as its rows. Only the stored side of
an expansion's resolve reads them; reads, history and downstream inputs skip them.

ClickHouse has no transactions, so a write commits in this order: rows go to a staging table (a
copy of the current table, invisible to readers), the superseded versions are copied to history
tagged with the write id (hidden until committed), the write id is recorded in ``metaxy_commits``
(the decision), and the staging parts are attached to the current table with one ``ATTACH
PARTITION ... FROM`` (all parts become visible at once). A failure before the commit record drops
the staging table and the hidden history rows; a process killed after it is rolled forward the next
time the database is opened. Struct columns are stored as one ``Nullable(String)`` column per field
(``metaxy_provenance_by_field__audio``), so a new field is an ``ADD COLUMN``, and are read back as
named tuples (polars structs) of the stored fields, sorted.
"""

import contextlib
import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import narwhals as nw
import polars as pl
import sqlglot
from sqlglot import exp

from metaxy_core import columns as C
from metaxy_core.errors import FilterError, MetadataValidationError, StoreError
from metaxy_core.feature import BaseFeature
from metaxy_core.filters import compile_filters, polars_filters
from metaxy_core.increment import Increment
from metaxy_core.keys import FeatureKey
from metaxy_core.lineage import ResolvePlan, TableSchema
from metaxy_core.schema import widened_columns
from metaxy_core.stores._clickhouse_exec import Executor, connect, mask_dsn, parse_dsn
from metaxy_core.stores._incremental import CHECKPOINTS, EVENTS, KeyRestriction, doomed_checkpoints_sql
from metaxy_core.stores._sql import (
    STORED_PBF,
    STORED_PROV,
    SqlDialect,
    changed_keys_sql,
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
from metaxy_core.stores.base import MetadataStore, ParentCover

WRITE = "__metaxy_write"
TOMBSTONE = "__metaxy_tombstone"
SUPERSEDED_BY = "__metaxy_superseded_by"
MARKER = "__metaxy_marker"
HIDDEN = (WRITE, TOMBSTONE, SUPERSEDED_BY, MARKER)
REMOVED, HARD_DELETED = 1, 2
"""Tombstone kinds: gone from the current state (history kept) / hard-deleted (history purged)."""

HISTORY_PREFIX = "metaxy_history__"
STAGING_PREFIX = "metaxy_staging__"
TEMP_PREFIX = "metaxy_tmp__"
SYSTEM_PREFIX = "metaxy_system__"
COMMITS = "metaxy_commits"
STRING = "Nullable(String)"
DEFAULT_SETTINGS: dict[str, Any] = {
    # unmatched FULL JOIN columns must be NULL (not '' / 0), or new and orphaned samples look alike
    "join_use_nulls": 1,
    # a write never holds one sample twice, so ReplacingMergeTree's dedup at insert is wasted work
    # (2.8 s -> 1.0 s for a million staged rows)
    "optimize_on_insert": 0,
}
TIMESTAMP = "DateTime64(6, 'UTC')"


def chlit(value: str) -> str:
    """A ClickHouse string literal: backslashes are escapes there, unlike standard SQL."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def struct_field_column(struct: str, field: str) -> str:
    """Where one field of a by-field struct column is stored."""
    return f"{struct}__{field}"


def tuple_type(fields: Sequence[str]) -> str:
    return "Tuple(" + ", ".join(f"{q(f)} {STRING}" for f in fields) + ")"


class ClickHouseDialect(SqlDialect):
    """The resolve SQL in ClickHouse: hex of SHA256/MD5 in lower case, NULL parts as ''."""

    def hash(self, parts: Sequence[str]) -> str:
        # concat() is NULL if any part is: coalesce each one, as every engine hashes NULL as ''
        coalesced = [f"ifNull({p}, '')" for p in parts]
        text = "concat(" + ", '|', ".join(coalesced) + ")" if len(parts) > 1 else coalesced[0]
        fn = f"lower(hex({'SHA256' if self.algorithm == 'sha256' else 'MD5'}({text})))"
        if self.hash_length < (64 if self.algorithm == "sha256" else 32):
            return f"substring({fn}, 1, {self.hash_length})"
        return fn

    @staticmethod
    def part(expr: str) -> str:
        return f"ifNull(toString({expr}), '')"

    @staticmethod
    def struct_field(column: str, field: str) -> str:
        return f"tupleElement({column}, {chlit(field)})"

    @staticmethod
    def struct_pack(items: Sequence[tuple[str, str]]) -> str:
        values = ", ".join(f"CAST({v} AS {STRING})" for _, v in items)
        return f"CAST(tuple({values}), {chlit(tuple_type([k for k, _ in items]))})"

    @staticmethod
    def list_of_non_null(items: Sequence[str]) -> str:
        if not items:
            return "CAST([] AS Array(String))"
        return "arrayFilter(x -> x IS NOT NULL, [" + ", ".join(items) + "])"

    @staticmethod
    def string_agg_ordered(expr: str, order: str) -> str:
        return (
            f"arrayStringConcat(arrayMap(x -> x.2, arraySort(x -> x.1, groupArray(({order}, {expr})))), '|')"
        )

    @staticmethod
    def null_string() -> str:
        return f"CAST(NULL AS {STRING})"

    @staticmethod
    def literal(value: str) -> str:
        return chlit(value)

    @staticmethod
    def string_list(items: Sequence[str]) -> str:
        return "CAST([" + ", ".join(items) + "] AS Array(String))"

    @staticmethod
    def timestamp(value: datetime) -> str:
        text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return f"toDateTime64({chlit(text)}, 6, 'UTC')"

    @staticmethod
    def text_or_integer(ctype: str) -> bool:
        base = ctype
        for wrapper in ("LowCardinality(", "Nullable(", "LowCardinality("):
            if base.startswith(wrapper):
                base = base[len(wrapper) : -1]
        return base == "String" or base in _INTEGERS


_INTEGERS = ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64")


# -- polars types as ClickHouse column types -------------------------------------------------------
_SIMPLE: dict[Any, str] = {
    pl.Int8: "Int8",
    pl.Int16: "Int16",
    pl.Int32: "Int32",
    pl.Int64: "Int64",
    pl.UInt8: "UInt8",
    pl.UInt16: "UInt16",
    pl.UInt32: "UInt32",
    pl.UInt64: "UInt64",
    pl.Float32: "Float32",
    pl.Float64: "Float64",
    pl.Boolean: "Bool",
    pl.String: "String",
    pl.Binary: "String",
    pl.Categorical: "String",
    pl.Date: "Date32",
    pl.Null: "String",
}


def ch_type(dtype: pl.DataType, *, nullable: bool, column: str, where: str) -> str:
    """The ClickHouse type storing a polars dtype (lists and structs cannot be Nullable there)."""
    base = dtype.base_type()
    if base in _SIMPLE:
        name = _SIMPLE[base]
    elif isinstance(dtype, pl.Enum):
        name = "String"
    elif isinstance(dtype, pl.Datetime):
        precision = {"ms": 3, "us": 6, "ns": 9}[dtype.time_unit or "us"]
        name = f"DateTime64({precision}, {chlit(dtype.time_zone or 'UTC')})"
    elif isinstance(dtype, pl.Decimal):
        name = f"Decimal({dtype.precision or 38}, {dtype.scale or 0})"
    elif isinstance(dtype, pl.List | pl.Array):
        return f"Array({ch_type(dtype.inner, nullable=True, column=column, where=where)})"
    elif isinstance(dtype, pl.Struct):
        inner = ", ".join(
            f"{q(f.name)} {ch_type(f.dtype, nullable=True, column=column, where=where)}" for f in dtype.fields
        )
        return f"Tuple({inner})"
    else:
        raise MetadataValidationError(
            f"{where}: column '{column}' has type {dtype}, which the ClickHouse store cannot hold. Convert it "
            "to a number, string, boolean, date, datetime, decimal, list or struct."
        )
    return f"Nullable({name})" if nullable else name


def _naive_datetimes(frame: pl.DataFrame) -> pl.DataFrame:
    """Naive datetimes are stored as UTC; Arrow hands them over as such."""
    fix = [
        pl.col(n).dt.replace_time_zone("UTC")
        for n, t in frame.schema.items()
        if isinstance(t, pl.Datetime) and t.time_zone is None
    ]
    null = [pl.col(n).cast(pl.String) for n, t in frame.schema.items() if t == pl.Null]
    return frame.with_columns(fix + null) if fix or null else frame


_write_lock = threading.Lock()
_last_write = 0


def new_write_id() -> int:
    """A write id: nanoseconds since the epoch, strictly increasing within the process.

    The current table keeps the row with the largest write id per sample, so later writes win.
    """
    global _last_write
    with _write_lock:
        _last_write = max(time.time_ns(), _last_write + 1)
        return _last_write


class ClickHouseMetadataStore(MetadataStore):
    """Metadata in ClickHouse: a server or chDB's in-process engine.

    ``dsn`` is ``clickhouse://user:password@host:8123/database`` (``clickhouses://`` for TLS) or
    ``chdb:///absolute/path?database=name``. chDB runs one embedded ClickHouse per process bound to
    one path: stores in one process share a path and may use different databases in it.
    ``settings`` are ClickHouse settings for the session, on top of ``join_use_nulls=1`` and
    ``optimize_on_insert=0`` (which the store relies on). ``recover_after`` (seconds): an
    unfinished write older than this is rolled forward or back when a store opens a server
    database (in chDB, where one process owns the path, every unfinished write is recovered).
    ``lock_timeout`` (seconds): how long opening a chDB path waits while another process has it
    open. Several processes can share a path one ``with store:`` block at a time, as with DuckDB.

    Lazy reads and increments are polars ``LazyFrame``s over rows already fetched from ClickHouse.
    """

    kind = "clickhouse"
    supports_parent_markers = True
    supports_incremental = True
    incremental_lag = timedelta(minutes=5)
    """Several clients may write at once: rows stamped up to this long before a checkpoint may
    still have been publishing, so an incremental resolve looks that far back again."""

    def __init__(
        self,
        dsn: str,
        *,
        hash_algorithm: str = "sha256",
        hash_length: int | None = None,
        settings: Mapping[str, Any] | None = None,
        recover_after: float = 3600.0,
        lock_timeout: float = 120.0,
    ) -> None:
        super().__init__(hash_algorithm=hash_algorithm, hash_length=hash_length)
        self.dsn = dsn
        self._parsed = parse_dsn(dsn)
        self.database = self._parsed.database
        self.settings = {**DEFAULT_SETTINGS, **dict(settings or {})}
        self.recover_after = recover_after
        self.lock_timeout = lock_timeout
        self._x: Executor | None = None

    def __repr__(self) -> str:
        return f"ClickHouseMetadataStore(dsn={mask_dsn(self.dsn)!r})"

    # -- connection -------------------------------------------------------------------------------
    def _open(self) -> None:
        executor = connect(self.dsn, self.settings, self.lock_timeout)
        try:
            try:
                executor.command(f"CREATE DATABASE IF NOT EXISTS {q(self.database)}")
            except Exception as exc:
                raise StoreError(
                    f"ClickHouseMetadataStore: cannot use database '{self.database}' at {mask_dsn(self.dsn)}: {exc}"
                ) from exc
            self._x = executor
            self._run(
                f"CREATE TABLE IF NOT EXISTS {self._t(COMMITS)} ({WRITE} UInt64, table String, "
                f"committed_at {TIMESTAMP}) ENGINE = MergeTree ORDER BY {WRITE}"
            )
            self._recover(everything=executor.first_user and self._parsed.embedded)
        except BaseException:
            self._x = None
            executor.close()
            raise

    def _close(self) -> None:
        if self._x is not None:
            self._x.close()
        self._x = None

    @property
    def executor(self) -> Executor:
        if self._x is None:
            raise StoreError(f"{self!r} is closed: use `with store:`.")
        return self._x

    def _run(self, sql: str) -> None:
        self.executor.command(sql)

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.executor.rows(sql)

    def _frame(self, sql: str) -> pl.DataFrame:
        try:
            table = self.executor.arrow(sql)
        except Exception as exc:
            if _error_code(exc) in _DATA_ERRORS:
                # e.g. a filter's CAST that fails on a stored value: the query is sound, the data is not
                raise StoreError(
                    "ClickHouseMetadataStore: a stored value could not be converted or computed "
                    f"({_reason(exc)}). Check the casts and arithmetic in the filters."
                ) from None
            raise
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        return frame

    def _t(self, table: str) -> str:
        return f"{q(self.database)}.{q(table)}"

    @property
    def dialect(self) -> ClickHouseDialect:
        return ClickHouseDialect(self.hash_algorithm, self.hash_length)

    # -- catalog ----------------------------------------------------------------------------------
    def _tables(self) -> list[str]:
        return [
            r[0]
            for r in self._rows(f"SELECT name FROM system.tables WHERE database = {chlit(self.database)}")
        ]

    def _table_exists(self, table: str) -> bool:
        sql = f"SELECT count() FROM system.tables WHERE database = {chlit(self.database)} AND name = {chlit(table)}"
        return bool(self._rows(sql)[0][0])

    def _columns(self, table: str) -> dict[str, str]:
        """Column name -> ClickHouse type, in table order."""
        rows = self._rows(
            f"SELECT name, type FROM system.columns WHERE database = {chlit(self.database)} "
            f"AND table = {chlit(table)} ORDER BY position"
        )
        return {name: ctype for name, ctype in rows}

    @staticmethod
    def _stored_fields(columns: Sequence[str], struct: str) -> list[str]:
        prefix = f"{struct}__"
        return sorted(c[len(prefix) :] for c in columns if c.startswith(prefix))

    def _projection(
        self, columns: Sequence[str], fields: Mapping[str, Sequence[str]] | None = None
    ) -> list[str]:
        """User columns, then the system columns with each struct packed from its field columns.

        ``fields`` picks the struct fields (absent ones read as NULL); by default the stored ones.
        """
        out = [q(c) for c in columns if not C.is_system(c) and c not in HIDDEN]
        for column in C.SYSTEM_COLUMNS:
            if column in C.STRUCT_COLUMNS:
                stored = self._stored_fields(columns, column)
                wanted = list(fields[column]) if fields is not None else stored
                items = [(f, q(struct_field_column(column, f)) if f in stored else "NULL") for f in wanted]
                out.append(f"{self.dialect.struct_pack(items)} AS {q(column)}")
            else:
                out.append(q(column))
        return out

    def _schema(self, key: FeatureKey) -> TableSchema | None:
        table = key.table_name
        columns = self._columns(table)
        if not columns:
            return None
        projection = self._projection(list(columns))
        empty = self._frame(f"SELECT {', '.join(projection)} FROM {self._t(table)} LIMIT 0")
        return TableSchema(
            columns=tuple(c for c in columns if not C.is_system(c) and c not in HIDDEN),
            struct_fields={s: tuple(self._stored_fields(list(columns), s)) for s in C.STRUCT_COLUMNS},
            types={c: t for c, t in columns.items() if not C.is_system(c) and c not in HIDDEN},
            dtypes=dict(empty.schema),
        )

    def _list_features(self) -> list[FeatureKey]:
        rows = self._rows(
            f"SELECT table FROM system.columns WHERE database = {chlit(self.database)} AND name = {chlit(C.PROVENANCE)}"
        )
        keys = []
        for (name,) in rows:
            if name.startswith("metaxy_"):
                continue
            try:
                keys.append(FeatureKey(name.split("__")))
            except Exception:  # a table metaxy did not create
                continue
        return keys

    # -- system tables ----------------------------------------------------------------------------
    def _append_system(self, name: str, frame: pl.DataFrame) -> None:
        table = SYSTEM_PREFIX + name
        frame = _naive_datetimes(frame)
        where = f"append_system({name})"
        stored = self._columns(table)
        if not stored:
            cols = ", ".join(
                f"{q(c)} {ch_type(t, nullable=True, column=c, where=where)}" for c, t in frame.schema.items()
            )
            self._run(f"CREATE TABLE {self._t(table)} ({cols}) ENGINE = MergeTree ORDER BY tuple()")
        else:
            for c, t in frame.schema.items():
                if c not in stored:
                    ctype = ch_type(t, nullable=True, column=c, where=where)
                    self._run(f"ALTER TABLE {self._t(table)} ADD COLUMN {q(c)} {ctype}")
        self.executor.insert(self._t(table), frame.to_arrow())

    def _read_system(self, name: str) -> pl.DataFrame | None:
        table = SYSTEM_PREFIX + name
        if not self._table_exists(table):
            return None
        return self._frame(f"SELECT * FROM {self._t(table)}")

    def _prune_bookkeeping(self, keep_fingerprints: int, events_before: datetime) -> None:
        """Two mutations, checkpoints first; each keeps every row a resolve can still need.

        The doomed checkpoints are computed once into a staging table (as history compaction does),
        so the mutation deletes a fixed set of rows whatever order it rewrites parts in.
        """
        checkpoints, events = (SYSTEM_PREFIX + n for n in (CHECKPOINTS, EVENTS))
        if self._table_exists(checkpoints):
            doomed = f"{TEMP_PREFIX}{new_write_id()}_{uuid.uuid4().hex[:8]}"
            self._run(
                f"CREATE TABLE {self._t(doomed)} ENGINE = Memory AS "
                + doomed_checkpoints_sql(self._t(checkpoints), keep_fingerprints)
            )
            try:
                if int(self._rows(f"SELECT count() FROM {self._t(doomed)}")[0][0]):
                    self._run(
                        f"ALTER TABLE {self._t(checkpoints)} DELETE WHERE (feature, fingerprint, since) IN "
                        f"(SELECT feature, fingerprint, since FROM {self._t(doomed)}) SETTINGS mutations_sync = 2"
                    )
            finally:
                self._run(f"DROP TABLE IF EXISTS {self._t(doomed)}")
        if self._table_exists(events):
            before = self.dialect.timestamp(events_before)
            if int(self._rows(f"SELECT count() FROM {self._t(events)} WHERE at < {before}")[0][0]):
                self._run(
                    f"ALTER TABLE {self._t(events)} DELETE WHERE at < {before} SETTINGS mutations_sync = 2"
                )

    # -- reading the current state ------------------------------------------------------------------
    def _filtered(self, source: str, filters: Sequence[Any], schema: Mapping[str, pl.DataType]) -> str:
        """``source`` (a SELECT) restricted by the user's filters, rendered for ClickHouse.

        A filter that parses but does not fit the column types raises a :class:`FilterError` naming
        it. Each filter is checked on its own before anything runs: ClickHouse analyses a ``LIMIT 0``
        query without reading rows. ClickHouse also compares a string with a number, which the
        other stores refuse, so the filter is type-checked against the column types as well, to
        mean the same on every store.
        """
        filters = list(filters)
        predicates = [
            _strict_casts(p) for p in compile_filters(filters, dialect="clickhouse", schema=dict(schema))
        ]
        if not predicates:
            return source

        def where(preds: Sequence[str]) -> str:
            return f"SELECT * FROM ({source}) AS f WHERE " + " AND ".join(f"({p})" for p in preds)

        for f, p in zip(filters, predicates, strict=True):
            try:
                self.executor.command(f"SELECT 1 FROM ({where([p])}) AS c LIMIT 0")
            except Exception as exc:
                if _error_code(exc) not in _ANALYSIS_ERRORS:
                    raise
                raise FilterError(f"Filter {f!r} does not fit the column types: {_reason(exc)}") from None
            try:
                polars_filters([f], schema)
            except FilterError as exc:
                if "does not fit the column types" in str(exc):
                    raise FilterError(str(exc).splitlines()[0]) from None
                # a construct only the SQL engines take: ClickHouse has checked it above
        return where(predicates)

    def _current_source(
        self,
        table: str,
        schema: TableSchema,
        filters: Sequence[Any] = (),
        *,
        include_deleted: bool = False,
        markers: bool = False,
    ) -> str:
        """Current rows of ``table`` (newest committed version per sample, tombstones skipped).

        ``markers``: parent markers too (the stored side of an expansion's resolve only).
        """
        columns = list(self._columns(table))
        live = f"{TOMBSTONE} = 0" if markers else _live(columns)
        where = live + ("" if include_deleted else f" AND {q(C.DELETED_AT)} IS NULL")
        source = f"SELECT {', '.join(self._projection(columns))} FROM {self._t(table)} FINAL WHERE {where}"
        return self._filtered(source, filters, schema.dtypes)

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
        d = self.dialect
        target_schema = self._schema(plan.feature)
        temp = None
        samples_source = None
        samples_columns: list[str] = []
        try:
            if samples is not None:
                temp = self._upload(samples)
                samples_source = f"SELECT * FROM {self._t(temp)}"
                samples_columns = [c for c in samples.columns if not C.is_system(c)]
            carried = samples_columns if samples is not None else plan.carried_columns
            keys = restriction_keys(
                plan, samples_source, restriction, lambda since: self._changed_keys(plan, since)
            )
            only = None if restriction is None else in_keys(plan.key_columns, keys)
            if plan.missing_required:
                expected = None
            else:
                schemas = {}
                sources = {}
                for dep in plan.deps:
                    schema = self._schema(dep.feature)
                    assert schema is not None
                    schemas[dep.index] = schema
                    sources[dep.index] = self._current_source(dep.table, schema, dep.filters)
                if restriction is not None:
                    sources = restricted_dep_sources(plan, sources, keys)
                expected_schema: dict[str, Any] = dict(samples.schema) if samples is not None else {}
                for schema in schemas.values():
                    expected_schema = {**schema.dtypes, **expected_schema}
                expected = self._filtered(
                    expected_sql(d, plan, sources, schemas, samples_source, [], samples_columns),
                    filters,
                    expected_schema,
                )
            stored = None
            if target_schema is not None:
                # an expansion's parents without children count through their markers
                expansion = plan.key_columns != plan.target_ids
                source = self._current_source(plan.table, target_schema, filters, markers=expansion)
                stored = stored_sql(d, plan, restrict(source, only), target_schema)
            if expected is None:
                return self._orphans_only(plan, stored, lazy)
            diff = diff_sql(d, plan, expected, stored, carried, removed_fields(plan, target_schema))
            return self._split(plan, self._frame(diff), carried, lazy)
        finally:
            if temp is not None:
                self._run(f"DROP TABLE IF EXISTS {self._t(temp)}")

    def _changed_keys(self, plan: ResolvePlan, since: datetime) -> str:
        # Every stored row version, superseded and deleted ones included: more keys, never fewer.
        deps = {dep.index: f"SELECT * FROM {self._t(dep.table)}" for dep in plan.deps}
        target = f"SELECT * FROM {self._t(plan.table)}" if self._table_exists(plan.table) else None
        return changed_keys_sql(self.dialect, plan, deps, target, since)

    def _count_changed(self, plan: ResolvePlan, since: datetime) -> int:
        return int(self._rows(f"SELECT count() FROM ({self._changed_keys(plan, since)}) AS c")[0][0])

    def _upload(self, frame: pl.DataFrame, where: str = "resolve_update(samples=...)") -> str:
        """``frame`` as a temporary table (ClickHouse reads it like any table; dropped after use)."""
        name = f"{TEMP_PREFIX}{new_write_id()}_{uuid.uuid4().hex[:8]}"
        frame = _naive_datetimes(frame)
        cols = ", ".join(
            f"{q(c)} {ch_type(t, nullable=True, column=c, where=where)}" for c, t in frame.schema.items()
        )
        self._run(f"CREATE TABLE {self._t(name)} ({cols}) ENGINE = Memory")
        try:
            self.executor.insert(self._t(name), frame.to_arrow())
        except BaseException:
            self._run(f"DROP TABLE IF EXISTS {self._t(name)}")
            raise
        return name

    @staticmethod
    def _split(plan: ResolvePlan, frame: pl.DataFrame, carried: Sequence[str], lazy: bool) -> Increment:
        keys = list(plan.key_columns)
        non_key = [c for c in carried if c not in keys]
        cols = [*keys, *non_key, C.PROVENANCE_BY_FIELD, C.PROVENANCE, C.CHANGED_FIELDS]
        split = split_by_status(frame)
        orphaned = split["orphaned"].select(
            *keys, pl.col(STORED_PBF).alias(C.PROVENANCE_BY_FIELD), pl.col(STORED_PROV).alias(C.PROVENANCE)
        )
        parts = [
            split["new"].select(cols),
            split["stale"].select(cols),
            orphaned,
        ]
        return Increment(*(nw.from_native(p.lazy() if lazy else p) for p in parts))

    def _orphans_only(self, plan: ResolvePlan, stored: str | None, lazy: bool) -> Increment:
        """A required upstream has no metadata: nothing is expected, every stored sample is orphaned."""
        empty = pl.DataFrame(
            {
                **{k: pl.Series([], dtype=pl.String) for k in plan.key_columns},
                C.PROVENANCE_BY_FIELD: pl.Series(
                    [], dtype=pl.Struct({f.key: pl.String for f in plan.fields})
                ),
                C.PROVENANCE: pl.Series([], dtype=pl.String),
            }
        ).with_columns(pl.lit(None, dtype=pl.List(pl.String)).alias(C.CHANGED_FIELDS))
        if stored is None:
            orphaned = empty.drop(C.CHANGED_FIELDS)
        else:
            keys = ", ".join(q(k) for k in plan.key_columns)
            orphaned = self._frame(
                f"SELECT {keys}, {q(STORED_PBF)} AS {q(C.PROVENANCE_BY_FIELD)}, {q(STORED_PROV)} AS "
                f"{q(C.PROVENANCE)} FROM ({stored}) AS s"
            )
        parts = [empty, empty, orphaned]
        return Increment(*(nw.from_native(p.lazy() if lazy else p) for p in parts))

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
        key = cls.spec.key
        table = key.table_name
        ids = list(cls.spec.id_columns)
        write = new_write_id()
        where = f"write({key})"
        expansion = tuple(replace_key) != tuple(ids)
        flat = _naive_datetimes(self._flatten(frame, write))
        markers = None
        if parents is not None and parents.empty.height:
            markers = _naive_datetimes(self._flatten(parents.empty, write))
        wanted = self._column_types(flat, ids, where)
        if markers is not None:
            wanted |= {c: t for c, t in self._column_types(markers, ids, where).items() if c not in wanted}
        first = not self._table_exists(table)
        if first:
            # the current table appears, rows and all, when the staging table is renamed to it; a
            # history table without one is what a first write killed before publishing left behind
            self._run(f"DROP TABLE IF EXISTS {self._t(HISTORY_PREFIX + table)}")
            self._create_history(table, ids, wanted)
        elif expansion and MARKER not in self._columns(table):
            self._add_marker_column(table)
        stored = {} if first else self._columns(table)
        added = {} if first else {c: t for c, t in wanted.items() if c not in stored}
        widened: dict[str, str] = {}
        if not first:
            schema = self._schema(key)
            assert schema is not None
            for c, dtype in widened_columns(dict(frame.schema), dict(schema.dtypes)).items():
                widened[c] = ch_type(dtype, nullable=c not in ids, column=c, where=where)
        uploaded = self._upload(markers, where) if markers is not None else None

        def stage_rows(stage: str) -> None:
            for c, t in added.items():
                self._run(f"ALTER TABLE {self._t(stage)} ADD COLUMN {q(c)} {t}")
            for c, t in widened.items():
                self._run(f"ALTER TABLE {self._t(stage)} MODIFY COLUMN {q(c)} {t}")
            try:
                if flat.height:
                    self.executor.insert(self._t(stage), flat.to_arrow())
                if uploaded is not None:
                    assert markers is not None
                    names = [c for c in markers.columns]
                    self._run(
                        f"INSERT INTO {self._t(stage)} ({self._cols(names)}, {MARKER}) SELECT {self._cols(names)}, "
                        f"{_marker_key(replace_key)} FROM {self._t(uploaded)}"
                    )
            except Exception as exc:
                raise MetadataValidationError(
                    f"{where}: ClickHouse rejected the rows ({_first_line(exc)}). Convert the columns to the "
                    "stored types; nothing was written."
                ) from exc
            if first or not expansion:
                return
            covered = f"{_tuple(replace_key)} IN (SELECT {_tuple(replace_key)} FROM {self._t(stage)})"
            # every covered parent's children that the new rows no longer have leave the current state
            self._run(
                f"INSERT INTO {self._t(stage)} ({self._cols(stored)}) SELECT "
                f"{self._cols(stored, {WRITE: str(write), TOMBSTONE: str(REMOVED)})} "
                f"FROM {self._t(table)} FINAL WHERE {TOMBSTONE} = 0 AND {MARKER} = 0 AND {covered} "
                f"AND {_tuple(ids)} NOT IN (SELECT {_tuple(ids)} FROM {self._t(stage)} WHERE {MARKER} = 0)"
            )
            # and so do their markers, unless the parent is still without children
            self._run(
                f"INSERT INTO {self._t(stage)} ({self._cols(stored)}) SELECT "
                f"{self._cols(stored, {WRITE: str(write), TOMBSTONE: str(REMOVED)})} "
                f"FROM {self._t(table)} FINAL WHERE {TOMBSTONE} = 0 AND {MARKER} != 0 AND {covered} "
                f"AND {MARKER} NOT IN (SELECT {MARKER} FROM {self._t(stage)} WHERE {MARKER} != 0)"
            )

        try:
            self._commit(
                table,
                write,
                stage_rows,
                history_key=None if first else replace_key,
                evolve=added,
                widen=widened,
                create=(ids, wanted) if first else None,
            )
        except BaseException:
            if first:
                self._run(f"DROP TABLE IF EXISTS {self._t(HISTORY_PREFIX + table)}")
            raise
        finally:
            if uploaded is not None:
                self._run(f"DROP TABLE IF EXISTS {self._t(uploaded)}")

    def _column_types(self, flat: pl.DataFrame, ids: Sequence[str], where: str) -> dict[str, str]:
        """The stored type of each column of a flattened frame, hidden columns included."""
        wanted = {
            c: ch_type(t, nullable=c not in ids, column=c, where=where)
            if not c.startswith(f"{C.PROVENANCE_BY_FIELD}__")
            and not c.startswith(f"{C.DATA_VERSION_BY_FIELD}__")
            else STRING
            for c, t in flat.schema.items()
        }
        for c in (C.CREATED_AT, C.UPDATED_AT, C.DELETED_AT):
            wanted[c] = f"Nullable({TIMESTAMP})"
        wanted[WRITE], wanted[TOMBSTONE], wanted[MARKER] = "UInt64", "UInt8", "UInt64"
        return wanted

    def _add_marker_column(self, table: str) -> None:
        """Give a table from before parent markers its marker column (the last part of its sorting key)."""
        sorting = self._rows(
            f"SELECT sorting_key FROM system.tables WHERE database = {chlit(self.database)} AND name = {chlit(table)}"
        )[0][0]
        self._run(
            f"ALTER TABLE {self._t(table)} ADD COLUMN IF NOT EXISTS {MARKER} UInt64, "
            f"MODIFY ORDER BY ({sorting}, {MARKER})"
        )
        self._run(f"ALTER TABLE {self._t(HISTORY_PREFIX + table)} ADD COLUMN IF NOT EXISTS {MARKER} UInt64")

    def _flatten(self, frame: pl.DataFrame, write: int, tombstone: int = 0) -> pl.DataFrame:
        exprs: list[pl.Expr] = []
        for name, dtype in frame.schema.items():
            if name in C.STRUCT_COLUMNS and isinstance(dtype, pl.Struct):
                exprs += [
                    pl.col(name).struct.field(f.name).alias(struct_field_column(name, f.name))
                    for f in dtype.fields
                ]
            else:
                exprs.append(pl.col(name))
        exprs += [
            pl.lit(write, dtype=pl.UInt64).alias(WRITE),
            pl.lit(tombstone, dtype=pl.UInt8).alias(TOMBSTONE),
        ]
        return frame.select(exprs)

    def _create_current(self, name: str, ids: Sequence[str], types: Mapping[str, str]) -> None:
        cols = ", ".join(f"{q(c)} {t}" for c, t in types.items())
        order = ", ".join(q(c) for c in [*ids, MARKER])
        self._run(
            f"CREATE TABLE {self._t(name)} ({cols}) ENGINE = ReplacingMergeTree({WRITE}) ORDER BY ({order})"
        )

    def _create_history(self, table: str, ids: Sequence[str], types: Mapping[str, str]) -> None:
        cols = ", ".join(f"{q(c)} {t}" for c, t in types.items())
        order = ", ".join(q(c) for c in ids)
        self._run(
            f"CREATE TABLE {self._t(HISTORY_PREFIX + table)} ({cols}, {SUPERSEDED_BY} UInt64) "
            f"ENGINE = MergeTree ORDER BY ({order}, {WRITE})"
        )

    @staticmethod
    def _cols(columns: Sequence[str], replace: Mapping[str, str] | None = None) -> str:
        replace = replace or {}
        return ", ".join(replace[c] if c in replace else q(c) for c in columns)

    def _commit(
        self,
        table: str,
        write: int,
        stage_rows: Any,
        *,
        history_key: Sequence[str] | None,
        evolve: Mapping[str, str] | None = None,
        widen: Mapping[str, str] | None = None,
        create: tuple[Sequence[str], Mapping[str, str]] | None = None,
    ) -> int:
        """Stage rows, copy what they supersede to history, record the commit, publish atomically.

        ``stage_rows(stage)`` fills the staging table (a copy of the current table, or a new table
        with ``create = (id columns, column types)`` for a feature's first write). ``evolve``: columns
        to add, ``widen``: columns whose type widens losslessly (name -> type), in the current and
        history tables (``stage_rows`` does the same to the staging table). Returns the number
        of staged rows. Readers see the old state until the single ``ATTACH PARTITION`` (or, for a
        first write, ``RENAME TABLE``) that publishes them.
        """
        stage = f"{STAGING_PREFIX}{write}__{table}"
        history = HISTORY_PREFIX + table
        if create is not None:
            self._create_current(stage, *create)
        else:
            self._run(f"CREATE TABLE {self._t(stage)} AS {self._t(table)}")
        committed = False
        try:
            stage_rows(stage)
            staged = int(self._rows(f"SELECT count() FROM {self._t(stage)}")[0][0])
            if staged == 0:
                self._run(f"DROP TABLE {self._t(stage)}")
                return 0
            if history_key:
                current_cols = list(self._columns(table))
                self._run(
                    f"INSERT INTO {self._t(history)} ({self._cols(current_cols)}, {SUPERSEDED_BY}) "
                    f"SELECT {self._cols(current_cols)}, {write} FROM {self._t(table)} FINAL "
                    f"WHERE {_live(current_cols)} AND {_tuple(history_key)} IN "
                    f"(SELECT {_tuple(history_key)} FROM {self._t(stage)})"
                )
            for c, t in (evolve or {}).items():
                for target in (table, history):
                    self._run(f"ALTER TABLE {self._t(target)} ADD COLUMN IF NOT EXISTS {q(c)} {t}")
            # stored values convert losslessly; the published parts must have the staging table's types
            for c, t in (widen or {}).items():
                for target in (table, history):
                    self._run(f"ALTER TABLE {self._t(target)} MODIFY COLUMN {q(c)} {t}")
            self._run(f"INSERT INTO {self._t(COMMITS)} VALUES ({write}, {chlit(table)}, now64(6, 'UTC'))")
            committed = True
            self._publish(stage, table, first=create is not None)
        except BaseException:
            if committed:
                # not published: take the decision back (if this fails too, reopening rolls it forward)
                self._run(f"DELETE FROM {self._t(COMMITS)} WHERE {WRITE} = {write}")
            self._abandon(table, write)
            raise
        # published; a staging table left by a failed DROP is recognised and dropped on recovery
        with contextlib.suppress(Exception):
            self._run(f"DROP TABLE IF EXISTS {self._t(stage)}")
        return staged

    def _publish(self, stage: str, table: str, *, first: bool) -> None:
        """Make every staged part visible in one step."""
        if first:
            self._run(f"RENAME TABLE {self._t(stage)} TO {self._t(table)}")
        else:
            self._run(f"ALTER TABLE {self._t(table)} ATTACH PARTITION tuple() FROM {self._t(stage)}")

    def _abandon(self, table: str, write: int) -> None:
        """Undo an uncommitted write: its staging table and its hidden history rows."""
        self._run(f"DROP TABLE IF EXISTS {self._t(f'{STAGING_PREFIX}{write}__{table}')}")
        if self._table_exists(HISTORY_PREFIX + table):
            self._run(f"DELETE FROM {self._t(HISTORY_PREFIX + table)} WHERE {SUPERSEDED_BY} = {write}")

    def _recover(self, *, everything: bool) -> None:
        """Finish writes a dead process left: roll committed ones forward, drop the rest.

        ``everything``: every unfinished write is dead (chDB: this process owns the path). On a
        server, only writes older than ``recover_after`` are touched; younger ones may be running.
        """
        tables = self._tables()
        leftovers = [t for t in tables if t.startswith((STAGING_PREFIX, TEMP_PREFIX))]
        if not leftovers:
            return
        committed = {r[0] for r in self._rows(f"SELECT {WRITE} FROM {self._t(COMMITS)}")}
        cutoff = time.time_ns() - int(self.recover_after * 1e9)
        for name in leftovers:
            if name.startswith(TEMP_PREFIX):
                write = int(name[len(TEMP_PREFIX) :].split("_", 1)[0])
                if everything or write < cutoff:
                    self._run(f"DROP TABLE IF EXISTS {self._t(name)}")
                continue
            write_text, table = name[len(STAGING_PREFIX) :].split("__", 1)
            write = int(write_text)
            if not everything and write >= cutoff:
                continue
            if write in committed:
                # rows stamped long ago become visible now: no checkpoint may count on their stamps
                self._note_change(FeatureKey(table.split("__")), "recovered write")
            if write in committed and table not in tables:
                self._publish(name, table, first=True)
            elif write in committed:
                published = self._rows(f"SELECT count() FROM {self._t(table)} WHERE {WRITE} = {write}")[0][0]
                if not published:
                    self._publish(name, table, first=False)
                self._run(f"DROP TABLE {self._t(name)}")
            else:
                self._abandon(table, write)

    # -- schema changes ---------------------------------------------------------------------------
    def _alter_column(self, cls: type[BaseFeature], column: str, dtype: pl.DataType) -> int:
        key = cls.spec.key
        table = key.table_name
        where = f"alter_column_type({key}, {column!r})"
        target = ch_type(dtype, nullable=column not in cls.spec.id_columns, column=column, where=where)
        plain = ch_type(dtype, nullable=False, column=column, where=where)
        tables = [t for t in (table, HISTORY_PREFIX + table) if column in self._columns(t)]
        # ClickHouse converts in a mutation that may fail half-way: check every stored value first
        for name in tables:
            try:
                bad = self._rows(
                    f"SELECT count(), any({q(column)}) FROM {self._t(name)} WHERE {q(column)} IS NOT NULL "
                    f"AND accurateCastOrNull({q(column)}, {chlit(plain)}) IS NULL"
                )[0]
            except Exception as exc:
                raise MetadataValidationError(
                    f"{where}: ClickHouse cannot convert '{column}' to {dtype} ({_reason(exc)}); nothing changed."
                ) from None
            if bad[0]:
                raise MetadataValidationError(
                    f"{where}: {bad[0]} stored value(s) of '{column}' do not convert to {dtype} (e.g. {bad[1]!r}); "
                    "fix or delete those rows first. Nothing changed."
                )
        for name in tables:
            self._run(f"ALTER TABLE {self._t(name)} MODIFY COLUMN {q(column)} {target}")
        return self._live_count(table)

    def _add_id_column(self, cls: type[BaseFeature], column: str, dtype: pl.DataType, default: Any) -> int:
        key = cls.spec.key
        table = key.table_name
        where = f"add_id_column({key}, {column!r})"
        ctype = ch_type(dtype, nullable=False, column=column, where=where)
        value = f"CAST({chlit(str(default))} AS {ctype})"
        try:
            self._rows(f"SELECT {value}")
        except Exception as exc:
            raise MetadataValidationError(
                f"{where}: the default {default!r} does not convert to {dtype} ({_reason(exc)}); nothing changed."
            ) from None
        # An id column belongs in the sorting key (the key that picks a sample's newest version), and
        # ClickHouse only extends a key with a column added in the same statement, without a default:
        # the current table is rebuilt with the column and swapped in at once.
        rebuilt = f"{TEMP_PREFIX}{new_write_id()}_{uuid.uuid4().hex[:8]}"
        sorting = self._rows(
            f"SELECT sorting_key FROM system.tables WHERE database = {chlit(self.database)} AND name = {chlit(table)}"
        )[0][0]
        names = list(self._columns(table))
        try:
            self._run(f"CREATE TABLE {self._t(rebuilt)} AS {self._t(table)}")
            self._run(
                f"ALTER TABLE {self._t(rebuilt)} ADD COLUMN {q(column)} {ctype}, "
                f"MODIFY ORDER BY ({sorting}, {q(column)})"
            )
            self._run(
                f"INSERT INTO {self._t(rebuilt)} ({self._cols(names)}, {q(column)}) "
                f"SELECT {self._cols(names)}, {value} FROM {self._t(table)}"
            )
            self._run(f"EXCHANGE TABLES {self._t(rebuilt)} AND {self._t(table)}")
        finally:
            self._run(f"DROP TABLE IF EXISTS {self._t(rebuilt)}")
        self._run(
            f"ALTER TABLE {self._t(HISTORY_PREFIX + table)} ADD COLUMN {q(column)} {ctype} DEFAULT {value}"
        )
        return self._live_count(table)

    # -- history retention ------------------------------------------------------------------------
    def _compact(self, cls: type[BaseFeature], keep_versions: int, before: datetime | None) -> int:
        """History rows are identified by (sample, write id); only committed ones are ranked."""
        history = self._t(HISTORY_PREFIX + cls.spec.key.table_name)
        parts = ", ".join(q(c) for c in cls.spec.id_columns)
        versions = (
            f"SELECT DISTINCT {parts}, {WRITE}, {q(C.UPDATED_AT)} AS at FROM {history} "
            f"WHERE {SUPERSEDED_BY} IN (SELECT {WRITE} FROM {self._t(COMMITS)})"
        )
        ranked = (
            f"SELECT {parts}, {WRITE}, at, row_number() OVER (PARTITION BY {parts} ORDER BY at DESC, {WRITE} DESC) "
            f"AS n FROM ({versions}) AS v"
        )
        condition = f"n > {int(keep_versions)}"
        if before is not None:
            condition += f" AND at < {self.dialect.timestamp(before)}"
        doomed = f"{TEMP_PREFIX}{new_write_id()}_{uuid.uuid4().hex[:8]}"
        self._run(
            f"CREATE TABLE {self._t(doomed)} ENGINE = Memory AS SELECT {parts}, {WRITE} FROM ({ranked}) AS r "
            f"WHERE {condition}"
        )
        try:
            count = int(self._rows(f"SELECT count() FROM {self._t(doomed)}")[0][0])
            if count:
                self._run(
                    f"ALTER TABLE {history} DELETE WHERE ({parts}, {WRITE}) IN "
                    f"(SELECT * FROM {self._t(doomed)}) SETTINGS mutations_sync = 2"
                )
        finally:
            self._run(f"DROP TABLE IF EXISTS {self._t(doomed)}")
        return count

    def _live_count(self, table: str) -> int:
        columns = list(self._columns(table))
        return int(self._rows(f"SELECT count() FROM {self._t(table)} FINAL WHERE {_live(columns)}")[0][0])

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
        table = cls.spec.key.table_name
        schema = self._schema(cls.spec.key)
        assert schema is not None
        if history:
            source = self._history_source(cls, table)
            if not include_deleted:
                source = f"SELECT * FROM ({source}) AS s WHERE {q(C.DELETED_AT)} IS NULL"
            source = self._filtered(source, filters, schema.dtypes)
        else:
            source = self._current_source(table, schema, filters, include_deleted=include_deleted)
        if columns is not None:
            source = f"SELECT {', '.join(q(c) for c in columns)} FROM ({source}) AS c"
        frame = self._frame(source)
        return nw.from_native(frame.lazy() if lazy else frame)

    def _history_source(self, cls: type[BaseFeature], table: str) -> str:
        """Every committed version: current rows and committed history, hard-deleted samples left out.

        Between a write's commit record and its attach, a superseded row is in both tables; one
        copy per (sample, write id) is kept.
        """
        ids = list(cls.spec.id_columns)
        columns = list(self._columns(table))
        projection = self._projection(columns)
        current = (
            f"SELECT {', '.join(projection)}, {WRITE} FROM {self._t(table)} FINAL WHERE {_live(columns)}"
        )
        past = (
            f"SELECT {', '.join(projection)}, {WRITE} FROM {self._t(HISTORY_PREFIX + table)} "
            f"WHERE {SUPERSEDED_BY} IN (SELECT {WRITE} FROM {self._t(COMMITS)})"
        )
        gone = f"SELECT {_tuple(ids)} FROM {self._t(table)} FINAL WHERE {TOMBSTONE} = {HARD_DELETED}"
        names = ", ".join(
            q(c) for c in [*(c for c in columns if not C.is_system(c) and c not in HIDDEN), *C.SYSTEM_COLUMNS]
        )
        return (
            f"SELECT {names} FROM ({current} UNION ALL {past}) AS h WHERE {_tuple(ids)} NOT IN ({gone}) "
            f"LIMIT 1 BY {', '.join(q(c) for c in ids)}, {WRITE}"
        )

    def _delete(self, cls: type[BaseFeature], filters: list[Any], soft: bool) -> int:
        table = cls.spec.key.table_name
        ids = list(cls.spec.id_columns)
        schema = self._schema(cls.spec.key)
        assert schema is not None
        matched = self._current_source(table, schema, filters, include_deleted=not soft)
        selection = f"SELECT DISTINCT {_tuple(ids)} FROM ({matched}) AS m"
        write = new_write_id()
        stored = list(self._columns(table))
        if soft:
            stamped = {
                C.DELETED_AT: "now64(6, 'UTC')",
                C.UPDATED_AT: "now64(6, 'UTC')",
                WRITE: str(write),
            }
        else:
            stamped = {WRITE: str(write), TOMBSTONE: str(HARD_DELETED)}
        state = _live(stored) + (f" AND {q(C.DELETED_AT)} IS NULL" if soft else "")

        def stage_rows(stage: str) -> None:
            self._run(
                f"INSERT INTO {self._t(stage)} ({self._cols(stored)}) SELECT {self._cols(stored, stamped)} "
                f"FROM {self._t(table)} FINAL WHERE {state} AND {_tuple(ids)} IN ({selection})"
            )

        count = self._commit(table, write, stage_rows, history_key=ids if soft else None)
        if not soft and count:
            # Readers already skip the history of hard-deleted samples; now remove it for good.
            self._run(
                f"DELETE FROM {self._t(HISTORY_PREFIX + table)} WHERE {_tuple(ids)} IN "
                f"(SELECT {_tuple(ids)} FROM {self._t(table)} WHERE {WRITE} = {write})"
            )
        return count


def _strict_casts(predicate: str) -> str:
    """A rendered filter whose casts fail on a value that does not convert, as in the other stores.

    ClickHouse turns such a value into NULL when casting to ``Nullable(T)`` or casting a
    ``Nullable`` column, silently dropping rows; ``CAST(x AS T)`` is strict only on a value that
    is not NULL, so NULLs are kept apart: ``if(x IS NULL, NULL, CAST(assumeNotNull(x) AS T))``.
    """
    tree = sqlglot.parse_one(predicate, dialect="clickhouse")

    # innermost first, so an outer cast wraps the already strict inner one
    casts = [c for c in tree.find_all(exp.Cast) if type(c) is exp.Cast and not c.to.expressions]
    for node in sorted(casts, key=lambda c: c.depth, reverse=True):
        to = node.to.copy()
        to.set("nullable", False)
        value = node.this
        cast = exp.Cast(this=exp.Anonymous(this="assumeNotNull", expressions=[value.copy()]), to=to)
        strict = exp.If(this=exp.Is(this=value.copy(), expression=exp.Null()), true=exp.Null(), false=cast)
        if node is tree:
            tree = strict
        else:
            node.replace(strict)
    return tree.sql(dialect="clickhouse")


def _marker_key(on: Sequence[str]) -> str:
    """A parent marker's key: a hash of the parent's ids, never 0 (the key of ordinary rows)."""
    return "bitOr(cityHash64(" + ", ".join(f"toString({q(c)})" for c in on) + "), 1)"


def _live(columns: Sequence[str]) -> str:
    """Rows of the current state: no tombstones, no parent markers (tables from before markers lack the column)."""
    return f"{TOMBSTONE} = 0" + (f" AND {MARKER} = 0" if MARKER in columns else "")


_ANALYSIS_ERRORS = frozenset(
    {
        "ILLEGAL_TYPE_OF_ARGUMENT",
        "NO_COMMON_TYPE",
        "TYPE_MISMATCH",
        "CANNOT_CONVERT_TYPE",
        "ILLEGAL_COLUMN",
        "NUMBER_OF_ARGUMENTS_DOESNT_MATCH",
        "UNKNOWN_FUNCTION",
        "UNKNOWN_IDENTIFIER",
        "CANNOT_PARSE_TEXT",
        "CANNOT_PARSE_NUMBER",
        "ILLEGAL_DIVISION",
    }
)
"""ClickHouse errors that a query's analysis raises when an expression does not fit its inputs."""
_DATA_ERRORS = frozenset(
    {
        "CANNOT_PARSE_TEXT",
        "CANNOT_PARSE_NUMBER",
        "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
        "CANNOT_CONVERT_TYPE",
        "ILLEGAL_DIVISION",
        "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
        "CANNOT_PARSE_DATE",
        "CANNOT_PARSE_DATETIME",
    }
)
"""ClickHouse errors raised by a stored value, not by the query."""


def _error_code(exc: BaseException) -> str | None:
    """The ClickHouse error name (``ILLEGAL_TYPE_OF_ARGUMENT``) an exception's message ends with."""
    found = re.search(
        r"\(([A-Z][A-Z_]+)\)\s*(?:\(version [^)]*\))?\s*$",
        str(exc).strip().splitlines()[0] if str(exc).strip() else "",
    )
    if found:
        return found.group(1)
    found = re.search(r"\(([A-Z][A-Z_]{3,})\)", str(exc))
    return found.group(1) if found else None


def _reason(exc: BaseException) -> str:
    """ClickHouse's message on one line, without the echoed query or pipeline details."""
    text = " ".join(str(exc).split())
    text = re.sub(r"^.*?DB::Exception: ", "", text)
    for marker in (
        ": In scope ",
        ": while executing ",
        ": While executing ",
        ": While processing ",
        " Note: ",
    ):
        cut = text.find(marker)
        if cut >= 0:
            text = text[:cut]
    text = re.sub(r"\s*\([A-Z][A-Z_]+\)\s*(\(version [^)]*\))?\s*$", "", text)
    return text[:300]


def _tuple(columns: Sequence[str]) -> str:
    names = ", ".join(q(c) for c in columns)
    return f"({names})" if len(columns) > 1 else names


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
