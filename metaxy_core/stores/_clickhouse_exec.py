"""How the ClickHouse store talks to its engine: a server (clickhouse-connect) or chDB in-process.

Both executors run the same SQL; they differ only in how statements are sent and how Arrow data
goes in and out. Drivers are imported when a store opens, never when metaxy is imported.
"""

import abc
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa

from metaxy_core.errors import StoreError

INSTALL_HINT = 'pip install "metaxy-dagster[clickhouse]"'
STORE_NAME = "ClickHouseMetadataStore"
SERVER_OPTIONS = ("connect_timeout", "send_receive_timeout")


@dataclass(frozen=True)
class Dsn:
    """A parsed ``clickhouse://`` or ``chdb://`` address."""

    scheme: str
    database: str
    path: str = ""
    host: str = ""
    port: int | None = None
    username: str = ""
    password: str = field(default="", repr=False)
    secure: bool = False
    options: dict[str, str] = field(default_factory=dict)

    @property
    def embedded(self) -> bool:
        return self.scheme == "chdb"


def mask_dsn(dsn: str) -> str:
    """The DSN with its password replaced by ``***`` (for error messages and reprs)."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparseable dsn>"
    if parts.password is None:
        return dsn
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()


def parse_dsn(dsn: str) -> Dsn:
    """``clickhouse://user:pw@host:8123/db`` (``clickhouses://`` for TLS) or ``chdb:///abs/path?database=db``."""

    def bad(why: str) -> StoreError:
        return StoreError(
            f"{STORE_NAME}: invalid dsn {mask_dsn(dsn)!r}: {why}. Use 'clickhouse://user:password@host:8123/database' "
            "for a server or 'chdb:///absolute/path?database=name' for embedded chDB."
        )

    try:
        parts = urlsplit(dsn)
        port = parts.port
    except ValueError as exc:
        raise bad(str(exc)) from None
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "chdb":
        if parts.netloc:
            raise bad("chDB needs an absolute path with three slashes ('chdb:///abs/path')")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise bad("the chDB path must be absolute")
        database = options.pop("database", "default")
        _check_database(database, bad)
        if options:
            raise bad(f"unknown option(s) {sorted(options)}; a chDB dsn takes only ?database=")
        return Dsn("chdb", database=database, path=path.rstrip("/") or "/", options=options)
    if parts.scheme in ("clickhouse", "clickhouses"):
        if not parts.hostname:
            raise bad("no host")
        database = unquote(parts.path.lstrip("/")) or options.pop("database", "default")
        _check_database(database, bad)
        unknown = sorted(set(options) - set(SERVER_OPTIONS))
        if unknown:
            raise bad(f"unknown option(s) {unknown}; a server dsn takes {', '.join(SERVER_OPTIONS)}")
        return Dsn(
            "clickhouse",
            database=database,
            host=parts.hostname,
            port=port,
            username=unquote(parts.username or "default"),
            password=unquote(parts.password or ""),
            secure=parts.scheme == "clickhouses",
            options=options,
        )
    raise bad(f"unknown scheme {parts.scheme!r}")


def _check_database(name: str, bad: Any) -> None:
    if not name or "/" in name or "\x00" in name:
        raise bad(f"database name {name!r} is not usable")


class Executor(abc.ABC):
    """Runs statements; moves Arrow tables in and out."""

    first_user: bool = False
    """True when no other connection in this process had the engine open (chDB: recovery is safe)."""

    @abc.abstractmethod
    def command(self, sql: str) -> None: ...

    @abc.abstractmethod
    def arrow(self, sql: str) -> pa.Table: ...

    @abc.abstractmethod
    def insert(self, table: str, data: pa.Table) -> None:
        """Append ``data`` to ``table`` (a quoted, database-qualified name), columns matched by name."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        table = self.arrow(sql)
        return list(zip(*(c.to_pylist() for c in table.columns), strict=True)) if table.num_columns else []


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- chDB ------------------------------------------------------------------------------------------
class _ChdbEngine:
    """The process-wide chDB engine: bound to one path until every connection to it is closed."""

    lock = threading.Lock()
    path: str | None = None
    users = 0
    recovered = False


class ChdbExecutor(Executor):
    def __init__(self, dsn: Dsn, settings: dict[str, Any], lock_timeout: float) -> None:
        try:
            import chdb
        except ImportError as exc:
            raise StoreError(
                f"{STORE_NAME}: a chdb:// dsn needs the chdb package, which is not installed. Install it with "
                f"{INSTALL_HINT}."
            ) from exc
        self.path = dsn.path
        with _ChdbEngine.lock:
            if _ChdbEngine.path is not None and _ChdbEngine.path != dsn.path:
                raise StoreError(
                    f"{STORE_NAME}: chDB runs one embedded ClickHouse per process, and this process already has "
                    f"'{_ChdbEngine.path}' open; it cannot also open '{dsn.path}'. Use one chDB path per process "
                    "(separate stores can share it with ?database=<name>), close the other store first, or use a "
                    "ClickHouse server (clickhouse://...)."
                )
            self._conn = _connect_chdb(chdb, dsn.path, lock_timeout)
            self.first_user = _ChdbEngine.users == 0 and not _ChdbEngine.recovered
            _ChdbEngine.path = dsn.path
            _ChdbEngine.users += 1
            _ChdbEngine.recovered = True
        self._closed = False
        try:
            for name, value in settings.items():
                self._conn.query(f"SET {name} = {_setting(value)}")
        except Exception:
            self.close()
            raise

    def command(self, sql: str) -> None:
        self._conn.query(sql)

    def arrow(self, sql: str) -> pa.Table:
        return self._conn.query(sql, "ArrowTable")

    def insert(self, table: str, data: pa.Table) -> None:
        # chDB's Python() table function reads a variable of the calling frame by name.
        metaxy_insert_rows = data  # noqa: F841
        cols = ", ".join(_quote(n) for n in data.column_names)
        self._conn.query(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM Python(metaxy_insert_rows)")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with _ChdbEngine.lock:
            self._conn.close()
            _ChdbEngine.users -= 1
            if _ChdbEngine.users == 0:
                _ChdbEngine.path = None
                _ChdbEngine.recovered = False


def _connect_chdb(chdb: Any, path: str, lock_timeout: float) -> Any:
    """Open ``path``, waiting while another process has it open (one process per path at a time)."""
    deadline = time.monotonic() + lock_timeout
    delay = 0.05
    while True:
        try:
            return chdb.connect(path)
        except Exception as exc:
            message = str(exc)
            if "already initialized with path" in message:
                raise StoreError(
                    f"{STORE_NAME}: chDB runs one embedded ClickHouse per process and something else in this "
                    f"process already opened another path, so '{path}' cannot be opened. Close it first or use "
                    "the same path."
                ) from None
            # chDB reports a path locked by another process only as a failed engine start
            if "Error initializing EmbeddedServer" not in message:
                raise StoreError(f"{STORE_NAME}: cannot open chDB path '{path}': {message}") from exc
            if time.monotonic() > deadline:
                raise StoreError(
                    f"{STORE_NAME}: cannot open chDB path '{path}': another process has it open (chDB lets one "
                    "process use a path at a time). Close it there, raise lock_timeout, or use a ClickHouse "
                    "server (clickhouse://...)."
                ) from None
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.5)


# -- ClickHouse server -----------------------------------------------------------------------------
class ServerExecutor(Executor):
    def __init__(self, dsn: Dsn, settings: dict[str, Any], raw_dsn: str) -> None:
        try:
            import clickhouse_connect
        except ImportError as exc:
            raise StoreError(
                f"{STORE_NAME}: a clickhouse:// dsn needs the clickhouse-connect package, which is not installed. "
                f"Install it with {INSTALL_HINT}."
            ) from exc
        self.first_user = True
        try:
            self._client = clickhouse_connect.get_client(
                host=dsn.host,
                port=dsn.port or (8443 if dsn.secure else 8123),
                username=dsn.username,
                password=dsn.password,
                secure=dsn.secure,
                settings=dict(settings),
                **{k: float(v) for k, v in dsn.options.items()},
            )
        except Exception as exc:
            raise StoreError(
                f"{STORE_NAME}: cannot connect to ClickHouse at {mask_dsn(raw_dsn)}: {type(exc).__name__}: "
                f"{_mask(str(exc), dsn.password)}. Check the host, port and credentials, and that the server runs."
            ) from None

    def command(self, sql: str) -> None:
        self._client.command(sql)

    def arrow(self, sql: str) -> pa.Table:
        return self._client.query_arrow(sql, use_strings=True)

    def insert(self, table: str, data: pa.Table) -> None:
        # a database-qualified name is passed through as written; columns are matched by Arrow names
        self._client.insert_arrow(table, data)

    def close(self) -> None:
        self._client.close()


def _mask(text: str, password: str) -> str:
    return text.replace(password, "***") if password else text


def _setting(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def connect(dsn: str, settings: dict[str, Any], lock_timeout: float) -> Executor:
    parsed = parse_dsn(dsn)
    if parsed.embedded:
        return ChdbExecutor(parsed, settings, lock_timeout)
    return ServerExecutor(parsed, settings, dsn)
