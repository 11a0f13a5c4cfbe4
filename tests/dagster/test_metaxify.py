"""``mxd.metaxify``: metaxy keys, deps, versions and metadata on assets whose bodies call the store."""

from typing import Any

import dagster as dg
import polars as pl
import pytest

import metaxy_core as mx
import metaxy_dagster as mxd
from tests.dagster.pipeline import Features, Samples, build_assets

RAW, CHUNK, FACES, STT = (dg.AssetKey(["video", p]) for p in ("raw", "chunk", "faces", "stt"))


def test_spec_gets_the_feature_key_deps_versions_and_schema(features: Features) -> None:
    spec = mxd.metaxify(dg.AssetSpec("chunks_table", metadata={"owner_note": "mine"}), features.Chunk)
    assert spec.key == CHUNK
    assert [d.asset_key for d in spec.deps] == [RAW]
    assert spec.code_version == features.Chunk.feature_code_version()
    assert spec.metadata["metaxy/feature"] == "video/chunk"
    assert spec.metadata["owner_note"] == "mine"
    columns = [c.name for c in spec.metadata["dagster/column_schema"].columns]
    assert columns[:3] == ["video_chunk_id", "video_id", "chunk_index"]
    assert spec.tags[mxd.FEATURE_TAG] == "video.chunk"
    assert "metaxy" in spec.kinds
    assert spec.group_name == "video"


def test_user_values_win_and_keep_key_keeps_the_key(features: Features) -> None:
    own = dg.AssetSpec(
        "stt_table",
        code_version="mine",
        group_name="speech",
        description="Mine.",
        tags={"tier": "gold"},
        kinds={"whisper"},
        owners=["team:speech"],
        metadata={"metaxy/feature_version": "overridden"},
        deps=["model_weights"],
    )
    spec = mxd.metaxify(own, features.Transcript, keep_key=True)
    assert spec.key == dg.AssetKey("stt_table")
    assert (spec.code_version, spec.group_name, spec.description) == ("mine", "speech", "Mine.")
    assert spec.metadata["metaxy/feature_version"] == "overridden"
    assert spec.metadata["metaxy/feature"] == "video/stt"
    assert spec.tags["tier"] == "gold"
    assert spec.tags[mxd.FEATURE_TAG] == "video.stt"
    assert {"whisper", "metaxy"} <= set(spec.kinds)
    assert spec.owners == ["team:speech"]
    assert {d.asset_key for d in spec.deps} == {dg.AssetKey("model_weights"), RAW}


def test_column_lineage_follows_columns_and_rename() -> None:
    class Doc(mx.BaseFeature, spec=mx.FeatureSpec(key="docs/raw", id_columns=["doc_id"], fields=["text"])):
        doc_id: str
        path: str
        lang: str

    class Summary(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key="docs/summary",
            id_columns=["doc_id"],
            deps=[mx.FeatureDep(feature=Doc, columns=["path"], rename={"path": "source_path"})],
            fields=["summary"],
        ),
    ):
        doc_id: str
        source_path: str
        summary: str

    spec = mxd.metaxify(dg.AssetSpec("summaries"), Summary)
    lineage = spec.metadata["dagster/column_lineage"]
    assert {
        c: [(d.asset_key, d.column_name) for d in deps] for c, deps in lineage.deps_by_column.items()
    } == {
        "doc_id": [(dg.AssetKey(["docs", "raw"]), "doc_id")],
        "source_path": [(dg.AssetKey(["docs", "raw"]), "path")],
    }
    assert mxd.column_lineage(Doc) is None  # a root has no upstream columns


def _stt_body(
    context: dg.AssetExecutionContext, store: mxd.MetaxyStoreResource, transcript: Any, asset_key: Any = None
) -> dg.MaterializeResult:
    """The documented pattern: resolve, compute, write with the increment's provenance, version."""
    with store.open() as s:
        increment = s.resolve_update(transcript)
        todo = pl.concat(
            [increment.new.to_polars(), increment.stale.to_polars().drop("metaxy_changed_fields")],
            how="diagonal_relaxed",
        )
        rows = todo.select(
            "video_id", "metaxy_provenance_by_field", "metaxy_provenance", pl.lit("hi").alias("text")
        )
        written = s.write(transcript, rows, materialization_id=context.run_id) if rows.height else 0
        version = mxd.feature_data_version(s, transcript)
    return dg.MaterializeResult(
        asset_key=asset_key,
        data_version=version.as_dagster(),
        metadata={"written": written, "dagster/row_count": version.row_count},
    )


def test_own_asset_body_materializes_with_metaxy_versions(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    raw, *_ = build_assets(features, samples)

    @dg.asset
    def stt(context: dg.AssetExecutionContext, metaxy_store: mxd.MetaxyStoreResource) -> dg.MaterializeResult:
        return _stt_body(context, metaxy_store, features.Transcript)

    stt = mxd.metaxify(stt, features.Transcript)
    assert stt.key == STT
    assert stt.specs_by_key[STT].deps[0].asset_key == RAW
    result = dg.materialize([raw, stt], instance=instance, resources=res)
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == STT]
    assert event.materialization.metadata["written"].value == 2
    with res["metaxy_store"].open() as s:
        expected = mxd.feature_data_version(s, features.Transcript).data_version
    assert event.materialization.tags["dagster/data_version"] == expected
    assert stt.specs_by_key[STT].code_version == features.Transcript.feature_code_version()
    again = dg.materialize([stt], instance=instance, resources=res)
    (event,) = again.get_asset_materialization_events()
    assert event.materialization.metadata["written"].value == 0
    assert event.materialization.tags["dagster/data_version"] == expected


def test_multi_asset_maps_its_own_keys_to_features(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    raw, chunk, *_ = build_assets(features, samples)

    @dg.multi_asset(specs=[dg.AssetSpec("faces_out"), dg.AssetSpec("stt_out")])
    def both(context: dg.AssetExecutionContext, metaxy_store: mxd.MetaxyStoreResource) -> Any:
        with metaxy_store.open() as s:
            todo = s.resolve_update(features.Faces).new.to_polars()
            s.write(
                features.Faces,
                todo.select("video_chunk_id", "metaxy_provenance_by_field", num_faces=pl.lit(1)),
            )
            faces_version = mxd.feature_data_version(s, features.Faces)
        yield dg.MaterializeResult(asset_key="faces_out", data_version=faces_version.as_dagster())
        yield _stt_body(context, metaxy_store, features.Transcript, asset_key="stt_out")

    both = mxd.metaxify(both, features={"faces_out": features.Faces, "stt_out": features.Transcript})
    specs = both.specs_by_key
    assert set(specs) == {dg.AssetKey("faces_out"), dg.AssetKey("stt_out")}
    assert [d.asset_key for d in specs[dg.AssetKey("faces_out")].deps] == [CHUNK]
    assert [d.asset_key for d in specs[dg.AssetKey("stt_out")].deps] == [RAW]
    assert specs[dg.AssetKey("faces_out")].metadata["metaxy/feature"] == "video/faces"
    result = dg.materialize([raw, chunk, both], instance=instance, resources=res)
    assert result.success
    versions = {
        e.asset_key: e.materialization.tags["dagster/data_version"]
        for e in result.get_asset_materialization_events()
    }
    with res["metaxy_store"].open() as s:
        assert versions[dg.AssetKey("faces_out")] == mxd.feature_data_version(s, features.Faces).data_version


def test_multi_asset_matched_by_translator_keys(features: Features) -> None:
    @dg.multi_asset(specs=[dg.AssetSpec(FACES), dg.AssetSpec("unrelated")])
    def both():  # type: ignore[no-untyped-def]
        yield from ()

    enriched = mxd.metaxify(both)  # matched against the active graph
    assert enriched.specs_by_key[FACES].metadata["metaxy/feature"] == "video/faces"
    assert "metaxy/feature" not in enriched.specs_by_key[dg.AssetKey("unrelated")].metadata


def test_ambiguous_or_unknown_mappings_are_refused(features: Features) -> None:
    @dg.multi_asset(specs=[dg.AssetSpec("a"), dg.AssetSpec("b")])
    def two():  # type: ignore[no-untyped-def]
        yield from ()

    with pytest.raises(mxd.MetaxyDefinitionError, match=r"has 2 specs .* pass features="):
        mxd.metaxify(two, features.Faces)
    with pytest.raises(mxd.MetaxyDefinitionError, match="names asset 'c'"):
        mxd.metaxify(two, features={"c": features.Faces})
    with pytest.raises(mxd.MetaxyDefinitionError, match="video/faces"):
        mxd.metaxify(two, features=[features.Faces])


def test_deps_name_an_upstream_kept_under_its_own_key(features: Features) -> None:
    """An upstream feature's asset under another key is given in deps=: deps and column lineage use its key."""
    videos = mxd.metaxify(dg.AssetSpec("videos_table"), features.Video, keep_key=True)

    @dg.asset(deps=[videos])
    def chunks() -> None: ...

    enriched = mxd.metaxify(chunks, features.Chunk, deps=[videos])
    (spec,) = enriched.specs
    assert [d.asset_key for d in spec.deps] == [dg.AssetKey("videos_table")]
    assert enriched.keys_by_input_name == {"videos_table": dg.AssetKey("videos_table")}
    lineage = spec.metadata["dagster/column_lineage"].deps_by_column
    assert {d.asset_key for deps in lineage.values() for d in deps} == {dg.AssetKey("videos_table")}
    on_spec = mxd.metaxify(dg.AssetSpec("chunks_table"), features.Chunk, deps=[videos])
    assert [d.asset_key for d in on_spec.deps] == [dg.AssetKey("videos_table")]
