"""A root feature as an observable source asset: observations write the samples and set its data version."""

from typing import Any

import dagster as dg
import polars as pl
import pytest
from dagster._utils.test.data_versions import get_stale_status_resolver

import metaxy_core as mx
import metaxy_dagster as mxd
from tests.dagster.pipeline import Features, Samples, counts, materialization_metadata


def test_observable_root_drives_children_staleness(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any], database: str
) -> None:
    raw = mxd.metaxy_observable_source(features.Video, samples=samples.frame)

    @mxd.metaxy_asset(features.Transcript)
    def stt(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        return increment.to_process().select("video_id", pl.lit("t").alias("text"))

    assert isinstance(raw, dg.SourceAsset)
    assert raw.is_observable
    assert raw.metadata["metaxy/feature"].value == "video/raw"
    assert stt.asset_deps[stt.key] == {raw.key}

    def observe() -> dict[str, Any]:
        # materialize() observes an observable source only when it is selected.
        result = dg.materialize(
            [raw], selection=[raw], instance=instance, resources={"metaxy_store": res["metaxy_store"]}
        )
        (event,) = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
        obs = event.asset_observation_data.asset_observation
        return {
            "data_version": obs.tags["dagster/data_version"],
            **{k: v.value for k, v in obs.metadata.items()},
        }

    def status() -> str:
        return get_stale_status_resolver(instance, [raw, stt]).get_status(stt.key).value

    first = observe()
    assert (first["metaxy/new"], first["metaxy/written"]) == (2, 2)
    with mx.DuckDBMetadataStore(database) as store:
        assert store.read(features.Video).to_polars().height == 2
    meta = materialization_metadata(
        dg.materialize([raw, stt], instance=instance, resources=res, selection=[stt])
    )
    assert counts(meta) == {"video/stt": (2, 0, 0, 2)}
    assert status() == "FRESH"

    # Observing unchanged samples: same data version, stt stays fresh.
    again = observe()
    assert (again["metaxy/new"], again["metaxy/stale"], again["metaxy/written"]) == (0, 0, 0)
    assert again["data_version"] == first["data_version"]
    assert status() == "FRESH"

    # A new video appears: new data version, stt stale until it runs.
    samples.videos["v3"] = ("a3", "f3")
    third = observe()
    assert (third["metaxy/new"], third["metaxy/written"]) == (1, 1)
    assert third["data_version"] != first["data_version"]
    assert status() == "STALE"
    meta = materialization_metadata(
        dg.materialize([raw, stt], instance=instance, resources=res, selection=[stt])
    )
    assert counts(meta) == {"video/stt": (1, 0, 0, 1)}
    assert status() == "FRESH"


def test_observable_source_is_only_for_roots(features: Features, samples: Samples) -> None:
    with pytest.raises(mxd.MetaxyDefinitionError, match="'video/chunk' has deps; only root features"):
        mxd.metaxy_observable_source(features.Chunk, samples=samples.frame)
