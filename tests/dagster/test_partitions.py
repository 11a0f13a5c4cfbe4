"""Partitioned metaxy assets on a real Dagster instance: each partition resolves, writes, checks and
versions only its own samples; multi-partitions; dynamic partitions from a root's samples."""

from typing import Any

import dagster as dg
import polars as pl
import pytest

import metaxy_core as mx
import metaxy_dagster as mxd
from tests.dagster.pipeline import materialization_metadata

SPLITS = dg.StaticPartitionsDefinition(["train", "test"])


class Media:
    """The samples on disk: id -> (split, language, audio hash)."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[str, str, str]] = {
            "a": ("train", "en", "a1"),
            "b": ("train", "fr", "b1"),
            "c": ("test", "en", "c1"),
        }
        self.bodies: list[list[str]] = []

    def frame(self) -> pl.DataFrame:
        ids = sorted(self.items)
        return pl.DataFrame(
            {
                "clip_id": ids,
                "split": [self.items[i][0] for i in ids],
                "lang": [self.items[i][1] for i in ids],
                "metaxy_provenance_by_field": [{"audio": self.items[i][2]} for i in ids],
            }
        )


def _features() -> tuple[type[mx.BaseFeature], type[mx.BaseFeature]]:
    class Clip(
        mx.BaseFeature, spec=mx.FeatureSpec(key="clips/raw", id_columns=["clip_id"], fields=["audio"])
    ):
        clip_id: str
        split: str
        lang: str

    class Words(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key="clips/words",
            id_columns=["clip_id"],
            deps=[Clip],
            fields=[mx.FieldSpec("words", deps=[mx.FieldDep(feature=Clip, fields=["audio"])])],
        ),
    ):
        clip_id: str
        split: str
        lang: str
        n_words: int

    return Clip, Words


def _assets(media: Media, partitions_def: dg.PartitionsDefinition, partition_by: Any) -> list[Any]:
    clip_cls, words_cls = _features()

    @mxd.metaxy_asset(clip_cls, samples=media.frame, partitions_def=partitions_def, partition_by=partition_by)
    def clips(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        media.bodies.append(sorted(increment.to_process()["clip_id"]))
        return increment.to_process().select("clip_id", "split", "lang")

    @mxd.metaxy_asset(words_cls, partitions_def=partitions_def, partition_by=partition_by)
    def words(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        todo = increment.to_process()
        media.bodies.append(sorted(todo["clip_id"]))
        return todo.select("clip_id", "split", "lang", pl.lit(3).alias("n_words"))

    return [clips, words]


def _run(
    assets: list[Any], instance: dg.DagsterInstance, res: dict[str, Any], key: str
) -> dg.ExecuteInProcessResult:
    return dg.materialize(assets, instance=instance, resources=res, partition_key=key)


def test_a_partition_run_touches_only_its_samples(instance: dg.DagsterInstance, res: dict[str, Any]) -> None:
    media = Media()
    assets = _assets(media, SPLITS, "split")
    test_run = _run(assets, instance, res, "test")
    assert media.bodies == [["c"], ["c"]]  # the train clips were not processed
    meta = materialization_metadata(test_run)
    assert meta["clips/words"]["metaxy/written"] == 1
    checks = {(e.asset_key.to_user_string(), e.check_name): e for e in test_run.get_asset_check_evaluations()}
    assert checks[("clips/words", "metaxy_in_sync")].passed  # the check is scoped to the partition too

    train_run = _run(assets, instance, res, "train")
    assert media.bodies[2:] == [["a", "b"], ["a", "b"]]
    versions = {
        k: instance.get_latest_data_version_record(dg.AssetKey(["clips", "words"]), partition_key=k)
        for k in ("train", "test")
    }
    assert (
        meta["clips/words"]["metaxy/data_version"]
        != materialization_metadata(train_run)["clips/words"]["metaxy/data_version"]
    )
    assert all(v is not None for v in versions.values())

    # one sample of partition train changes: only train is stale
    media.items["a"] = ("train", "en", "a2")
    media.bodies.clear()
    _run(assets, instance, res, "test")
    assert media.bodies == []  # nothing to do in test: the bodies were skipped
    _run(assets, instance, res, "train")
    assert media.bodies == [["a"], ["a"]]


def test_multi_partitions_map_each_dimension_to_a_column(
    instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    media = Media()
    parts = dg.MultiPartitionsDefinition(
        {"split": SPLITS, "lang": dg.StaticPartitionsDefinition(["en", "fr"])}
    )
    assets = _assets(media, parts, {"split": "split", "lang": "lang"})
    _run(assets, instance, res, dg.MultiPartitionKey({"split": "train", "lang": "fr"}))
    assert media.bodies == [["b"], ["b"]]


def test_callable_partition_filter(instance: dg.DagsterInstance, res: dict[str, Any]) -> None:
    media = Media()
    langs = dg.StaticPartitionsDefinition(["en", "fr"])
    assets = _assets(media, langs, lambda context: f"lang = '{context.partition_key}'")
    _run(assets, instance, res, "en")
    assert media.bodies == [["a", "c"], ["a", "c"]]


def test_dynamic_partitions_from_a_roots_samples(instance: dg.DagsterInstance, res: dict[str, Any]) -> None:
    media = Media()
    splits = dg.DynamicPartitionsDefinition(name="splits")
    assert mxd.add_dynamic_partitions(splits, instance, media.frame(), "split") == ["test", "train"]
    assert mxd.add_dynamic_partitions(splits, instance, media.frame(), "split") == []
    assets = _assets(media, splits, "split")
    _run(assets, instance, res, "train")
    assert media.bodies == [["a", "b"], ["a", "b"]]


def test_partition_definition_errors() -> None:
    clip_cls, _ = _features()
    with pytest.raises(mxd.MetaxyDefinitionError, match="needs partitions_def"):
        mxd.metaxy_asset(clip_cls, samples=lambda: None, partition_by="split")(lambda increment: None)
    with pytest.raises(mxd.MetaxyDefinitionError, match=r"\['folder'\] are not columns"):
        mxd.metaxy_asset(clip_cls, samples=lambda: None, partitions_def=SPLITS, partition_by="folder")(
            lambda increment: None
        )
    multi = dg.MultiPartitionsDefinition({"split": SPLITS, "lang": dg.StaticPartitionsDefinition(["en"])})
    with pytest.raises(mxd.MetaxyDefinitionError, match="map each dimension"):
        mxd.metaxy_asset(
            clip_cls, samples=lambda: None, partitions_def=multi, partition_by={"split": "split"}
        )(lambda increment: None)


def test_a_backfill_over_partitions_runs_as_one_step(
    instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    media = Media()
    clip_cls, _ = _features()

    @mxd.metaxy_asset(
        clip_cls,
        samples=media.frame,
        partitions_def=SPLITS,
        partition_by="split",
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def clips(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        media.bodies.append(sorted(increment.to_process()["clip_id"]))
        return increment.to_process().select("clip_id", "split", "lang")

    result = dg.materialize(
        [clips],
        instance=instance,
        resources=res,
        tags={"dagster/asset_partition_range_start": "train", "dagster/asset_partition_range_end": "test"},
    )
    assert result.success
    assert media.bodies == [["a", "b", "c"]]  # one resolve and one body call for both partitions
    assert {e.materialization.partition for e in result.get_asset_materialization_events()} == {
        "train",
        "test",
    }
