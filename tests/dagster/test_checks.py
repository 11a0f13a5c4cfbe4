"""Built-in asset checks (metaxy_in_sync, metaxy_no_orphans) and user check_specs, on a real instance."""

from typing import Any

import dagster as dg
import polars as pl
import pytest

import metaxy_core as mx
import metaxy_dagster as mxd
from tests.dagster.pipeline import Features, Samples, build_assets

RAW, CHUNK, FACES, STT = (dg.AssetKey(["video", k]) for k in ("raw", "chunk", "faces", "stt"))


def _checks(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


def test_builtin_checks_run_after_each_materialization(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    assets = build_assets(features, samples)
    result = dg.materialize(assets, instance=instance, resources=res)
    checks = _checks(result)
    assert set(checks) == {
        (key, name)
        for key in ("video/raw", "video/chunk", "video/faces", "video/stt")
        for name in ("metaxy_in_sync", "metaxy_no_orphans")
    }
    assert all(e.passed for e in checks.values())
    assert checks[("video/chunk", "metaxy_in_sync")].metadata["new"].value == 0


def test_checks_run_on_their_own_and_see_upstream_changes(
    features: Features,
    samples: Samples,
    instance: dg.DagsterInstance,
    res: dict[str, Any],
    database: str,
) -> None:
    assets = build_assets(features, samples)
    dg.materialize(assets, instance=instance, resources=res)
    samples.videos["v2"] = ("a2-new", "f2")  # v2's audio changes on disk
    dg.materialize(assets, instance=instance, resources=res, selection=[RAW])
    # v1 is deleted outside Dagster: its chunks and transcript are orphans now
    mx.DuckDBMetadataStore(database=database).delete(features.Video, "video_id = 'v1'")
    samples.calls.clear()
    only_checks = [
        dg.AssetCheckKey(k, n) for k in (CHUNK, STT) for n in ("metaxy_in_sync", "metaxy_no_orphans")
    ]
    job = dg.define_asset_job("metaxy_checks", selection=dg.AssetSelection.checks(*only_checks))
    defs = dg.Definitions(assets=assets, jobs=[job], resources=res)
    result = defs.resolve_job_def("metaxy_checks").execute_in_process(instance=instance)
    assert result.success
    assert samples.calls == []  # no body ran
    assert result.get_asset_materialization_events() == []
    checks = _checks(result)
    stt_sync = checks[("video/stt", "metaxy_in_sync")]
    assert not stt_sync.passed
    assert stt_sync.severity == dg.AssetCheckSeverity.WARN
    assert stt_sync.metadata["stale"].value == 1
    assert stt_sync.metadata["changed fields"].value == "transcription:1"
    assert not checks[("video/stt", "metaxy_no_orphans")].passed
    assert checks[("video/stt", "metaxy_no_orphans")].metadata["orphaned"].value == 1
    assert not checks[("video/chunk", "metaxy_no_orphans")].passed


def test_checks_can_be_switched_off_or_chosen(features: Features, samples: Samples) -> None:
    @mxd.metaxy_asset(features.Transcript, checks=False)
    def stt(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        return increment.to_process().select("video_id", pl.lit("x").alias("text"))

    assert list(stt.check_keys) == []

    @mxd.metaxy_asset(
        features.Transcript, checks=["metaxy_no_orphans"], check_severity=dg.AssetCheckSeverity.ERROR
    )
    def stt2(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        return increment.to_process().select("video_id", pl.lit("x").alias("text"))

    assert [k.name for k in stt2.check_keys] == ["metaxy_no_orphans"]
    with pytest.raises(mxd.MetaxyDefinitionError, match="unknown built-in check"):
        mxd.metaxy_asset(features.Transcript, checks=["in_sync"])(lambda increment: None)


def test_user_check_specs_work_alongside(
    features: Features, samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    raw, *_ = build_assets(features, samples)

    @mxd.metaxy_asset(features.Transcript, check_specs=[dg.AssetCheckSpec("non_empty_text", asset=STT)])
    def stt(increment: mxd.MetaxyIncrement) -> Any:
        rows = increment.to_process().select("video_id", pl.lit("hello").alias("text"))
        yield dg.AssetCheckResult(check_name="non_empty_text", passed=bool((rows["text"] != "").all()))
        yield rows

    result = dg.materialize([raw, stt], instance=instance, resources=res)
    checks = _checks(result)
    assert checks[("video/stt", "non_empty_text")].passed
    assert checks[("video/stt", "metaxy_in_sync")].passed
    with pytest.raises(mxd.MetaxyDefinitionError, match="reuse built-in check names"):
        mxd.metaxy_asset(features.Transcript, check_specs=[dg.AssetCheckSpec("metaxy_in_sync", asset=STT)])(
            lambda increment: None
        )
