"""``metaxy migrations generate | apply | status`` end to end on a real DuckDB file."""

import polars as pl
import yaml

from tests.cli.conftest import Project, run_pipeline, video_samples


def _dv(project: Project, key: str) -> dict[str, dict]:
    with project.store() as store:
        frame = store.read(project.features()[key]).to_polars().sort("sample_uid")
    return {r["sample_uid"]: r for r in frame.iter_rows(named=True)}


def test_restamp_after_an_output_neutral_code_bump_keeps_downstream_in_sync(project: Project) -> None:
    run_pipeline(project)
    project.cli("graph", "push")
    before = _dv(project, "example/crop")

    # The code change: crop.frames gets code_version 2 (a refactor with identical output).
    project.write_features(crop_frames="2")
    # Meanwhile video s0 got new frames: its crop row is stale for a real reason and must stay stale.
    samples = video_samples(3).with_columns(
        pl.when(pl.col("sample_uid") == "s0")
        .then(pl.struct(audio=pl.lit("a-0"), frames=pl.lit("f-0-new")))
        .otherwise(pl.col("metaxy_provenance_by_field"))
        .alias("metaxy_provenance_by_field")
    )
    with project.store() as store:
        video = project.features()["example/video"]
        store.write(video, store.resolve_update(video, samples=samples).to_process())
        crop = project.features()["example/crop"]
        assert store.resolve_update(crop).counts() == {"new": 0, "stale": 3, "orphaned": 0}

    out = project.cli("migrations", "generate", "--name", "crop refactor", subprocess=True).stdout
    assert "restamp example/crop: field 'frames' code_version '1' -> '2'" in out
    assert "downstream example/face_detection: nothing to do" in out
    files = list((project.root / "migrations").glob("*.yaml"))
    assert len(files) == 1
    assert files[0].name.endswith("_crop_refactor.yaml")
    doc = yaml.safe_load(files[0].read_text())
    assert [op["feature"] for op in doc["operations"]] == ["example/crop"]
    assert doc["operations"][0]["fields"] == ["frames"]
    assert doc["downstream"][0]["feature"] == "example/face_detection"
    assert files[0].read_text().startswith("# metaxy migration: re-stamp stored provenance")

    status = project.cli_json("migrations", "status", "-f", "json")
    assert status[0]["state"] == "pending"

    dry = project.cli("migrations", "apply", "--dry-run").stdout
    assert "example/crop: would apply (2 row(s) re-stamped, 1 row(s) already stale" in dry
    out = project.cli("migrations", "apply", doc["id"], subprocess=True).stdout
    assert (
        "example/crop: applied (2 row(s) re-stamped, 1 row(s) already stale before the change left for recompute)"
        in out
    )
    assert "Pushed graph snapshot" in out
    again = project.cli("migrations", "apply", doc["id"]).stdout
    assert f"Migration {doc['id']} is already applied (1 operation(s)); nothing to do." in again

    after = _dv(project, "example/crop")
    for uid in ("s1", "s2"):
        assert after[uid]["metaxy_provenance"] != before[uid]["metaxy_provenance"]
        assert after[uid]["metaxy_data_version_by_field"] == before[uid]["metaxy_data_version_by_field"]
        assert after[uid]["metaxy_data_version"] == before[uid]["metaxy_data_version"]
        assert after[uid]["crop_path"] == before[uid]["crop_path"]
        assert after[uid]["metaxy_materialization_id"] == f"migration:{doc['id']}"
    assert after["s0"]["metaxy_provenance"] == before["s0"]["metaxy_provenance"]

    with project.store() as store:
        feats = project.features()
        crop_inc = store.resolve_update(feats["example/crop"])
        assert crop_inc.counts() == {"new": 0, "stale": 1, "orphaned": 0}
        assert crop_inc.stale.to_polars()["sample_uid"].to_list() == ["s0"]
        assert store.resolve_update(feats["example/face_detection"]).counts() == {
            "new": 0,
            "stale": 0,
            "orphaned": 0,
        }
        assert store.resolve_update(feats["example/stt"]).counts() == {"new": 0, "stale": 0, "orphaned": 0}
        records = store.read_system("migrations")
        assert records is not None
        assert records.height == 1
        assert records["rows"].to_list() == [2]

    status = project.cli_json("migrations", "status", "-f", "json")
    assert status[0]["state"] == "applied"
    assert status[0]["operations"][0]["rows"] == 2
    # The snapshot pushed by apply is the code's graph: nothing left to migrate.
    assert "Nothing to migrate" in project.cli("migrations", "generate").stdout


def test_root_restamp_needs_samples(project: Project) -> None:
    run_pipeline(project)
    project.cli("graph", "push")
    before = _dv(project, "example/video")
    project.write_features(video_audio="2")
    out = project.cli("migrations", "generate").stdout
    assert "restamp example/video (root: needs samples)" in out
    proc = project.cli("migrations", "apply", expect=1)
    assert "root feature(s) ['example/video'] cannot be re-stamped from stored rows" in proc.stderr
    assert "Nothing was written." in proc.stderr
    video_samples(3).write_parquet(project.root / "videos.parquet")
    out = project.cli(
        "migrations", "apply", "--samples", "example/video=videos.parquet", subprocess=True
    ).stdout
    assert "example/video: applied (3 row(s) re-stamped)" in out

    after = _dv(project, "example/video")
    assert all(
        after[u]["metaxy_data_version_by_field"] == before[u]["metaxy_data_version_by_field"] for u in after
    )
    assert all(after[u]["metaxy_provenance"] != before[u]["metaxy_provenance"] for u in after)
    with project.store() as store:
        feats = project.features()
        counts = store.resolve_update(feats["example/video"], samples=video_samples(3)).counts()
        assert counts == {"new": 0, "stale": 0, "orphaned": 0}
        for key in ("example/crop", "example/stt", "example/face_detection"):
            assert store.resolve_update(feats[key]).counts() == {"new": 0, "stale": 0, "orphaned": 0}, key
    project.cli("metadata", "status", "--assert-in-sync")


def test_alter_column_and_add_id_column_commands(project: Project) -> None:
    run_pipeline(project)
    out = project.cli("migrations", "alter-column", "example/video", "frames", "String").stdout
    assert "Converted example/video.frames to String (3 current row(s), history included)." in out
    with project.store() as store:
        video = store.read(project.features()["example/video"]).to_polars()
        records = store.read_system("migrations")
    assert video.schema["frames"] == pl.String
    assert records is not None
    assert records["op"].to_list() == ["alter_column"]
    bad = project.cli("migrations", "add-id-column", "example/video", "frames", "--default", "0", expect=1)
    assert "'frames' is not an id column of 'example/video'" in bad.stdout + bad.stderr
