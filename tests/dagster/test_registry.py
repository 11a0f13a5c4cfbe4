"""No silent global state: what the factories know is bound to the assets they built, two assets for
one feature in a code location are refused naming both, and ``store=`` means one thing."""

from typing import Any

import dagster as dg
import polars as pl
import pytest

import metaxy_core as mx
import metaxy_dagster as mxd
from metaxy_dagster.io_manager import lookup_feature, register_feature
from tests.dagster.pipeline import Features, Samples, build_assets, define_features


def _second_raw(features: Features, samples: Samples) -> dg.AssetsDefinition:
    @mxd.metaxy_asset(features.Video, samples=samples.frame, key_prefix="copy")
    def raw_again(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        return increment.to_process().select("video_id", "path")

    return raw_again


def _message(result: dg.ExecuteInProcessResult) -> str:
    failure = next(e for e in result.all_events if e.is_step_failure)
    error = failure.step_failure_data.error
    return error.cause.message if error.cause else error.message


def test_two_assets_for_one_feature_fail_the_run_naming_both(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    raw, *_ = build_assets(features, samples)
    twin = _second_raw(features, samples)
    result = dg.materialize([raw, twin], instance=instance, resources=res, raise_on_error=False)
    assert not result.success
    message = _message(result)
    assert "'video/raw' by copy/video/raw, video/raw" in message
    assert "one asset per feature" in message


def test_the_code_location_is_checked_even_when_one_asset_is_selected(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    raw, chunk, *_ = build_assets(features, samples)
    defs = dg.Definitions(assets=[raw, chunk, _second_raw(features, samples)], resources=res)
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, asset_selection=[chunk.key], raise_on_error=False)
    assert not result.success
    assert "'video/raw' by copy/video/raw, video/raw" in _message(result)

    fine = dg.Definitions(assets=[raw, chunk], resources=res)
    sensor = mxd.build_metaxy_sensor([raw, chunk])  # its own assets are fine...
    with dg.build_sensor_context(instance=instance, definitions=fine, resources=res) as context:
        assert isinstance(sensor(context), dg.SensorResult)
    with (
        dg.build_sensor_context(instance=instance, definitions=defs, resources=res) as context,
        pytest.raises(mxd.MetaxyDefinitionError, match="'video/raw' by copy/video/raw, video/raw"),
    ):
        sensor(context)  # ...but the code location it runs in is not


def test_a_sensor_given_both_assets_is_a_definition_error(features: Features, samples: Samples) -> None:
    raw, *_ = build_assets(features, samples)
    with pytest.raises(mxd.MetaxyDefinitionError, match="'video/raw' has two assets"):
        mxd.build_metaxy_sensor([raw, _second_raw(features, samples)])


def test_sensors_use_their_own_assets_samples_not_the_latest_built(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    mine = build_assets(features, samples)
    # Another definition of the same feature key, with other samples, built later in the process.
    with mx.FeatureGraph().use():
        other = define_features()
        three = Samples(videos={"x": ("1", "2"), "y": ("3", "4"), "z": ("5", "6")})
        build_assets(other, three)
    sensor = mxd.build_metaxy_sensor(mine)
    with dg.build_sensor_context(instance=instance, resources=res) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    assert result.run_requests[0].tags["metaxy/video__raw"] == "new=2 stale=0 orphaned=0"

    # A sensor given only feature classes finds no samples provider by key any more: it says so.
    bare = mxd.build_metaxy_sensor(features=[features.Video])
    with dg.build_sensor_context(instance=instance, resources=res) as context:
        skipped = bare(context)
    assert isinstance(skipped, dg.SkipReason)
    assert "Not counted (root without samples provider): video/raw" in (skipped.skip_message or "")


def test_io_manager_uses_the_feature_class_bound_to_the_asset(features: Features, samples: Samples) -> None:
    raw, *_ = build_assets(features, samples)
    with mx.FeatureGraph().use():
        shadow = define_features()  # same keys, other classes, active now
        assert lookup_feature("video/raw") is shadow.Video
        output = raw.get_output_name_for_asset_key(raw.key)
        assert lookup_feature("video/raw", raw.node_def, output) is features.Video


def test_store_means_which_store_everywhere(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "metaxy.toml").write_text(
        '[stores.dev]\ntype = "duckdb"\n[stores.dev.config]\ndatabase = "dev.duckdb"\n'
    )
    mx.set_config(None)
    by_name = mxd.MetaxyIOManager(store="dev")
    assert isinstance(by_name.store, mxd.MetaxyStoreResource)
    assert by_name.store.store == "dev"
    assert (
        by_name.store.describe()
        == mxd.MetaxyStoreResource(store="dev").describe()
        == "DuckDBMetadataStore(dev.duckdb)"
    )
    given = mxd.MetaxyStoreResource(type="memory")
    assert mxd.MetaxyIOManager(store=given).store is given


def test_announced_classes_answer_only_unambiguously(features: Features) -> None:
    with mx.FeatureGraph().use():
        first = define_features()
    with mx.FeatureGraph().use():
        second = define_features()
    with mx.FeatureGraph().use():  # an active graph without these features
        register_feature(first.Video)
        assert lookup_feature("video/raw") is first.Video
        register_feature(second.Video)
        with pytest.raises(mxd.MetaxyDefinitionError, match="2 different classes were registered"):
            lookup_feature("video/raw")
    assert lookup_feature("video/raw") is features.Video  # the active graph answers first
