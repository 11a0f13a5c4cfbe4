"""``MetaxyStoreResource``: a metaxy metadata store as a Dagster resource.

The store can come from three places, checked in this order:

1. ``duckdb=DuckDBResource(...)``: the dagster-duckdb resource's database file and connection config;
2. ``type=`` + ``config=``: any store type metaxy knows (``duckdb``, ``memory``, ``sqlite``, ``postgres``,
   ``clickhouse`` or ``module:Class``) and its constructor arguments;
3. ``store=``: a store named in the metaxy config (``metaxy.toml`` / ``[tool.metaxy]``, overridable with
   ``METAXY_STORES__<NAME>__CONFIG__...``); with nothing set, the config's default store.

The resource builds the store lazily, once per process. It never keeps a connection open: code opens
it with ``with resource.open() as store:`` for as short as possible, because a DuckDB file can be held
by one process at a time and Dagster's multiprocess executor runs steps in parallel processes.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field, PrivateAttr

import metaxy_core as mx
from metaxy_core.config import StoreConfig
from metaxy_core.stores.base import MetadataStore
from metaxy_dagster.errors import MetaxyDefinitionError

_INLINE_STORE = "__dagster_resource__"


class MetaxyStoreResource(dg.ConfigurableResource):
    """A metaxy metadata store, configured in Dagster.

    Examples:
        >>> from metaxy_dagster import MetaxyStoreResource
        >>> type(MetaxyStoreResource(type="memory").get_store()).__name__
        'InMemoryMetadataStore'

        A DuckDB file through dagster-duckdb's resource::

            MetaxyStoreResource(duckdb=DuckDBResource(database="meta.duckdb"))

        The store called ``dev`` in ``metaxy.toml``::

            MetaxyStoreResource(store="dev")
    """

    store: str | None = Field(
        default=None,
        description=(
            "Name of a store in the metaxy config (e.g. 'dev'). Used when neither `type` nor `duckdb` is "
            "set; None means the config's default store."
        ),
    )
    config_file: str | None = Field(
        default=None,
        description=(
            "Path of the metaxy config file (metaxy.toml or pyproject.toml). None: the current config "
            "(mx.init() / mx.get_config(), found by searching up from the working directory)."
        ),
    )
    type: str | None = Field(
        default=None,
        description=(
            "Store type for an inline store: 'duckdb', 'memory', 'sqlite', 'postgres', 'clickhouse' or "
            "'module:Class'. Its constructor arguments go in `config`."
        ),
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Constructor keyword arguments of the inline store, e.g. {'database': 'meta.duckdb'}.",
    )
    duckdb: DuckDBResource | None = Field(
        default=None,
        description=(
            "A dagster-duckdb DuckDBResource: the metadata goes to its database file, opened with its "
            "connection_config."
        ),
    )
    hash_length: int | None = Field(
        default=None,
        description="Override the sample hash length (8..64). None: the metaxy config's hash_length.",
    )
    lock_timeout: float = Field(
        default=120.0,
        description=(
            "DuckDB only: seconds to keep retrying while another process holds the database file "
            "(parallel steps of one run share it)."
        ),
    )

    _store: MetadataStore | None = PrivateAttr(default=None)

    def _metaxy_config(self) -> mx.MetaxyConfig:
        return mx.load_config(self.config_file) if self.config_file else mx.get_config()

    def _build(self) -> MetadataStore:
        if self.duckdb is not None and self.type is not None:
            raise MetaxyDefinitionError(
                "MetaxyStoreResource: set either `duckdb` (a DuckDBResource) or `type`/`config`, not both."
            )
        cfg = self._metaxy_config()
        if self.duckdb is not None:
            database = self.duckdb.database
            kwargs: dict[str, Any] = {"database": database, "lock_timeout": self.lock_timeout}
            if self.duckdb.connection_config:
                kwargs["config"] = dict(self.duckdb.connection_config)
            store: MetadataStore = mx.DuckDBMetadataStore(**kwargs)
            store.hash_length = cfg.hash_length
        elif self.type is not None:
            config = dict(self.config)
            if self.type == "duckdb":
                config.setdefault("lock_timeout", self.lock_timeout)
            # Reuse the config machinery so types, relative paths and errors match `metaxy.toml`.
            inline = cfg.model_copy(
                update={"stores": {_INLINE_STORE: StoreConfig(type=self.type, config=config)}}
            )
            store = inline.get_store(_INLINE_STORE)
        else:
            if self.config:
                raise MetaxyDefinitionError(
                    "MetaxyStoreResource: `config` is set but `type` is not. Set type='duckdb' (or another "
                    "store type), or configure the store in the metaxy config and pass store='<name>'."
                )
            store = cfg.get_store(self.store)
            if getattr(store, "kind", None) == "duckdb" and hasattr(store, "lock_timeout"):
                store.lock_timeout = max(store.lock_timeout, self.lock_timeout)
        if self.hash_length is not None:
            store.hash_length = self.hash_length
        return store

    def get_store(self) -> MetadataStore:
        """The store (built on first use, then reused in this process). Open it with ``with store:``."""
        if self._store is None:
            self._store = self._build()
        return self._store

    @contextmanager
    def open(self) -> Iterator[MetadataStore]:
        """``with resource.open() as store:``: the store, open for the block and closed after it."""
        store = self.get_store()
        with store:
            yield store

    def describe(self) -> str:
        """Human-readable location of the store, for logs and metadata."""
        store = self.get_store()
        database = getattr(store, "database", None)
        if database is not None:
            return (
                f"{type(store).__name__}({Path(str(database)).name if database != ':memory:' else database})"
            )
        return type(store).__name__
