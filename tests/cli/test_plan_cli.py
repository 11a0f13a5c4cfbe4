"""``metaxy plan`` on a real project folder and DuckDB file."""

from pathlib import Path

import polars as pl

from tests.cli.conftest import Project, run_pipeline, video_samples


def _changed_samples() -> pl.DataFrame:
    # the audio of s0 changes and s3 is new: crop and stt follow, face detection reads frames only
    samples = video_samples(4)
    return samples.with_columns(
        pl.when(pl.col("sample_uid") == "s0")
        .then(pl.struct(audio=pl.lit("a-0x"), frames=pl.lit("f-0")))
        .otherwise(pl.col("metaxy_provenance_by_field"))
        .alias("metaxy_provenance_by_field")
    )


def test_plan_json_predicts_every_feature_and_estimates_from_records(project: Project) -> None:
    run_pipeline(project)
    with project.store() as store:
        store.record_run("example/crop", seconds=4.0, samples=2)
    path = project.root / "samples.parquet"
    _changed_samples().write_parquet(path)
    data = project.cli_json("plan", "--format", "json", "--samples", f"example/video={path.name}")
    got = {f["key"]: (f["now"], f["predicted"], f["changed_fields"]) for f in data["features"]}
    zero = {"new": 0, "stale": 0, "orphaned": 0}
    assert got == {
        "example/video": ({"new": 1, "stale": 1, "orphaned": 0},) * 2 + ({"audio": 1},),
        "example/crop": (zero, {"new": 1, "stale": 1, "orphaned": 0}, {"audio": 1}),
        "example/face_detection": (zero, {"new": 1, "stale": 0, "orphaned": 0}, {}),
        "example/stt": (zero, {"new": 1, "stale": 1, "orphaned": 0}, {"transcription": 1}),
    }
    crop = next(f for f in data["features"] if f["key"] == "example/crop")
    assert crop["seconds_per_sample"] == 2.0
    assert crop["estimated_seconds"] == 4.0
    assert data["total_estimated_seconds"] == 4.0
    assert "upper bounds" in data["note"]

    # and the run then does what was predicted, feature by feature
    written = run_pipeline(project, _changed_samples())
    assert written == {"example/video": 2, "example/crop": 2, "example/face_detection": 1, "example/stt": 2}


def test_plan_terminal_and_mermaid_and_samples_from_a_function(project: Project) -> None:
    run_pipeline(project)
    (project.root / "lister.py").write_text(
        "from tests.cli.test_plan_cli import _changed_samples\n\ndef samples():\n    return _changed_samples()\n"
    )
    proc = project.cli("plan", "--samples", "example/video=lister:samples")
    assert "example/crop" in proc.stdout
    assert "4 of 4 feature(s) will recompute samples." in proc.stdout
    assert "No recorded materializations for" in proc.stdout
    assert "upper bounds" in proc.stdout
    mermaid = project.cli("plan", "--format", "mermaid", "--samples", "example/video=lister:samples").stdout
    assert mermaid.startswith("flowchart TD")
    assert "class " in mermaid


def test_plan_without_samples_and_bad_samples(project: Project) -> None:
    run_pipeline(project)
    proc = project.cli("plan")
    assert "0 of 4 feature(s) will recompute samples." in proc.stdout
    assert "root without samples" in proc.stdout
    bad = project.cli("plan", "--samples", "example/crop=x.parquet", expect=1)
    assert "only roots take samples" in bad.stderr
    missing = project.cli("plan", "--samples", f"example/video={Path('nowhere.parquet')}", expect=1)
    assert "no such file" in missing.stderr
