"""Checkpointed batches: ``increment.batches(n)`` + ``increment.commit(rows)`` in real Dagster runs.

A failure at batch k keeps what earlier commits wrote, so the next run resolves only the rest;
commits are checked like returned rows; batches stream (never more than ``n`` rows in the body) and
respect partitions.
"""

from typing import Any

import dagster as dg
import polars as pl
import pyarrow as pa
import pytest

import metaxy_core as mx
import metaxy_dagster as mxd
from tests.dagster.pipeline import Features, Samples, build_assets, materialization_metadata


def _features() -> tuple[type[mx.BaseFeature], type[mx.BaseFeature]]:
    class Doc(mx.BaseFeature, spec=mx.FeatureSpec(key="docs/raw", id_columns=["doc_id"], fields=["text"])):
        doc_id: str
        split: str

    class Embedding(
        mx.BaseFeature,
        spec=mx.FeatureSpec(key="docs/embedding", id_columns=["doc_id"], deps=[Doc], fields=["vector"]),
    ):
        doc_id: str
        split: str
        dim: int

    return Doc, Embedding


def _docs(n: int) -> pl.DataFrame:
    ids = [f"d{i:06d}" for i in range(n)]
    return pl.DataFrame(
        {
            "doc_id": ids,
            "split": ["test" if i % 4 == 0 else "train" for i in range(n)],
            "metaxy_provenance_by_field": [{"text": f"h{i}"} for i in range(n)],
        }
    )


def _write_docs(database: str, doc: type[mx.BaseFeature], n: int) -> None:
    with mx.DuckDBMetadataStore(database=database) as store:
        store.write(doc, _docs(n))


def _stored(database: str, feature: type[mx.BaseFeature]) -> pl.DataFrame:
    with mx.DuckDBMetadataStore(database=database) as store:
        return store.read(feature).to_polars()


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    failure = next(e for e in result.all_events if e.is_step_failure)
    error = failure.step_failure_data.error
    return error.cause.message if error.cause else error.message


def test_a_failure_at_batch_3_keeps_two_commits_and_the_rerun_gets_the_rest(
    instance: dg.DagsterInstance, res: dict[str, Any], database: str
) -> None:
    doc, embedding = _features()
    _write_docs(database, doc, 50)
    seen: list[int] = []
    fail_at = [3]

    @mxd.metaxy_asset(embedding)
    def embeddings(increment: mxd.MetaxyIncrement) -> None:
        for i, batch in enumerate(increment.batches(10), start=1):
            seen.append(batch.height)
            if i == fail_at[0]:
                raise RuntimeError("GPU fell over")
            increment.commit(batch.select("doc_id", "split", pl.lit(8).alias("dim")))

    first = dg.materialize([embeddings], instance=instance, resources=res, raise_on_error=False)
    assert not first.success
    assert "GPU fell over" in _failure_message(first)
    assert seen == [10, 10, 10]
    assert _stored(database, embedding).height == 20  # two commits survived the failure

    seen.clear()
    fail_at[0] = 0
    second = dg.materialize([embeddings], instance=instance, resources=res)
    assert seen == [10, 10, 10]  # only the 30 samples no commit wrote
    meta = materialization_metadata(second)["docs/embedding"]
    assert (meta["metaxy/new"], meta["metaxy/written"], meta["metaxy/missing"]) == (30, 30, 0)
    assert (meta["metaxy/batches"], meta["metaxy/committed"], meta["metaxy/total"]) == (3, 30, 30)
    stored = _stored(database, embedding)
    assert stored.height == 50
    assert meta["dagster/row_count"] == 50
    data_version = second.get_asset_materialization_events()[0].materialization.tags["dagster/data_version"]
    assert data_version == meta["metaxy/data_version"]

    # Everything is committed: a third run sees nothing and keeps the data version.
    third = dg.materialize([embeddings], instance=instance, resources=res)
    assert seen == [10, 10, 10]
    assert materialization_metadata(third)["docs/embedding"]["metaxy/data_version"] == data_version


def test_batches_stream_never_more_than_n_rows_into_the_body(
    instance: dg.DagsterInstance, res: dict[str, Any], database: str
) -> None:
    doc, embedding = _features()
    n = 200_000
    _write_docs(database, doc, n)
    sizes: list[int] = []
    arrow_in_use: list[int] = []

    @mxd.metaxy_asset(embedding)
    def embeddings(context: dg.AssetExecutionContext, increment: mxd.MetaxyIncrement) -> None:
        assert increment.counts() == {"new": n, "stale": 0, "orphaned": 0}
        for batch in increment.batches(10_000):
            sizes.append(batch.height)
            arrow_in_use.append(pa.total_allocated_bytes())
            increment.commit(batch.select("doc_id", "split", pl.lit(8).alias("dim")))

    result = dg.materialize([embeddings], instance=instance, resources=res)
    assert sizes == [10_000] * 20
    meta = materialization_metadata(result)["docs/embedding"]
    assert (meta["metaxy/written"], meta["metaxy/batches"], meta["metaxy/committed"]) == (n, 20, n)
    # While the body runs, Arrow holds one spooled row group (20k rows, ~4.5 MB here), not the
    # increment: read whole, these 200k rows take ~20 MB (and 10M rows would take 1 GB).
    assert max(arrow_in_use) < 8_000_000
    logs = [
        e.message for e in instance.all_logs(result.run_id) if e.message and "batch 20 committed" in e.message
    ]
    assert logs
    assert "200000/200000 samples done (100%)" in logs[0]


def test_rows_returned_after_commits_are_the_last_commit(
    instance: dg.DagsterInstance, res: dict[str, Any], database: str
) -> None:
    doc, embedding = _features()
    _write_docs(database, doc, 25)

    @mxd.metaxy_asset(embedding)
    def embeddings(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        batches = increment.batches(10)
        first = next(batches)
        increment.commit(first.select("doc_id", "split", pl.lit(1).alias("dim")))
        rest = pl.concat(list(batches))  # taken, not committed: returned instead
        return rest.select("doc_id", "split", pl.lit(2).alias("dim"))

    meta = materialization_metadata(dg.materialize([embeddings], instance=instance, resources=res))
    assert (meta["docs/embedding"]["metaxy/batches"], meta["docs/embedding"]["metaxy/written"]) == (2, 25)
    assert _stored(database, embedding).group_by("dim").len().sort("dim").rows() == [(1, 10), (2, 15)]


def test_a_bad_commit_fails_the_step_and_writes_nothing_of_it(
    instance: dg.DagsterInstance, res: dict[str, Any], database: str
) -> None:
    doc, embedding = _features()
    _write_docs(database, doc, 20)

    @mxd.metaxy_asset(embedding)
    def embeddings(increment: mxd.MetaxyIncrement) -> None:
        for i, batch in enumerate(increment.batches(10)):
            rows = batch.select("doc_id", "split", pl.lit(8).alias("dim"))
            if i == 1:  # a row for a sample of the first batch, already committed
                rows = pl.concat(
                    [rows, pl.DataFrame({"doc_id": ["d000000"], "split": ["test"], "dim": [8]})],
                    how="vertical_relaxed",
                )
            increment.commit(rows)

    result = dg.materialize([embeddings], instance=instance, resources=res, raise_on_error=False)
    assert not result.success
    message = _failure_message(result)
    assert "docs/embedding" in message
    assert "outside the batches handed out since the last commit" in message
    assert "d000000" in message
    assert _stored(database, embedding).height == 10  # the first commit only


def test_commit_without_a_batch_or_outside_an_asset_is_refused(
    instance: dg.DagsterInstance, res: dict[str, Any], database: str
) -> None:
    doc, embedding = _features()
    _write_docs(database, doc, 3)

    @mxd.metaxy_asset(embedding)
    def embeddings(increment: mxd.MetaxyIncrement) -> None:
        increment.commit(increment.to_process().select("doc_id", "split", pl.lit(8).alias("dim")))

    result = dg.materialize([embeddings], instance=instance, resources=res, raise_on_error=False)
    assert "no batch is waiting to be committed" in _failure_message(result)

    increment = mxd.MetaxyIOManager(store=res["metaxy_store"]).resolve_increment(embedding)
    try:
        next(increment.batches(2))
        with pytest.raises(mxd.MetaxyOutputError, match="works inside a metaxy asset body"):
            increment.commit(pl.DataFrame({"doc_id": ["d000000"], "dim": [1]}))
        with pytest.raises(ValueError, match="positive number of rows"):
            next(increment.batches(0))
    finally:
        increment.close()
    assert not increment._spool.directory.exists()  # type: ignore[union-attr]

    @mxd.metaxy_asset(embedding)
    def twice(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        rows = pl.concat(list(increment.batches(2))).select("doc_id", "split", pl.lit(8).alias("dim"))
        increment.commit(rows)
        return rows  # everything was committed already

    result = dg.materialize([twice], instance=instance, resources=res, raise_on_error=False)
    assert "committed its batches and then returned rows" in _failure_message(result)


def test_batches_of_a_partition_hold_only_its_samples(
    instance: dg.DagsterInstance, res: dict[str, Any], database: str
) -> None:
    doc, embedding = _features()
    _write_docs(database, doc, 40)
    seen: list[list[str]] = []

    @mxd.metaxy_asset(
        embedding, partitions_def=dg.StaticPartitionsDefinition(["train", "test"]), partition_by="split"
    )
    def embeddings(increment: mxd.MetaxyIncrement) -> None:
        for batch in increment.batches(4):
            seen.append(sorted(set(batch["split"])))
            increment.commit(batch.select("doc_id", "split", pl.lit(8).alias("dim")))

    result = dg.materialize([embeddings], instance=instance, resources=res, partition_key="test")
    assert seen == [["test"]] * 3  # 10 of the 40 docs are in 'test': batches of 4, 4, 2
    meta = materialization_metadata(result)["docs/embedding"]
    assert (meta["metaxy/written"], meta["metaxy/batches"]) == (10, 3)
    assert set(_stored(database, embedding)["split"]) == {"test"}


def test_an_expansion_feature_commits_children_per_batch_of_parents(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any], database: str
) -> None:
    raw, *_ = build_assets(features, samples)
    samples.videos["v3"] = ("a3", "f3")
    samples.chunks_per_video["v3"] = 0  # a video without chunks: recorded as having none

    @mxd.metaxy_asset(features.Chunk)
    def chunk(increment: mxd.MetaxyIncrement) -> None:
        for parents in increment.batches(2):
            rows = [
                {"video_id": v, "video_chunk_id": f"{v}_{i}", "chunk_index": i}
                for v in parents["video_id"]
                for i in range(samples.chunks_per_video[v])
            ]
            increment.commit(
                pl.DataFrame(
                    rows, schema={"video_id": pl.String, "video_chunk_id": pl.String, "chunk_index": pl.Int64}
                )
            )

    result = dg.materialize([raw, chunk], instance=instance, resources=res)
    meta = materialization_metadata(result)["video/chunk"]
    # v3 got no rows (counted as missing, like a returned frame without it) and is stored as a parent
    # without children, so the feature is in sync.
    assert (meta["metaxy/batches"], meta["metaxy/written"], meta["metaxy/missing"]) == (2, 5, 1)
    with mx.DuckDBMetadataStore(database=database) as store:
        assert store.resolve_update(features.Chunk).is_empty
