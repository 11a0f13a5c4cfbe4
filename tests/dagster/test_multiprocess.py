"""Parallel steps of one run (multiprocess executor) share a DuckDB file without lock failures."""

from pathlib import Path

import dagster as dg
import pytest

import metaxy_core as mx
from tests.dagster import parallel_job


def test_parallel_steps_share_one_duckdb_file(
    tmp_path: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = str(tmp_path / "parallel.duckdb")
    monkeypatch.setenv(parallel_job.DATABASE_ENV, database)
    run_config = {
        # forkserver with the job module preloaded: step processes fork from a warm interpreter
        # instead of importing dagster, polars and duckdb from scratch (seconds each).
        "execution": {
            "config": {
                "max_concurrent": 4,
                "start_method": {"forkserver": {"preload_modules": ["tests.dagster.parallel_job"]}},
            }
        },
    }
    with dg.execute_job(
        dg.reconstructable(parallel_job.parallel_job), instance=instance, run_config=run_config
    ) as result:
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        steps = {e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"}
        written = {
            e.asset_key.path[-1]: e.step_materialization_data.materialization.metadata["metaxy/written"].value
            for e in result.all_events
            if e.event_type_value == "ASSET_MATERIALIZATION"
        }
        logs = instance.all_logs(result.run_id)
        starts = sorted(
            (e.timestamp, e.step_key) for e in logs if e.dagster_event_type == dg.DagsterEventType.STEP_START
        )
        ends = {
            e.step_key: e.timestamp for e in logs if e.dagster_event_type == dg.DagsterEventType.STEP_SUCCESS
        }
    assert steps == {"par__root", "par__c1", "par__c2", "par__c3", "par__c4"}
    assert written == {"root": 50, "c1": 50, "c2": 50, "c3": 50, "c4": 50}
    # The children really overlapped: some child started before another child finished.
    child_starts = [t for t, k in starts if k != "par__root"]
    assert min(ends[k] for k in ends if k != "par__root") > sorted(child_starts)[1]
    with mx.DuckDBMetadataStore(database) as store:
        for child in parallel_job.children:
            assert store.read(child).to_polars().height == 50
