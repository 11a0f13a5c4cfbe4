"""History retention: ``store.compact`` removes old superseded versions and keeps the rest readable."""

from datetime import timedelta

import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core import columns as C


def define() -> type[mx.BaseFeature]:
    class Doc(mx.BaseFeature, spec=mx.FeatureSpec(key="keep/doc", id_columns=["doc_id"], fields=["text"])):
        doc_id: str
        title: str

    return Doc


def rows(version: int, ids: tuple[str, ...] = ("a", "b")) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "doc_id": list(ids),
            "title": [f"v{version}"] * len(ids),
            C.PROVENANCE_BY_FIELD: [{"text": f"{i}-{version}"} for i in ids],
        }
    )


def versions(store: mx.MetadataStore, doc: type[mx.BaseFeature]) -> dict[str, list[str]]:
    frame = store.read(doc, history=True).to_polars().sort("title")
    out: dict[str, list[str]] = {}
    for doc_id, title in frame.select("doc_id", "title").iter_rows():
        out.setdefault(doc_id, []).append(title)
    return out


def test_keep_versions(store: mx.MetadataStore) -> None:
    doc = define()
    for v in range(1, 5):
        store.write(doc, rows(v))
    store.write(doc, rows(5, ("a",)))  # a: 4 superseded versions, b: 3
    removed = store.compact(keep_versions=1)
    assert removed == {"keep/doc": 3 + 2}
    assert versions(store, doc) == {"a": ["v4", "v5"], "b": ["v3", "v4"]}
    current = store.read(doc).to_polars().sort("doc_id")
    assert current["title"].to_list() == ["v5", "v4"]
    assert store.compact([doc], keep_versions=1) == {"keep/doc": 0}
    assert store.compact([doc], keep_versions=0) == {"keep/doc": 2}
    assert versions(store, doc) == {"a": ["v5"], "b": ["v4"]}


def test_older_than_keeps_recent_history(store: mx.MetadataStore) -> None:
    doc = define()
    for v in range(1, 4):
        store.write(doc, rows(v))
    assert store.compact(older_than=timedelta(hours=1)) == {"keep/doc": 0}
    assert store.compact(keep_versions=1, older_than=timedelta(0)) == {"keep/doc": 2}
    assert versions(store, doc) == {"a": ["v2", "v3"], "b": ["v2", "v3"]}


def test_compact_needs_a_rule(store: mx.MetadataStore) -> None:
    define()
    with pytest.raises(mx.MetadataValidationError, match="keep_versions"):
        store.compact()
    with pytest.raises(mx.MetadataValidationError, match=">= 0"):
        store.compact(keep_versions=-1)


def test_duckdb_file_shrinks_and_stays_usable(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """DuckDB keeps a file at its largest size after deletes: compaction writes it anew.

    The history is ranked in several groups of samples (as a large history is), which must remove
    exactly what one pass would."""
    from metaxy_core.stores import duckdb as duckdb_store

    monkeypatch.setattr(duckdb_store, "_COMPACT_ROWS_PER_PASS", 70_000)
    path = tmp_path / "meta.duckdb"
    store = mx.DuckDBMetadataStore(database=path)
    graph = mx.FeatureGraph()
    with graph.use():
        doc = define()
        ids = tuple(f"doc-{i:06d}" for i in range(60_000))
        with store:
            for v in range(6):
                store.write(doc, rows(v, ids))
        grown = path.stat().st_size
        (tmp_path / "meta.duckdb.compacting").write_bytes(b"a copy left by a crash")
        with store:
            assert store.compact([doc], keep_versions=1) == {"keep/doc": 4 * len(ids)}
            kept = store.read(doc, history=True).to_polars()
            assert kept.group_by("doc_id").agg(pl.col("title").sort()).get_column("title").to_list() == (
                [["v4", "v5"]] * len(ids)
            )
            # the same session goes on writing and reading after the file was swapped
            store.write(doc, rows(7, ids[:10]))
            assert store.read(doc, history=True).to_polars().height == 2 * len(ids) + 10
        assert path.stat().st_size < grown / 2, (grown, path.stat().st_size)
        assert not (tmp_path / "meta.duckdb.compacting").exists()
        current = store.read(doc).to_polars()
        assert current.height == len(ids)
        assert sorted(current["title"].unique()) == ["v5", "v7"]


def test_duckdb_compaction_that_removes_nothing_copies_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """DuckDB compaction replaces a history table with a copy of its kept rows; when nothing can go
    (no sample has more versions than kept, or nothing is older than the age), the table stays."""
    store = mx.DuckDBMetadataStore(database=tmp_path / "meta.duckdb")
    graph = mx.FeatureGraph()

    def history_oid() -> int:
        found = store.connection.execute(
            "SELECT table_oid FROM duckdb_tables() WHERE schema_name = 'metaxy_history' AND table_name = 'keep__doc'"
        ).fetchall()
        return int(found[0][0])

    with graph.use(), store:
        doc = define()
        for v in range(4):
            store.write(doc, rows(v))
        before = history_oid()
        assert store.compact([doc], keep_versions=3) == {"keep/doc": 0}
        assert store.compact([doc], keep_versions=0, older_than=timedelta(hours=1)) == {"keep/doc": 0}
        assert history_oid() == before
        assert store.compact([doc], keep_versions=2) == {"keep/doc": 2}
        assert history_oid() != before
        assert versions(store, doc) == {"a": ["v1", "v2", "v3"], "b": ["v1", "v2", "v3"]}
