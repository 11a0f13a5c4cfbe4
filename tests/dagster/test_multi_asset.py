"""``metaxy_multi_asset``: one step, several features, each resolved, written, checked and versioned on its own."""

from typing import Any

import dagster as dg
import polars as pl
import pytest

import metaxy_core as mx
import metaxy_dagster as mxd
from tests.dagster.pipeline import Features, Samples, build_assets, materialization_metadata

FACES, STT = "video/faces", "video/stt"


def _vision(f: Features, calls: list[dict[str, int]], **options: Any) -> dg.AssetsDefinition:
    """Faces (per chunk) and transcripts (per video) from one pass."""

    @mxd.metaxy_multi_asset([f.Faces, f.Transcript], **options)
    def vision(increments: dict[str, mxd.MetaxyIncrement]) -> dict[str, Any]:
        calls.append({k: inc.progress.total for k, inc in increments.items()})
        out: dict[str, Any] = {}
        if FACES in increments:
            todo = increments[FACES].to_process()
            out[FACES] = todo.select("video_chunk_id", pl.col("chunk_index").alias("num_faces"))
        if STT in increments:
            out[STT] = increments[STT].to_process().select("video_id", pl.lit("hi").alias("text")).to_pandas()
        return out

    return vision


def _data_versions(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    return {
        e.materialization.asset_key.to_user_string(): e.materialization.tags["dagster/data_version"]
        for e in result.get_asset_materialization_events()
    }


def test_one_step_writes_and_versions_each_feature(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    raw, chunk, *_ = build_assets(features, samples)
    calls: list[dict[str, int]] = []
    vision = _vision(features, calls)
    assert {k.to_user_string() for k in vision.keys} == {FACES, STT}

    first = dg.materialize([raw, chunk, vision], instance=instance, resources=res)
    assert calls == [{FACES: 5, STT: 2}]
    meta = materialization_metadata(first)
    assert (meta[FACES]["metaxy/new"], meta[FACES]["metaxy/written"]) == (5, 5)
    assert (meta[STT]["metaxy/new"], meta[STT]["metaxy/written"]) == (2, 2)
    versions = _data_versions(first)
    assert versions[FACES] == meta[FACES]["metaxy/data_version"] != versions[STT]
    checks = {
        (e.asset_key.to_user_string(), e.check_name): e.passed
        for e in first.get_asset_check_evaluations()
        if e.asset_key.to_user_string() in (FACES, STT)
    }
    assert checks == {
        (FACES, "metaxy_in_sync"): True,
        (FACES, "metaxy_no_orphans"): True,
        (STT, "metaxy_in_sync"): True,
        (STT, "metaxy_no_orphans"): True,
    }

    # A no-op rerun does not call the body and keeps every data version.
    again = dg.materialize([raw, chunk, vision], instance=instance, resources=res)
    assert len(calls) == 1
    assert {k: v for k, v in _data_versions(again).items() if k in (FACES, STT)} == {
        FACES: versions[FACES],
        STT: versions[STT],
    }

    # An audio-only change: only the transcripts are stale; faces keep their data version.
    samples.videos["v1"] = ("a1-new", "f1")
    third = dg.materialize([raw, chunk, vision], instance=instance, resources=res)
    assert calls[-1] == {FACES: 0, STT: 1}
    v3 = _data_versions(third)
    assert v3[FACES] == versions[FACES]
    assert v3[STT] != versions[STT]


def test_a_subset_run_resolves_and_computes_only_the_selected_features(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    raw, chunk, *_ = build_assets(features, samples)
    calls: list[dict[str, int]] = []
    vision = _vision(features, calls)
    stt_key = dg.AssetKey(["video", "stt"])
    result = dg.materialize(
        [raw, chunk, vision], instance=instance, resources=res, selection=[raw.key, stt_key]
    )
    assert calls == [{STT: 2}]
    assert set(materialization_metadata(result)) == {"video/raw", STT}


def test_returned_keys_must_match_the_selected_features(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any], database: str
) -> None:
    raw, chunk, *_ = build_assets(features, samples)
    dg.materialize([raw, chunk], instance=instance, resources=res)

    def run(returned: Any) -> str:
        @mxd.metaxy_multi_asset([features.Faces, features.Transcript])
        def vision(increments: dict[str, mxd.MetaxyIncrement]) -> Any:
            return returned(increments)

        result = dg.materialize([vision], instance=instance, resources=res, raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        error = failure.step_failure_data.error
        return error.cause.message if error.cause else error.message

    stt_rows = lambda inc: inc[STT].to_process().select("video_id", pl.lit("x").alias("text"))  # noqa: E731
    message = run(lambda inc: {STT: stt_rows(inc)})
    assert "no entry for feature(s) ['video/faces']" in message
    message = run(lambda inc: {STT: stt_rows(inc), FACES: None, "video/captions": None})
    assert "['video/captions']" in message
    assert "does not compute" in message
    message = run(lambda inc: stt_rows(inc))
    assert "returns a dict from feature key to rows" in message
    # Faces returns a row for a chunk outside its increment: nothing is written, transcripts included.
    bad_faces = pl.DataFrame({"video_chunk_id": ["nope"], "num_faces": [1]})
    message = run(lambda inc: {STT: stt_rows(inc), FACES: bad_faces})
    assert "video/faces" in message
    assert "outside this run's increment" in message
    with mx.DuckDBMetadataStore(database=database) as store:
        assert not store.has_feature(features.Transcript)


def test_none_skips_a_feature_and_batches_commit_per_feature(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    raw, chunk, *_ = build_assets(features, samples)

    @mxd.metaxy_multi_asset([features.Faces, features.Transcript])
    def vision(increments: dict[str, mxd.MetaxyIncrement]) -> dict[str, Any]:
        faces = increments[FACES]
        for batch in faces.batches(2):
            faces.commit(batch.select("video_chunk_id", pl.lit(0).alias("num_faces")))
        return {FACES: None, STT: None}  # faces committed everything; transcripts are left for later

    meta = materialization_metadata(dg.materialize([raw, chunk, vision], instance=instance, resources=res))
    assert (meta[FACES]["metaxy/written"], meta[FACES]["metaxy/batches"]) == (5, 3)
    assert (meta[STT]["metaxy/written"], meta[STT]["metaxy/missing"]) == (0, 2)


def test_definition_errors_name_the_feature(features: Features) -> None:
    def body(increments: dict[str, mxd.MetaxyIncrement]) -> dict[str, Any]:
        return {}

    with pytest.raises(mxd.MetaxyDefinitionError, match=r"'video/faces' depends on \['video/chunk'\]"):
        mxd.metaxy_multi_asset([features.Chunk, features.Faces])(body)
    with pytest.raises(mxd.MetaxyDefinitionError, match=r"root feature 'video/raw' needs a samples provider"):
        mxd.metaxy_multi_asset([features.Video, features.Transcript])(body)
    with pytest.raises(mxd.MetaxyDefinitionError, match=r"listed more than once"):
        mxd.metaxy_multi_asset([features.Faces, features.Faces])(body)
    with pytest.raises(mxd.MetaxyDefinitionError, match=r"unsupported option\(s\) \['colour'\]"):
        mxd.metaxy_multi_asset([features.Faces], colour="red")(body)

    def wrong(increment: mxd.MetaxyIncrement) -> dict[str, Any]:
        return {}

    with pytest.raises(mxd.MetaxyDefinitionError, match=r"parameter 'increment' is not context, increments"):
        mxd.metaxy_multi_asset([features.Faces])(wrong)


def test_asset_options_apply_to_every_feature_and_partitions_scope_each(
    instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    class Doc(mx.BaseFeature, spec=mx.FeatureSpec(key="docs/raw", id_columns=["doc_id"], fields=["text"])):
        doc_id: str
        split: str

    class Emb(
        mx.BaseFeature, spec=mx.FeatureSpec(key="docs/emb", id_columns=["doc_id"], deps=[Doc], fields=["v"])
    ):
        doc_id: str
        split: str
        dim: int

    class Cap(
        mx.BaseFeature, spec=mx.FeatureSpec(key="docs/cap", id_columns=["doc_id"], deps=[Doc], fields=["c"])
    ):
        doc_id: str
        split: str
        caption: str

    docs = pl.DataFrame(
        {
            "doc_id": ["a", "b", "c"],
            "split": ["train", "train", "test"],
            "metaxy_provenance_by_field": [{"text": x} for x in "abc"],
        }
    )

    @mxd.metaxy_asset(Doc, samples=lambda: docs)
    def raw(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        return increment.to_process().select("doc_id", "split")

    seen: list[list[str]] = []

    @mxd.metaxy_multi_asset(
        [Emb, Cap],
        partitions_def=dg.StaticPartitionsDefinition(["train", "test"]),
        partition_by="split",
        group_name="ml",
        owners=["team:ml"],
        key_prefix="lab",
    )
    def ml(context: dg.AssetExecutionContext, increments: dict[str, mxd.MetaxyIncrement]) -> dict[str, Any]:
        emb = increments["docs/emb"].to_process()
        seen.append(sorted(emb["doc_id"]))
        return {
            "docs/emb": emb.select("doc_id", "split", pl.lit(4).alias("dim")),
            "docs/cap": increments["docs/cap"]
            .to_process()
            .select("doc_id", "split", pl.lit("x").alias("caption")),
        }

    specs = {s.key.to_user_string(): s for s in ml.specs}
    assert set(specs) == {"lab/docs/emb", "lab/docs/cap"}
    assert {s.group_name for s in specs.values()} == {"ml"}
    assert all("team:ml" in s.owners for s in specs.values())

    dg.materialize([raw], instance=instance, resources=res)
    result = dg.materialize([ml], instance=instance, resources=res, partition_key="train")
    assert seen == [["a", "b"]]
    meta = materialization_metadata(result)
    assert (meta["lab/docs/emb"]["metaxy/written"], meta["lab/docs/cap"]["metaxy/written"]) == (2, 2)
