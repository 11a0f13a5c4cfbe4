"""The graph asset: the whole feature graph and its diff against the last pushed snapshot, as metadata."""

from typing import Any

import dagster as dg

import metaxy_core as mx
import metaxy_dagster as mxd
from tests.dagster.pipeline import define_features


def _materialize(graph: mx.FeatureGraph, instance: dg.DagsterInstance, res: dict[str, Any]) -> dict[str, Any]:
    asset = mxd.build_metaxy_graph_asset(graph)
    result = dg.materialize([asset], instance=instance, resources={"metaxy_store": res["metaxy_store"]})
    (event,) = result.get_asset_materialization_events()
    assert event.asset_key == dg.AssetKey(["metaxy", "graph"])
    mat = event.materialization
    assert mat.tags["dagster/data_version"] == graph.snapshot_version
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def test_graph_and_diff_against_the_last_push(
    graph: mx.FeatureGraph, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    f = define_features()
    first = _materialize(graph, instance, res)
    assert first["metaxy/pushed"] is True
    assert first["metaxy/previous_snapshot_version"] == "none"
    assert first["metaxy/features"] == 4
    table = first["metaxy/graph"]
    assert table.splitlines()[0] == "| feature | version | code version | fields | depends on |"
    audio, frames = f.Video.field_versions()["audio"], f.Video.field_versions()["frames"]
    assert (
        f"| `video/raw` | `{f.Video.feature_version()[:8]}` | `{f.Video.feature_code_version()[:8]}` | "
        f"audio (`{audio[:8]}`), frames (`{frames[:8]}`) | — |"
    ) in table
    assert "| `video/faces` |" in table
    assert "| video/chunk |" in table
    diff = first["metaxy/diff"]
    assert diff.startswith(f"Snapshot `none` (nothing pushed yet) → `{graph.snapshot_version}` (current)")
    assert [line.split(" | ")[1] for line in diff.splitlines()[4:]] == ["added"] * 4
    assert first["metaxy/mermaid"].startswith("```mermaid\n---\ntitle: Feature Graph\n---\nflowchart TB")
    assert first["metaxy/mermaid"].endswith("```")
    assert "video_raw --> video_chunk" in first["metaxy/mermaid"].replace("        ", "")

    second = _materialize(graph, instance, res)
    assert second["metaxy/pushed"] is False
    assert second["metaxy/diff"].endswith("No changes.")

    with mx.FeatureGraph().use() as changed:
        g = define_features(audio_code_version="2")
        third = _materialize(changed, instance, res)
    assert third["metaxy/pushed"] is True
    assert third["metaxy/previous_snapshot_version"] == graph.snapshot_version
    rows = {line.split(" | ")[0].strip("| `"): line for line in third["metaxy/diff"].splitlines()[4:]}
    assert sorted(rows) == ["video/chunk", "video/raw", "video/stt"]
    old_audio, new_audio = audio, g.Video.field_versions()["audio"]
    assert rows["video/raw"] == (
        f"| `video/raw` | changed | code_version | `{f.Video.feature_version()[:8]}` → "
        f"`{g.Video.feature_version()[:8]}` | audio: `{old_audio[:8]}` → `{new_audio[:8]}` (code 1 → 2) |"
    )
    assert "| changed (upstream only) | upstream |" in rows["video/stt"]
    assert "style" in third["metaxy/diff_mermaid"]
