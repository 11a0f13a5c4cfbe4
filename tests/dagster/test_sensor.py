"""The metaxy sensor, evaluated against a real instance and a real DuckDB store."""

from typing import Any

import dagster as dg
import pytest
from dagster._core.storage.tags import SENSOR_NAME_TAG

import metaxy_core as mx
import metaxy_dagster as mxd
from metaxy_core.stores._incremental import CHECKPOINTS
from metaxy_core.stores.duckdb import DuckDBMetadataStore
from tests.dagster.pipeline import Samples, build_assets, define_features

RAW, CHUNK, FACES, STT = (dg.AssetKey(["video", k]) for k in ("raw", "chunk", "faces", "stt"))


def evaluate(
    sensor: dg.SensorDefinition,
    instance: dg.DagsterInstance,
    res: dict[str, Any],
    assets: list[dg.AssetsDefinition],
) -> Any:
    """One tick through the same evaluation path the daemon uses; the RunRequest or the skip message."""
    defs = dg.Definitions(assets=assets, sensors=[sensor], resources=res)
    with dg.build_sensor_context(
        instance=instance, resources={"metaxy_store": res["metaxy_store"]}, definitions=defs
    ) as context:
        data = sensor.evaluate_tick(context)
    if data.run_requests:
        (request,) = data.run_requests
        return request
    return data.skip_message


def run(
    request: dg.RunRequest,
    assets: list[dg.AssetsDefinition],
    instance: dg.DagsterInstance,
    res: dict[str, Any],
) -> None:
    selection = [a for a in assets if a.key in set(request.asset_selection or [])]
    assert dg.materialize(
        assets, instance=instance, resources=res, selection=selection, tags=request.tags
    ).success


def test_sensor_requests_exactly_the_assets_with_work(
    samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    assets = build_assets(define_features(), samples)
    sensor = mxd.build_metaxy_sensor(assets)
    assert sensor.name == "metaxy_sensor"

    first = evaluate(sensor, instance, res, assets)
    assert isinstance(first, dg.RunRequest)
    assert first.asset_selection == [RAW]
    assert first.tags["metaxy/video__raw"] == "new=2 stale=0 orphaned=0"
    assert (first.tags["metaxy/new"], first.tags["metaxy/stale"], first.tags["metaxy/features"]) == (
        "2",
        "0",
        "1",
    )
    run(first, assets, instance, res)

    second = evaluate(sensor, instance, res, assets)
    assert second.asset_selection == [CHUNK, STT]
    assert second.tags["metaxy/video__chunk"] == "new=2 stale=0 orphaned=0"
    assert second.tags["metaxy/video__stt"] == "new=2 stale=0 orphaned=0"
    run(second, assets, instance, res)

    third = evaluate(sensor, instance, res, assets)
    assert third.asset_selection == [FACES]
    assert third.tags["metaxy/video__faces"] == "new=5 stale=0 orphaned=0"
    run(third, assets, instance, res)

    assert evaluate(sensor, instance, res, assets) == (
        "All 4 counted features are in sync (video/raw: new=0 stale=0 orphaned=0, video/chunk: new=0 stale=0 "
        "orphaned=0, video/faces: new=0 stale=0 orphaned=0, video/stt: new=0 stale=0 orphaned=0)."
    )

    # Only the audio changes: stt and chunk need work after raw, faces never.
    samples.videos["v1"] = ("a1-edited", "f1")
    request = evaluate(sensor, instance, res, assets)
    assert request.asset_selection == [RAW]
    assert request.tags["metaxy/video__raw"] == "new=0 stale=1 orphaned=0"
    run(request, assets, instance, res)
    request = evaluate(sensor, instance, res, assets)
    assert request.asset_selection == [CHUNK, STT]
    assert request.tags["metaxy/video__chunk"] == "new=0 stale=1 orphaned=0"
    run(request, assets, instance, res)
    assert evaluate(sensor, instance, res, assets).startswith("All 4 counted features are in sync")


def test_include_downstream_selects_the_whole_affected_subgraph(
    samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    assets = build_assets(define_features(), samples)
    sensor = mxd.build_metaxy_sensor(assets, include_downstream=True, name="metaxy_all")
    request = evaluate(sensor, instance, res, assets)
    assert request.asset_selection == [RAW, CHUNK, FACES, STT]
    run(request, assets, instance, res)
    assert evaluate(sensor, instance, res, assets).startswith("All 4 counted features are in sync")


def test_run_keys_change_when_a_state_comes_back(
    samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    # The root alone is enough: its stored state is what comes back.
    assets = build_assets(define_features(), samples)[:1]
    sensor = mxd.build_metaxy_sensor(assets)
    state_a, state_b = dict(samples.videos), {**samples.videos, "v2": ("a2", "f2-b")}
    keys = []
    for state in (state_a, state_b, state_a, state_b):
        samples.videos = dict(state)
        request = evaluate(sensor, instance, res, assets)
        # Evaluating again before anything ran gives the same key: Dagster drops the duplicate.
        assert evaluate(sensor, instance, res, assets).run_key == request.run_key
        keys.append(request.run_key)
        run(request, assets, instance, res)
    assert len(set(keys)) == 4


def test_sensor_waits_while_its_run_is_in_progress(
    samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    assets = build_assets(define_features(), samples)
    sensor = mxd.build_metaxy_sensor(assets)
    instance.add_run(
        dg.DagsterRun(
            job_name="__ASSET_JOB",
            run_id="in-flight-run",
            status=dg.DagsterRunStatus.STARTED,
            tags={SENSOR_NAME_TAG: "metaxy_sensor"},
        )
    )
    assert (
        evaluate(sensor, instance, res, assets)
        == "Run in-flight-run launched by metaxy_sensor is still in progress."
    )


def test_sensor_does_not_repeat_a_run_that_changed_nothing(
    samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    """features.py edited under `dagster dev`: runs load the new code, the sensor still has the old."""
    old_assets = build_assets(define_features(), samples)
    dg.materialize(old_assets, instance=instance, resources=res)
    sensor = mxd.build_metaxy_sensor(old_assets, include_downstream=True)
    with mx.FeatureGraph().use():  # the edited definitions, as a run process would load them
        new_assets = build_assets(define_features(faces_code_version="2"), samples)
    dg.materialize(new_assets, instance=instance, resources=res)  # the edited code ran once

    defs = dg.Definitions(assets=old_assets, sensors=[sensor], resources=res)
    cursor = None
    outcomes = []
    for _ in range(3):
        with dg.build_sensor_context(
            instance=instance,
            resources={"metaxy_store": res["metaxy_store"]},
            definitions=defs,
            cursor=cursor,
        ) as context:
            data = sensor.evaluate_tick(context)
        cursor = data.cursor or cursor
        if data.run_requests:
            (request,) = data.run_requests
            outcomes.append("run")
            run(request, new_assets, instance, res)  # the run executes the new code: a no-op
        else:
            outcomes.append(data.skip_message)
    assert outcomes[0] == "run"  # the old code sees faces as stale once
    assert outcomes[1] == outcomes[2]
    assert "reload the code location" in outcomes[1]


def test_sensor_ticks_record_checkpoints_and_then_count_incrementally(
    samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tick that finds a feature in sync records a checkpoint; the next tick examines only changes."""
    features = define_features()
    assets = build_assets(features, samples)
    dg.materialize(assets, instance=instance, resources=res)
    with res["metaxy_store"].open() as store:
        # The run's asset checks found video/stt in sync and left a checkpoint; a delete in its
        # upstream (of nothing, here) voids it, so only a tick can record the next one.
        store.delete(features.Video, "video_id = 'absent'")
        before = store.read_system(CHECKPOINTS)
    assert before is not None
    sensor = mxd.build_metaxy_sensor(assets)
    examined: list[tuple[str, int]] = []
    count_changed = DuckDBMetadataStore._count_changed

    def spy(self: DuckDBMetadataStore, plan: Any, since: Any) -> int:
        examined.append((str(plan.feature), count_changed(self, plan, since)))
        return examined[-1][1]

    monkeypatch.setattr(DuckDBMetadataStore, "_count_changed", spy)
    in_sync = "All 4 counted features are in sync"
    assert evaluate(sensor, instance, res, assets).startswith(in_sync)
    assert examined == []  # no valid checkpoint: every feature was compared in full
    with res["metaxy_store"].open() as store:
        checkpoints = store.read_system(CHECKPOINTS)
    assert checkpoints is not None
    # video/stt is the one feature here whose changes name the samples they affect (chunk and faces
    # sit below an expansion and always resolve in full)
    new = checkpoints.join(before, on=list(before.columns), how="anti")
    assert new["feature"].to_list() == ["video/stt"]
    assert evaluate(sensor, instance, res, assets).startswith(in_sync)
    assert examined == [("video/stt", 0)]  # the second tick used it: nothing changed, nothing scanned
