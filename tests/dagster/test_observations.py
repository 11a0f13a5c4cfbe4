"""Observations make Dagster's staleness agree with the store, on a real Dagster instance.

Dagster's own stale-status resolver (what the UI shows as "Unsynced") is the judge in every test.
"""

from typing import Any

import dagster as dg
import polars as pl
import pytest
from dagster._utils.test.data_versions import get_stale_status_resolver

import metaxy_core as mx
import metaxy_dagster as mxd
from metaxy_dagster.observations import DATA_VERSION_CHANGED, NOTHING, RESYNCED
from tests.dagster.pipeline import Features, Samples, build_assets, counts, materialization_metadata
from tests.dagster.test_automation import _with_condition

FRESH, STALE = "FRESH", "STALE"


def statuses(instance: dg.DagsterInstance, assets: list[Any]) -> dict[str, str]:
    resolver = get_stale_status_resolver(instance, assets)
    return {a.key.path[-1]: resolver.get_status(a.key).value for a in assets}


def data_version(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None = None) -> str | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1
    ).records
    return records[0].event_log_entry.tags.get("dagster/data_version") if records else None


def latest_check(instance: dg.DagsterInstance, asset_key: dg.AssetKey, name: str) -> Any:
    (record,) = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(asset_key, name), limit=1
    )
    return record


def run_pass(instance: dg.DagsterInstance, res: dict[str, Any], assets: list[Any]) -> dict[str, str]:
    """Run the observation job; asset[partition] -> what it reported (from its observations)."""
    job = mxd.build_metaxy_observation_job(assets)
    result = job.execute_in_process(instance=instance, resources={"metaxy_store": res["metaxy_store"]})
    assert result.success
    found = {}
    for event in result.get_asset_observation_events():
        obs = event.asset_observation_data.asset_observation
        name = obs.asset_key.path[-1] + (f"[{obs.partition}]" if obs.partition else "")
        found[name] = obs.metadata["metaxy/reported"].value
    return found


def test_faces_left_unsynced_by_an_audio_change_is_resynced_without_a_run(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    raw, chunk, faces, stt = assets = build_assets(features, samples)
    dg.materialize(assets, instance=instance, resources=res)
    samples.videos["v1"] = ("a1-edited", "f1")
    dg.materialize(assets, instance=instance, resources=res, selection=[raw, chunk, stt])
    # Dagster compares chunk's data version at asset level: faces looks Unsynced; metaxy has no work.
    assert statuses(instance, assets) == {"raw": FRESH, "chunk": FRESH, "faces": STALE, "stt": FRESH}
    faces_version = data_version(instance, faces.key)
    calls = len(samples.calls)

    job = mxd.build_metaxy_observation_job(assets)
    result = job.execute_in_process(instance=instance, resources={"metaxy_store": res["metaxy_store"]})
    assert result.success
    assert statuses(instance, assets) == {"raw": FRESH, "chunk": FRESH, "faces": FRESH, "stt": FRESH}
    assert len(samples.calls) == calls  # no asset body ran
    # faces keeps its data version; its latest materialization is the reported one, marked as such
    event = instance.get_latest_materialization_event(faces.key)
    assert event is not None
    assert event.run_id == ""
    assert event.tags["metaxy/observed"] == "provenance"
    assert event.tags["dagster/data_version"] == faces_version
    assert event.tags["dagster/input_data_version/video/chunk"] == data_version(instance, chunk.key)
    # every asset got an observation with the store's data version and counts
    for asset in assets:
        (obs,) = instance.fetch_observations(asset.key, limit=1).records
        observation = obs.event_log_entry.asset_observation
        assert observation is not None
        assert observation.tags["dagster/data_version"] == data_version(instance, asset.key)
        assert observation.metadata["metaxy/new"].value == 0
    # the built-in checks were evaluated against the latest materialization
    check = latest_check(instance, faces.key, "metaxy_in_sync")
    assert check.status.value == "SUCCEEDED"
    assert check.evaluation is not None
    assert check.evaluation.target_materialization_data is not None
    assert check.evaluation.target_materialization_data.storage_id == (
        instance.fetch_materializations(faces.key, limit=1).records[0].storage_id
    )

    # A second pass finds Dagster in agreement and reports no materialization.
    assert run_pass(instance, res, assets) == {k: NOTHING for k in ("raw", "chunk", "faces", "stt")}


def test_a_resync_does_not_trigger_downstream_automation(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any], database: str
) -> None:
    """faces is re-synced by a reported materialization with its data version unchanged, so its child
    is not requested by the metaxy condition; a reported *new* data version does request it."""

    class FaceCount(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key="video/face_count", id_columns=["video_chunk_id"], deps=[features.Faces], fields=["total"]
        ),
    ):
        video_chunk_id: str
        total: int

    @mxd.metaxy_asset(FaceCount)
    def face_count(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        return increment.to_process().select("video_chunk_id", pl.lit(1).alias("total"))

    assets = _with_condition(
        [*build_assets(features, samples), face_count], mxd.metaxy_automation_condition()
    )
    raw, chunk, _faces, stt, _count = assets
    dg.materialize(assets, instance=instance, resources=res)
    defs = dg.Definitions(assets=assets, resources=res)
    cursor = None

    def requested() -> set[str]:
        nonlocal cursor
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        cursor = result.cursor
        return {a.key.path[-1] for a in assets[1:] if result.get_num_requested(a.key)}

    assert requested() == set()
    samples.videos["v1"] = ("a1-edited", "f1")
    dg.materialize(assets, instance=instance, resources=res, selection=[raw, chunk, stt])
    requested()  # the audio change is handled here (faces, and face_count with it, requested once)
    assert run_pass(instance, res, assets)["faces"] == RESYNCED
    assert requested() == set()

    # The condition is live: faces' rows of v2 deleted outside Dagster, the observation reports
    # faces' new data version, and its child is requested.
    with mx.DuckDBMetadataStore(database) as store:
        store.delete(features.Faces, filters="video_chunk_id = 'v2_0'", soft=False)
    assert run_pass(instance, res, assets)["faces"] == DATA_VERSION_CHANGED
    assert requested() == {"face_count"}


def test_a_delete_outside_dagster_is_learned_at_the_next_observation(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any], database: str
) -> None:
    _raw, chunk, _faces, _stt = assets = build_assets(features, samples)
    dg.materialize(assets, instance=instance, resources=res)
    before = data_version(instance, chunk.key)
    with mx.DuckDBMetadataStore(database) as store:
        assert store.delete(features.Chunk, filters="video_id = 'v1'", soft=False) == 2
    # Dagster has not noticed: everything still looks fresh.
    assert statuses(instance, assets) == {"raw": FRESH, "chunk": FRESH, "faces": FRESH, "stt": FRESH}

    assert run_pass(instance, res, assets) == {
        "raw": NOTHING,
        "chunk": DATA_VERSION_CHANGED,
        "faces": NOTHING,
        "stt": NOTHING,
    }
    after = data_version(instance, chunk.key)
    assert after not in (before, None)
    # chunk's child turns Unsynced; chunk itself has work (its in-sync check fails), so it keeps the
    # provenance it was built from
    assert statuses(instance, assets) == {"raw": FRESH, "chunk": FRESH, "faces": STALE, "stt": FRESH}
    check = latest_check(instance, chunk.key, "metaxy_in_sync")
    assert check.evaluation is not None
    assert check.evaluation.passed is False

    # Recomputing v1's chunks restores the same samples: chunk's data version comes back, faces has
    # nothing to do, and everything agrees again.
    meta = materialization_metadata(
        dg.materialize(assets, instance=instance, resources=res, selection=[chunk])
    )
    assert counts(meta) == {"video/chunk": (1, 0, 0, 2)}
    assert data_version(instance, chunk.key) == before
    assert statuses(instance, assets) == {"raw": FRESH, "chunk": FRESH, "faces": FRESH, "stt": FRESH}


def test_a_deleted_root_sample_makes_its_children_unsynced(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any], database: str
) -> None:
    assets = build_assets(features, samples)
    dg.materialize(assets, instance=instance, resources=res)
    with mx.DuckDBMetadataStore(database) as store:
        store.delete(features.Video, filters="video_id = 'v2'")  # soft delete
    found = {
        f.asset_key.path[-1]: f for f in mxd.observe_metaxy_assets(instance, res["metaxy_store"], assets)
    }
    assert found["raw"].action == DATA_VERSION_CHANGED
    assert found["raw"].counts == {"new": 1, "stale": 0, "orphaned": 0}  # the provider still lists v2
    # chunk and stt now have orphans (v2's rows): not in sync, so Dagster's Unsynced is left standing
    assert found["chunk"].counts == {"new": 0, "stale": 0, "orphaned": 1}  # counted per parent video
    assert statuses(instance, assets) == {"raw": FRESH, "chunk": STALE, "faces": FRESH, "stt": STALE}


SPLITS = dg.StaticPartitionsDefinition(["train", "test"])


def test_partitions_are_observed_one_by_one(
    instance: dg.DagsterInstance, res: dict[str, Any], database: str
) -> None:
    class Clip(
        mx.BaseFeature, spec=mx.FeatureSpec(key="clips/raw", id_columns=["clip_id"], fields=["audio"])
    ):
        clip_id: str
        split: str

    class Words(
        mx.BaseFeature,
        spec=mx.FeatureSpec(key="clips/words", id_columns=["clip_id"], deps=[Clip], fields=["words"]),
    ):
        clip_id: str
        split: str
        n_words: int

    def listed() -> pl.DataFrame:
        return pl.DataFrame(
            {
                "clip_id": ["a", "b", "c"],
                "split": ["train", "train", "test"],
                "metaxy_provenance_by_field": [{"audio": x} for x in ("a1", "b1", "c1")],
            }
        )

    @mxd.metaxy_asset(Clip, samples=listed, partitions_def=SPLITS, partition_by="split")
    def clips(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        return increment.to_process().select("clip_id", "split")

    @mxd.metaxy_asset(Words, partitions_def=SPLITS, partition_by="split")
    def words(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        return increment.to_process().select("clip_id", "split", pl.lit(3).alias("n_words"))

    assets = [clips, words]
    for split in ("train", "test"):
        dg.materialize(assets, instance=instance, resources=res, partition_key=split)
    train_before = data_version(instance, words.key, "train")
    with mx.DuckDBMetadataStore(database) as store:
        store.delete(Words, filters="clip_id = 'c'", soft=False)

    assert run_pass(instance, res, assets) == {
        "raw[train]": NOTHING,
        "raw[test]": NOTHING,
        "words[train]": NOTHING,
        "words[test]": DATA_VERSION_CHANGED,
    }
    assert data_version(instance, words.key, "train") == train_before
    assert data_version(instance, words.key, "test") == "empty"
    check = latest_check(instance, words.key, "metaxy_in_sync")
    assert check.evaluation is not None
    assert check.evaluation.partition == "test"
    assert check.evaluation.passed is False
    assert check.evaluation.metadata["new"].value == 1
    # Observing again (check results per partition recorded once per run) reports nothing new.
    assert set(run_pass(instance, res, assets).values()) == {NOTHING}


def test_sensor_and_schedule(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any], database: str
) -> None:
    assets = build_assets(features, samples)
    dg.materialize(assets, instance=instance, resources=res)
    sensor = mxd.build_metaxy_observation_sensor(assets)
    schedule = mxd.build_metaxy_observation_schedule(assets, cron_schedule="0 * * * *")
    defs = dg.Definitions(assets=assets, sensors=[sensor], schedules=[schedule], resources=res)
    assert defs.resolve_job_def("metaxy_observe").name == "metaxy_observe"
    with mx.DuckDBMetadataStore(database) as store:
        store.delete(features.Transcript, filters="video_id = 'v1'", soft=False)
    with dg.build_sensor_context(
        instance=instance, resources={"metaxy_store": res["metaxy_store"]}
    ) as context:
        skip = sensor(context)
        assert isinstance(skip, dg.SkipReason)
        assert "video/stt: data_version=" in (skip.skip_message or "")
        assert "new=1" in (skip.skip_message or "")
        again = sensor(context)
        assert isinstance(again, dg.SkipReason)
        assert "Dagster already agrees" in (again.skip_message or "")


def test_nothing_to_observe_is_a_definition_error() -> None:
    with pytest.raises(mxd.MetaxyDefinitionError, match="No metaxy feature assets to observe"):
        mxd.build_metaxy_observation_job([mxd.build_metaxy_graph_asset()])
