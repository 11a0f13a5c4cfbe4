"""Store interface conformance: write, read, history, delete, validation, lazy frames."""

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import narwhals as nw
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import metaxy_core as mx
from metaxy_core import columns as C


@pytest.fixture
def doc(graph: mx.FeatureGraph) -> type[mx.BaseFeature]:
    class Doc(
        mx.BaseFeature,
        spec=mx.FeatureSpec(key="docs/page", id_columns=["doc_id"], fields=["text", "layout"]),
    ):
        doc_id: str
        n_pages: int
        title: str

    return Doc


def doc_rows(ids: tuple[str, ...] = ("a", "b", "c"), version: str = "1") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "doc_id": list(ids),
            "n_pages": [i + 1 for i in range(len(ids))],
            "title": [f"title {i}" for i in ids],
            C.PROVENANCE_BY_FIELD: [{"text": f"t-{i}-{version}", "layout": f"l-{i}-{version}"} for i in ids],
        }
    )


def write_docs(store: mx.MetadataStore, doc: type[mx.BaseFeature], rows: pl.DataFrame) -> int:
    inc = store.resolve_update(doc, samples=rows)
    return store.write(doc, inc.to_process())


def current(store: mx.MetadataStore, doc: type[mx.BaseFeature], **kwargs: Any) -> pl.DataFrame:
    return store.read(doc, **kwargs).to_polars().sort("doc_id")


# -- accepted frame types ---------------------------------------------------------------------------
FRAME_CONVERTERS: dict[str, Callable[[pl.DataFrame], Any]] = {
    "polars": lambda df: df,
    "polars-lazy": lambda df: df.lazy(),
    "pandas": lambda df: df.to_pandas(),
    "pyarrow": lambda df: df.to_arrow(),
    "duckdb-relation": lambda df: duckdb.connect().from_arrow(df.to_arrow()),
    "narwhals": lambda df: nw.from_native(df),
}


@pytest.mark.parametrize("kind", sorted(FRAME_CONVERTERS))
def test_write_accepts_frame_types(store: mx.MetadataStore, doc: type[mx.BaseFeature], kind: str) -> None:
    rows = store.resolve_update(doc, samples=doc_rows()).new.to_polars()
    native = FRAME_CONVERTERS[kind](rows)
    if kind == "pandas":
        assert isinstance(native, pd.DataFrame)
    if kind == "pyarrow":
        assert isinstance(native, pa.Table)
    assert store.write(doc, native) == 3
    stored = current(store, doc)
    written = rows.drop(C.CHANGED_FIELDS).sort("doc_id")
    assert stored.select(written.columns).equals(written)
    assert store.resolve_update(doc, samples=doc_rows()).counts() == {"new": 0, "stale": 0, "orphaned": 0}


def test_stored_columns_and_stamps(store: mx.MetadataStore, doc: type[mx.BaseFeature]) -> None:
    write_docs(store, doc, doc_rows())
    stored = current(store, doc)
    assert stored.columns == ["doc_id", "n_pages", "title", *C.SYSTEM_COLUMNS]
    row = stored.row(0, named=True)
    assert row[C.FEATURE_VERSION] == doc.feature_version()
    assert row[C.SNAPSHOT_VERSION] == doc.graph.snapshot_version
    assert row[C.DATA_VERSION_BY_FIELD] == row[C.PROVENANCE_BY_FIELD]
    assert row[C.DATA_VERSION] == row[C.PROVENANCE]
    assert row[C.DELETED_AT] is None
    assert row[C.CREATED_AT] == row[C.UPDATED_AT]
    assert str(row[C.CREATED_AT].tzinfo) == "UTC"
    assert len(set(stored[C.MATERIALIZATION_ID])) == 1


def test_materialization_id_is_stored(store: mx.MetadataStore, doc: type[mx.BaseFeature]) -> None:
    rows = store.resolve_update(doc, samples=doc_rows()).new
    store.write(doc, rows, materialization_id="run-42")
    assert set(current(store, doc)[C.MATERIALIZATION_ID]) == {"run-42"}


def test_write_computes_missing_provenance_from_struct(
    store: mx.MetadataStore, doc: type[mx.BaseFeature]
) -> None:
    rows = store.resolve_update(doc, samples=doc_rows()).new.to_polars()
    store.write(doc, rows.drop(C.PROVENANCE))
    assert current(store, doc)[C.PROVENANCE].to_list() == rows.sort("doc_id")[C.PROVENANCE].to_list()


# -- replace and history ----------------------------------------------------------------------------
def test_write_replaces_rows_and_keeps_history(store: mx.MetadataStore, doc: type[mx.BaseFeature]) -> None:
    write_docs(store, doc, doc_rows())
    before = current(store, doc)
    changed = doc_rows(("a", "b", "c")).with_columns(
        pl.when(pl.col("doc_id") == "b")
        .then(pl.lit({"text": "t-b-2", "layout": "l-b-2"}))
        .otherwise(pl.col(C.PROVENANCE_BY_FIELD))
        .alias(C.PROVENANCE_BY_FIELD),
        pl.when(pl.col("doc_id") == "b").then(pl.lit("new title")).otherwise(pl.col("title")).alias("title"),
    )
    assert write_docs(store, doc, changed) == 1

    after = current(store, doc)
    assert after["doc_id"].to_list() == ["a", "b", "c"]  # one row per sample
    assert after.filter(pl.col("doc_id") == "b")["title"].item() == "new title"
    assert after.filter(pl.col("doc_id") != "b").equals(before.filter(pl.col("doc_id") != "b"))

    history = store.read(doc, history=True).to_polars()
    assert history.height == 4
    b_versions = history.filter(pl.col("doc_id") == "b").sort(C.UPDATED_AT)
    assert b_versions["title"].to_list() == ["title b", "new title"]
    assert b_versions[C.PROVENANCE].to_list() == [
        before.filter(pl.col("doc_id") == "b")[C.PROVENANCE].item(),
        after.filter(pl.col("doc_id") == "b")[C.PROVENANCE].item(),
    ]


def test_timestamps_per_row_version(store: mx.MetadataStore, doc: type[mx.BaseFeature]) -> None:
    """created_at/updated_at stamp each stored row version (README); the first appearance of a sample
    is the smallest created_at in history."""
    write_docs(store, doc, doc_rows(("a",)))
    first = current(store, doc).row(0, named=True)
    time.sleep(0.01)
    write_docs(store, doc, doc_rows(("a",), version="2"))
    second = current(store, doc).row(0, named=True)
    assert second[C.PROVENANCE] != first[C.PROVENANCE]
    assert second[C.UPDATED_AT] > first[C.UPDATED_AT]
    history = store.read(doc, history=True).to_polars()
    assert history[C.CREATED_AT].min() == first[C.CREATED_AT]
    assert sorted(history[C.UPDATED_AT].to_list()) == [first[C.UPDATED_AT], second[C.UPDATED_AT]]
    time.sleep(0.01)
    store.delete(doc, "doc_id = 'a'")
    deleted = current(store, doc, include_deleted=True).row(0, named=True)
    assert deleted[C.DELETED_AT] is not None
    assert deleted[C.UPDATED_AT] > second[C.UPDATED_AT]


def test_coerces_int_to_str_losslessly(store: mx.MetadataStore, doc: type[mx.BaseFeature]) -> None:
    rows = doc_rows(("1", "2")).with_columns(pl.Series("doc_id", [1, 2]), pl.Series("title", [10, 20]))
    assert store.write(doc, rows) == 2
    stored = current(store, doc)
    assert stored.schema["doc_id"] == pl.String
    assert stored["doc_id"].to_list() == ["1", "2"]
    assert stored["title"].to_list() == ["10", "20"]


# -- rejected writes --------------------------------------------------------------------------------
BAD_WRITES: dict[str, tuple[Callable[[pl.DataFrame], pl.DataFrame], str]] = {
    "missing-id-column": (lambda df: df.drop("doc_id"), r"docs/page.*missing id column.*'doc_id'"),
    "str-into-int": (
        lambda df: df.with_columns(pl.col("n_pages").cast(pl.String) + "pages"),
        r"docs/page.*column 'n_pages' has type String.*declares Int64",
    ),
    "null-id": (
        lambda df: df.with_columns(
            pl.when(pl.col("doc_id") == "y").then(None).otherwise("doc_id").alias("doc_id")
        ),
        r"docs/page.*id column 'doc_id' has 1 null value",
    ),
    "duplicate-id": (
        lambda df: df.with_columns(pl.lit("x").alias("doc_id")),
        r"docs/page.*duplicate ids.*'doc_id'",
    ),
    "unknown-column": (
        lambda df: df.with_columns(pl.lit(1).alias("colour")),
        r"docs/page.*\['colour'\] are not declared",
    ),
    "missing-provenance": (
        lambda df: df.drop(C.PROVENANCE_BY_FIELD, C.PROVENANCE),
        r"docs/page.*'metaxy_provenance_by_field' is missing",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_WRITES))
def test_bad_write_fails_and_leaves_store_unchanged(
    store: mx.MetadataStore, doc: type[mx.BaseFeature], case: str
) -> None:
    write_docs(store, doc, doc_rows())
    before = current(store, doc)
    history_before = store.read(doc, history=True).to_polars().height
    # x is a new sample and a a replacement, so a partial write would show up either way
    good = store.resolve_update(doc, samples=doc_rows(("a", "x", "y"), version="2")).to_process()
    assert good.height == 3
    mutate, message = BAD_WRITES[case]
    with pytest.raises(mx.MetadataValidationError, match=message):
        store.write(doc, mutate(good))
    assert current(store, doc).equals(before)
    assert store.read(doc, history=True).to_polars().height == history_before


def test_missing_declared_column_is_rejected(store: mx.MetadataStore, doc: type[mx.BaseFeature]) -> None:
    rows = store.resolve_update(doc, samples=doc_rows()).new.to_polars().drop("title")
    with pytest.raises(mx.MetadataValidationError, match=r"docs/page.*missing column 'title'"):
        store.write(doc, rows)
    assert not store.has_feature(doc)


def test_feature_without_declared_columns_accepts_any(store: mx.MetadataStore) -> None:
    class Loose(mx.Feature, spec=mx.FeatureSpec(key="loose")):
        pass

    samples = pl.DataFrame({"sample_uid": [1], C.PROVENANCE_BY_FIELD: [{"default": "v"}]})
    rows = store.resolve_update(Loose, samples=samples).new.to_polars().with_columns(anything=pl.lit("ok"))
    store.write(Loose, rows)
    assert store.read(Loose).to_polars()["anything"].to_list() == ["ok"]


# -- delete -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("filters", ["doc_id = 'a'", nw.col("doc_id") == "a"], ids=["sql", "narwhals"])
def test_soft_delete(store: mx.MetadataStore, doc: type[mx.BaseFeature], filters: Any) -> None:
    write_docs(store, doc, doc_rows())
    assert store.delete(doc, filters) == 1
    assert current(store, doc)["doc_id"].to_list() == ["b", "c"]
    with_deleted = current(store, doc, include_deleted=True)
    assert with_deleted["doc_id"].to_list() == ["a", "b", "c"]
    assert with_deleted[C.DELETED_AT].is_null().to_list() == [False, True, True]
    assert store.delete(doc, filters) == 0  # already deleted
    # the sample is absent for the resolver: re-given, it is new again
    assert store.resolve_update(doc, samples=doc_rows()).counts() == {"new": 1, "stale": 0, "orphaned": 0}
    write_docs(store, doc, doc_rows())
    assert current(store, doc)["doc_id"].to_list() == ["a", "b", "c"]


def test_hard_delete(store: mx.MetadataStore, doc: type[mx.BaseFeature]) -> None:
    write_docs(store, doc, doc_rows())
    write_docs(store, doc, doc_rows(version="2"))  # a second version of every row in history
    assert store.delete(doc, "doc_id IN ('a', 'b')", soft=False) == 2
    assert current(store, doc, include_deleted=True)["doc_id"].to_list() == ["c"]
    assert store.read(doc, history=True, include_deleted=True).to_polars()["doc_id"].to_list() == ["c", "c"]


def test_delete_every_row_needs_all_rows(store: mx.MetadataStore, doc: type[mx.BaseFeature]) -> None:
    write_docs(store, doc, doc_rows())
    for nothing in (None, "", "  ", []):
        with pytest.raises(mx.FilterError, match=r"delete\(docs/page\) got no filter.*all_rows=True"):
            store.delete(doc, nothing)
    assert current(store, doc).height == 3
    with pytest.raises(mx.FilterError, match="not both"):
        store.delete(doc, "doc_id = 'a'", all_rows=True)
    assert store.delete(doc, all_rows=True) == 3
    assert current(store, doc).height == 0


# -- read, has_feature, list_features ---------------------------------------------------------------
def test_has_feature_and_list_features(store: mx.MetadataStore, doc: type[mx.BaseFeature]) -> None:
    class Other(mx.Feature, spec=mx.FeatureSpec(key="aa/other")):
        pass

    assert not store.has_feature(doc)
    assert not store.has_feature("docs/page")
    assert store.list_features() == []
    with pytest.raises(mx.FeatureNotFoundError, match="No metadata stored for feature 'docs/page'"):
        store.read(doc)
    write_docs(store, doc, doc_rows())
    store.write(Other, pl.DataFrame({"sample_uid": ["u"], C.PROVENANCE_BY_FIELD: [{"default": "v"}]}))
    assert store.has_feature(doc)
    assert store.has_feature("docs/page")
    assert store.has_feature(["docs", "page"])
    assert store.list_features() == [mx.FeatureKey("aa/other"), mx.FeatureKey("docs/page")]


def test_read_columns_and_filters(store: mx.MetadataStore, doc: type[mx.BaseFeature]) -> None:
    write_docs(store, doc, doc_rows())
    frame = store.read(doc, columns=["doc_id", "n_pages"], filters=nw.col("n_pages") >= 2).to_polars()
    assert frame.sort("doc_id").rows() == [("b", 2), ("c", 3)]
    frame = store.read(doc, columns=["doc_id"], filters="n_pages = 1").to_polars()
    assert frame.rows() == [("a",)]


def test_lazy_read(store: mx.MetadataStore, doc: type[mx.BaseFeature]) -> None:
    write_docs(store, doc, doc_rows())
    lazy = store.read(doc, lazy=True)
    assert isinstance(lazy, nw.LazyFrame)
    assert lazy.select(nw.len()).collect().item() == 3
    assert lazy.filter(nw.col("doc_id") == "b").collect()["n_pages"].to_list() == [2]


def test_store_works_outside_with_and_reopens(
    store_factory: Callable[..., mx.MetadataStore], doc: type[mx.BaseFeature]
) -> None:
    store = store_factory()
    inc = store.resolve_update(doc, samples=doc_rows())
    assert store.write(doc, inc.new) == 3
    assert not store.is_open
    with store, store:  # re-entrant
        assert store.is_open
        assert len(store.read(doc)) == 3
    assert not store.is_open
    assert store.resolve_update(doc, samples=doc_rows()).counts() == {"new": 0, "stale": 0, "orphaned": 0}


def test_duckdb_store_persists_across_instances(tmp_path: Any, doc: type[mx.BaseFeature]) -> None:
    path = tmp_path / "meta.duckdb"
    with mx.DuckDBMetadataStore(database=path) as first:
        write_docs(first, doc, doc_rows())
    with mx.DuckDBMetadataStore(database=str(path)) as second:
        assert second.list_features() == [mx.FeatureKey("docs/page")]
        assert second.resolve_update(doc, samples=doc_rows()).counts() == {
            "new": 0,
            "stale": 0,
            "orphaned": 0,
        }


def test_system_tables(store: mx.MetadataStore) -> None:
    assert store.read_system("snapshots") is None
    store.append_system("snapshots", pl.DataFrame({"version": ["v1"], "n": [1]}))
    store.append_system("snapshots", pd.DataFrame({"version": ["v2"], "n": [2]}))
    frame = store.read_system("snapshots")
    assert frame is not None
    assert frame.sort("version").rows() == [("v1", 1), ("v2", 2)]
    assert store.list_features() == []  # system tables are not features


# -- formerly known gaps, now pinned ----------------------------------------------------------------
def _loose_feature() -> type[mx.BaseFeature]:
    class Loose(mx.Feature, spec=mx.FeatureSpec(key="loose")):
        pass

    return Loose


def _loose_rows(uid: int, value: object) -> pl.DataFrame:
    return pl.DataFrame({"sample_uid": [uid], "anything": [value], C.PROVENANCE_BY_FIELD: [{"default": "v"}]})


def test_write_not_fitting_the_stored_type_fails_atomically(store: mx.MetadataStore) -> None:
    """A feature without declared columns still has a stored type per column; a value that does not fit
    it (and does not widen it losslessly, as int -> str would) fails the write, and nothing changes."""
    loose = _loose_feature()
    store.write(loose, _loose_rows(1, 5))
    before = store.read(loose).to_polars()
    with pytest.raises(mx.MetaxyError):
        store.write(loose, _loose_rows(2, True))
    assert store.read(loose).to_polars().equals(before)
    assert store.read(loose, history=True).to_polars().height == 1


def test_write_not_fitting_the_stored_type_names_the_column(store: mx.MetadataStore) -> None:
    loose = _loose_feature()
    store.write(loose, _loose_rows(1, 5))
    with pytest.raises(mx.MetadataValidationError, match=r"write\(loose\).*column 'anything'"):
        store.write(loose, _loose_rows(2, True))
    # a lossless difference is coerced to the stored type
    store.write(loose, _loose_rows(3, None))
    assert store.read(loose).to_polars().sort("sample_uid")["anything"].to_list() == [5, None]


def test_feature_keys_differing_only_in_case_are_rejected() -> None:
    class Lower(mx.Feature, spec=mx.FeatureSpec(key="docs/page")):
        pass

    with pytest.raises(
        mx.FeatureDefinitionError,
        match=r"'docs/Page' .* collides with 'docs/page' .* as table names: .*letter case",
    ):

        class Upper(mx.Feature, spec=mx.FeatureSpec(key="docs/Page")):
            pass


def test_duckdb_list_features_ignores_foreign_tables(tmp_path: Any, doc: type[mx.BaseFeature]) -> None:
    with mx.DuckDBMetadataStore(database=tmp_path / "shared.duckdb") as store:
        write_docs(store, doc, doc_rows())
        store.connection.execute("CREATE TABLE my_table (x INTEGER)")
        assert store.list_features() == [mx.FeatureKey("docs/page")]


ENGINE_ERROR_CASES: dict[str, Callable[[mx.MetadataStore, type[mx.BaseFeature]], Any]] = {
    "read-columns": lambda s, f: s.read(f, columns=["nope"]),
    "read-filter": lambda s, f: s.read(f, filters="nope = 1"),
    "delete-filter": lambda s, f: s.delete(f, "nope = 1"),
    "resolve-filter": lambda s, f: s.resolve_update(f, samples=doc_rows(), filters="nope = 1"),
}


@pytest.mark.parametrize("case", sorted(ENGINE_ERROR_CASES))
def test_engine_errors_surface_as_metaxy_errors(
    store: mx.MetadataStore, doc: type[mx.BaseFeature], case: str
) -> None:
    """One interface, one exception family: a bad column in columns=/filters= raises an mx.MetaxyError
    naming the column on every store, not the engine's own exception type."""
    write_docs(store, doc, doc_rows())
    before = store.read(doc).to_polars()
    with pytest.raises(mx.MetaxyError, match="nope"):
        ENGINE_ERROR_CASES[case](store, doc)
    assert store.read(doc).to_polars().equals(before)


def test_sample_validation_errors_name_resolve_update(store: mx.MetadataStore) -> None:
    class Doc2(mx.Feature, spec=mx.FeatureSpec(key="docs/two", fields=["text", "layout"])):
        pass

    samples = pl.DataFrame({"sample_uid": [1], C.PROVENANCE_BY_FIELD: [{"text": "x"}]})
    with pytest.raises(mx.MetaxyError, match=r"samples.*docs/two.*lacks field\(s\) \['layout'\]"):
        store.resolve_update(Doc2, samples=samples)


def _hold_duckdb_file(path: Path, seconds: float) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """Start a process that keeps ``path`` open for ``seconds``; wait until it holds the file."""
    opened, released = path.with_suffix(".opened"), path.with_suffix(".released")
    code = (
        "import pathlib, time, metaxy_core as mx\n"
        f"with mx.DuckDBMetadataStore(database={str(path)!r}):\n"
        f"    pathlib.Path({str(opened)!r}).touch()\n"
        f"    time.sleep({seconds})\n"
        f"pathlib.Path({str(released)!r}).touch()\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 30
    while not opened.exists():
        assert holder.poll() is None, "the process holding the DuckDB file died"
        assert time.monotonic() < deadline, "the process holding the DuckDB file never opened it"
        time.sleep(0.02)
    return holder, opened, released


def test_duckdb_waits_for_a_file_held_by_another_process(tmp_path: Path, doc: type[mx.BaseFeature]) -> None:
    """A DuckDB file can be open in one process at a time; the store retries until it is free."""
    path = tmp_path / "shared.duckdb"
    holder, _, released = _hold_duckdb_file(path, 0.5)
    try:
        with mx.DuckDBMetadataStore(database=path, lock_timeout=30) as store:
            assert released.exists()  # we only got in after the holder let go
            assert write_docs(store, doc, doc_rows()) == 3
    finally:
        holder.wait(timeout=30)


def test_duckdb_lock_timeout_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.duckdb"
    holder, _, _ = _hold_duckdb_file(path, 10.0)
    try:
        with (
            pytest.raises(mx.StoreError, match=r"DuckDB file .*shared\.duckdb.*process \d+ .*lock_timeout"),
            mx.DuckDBMetadataStore(database=path, lock_timeout=0.3),
        ):
            pass
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_large_first_write_is_readable_on_the_same_connection(store: mx.MetadataStore) -> None:
    """More rows than one DuckDB row group (122,880) in the first write: visible at once, not only after
    reopening (DuckDB 2.0 loses them when the table is created empty in the same transaction)."""

    class Raw(mx.Feature, spec=mx.FeatureSpec(key="big/raw", fields=["a"])):
        pass

    class Down(mx.Feature, spec=mx.FeatureSpec(key="big/down", deps=[Raw], fields=["a"])):
        pass

    n = 130_000
    samples = pl.DataFrame({"sample_uid": [str(i) for i in range(n)]}).with_columns(
        pl.struct(a=pl.col("sample_uid")).alias(C.PROVENANCE_BY_FIELD)
    )
    assert store.write(Raw, store.resolve_update(Raw, samples=samples).new) == n
    assert store.read(Raw).to_polars().height == n
    assert store.resolve_update(Down, lazy=True).counts() == {"new": n, "stale": 0, "orphaned": 0}
