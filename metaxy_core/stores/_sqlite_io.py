"""Moving polars frames in and out of SQLite: connections, column encoding and the schema registry.

SQLite stores five kinds of values, so each polars column gets a physical form:

* strings, integers, floats and binary as themselves;
* booleans, dates, datetimes, durations and times as their integer physical value;
* the by-field struct system columns as one text column per field (``<column>.<field>``), so adding
  a field is an ``ALTER TABLE ... ADD COLUMN`` and old rows read back with a null field;
* other nested user columns (lists, structs, arrays) as JSON text.

The exact polars schema of every table lives in a registry table (an empty frame in Arrow IPC
form), so reads return the types that were written.

Two connection kinds with the same interface: ADBC (``adbc-driver-sqlite``, Arrow in and out, the
fast path) and Python's ``sqlite3`` (always present, rows in and out). One store uses one of them:
two SQLite libraries in one process must not share a database file (their POSIX locks clash).
"""

import io
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from metaxy_core import columns as C
from metaxy_core.errors import StoreError
from metaxy_core.stores._sql import q

REGISTRY = "metaxy.tables"
_NESTED = (pl.List, pl.Struct, pl.Array)


# -- column encoding --------------------------------------------------------------------------------
def physical_dtype(dtype: pl.DataType) -> pl.DataType:
    if dtype == pl.String or dtype == pl.Binary or dtype.is_float() or dtype.is_integer():
        return dtype
    if isinstance(dtype, pl.Boolean | pl.Date | pl.Datetime | pl.Duration | pl.Time):
        return pl.Int64()
    return pl.String()


def affinity(dtype: pl.DataType) -> str:
    if dtype.is_integer():
        return "INTEGER"
    if dtype.is_float():
        return "REAL"
    if dtype == pl.Binary:
        return "BLOB"
    return "TEXT"


def is_struct_column(name: str, dtype: pl.DataType) -> bool:
    return name in C.STRUCT_COLUMNS and isinstance(dtype, pl.Struct)


def struct_column(column: str, field: str) -> str:
    return f"{column}.{field}"


def physical_columns(schema: Mapping[str, pl.DataType]) -> dict[str, pl.DataType]:
    """Physical column name -> physical dtype, in table order."""
    out: dict[str, pl.DataType] = {}
    for name, dtype in schema.items():
        if is_struct_column(name, dtype):
            for f in dtype.fields:  # type: ignore[attr-defined]
                out[struct_column(name, f.name)] = pl.String()
        else:
            out[name] = physical_dtype(dtype)
    return out


def encode(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` in its physical form (see the module docstring)."""
    exprs: list[pl.Expr] = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if is_struct_column(name, dtype):
            exprs += [
                col.struct.field(f.name).cast(pl.String).alias(struct_column(name, f.name))
                for f in dtype.fields  # type: ignore[attr-defined]
            ]
        elif isinstance(dtype, _NESTED):
            exprs.append(pl.struct(col).struct.json_encode().alias(name))
        elif physical_dtype(dtype) == pl.Int64 and dtype != pl.Int64:
            exprs.append(col.to_physical().cast(pl.Int64))
        elif physical_dtype(dtype) != dtype:
            # decimals, categoricals, enums: their text form reads back exactly
            exprs.append(col.cast(pl.String))
        else:
            exprs.append(col)
    return frame.select(exprs)


def decode(frame: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """Physical columns back to the logical ``schema`` (only the columns in ``schema``)."""
    exprs: list[pl.Expr] = []
    for name, dtype in schema.items():
        if is_struct_column(name, dtype):
            fields = [f.name for f in dtype.fields]  # type: ignore[attr-defined]
            exprs.append(
                pl.struct([pl.col(struct_column(name, f)).cast(pl.String).alias(f) for f in fields]).alias(
                    name
                )
            )
        elif isinstance(dtype, _NESTED):
            exprs.append(
                pl.col(name).cast(pl.String).str.json_decode(pl.Struct({name: dtype})).struct.field(name)
            )
        elif dtype == pl.Null:
            exprs.append(pl.lit(None).alias(name))
        elif isinstance(dtype, pl.Boolean):
            exprs.append(pl.col(name).cast(pl.Int64).cast(pl.Boolean))
        elif physical_dtype(dtype) == pl.Int64 and dtype != pl.Int64:
            exprs.append(pl.col(name).cast(pl.Int64).cast(dtype))
        else:
            exprs.append(pl.col(name).cast(dtype))
    return frame.select(exprs)


def schema_blob(schema: Mapping[str, pl.DataType]) -> bytes:
    buf = io.BytesIO()
    pl.DataFrame(schema=dict(schema)).write_ipc(buf)
    return buf.getvalue()


def schema_from_blob(blob: bytes) -> dict[str, pl.DataType]:
    return dict(pl.read_ipc(io.BytesIO(blob)).schema)


def merge_schemas(
    stored: Mapping[str, pl.DataType] | None, incoming: Mapping[str, pl.DataType]
) -> dict[str, pl.DataType]:
    """Stored columns first, then new ones; struct system columns get the sorted union of fields."""
    merged = dict(stored or {})
    for name, dtype in incoming.items():
        have = merged.get(name)
        if have is None:
            merged[name] = dtype
        elif is_struct_column(name, have) and is_struct_column(name, dtype):
            fields = sorted({f.name for f in have.fields} | {f.name for f in dtype.fields})  # type: ignore[attr-defined]
            merged[name] = pl.Struct({f: pl.String for f in fields})
        elif have != dtype:
            # Feature tables arrive already coerced to their stored types; system tables widen to
            # the common type (e.g. a column first seen all-null, or ints then floats).
            both = pl.concat(
                [pl.DataFrame(schema={name: have}), pl.DataFrame(schema={name: dtype})],
                how="vertical_relaxed",
            )
            merged[name] = both.schema[name]
    return merged


# -- connections -----------------------------------------------------------------------------------
def adbc_available() -> bool:
    try:
        import adbc_driver_sqlite.dbapi  # noqa: F401
    except ImportError:
        return False
    return True


class Connection:
    """One SQLite connection in autocommit mode; transactions are explicit ``BEGIN`` statements."""

    driver = "abstract"

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def frame(self, sql: str, schema: Mapping[str, pl.DataType], params: Sequence[Any] = ()) -> pl.DataFrame:
        """Result of ``sql`` (its columns named and typed as ``schema``, physical dtypes)."""
        raise NotImplementedError

    def ingest(self, frame: pl.DataFrame) -> str:
        """Copy ``frame`` (physical form) into a new temporary table; returns its (unquoted) name."""
        raise NotImplementedError

    def append(self, table: str, frame: pl.DataFrame) -> None:
        """Insert ``frame`` (physical form) into the existing ``table``, matching columns by name."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def setup(self, busy_timeout: float) -> None:
        self.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = self.execute("PRAGMA journal_mode = WAL")
        # WAL lets readers see the last commit while one writer works; synchronous=NORMAL is
        # durable against process crashes in WAL mode (an OS crash can lose the last commits).
        if mode and str(mode[0][0]).lower() == "wal":
            self.execute("PRAGMA synchronous = NORMAL")

    @staticmethod
    def _temp_name() -> str:
        return f"__metaxy_tmp_{uuid.uuid4().hex[:12]}"


class AdbcConnection(Connection):
    driver = "adbc"

    def __init__(self, database: str) -> None:
        import adbc_driver_sqlite.dbapi as adbc

        self._con = adbc.connect(database, autocommit=True)
        self._cur = self._con.cursor()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cur.execute(sql, list(params) if params else None)
        return self._cur.fetchall() if self._cur.description else []

    def frame(self, sql: str, schema: Mapping[str, pl.DataType], params: Sequence[Any] = ()) -> pl.DataFrame:
        if not schema:
            return pl.DataFrame()
        # ADBC infers each column's Arrow type from the first rows it sees (all-NULL -> int64, then a
        # text value fails). A typed first row fixes every type; it is dropped after reading.
        sample = {"INTEGER": "0", "REAL": "0.0", "BLOB": "x''", "TEXT": "''"}
        first = ", ".join(f"{sample[affinity(d)]} AS {q(n)}" for n, d in schema.items())
        self._cur.execute(
            f"SELECT {first} UNION ALL SELECT {_cast_columns(schema)} FROM ({sql}) AS r",
            list(params) if params else None,
        )
        table = self._cur.fetch_arrow_table()
        out = pl.from_arrow(table)
        assert isinstance(out, pl.DataFrame)
        return out.slice(1).select([pl.col(n).cast(d) for n, d in schema.items()])

    def ingest(self, frame: pl.DataFrame) -> str:
        name = self._temp_name()
        self._cur.adbc_ingest(name, _arrow(frame), mode="create", temporary=True)
        return name

    def append(self, table: str, frame: pl.DataFrame) -> None:
        self._cur.adbc_ingest(table, _arrow(frame), mode="append")

    def close(self) -> None:
        self._cur.close()
        self._con.close()


class Sqlite3Connection(Connection):
    driver = "sqlite3"

    def __init__(self, database: str) -> None:
        # isolation_level=None: no implicit transactions; the store issues BEGIN IMMEDIATE itself.
        self._con = sqlite3.connect(database, isolation_level=None, check_same_thread=False)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._con.execute(sql, tuple(params)).fetchall()

    def frame(self, sql: str, schema: Mapping[str, pl.DataType], params: Sequence[Any] = ()) -> pl.DataFrame:
        rows = self._con.execute(
            f"SELECT {_cast_columns(schema)} FROM ({sql}) AS r", tuple(params)
        ).fetchall()
        return pl.DataFrame(rows, schema=dict(schema), orient="row")

    def ingest(self, frame: pl.DataFrame) -> str:
        name = self._temp_name()
        cols = ", ".join(f"{q(n)} {affinity(d)}" for n, d in frame.schema.items())
        self._con.execute(f"CREATE TEMP TABLE {q(name)} ({cols})")
        marks = ", ".join("?" for _ in frame.columns)
        self._con.executemany(f"INSERT INTO temp.{q(name)} VALUES ({marks})", frame.iter_rows())
        return name

    def append(self, table: str, frame: pl.DataFrame) -> None:
        cols = ", ".join(q(c) for c in frame.columns)
        marks = ", ".join("?" for _ in frame.columns)
        self._con.executemany(f"INSERT INTO {q(table)} ({cols}) VALUES ({marks})", frame.iter_rows())

    def close(self) -> None:
        self._con.close()


def _cast_columns(schema: Mapping[str, pl.DataType]) -> str:
    # A column holds values of one storage class only if every writer agreed on the type; the cast
    # makes reads independent of that (a widened system column may hold integers and reals).
    return ", ".join(f"CAST({q(n)} AS {affinity(d)}) AS {q(n)}" for n, d in schema.items())


def _arrow(frame: pl.DataFrame) -> Any:
    # plain (large) strings: the driver does not take Arrow's string views
    return frame.to_arrow(compat_level=pl.CompatLevel.oldest())


def connect(database: str, driver: str, busy_timeout: float) -> Connection:
    if driver not in ("auto", "adbc", "sqlite3"):
        raise StoreError(f"driver={driver!r}: use 'auto' (ADBC when installed), 'adbc' or 'sqlite3'.")
    if driver == "adbc" and not adbc_available():
        raise StoreError(
            "driver='adbc' needs the ADBC SQLite driver: pip install 'metaxy-dagster[sqlite]' "
            "(or adbc-driver-sqlite), or use driver='sqlite3'."
        )
    use_adbc = driver == "adbc" or (driver == "auto" and adbc_available())
    con: Connection = AdbcConnection(database) if use_adbc else Sqlite3Connection(database)
    try:
        con.setup(busy_timeout)
    except Exception:
        con.close()
        raise
    return con
