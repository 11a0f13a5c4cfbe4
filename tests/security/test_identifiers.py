"""Every identifier derived from a key is injective: distinct keys never share a column or a table."""

import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core import columns as C
from metaxy_core.lineage import escape_key, field_column, helper_column


def test_helper_columns_are_injective_and_fold_case_safely() -> None:
    keys = ["a-b", "a_b", "a/b", "A_b", "a_2d", "a_5fb", "ab", "a--b", "a__b"[:3] + "b"]
    names = [field_column(k) for k in keys]
    assert len(set(names)) == len(keys)
    assert len({n.lower() for n in names}) == len(keys)  # engines that fold case keep them apart too
    assert all(n == n.lower() for n in names)
    assert escape_key("a-b") == "a_2db"
    assert escape_key("a_b") == "a_5fb"


def test_long_keys_stay_within_identifier_limits() -> None:
    long_a, long_b = "x" * 80 + "/a", "x" * 80 + "/b"
    a, b = field_column(long_a), field_column(long_b)
    assert a != b
    assert len(a) <= 63
    assert len(b) <= 63
    assert helper_column("__metaxy_s_", long_a) != helper_column("__metaxy_s_", long_b)


def _fields_dash_and_underscore(graph: mx.FeatureGraph) -> tuple[type[mx.BaseFeature], type[mx.BaseFeature]]:
    class Src(mx.BaseFeature, spec=mx.FeatureSpec(key="src", fields=["a-b", "a_b"])):
        pass

    class Dst(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key="dst",
            deps=[mx.FeatureDep(feature=Src)],
            fields=[
                mx.FieldSpec("from_dash", deps=[mx.FieldDep(feature=Src, fields=["a-b"])]),
                mx.FieldSpec("from_underscore", deps=[mx.FieldDep(feature=Src, fields=["a_b"])]),
            ],
        ),
    ):
        pass

    return Src, Dst


def _samples(dash: str, underscore: str) -> pl.DataFrame:
    return pl.DataFrame(
        {"sample_uid": ["s1", "s2"], C.PROVENANCE_BY_FIELD: [{"a-b": dash, "a_b": underscore}] * 2}
    )


def test_fields_a_dash_b_and_a_underscore_b_are_both_detected(
    store: mx.MetadataStore, graph: mx.FeatureGraph
) -> None:
    src, dst = _fields_dash_and_underscore(graph)
    store.write(src, store.resolve_update(src, samples=_samples("1", "1")).new)
    store.write(dst, store.resolve_update(dst).new)
    provenance = store.read(dst).to_polars()[C.PROVENANCE_BY_FIELD].struct.unnest()
    assert (provenance["from_dash"] != provenance["from_underscore"]).all()

    for dash, underscore, changed_src, changed_dst in [
        ("1", "2", ["a_b"], ["from_underscore"]),
        ("3", "2", ["a-b"], ["from_dash"]),
    ]:
        inc = store.resolve_update(src, samples=_samples(dash, underscore))
        assert inc.stale.to_polars()[C.CHANGED_FIELDS].to_list() == [changed_src] * 2
        store.write(src, inc.stale)
        downstream = store.resolve_update(dst)
        assert downstream.counts() == {"new": 0, "stale": 2, "orphaned": 0}
        assert downstream.stale.to_polars()[C.CHANGED_FIELDS].to_list() == [changed_dst] * 2
        store.write(dst, downstream.stale)
        assert store.resolve_update(dst).counts() == {"new": 0, "stale": 0, "orphaned": 0}


@pytest.mark.parametrize(
    ("first", "second", "reason"),
    [
        ("docs/page", "docs/Page", r"differ only in letter case, and SQL engines fold"),
        ("x" * 60 + "/aaa", "x" * 60 + "/aab", r"share the first 63 characters, all that PostgreSQL keeps"),
    ],
)
def test_keys_colliding_as_table_names_are_rejected(first: str, second: str, reason: str) -> None:
    class First(mx.BaseFeature, spec=mx.FeatureSpec(key=first)):
        pass

    with pytest.raises(
        mx.FeatureDefinitionError,
        match=rf"'{second}' .* collides with '{first}' .* as table names: their tables .*{reason}",
    ):

        class Second(mx.BaseFeature, spec=mx.FeatureSpec(key=second)):
            pass


@pytest.mark.parametrize("key", ["a_/b", "a/_b", "a__b", "_a"])
def test_key_parts_that_would_blur_the_table_separator_are_invalid(key: str) -> None:
    """'a_/b' and 'a/_b' would both be table 'a___b': such parts are refused, so every table name
    splits back into exactly one key."""
    with pytest.raises(mx.InvalidKeyError, match=r"'__'"):
        mx.FeatureKey(key)


def test_field_keys_differing_only_in_case_are_rejected() -> None:
    with pytest.raises(
        mx.FeatureDefinitionError, match=r"field keys 'audio' and 'Audio' differ only in letter case"
    ):

        class Clip(mx.BaseFeature, spec=mx.FeatureSpec(key="clip", fields=["audio", "Audio"])):
            pass


def test_declared_columns_differing_only_in_case_are_rejected() -> None:
    with pytest.raises(
        mx.FeatureDefinitionError, match=r"columns 'path' and 'Path' that differ only in letter case"
    ):

        class Clip(mx.BaseFeature, spec=mx.FeatureSpec(key="clip")):
            path: str
            Path: str


def test_frame_columns_differing_only_in_case_fail_clearly(store: mx.MetadataStore) -> None:
    class Doc(mx.BaseFeature, spec=mx.FeatureSpec(key="doc")):
        pass

    samples = pl.DataFrame(
        {"sample_uid": ["a"], "Path": ["/x"], "path": ["/y"], C.PROVENANCE_BY_FIELD: [{"default": "1"}]}
    )
    with pytest.raises(
        mx.MetadataValidationError, match=r"columns 'Path' and 'path' differ only in letter case"
    ):
        store.resolve_update(Doc, samples=samples)
    rows = store.resolve_update(Doc, samples=samples.drop("path")).new.to_polars()
    with pytest.raises(
        mx.MetadataValidationError, match=r"columns 'Path' and 'path' differ only in letter case"
    ):
        store.write(Doc, rows.with_columns(path=pl.lit("/y")))
    assert not store.has_feature(Doc)
