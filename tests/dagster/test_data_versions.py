"""The aggregate data version: exact, order independent, identical across engines."""

from pathlib import Path

import polars as pl
import pytest

import metaxy_core as mx
from metaxy_dagster.data_versions import EMPTY_DATA_VERSION, feature_data_version, reference_data_version


def _feature() -> type[mx.BaseFeature]:
    class Doc(
        mx.BaseFeature, spec=mx.FeatureSpec(key="docs/raw", id_columns=["doc_id", "page"], fields=["text"])
    ):
        doc_id: str
        page: int

    return Doc


def _rows(n: int, *, reverse: bool = False, value: str = "v") -> pl.DataFrame:
    ids = list(range(n))
    if reverse:
        ids.reverse()
    return pl.DataFrame(
        {
            "doc_id": [f"d{i % 7}" for i in ids],
            "page": ids,
            "metaxy_provenance_by_field": [{"text": f"{value}{i % 3}"} for i in ids],
        }
    )


def _write(store: mx.MetadataStore, feature: type[mx.BaseFeature], rows: pl.DataFrame) -> None:
    with store:
        store.write(feature, store.resolve_update(feature, samples=rows).new)


@pytest.mark.parametrize("kind", ["duckdb", "memory"])
def test_matches_the_pure_python_reference(kind: str, tmp_path: Path) -> None:
    doc = _feature()
    store = mx.DuckDBMetadataStore(tmp_path / "m.duckdb") if kind == "duckdb" else mx.InMemoryMetadataStore()
    with store:
        assert feature_data_version(store, doc).data_version == EMPTY_DATA_VERSION
    _write(store, doc, _rows(50))
    with store:
        got = feature_data_version(store, doc)
        stored = store.read(doc).to_polars()
    expected = reference_data_version(
        [([r["doc_id"], str(r["page"])], r["metaxy_data_version"]) for r in stored.iter_rows(named=True)]
    )
    assert got.data_version == expected
    assert got.row_count == 50


def test_same_in_every_engine_and_independent_of_row_order(tmp_path: Path) -> None:
    doc = _feature()
    duck, mem = mx.DuckDBMetadataStore(tmp_path / "m.duckdb"), mx.InMemoryMetadataStore()
    _write(duck, doc, _rows(200))
    _write(mem, doc, _rows(200, reverse=True))
    with duck, mem:
        assert feature_data_version(duck, doc) == feature_data_version(mem, doc)


def test_moves_with_any_sample_change_and_duplicates_do_not_cancel(tmp_path: Path) -> None:
    doc = _feature()
    store = mx.DuckDBMetadataStore(tmp_path / "m.duckdb")
    _write(store, doc, _rows(10))
    with store:
        base = feature_data_version(store, doc).data_version
        # Many samples share a data version (value i % 3): an XOR would cancel pairs of them.
        assert stored_distinct(store, doc) == 3
        store.write(doc, store.resolve_update(doc, samples=_rows(10, value="w")).stale)
        changed = feature_data_version(store, doc).data_version
        store.write(doc, store.resolve_update(doc, samples=_rows(10)).stale)
        assert feature_data_version(store, doc).data_version == base
        store.delete(doc, "page = 3")
        after_delete = feature_data_version(store, doc)
    assert changed != base
    assert after_delete.row_count == 9
    assert after_delete.data_version != base


def stored_distinct(store: mx.MetadataStore, feature: type[mx.BaseFeature]) -> int:
    return store.read(feature).to_polars()["metaxy_data_version"].n_unique()


@pytest.mark.parametrize("kind", ["duckdb", "memory"])
def test_golden_value(kind: str, tmp_path: Path) -> None:
    """Pinned: sha256 of 'count|sum_1|sum_2' over rows 'd0|0|dv-a', 'd1|1|dv-b', 'd2|2|dv-a', worked out by hand
    with hashlib once, so a change of the formula in both the store path and the reference cannot pass."""
    golden = "05bf6663281fda3a"
    rows = [(["d0", "0"], "dv-a"), (["d1", "1"], "dv-b"), (["d2", "2"], "dv-a")]
    assert reference_data_version(rows) == golden
    doc = _feature()
    store = mx.DuckDBMetadataStore(tmp_path / "m.duckdb") if kind == "duckdb" else mx.InMemoryMetadataStore()
    frame = pl.DataFrame(
        {
            "doc_id": ["d0", "d1", "d2"],
            "page": [0, 1, 2],
            "metaxy_provenance_by_field": [{"text": "p"}] * 3,
            "metaxy_data_version": ["dv-a", "dv-b", "dv-a"],
        }
    )
    with store:
        store.write(doc, frame)
        assert feature_data_version(store, doc).data_version == golden
