"""The plan in Dagster: run records after materializations, the graph asset's plan table, and the
sensor requesting the predicted set in one run."""

from typing import Any

import dagster as dg
import pytest

import metaxy_core as mx
import metaxy_dagster as mxd
from tests.dagster.pipeline import Samples, build_assets, define_features, materialization_metadata
from tests.dagster.test_sensor import CHUNK, FACES, RAW, STT, evaluate, run


def test_predicted_sensor_requests_the_predicted_set_in_one_run(
    samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any], database: str
) -> None:
    assets = build_assets(define_features(), samples)
    sensor = mxd.build_metaxy_sensor(assets, include_downstream="predicted")

    # nothing stored: the chunks' children are unknown, so faces is requested as well
    first = evaluate(sensor, instance, res, assets)
    assert set(first.asset_selection) == {RAW, CHUNK, FACES, STT}
    assert first.tags["metaxy/plan_estimated_seconds"] == "unknown"
    run(first, assets, instance, res)
    assert sorted(samples.calls) == ["chunk", "faces", "raw", "stt"]

    # every materialization that recomputed samples left a run record
    with mx.DuckDBMetadataStore(database=database) as store:
        records = store.read_system("runs")
    assert records is not None
    assert dict(zip(records["feature"], records["samples"], strict=True)) == {
        "video/raw": 2,
        "video/chunk": 2,
        "video/faces": 5,
        "video/stt": 2,
    }
    assert (records["seconds"] > 0).all()

    # only the audio changes: one run for raw, chunk and stt; faces read frames only and stay out
    samples.videos["v1"] = ("a1-edited", "f1")
    second = evaluate(sensor, instance, res, assets)
    assert set(second.asset_selection) == {RAW, CHUNK, STT}
    assert float(second.tags["metaxy/plan_estimated_seconds"]) > 0
    # the plain sensor takes every downstream asset instead
    everything = evaluate(mxd.build_metaxy_sensor(assets, include_downstream=True), instance, res, assets)
    assert set(everything.asset_selection) == {RAW, CHUNK, FACES, STT}
    samples.calls.clear()
    run(second, assets, instance, res)
    assert sorted(samples.calls) == ["chunk", "raw", "stt"]
    assert isinstance(evaluate(sensor, instance, res, assets), str)  # in sync: a skip


def test_graph_asset_shows_the_plan(
    samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    assets = build_assets(define_features(), samples)
    graph_asset = mxd.build_metaxy_graph_asset()
    result = dg.materialize([*assets, graph_asset], instance=instance, resources=res)
    assert result.success
    samples.videos["v2"] = ("a2", "f2-edited")
    result = dg.materialize([*assets, graph_asset], instance=instance, resources=res, selection=[graph_asset])
    meta = materialization_metadata(result)["metaxy/graph"]
    table = meta["metaxy/plan"]
    assert "| video/faces | 0 | 0 | 0 | 3 |" in table
    assert "| video/stt | 0 | 0 | 0 | 0 |" in table
    assert meta["metaxy/plan_features_to_run"] == 3
    assert meta["metaxy/plan_samples_to_process"] == 1 + 1 + 3
    assert meta["metaxy/plan_estimated_seconds"] > 0


def test_sensor_rejects_unknown_include_downstream(samples: Samples) -> None:
    assets = build_assets(define_features(), samples)
    with pytest.raises(mxd.MetaxyDefinitionError, match="'predicted'"):
        mxd.build_metaxy_sensor(assets, include_downstream="everything")  # type: ignore[arg-type]
