"""PostgreSQL store: every resolve runs as one SQL query on the server.

Layout: one current table per feature in the store's schema (``public`` by default), superseded row
versions in ``<schema>__metaxy_history``, system tables in ``<schema>__metaxy_system`` and the
parent markers of expansion features (parents written with no children, one row each) in
``<schema>__metaxy_parents``, so several stores can share one database under different schemas.
The two per-field maps (``metaxy_provenance_by_field``, ``metaxy_data_version_by_field``) are ``jsonb`` objects; the field
keys a table has ever held are kept in the column's comment, so reads return a struct with exactly
those fields without scanning rows, and adding a field never rewrites old rows.

The driver is ADBC's PostgreSQL driver: Arrow in (``COPY`` into a temporary table) and Arrow out,
on one connection, so a write's load and its swap into the feature table share one transaction.
Writers of the same feature serialise on an advisory lock; readers never wait and never see half a
write. ``lazy=True`` gives lazy frames over rows already fetched: the server did the work.
"""

import contextlib
import json
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import narwhals as nw
import polars as pl

from metaxy_core import columns as C
from metaxy_core.errors import FilterError, MetadataValidationError, StoreError
from metaxy_core.feature import BaseFeature
from metaxy_core.filters import compile_filters
from metaxy_core.increment import Increment
from metaxy_core.keys import FeatureKey
from metaxy_core.lineage import ResolvePlan, TableSchema
from metaxy_core.schema import widened_columns
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
    lit,
    q,
    removed_fields,
    restrict,
    restricted_dep_sources,
    restriction_keys,
    split_by_status,
    stored_sql,
)
from metaxy_core.stores.base import MetadataStore, ParentCover

INSTALL_HINT = 'pip install "metaxy-dagster[postgres]"'
MAX_IDENTIFIER = 63
"""PostgreSQL silently truncates longer identifiers; metaxy refuses them instead."""
_TEXT_TYPES = ("text", "character varying", "varchar")
_INTEGER_TYPES = ("smallint", "integer", "bigint")


class PostgresDialect(SqlDialect):
    """PostgreSQL spelling of the resolve SQL; per-field maps are ``jsonb`` objects."""

    def digest(self, text: str) -> str:
        # convert_to, not a ::bytea cast: the cast reads backslashes as escapes.
        if self.algorithm == "sha256":
            return f"encode(sha256(convert_to({text}, 'UTF8')), 'hex')"
        return f"md5(convert_to({text}, 'UTF8'))"

    @staticmethod
    def struct_field(column: str, field: str) -> str:
        return f"({column} ->> {lit(field)})"

    @staticmethod
    def struct_pack(items: Sequence[tuple[str, str]]) -> str:
        return "jsonb_build_object(" + ", ".join(f"{lit(k)}, {v}" for k, v in items) + ")"

    @staticmethod
    def list_of_non_null(items: Sequence[str]) -> str:
        if not items:
            return "CAST(ARRAY[] AS VARCHAR[])"
        return "array_remove(CAST(ARRAY[" + ", ".join(items) + "] AS VARCHAR[]), NULL)"

    @staticmethod
    def fence(select: str) -> str:
        # OFFSET 0 keeps PostgreSQL from pulling the subquery up and re-hashing per reference
        return f"{select} OFFSET 0"

    @staticmethod
    def string_list(items: Sequence[str]) -> str:
        return "CAST(ARRAY[" + ", ".join(items) + "] AS VARCHAR[])"

    @staticmethod
    def text_or_integer(type_name: str) -> bool:
        base = type_name.lower().split("(")[0].strip()  # "character varying(10)" -> "character varying"
        return base in (*_TEXT_TYPES, *_INTEGER_TYPES)

    @staticmethod
    def string_agg_ordered(expr: str, order: str) -> str:
        # members sort by their bytes whatever the database's collation, as in every other engine
        return f"string_agg({expr}, '|' ORDER BY {order} COLLATE \"C\")"


def mask_dsn(dsn: str) -> str:
    """``dsn`` with its password replaced by ``***`` (URI or ``key=value`` form)."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        if parts.password is not None:
            user = parts.username or ""
            host = parts.netloc.rsplit("@", 1)[1]
            parts = parts._replace(netloc=f"{user}:***@{host}")
        query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
        return urlunsplit(parts._replace(query=query))
    return re.sub(r"(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", dsn)


def _with_connect_timeout(dsn: str, seconds: int) -> str:
    if "connect_timeout" in dsn:
        return dsn
    if "://" in dsn:
        return dsn + ("&" if "?" in dsn else "?") + f"connect_timeout={seconds}"
    return f"{dsn} connect_timeout={seconds}"


def _driver() -> Any:
    try:
        import adbc_driver_postgresql.dbapi as dbapi
    except ImportError as exc:
        raise StoreError(
            "PostgreSQLMetadataStore needs the ADBC PostgreSQL driver, which is not installed. "
            f"Install it with: {INSTALL_HINT}"
        ) from exc
    return dbapi


class PostgreSQLMetadataStore(MetadataStore):
    """Metadata in a PostgreSQL database.

    ``dsn`` is a libpq connection string (``postgresql://user:password@host:5432/db`` or
    ``host=... dbname=...``). ``schema`` holds the feature tables (created on first write), so
    several stores can share a database. ``connect_timeout`` bounds how long opening waits for
    an unreachable server.
    """

    kind = "postgres"
    supports_parent_markers = True
    supports_incremental = True
    incremental_lag = timedelta(minutes=5)
    """Several clients may write at once: rows stamped up to this long before a checkpoint may
    still have been committing, so an incremental resolve looks that far back again."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "public",
        hash_algorithm: str = "sha256",
        hash_length: int | None = None,
        connect_timeout: int = 10,
    ) -> None:
        super().__init__(hash_algorithm=hash_algorithm, hash_length=hash_length)
        if not isinstance(dsn, str) or not dsn.strip():
            raise StoreError(
                "PostgreSQLMetadataStore: dsn is empty; pass a connection string such as "
                "'postgresql://user:password@host:5432/dbname'."
            )
        self.dsn = dsn
        self.schema = schema
        self.history_schema = f"{schema}__metaxy_history"
        self.system_schema = f"{schema}__metaxy_system"
        self.parents_schema = f"{schema}__metaxy_parents"
        if len(self.history_schema.encode()) > MAX_IDENTIFIER or not schema:
            raise StoreError(
                f"PostgreSQLMetadataStore: schema={schema!r} must be 1 to "
                f"{MAX_IDENTIFIER - len('__metaxy_history')} bytes long (metaxy adds '__metaxy_history')."
            )
        self.connect_timeout = connect_timeout
        self._con: Any = None
        self._tx_depth = 0

    def __repr__(self) -> str:
        return f"PostgreSQLMetadataStore(dsn={mask_dsn(self.dsn)!r}, schema={self.schema!r})"

    # -- connection -------------------------------------------------------------------------------
    def _open(self) -> None:
        dbapi = _driver()
        try:
            self._con = dbapi.connect(_with_connect_timeout(self.dsn, self.connect_timeout))
        except dbapi.Error as exc:
            raise StoreError(
                f"PostgreSQLMetadataStore cannot connect with dsn={mask_dsn(self.dsn)!r}: "
                f"{_driver_message(exc)}. Check the dsn setting (host, port, user, password, database) "
                "and that the server is running and accepts connections from this machine."
            ) from exc
        self._tx_depth = 0
        self._run("SET TIME ZONE 'UTC'")
        self._con.commit()

    def _close(self) -> None:
        if self._con is not None:
            try:
                with contextlib.suppress(Exception):  # a dropped connection has nothing to roll back
                    self._con.rollback()
            finally:
                self._con.close()
        self._con = None

    @property
    def connection(self) -> Any:
        """The open ADBC connection."""
        if self._con is None:
            raise StoreError(f"{self!r} is closed: use `with store:`.")
        return self._con

    @contextmanager
    def _tx(self, what: str) -> Iterator[None]:
        """One transaction around a store operation: committed on success, rolled back otherwise.

        Reads end their transaction too, so no snapshot or lock outlives a call (an idle open
        transaction would block another process's ``ALTER TABLE``).
        """
        con = self.connection
        self._tx_depth += 1
        try:
            yield
        except BaseException as exc:
            self._tx_depth -= 1
            if self._tx_depth == 0:
                con.rollback()
            dbapi = _driver()
            if isinstance(exc, dbapi.Error):
                raise self._translate(exc, what) from exc
            raise
        self._tx_depth -= 1
        if self._tx_depth == 0:
            con.commit()

    def _translate(self, exc: Exception, what: str) -> Exception:
        message = _driver_message(exc)
        state = getattr(exc, "sqlstate", None) or ""
        if state in ("42501", "25006") or "permission denied" in message:
            return StoreError(
                f"{what} failed in PostgreSQLMetadataStore (dsn={mask_dsn(self.dsn)!r}, "
                f"schema={self.schema!r}): {message}. The role in the dsn may not do this here (or the server is "
                f"read-only): grant it CREATE on the database and the schema {self.schema!r}, or use a role that "
                "can write; nothing was written."
            )
        writing = what.startswith(("write(", "append_system("))
        if writing and state.startswith("22"):
            return MetadataValidationError(
                f"{what}: a value does not fit the stored column type ({message}). Convert the column to the "
                "stored type; nothing was written."
            )
        if what.startswith(("alter_column_type(", "add_id_column(")) and state.startswith("22"):
            return MetadataValidationError(
                f"{what}: stored values do not convert ({_first_line(exc)}); nothing changed."
            )
        if state.startswith("22"):
            # e.g. a filter's CAST that fails on a stored value: the query is sound, the data is not
            return StoreError(
                f"{what} failed in PostgreSQLMetadataStore: a stored value could not be converted or computed "
                f"({_first_line(exc)}). Check the casts and arithmetic in the filters."
            )
        return StoreError(
            f"{what} failed in PostgreSQLMetadataStore (dsn={mask_dsn(self.dsn)!r}) and was rolled back: "
            f"{message}"
        )

    def _cursor(self) -> Any:
        return self.connection.cursor()

    def _run(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Execute one statement; its rows (if any) as tuples."""
        cur = self._cursor()
        try:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []
        finally:
            cur.close()

    def _arrow(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        cur = self._cursor()
        try:
            cur.execute(sql, params)
            return cur.fetch_arrow_table()
        finally:
            cur.close()

    def _frame(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        return _to_polars(self._arrow(sql, params))

    def _load(self, frame: pl.DataFrame, what: str) -> str:
        """COPY ``frame`` into a temporary table of this transaction; its quoted name.

        Struct columns travel as JSON text (cast to ``jsonb`` when read) and all-NULL columns
        without a type as text: COPY needs a PostgreSQL type for every Arrow column.
        """
        name = f"__metaxy_in_{uuid.uuid4().hex[:12]}"
        exprs = []
        decimals = {}
        for column, dtype in frame.schema.items():
            if isinstance(dtype, pl.Struct):
                exprs.append(pl.col(column).struct.json_encode())
            elif dtype == pl.Null:
                exprs.append(pl.col(column).cast(pl.String))
            elif dtype == pl.UInt64:
                # the driver would wrap values above 2**63 - 1 around to negative numbers
                top = frame.get_column(column).max()
                if top is not None and int(top) > 2**63 - 1:  # type: ignore[arg-type]
                    raise MetadataValidationError(
                        f"{what}: column '{column}' holds unsigned 64-bit values above {2**63 - 1}, which PostgreSQL's "
                        "bigint cannot store; convert it (e.g. to a string) before writing (nothing was written)."
                    )
                exprs.append(pl.col(column).cast(pl.Int64))
            elif isinstance(dtype, pl.Decimal):
                decimals[column] = dtype
        if exprs:
            frame = frame.with_columns(exprs)
        cur = self._cursor()
        try:
            cur.adbc_ingest(name, frame.to_arrow(), mode="create", temporary=True)
        finally:
            cur.close()
        for column, dtype in decimals.items():
            # COPY creates an unbounded numeric; keep the frame's precision and scale
            self._run(
                f"ALTER TABLE pg_temp.{q(name)} ALTER COLUMN {q(column)} TYPE numeric({dtype.precision}, {dtype.scale})"
            )
        return q(name)

    @property
    def dialect(self) -> SqlDialect:
        return PostgresDialect(self.hash_algorithm, self.hash_length)

    # -- names ------------------------------------------------------------------------------------
    def _table(self, key: FeatureKey) -> str:
        name = key.table_name
        if len(name.encode()) > MAX_IDENTIFIER:
            raise StoreError(
                f"Feature '{key}': its table name '{name}' is longer than PostgreSQL's {MAX_IDENTIFIER}-byte "
                "identifier limit; use a shorter feature key."
            )
        return name

    def _current_table(self, table: str) -> str:
        return f"{q(self.schema)}.{q(table)}"

    def _history_table(self, table: str) -> str:
        return f"{q(self.history_schema)}.{q(table)}"

    def _markers_table(self, table: str) -> str:
        return f"{q(self.parents_schema)}.{q(table)}"

    @contextmanager
    def _exclusive(self, name: str) -> Iterator[None]:
        """Hold a session-level advisory lock on ``name`` around a whole operation.

        The lock is taken in a transaction of its own so the operation's transaction starts after
        it: PostgreSQL refreshes a session's catalog cache when a transaction starts, so the
        operation sees the tables and schemas the previous holder created.
        """
        assert self._tx_depth == 0, "advisory locks are taken outside any transaction"
        params = [f"metaxy:{name}"]
        with self._tx("lock"):
            self._run("SELECT pg_advisory_lock(hashtextextended($1, 0))", params)
        try:
            yield
        finally:
            # a broken connection releases the lock itself; never hide the operation's own error
            with contextlib.suppress(Exception), self._tx("unlock"):
                self._run("SELECT pg_advisory_unlock(hashtextextended($1, 0))", params)

    @contextmanager
    def _loaded(self, frame: pl.DataFrame, what: str) -> Iterator[str]:
        """``frame`` in a temporary table for the duration of the block, loaded before any lock."""
        with self._loaded_all([frame], what) as names:
            yield names[0]

    @contextmanager
    def _loaded_all(self, frames: Sequence[pl.DataFrame], what: str) -> Iterator[list[str]]:
        """Each frame in a temporary table (loaded in one transaction) for the duration of the block."""
        names: list[str] = []
        try:
            with self._tx(what):
                for frame in frames:
                    names.append(self._load(frame, what))
            yield names
        finally:
            if names:
                with contextlib.suppress(Exception), self._tx("drop"):
                    for name in names:
                        self._run(f"DROP TABLE IF EXISTS pg_temp.{name}")

    def _ensure_schemas(self, markers: bool = False) -> None:
        """Create the store's schemas; ``markers``: also the one of the parent-marker tables.

        The marker schema is made only when a write records parents without children, so stores
        without expansion features keep three schemas.
        """
        wanted: tuple[str, ...] = (self.schema, self.history_schema, self.system_schema)
        if markers:
            wanted += (self.parents_schema,)
        with self._tx("create schemas"):
            marks = ", ".join(f"${i + 1}" for i in range(len(wanted)))
            rows = self._run(f"SELECT count(*) FROM pg_namespace WHERE nspname IN ({marks})", list(wanted))
        if rows[0][0] == len(wanted):
            return
        # concurrent CREATE SCHEMA IF NOT EXISTS collide on the catalog's unique index: serialise them
        with self._exclusive(f"schema:{self.schema}"), self._tx("create schemas"):
            for schema in wanted:
                self._run(f"CREATE SCHEMA IF NOT EXISTS {q(schema)}")

    # -- schema -----------------------------------------------------------------------------------
    def _columns(self, qualified: str) -> list[tuple[str, str, str | None]]:
        """(name, type, comment) of each column of table ``qualified``; empty when it does not exist."""
        return [
            (str(name), str(ctype), comment)
            for name, ctype, comment in self._run(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod), col_description(a.attrelid, a.attnum) "
                "FROM pg_attribute AS a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 "
                "AND NOT a.attisdropped ORDER BY a.attnum",
                [qualified],
            )
        ]

    @staticmethod
    def _struct_fields(columns: Sequence[tuple[str, str, str | None]]) -> dict[str, tuple[str, ...]]:
        return {
            name: tuple(json.loads(comment or "[]"))
            for name, _, comment in columns
            if name in C.STRUCT_COLUMNS
        }

    def _schema(self, key: FeatureKey) -> TableSchema | None:
        table = self._table(key)
        with self._tx(f"schema({key})"):
            columns = self._columns(self._current_table(table))
            if not columns:
                return None
            structs = self._struct_fields(columns)
            plain = [name for name, _, _ in columns if name not in C.STRUCT_COLUMNS]
            empty = self._frame(
                f"SELECT {', '.join(q(c) for c in plain)} FROM {self._current_table(table)} LIMIT 0"
            )
        dtypes: dict[str, Any] = {}
        for name, _, _ in columns:
            if name in structs:
                dtypes[name] = pl.Struct({f: pl.String for f in structs[name]})
            else:
                dtypes[name] = empty.schema[name]
        return TableSchema(
            columns=tuple(name for name, _, _ in columns if not C.is_system(name)),
            struct_fields=structs,
            types={name: ctype for name, ctype, _ in columns},
            dtypes=dtypes,
        )

    def _list_features(self) -> list[FeatureKey]:
        # Only metaxy tables: the schema may hold the user's own tables too.
        with self._tx("list_features"):
            rows = self._run(
                "SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
                "JOIN pg_attribute AS a ON a.attrelid = c.oid WHERE n.nspname = $1 AND c.relkind = 'r' "
                "AND a.attname = $2 AND NOT a.attisdropped",
                [self.schema, C.PROVENANCE],
            )
        keys = []
        for (name,) in rows:
            try:
                keys.append(FeatureKey(str(name).split("__")))
            except Exception:  # a user table that happens to have the column
                continue
        return keys

    # -- system tables ----------------------------------------------------------------------------
    def _append_system(self, name: str, frame: pl.DataFrame) -> None:
        table = f"{q(self.system_schema)}.{q(name)}"
        self._ensure_schemas()
        with (
            self._loaded(frame, f"append_system({name})") as incoming,
            self._exclusive(f"system:{self.schema}.{name}"),
            self._tx(f"append_system({name})"),
        ):
            stored = [c for c, _, _ in self._columns(table)]
            if not stored:
                self._run(f"CREATE TABLE {table} AS SELECT * FROM {incoming}")
                return
            self._add_columns(incoming, stored, [table])
            cols = ", ".join(q(c) for c in frame.columns)
            self._run(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {incoming}")

    def _read_system(self, name: str) -> pl.DataFrame | None:
        table = f"{q(self.system_schema)}.{q(name)}"
        with self._tx(f"read_system({name})"):
            if not self._columns(table):
                return None
            return self._frame(f"SELECT * FROM {table}")

    def _prune_bookkeeping(self, keep_fingerprints: int, events_before: datetime) -> None:
        with self._tx("prune bookkeeping"):
            tables = [f"{q(self.system_schema)}.{q(n)}" for n in (CHECKPOINTS, EVENTS)]
            present = [t if self._columns(t) else None for t in tables]
            for sql in prune_statements(
                present[0], present[1], keep_fingerprints, self.dialect.timestamp(events_before)
            ):
                self._run(sql)

    def _add_columns(
        self,
        incoming: str,
        stored: Sequence[str],
        targets: Sequence[str],
        incoming_types: dict[str, str] | None = None,
    ) -> None:
        """Add to every table in ``targets`` the columns of ``incoming`` that ``stored`` lacks."""
        if incoming_types is None:
            incoming_types = {c: t for c, t, _ in self._columns(f"pg_temp.{incoming}")}
        for column, ctype in incoming_types.items():
            if column in stored:
                continue
            if column in C.STRUCT_COLUMNS:
                ctype = "jsonb"
            for target in targets:
                self._run(f"ALTER TABLE {target} ADD COLUMN {q(column)} {ctype}")

    # -- filters ----------------------------------------------------------------------------------
    def _filtered(self, source: str, filters: Sequence[Any], schema: dict[str, Any]) -> str:
        """``source`` (a SELECT) restricted by the user's filters, rendered for PostgreSQL.

        A filter that parses but does not fit the column types (say ``lower(n_frames)`` on an
        integer column) raises a :class:`FilterError` naming it. Each filter is checked on its own
        by preparing the query (the server checks types without reading a row): after an error the
        driver accepts nothing but a rollback, so the first failure must already name its filter.
        The operation's transaction is then rolled back (it has written nothing).
        """
        predicates = compile_filters(list(filters), dialect="postgres", schema=schema)
        if not predicates:
            return source

        def where(preds: Sequence[str]) -> str:
            return f"SELECT * FROM ({source}) AS f WHERE " + " AND ".join(f"({p})" for p in preds)

        dbapi = _driver()
        for f, p in zip(filters, predicates, strict=True):
            cur = self._cursor()
            try:
                cur.adbc_prepare(where([p]))
            except dbapi.Error as exc:
                if (getattr(exc, "sqlstate", None) or "") == "42501":
                    raise  # a missing privilege is not the filter's fault
                reason = _first_line(exc)
                raise FilterError(f"Filter {f!r} does not fit the column types: {reason}") from None
            finally:
                cur.close()
        return where(predicates)

    def _current(self, table: str, schema: TableSchema, filters: Sequence[Any] = ()) -> str:
        return self._filtered(
            f"SELECT * FROM {self._current_table(table)} WHERE {q(C.DELETED_AT)} IS NULL",
            filters,
            dict(schema.dtypes),
        )

    def _stored_rows(self, plan: ResolvePlan, schema: TableSchema, filters: Sequence[Any]) -> str:
        """Live stored rows of the target; for expansion with its parent markers (child columns NULL)."""
        if plan.key_columns == plan.target_ids:
            return self._current(plan.table, schema, filters)
        markers = self._markers_table(plan.table)
        have = {name for name, _, _ in self._columns(markers)}
        if not have:
            return self._current(plan.table, schema, filters)
        names = ", ".join(q(c) for c in schema.types)
        padded = ", ".join(
            q(c) if c in have else f"CAST(NULL AS {t}) AS {q(c)}" for c, t in schema.types.items()
        )
        both = (
            f"SELECT {names} FROM {self._current_table(plan.table)} UNION ALL SELECT {padded} FROM {markers}"
        )
        return self._filtered(
            f"SELECT * FROM ({both}) AS m WHERE {q(C.DELETED_AT)} IS NULL", filters, dict(schema.dtypes)
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
        with self._tx(f"resolve_update({plan.feature})"):
            increment = self._resolve_in_tx(plan, samples, filters, restriction)
        if not lazy:
            return increment
        # The server already did the work; lazy frames only defer the caller's own polars steps.
        return Increment(
            new=increment.new.lazy(), stale=increment.stale.lazy(), orphaned=increment.orphaned.lazy()
        )

    def _changed_keys(self, plan: ResolvePlan, since: datetime) -> str:
        # Every stored row, soft-deleted ones included: deletes are change events of their own.
        deps = {dep.index: f"SELECT * FROM {self._current_table(dep.table)}" for dep in plan.deps}
        exists = self._schema(plan.feature) is not None
        target = f"SELECT * FROM {self._current_table(plan.table)}" if exists else None
        return changed_keys_sql(self.dialect, plan, deps, target, since)

    def _count_changed(self, plan: ResolvePlan, since: datetime) -> int:
        with self._tx(f"resolve_update({plan.feature})"):
            return int(self._run(f"SELECT count(*) FROM ({self._changed_keys(plan, since)}) AS c")[0][0])

    def _resolve_in_tx(
        self,
        plan: ResolvePlan,
        samples: pl.DataFrame | None,
        filters: list[Any],
        restriction: KeyRestriction | None = None,
    ) -> Increment:
        d = self.dialect
        target_schema = self._schema(plan.feature)
        samples_source = None
        samples_columns: list[str] = []
        expected_dtypes: dict[str, Any] = {}
        if samples is not None:
            loaded = self._load(samples, f"resolve_update({plan.feature})")
            samples_columns = [c for c in samples.columns if not C.is_system(c)]
            samples_source = (
                f"SELECT {', '.join(q(c) for c in samples_columns)}, "
                f"CAST({q(C.PROVENANCE_BY_FIELD)} AS jsonb) AS {q(C.PROVENANCE_BY_FIELD)} FROM {loaded}"
            )
            expected_dtypes = dict(samples.schema)
        carried = samples_columns if samples is not None else plan.carried_columns
        keys = restriction_keys(
            plan, samples_source, restriction, lambda since: self._changed_keys(plan, since)
        )
        only = None if restriction is None else in_keys(plan.key_columns, keys)
        stored = None
        if target_schema is not None:
            rows = restrict(self._stored_rows(plan, target_schema, filters), only)
            stored = stored_sql(d, plan, rows, target_schema)
        if plan.missing_required:
            return self._orphans_only(plan, stored)
        schemas: dict[int, TableSchema] = {}
        sources: dict[int, str] = {}
        for dep in plan.deps:
            schema = self._schema(dep.feature)
            assert schema is not None
            schemas[dep.index] = schema
            sources[dep.index] = self._current(dep.table, schema, dep.filters)
            for src, out in dep.carried:
                if src in schema.dtypes:
                    expected_dtypes.setdefault(out, schema.dtypes[src])
        if restriction is not None:
            sources = restricted_dep_sources(plan, sources, keys)
        expected = self._filtered(
            expected_sql(d, plan, sources, schemas, samples_source, [], samples_columns),
            filters,
            expected_dtypes,
        )
        diff = diff_sql(d, plan, expected, stored, carried, removed_fields(plan, target_schema))
        return self._split(plan, diff, carried)

    def _split(self, plan: ResolvePlan, diff: str, carried: Sequence[str]) -> Increment:
        keys = list(plan.key_columns)
        non_key = [c for c in carried if c not in keys]
        fields = [fp.key for fp in plan.fields]
        projected = [
            STATUS,
            *(q(c) for c in [*keys, *non_key]),
            *_expand(q(C.PROVENANCE_BY_FIELD), "__metaxy_e", fields),
            q(C.PROVENANCE),
            q(C.CHANGED_FIELDS),
            q(STORED_PROV),
            *_expand(q(STORED_PBF), "__metaxy_s", fields),
        ]
        frame = self._frame(f"SELECT {', '.join(projected)} FROM ({diff}) AS r")
        frame = frame.with_columns(
            _pack("__metaxy_e", fields).alias(C.PROVENANCE_BY_FIELD),
            _pack("__metaxy_s", fields).alias(STORED_PBF),
            pl.col(C.CHANGED_FIELDS).cast(pl.List(pl.String)),
        )
        new_cols = [*keys, *non_key, C.PROVENANCE_BY_FIELD, C.PROVENANCE, C.CHANGED_FIELDS]
        split = split_by_status(frame)
        orphaned = split["orphaned"].select(
            *keys, pl.col(STORED_PBF).alias(C.PROVENANCE_BY_FIELD), pl.col(STORED_PROV).alias(C.PROVENANCE)
        )
        return Increment(
            new=nw.from_native(split["new"].select(new_cols)),
            stale=nw.from_native(split["stale"].select(new_cols)),
            orphaned=nw.from_native(orphaned),
        )

    def _orphans_only(self, plan: ResolvePlan, stored: str | None) -> Increment:
        """A required upstream has no metadata: nothing is expected, every stored sample is orphaned."""
        fields = [fp.key for fp in plan.fields]
        struct = pl.Struct({f: pl.String for f in fields})
        keys = list(plan.key_columns)
        if stored is None:
            orphaned = pl.DataFrame(
                {
                    **{k: pl.Series([], dtype=pl.String) for k in keys},
                    C.PROVENANCE_BY_FIELD: pl.Series([], dtype=struct),
                    C.PROVENANCE: pl.Series([], dtype=pl.String),
                }
            )
        else:
            cols = [*(q(k) for k in keys), *_expand(q(STORED_PBF), "__metaxy_s", fields), q(STORED_PROV)]
            orphaned = self._frame(f"SELECT {', '.join(cols)} FROM ({stored}) AS s").select(
                *keys,
                _pack("__metaxy_s", fields).alias(C.PROVENANCE_BY_FIELD),
                pl.col(STORED_PROV).alias(C.PROVENANCE),
            )
        empty = orphaned.head(0).with_columns(pl.lit(None, dtype=pl.List(pl.String)).alias(C.CHANGED_FIELDS))
        return Increment(nw.from_native(empty), nw.from_native(empty.clone()), nw.from_native(orphaned))

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
        table = self._table(key)
        for column in frame.columns:
            if len(column.encode()) > MAX_IDENTIFIER:
                raise MetadataValidationError(
                    f"write({key}): column name '{column}' is longer than PostgreSQL's {MAX_IDENTIFIER}-byte "
                    "identifier limit; rename it before writing (nothing was written)."
                )
        what = f"write({key})"
        self._ensure_schemas(markers=parents is not None and parents.empty.height > 0)
        frames = [frame] if parents is None else [frame, parents.covered, parents.empty]
        with (
            self._loaded_all(frames, what) as loaded,
            self._exclusive(f"feature:{self.schema}.{table}"),
            self._tx(what),
        ):
            incoming = loaded[0]
            stored = self._columns(self._current_table(table))
            if not stored:
                self._create(table, incoming, frame, replace_key)
            else:
                self._evolve(table, incoming, frame, stored)
                # expansion: every covered parent's children are replaced, not only the frame's parents
                self._replace(table, incoming, frame, replace_key, loaded[1] if parents else incoming)
            if parents is not None:
                self._write_markers(table, replace_key, loaded[1], loaded[2], parents.empty)

    def _evolve(
        self, table: str, incoming: str, frame: pl.DataFrame, stored: Sequence[tuple[str, str, str | None]]
    ) -> None:
        """Fit the stored tables to a prepared frame: new columns, widened types, new per-field keys."""
        current, history = self._current_table(table), self._history_table(table)
        incoming_types = {c: t for c, t, _ in self._columns(f"pg_temp.{incoming}")}
        names = [c for c, _, _ in stored]
        self._add_columns(incoming, names, [current, history], incoming_types)
        # The prepared frame widens a stored user column only losslessly (int -> float, int -> str,
        # a narrower int -> a wider one): convert the stored values in every table holding it.
        stored_types = {c: t for c, t, _ in stored}
        differing = [
            c
            for c, t in incoming_types.items()
            if not C.is_system(c) and c in stored_types and stored_types[c] != t
        ]
        if differing:
            stored_dtypes = dict(
                self._frame(f"SELECT {', '.join(q(c) for c in differing)} FROM {current} LIMIT 0").schema
            )
            for column in widened_columns(dict(frame.schema), stored_dtypes):
                self._set_column_type(table, column, incoming_types[column])
        fields = self._struct_fields(stored)
        for column in C.STRUCT_COLUMNS:
            have = fields.get(column, ())
            incoming_fields = [f.name for f in frame.schema[column].fields]  # type: ignore[attr-defined]
            if set(incoming_fields) - set(have):
                self._comment_fields(table, column, sorted({*have, *incoming_fields}))

    def _replace(
        self, table: str, incoming: str, frame: pl.DataFrame, replace_key: tuple[str, ...], covered: str
    ) -> None:
        """Move the stored rows of every key in ``covered`` to history and insert the incoming rows."""
        current, history = self._current_table(table), self._history_table(table)
        all_cols = ", ".join(q(c) for c, _, _ in self._columns(current))
        key_match = " AND ".join(f"t.{q(c)} = k.{q(c)}" for c in replace_key)
        replaced = f"(SELECT DISTINCT {', '.join(q(c) for c in replace_key)} FROM {covered}) AS k"
        # Superseded versions move to history in the same statement that removes them.
        self._run(
            f"WITH moved AS (DELETE FROM {current} AS t USING {replaced} WHERE {key_match} RETURNING t.*) "
            f"INSERT INTO {history} ({all_cols}) SELECT {all_cols} FROM moved"
        )
        self._run(
            f"INSERT INTO {current} ({', '.join(q(c) for c in frame.columns)}) "
            f"SELECT {_select_incoming(frame.columns)} FROM {incoming}"
        )

    def _write_markers(
        self, table: str, on: tuple[str, ...], covered: str, markers: str, empty: pl.DataFrame
    ) -> None:
        """Drop the markers of every covered parent, record the covered parents without children."""
        target = self._markers_table(table)
        if not self._columns(target):
            if empty.height:
                self._run(f"CREATE TABLE {target} AS SELECT {_select_incoming(empty.columns)} FROM {markers}")
                self._run(f"CREATE INDEX ON {target} ({', '.join(q(c) for c in on)})")
                fields = self._struct_fields(self._columns(self._current_table(table)))
                for column in C.STRUCT_COLUMNS:
                    comment = lit(json.dumps(sorted(fields.get(column, ()))))
                    self._run(f"COMMENT ON COLUMN {target}.{q(column)} IS {comment}")
            return
        key_match = " AND ".join(f"t.{q(c)} = k.{q(c)}" for c in on)
        self._run(
            f"DELETE FROM {target} AS t USING (SELECT DISTINCT {', '.join(q(c) for c in on)} FROM {covered}) AS k "
            f"WHERE {key_match}"
        )
        if empty.height:
            self._run(
                f"INSERT INTO {target} ({', '.join(q(c) for c in empty.columns)}) "
                f"SELECT {_select_incoming(empty.columns)} FROM {markers}"
            )

    def _create(self, table: str, incoming: str, frame: pl.DataFrame, replace_key: tuple[str, ...]) -> None:
        current, history = self._current_table(table), self._history_table(table)
        self._run(f"CREATE TABLE {current} AS SELECT {_select_incoming(frame.columns)} FROM {incoming}")
        self._run(f"CREATE TABLE {history} (LIKE {current})")
        # replacing a few rows must not scan the whole table
        self._run(f"CREATE INDEX ON {current} ({', '.join(q(c) for c in replace_key)})")
        for column in C.STRUCT_COLUMNS:
            self._comment_fields(table, column, [f.name for f in frame.schema[column].fields])  # type: ignore[attr-defined]

    def _feature_tables(self, table: str) -> list[str]:
        """The feature's current and history tables, and its parent-marker table when it has one."""
        tables = [self._current_table(table), self._history_table(table)]
        markers = self._markers_table(table)
        if self._columns(markers):
            tables.append(markers)
        return tables

    def _comment_fields(self, table: str, column: str, fields: Sequence[str]) -> None:
        comment = lit(json.dumps(sorted(fields)))
        for target in self._feature_tables(table):
            self._run(f"COMMENT ON COLUMN {target}.{q(column)} IS {comment}")

    # -- schema changes ---------------------------------------------------------------------------
    def _set_column_type(self, table: str, column: str, ctype: str) -> None:
        """Convert ``column`` to ``ctype`` in every table of the feature that has it."""
        for target in self._feature_tables(table):
            if any(name == column for name, _, _ in self._columns(target)):
                self._run(
                    f"ALTER TABLE {target} ALTER COLUMN {q(column)} TYPE {ctype} USING CAST({q(column)} AS {ctype})"
                )

    def _pg_type(self, dtype: pl.DataType) -> str:
        """PostgreSQL's name for a polars dtype, as a write of that dtype would create the column."""
        name = self._load(pl.DataFrame(schema={"c": dtype}), "type")
        try:
            return self._columns(f"pg_temp.{name}")[0][1]
        finally:
            self._run(f"DROP TABLE pg_temp.{name}")

    def _alter_column(self, cls: type[BaseFeature], column: str, dtype: pl.DataType) -> int:
        key = cls.spec.key
        table = self._table(key)
        with (
            self._exclusive(f"feature:{self.schema}.{table}"),
            self._tx(f"alter_column_type({key}, {column!r}, {dtype})"),
        ):
            self._set_column_type(table, column, self._pg_type(dtype))
            return int(self._run(f"SELECT count(*) FROM {self._current_table(table)}")[0][0])

    def _add_id_column(self, cls: type[BaseFeature], column: str, dtype: pl.DataType, default: Any) -> int:
        key = cls.spec.key
        table = self._table(key)
        with (
            self._exclusive(f"feature:{self.schema}.{table}"),
            self._tx(f"add_id_column({key}, {column!r})"),
        ):
            ctype = self._pg_type(dtype)
            for target in (self._current_table(table), self._history_table(table)):
                self._run(f"ALTER TABLE {target} ADD COLUMN {q(column)} {ctype}")
                self._run(f"UPDATE {target} SET {q(column)} = CAST($1 AS {ctype})", [default])
            return int(self._run(f"SELECT count(*) FROM {self._current_table(table)}")[0][0])

    # -- read / delete ----------------------------------------------------------------------------
    def _compact(self, cls: type[BaseFeature], keep_versions: int, before: datetime | None) -> int:
        history = self._history_table(self._table(cls.spec.key))
        victims = compact_victims_sql(
            self.dialect, history, cls.spec.id_columns, "ctid", keep_versions, before
        )
        with self._tx(f"compact({cls.spec.key})"):
            rows = self._run(
                f"WITH gone AS (DELETE FROM {history} WHERE ctid IN ({victims}) RETURNING 1) SELECT count(*) FROM gone"
            )
        return int(rows[0][0])

    def _read(
        self,
        cls: type[BaseFeature],
        columns: Sequence[str] | None,
        filters: list[Any],
        include_deleted: bool,
        history: bool,
        lazy: bool,
    ) -> Any:
        key = cls.spec.key
        table = self._table(key)
        with self._tx(f"read({key})"):
            schema = self._schema(key)
            assert schema is not None
            names = list(schema.dtypes)
            all_cols = ", ".join(q(c) for c in names)
            source = f"SELECT {all_cols} FROM {self._current_table(table)}"
            if history:
                source += f" UNION ALL SELECT {all_cols} FROM {self._history_table(table)}"
            if not include_deleted:
                source = f"SELECT * FROM ({source}) AS s WHERE {q(C.DELETED_AT)} IS NULL"
            source = self._filtered(source, filters, dict(schema.dtypes))
            wanted = list(columns) if columns is not None else names
            unknown = [c for c in wanted if c not in schema.dtypes]
            if unknown:
                raise StoreError(f"read({key}): unknown column(s) {unknown}; stored columns: {names}.")
            select: list[str] = []
            for i, column in enumerate(wanted):
                if column in schema.struct_fields:
                    select += _expand(q(column), f"__metaxy_r{i}", schema.struct_fields[column])
                else:
                    select.append(q(column))
            frame = self._frame(f"SELECT {', '.join(select)} FROM ({source}) AS c")
        out = [
            _pack(f"__metaxy_r{i}", schema.struct_fields[column]).alias(column)
            if column in schema.struct_fields
            else pl.col(column)
            for i, column in enumerate(wanted)
        ]
        result = frame.select(out)
        return nw.from_native(result.lazy() if lazy else result)

    def _delete(self, cls: type[BaseFeature], filters: list[Any], soft: bool) -> int:
        key = cls.spec.key
        table = self._table(key)
        current, history = self._current_table(table), self._history_table(table)
        ids = tuple(cls.spec.id_columns)
        with self._exclusive(f"feature:{self.schema}.{table}"), self._tx(f"delete({key})"):
            schema = self._schema(key)
            assert schema is not None
            source = f"SELECT * FROM {current}" + (f" WHERE {q(C.DELETED_AT)} IS NULL" if soft else "")
            matched = self._filtered(source, filters, dict(schema.dtypes))
            selected = f"__metaxy_del_{uuid.uuid4().hex[:12]}"
            self._run(
                f"CREATE TEMPORARY TABLE {q(selected)} ON COMMIT DROP AS "
                f"SELECT DISTINCT {', '.join(q(c) for c in ids)} FROM ({matched}) AS m"
            )
            count = int(self._run(f"SELECT count(*) FROM {q(selected)}")[0][0])
            key_match = " AND ".join(f"t.{q(c)} = k.{q(c)}" for c in ids)
            if soft:
                cols = ", ".join(q(c) for c in schema.dtypes)
                self._run(
                    f"INSERT INTO {history} ({cols}) SELECT {', '.join('t.' + q(c) for c in schema.dtypes)} "
                    f"FROM {current} AS t JOIN {q(selected)} AS k ON {key_match}"
                )
                self._run(
                    f"UPDATE {current} AS t SET {q(C.DELETED_AT)} = now(), {q(C.UPDATED_AT)} = now() "
                    f"FROM {q(selected)} AS k WHERE {key_match}"
                )
            else:
                self._run(f"DELETE FROM {history} AS t USING {q(selected)} AS k WHERE {key_match}")
                self._run(f"DELETE FROM {current} AS t USING {q(selected)} AS k WHERE {key_match}")
        return count


def _select_incoming(columns: Sequence[str]) -> str:
    """Columns of a loaded frame, struct columns turned back from JSON text into ``jsonb``."""
    return ", ".join(f"CAST({q(c)} AS jsonb) AS {q(c)}" if c in C.STRUCT_COLUMNS else q(c) for c in columns)


def _expand(column: str, prefix: str, fields: Sequence[str]) -> list[str]:
    """One text column per field of a ``jsonb`` map (positional aliases: field keys may be long)."""
    return [f"({column} ->> {lit(f)}) AS {prefix}_{i}" for i, f in enumerate(fields)]


def _pack(prefix: str, fields: Sequence[str]) -> pl.Expr:
    """The struct of the columns :func:`_expand` made, fields in sorted order."""
    ordered = sorted(enumerate(fields), key=lambda item: item[1])
    if not ordered:
        return pl.lit(None, dtype=pl.Struct({}))
    return pl.struct([pl.col(f"{prefix}_{i}").cast(pl.String).alias(f) for i, f in ordered])


def _to_polars(table: Any) -> pl.DataFrame:
    """An Arrow result as polars; ``numeric`` columns (opaque text from the driver) as decimals."""
    for i, field in enumerate(table.schema):
        meta = field.metadata or {}
        if meta.get(b"POSTGRESQL:type") != b"numeric":
            continue
        import pyarrow as pa

        column = table.column(i)
        storage = pa.chunked_array(
            [chunk.storage if isinstance(chunk, pa.ExtensionArray) else chunk for chunk in column.chunks],
            type=pa.string(),
        )
        typmod = int(meta.get(b"POSTGRESQL:typmod", b"-1"))
        if typmod >= 4:  # (precision << 16 | scale) + 4
            precision, scale = (typmod - 4) >> 16, (typmod - 4) & 0xFFFF
            dtype = pa.decimal128(precision, scale)
            storage = storage.cast(dtype)
        table = table.set_column(i, pa.field(field.name, storage.type), storage)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _first_line(exc: BaseException) -> str:
    """The server's one-line error message (no query echo, position or hint)."""
    found = re.search(r"ERROR:\s+(.*?)\s*(?:\n|\. SQLSTATE:|$)", str(exc))
    return found.group(1).strip() if found else _driver_message(exc)


def _driver_message(exc: BaseException) -> str:
    """The server's message without the driver's status prefixes or the echoed query."""
    text = str(exc).split("Query was:")[0]
    text = re.sub(r"^[A-Z_]+: ", "", text.strip())
    text = re.sub(r"^(\[libpq\] |Failed to (prepare|execute) query: )+", "", text)
    return " ".join(text.split())
