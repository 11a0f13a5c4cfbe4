"""MetaxyStoreResource: stores from the metaxy config, inline type/config, or dagster-duckdb's resource."""

from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_duckdb import DuckDBResource

import metaxy_core as mx
import metaxy_dagster as mxd
from tests.dagster.pipeline import Samples, build_assets, counts, define_features, materialization_metadata

CONFIG = """
project = "video"
store = "dev"

[stores.dev]
type = "duckdb"
config = { database = "data/meta.duckdb" }

[stores.scratch]
type = "memory"
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "metaxy.toml"
    path.write_text(CONFIG)
    return path


def test_named_store_from_the_metaxy_config(config_file: Path) -> None:
    store = mxd.MetaxyStoreResource(store="dev", config_file=str(config_file)).get_store()
    assert isinstance(store, mx.DuckDBMetadataStore)
    assert store.database == str(config_file.parent / "data" / "meta.duckdb")
    default = mxd.MetaxyStoreResource(config_file=str(config_file)).get_store()
    assert isinstance(default, mx.DuckDBMetadataStore)
    memory = mxd.MetaxyStoreResource(store="scratch", config_file=str(config_file)).get_store()
    assert isinstance(memory, mx.InMemoryMetadataStore)


def test_env_var_overrides_the_configured_database(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere" / "meta.duckdb"
    monkeypatch.setenv("METAXY_STORES__DEV__CONFIG__DATABASE", str(elsewhere))
    store = mxd.MetaxyStoreResource(store="dev", config_file=str(config_file)).get_store()
    assert store.database == str(elsewhere)


def test_current_config_is_used_without_a_config_file(config_file: Path) -> None:
    mx.set_config(mx.load_config(config_file))
    store = mxd.MetaxyStoreResource(store="dev").get_store()
    assert store.database == str(config_file.parent / "data" / "meta.duckdb")


def test_unknown_store_name_names_the_file_and_the_choices(config_file: Path) -> None:
    with pytest.raises(
        mx.ConfigError, match=r"No store named 'prod' in .*metaxy.toml\. Configured stores: dev, scratch"
    ):
        mxd.MetaxyStoreResource(store="prod", config_file=str(config_file)).get_store()


def test_inline_type_and_config(tmp_path: Path) -> None:
    store = mxd.MetaxyStoreResource(
        type="duckdb", config={"database": str(tmp_path / "x.duckdb")}, lock_timeout=5
    ).get_store()
    assert isinstance(store, mx.DuckDBMetadataStore)
    assert store.database == str(tmp_path / "x.duckdb")
    assert store.lock_timeout == 5
    assert isinstance(mxd.MetaxyStoreResource(type="memory").get_store(), mx.InMemoryMetadataStore)
    with pytest.raises(mx.ConfigError, match="unknown store type 'nosuch'"):
        mxd.MetaxyStoreResource(type="nosuch").get_store()


def test_invalid_combinations_are_explained(tmp_path: Path) -> None:
    with pytest.raises(
        mxd.MetaxyDefinitionError, match=r"set either `duckdb` .* or `type`/`config`, not both"
    ):
        mxd.MetaxyStoreResource(
            type="duckdb", duckdb=DuckDBResource(database=str(tmp_path / "a.duckdb"))
        ).get_store()
    with pytest.raises(mxd.MetaxyDefinitionError, match="`config` is set but `type` is not"):
        mxd.MetaxyStoreResource(config={"database": "x.duckdb"}).get_store()


def test_hash_length_override(tmp_path: Path) -> None:
    store = mxd.MetaxyStoreResource(type="memory", hash_length=32).get_store()
    assert store.hash_length == 32


def test_materialize_through_a_dagster_duckdb_resource(
    tmp_path: Path, samples: Samples, instance: dg.DagsterInstance
) -> None:
    database = str(tmp_path / "via_dagster_duckdb.duckdb")
    store = mxd.MetaxyStoreResource(duckdb=DuckDBResource(database=database))
    resources: dict[str, Any] = {"metaxy_store": store, "metaxy_io_manager": mxd.MetaxyIOManager(store=store)}
    f = define_features()
    raw, _, _, stt = build_assets(f, samples)
    meta = materialization_metadata(dg.materialize([raw, stt], instance=instance, resources=resources))
    assert counts(meta) == {"video/raw": (2, 0, 0, 2), "video/stt": (2, 0, 0, 2)}
    # The same file is readable through dagster-duckdb's own connection.
    with DuckDBResource(database=database).get_connection() as con:
        assert con.execute("SELECT count(*) FROM video__stt").fetchall() == [(2,)]


def test_resource_fields_are_documented() -> None:
    fields = mxd.MetaxyStoreResource.model_fields
    assert all(info.description for info in fields.values()), [
        n for n, i in fields.items() if not i.description
    ]
