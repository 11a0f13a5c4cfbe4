"""``copy_metadata``: every store to every store, byte-identical provenance, resumable, verified."""

from collections.abc import Callable

import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core import columns as C
from metaxy_core.errors import StoreError
from metaxy_core.runs import RUNS_TABLE, seconds_per_sample
from metaxy_core.transfer import copy_metadata
from tests.conftest import STORE_FACTORIES
from tests.core.pipelines import build_video_pipeline, raw_samples, run_pipeline

COMPARED = [
    C.PROVENANCE_BY_FIELD,
    C.PROVENANCE,
    C.DATA_VERSION_BY_FIELD,
    C.DATA_VERSION,
    C.FEATURE_VERSION,
    C.SNAPSHOT_VERSION,
    C.CREATED_AT,
    C.UPDATED_AT,
    C.DELETED_AT,
    C.MATERIALIZATION_ID,
]


def _rows(store: mx.MetadataStore, feature: type[mx.BaseFeature], *, history: bool = False) -> pl.DataFrame:
    frame = store.read(feature, include_deleted=True, history=history).to_polars()
    ids = list(feature.spec.id_columns)
    return frame.select(*ids, *COMPARED).sort([*ids, C.UPDATED_AT])


@pytest.fixture(params=sorted(STORE_FACTORIES))
def target_factory(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Callable:
    # Every store as a source into DuckDB, and DuckDB into every store: each engine's read and import
    # paths are covered without running all pairs (the server-backed ones are slow).
    source = request.node.callspec.params.get("store_factory")
    if source is not None and "duckdb" not in (source, request.param):
        pytest.skip("pairs without DuckDB: each store is covered as a source into and a target from DuckDB")
    factory = STORE_FACTORIES[request.param]

    def build() -> mx.MetadataStore:
        return factory(tmp_path_factory.mktemp("target"))

    return build


def _filled(source: mx.MetadataStore) -> "object":
    pipeline = build_video_pipeline()
    with pipeline.graph.use():
        run_pipeline(source, pipeline, raw_samples(["a", "b", "c"]))
        run_pipeline(source, pipeline, raw_samples(["a", "b", "c", "d"], b={"audio": "changed"}))
        source.delete(pipeline.stt, "video_id = 'c'")
    return pipeline


def test_copy_keeps_every_system_column(store_factory: Callable, target_factory: Callable) -> None:
    source, target = store_factory(), target_factory()
    pipeline = _filled(source)
    with pipeline.graph.use(), source, target:
        report = copy_metadata(source, target, batch_size=2)
        assert {r.key: r.rows for r in report} == {
            "video/crop": 4,
            "video/faces": 4,
            "video/raw": 4,
            "video/stt": 4,
        }
        for feature in pipeline.features:
            assert _rows(target, feature).equals(_rows(source, feature))
        # the copy is in sync: nothing to recompute downstream
        for feature in pipeline.downstream:
            inc_s, inc_t = source.resolve_update(feature), target.resolve_update(feature)
            assert inc_t.counts() == inc_s.counts()


def test_copy_resumes_and_then_does_nothing(store_factory: Callable, target_factory: Callable) -> None:
    source, target = store_factory(), target_factory()
    pipeline = _filled(source)
    with pipeline.graph.use(), source, target:
        raw = pipeline.raw
        # an interrupted copy: only some rows arrived
        partial = source.read(raw, include_deleted=True).to_polars().head(2)
        target._import_rows(raw, partial)
        first = {r.key: r for r in copy_metadata(source, target, features=["video/raw"])}
        assert (first["video/raw"].copied, first["video/raw"].skipped) == (2, 2)
        again = copy_metadata(source, target, features=["video/raw"])
        assert (again[0].copied, again[0].skipped) == (0, 4)
        assert _rows(target, raw).equals(_rows(source, raw))


def test_copy_with_history_and_snapshots(store_factory: Callable, target_factory: Callable) -> None:
    source, target = store_factory(), target_factory()
    pipeline = _filled(source)
    with pipeline.graph.use(), source, target:
        mx.push_graph_snapshot(source, pipeline.graph)
        source.record_run(pipeline.raw, seconds=2.5, samples=4, materialization_id="m1")
        source.record_run(pipeline.stt, seconds=1.0, samples=2)  # no materialization id: a null to match
        report = copy_metadata(source, target, history=True, snapshots=True)
        by_key = {r.key: r for r in report}
        assert by_key["video/raw"].history_rows == 1  # b's audio changed once
        assert by_key["video/stt"].history_rows == 2  # b's transcript, and c's before its soft delete
        for feature in pipeline.features:
            assert _rows(target, feature, history=True).equals(_rows(source, feature, history=True))
            assert _rows(target, feature).equals(_rows(source, feature))
        assert target.read_system("graph_snapshots").height == source.read_system("graph_snapshots").height
        # resumed: nothing copied again
        again = copy_metadata(source, target, history=True, snapshots=True)
        assert all(r.copied == 0 for r in again)
        assert target.read_system("graph_snapshots").height == source.read_system("graph_snapshots").height
        assert _runs(target).equals(_runs(source))
        assert seconds_per_sample(target) == seconds_per_sample(source)


def _runs(store: mx.MetadataStore) -> pl.DataFrame:
    runs = store.read_system(RUNS_TABLE)
    assert runs is not None
    return runs.select("feature", "samples", "seconds", "materialization_id", "recorded_at").sort("feature")


def test_copy_errors_name_the_problem(store_factory: Callable) -> None:
    source, target = store_factory(), store_factory()
    pipeline = _filled(source)
    with pipeline.graph.use(), source, target:
        with pytest.raises(StoreError, match="batch_size"):
            copy_metadata(source, target, batch_size=0)
        with pytest.raises(StoreError, match="no metadata for"):
            copy_metadata(mx.InMemoryMetadataStore(), target, features=[pipeline.raw])
        copy_metadata(source, target, features=[pipeline.raw])
        source.write(
            pipeline.raw,
            source.resolve_update(
                pipeline.raw, samples=raw_samples(["a", "b", "c", "d"], a={"audio": "new"})
            ).stale,
        )
        with pytest.raises(StoreError, match="cannot be replayed"):
            copy_metadata(source, target, features=[pipeline.raw], history=True)
