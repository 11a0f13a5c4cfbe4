"""Increment semantics of ``store.resolve_update``, on every store of the conformance matrix."""

import narwhals as nw
import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core import columns as C
from tests.core.pipelines import (
    ZERO,
    build_video_pipeline,
    changed_fields,
    counts_of,
    process,
    raw_samples,
    run_pipeline,
    sorted_polars,
)


def test_first_run_sees_every_sample_as_new(store: mx.MetadataStore) -> None:
    p = build_video_pipeline()
    counts = run_pipeline(store, p, raw_samples())
    assert counts == {key: {"new": 3, "stale": 0, "orphaned": 0} for key in counts}
    assert list(counts) == ["video/raw", "video/crop", "video/faces", "video/stt"]
    for feature in p.features:
        assert len(store.read(feature)) == 3


def test_increment_columns(store: mx.MetadataStore) -> None:
    p = build_video_pipeline()
    inc = store.resolve_update(p.raw, samples=raw_samples())
    # new and stale share one schema; on new rows every field counts as changed
    assert inc.new.columns == ["video_id", "path", C.PROVENANCE_BY_FIELD, C.PROVENANCE, C.CHANGED_FIELDS]
    assert inc.stale.columns == inc.new.columns
    assert inc.new.to_polars()[C.CHANGED_FIELDS].to_list() == [["audio", "frames"]] * 3
    process(store, p.raw, inc)
    crop = store.resolve_update(p.crop)
    # Upstream user columns are carried; upstream system columns are not.
    assert crop.new.columns == ["video_id", "path", C.PROVENANCE_BY_FIELD, C.PROVENANCE, C.CHANGED_FIELDS]
    assert crop.orphaned.columns == ["video_id", C.PROVENANCE_BY_FIELD, C.PROVENANCE]


def test_rerun_without_changes_is_empty(store: mx.MetadataStore) -> None:
    p = build_video_pipeline()
    run_pipeline(store, p, raw_samples())
    again = run_pipeline(store, p, raw_samples())
    assert again == {str(f.spec.key): ZERO for f in p.features}
    inc = store.resolve_update(p.raw, samples=raw_samples())
    assert inc.is_empty
    assert inc.summary() == "new=0 stale=0 orphaned=0"


def test_changed_root_sample_is_stale_with_exact_changed_fields(store: mx.MetadataStore) -> None:
    p = build_video_pipeline()
    run_pipeline(store, p, raw_samples())
    changed = raw_samples(b={"audio": "audio-b-remastered"}, c={"audio": "new", "frames": "new"})

    inc = store.resolve_update(p.raw, samples=changed)
    assert inc.counts() == {"new": 0, "stale": 2, "orphaned": 0}
    assert changed_fields(inc, "video_id") == {"b": ["audio"], "c": ["audio", "frames"]}
    # stale rows carry the *expected* provenance: writing them makes the root up to date
    process(store, p.raw, inc)
    assert store.resolve_update(p.raw, samples=changed).is_empty

    crop = store.resolve_update(p.crop)
    assert changed_fields(crop, "video_id") == {"b": ["audio"], "c": ["audio", "frames"]}
    stt = store.resolve_update(p.stt)
    assert changed_fields(stt, "video_id") == {"b": ["transcription"], "c": ["transcription"]}
    process(store, p.crop, crop)
    faces = store.resolve_update(p.faces)
    assert changed_fields(faces, "video_id") == {"c": ["faces"]}


def test_removed_root_sample_is_orphaned(store: mx.MetadataStore) -> None:
    p = build_video_pipeline()
    run_pipeline(store, p, raw_samples())
    stored_c = sorted_polars(store.read(p.raw), "video_id").filter(pl.col("video_id") == "c")

    # For roots `samples` is the complete set: c is gone.
    inc = store.resolve_update(p.raw, samples=raw_samples(["a", "b"]))
    assert inc.counts() == {"new": 0, "stale": 0, "orphaned": 1}
    orphaned = inc.orphaned.to_polars()
    assert orphaned.columns == ["video_id", C.PROVENANCE_BY_FIELD, C.PROVENANCE]
    assert orphaned.row(0, named=True) == stored_c.select(orphaned.columns).row(0, named=True)


def test_upstream_sample_gone_orphans_downstream(store: mx.MetadataStore) -> None:
    p = build_video_pipeline()
    run_pipeline(store, p, raw_samples())
    assert store.delete(p.raw, "video_id = 'c'", soft=False) == 1
    for feature in (p.crop, p.stt):
        inc = store.resolve_update(feature)
        assert inc.counts() == {"new": 0, "stale": 0, "orphaned": 1}
        assert inc.orphaned.to_polars()["video_id"].to_list() == ["c"]
    assert store.resolve_update(p.faces).counts() == ZERO  # crop still holds c


def test_new_root_sample_is_new_downstream(store: mx.MetadataStore) -> None:
    p = build_video_pipeline()
    run_pipeline(store, p, raw_samples())
    counts = run_pipeline(store, p, raw_samples(["a", "b", "c", "d"]))
    assert counts == {str(f.spec.key): {"new": 1, "stale": 0, "orphaned": 0} for f in p.features}


def test_root_code_version_bump(store: mx.MetadataStore) -> None:
    """A code bump on raw.audio makes raw stale once its samples are re-given, then crop (audio)
    and stt (transcription); faces (frames only) stays 0/0/0 at every step."""
    v1 = build_video_pipeline(raw_audio="1")
    run_pipeline(store, v1, raw_samples())

    v2 = build_video_pipeline(raw_audio="2")
    assert v2.raw.spec.key == v1.raw.spec.key
    assert v2.raw.feature_version() != v1.raw.feature_version()
    # Downstream provenance is computed from stored upstream rows, so nothing moves before raw is rewritten.
    assert counts_of(store, *v2.downstream) == {str(f.spec.key): ZERO for f in v2.downstream}

    raw = store.resolve_update(v2.raw, samples=raw_samples())
    assert raw.counts() == {"new": 0, "stale": 3, "orphaned": 0}
    assert changed_fields(raw, "video_id") == {"a": ["audio"], "b": ["audio"], "c": ["audio"]}
    assert store.resolve_update(v2.faces).counts() == ZERO
    process(store, v2.raw, raw)

    crop = store.resolve_update(v2.crop)
    stt = store.resolve_update(v2.stt)
    assert crop.counts() == {"new": 0, "stale": 3, "orphaned": 0}
    assert stt.counts() == {"new": 0, "stale": 3, "orphaned": 0}
    assert set(map(tuple, crop.stale.to_polars()[C.CHANGED_FIELDS].to_list())) == {("audio",)}
    assert set(map(tuple, stt.stale.to_polars()[C.CHANGED_FIELDS].to_list())) == {("transcription",)}
    assert store.resolve_update(v2.faces).counts() == ZERO

    process(store, v2.crop, crop)
    assert store.resolve_update(v2.faces).counts() == ZERO
    process(store, v2.stt, stt)
    assert run_pipeline(store, v2, raw_samples()) == {str(f.spec.key): ZERO for f in v2.features}
    assert set(store.read(v2.crop).to_polars()[C.FEATURE_VERSION]) == {v2.crop.feature_version()}
    # faces was never rewritten: its rows still carry the (unchanged) feature version
    assert v2.faces.feature_version() == v1.faces.feature_version()


def test_non_root_code_version_bump(store: mx.MetadataStore) -> None:
    v1 = build_video_pipeline()
    run_pipeline(store, v1, raw_samples())
    v2 = build_video_pipeline(crop_audio="2")
    assert store.resolve_update(v2.raw, samples=raw_samples()).counts() == ZERO
    crop = store.resolve_update(v2.crop)
    assert crop.counts() == {"new": 0, "stale": 3, "orphaned": 0}
    assert changed_fields(crop, "video_id") == {"a": ["audio"], "b": ["audio"], "c": ["audio"]}
    assert counts_of(store, v2.faces, v2.stt) == {"video/faces": ZERO, "video/stt": ZERO}
    process(store, v2.crop, crop)
    assert counts_of(store, *v2.downstream) == {str(f.spec.key): ZERO for f in v2.downstream}


@pytest.mark.parametrize("override", [True, False], ids=["data-version-override", "no-override"])
def test_data_version_override_cuts_off_downstream(store: mx.MetadataStore, override: bool) -> None:
    """A crop.frames code bump whose recomputation gives identical frames: the step writes the old
    data version for `frames`, and faces (which reads only crop.frames) stays up to date."""
    v1 = build_video_pipeline()
    run_pipeline(store, v1, raw_samples())
    old = sorted_polars(store.read(v1.crop), "video_id")

    v2 = build_video_pipeline(crop_frames="2")
    crop = store.resolve_update(v2.crop)
    assert changed_fields(crop, "video_id") == {"a": ["frames"], "b": ["frames"], "c": ["frames"]}
    rows = (
        sorted_polars(crop.stale, "video_id")
        .drop(C.CHANGED_FIELDS, "path")
        .with_columns(crop_path=pl.lit("x"))
    )
    if override:
        rows = rows.with_columns(old[C.DATA_VERSION_BY_FIELD].alias(C.DATA_VERSION_BY_FIELD))
    store.write(v2.crop, rows)
    stored = sorted_polars(store.read(v2.crop), "video_id")
    assert stored[C.PROVENANCE].to_list() == rows[C.PROVENANCE].to_list()

    faces = store.resolve_update(v2.faces)
    if override:
        assert stored[C.DATA_VERSION_BY_FIELD].to_list() == old[C.DATA_VERSION_BY_FIELD].to_list()
        assert stored[C.DATA_VERSION].to_list() == old[C.DATA_VERSION].to_list()
        assert faces.counts() == ZERO
    else:
        assert stored[C.DATA_VERSION_BY_FIELD].to_list() == stored[C.PROVENANCE_BY_FIELD].to_list()
        assert changed_fields(faces, "video_id") == {"a": ["faces"], "b": ["faces"], "c": ["faces"]}
    assert store.resolve_update(v2.crop).counts() == ZERO


def test_partial_data_version_override_falls_back_to_provenance(store: mx.MetadataStore) -> None:
    p = build_video_pipeline()
    inc = store.resolve_update(p.raw, samples=raw_samples(["a"]))
    rows = inc.new.to_polars().with_columns(
        pl.lit({"audio": "audio-output-hash"}).alias(C.DATA_VERSION_BY_FIELD)
    )
    store.write(p.raw, rows)
    stored = store.read(p.raw).to_polars().row(0, named=True)
    assert stored[C.DATA_VERSION_BY_FIELD] == {
        "audio": "audio-output-hash",
        "frames": stored[C.PROVENANCE_BY_FIELD]["frames"],
    }
    # downstream provenance uses the data version, not the provenance
    crop_audio = store.resolve_update(p.crop).new.to_polars()[C.PROVENANCE_BY_FIELD][0]["audio"]
    store.write(p.raw, inc.new)
    assert store.resolve_update(p.crop).new.to_polars()[C.PROVENANCE_BY_FIELD][0]["audio"] != crop_audio


def _recompute_graph(code_version: str) -> tuple[type[mx.BaseFeature], type[mx.BaseFeature]]:
    """The recompute walkthrough in the original metaxy spellings (FeatureKey lists, Feature.spec().key)."""
    with mx.FeatureGraph().use():

        class ParentFeature(
            mx.Feature,
            spec=mx.FeatureSpec(
                key=mx.FeatureKey(["examples", "parent"]),
                fields=[mx.FieldSpec(key=mx.FieldKey(["embeddings"]), code_version=code_version)],
                id_columns=("sample_uid",),
            ),
        ):
            pass

        class ChildFeature(
            mx.Feature,
            spec=mx.FeatureSpec(
                key=mx.FeatureKey(["examples", "child"]),
                deps=[mx.FeatureDep(feature=ParentFeature.spec().key)],
                fields=[
                    mx.FieldSpec(
                        key=mx.FieldKey(["predictions"]),
                        code_version="1",
                        deps=[
                            mx.FieldDep(
                                feature=ParentFeature.spec().key, fields=[mx.FieldKey(["embeddings"])]
                            )
                        ],
                    )
                ],
                id_columns=("sample_uid",),
            ),
        ):
            pass

    return ParentFeature, ChildFeature


def test_recompute_example(store: mx.MetadataStore) -> None:
    samples = pl.DataFrame(
        {
            "sample_uid": [1, 2, 3],
            C.PROVENANCE_BY_FIELD: [{"embeddings": f"raw-{i}"} for i in (1, 2, 3)],
        }
    )

    def pipeline(parent: type[mx.BaseFeature], child: type[mx.BaseFeature]) -> list[dict[str, int]]:
        inc_parent = store.resolve_update(parent, samples=samples)
        store.write(parent, inc_parent.to_process().with_columns(embedding=pl.lit(0.5)))
        inc_child = store.resolve_update(child)
        store.write(child, inc_child.to_process().with_columns(prediction=pl.lit(1)))
        return [inc_parent.counts(), inc_child.counts()]

    parent1, child1 = _recompute_graph("1")
    # 1. initial run, 2. idempotent rerun
    assert pipeline(parent1, child1) == [{"new": 3, "stale": 0, "orphaned": 0}] * 2
    assert pipeline(parent1, child1) == [ZERO, ZERO]
    # 3. parent embeddings code_version 1 -> 2: the child recomputes, and only once
    parent2, child2 = _recompute_graph("2")
    assert store.resolve_update(child2).counts() == ZERO
    assert pipeline(parent2, child2) == [{"new": 0, "stale": 3, "orphaned": 0}] * 2
    assert pipeline(parent2, child2) == [ZERO, ZERO]
    assert sorted(store.read(child2).to_polars()["sample_uid"].to_list()) == [1, 2, 3]


def test_soft_deleted_rows_count_as_absent(store: mx.MetadataStore) -> None:
    p = build_video_pipeline()
    run_pipeline(store, p, raw_samples())
    assert store.delete(p.crop, "video_id = 'a'") == 1
    inc = store.resolve_update(p.crop)
    assert inc.counts() == {"new": 1, "stale": 0, "orphaned": 0}
    assert inc.new.to_polars()["video_id"].to_list() == ["a"]
    # and a soft-deleted upstream row is not expected downstream
    assert store.delete(p.raw, "video_id = 'b'") == 1
    stt = store.resolve_update(p.stt)
    assert stt.counts() == {"new": 0, "stale": 0, "orphaned": 1}


def test_target_filters_apply_to_both_sides(store: mx.MetadataStore) -> None:
    p = build_video_pipeline()
    run_pipeline(store, p, raw_samples())
    changed = raw_samples(["a", "b", "d"], a={"audio": "x"})  # a stale, c orphaned, d new
    full = store.resolve_update(p.raw, samples=changed)
    assert full.counts() == {"new": 1, "stale": 1, "orphaned": 1}
    only_a = store.resolve_update(p.raw, samples=changed, filters="video_id = 'a'")
    assert only_a.counts() == {"new": 0, "stale": 1, "orphaned": 0}
    only_c = store.resolve_update(p.raw, samples=changed, filters=[nw.col("video_id") == "c"])
    assert only_c.counts() == {"new": 0, "stale": 0, "orphaned": 1}


def test_lazy_increment_counts_match_eager(store: mx.MetadataStore) -> None:

    p = build_video_pipeline()
    run_pipeline(store, p, raw_samples())
    changed = raw_samples(["a", "b", "d"], a={"audio": "x"})
    eager = store.resolve_update(p.raw, samples=changed)
    lazy = store.resolve_update(p.raw, samples=changed, lazy=True)
    for frame in (lazy.new, lazy.stale, lazy.orphaned):
        assert isinstance(frame, nw.LazyFrame)
    assert lazy.counts() == eager.counts() == {"new": 1, "stale": 1, "orphaned": 1}
    assert lazy.stale.collect().to_polars()[C.CHANGED_FIELDS].to_list() == [["audio"]]
    assert lazy.to_process().height == 2


def test_root_without_samples_raises(store: mx.MetadataStore) -> None:
    p = build_video_pipeline()
    with pytest.raises(mx.ResolveError, match=r"'video/raw' is a root feature.*samples="):
        store.resolve_update(p.raw)


def test_non_root_with_samples_raises(store: mx.MetadataStore) -> None:
    p = build_video_pipeline()
    with pytest.raises(mx.ResolveError, match=r"'video/crop' has deps.*drop samples="):
        store.resolve_update(p.crop, samples=raw_samples())


@pytest.mark.parametrize("kind", ["pandas", "pyarrow"])
def test_samples_as_pandas_or_pyarrow(store: mx.MetadataStore, kind: str) -> None:
    p = build_video_pipeline()
    samples = raw_samples()
    native = samples.to_pandas() if kind == "pandas" else samples.to_arrow()
    reference = store.resolve_update(p.raw, samples=samples)
    inc = store.resolve_update(p.raw, samples=native)
    assert inc.counts() == {"new": 3, "stale": 0, "orphaned": 0}
    assert sorted_polars(inc.new, "video_id").equals(sorted_polars(reference.new, "video_id"))


def _doc(fields: list[str]) -> type[mx.BaseFeature]:
    with mx.FeatureGraph().use():

        class Doc(mx.BaseFeature, spec=mx.FeatureSpec(key="docs/page", id_columns=["doc_id"], fields=fields)):
            doc_id: str

    return Doc


def _doc_samples(fields: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {"doc_id": ["a", "b"], C.PROVENANCE_BY_FIELD: [{f: f"{f}-{i}" for f in fields} for i in ("a", "b")]}
    )


def test_adding_a_field_keeps_old_rows_readable(store: mx.MetadataStore) -> None:
    v1 = _doc(["text"])
    store.write(v1, store.resolve_update(v1, samples=_doc_samples(["text"])).new)
    old = sorted_polars(store.read(v1), "doc_id")

    v2 = _doc(["text", "layout"])
    inc = store.resolve_update(v2, samples=_doc_samples(["text", "layout"]))
    assert changed_fields(inc, "doc_id") == {"a": ["layout"], "b": ["layout"]}
    # text's provenance is unchanged: same fq, code version and user value
    stale = sorted_polars(inc.stale, "doc_id")
    assert [s["text"] for s in stale[C.PROVENANCE_BY_FIELD]] == [
        s["text"] for s in old[C.PROVENANCE_BY_FIELD]
    ]

    store.write(v2, stale.filter(pl.col("doc_id") == "a"))
    current = sorted_polars(store.read(v2), "doc_id")
    assert current[C.PROVENANCE_BY_FIELD].to_list() == [
        stale[C.PROVENANCE_BY_FIELD][0],
        {"layout": None, "text": old[C.PROVENANCE_BY_FIELD][1]["text"]},
    ]
    history = store.read(v2, history=True).to_polars()
    assert history.height == 3
    assert store.resolve_update(v2, samples=_doc_samples(["text", "layout"])).counts() == {
        "new": 0,
        "stale": 1,
        "orphaned": 0,
    }


def test_removing_a_field_makes_samples_stale_once(store: mx.MetadataStore) -> None:
    v1 = _doc(["text", "layout"])
    store.write(v1, store.resolve_update(v1, samples=_doc_samples(["text", "layout"])).new)
    v2 = _doc(["layout"])
    inc = store.resolve_update(v2, samples=_doc_samples(["layout"]))
    assert inc.counts() == {"new": 0, "stale": 2, "orphaned": 0}
    store.write(v2, inc.stale)
    assert store.resolve_update(v2, samples=_doc_samples(["layout"])).counts() == ZERO
    assert [set(s) for s in store.read(v2).to_polars()[C.PROVENANCE_BY_FIELD]] == [{"layout", "text"}] * 2
