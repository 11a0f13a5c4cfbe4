"""PostgreSQL-specific behaviour on a real server: connection errors, concurrent writers, hashing,
configuration. The shared conformance suite runs on PostgreSQL through ``STORE_FACTORIES``."""

import hashlib
import multiprocessing
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core import columns as C
from metaxy_core.stores._sql import lit
from metaxy_core.stores.postgres import PostgresDialect, PostgreSQLMetadataStore, mask_dsn
from tests import pg_server

NON_ASCII = [
    "",
    "plain",
    "café",
    "cafe\u0301",
    "日本語テキスト",
    "🙂👍🏽",
    "👩‍👩‍👧",
    "back\\slash 'quote'",
    "x" * 3000,
]


def define_doc() -> type[mx.BaseFeature]:
    class Doc(
        mx.BaseFeature,
        spec=mx.FeatureSpec(key="docs/page", id_columns=["doc_id"], fields=["text", "layout"]),
    ):
        doc_id: str
        n: int

    return Doc


def doc_rows(ids: list[str], version: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "doc_id": ids,
            "n": list(range(len(ids))),
            C.PROVENANCE_BY_FIELD: [{"text": f"{i}-{version}", "layout": version} for i in ids],
        }
    )


@pytest.fixture
def pg_store(postgres_dsn: str) -> PostgreSQLMetadataStore:
    return PostgreSQLMetadataStore(postgres_dsn, schema=pg_server.fresh_schema())


def _with_password(dsn: str, user: str, password: str) -> str:
    return dsn.replace("postgres@", f"{user}:{password}@", 1)


# -- connection errors --------------------------------------------------------------------------------
def test_unreachable_server_names_the_store_the_masked_dsn_and_the_fix() -> None:
    port = pg_server._free_port()  # nothing listens there
    store = PostgreSQLMetadataStore(f"postgresql://alice:s3cret@127.0.0.1:{port}/meta", connect_timeout=2)
    with pytest.raises(mx.StoreError) as info:
        store.list_features()
    message = str(info.value)
    assert "PostgreSQLMetadataStore cannot connect with dsn=" in message
    assert f"postgresql://alice:***@127.0.0.1:{port}/meta" in message
    assert "s3cret" not in message
    assert "Check the dsn setting" in message


def test_unknown_database_and_role_are_reported(postgres_dsn: str) -> None:
    with pytest.raises(mx.StoreError, match=r'database "no_such_db" does not exist.*Check the dsn setting'):
        PostgreSQLMetadataStore(postgres_dsn.rsplit("/", 1)[0] + "/no_such_db").list_features()
    with pytest.raises(mx.StoreError, match=r'role "nobody_here" does not exist'):
        PostgreSQLMetadataStore(postgres_dsn.replace("postgres@", "nobody_here@", 1)).list_features()


def test_wrong_password_is_reported_without_the_password(postgres_dsn: str) -> None:
    if not pg_server.is_local():
        pytest.skip("needs the local test server's password-only role")
    role = pg_server.PASSWORD_ROLE
    with PostgreSQLMetadataStore(postgres_dsn) as admin:
        admin._run(
            f"DO $$ BEGIN CREATE ROLE {role} LOGIN PASSWORD 'right-one'; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        admin.connection.commit()
    good = _with_password(postgres_dsn, role, "right-one")
    assert PostgreSQLMetadataStore(good).list_features() == []
    with pytest.raises(mx.StoreError) as info:
        PostgreSQLMetadataStore(_with_password(postgres_dsn, role, "wrong-one")).list_features()
    message = str(info.value)
    assert f'password authentication failed for user "{role}"' in message
    assert f"{role}:***@127.0.0.1" in message
    assert "wrong-one" not in message
    assert "Check the dsn setting" in message


def test_garbage_dsn() -> None:
    with pytest.raises(mx.StoreError, match=r"cannot connect with dsn='not a dsn'"):
        PostgreSQLMetadataStore("not a dsn").list_features()
    with pytest.raises(mx.StoreError, match="dsn is empty"):
        PostgreSQLMetadataStore("")


def test_mask_dsn() -> None:
    assert (
        mask_dsn("postgresql://u:p%40ss@h:5432/db?sslmode=require")
        == "postgresql://u:***@h:5432/db?sslmode=require"
    )
    assert mask_dsn("postgresql://h/db?user=u&password=pw") == "postgresql://h/db?user=u&password=***"
    assert mask_dsn("host=h password='a b' dbname=x") == "host=h password=*** dbname=x"
    assert mask_dsn("postgresql://u@h/db") == "postgresql://u@h/db"


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "adbc_driver_postgresql.dbapi", None)  # makes the import fail
    with pytest.raises(
        mx.StoreError, match=r'PostgreSQLMetadataStore.*pip install "metaxy-dagster\[postgres\]"'
    ):
        PostgreSQLMetadataStore("postgresql://u@127.0.0.1/db").list_features()


def test_importing_metaxy_core_loads_no_postgres_driver() -> None:
    code = "import sys, metaxy_core; print([m for m in sys.modules if m.startswith(('adbc', 'psycopg'))])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_read_only_role_fails_cleanly_and_writes_nothing(
    postgres_dsn: str, pg_store: PostgreSQLMetadataStore
) -> None:
    doc = define_doc()
    pg_store.write(doc, doc_rows(["a"], "1"))
    admin = PostgreSQLMetadataStore(postgres_dsn, schema=pg_store.schema)
    with admin:
        for sql in (
            "DO $$ BEGIN CREATE ROLE metaxy_reader LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
            f'GRANT USAGE ON SCHEMA "{pg_store.schema}", "{pg_store.history_schema}" TO metaxy_reader',
            f'GRANT SELECT ON ALL TABLES IN SCHEMA "{pg_store.schema}" TO metaxy_reader',
        ):
            admin._run(sql)
        admin.connection.commit()
    reader = PostgreSQLMetadataStore(
        postgres_dsn.replace("postgres@", "metaxy_reader@", 1), schema=pg_store.schema
    )
    assert reader.read(doc).to_polars()["doc_id"].to_list() == ["a"]
    # resolving needs no write access (samples go to a temporary table)
    counts = reader.resolve_update(doc, samples=doc_rows(["a", "b"], "1")).counts()
    assert counts == {"new": 1, "stale": 1, "orphaned": 0}
    with pytest.raises(mx.StoreError) as info:
        reader.write(doc, doc_rows(["a", "b"], "2"))
    message = str(info.value)
    assert "permission denied" in message
    assert "metaxy_reader@127.0.0.1" in message
    assert "nothing was written" in message
    stored = pg_store.read(doc, history=True).to_polars()
    assert stored["doc_id"].to_list() == ["a"]


def test_failed_write_leaves_nothing(
    pg_store: PostgreSQLMetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = define_doc()
    pg_store.write(doc, doc_rows(["a", "b"], "1"))
    real_run = PostgreSQLMetadataStore._run

    def failing_insert(self: PostgreSQLMetadataStore, sql: str, params: Any = None) -> Any:
        # fail after the superseded rows moved to history: the rollback must restore them
        if sql.startswith("INSERT INTO") and "WITH moved" not in sql:
            raise RuntimeError("disk on fire")
        return real_run(self, sql, params)

    monkeypatch.setattr(PostgreSQLMetadataStore, "_run", failing_insert)
    with pytest.raises(mx.StoreError, match="disk on fire"):
        pg_store.write(doc, doc_rows(["a", "b", "c"], "2"))
    monkeypatch.undo()
    frame = pg_store.read(doc, history=True).to_polars().sort("doc_id")
    assert frame["doc_id"].to_list() == ["a", "b"]
    assert frame[C.PROVENANCE_BY_FIELD].struct.field("layout").to_list() == ["1", "1"]


# -- hashing --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["sha256", "md5"])
def test_hash_matches_hashlib_on_non_ascii(pg_store: PostgreSQLMetadataStore, algorithm: str) -> None:
    length = 32
    dialect = PostgresDialect(algorithm, length)
    texts = [*NON_ASCII, "a|b"]
    with pg_store:
        row = pg_store._run("SELECT " + ", ".join(dialect.hash([dialect.part(lit(t))]) for t in texts))[0]
    for text, got in zip(texts, row, strict=True):
        want = hashlib.new(algorithm, text.encode()).hexdigest()[:length]
        assert got == want, text


def test_resolve_provenance_equals_duckdb_on_non_ascii(
    pg_store: PostgreSQLMetadataStore, tmp_path: Path
) -> None:
    doc = define_doc()
    ids = [f"id-{i}-{t[:5]}" for i, t in enumerate(NON_ASCII)]
    samples = pl.DataFrame(
        {
            "doc_id": ids,
            "n": list(range(len(ids))),
            C.PROVENANCE_BY_FIELD: [{"text": t, "layout": t[::-1]} for t in NON_ASCII],
        }
    )
    results = []
    for store in (pg_store, mx.DuckDBMetadataStore(tmp_path / "ref.duckdb")):
        new = store.resolve_update(doc, samples=samples).new.to_polars().sort("doc_id")
        store.write(doc, new)
        results.append(
            store.read(doc).to_polars().sort("doc_id").select("doc_id", C.PROVENANCE_BY_FIELD, C.PROVENANCE)
        )
    assert results[0].to_dicts() == results[1].to_dicts()


# -- concurrency ----------------------------------------------------------------------------------------
SHARED = [f"shared-{i}" for i in range(150)]


def _writer(dsn: str, schema: str, worker: int, rounds: int) -> None:
    with mx.FeatureGraph().use():
        doc = define_doc()
        store = PostgreSQLMetadataStore(dsn, schema=schema)
        own = [f"w{worker}-{i}" for i in range(50)]
        for r in range(rounds):
            # every round replaces the shared samples and adds new ones of this worker only
            store.write(doc, doc_rows([*SHARED, *(f"{o}-{r}" for o in own)], f"{worker}.{r}"))


def test_two_processes_writing_one_feature_lose_and_duplicate_nothing(
    postgres_dsn: str, pg_store: PostgreSQLMetadataStore
) -> None:
    rounds = 6
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(postgres_dsn, pg_store.schema, w, rounds)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    doc = define_doc()
    current = pg_store.read(doc).to_polars()
    own = {f"w{w}-{i}-{r}" for w in (1, 2) for i in range(50) for r in range(rounds)}
    assert current.height == len(SHARED) + len(own)
    assert current["doc_id"].n_unique() == current.height
    assert set(current["doc_id"]) == set(SHARED) | own
    # each shared sample was written 2 * rounds times: all but the last version are history
    everything = pg_store.read(doc, history=True).to_polars()
    assert everything.filter(pl.col("doc_id").is_in(SHARED)).height == len(SHARED) * 2 * rounds
    # the last writer's version of a shared sample is consistent across all shared samples of its write
    layouts = current.filter(pl.col("doc_id").is_in(SHARED))[C.PROVENANCE_BY_FIELD].struct.field("layout")
    assert layouts.n_unique() == 1


# -- configuration -------------------------------------------------------------------------------------
def test_store_from_metaxy_toml(postgres_dsn: str, tmp_path: Path) -> None:
    schema = pg_server.fresh_schema()
    (tmp_path / "metaxy.toml").write_text(
        f'store = "prod"\n\n[stores.prod]\ntype = "postgres"\nconfig = {{ dsn = "{postgres_dsn}", schema = "{schema}" }}\n'
    )
    store = mx.load_config(tmp_path / "metaxy.toml").get_store()
    assert isinstance(store, PostgreSQLMetadataStore)
    assert store.schema == schema
    doc = define_doc()
    assert store.write(doc, doc_rows(["a", "b"], "1")) == 2
    assert store.list_features() == [mx.FeatureKey("docs/page")]


def test_dagster_resource_builds_a_postgres_store(postgres_dsn: str) -> None:
    import metaxy_dagster as mxd  # not at module level: the writer processes above import this module

    schema = pg_server.fresh_schema()
    resource = mxd.MetaxyStoreResource(type="postgres", config={"dsn": postgres_dsn, "schema": schema})
    store = resource.get_store()
    assert isinstance(store, PostgreSQLMetadataStore)
    doc = define_doc()
    with resource.open() as opened:
        opened.write(doc, doc_rows(["a"], "1"))
        assert opened.read(doc).to_polars()["doc_id"].to_list() == ["a"]


def test_schemas_isolate_stores_in_one_database(postgres_dsn: str) -> None:
    doc = define_doc()
    one = PostgreSQLMetadataStore(postgres_dsn, schema=pg_server.fresh_schema())
    two = PostgreSQLMetadataStore(postgres_dsn, schema=pg_server.fresh_schema())
    one.write(doc, doc_rows(["a"], "1"))
    assert one.list_features() == [mx.FeatureKey("docs/page")]
    assert two.list_features() == []


# -- types ------------------------------------------------------------------------------------------------
def test_decimal_and_unsigned_columns_round_trip(pg_store: PostgreSQLMetadataStore) -> None:
    class Doc(
        mx.BaseFeature, spec=mx.FeatureSpec(key="docs/page", id_columns=["doc_id"], fields=["text", "layout"])
    ):
        pass  # no declared columns: any user columns are accepted

    doc = Doc
    rows = doc_rows(["a", "b"], "1").with_columns(
        pl.Series("price", [Decimal("1.50"), None], dtype=pl.Decimal(10, 2)),
        pl.Series("count", [1, 2**63 - 1], dtype=pl.UInt64),
    )
    pg_store.write(doc, rows)
    pg_store.write(doc, rows.with_columns(pl.col("doc_id").replace({"a": "c"})))  # fits the stored types
    frame = pg_store.read(doc).to_polars().sort("doc_id")
    assert frame.schema["price"] == pl.Decimal(10, 2)
    assert frame["doc_id"].to_list() == ["a", "b", "c"]
    assert frame["price"].to_list() == [Decimal("1.50"), None, Decimal("1.50")]
    assert frame["count"].to_list() == [1, 2**63 - 1, 1]


def test_unsigned_values_beyond_bigint_are_refused(pg_store: PostgreSQLMetadataStore) -> None:
    class Doc(
        mx.BaseFeature, spec=mx.FeatureSpec(key="docs/page", id_columns=["doc_id"], fields=["text", "layout"])
    ):
        pass

    too_big = doc_rows(["a", "b"], "1").with_columns(pl.Series("count", [1, 2**64 - 1], dtype=pl.UInt64))
    with pytest.raises(
        mx.MetadataValidationError, match=r"write\(docs/page\): column 'count' holds unsigned"
    ):
        pg_store.write(Doc, too_big)
    assert not pg_store.has_feature(Doc)
