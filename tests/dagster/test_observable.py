"""A root feature written outside Dagster, as an observable source asset: observations only read the
store, report the stored samples' data version, and count what the samples provider lists beyond it."""

from typing import Any

import dagster as dg
import polars as pl
import pytest
from dagster._utils.test.data_versions import get_stale_status_resolver

import metaxy_core as mx
import metaxy_dagster as mxd
from metaxy_dagster.data_versions import EMPTY_DATA_VERSION
from tests.dagster.pipeline import Features, Samples, counts, materialization_metadata


def _write_outside_dagster(database: str, feature: type[mx.BaseFeature], samples: pl.DataFrame) -> None:
    """What the ingestion service does: store the new and stale samples, with their provenance."""
    with mx.DuckDBMetadataStore(database) as store:
        increment = store.resolve_update(feature, samples=samples)
        todo = pl.concat(
            [increment.new.to_polars(), increment.stale.to_polars().drop("metaxy_changed_fields")],
            how="diagonal_relaxed",
        )
        store.write(feature, todo)


def test_observations_read_only_and_drive_children_staleness(
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

    def stored_rows() -> int:
        with mx.DuckDBMetadataStore(database) as store:
            return store.read(features.Video).to_polars().height if store.has_feature(features.Video) else 0

    # Nothing stored yet: the observation reports the two listed samples as new and writes nothing.
    first = observe()
    assert (first["metaxy/new"], first["metaxy/stale"], first["dagster/row_count"]) == (2, 0, 0)
    assert first["data_version"] == EMPTY_DATA_VERSION
    assert stored_rows() == 0

    # The writer outside Dagster stores them; the next observation sees them in the store.
    _write_outside_dagster(database, features.Video, samples.frame())
    second = observe()
    assert (second["metaxy/new"], second["metaxy/stale"], second["dagster/row_count"]) == (0, 0, 2)
    assert second["data_version"] not in (first["data_version"], EMPTY_DATA_VERSION)
    meta = materialization_metadata(
        dg.materialize([raw, stt], instance=instance, resources=res, selection=[stt])
    )
    assert counts(meta) == {"video/stt": (2, 0, 0, 2)}
    assert status() == "FRESH"

    # Observing an unchanged store: same data version, stt stays fresh.
    assert observe()["data_version"] == second["data_version"]
    assert status() == "FRESH"

    # A new video is listed but not stored yet: counted as new, data version unchanged, stt fresh.
    samples.videos["v3"] = ("a3", "f3")
    listed = observe()
    assert (listed["metaxy/new"], listed["dagster/row_count"]) == (1, 2)
    assert listed["data_version"] == second["data_version"]
    assert stored_rows() == 2
    assert status() == "FRESH"

    # Once the writer stored it: new data version, stt stale until it runs.
    _write_outside_dagster(database, features.Video, samples.frame())
    third = observe()
    assert (third["metaxy/new"], third["dagster/row_count"]) == (0, 3)
    assert third["data_version"] != second["data_version"]
    assert status() == "STALE"
    meta = materialization_metadata(
        dg.materialize([raw, stt], instance=instance, resources=res, selection=[stt])
    )
    assert counts(meta) == {"video/stt": (1, 0, 0, 1)}
    assert status() == "FRESH"


def test_observable_source_is_only_for_roots(features: Features, samples: Samples) -> None:
    with pytest.raises(mxd.MetaxyDefinitionError, match="'video/chunk' has deps; only root features"):
        mxd.metaxy_observable_source(features.Chunk, samples=samples.frame)
