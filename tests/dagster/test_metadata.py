"""Exact materialization metadata written by the metaxy assets across data and code changes."""

from typing import Any

import dagster as dg
import polars as pl

import metaxy_core as mx
import metaxy_dagster as mxd
from metaxy_dagster.data_versions import reference_data_version
from tests.dagster.pipeline import Samples, build_assets, counts, define_features, materialization_metadata


def _reference_dv(database: str, feature: type[mx.BaseFeature]) -> str:
    with mx.DuckDBMetadataStore(database) as store:
        rows = store.read(feature).to_polars()
    ids = list(feature.spec.id_columns)
    return reference_data_version(
        [([str(r[c]) for c in ids], r["metaxy_data_version"]) for r in rows.iter_rows(named=True)]
    )


def test_metadata_over_a_data_change_and_a_code_change(
    samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any], database: str
) -> None:
    f = define_features()
    assets = build_assets(f, samples)

    # 1. First run: everything new.
    first = materialization_metadata(dg.materialize(assets, instance=instance, resources=res))
    assert counts(first) == {
        "video/raw": (2, 0, 0, 2),
        "video/chunk": (2, 0, 0, 5),
        "video/faces": (5, 0, 0, 5),
        "video/stt": (2, 0, 0, 2),
    }
    raw = first["video/raw"]
    assert raw["metaxy/missing"] == 0
    assert raw["metaxy/changed_fields"] == {}
    assert raw["metaxy/feature_version"] == f.Video.feature_version()
    assert raw["metaxy/feature_code_version"] == f.Video.feature_code_version()
    assert raw["metaxy/snapshot_version"] == f.Video.graph.snapshot_version
    assert raw["metaxy/field_versions"] == f.Video.field_versions()
    assert raw["metaxy/field_code_versions"] == {"audio": "1", "frames": "__metaxy_initial__"}
    assert raw["dagster/row_count"] == 2
    assert first["video/chunk"]["dagster/row_count"] == 5
    assert raw["metaxy/definition_diff"] == (
        f"First materialization of `video/raw` (feature version `{f.Video.feature_version()}`)."
    )
    for key, feature in [("video/raw", f.Video), ("video/chunk", f.Chunk), ("video/faces", f.Faces)]:
        assert first[key]["metaxy/data_version"] == _reference_dv(database, feature)
    preview = raw["metaxy/preview"]
    assert [c.name for c in preview.schema.columns] == ["video_id", "path", "metaxy_data_version"]
    assert [r.data["video_id"] for r in preview.records] == ["v1", "v2"]
    assert preview.records[0].data["path"] == "/videos/v1.mp4"

    # 2. The audio of v1 changes on disk: field-level propagation, faces untouched.
    samples.videos["v1"] = ("a1-edited", "f1")
    second = materialization_metadata(dg.materialize(assets, instance=instance, resources=res))
    assert counts(second) == {
        "video/raw": (0, 1, 0, 1),
        "video/chunk": (0, 1, 0, 2),
        "video/faces": (0, 0, 0, 0),
        "video/stt": (0, 1, 0, 1),
    }
    assert second["video/raw"]["metaxy/changed_fields"] == {"audio": 1}
    assert second["video/chunk"]["metaxy/changed_fields"] == {"audio": 1}
    assert second["video/stt"]["metaxy/changed_fields"] == {"transcription": 1}
    assert second["video/faces"]["metaxy/changed_fields"] == {}
    assert second["video/faces"]["metaxy/data_version"] == first["video/faces"]["metaxy/data_version"]
    assert second["video/raw"]["metaxy/data_version"] != first["video/raw"]["metaxy/data_version"]
    assert [r.data["video_id"] for r in second["video/raw"]["metaxy/preview"].records] == ["v1"]
    assert second["video/raw"]["metaxy/definition_diff"] == (
        f"Definition unchanged since the previous materialization (feature version `{f.Video.feature_version()}`)."
    )

    # 3. Code change: faces code_version 1 -> 2 (in a new graph, as after editing the code).
    with mx.FeatureGraph().use():
        g = define_features(faces_code_version="2")
        assets2 = build_assets(g, samples)
        third = materialization_metadata(dg.materialize(assets2, instance=instance, resources=res))
    assert counts(third) == {
        "video/raw": (0, 0, 0, 0),
        "video/chunk": (0, 0, 0, 0),
        "video/faces": (0, 5, 0, 5),
        "video/stt": (0, 0, 0, 0),
    }
    faces = third["video/faces"]
    assert faces["metaxy/changed_fields"] == {"faces": 5}
    assert faces["metaxy/feature_version"] == g.Faces.feature_version() != f.Faces.feature_version()
    old_v, new_v = f.Faces.field_versions()["faces"], g.Faces.field_versions()["faces"]
    assert faces["metaxy/definition_diff"] == (
        f"Feature version `{f.Faces.feature_version()}` → `{g.Faces.feature_version()}`\n\n"
        "| field | previous version | current version | change |\n"
        "|---|---|---|---|\n"
        f"| `faces` | `{old_v[:8]}` | `{new_v[:8]}` | code version 1 → 2 |"
    )
    # Recomputed faces with identical outputs: same data version? No - provenance changed with the code.
    assert faces["metaxy/data_version"] != second["video/faces"]["metaxy/data_version"]


def test_expansion_surplus_children_are_replaced(
    samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any], database: str
) -> None:
    f = define_features()
    raw, chunk, faces, _ = build_assets(f, samples)
    dg.materialize([raw, chunk, faces], instance=instance, resources=res)
    # v2 now yields 1 chunk instead of 3 after its frames change: the 2 surplus chunks must go.
    samples.videos["v2"] = ("a2", "f2-edited")
    samples.chunks_per_video["v2"] = 1
    meta = materialization_metadata(dg.materialize([raw, chunk, faces], instance=instance, resources=res))
    assert counts(meta)["video/chunk"] == (0, 1, 0, 1)
    with mx.DuckDBMetadataStore(database) as store:
        chunks = store.read(f.Chunk).to_polars().sort("video_chunk_id")
    assert chunks["video_chunk_id"].to_list() == ["v1_0", "v1_1", "v2_0"]
    assert meta["video/chunk"]["dagster/row_count"] == 3
    # faces: v2_0 stale (frames changed); v2_1 and v2_2 orphaned (their chunks are gone).
    assert counts(meta)["video/faces"] == (0, 1, 2, 1)


def test_user_data_versions_per_sample_give_early_cutoff(
    samples: Samples, instance: dg.DagsterInstance, res: dict[str, Any]
) -> None:
    """A body that sets metaxy_data_version_by_field from its output content stops propagation."""
    f = define_features()
    raw, _, faces, _ = build_assets(f, samples)

    @mxd.metaxy_asset(f.Chunk)
    def chunk(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        parents = increment.to_process().select("video_id")
        out = parents.with_columns(
            (pl.col("video_id") + "_0").alias("video_chunk_id"), pl.lit(0).alias("chunk_index")
        )
        # The chunk files come out byte-identical whatever the audio codec: hash the content.
        content = pl.col("video_chunk_id") + "-content"
        return out.with_columns(
            pl.struct(audio=content, frames=content).alias("metaxy_data_version_by_field")
        )

    first = materialization_metadata(dg.materialize([raw, chunk, faces], instance=instance, resources=res))
    samples.videos["v1"] = ("a1-edited", "f1")
    second = materialization_metadata(dg.materialize([raw, chunk, faces], instance=instance, resources=res))
    assert counts(second)["video/chunk"] == (0, 1, 0, 1)
    assert second["video/chunk"]["metaxy/data_version"] == first["video/chunk"]["metaxy/data_version"]
    assert counts(second)["video/faces"] == (0, 0, 0, 0)


def test_ui_tables_stay_narrow(tmp_path: Any, monkeypatch: Any) -> None:
    """8-character hashes, paths relative to the working directory, the default code version as 'initial'."""

    from metaxy_dagster import metadata as md

    monkeypatch.chdir(tmp_path)
    frame = pl.DataFrame(
        {
            "video_id": ["v1"],
            "path": [str(tmp_path / "videos" / "v1.mp4")],
            "elsewhere": ["/opt/other/v1.mp4"],
            "metaxy_data_version": ["0123456789abcdef"],
        }
    )
    (record,) = md.preview_table(frame).value.records
    assert record.data == {
        "video_id": "v1",
        "path": "videos/v1.mp4",
        "elsewhere": "/opt/other/v1.mp4",
        "metaxy_data_version": "01234567",
    }
    assert md.code_version_label("__metaxy_initial__") == "initial"
    assert md.code_version_label("2") == "2"
