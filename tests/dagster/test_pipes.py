"""Pipes: a real subprocess computes a feature's rows; the metaxy asset stamps, writes and versions them."""

import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

import metaxy_dagster as mxd
from tests.dagster.pipeline import Features, Samples, build_assets, materialization_metadata

STT = "video/stt"
SCRIPT = [sys.executable, str(Path(__file__).with_name("pipes_process.py"))]


@pytest.fixture
def pipes_res(res: dict[str, Any]) -> dict[str, Any]:
    return {**res, "pipes_subprocess_client": dg.PipesSubprocessClient()}


def _stored_texts(res: dict[str, Any], feature: Any) -> dict[str, str]:
    with res["metaxy_store"].open() as store:
        frame = store.read(feature).to_polars()
    return dict(zip(frame["video_id"], frame["text"], strict=True))


def test_pipes_asset_writes_what_the_process_computed(
    features: Features, samples: Samples, instance: dg.DagsterInstance, pipes_res: dict[str, Any]
) -> None:
    raw, *_ = build_assets(features, samples)
    stt = mxd.metaxy_pipes_asset(features.Transcript, command=SCRIPT, group_name="speech")
    assert stt.specs_by_key[dg.AssetKey(["video", "stt"])].group_name == "speech"
    result = dg.materialize([raw, stt], instance=instance, resources=pipes_res)
    meta = materialization_metadata(result)[STT]
    assert (meta["metaxy/new"], meta["metaxy/written"]) == (2, 2)
    assert meta["model"] == "tiny-stt"  # reported by the external process
    assert meta["videos_seen"] == 2
    assert meta["metaxy/external_data_version"] == "external-version"
    assert _stored_texts(pipes_res, features.Transcript) == {"v1": "text of v1", "v2": "text of v2"}
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == STT]
    assert event.materialization.tags["dagster/data_version"] == meta["metaxy/data_version"]  # metaxy's

    # Only the changed video goes to the process next time.
    samples.videos["v2"] = ("a2-new", "f2")
    again = materialization_metadata(dg.materialize([raw, stt], instance=instance, resources=pipes_res))[STT]
    assert (again["metaxy/stale"], again["metaxy/written"], again["videos_seen"]) == (1, 1, 1)


def test_run_pipes_inside_a_metaxy_asset_body_with_rows_in_a_message(
    features: Features,
    samples: Samples,
    instance: dg.DagsterInstance,
    pipes_res: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIPES_MODE", "message")
    raw, *_ = build_assets(features, samples)

    @mxd.metaxy_asset(features.Transcript)
    def stt(
        context: dg.AssetExecutionContext,
        increment: mxd.MetaxyIncrement,
        pipes_subprocess_client: dg.PipesSubprocessClient,
    ) -> dg.Output:
        result = mxd.run_pipes(
            context, pipes_subprocess_client, feature=features.Transcript, increment=increment, command=SCRIPT
        )
        return result.as_output()

    meta = materialization_metadata(dg.materialize([raw, stt], instance=instance, resources=pipes_res))[STT]
    assert (meta["metaxy/written"], meta["model"]) == (2, "tiny-stt")
    assert _stored_texts(pipes_res, features.Transcript) == {"v1": "text of v1", "v2": "text of v2"}


def test_a_process_that_returns_no_rows_fails_and_writes_nothing(
    features: Features,
    samples: Samples,
    instance: dg.DagsterInstance,
    pipes_res: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIPES_MODE", "none")
    raw, *_ = build_assets(features, samples)
    stt = mxd.metaxy_pipes_asset(features.Transcript, command=SCRIPT)
    with pytest.raises(mxd.MetaxyOutputError, match=r"produced no rows: write them as parquet"):
        dg.materialize([raw, stt], instance=instance, resources=pipes_res)
    with pipes_res["metaxy_store"].open() as store:
        assert not store.has_feature(features.Transcript)


def test_checks_reported_by_the_process_reach_dagster(
    features: Features,
    samples: Samples,
    instance: dg.DagsterInstance,
    pipes_res: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIPES_CHECK", "1")
    raw, *_ = build_assets(features, samples)
    key = dg.AssetKey(["video", "stt"])
    stt = mxd.metaxy_pipes_asset(
        features.Transcript, command=SCRIPT, check_specs=[dg.AssetCheckSpec("rows_nonempty", asset=key)]
    )
    result = dg.materialize([raw, stt], instance=instance, resources=pipes_res)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["rows_nonempty"].passed
    assert checks["rows_nonempty"].metadata["rows"].value == 2


@pytest.mark.parametrize(
    ("mode", "check_specs", "error"),
    [
        ("crash", [], r"External execution process failed"),  # its rows file is there, and ignored
        (
            "file",
            [dg.AssetCheckSpec("rows_nonempty", asset=dg.AssetKey(["video", "stt"]))],
            r"gave no result",
        ),
    ],
    ids=["crashed", "declared-check-unreported"],
)
def test_a_failing_process_writes_nothing(
    features: Features,
    samples: Samples,
    instance: dg.DagsterInstance,
    pipes_res: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    check_specs: list[dg.AssetCheckSpec],
    error: str,
) -> None:
    monkeypatch.setenv("PIPES_MODE", mode)
    raw, *_ = build_assets(features, samples)
    stt = mxd.metaxy_pipes_asset(features.Transcript, command=SCRIPT, check_specs=check_specs)
    with pytest.raises(Exception, match=error):
        dg.materialize([raw, stt], instance=instance, resources=pipes_res)
    with pipes_res["metaxy_store"].open() as store:
        assert not store.has_feature(features.Transcript)
