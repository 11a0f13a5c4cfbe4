"""Asset definitions from features: keys, deps, versions, metadata, order of execution, body contract."""

from typing import Any

import dagster as dg
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import metaxy_core as mx
import metaxy_dagster as mxd
from tests.dagster.pipeline import Features, Samples, build_assets, counts, materialization_metadata

RAW, CHUNK, FACES, STT = (dg.AssetKey(["video", k]) for k in ("raw", "chunk", "faces", "stt"))


def _spec(asset: dg.AssetsDefinition) -> dg.AssetSpec:
    (spec,) = asset.specs
    return spec


def test_asset_specs_come_from_the_features(features: Features, samples: Samples) -> None:
    raw, chunk, faces, stt = build_assets(features, samples)
    assert [a.key for a in (raw, chunk, faces, stt)] == [RAW, CHUNK, FACES, STT]
    assert chunk.asset_deps[CHUNK] == {RAW}
    assert faces.asset_deps[FACES] == {CHUNK}
    assert stt.asset_deps[STT] == {RAW}
    assert raw.asset_deps[RAW] == set()

    spec = _spec(chunk)
    assert spec.code_version == features.Chunk.feature_code_version()
    assert _spec(raw).code_version == features.Video.feature_code_version()
    assert spec.description == "Fixed-length chunks of each video."
    assert spec.group_name == "video"
    assert set(spec.kinds) == {"metaxy", "duckdb"}
    meta = spec.metadata
    assert meta["metaxy/feature"] == "video/chunk"
    assert meta["metaxy/feature_version"] == features.Chunk.feature_version()
    assert meta["metaxy/field_versions"].value == features.Chunk.field_versions()
    assert meta["metaxy/id_columns"].value == ["video_chunk_id"]
    assert meta["dagster/table_name"] == "video__chunk"
    fields_md = meta["metaxy/fields"].value
    assert "| `audio` | initial |" in fields_md
    assert "video/raw.audio" in fields_md
    assert "| `video/raw` | expansion | video_id |" in meta["metaxy/lineage"].value

    schema = meta["dagster/column_schema"]
    assert isinstance(schema, dg.TableSchema)
    names = [(c.name, c.type) for c in schema.columns]
    assert names[:3] == [("video_chunk_id", "String"), ("video_id", "String"), ("chunk_index", "Int64")]
    assert [n for n, _ in names[3:]] == list(mx.columns.SYSTEM_COLUMNS)


def test_translator_overrides(features: Features, samples: Samples) -> None:
    class Custom(mxd.MetaxyTranslator):
        def get_group_name(self, feature: type[mx.BaseFeature]) -> str | None:
            return "media"

        def get_tags(self, feature: type[mx.BaseFeature]) -> dict[str, str]:
            return {"team": "vision"}

        def get_metadata(self, feature: type[mx.BaseFeature]) -> dict[str, Any]:
            return {**super().get_metadata(feature), "owner_note": "hand-made"}

    tr = Custom(mxd.MetaxyTranslatorSettings(key_prefix=("ml",), store_kind="postgres"))
    _raw, chunk, *_ = build_assets(features, samples, translator=tr)
    assert chunk.key == dg.AssetKey(["ml", "video", "chunk"])
    assert chunk.asset_deps[chunk.key] == {dg.AssetKey(["ml", "video", "raw"])}
    spec = _spec(chunk)
    assert spec.group_name == "media"
    assert spec.tags["team"] == "vision"
    assert spec.metadata["owner_note"] == "hand-made"
    assert set(spec.kinds) == {"metaxy", "postgres"}


def test_steps_run_in_graph_order_within_one_run(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    raw, chunk, faces, stt = build_assets(features, samples)
    result = dg.materialize([faces, stt, chunk, raw], instance=instance, resources=res)
    assert result.success
    assert samples.calls.index("raw") < samples.calls.index("chunk") < samples.calls.index("faces")
    assert samples.calls.index("raw") < samples.calls.index("stt")
    # faces saw the chunks written earlier in the same run: 2 + 3 of them.
    assert counts(materialization_metadata(result)) == {
        "video/raw": (2, 0, 0, 2),
        "video/chunk": (2, 0, 0, 5),
        "video/faces": (5, 0, 0, 5),
        "video/stt": (2, 0, 0, 2),
    }


def _stored(database: str, feature: type[mx.BaseFeature]) -> pl.DataFrame:
    with mx.DuckDBMetadataStore(database) as store:
        if not store.has_feature(feature):
            return pl.DataFrame()
        return store.read(feature).to_polars()


def test_rows_outside_the_increment_fail_and_write_nothing(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any], database: str
) -> None:
    raw, chunk, *_ = build_assets(features, samples)
    dg.materialize([raw, chunk], instance=instance, resources=res)
    samples.videos["v1"] = ("a1-new", "f1")
    dg.materialize([raw], instance=instance, resources=res)

    @mxd.metaxy_asset(features.Chunk)
    def greedy_chunk(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        # Writes children for v2 too, although only v1 is stale.
        return pl.DataFrame(
            {"video_id": ["v1", "v2"], "video_chunk_id": ["v1_0", "v2_0"], "chunk_index": [0, 0]}
        )

    before = _stored(database, features.Chunk).sort("video_chunk_id")
    with pytest.raises(
        mxd.MetaxyOutputError,
        match=r"returned rows for 1 parent\(s\) outside this run's increment, e\.g\. \[\{'video_id': 'v2'\}\].*Nothing was written",
    ):
        dg.materialize([greedy_chunk], instance=instance, resources=res, selection=[greedy_chunk])
    after = _stored(database, features.Chunk).sort("video_chunk_id")
    assert after.equals(before)


def test_rows_without_id_columns_fail_and_write_nothing(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any], database: str
) -> None:
    raw, *_ = build_assets(features, samples)

    @mxd.metaxy_asset(features.Chunk)
    def no_ids(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        return increment.to_process().select("video_id", pl.lit(0).alias("chunk_index"))

    dg.materialize([raw], instance=instance, resources=res)
    with pytest.raises(
        mxd.MetaxyOutputError,
        match=r"feature 'video/chunk' returned rows without id column\(s\) \['video_chunk_id'\].*Nothing was written",
    ):
        dg.materialize([raw, no_ids], instance=instance, resources=res, selection=[no_ids])
    assert _stored(database, features.Chunk).height == 0


@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(lambda df: df, id="polars"),
        pytest.param(lambda df: df.to_pandas(), id="pandas"),
        pytest.param(lambda df: df.to_arrow(), id="pyarrow"),
    ],
)
def test_body_may_return_polars_pandas_or_pyarrow(
    convert: Any,
    features: Features,
    samples: Samples,
    instance: dg.DagsterInstance,
    res: dict[str, Any],
    database: str,
) -> None:
    raw, *_ = build_assets(features, samples)

    @mxd.metaxy_asset(features.Transcript)
    def stt(increment: mxd.MetaxyIncrement) -> Any:
        out = convert(increment.to_process().select("video_id", pl.lit("hi").alias("text")))
        assert isinstance(out, pl.DataFrame | pd.DataFrame | pa.Table)
        return out

    result = dg.materialize([raw, stt], instance=instance, resources=res)
    assert counts(materialization_metadata(result))["video/stt"] == (2, 0, 0, 2)
    stored = _stored(database, features.Transcript).sort("video_id")
    assert stored["text"].to_list() == ["hi", "hi"]
    assert stored["metaxy_provenance"].null_count() == 0


def test_root_body_returning_samples_writes_new_and_stale_and_reports_orphans(
    features: Features, instance: dg.DagsterInstance, res: dict[str, Any], database: str
) -> None:
    listed = {"frame": Samples(videos={"a": ("1", "1"), "b": ("2", "2"), "c": ("3", "3")}).frame()}

    @mxd.metaxy_asset(features.Video)
    def raw() -> pl.DataFrame:
        return listed["frame"]

    first = materialization_metadata(dg.materialize([raw], instance=instance, resources=res))["video/raw"]
    assert (
        first["metaxy/new"],
        first["metaxy/stale"],
        first["metaxy/orphaned"],
        first["metaxy/written"],
    ) == (3, 0, 0, 3)
    listed["frame"] = Samples(videos={"a": ("1", "1"), "b": ("2", "2b")}).frame()
    second = materialization_metadata(dg.materialize([raw], instance=instance, resources=res))["video/raw"]
    assert (
        second["metaxy/new"],
        second["metaxy/stale"],
        second["metaxy/orphaned"],
        second["metaxy/written"],
    ) == (0, 1, 1, 1)
    assert second["metaxy/changed_fields"] == {"frames": 1}
    # Orphans are reported, not deleted: c is still stored.
    assert sorted(_stored(database, features.Video)["video_id"]) == ["a", "b", "c"]


def test_root_without_samples_provider_cannot_ask_for_an_increment(features: Features) -> None:
    with pytest.raises(
        mxd.MetaxyDefinitionError, match=r"'video/raw' is a root feature without a samples provider"
    ):

        @mxd.metaxy_asset(features.Video)
        def raw(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
            return increment.to_process()


def test_build_metaxy_assets_needs_a_body_for_non_roots(features: Features, samples: Samples) -> None:
    with pytest.raises(mxd.MetaxyDefinitionError, match=r"Feature 'video/chunk' needs an asset body"):
        mxd.build_metaxy_assets(features.all, samples={features.Video: samples.frame})


def test_build_metaxy_assets_factory(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    def chunk(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        return increment.to_process().select(
            "video_id", (pl.col("video_id") + "_0").alias("video_chunk_id"), pl.lit(0).alias("chunk_index")
        )

    def faces(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        return increment.to_process().select("video_chunk_id", pl.lit(1).alias("num_faces"))

    def stt(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        return increment.to_process().select("video_id", pl.lit("x").alias("text"))

    assets = mxd.build_metaxy_assets(
        reversed(features.all),
        compute={features.Chunk: chunk, features.Faces: faces, features.Transcript: stt},
        samples={features.Video: samples.frame},
    )
    assert [a.key for a in assets] == [RAW, CHUNK, FACES, STT]
    result = dg.materialize(assets, instance=instance, resources=res)
    assert counts(materialization_metadata(result)) == {
        "video/raw": (2, 0, 0, 2),
        "video/chunk": (2, 0, 0, 2),
        "video/faces": (2, 0, 0, 2),
        "video/stt": (2, 0, 0, 2),
    }


@pytest.mark.filterwarnings("ignore::dagster.BetaWarning")  # Output(data_version=...) is beta in Dagster
def test_user_provided_data_version_via_output(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    raw, *_ = build_assets(features, samples)

    @mxd.metaxy_asset(features.Transcript)
    def stt(increment: mxd.MetaxyIncrement) -> dg.Output:
        rows = increment.to_process().select("video_id", pl.lit("x").alias("text"))
        return dg.Output(rows, data_version=dg.DataVersion("model-7"), metadata={"model": "whisper-tiny"})

    result = dg.materialize([raw, stt], instance=instance, resources=res)
    mat = next(e.materialization for e in result.get_asset_materialization_events() if e.asset_key == STT)
    assert mat.tags["dagster/data_version"] == "model-7"
    assert mat.metadata["metaxy/user_data_version"].value == "model-7"
    assert mat.metadata["model"].value == "whisper-tiny"
    assert mat.metadata["metaxy/written"].value == 2


def test_io_manager_loads_features_for_plain_assets_and_writes_plain_outputs(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any], database: str
) -> None:
    raw, chunk, *_ = build_assets(features, samples)

    @dg.asset(ins={"chunks": dg.AssetIn(key=CHUNK)})
    def chunk_report(chunks: pl.DataFrame) -> int:
        assert sorted(chunks["video_chunk_id"]) == ["v1_0", "v1_1", "v2_0", "v2_1", "v2_2"]
        assert "metaxy_data_version" in chunks.columns
        return chunks.height

    @dg.asset(
        key=STT, deps=[RAW], metadata={"metaxy/feature": "video/stt"}, io_manager_key="metaxy_io_manager"
    )
    def plain_stt() -> pl.DataFrame:
        return pl.DataFrame({"video_id": ["v1", "v2"], "text": ["a", "b"]})

    result = dg.materialize([raw, chunk, chunk_report, plain_stt], instance=instance, resources=res)
    assert result.output_for_node("chunk_report") == 5
    meta = materialization_metadata(result)["video/stt"]
    assert (meta["metaxy/new"], meta["metaxy/written"]) == (2, 2)
    assert sorted(_stored(database, features.Transcript)["text"]) == ["a", "b"]


def test_expansion_parent_without_children_is_in_sync_after_its_run(
    features: Features, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    samples = Samples(videos={"v1": ("a1", "f1"), "v2": ("a2", "f2")}, chunks_per_video={"v1": 2, "v2": 0})
    raw, chunk, *_ = build_assets(features, samples)
    first = dg.materialize([raw, chunk], instance=instance, resources=res)
    assert counts(materialization_metadata(first))["video/chunk"] == (2, 0, 0, 2)
    # v2 produced no chunks: it was recorded as such, so the next run has nothing to do.
    again = dg.materialize([raw, chunk], instance=instance, resources=res)
    assert counts(materialization_metadata(again))["video/chunk"] == (0, 0, 0, 0)
