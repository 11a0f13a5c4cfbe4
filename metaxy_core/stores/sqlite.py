"""SQLite store: one database file shared by several processes, no server.

Layout in the file: one current table per feature (``video__raw``), superseded row versions in
``"metaxy_history.video__raw"``, expansion parents written without children (parent markers) in
``"metaxy_parents.video__chunk"``, system tables as ``"metaxy_system.<name>"``, and the registry
``"metaxy.tables"`` holding each table's exact polars schema (column forms: see ``_sqlite_io``).

Concurrency: the file is in WAL mode, so readers see the last commit while a writer works. Every
write is one ``BEGIN IMMEDIATE`` transaction: it takes the write lock first, waiting up to
``busy_timeout`` seconds for another writer. (A deferred ``BEGIN`` that reads before writing fails
at once when another process writes in between, whatever the timeout.) Reads of one call run in one
read transaction, so they see a single commit.

Where hashing runs, by measurement (``bench/sqlite_hashing.py``, 1M samples, 2 cores shared with
other work): SQLite has no sha256, and the same resolve (two per-field hashes and the sample hash per
row, FULL OUTER JOIN with the stored provenance, counts) took

* 8.95 s all in SQLite SQL, hashing with a Python ``hashlib`` function registered on the connection;
* 3.59 s reading the needed columns as Arrow through ADBC into polars and hashing with polars-hash
  (reading 1M x 3 columns: 0.90 s); 6.19 s reading rows through Python's ``sqlite3`` instead
  (3.60 s of it reading).

So the store reads only the columns a resolve needs and computes the plan with the in-memory
store's polars engine (``_polars.py``): byte-identical hashes, no per-row Python. User filters run
in polars too, through the same checked translation as the in-memory store. ADBC is used when ``adbc-driver-sqlite`` is installed (``metaxy-dagster[sqlite]``);
Python's ``sqlite3`` is the fallback.
"""

import contextlib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import narwhals as nw
import polars as pl

from metaxy_core import columns as C
from metaxy_core.errors import MetadataValidationError, StoreError
from metaxy_core.feature import BaseFeature
from metaxy_core.filters import polars_filters
from metaxy_core.increment import Increment
from metaxy_core.keys import FeatureKey
from metaxy_core.lineage import ResolvePlan, TableSchema
from metaxy_core.schema import widened_columns
from metaxy_core.stores import _polars as P
from metaxy_core.stores import _sqlite_io as io
from metaxy_core.stores._incremental import CHECKPOINTS, EVENTS, KeyRestriction, doomed_checkpoints_sql
from metaxy_core.stores._sql import NOTHING, changed_keys_sql, dep_key_columns, in_keys, q
from metaxy_core.stores.base import MetadataStore, ParentCover

HISTORY = "metaxy_history."
SYSTEM = "metaxy_system."
PARENTS = "metaxy_parents."
"""Expansion parents written with no children (one marker row per parent), per feature table."""
_ROWID = "metaxy_rowid"  # the reserved prefix: no user column has this name


class SQLiteMetadataStore(MetadataStore):
    """Metadata in a SQLite database file, shared safely by several processes on one machine.

    ``busy_timeout``: seconds a write waits for another process's write to finish.
    ``driver``: ``"auto"`` (ADBC when installed, else ``sqlite3``), ``"adbc"`` or ``"sqlite3"``.
    ``lazy=True`` reads and resolves return polars lazy frames over rows already read from the file.

    >>> import metaxy_core as mx
    >>> store = mx.SQLiteMetadataStore(database=":memory:")
    >>> with store:
    ...     store.list_features()
    []
    """

    kind = "sqlite"
    supports_incremental = True
    incremental_lag = timedelta(minutes=5)
    """Several processes may write the file: a row is stamped before its write waits for the lock
    (up to ``busy_timeout``) and commits, so an incremental resolve looks this far back again
    (at least twice the busy timeout)."""
    supports_parent_markers = True

    def __init__(
        self,
        database: str | Path = ":memory:",
        *,
        hash_algorithm: str = "sha256",
        hash_length: int | None = None,
        busy_timeout: float = 60.0,
        driver: str = "auto",
    ) -> None:
        super().__init__(hash_algorithm=hash_algorithm, hash_length=hash_length)
        self.database = str(database)
        self.busy_timeout = busy_timeout
        self.incremental_lag = max(type(self).incremental_lag, timedelta(seconds=2 * busy_timeout))
        self.driver = driver
        self._con: io.Connection | None = None
        self._in_transaction = False
        if self.database != ":memory:":
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"SQLiteMetadataStore(database={self.database!r})"

    # -- connection -------------------------------------------------------------------------------
    def _open(self) -> None:
        if self._con is None:
            self._con = io.connect(self.database, self.driver, self.busy_timeout)
            self._run(
                f"CREATE TABLE IF NOT EXISTS {q(io.REGISTRY)} (table_name TEXT PRIMARY KEY, schema BLOB)"
            )

    def _close(self) -> None:
        # An in-memory database lives as long as its connection: keep it for the store's lifetime.
        if self._con is not None and self.database != ":memory:":
            self._con.close()
            self._con = None

    @property
    def connection(self) -> io.Connection:
        if self._con is None:
            raise StoreError(f"{self!r} is closed: use `with store:`.")
        return self._con

    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.connection.execute(sql, params)

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[None]:
        """One transaction around the block (nested blocks join the outer one).

        Writes take the lock up front (``BEGIN IMMEDIATE``) so the busy timeout applies; reads use a
        deferred transaction so several SELECTs see one commit.
        """
        if self._in_transaction:
            yield
            return
        self._run("BEGIN IMMEDIATE" if write else "BEGIN")
        self._in_transaction = True
        try:
            yield
            self._run("COMMIT")  # inside the try: a commit that fails (e.g. disk full) rolls back too
        except BaseException as exc:
            # After some errors (disk full, I/O) SQLite has already rolled back, and ROLLBACK itself
            # fails; the original error is the one to report.
            with contextlib.suppress(Exception):
                self._run("ROLLBACK")
            full = self._out_of_space(exc)
            if full is not None:
                raise full from exc
            raise
        finally:
            self._in_transaction = False

    @staticmethod
    def _out_of_space(exc: BaseException) -> OSError | None:
        """SQLite says "disk I/O error" when the disk fills up or the file may not grow: say so.

        An OSError, not a metaxy error, so the store boundary still names the operation that failed.
        """
        text = str(exc).splitlines()[0] if str(exc) else ""
        if "disk i/o error" in text.lower() or "disk is full" in text.lower():
            return OSError(
                f"SQLite could not write the database file ({text.strip()}): no space left on the disk, or the "
                "file may not grow (a file size limit). The transaction was rolled back and earlier data is "
                "unchanged; free space and retry."
            )
        return None

    # -- schema registry --------------------------------------------------------------------------
    def _logical(self, table: str) -> dict[str, pl.DataType] | None:
        rows = self._run(f"SELECT schema FROM {q(io.REGISTRY)} WHERE table_name = ?", [table])
        return io.schema_from_blob(rows[0][0]) if rows else None

    def _save_logical(self, table: str, schema: Mapping[str, pl.DataType]) -> None:
        self._run(
            f"INSERT INTO {q(io.REGISTRY)} (table_name, schema) VALUES (?, ?) "
            "ON CONFLICT (table_name) DO UPDATE SET schema = excluded.schema",
            [table, io.schema_blob(schema)],
        )

    def _evolve(self, tables: Sequence[str], incoming: Mapping[str, pl.DataType]) -> dict[str, pl.DataType]:
        """Create ``tables`` (same columns) or add the columns ``incoming`` brings; returns the schema."""
        stored = self._logical(tables[0])
        merged = io.merge_schemas(stored, incoming)
        physical = io.physical_columns(merged)
        if stored is None:
            cols = ", ".join(f"{q(n)} {io.affinity(d)}" for n, d in physical.items())
            for table in tables:
                self._run(f"CREATE TABLE {q(table)} ({cols})")
        else:
            have = io.physical_columns(stored)
            for name, dtype in physical.items():
                if name not in have:
                    for table in tables:
                        self._run(f"ALTER TABLE {q(table)} ADD COLUMN {q(name)} {io.affinity(dtype)}")
        if merged != stored:
            self._save_logical(tables[0], merged)
        return merged

    def _schema(self, key: FeatureKey) -> TableSchema | None:
        schema = self._logical(key.table_name)
        if schema is None:
            return None
        return TableSchema(
            columns=tuple(c for c in schema if not C.is_system(c)),
            struct_fields={c: P.struct_fields(schema[c]) for c in C.STRUCT_COLUMNS if c in schema},
            types={c: str(t) for c, t in schema.items()},
            dtypes=schema,
        )

    def _list_features(self) -> list[FeatureKey]:
        rows = self._run(f"SELECT table_name FROM {q(io.REGISTRY)}")
        return [FeatureKey(name.split("__")) for (name,) in rows if not name.startswith("metaxy_")]

    # -- reading ----------------------------------------------------------------------------------
    def _select(
        self,
        source: str,
        schema: Mapping[str, pl.DataType],
        columns: Sequence[str],
        filters: Sequence[Any] = (),
        where: Sequence[str] = (),
    ) -> pl.DataFrame:
        """``columns`` of ``source`` (a table or subquery), decoded, with the user's filters applied.

        Filters run in polars through the same checked translation as the in-memory store: SQLite's
        dynamic typing and its storage of timestamps as integers would otherwise give different rows
        for the same filter (ill-typed comparisons, text timestamps), so one filter means the same
        rows everywhere.
        """
        sql = f"SELECT * FROM {source} AS s" + (
            " WHERE " + " AND ".join(f"({c})" for c in where) if where else ""
        )
        wanted = dict(schema) if filters else {c: schema[c] for c in columns}
        frame = io.decode(self.connection.frame(sql, io.physical_columns(wanted)), wanted)
        if filters:
            frame = _polars_filters(frame.lazy(), filters).collect().select(list(columns))
        return frame

    def _live(
        self, table: str, columns: Sequence[str], filters: Sequence[Any], where: Sequence[str] = ()
    ) -> pl.DataFrame:
        schema = self._logical(table)
        assert schema is not None
        return self._select(q(table), schema, columns, filters, [f"{q(C.DELETED_AT)} IS NULL", *where])

    # -- system tables ----------------------------------------------------------------------------
    def _append_system(self, name: str, frame: pl.DataFrame) -> None:
        table = SYSTEM + name
        with self._transaction(write=True):
            self._evolve([table], frame.schema)
            self._insert(table, frame)

    def _read_system(self, name: str) -> pl.DataFrame | None:
        table = SYSTEM + name
        schema = self._logical(table)
        if schema is None:
            return None
        return self._select(q(table), schema, list(schema))

    @contextmanager
    def _staged(self, physical: pl.DataFrame, index: Sequence[str] = ()) -> Iterator[str]:
        """``physical`` as a temporary table (optionally indexed) for the duration of the block."""
        name = self.connection.ingest(physical)
        try:
            if index:
                cols = ", ".join(q(c) for c in index)
                self._run(f"CREATE INDEX temp.{q(name + '_k')} ON {q(name)} ({cols})")
            yield f"temp.{q(name)}"
        finally:
            # IF EXISTS: after a failed write (e.g. disk full) SQLite may have rolled the table back already
            self._run(f"DROP TABLE IF EXISTS temp.{q(name)}")

    def _insert(self, table: str, frame: pl.DataFrame) -> None:
        """Append ``frame`` (logical form) to ``table``; columns it lacks stay NULL."""
        self.connection.append(table, io.encode(frame))

    # -- resolve ----------------------------------------------------------------------------------
    def _stored_source(
        self, plan: ResolvePlan, target: Mapping[str, pl.DataType]
    ) -> tuple[str, dict[str, pl.DataType]]:
        """The stored side of a resolve (table or subquery) and its schema.

        For an expansion feature it is the children together with the parent markers (their child
        columns NULL), so a parent recorded without children groups like one with children.
        """
        markers = PARENTS + plan.table
        marker_schema = None if plan.key_columns == plan.target_ids else self._logical(markers)
        if marker_schema is None:
            return q(plan.table), dict(target)
        schema = io.merge_schemas(target, marker_schema)
        have = {
            table: io.physical_columns(s) for table, s in ((plan.table, target), (markers, marker_schema))
        }
        selects = [
            "SELECT "
            + ", ".join(f"{q(c) if c in cols else 'NULL'} AS {q(c)}" for c in io.physical_columns(schema))
            + f" FROM {q(table)}"
            for table, cols in have.items()
        ]
        return f"({' UNION ALL '.join(selects)})", schema

    def _resolve(
        self,
        cls: type[BaseFeature],
        plan: ResolvePlan,
        samples: pl.DataFrame | None,
        filters: list[Any],
        lazy: bool,
        restriction: KeyRestriction | None = None,
    ) -> Increment:
        h = self.hasher
        with self._transaction(write=False), contextlib.ExitStack() as stack:
            target = self._logical(plan.table)
            # An incremental resolve reads only the keys written since its checkpoint, on both sides
            # (identity lineage: an upstream row's key columns are the target's); "nothing" reads none.
            changed: str | None = None
            if restriction is not None and restriction.since is not None:
                keys = list(plan.key_columns)
                staged = stack.enter_context(self._staged_changed(plan, restriction.since))
                changed = f"SELECT {', '.join(q(k) for k in keys)} FROM {staged}"
            stored = None
            if target is not None:
                source, schema = self._stored_source(plan, target)
                where = [f"{q(C.DELETED_AT)} IS NULL"]
                if restriction is not None and restriction.samples_only and samples is not None:
                    # a partial root update reads only the stored rows of the given samples
                    keys = list(plan.key_columns)
                    staged = stack.enter_context(self._staged(io.encode(samples.select(keys)), keys))
                    where.append(in_keys(keys, f"SELECT {', '.join(q(k) for k in keys)} FROM {staged}"))
                elif changed is not None:
                    where.append(in_keys(plan.key_columns, changed))
                elif restriction is not None:
                    where.append(NOTHING)
                rows = self._select(source, schema, P.stored_columns(plan), filters, where)
                present = set(P.struct_fields(schema[C.PROVENANCE_BY_FIELD]))
                stored = P.stored_frame(plan, rows.lazy(), present)
            if plan.missing_required:
                return P.increment(plan, None, plan.key_columns, stored, lazy)
            deps = []
            if samples is None:
                for dep in plan.deps:
                    schema = self._logical(dep.table)
                    assert schema is not None
                    if changed is not None:
                        only = [in_keys(dep_key_columns(plan, dep), changed)]
                    elif restriction is not None and restriction.nothing:
                        only = [NOTHING]
                    else:
                        only = []
                    rows = self._live(dep.table, P.dep_columns(dep), dep.filters, only)
                    deps.append(P.dep_frame(dep, rows.lazy(), pl.Schema(schema), h))
        expected, carried = P.expected_frame(plan, samples, deps, h)
        return P.increment(plan, _polars_filters(expected, filters), carried, stored, lazy)

    # -- incremental resolves ---------------------------------------------------------------------
    def _changed_keys(self, plan: ResolvePlan, since: datetime) -> str:
        # Every stored row, soft-deleted ones included: deletes are change events of their own.
        # Times are stored as integers in each column's unit, so each table gets its own cutoff.
        stamps: dict[int | None, str] = {dep.index: self._cutoff(dep.table, since) for dep in plan.deps}
        target = None
        if self._logical(plan.table) is not None:
            target = f"SELECT * FROM {q(plan.table)}"
            stamps[None] = self._cutoff(plan.table, since)
        deps = {dep.index: f"SELECT * FROM {q(dep.table)}" for dep in plan.deps}
        return changed_keys_sql(None, plan, deps, target, since, stamps=stamps)

    def _cutoff(self, table: str, at: datetime, column: str = C.UPDATED_AT) -> str:
        """``at`` as the integer ``table`` stores ``column``'s times as."""
        schema = self._logical(table)
        assert schema is not None
        return str(int(pl.Series([at]).cast(schema[column]).to_physical()[0]))

    @contextmanager
    def _staged_changed(self, plan: ResolvePlan, since: datetime) -> Iterator[str]:
        """The changed keys (see ``_changed_keys``) as an indexed temporary table."""
        name = f"{_ROWID}_changed_{uuid.uuid4().hex[:12]}"
        keys = ", ".join(q(k) for k in plan.key_columns)
        self._run(f"CREATE TEMP TABLE {q(name)} AS {self._changed_keys(plan, since)}")
        try:
            self._run(f"CREATE INDEX temp.{q(name + '_k')} ON {q(name)} ({keys})")
            yield f"temp.{q(name)}"
        finally:
            self._run(f"DROP TABLE IF EXISTS temp.{q(name)}")

    def _count_changed(self, plan: ResolvePlan, since: datetime) -> int:
        with self._transaction(write=False):
            return int(self._run(f"SELECT count(*) FROM ({self._changed_keys(plan, since)}) AS c")[0][0])

    def _prune_bookkeeping(self, keep_fingerprints: int, events_before: datetime) -> None:
        checkpoints, events = SYSTEM + CHECKPOINTS, SYSTEM + EVENTS
        with self._transaction(write=True):
            if self._logical(checkpoints) is not None:
                cols = '"feature", "fingerprint", "since"'
                doomed = doomed_checkpoints_sql(q(checkpoints), keep_fingerprints)
                self._run(
                    f"DELETE FROM {q(checkpoints)} WHERE ({cols}) IN (SELECT {cols} FROM ({doomed}) AS d)"
                )
            if self._logical(events) is not None:
                self._run(f'DELETE FROM {q(events)} WHERE "at" < {self._cutoff(events, events_before, "at")}')

    # -- history retention ------------------------------------------------------------------------
    def _compact(self, cls: type[BaseFeature], keep_versions: int, before: datetime | None) -> int:
        history = HISTORY + cls.spec.key.table_name
        with self._transaction(write=True):
            schema = self._logical(cls.spec.key.table_name)  # the history table shares its schema
            if schema is None:
                return 0
            updated, created = q(C.UPDATED_AT), q(C.CREATED_AT)
            ids = ", ".join(q(c) for c in cls.spec.id_columns)
            ranked = (
                f"SELECT rowid AS r, {updated} AS at, row_number() OVER (PARTITION BY {ids} ORDER BY {updated} DESC, "
                f"{created} DESC) AS n FROM {q(history)}"
            )
            condition = f"n > {int(keep_versions)}"
            if before is not None:
                condition += f" AND at < {self._cutoff(cls.spec.key.table_name, before)}"
            self._run(
                f"DELETE FROM {q(history)} WHERE rowid IN (SELECT r FROM ({ranked}) AS k WHERE {condition})"
            )
            return int(self._run("SELECT changes()")[0][0])

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
        table = cls.spec.key.table_name
        history = HISTORY + table
        with self._transaction(write=True):
            stored = self._logical(table)
            if stored is not None:
                self._widen(table, stored, frame.schema)
            schema = self._evolve([table, history], frame.schema)
            physical = io.encode(frame)
            if not self._run(f"SELECT 1 FROM {q(table)} LIMIT 1"):
                if frame.height:
                    self.connection.append(table, physical)
            elif parents is None:
                with self._staged(physical, index=replace_key) as staged:
                    self._supersede(table, schema, staged, replace_key)
                    self._insert_staged(table, physical, staged)
            else:
                # An expansion write replaces the children of every covered parent, also those of
                # the parents written without children.
                covered = io.encode(parents.covered.select(replace_key).unique())
                with self._staged(covered, index=replace_key) as keys:
                    self._supersede(table, schema, keys, replace_key)
                if frame.height:
                    with self._staged(physical) as staged:
                        self._insert_staged(table, physical, staged)
            if parents is not None:
                self._write_markers(table, replace_key, parents)

    def _supersede(
        self, table: str, schema: Mapping[str, pl.DataType], keys: str, replace_key: tuple[str, ...]
    ) -> None:
        """Move the current rows whose ``replace_key`` is in the staged ``keys`` to history.

        (The index on the staged keys serves the lookups.)
        """
        all_cols = ", ".join(q(c) for c in io.physical_columns(schema))
        hit = f"EXISTS (SELECT 1 FROM {keys} AS k WHERE {_match('t', 'k', replace_key)})"
        self._run(
            f"INSERT INTO {q(HISTORY + table)} ({all_cols}) SELECT {all_cols} FROM {q(table)} AS t WHERE {hit}"
        )
        self._run(f"DELETE FROM {q(table)} AS t WHERE {hit}")

    def _insert_staged(self, table: str, physical: pl.DataFrame, staged: str) -> None:
        cols = ", ".join(q(c) for c in physical.columns)
        self._run(f"INSERT INTO {q(table)} ({cols}) SELECT {cols} FROM {staged}")

    def _write_markers(self, table: str, on: tuple[str, ...], parents: ParentCover) -> None:
        """Drop the markers of every covered parent, record the covered parents without children."""
        markers = PARENTS + table
        if self._logical(markers) is None:
            if parents.empty.height:
                self._evolve([markers], parents.empty.schema)
                self._insert(markers, parents.empty)
            return
        self._evolve([markers], parents.empty.schema)
        if parents.covered.height:
            with self._staged(io.encode(parents.covered.select(on).unique()), index=on) as staged:
                hit = f"EXISTS (SELECT 1 FROM {staged} AS k WHERE {_match('t', 'k', on)})"
                self._run(f"DELETE FROM {q(markers)} AS t WHERE {hit}")
        if parents.empty.height:
            self._insert(markers, parents.empty)

    # -- schema changes ---------------------------------------------------------------------------
    def _tables_with(self, table: str, column: str) -> dict[str, dict[str, pl.DataType]]:
        """Registry name -> schema of the feature's tables having ``column``.

        The current table's entry describes its history table too; the parent markers have their own.
        """
        out = {}
        for name in (table, PARENTS + table):
            schema = self._logical(name)
            if schema is not None and column in schema:
                out[name] = schema
        return out

    def _physical_tables(self, name: str) -> list[str]:
        return [name, HISTORY + name] if not name.startswith(PARENTS) else [name]

    def _widen(
        self, table: str, stored: Mapping[str, pl.DataType], incoming: Mapping[str, pl.DataType]
    ) -> None:
        """Widen stored user columns the prepared write widens losslessly (int -> float, int -> str,
        narrower -> wider int), old values converted, in the current, history and marker tables."""
        for column, dtype in widened_columns(dict(incoming), dict(stored)).items():
            for name, schema in self._tables_with(table, column).items():
                if io.affinity(schema[column]) != io.affinity(dtype):
                    # SQLite keeps a column's affinity: an integer column would turn the text "01"
                    # into the integer 1. The column is recreated with the new affinity.
                    cast = f"CAST({q(column)} AS {io.affinity(dtype)})"
                    for physical in self._physical_tables(name):
                        self._replace_column(physical, column, dtype, cast)
                self._save_logical(name, {**schema, column: dtype})

    def _replace_column(self, table: str, column: str, dtype: pl.DataType, value: str) -> None:
        """Recreate ``column`` of ``table`` with the affinity of ``dtype``, set to the SQL ``value``
        (an expression over the row, aliased ``t``). SQLite cannot change a column's type in place."""
        fresh = f"__metaxy_new_{uuid.uuid4().hex[:12]}"
        self._run(f"ALTER TABLE {q(table)} ADD COLUMN {q(fresh)} {io.affinity(dtype)}")
        self._run(f"UPDATE {q(table)} AS t SET {q(fresh)} = {value}")
        self._run(f"ALTER TABLE {q(table)} DROP COLUMN {q(column)}")
        self._run(f"ALTER TABLE {q(table)} RENAME COLUMN {q(fresh)} TO {q(column)}")

    def _alter_column(self, cls: type[BaseFeature], column: str, dtype: pl.DataType) -> int:
        key = cls.spec.key
        table = key.table_name
        with self._transaction(write=True):
            for name, schema in self._tables_with(table, column).items():
                for physical in self._physical_tables(name):
                    self._convert_column(key, physical, column, schema[column], dtype)
                self._save_logical(name, {**schema, column: dtype})
            return int(self._run(f"SELECT count(*) FROM {q(table)}")[0][0])

    def _convert_column(
        self, key: FeatureKey, table: str, column: str, old: pl.DataType, dtype: pl.DataType
    ) -> None:
        """Convert the stored values of ``column`` to ``dtype``.

        Values convert in polars, strictly, as on every store: SQLite's own CAST never fails (``'x'``
        becomes 0), so it cannot tell a value that does not convert.
        """
        rows = self.connection.frame(
            f"SELECT rowid AS {q(_ROWID)}, {q(column)} FROM {q(table)}",
            {_ROWID: pl.Int64(), **io.physical_columns({column: old})},
        )
        try:
            values = io.decode(rows, {column: old}).select(pl.col(column).cast(dtype, strict=True))
        except pl.exceptions.PolarsError as exc:
            raise MetadataValidationError(
                f"alter_column_type({key}, {column!r}): stored values do not convert to {dtype} ({exc}); nothing "
                "changed."
            ) from exc
        staged_rows = io.encode(values).with_columns(rows.get_column(_ROWID))
        with self._staged(staged_rows, index=[_ROWID]) as staged:
            value = f"(SELECT s.{q(column)} FROM {staged} AS s WHERE s.{q(_ROWID)} = t.rowid)"
            self._replace_column(table, column, dtype, value)

    def _add_id_column(self, cls: type[BaseFeature], column: str, dtype: pl.DataType, default: Any) -> int:
        table = cls.spec.key.table_name
        value = io.encode(pl.DataFrame({column: [default]}, schema={column: dtype})).item()
        with self._transaction(write=True):
            schema = self._logical(table)
            assert schema is not None
            for physical in self._physical_tables(table):
                self._run(f"ALTER TABLE {q(physical)} ADD COLUMN {q(column)} {io.affinity(dtype)}")
                self._run(f"UPDATE {q(physical)} SET {q(column)} = ?", [value])
            self._save_logical(table, {**schema, column: dtype})
            return int(self._run(f"SELECT count(*) FROM {q(table)}")[0][0])

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
        with self._transaction(write=False):
            schema = self._logical(table)
            assert schema is not None
            source = q(table)
            if history:
                cols = ", ".join(q(c) for c in io.physical_columns(schema))
                source = f"(SELECT {cols} FROM {q(table)} UNION ALL SELECT {cols} FROM {q(HISTORY + table)})"
            where = [] if include_deleted else [f"{q(C.DELETED_AT)} IS NULL"]
            wanted = list(schema) if columns is None else list(columns)
            missing = [c for c in wanted if c not in schema]
            if missing:
                raise StoreError(
                    f"read({cls.spec.key}): unknown column(s) {missing}; stored columns: {list(schema)}."
                )
            frame = self._select(source, schema, wanted, filters, where)
        # The rows are already in memory (SQLite hands them over in one read): lazy=True gives a
        # polars lazy frame over them, usable after the store is closed.
        return nw.from_native(frame.lazy() if lazy else frame)

    def _delete(self, cls: type[BaseFeature], filters: list[Any], soft: bool) -> int:
        table = cls.spec.key.table_name
        history = HISTORY + table
        ids = tuple(cls.spec.id_columns)
        with self._transaction(write=True):
            schema = self._logical(table)
            assert schema is not None
            where = [f"{q(C.DELETED_AT)} IS NULL"] if soft else []
            matched = self._select(q(table), schema, list(ids), filters, where).unique()
            if matched.height == 0:
                return 0
            with self._staged(io.encode(matched), index=ids) as staged:
                hit = f"EXISTS (SELECT 1 FROM {staged} AS k WHERE {_match('t', 'k', ids)})"
                if soft:
                    cols = ", ".join(q(c) for c in io.physical_columns(schema))
                    now = _physical_now(schema[C.DELETED_AT])
                    self._run(
                        f"INSERT INTO {q(history)} ({cols}) SELECT {cols} FROM {q(table)} AS t WHERE {hit}"
                    )
                    self._run(
                        f"UPDATE {q(table)} AS t SET {q(C.DELETED_AT)} = ?, {q(C.UPDATED_AT)} = ? WHERE {hit}",
                        [now, now],
                    )
                else:
                    self._run(f"DELETE FROM {q(history)} AS t WHERE {hit}")
                    self._run(f"DELETE FROM {q(table)} AS t WHERE {hit}")
        return matched.height


def _match(left: str, right: str, columns: Sequence[str]) -> str:
    return " AND ".join(f"{left}.{q(c)} = {right}.{q(c)}" for c in columns)


def _physical_now(dtype: pl.DataType) -> int:
    return int(pl.Series([datetime.now(UTC)]).cast(dtype).to_physical()[0])


def _polars_filters(frame: pl.LazyFrame, filters: Sequence[Any]) -> pl.LazyFrame:
    """User filters in polars, parsed and checked like on every store."""
    for f in polars_filters(filters, frame.collect_schema()):
        frame = frame.filter(f)
    return frame
