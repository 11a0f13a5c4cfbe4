"""Stored schemas evolve: lossless widening on write, clear errors with a migration fix otherwise."""

from typing import Any

import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core.migrations import add_id_column, alter_column_type


def _doc(
    ids: tuple[str, ...] = ("sample_uid",), fields: tuple[str, ...] = ("default",)
) -> type[mx.BaseFeature]:
    with mx.FeatureGraph().use():

        class Doc(mx.Feature, spec=mx.FeatureSpec(key="doc", id_columns=list(ids), fields=list(fields))):
            pass

    return Doc


def _rows(
    uids: list[str], version: str = "1", fields: tuple[str, ...] = ("default",), **columns: Any
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "sample_uid": uids,
            **columns,
            "metaxy_provenance_by_field": [{f: f"{u}-{version}" for f in fields} for u in uids],
        }
    )


def _score(store: mx.MetadataStore, doc: type[mx.BaseFeature], *, history: bool = False) -> pl.DataFrame:
    frame = store.read(doc, history=history).to_polars()
    return frame.select("sample_uid", "score").sort("sample_uid", "score", nulls_last=True)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (pl.Int64, pl.Float64, [1.0, 2.0]),
        (pl.Int64, pl.String, ["1", "2"]),
        (pl.Int32, pl.Int64, [1, 2]),
    ],
    ids=["int-float", "int-str", "int32-int64"],
)
def test_lossless_widening_on_write(
    store: mx.MetadataStore, old: pl.DataType, new: pl.DataType, expected: list[Any]
) -> None:
    doc = _doc()
    store.write(doc, _rows(["a", "b"], score=pl.Series([1, 2], dtype=old)))
    store.write(doc, _rows(["b"], "2", score=pl.Series([2]).cast(new)))
    current = _score(store, doc)
    assert current.schema["score"] == new
    assert current["score"].to_list() == expected
    history = _score(store, doc, history=True)
    assert history.schema["score"] == new
    assert history["score"].to_list() == [expected[0], expected[1], expected[1]]  # old "b" kept, converted


def test_lossy_change_names_the_migration(store: mx.MetadataStore) -> None:
    doc = _doc()
    store.write(doc, _rows(["a", "b"], score=["1", "2"]))
    with pytest.raises(
        mx.MetadataValidationError,
        match=r"write\(doc\): column 'score' is stored as String, but the frame has Float64.*"
        r"metaxy migrations alter-column doc score Float64.*alter_column_type",
    ):
        store.write(doc, _rows(["a"], "2", score=[5.5]))
    assert _score(store, doc)["score"].to_list() == ["1", "2"]

    # the fix named by the error: convert the stored column, then the write goes through
    assert alter_column_type(store, doc, "score", "Float64") == 2
    store.write(doc, _rows(["a"], "2", score=[5.5]))
    assert _score(store, doc)["score"].to_list() == [5.5, 2.0]
    assert _score(store, doc, history=True)["score"].to_list() == [1.0, 5.5, 2.0]
    records = store.read_system("migrations")
    assert records is not None
    assert records["op"].to_list() == ["alter_column"]


def test_alter_column_that_does_not_convert_changes_nothing(store: mx.MetadataStore) -> None:
    doc = _doc()
    store.write(doc, _rows(["a", "b"], score=["1", "x"]))
    with pytest.raises(mx.MetaxyError, match="score"):
        alter_column_type(store, doc, "score", "Int64")
    assert _score(store, doc)["score"].to_list() == ["1", "x"]
    with pytest.raises(mx.MetaxyError, match="not a stored user column"):
        alter_column_type(store, doc, "nope", "Int64")


def test_new_id_column_needs_a_migration(store: mx.MetadataStore) -> None:
    doc = _doc()
    store.write(doc, store.resolve_update(doc, samples=_rows(["a", "b"])).new)
    doc2 = _doc(ids=("sample_uid", "page"))
    fix = r"id column\(s\) \['page'\] of 'doc' are not in its stored table.*metaxy migrations add-id-column doc page"
    with pytest.raises(mx.MetadataValidationError, match=fix):
        store.write(doc2, _rows(["a"], "2").with_columns(page=pl.lit("1")))
    samples = _rows(["a", "b"]).with_columns(page=pl.lit("0"))
    with pytest.raises(mx.ResolveError, match=fix):
        store.resolve_update(doc2, samples=samples)

    assert add_id_column(store, doc2, "page", default="0") == 2
    assert store.resolve_update(doc2, samples=samples).counts() == {"new": 0, "stale": 0, "orphaned": 0}
    store.write(doc2, _rows(["a"], "2").with_columns(page=pl.lit("1")))
    assert sorted(store.read(doc2).to_polars().select("sample_uid", "page").rows()) == [
        ("a", "0"),
        ("a", "1"),
        ("b", "0"),
    ]


def test_removed_field_is_a_changed_field(store: mx.MetadataStore) -> None:
    both = ("audio", "frames")
    doc = _doc(fields=both)
    store.write(doc, store.resolve_update(doc, samples=_rows(["a", "b"], fields=both)).new)
    frames_only = _doc(fields=("frames",))
    stale = store.resolve_update(frames_only, samples=_rows(["a", "b"], fields=("frames",))).stale.to_polars()
    assert stale.height == 2
    assert stale["metaxy_changed_fields"].to_list() == [["audio"], ["audio"]]
