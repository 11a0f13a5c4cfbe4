"""``dg.asset`` options passed to metaxy_asset: merged with the translator's values, honoured by Dagster."""

from typing import Any

import dagster as dg
import polars as pl
import pytest

import metaxy_dagster as mxd
from tests.dagster.pipeline import Features, Samples, build_assets

STT = dg.AssetKey(["video", "stt"])


def test_spec_options_merge_with_the_translator(features: Features) -> None:
    @mxd.metaxy_asset(
        features.Transcript,
        metadata={"team": "speech"},
        tags={"tier": "gold"},
        kinds={"whisper"},
        owners=["team:speech"],
        deps=["model_weights"],
        code_version="v7",
        group_name="speech",
        description="Transcripts.",
        automation_condition=dg.AutomationCondition.eager(),
        retry_policy=dg.RetryPolicy(max_retries=2),
        op_tags={"gpu": "1"},
        key_prefix="ml",
    )
    def stt(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        return increment.to_process().select("video_id", pl.lit("x").alias("text"))

    (spec,) = stt.specs
    assert spec.key == dg.AssetKey(["ml", "video", "stt"])
    assert spec.metadata["team"] == "speech"
    assert spec.metadata["metaxy/feature"] == "video/stt"  # the translator's metadata is kept
    assert spec.tags["tier"] == "gold"
    assert {"metaxy", "whisper"} <= set(spec.kinds)
    assert spec.owners == ["team:speech"]
    assert {d.asset_key for d in spec.deps} >= {dg.AssetKey("model_weights"), dg.AssetKey(["video", "raw"])}
    assert (spec.code_version, spec.group_name, spec.description) == ("v7", "speech", "Transcripts.")
    assert spec.automation_condition is not None
    assert stt.op.retry_policy.max_retries == 2
    assert stt.op.tags["gpu"] == "1"


def test_unknown_option_names_the_supported_ones(features: Features) -> None:
    with pytest.raises(mxd.MetaxyDefinitionError, match="unsupported option"):
        mxd.metaxy_asset(features.Transcript, key="elsewhere")(lambda increment: None)


def test_lossy_key_types_fail_the_step(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    raw, chunk, *_ = build_assets(features, samples)
    dg.materialize([raw, chunk], instance=instance, resources=res)

    @mxd.metaxy_asset(features.Faces)
    def faces(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        # ids like 'v1_0' cannot become floats; a float id column where strings are expected must fail
        todo = increment.to_process()
        return pl.DataFrame({"video_chunk_id": [1.5] * todo.height, "num_faces": [0] * todo.height})

    result = dg.materialize(
        [raw, chunk, faces], instance=instance, resources=res, raise_on_error=False, selection=[faces.key]
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    error = failure.step_failure_data.error
    message = error.cause.message if error.cause else error.message
    assert "video_chunk_id" in message
    assert "Nothing was written" in message


@pytest.mark.parametrize(
    ("returned", "lossless"),
    [
        (pl.Series("doc_id", [1.5, 2.0]), False),  # 1.5 would become sample 1
        (pl.Series("doc_id", ["001", "2"]), False),  # '001' would become sample 1
        (pl.Series("doc_id", [1.0, 2.0]), True),
        (pl.Series("doc_id", [1, 2], dtype=pl.Int32), True),
        (pl.Series("doc_id", ["1", "2"]), True),
    ],
)
def test_key_columns_are_converted_only_losslessly(
    features: Features, returned: pl.Series, lossless: bool
) -> None:
    from metaxy_dagster.io_manager import _align_key_types

    increment_keys = pl.DataFrame({"doc_id": [1, 2]})
    rows = pl.DataFrame([returned])
    if lossless:
        aligned = _align_key_types(features.Faces, rows, increment_keys, ["doc_id"])
        assert aligned.schema["doc_id"] == pl.Int64
        assert aligned["doc_id"].to_list() == [1, 2]
    else:
        with pytest.raises(mxd.MetaxyOutputError, match=r"'doc_id'.*converting changes some values"):
            _align_key_types(features.Faces, rows, increment_keys, ["doc_id"])


def test_translator_hooks_and_feature_tag(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    class Custom(mxd.MetaxyTranslator):
        def get_owners(self, feature: Any) -> list[str]:
            return ["team:ml"]

        def get_automation_condition(self, feature: Any) -> dg.AutomationCondition:
            return mxd.metaxy_automation_condition()

        def get_partition_mapping(self, feature: Any, upstream: Any) -> dg.PartitionMapping:
            return dg.AllPartitionMapping()

        def get_check_specs(self, feature: Any, asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
            return (
                [dg.AssetCheckSpec("rows_have_text", asset=asset_key)]
                if feature is features.Transcript
                else []
            )

    tr = Custom()
    raw, *_ = build_assets(features, samples, translator=tr)

    @mxd.metaxy_asset(features.Transcript, translator=tr)
    def stt(increment: mxd.MetaxyIncrement) -> Any:
        rows = increment.to_process().select("video_id", pl.lit("hi").alias("text"))
        yield dg.AssetCheckResult(check_name="rows_have_text", passed=True)
        yield rows

    (spec,) = stt.specs
    assert spec.owners == ["team:ml"]
    assert spec.automation_condition is not None
    assert spec.automation_condition.get_label() == "metaxy"
    (dep,) = spec.deps
    assert isinstance(dep.partition_mapping, dg.AllPartitionMapping)
    assert spec.tags[mxd.FEATURE_TAG] == "video.stt"
    assert {k.name for k in stt.check_keys} == {"rows_have_text", "metaxy_in_sync", "metaxy_no_orphans"}
    result = dg.materialize([raw, stt], instance=instance, resources=res)
    assert {e.check_name for e in result.get_asset_check_evaluations() if e.asset_key == STT} == {
        "rows_have_text",
        "metaxy_in_sync",
        "metaxy_no_orphans",
    }

    graph_asset = mxd.build_metaxy_graph_asset()
    defs_assets = [raw, stt, graph_asset]
    everything = mxd.select_metaxy_assets().resolve(defs_assets)
    assert {RAW_KEY, STT} <= everything
    assert mxd.select_metaxy_assets(features.Video).resolve(defs_assets) == {RAW_KEY}
    assert mxd.select_metaxy_assets(features.Video, downstream=True).resolve(defs_assets) == {RAW_KEY, STT}


RAW_KEY = dg.AssetKey(["video", "raw"])


class ModelWeights(dg.ConfigurableResource):
    name: str = "tiny"


def test_ins_and_annotated_resources_reach_the_body(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    raw, *_ = build_assets(features, samples)
    seen: dict[str, Any] = {}

    @dg.asset
    def vocabulary() -> list[str]:
        return ["hello", "world"]

    @mxd.metaxy_asset(features.Transcript, ins={"vocab": dg.AssetIn("vocabulary")})
    def stt(increment: mxd.MetaxyIncrement, vocab: list[str], weights: ModelWeights) -> pl.DataFrame:
        seen.update(vocab=vocab, weights=weights.name)
        return increment.to_process().select("video_id", pl.lit(vocab[0]).alias("text"))

    assert dg.AssetKey("vocabulary") in stt.asset_deps[STT]
    result = dg.materialize(
        [raw, vocabulary, stt], instance=instance, resources={**res, "weights": ModelWeights(name="big")}
    )
    assert result.success
    assert seen == {"vocab": ["hello", "world"], "weights": "big"}


def test_unannotated_unknown_parameters_are_explained(features: Features) -> None:
    def body(increment: mxd.MetaxyIncrement, weights) -> None:  # type: ignore[no-untyped-def]
        return None

    with pytest.raises(
        mxd.MetaxyDefinitionError, match=r"parameter 'weights' is not context.*Annotate a resource"
    ):
        mxd.metaxy_asset(features.Transcript)(body)
    with pytest.raises(mxd.MetaxyDefinitionError, match=r"ins= names \['vocab'\]"):
        mxd.metaxy_asset(features.Transcript, ins={"vocab": dg.AssetIn("vocabulary")})(lambda increment: None)


def test_deps_on_an_upstream_feature_asset_rewire_its_dep(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    """An upstream feature's asset under another key (key_prefix, metaxify's keep_key) is wired by passing it
    in deps=: it replaces the key the translator would give that feature, so no phantom asset appears and
    the run orders the steps."""

    @mxd.metaxy_asset(features.Video, samples=samples.frame, key_prefix="lake")
    def raw(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        samples.calls.append("raw")
        return increment.to_process().select("video_id", "path")

    @mxd.metaxy_asset(features.Transcript, key_prefix="lake", deps=[raw])
    def stt(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        samples.calls.append("stt")
        return increment.to_process().select("video_id", pl.lit("x").alias("text"))

    (spec,) = stt.specs
    assert [d.asset_key for d in spec.deps] == [dg.AssetKey(["lake", "video", "raw"])]
    graph = dg.Definitions(assets=[stt, raw], resources=res).resolve_asset_graph()
    assert set(graph.get_all_asset_keys()) == {dg.AssetKey(["lake", "video", "raw"]), spec.key}
    result = dg.materialize([stt, raw], resources=res, instance=instance)
    assert result.success
    assert samples.calls == ["raw", "stt"]

    external = mxd.metaxify(dg.AssetSpec("videos_table"), features.Video, keep_key=True)
    by_spec = mxd.metaxy_asset(features.Transcript, deps=[external])(stt_body)
    assert [d.asset_key for d in by_spec.specs_by_key[by_spec.key].deps] == [dg.AssetKey("videos_table")]


def stt_body(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
    return increment.to_process().select("video_id", pl.lit("x").alias("text"))


def test_build_metaxy_assets_takes_options_per_feature(features: Features, samples: Samples) -> None:
    built = mxd.build_metaxy_assets(
        [features.Video, features.Transcript],
        compute={features.Transcript: stt_body},
        samples={features.Video: samples.frame},
        options={
            features.Transcript: {"owners": ["team:speech"], "retry_policy": dg.RetryPolicy(max_retries=3)},
            features.Video: {"group_name": "ingest", "metadata": {"source": "s3"}},
        },
    )
    raw, stt = built
    assert isinstance(raw, dg.AssetsDefinition)
    assert isinstance(stt, dg.AssetsDefinition)
    (raw_spec,) = raw.specs
    (stt_spec,) = stt.specs
    assert (raw_spec.group_name, raw_spec.metadata["source"]) == ("ingest", "s3")
    assert raw_spec.metadata["metaxy/feature"] == "video/raw"
    assert stt_spec.owners == ["team:speech"]
    assert stt.op.retry_policy == dg.RetryPolicy(max_retries=3)
    # An upstream given its own key_prefix stays wired to the features built with it.
    prefixed = mxd.build_metaxy_assets(
        [features.Video, features.Transcript],
        compute={features.Transcript: stt_body},
        samples={features.Video: samples.frame},
        options={features.Video: {"key_prefix": "lake"}},
    )
    prefixed_stt = prefixed[1]
    assert isinstance(prefixed_stt, dg.AssetsDefinition)
    assert [d.asset_key for d in prefixed_stt.specs_by_key[STT].deps] == [
        dg.AssetKey(["lake", "video", "raw"])
    ]
    with pytest.raises(
        mxd.MetaxyDefinitionError, match=r"\['video/chunk'\] appear in compute/samples/observe/options"
    ):
        mxd.build_metaxy_assets(
            [features.Video], samples={features.Video: samples.frame}, options={features.Chunk: {}}
        )


def test_a_declared_check_without_a_result_fails_before_writing(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    """As with dg.asset, a check_spec the body gives no result for fails the step; nothing is written."""
    raw, *_ = build_assets(features, samples)

    @mxd.metaxy_asset(features.Transcript, check_specs=[dg.AssetCheckSpec("non_empty_text", asset=STT)])
    def stt(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        return increment.to_process().select("video_id", pl.lit("x").alias("text"))

    result = dg.materialize([raw, stt], instance=instance, resources=res, raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.cause.message
    assert "'video/stt'" in message
    assert "['non_empty_text']" in message
    assert "yield dg.AssetCheckResult" in message
    assert [e.asset_key for e in result.get_asset_materialization_events()] == [dg.AssetKey(["video", "raw"])]
    with mxd.MetaxyStoreResource(type="duckdb", config=res["metaxy_store"].config).open() as store:
        assert features.Transcript.spec.key not in store.list_features()
