"""``metaxy metadata status | delete`` through a subprocess on a real DuckDB file."""

from tests.cli.conftest import Project, run_pipeline, video_samples


def _status(project: Project) -> dict[str, dict]:
    data = project.cli_json("metadata", "status", "--format", "json")
    return {f["key"]: f for f in data["features"]} | {"_in_sync": data["in_sync"]}


def test_status_reports_roots_counts_and_asserts_sync(project: Project) -> None:
    assert run_pipeline(project) == {
        "example/video": 3,
        "example/crop": 3,
        "example/face_detection": 3,
        "example/stt": 3,
    }
    status = _status(project)
    assert status["_in_sync"] is True
    assert status["example/video"] == {
        "key": "example/video",
        "version": status["example/video"]["version"],
        "root": True,
        "rows": 3,
        "new": None,
        "stale": 0,  # rows written under an older feature version: none
        "orphaned": None,
        "state": "root",
    }
    assert {
        k: (v["new"], v["stale"], v["orphaned"])
        for k, v in status.items()
        if k.startswith("example/") and k != "example/video"
    } == {
        "example/crop": (0, 0, 0),
        "example/face_detection": (0, 0, 0),
        "example/stt": (0, 0, 0),
    }
    project.cli("metadata", "status", "--assert-in-sync")

    # New audio content for one video and a fourth video: crop and stt go stale / new, faces stay.
    samples = video_samples(4)
    samples = samples.with_columns(
        samples["metaxy_provenance_by_field"].map_elements(
            lambda s: {**s, "audio": s["audio"] + ("x" if s["audio"] == "a-0" else "")},
            return_dtype=samples.schema["metaxy_provenance_by_field"],
        )
    )
    with project.store() as store:
        video = project.features()["example/video"]
        store.write(video, store.resolve_update(video, samples=samples).to_process())
    proc = project.cli("metadata", "status", "--assert-in-sync", expect=3, subprocess=True)
    assert "Out of sync: example/crop, example/stt." in proc.stderr
    assert "out of sync" in proc.stdout
    assert "root" in proc.stdout
    status = _status(project)
    assert (status["example/crop"]["new"], status["example/crop"]["stale"]) == (1, 1)
    assert (status["example/stt"]["new"], status["example/stt"]["stale"]) == (1, 1)
    assert (status["example/face_detection"]["new"], status["example/face_detection"]["stale"]) == (0, 0)
    assert status["example/video"]["rows"] == 4
    only = project.cli_json("metadata", "status", "example/face_detection", "-f", "json")
    assert [f["key"] for f in only["features"]] == ["example/face_detection"]


def test_delete_soft_hard_and_dry_run(project: Project) -> None:
    run_pipeline(project)
    dry = project.cli(
        "metadata", "delete", "example/stt", "--where", "sample_uid IN ('s0', 's1')", "--dry-run"
    ).stdout
    assert "example/stt: would soft-delete 2 sample(s)." in dry
    out = project.cli(
        "metadata", "delete", "example/stt", "--where", "sample_uid = 's0'", subprocess=True
    ).stdout
    assert "example/stt: soft-deleted 1 sample(s)." in out
    with project.store() as store:
        stt = project.features()["example/stt"]
        assert sorted(store.read(stt).to_polars()["sample_uid"]) == ["s1", "s2"]
        assert store.read(stt, include_deleted=True).to_polars().height == 3
        assert store.resolve_update(stt).counts() == {"new": 1, "stale": 0, "orphaned": 0}
    out = project.cli("metadata", "delete", "example/stt", "example/crop", "--all", "--hard").stdout
    assert "example/stt: hard-deleted 3 sample(s)." in out
    assert "example/crop: hard-deleted 3 sample(s)." in out
    with project.store() as store:
        feats = project.features()
        assert store.read(feats["example/stt"], include_deleted=True, history=True).to_polars().height == 0
    proc = project.cli("metadata", "delete", "example/stt", expect=1)
    assert "--where" in proc.stderr
    assert "--all" in proc.stderr
    proc = project.cli("metadata", "delete", "example/sst", "--all", expect=1)
    assert "Unknown feature 'example/sst'" in proc.stderr
    assert "example/stt" in proc.stderr


def test_status_sees_roots_written_under_an_older_feature_version(project: Project) -> None:
    run_pipeline(project)
    project.write_features(video_audio="2")  # a root field's code version bump
    status = _status(project)
    assert status["_in_sync"] is False
    video = status["example/video"]
    assert (video["root"], video["stale"], video["state"]) == (True, 3, "out of sync")
    assert (video["new"], video["orphaned"]) == (None, None)
    out = project.cli("metadata", "status", "--assert-in-sync", expect=3)
    assert "example/video" in out.stderr

    # with the complete samples the root's counts are exact
    samples = project.root / "samples.parquet"
    video_samples(4).write_parquet(samples)
    data = project.cli_json("metadata", "status", "--format", "json", "--samples", f"example/video={samples}")
    exact = {f["key"]: f for f in data["features"]}["example/video"]
    assert (exact["new"], exact["stale"], exact["orphaned"]) == (1, 3, 0)
    bad = project.cli("metadata", "status", "--samples", "example/crop=x.parquet", expect=1)
    assert "not a root feature" in bad.stderr or "no such file" in bad.stderr


def test_compact_keeps_recent_history(project: Project) -> None:
    for salt in ("", "x", "y"):
        run_pipeline(project, video_samples(salt=salt))
    video = project.features()["example/video"]
    with project.store() as store:
        assert store.read(video, history=True).to_polars().height == 9
    out = project.cli("metadata", "compact", "example/video", "--keep-versions", "1").stdout
    assert "example/video: removed 3 superseded version(s)." in out
    out = project.cli("metadata", "compact", "--older-than", "1h").stdout
    assert "example/video: removed 0 superseded version(s)." in out
    with project.store() as store:
        assert store.read(video, history=True).to_polars().height == 6
        assert store.read(video).to_polars().height == 3
    proc = project.cli("metadata", "compact", expect=1)
    assert "--keep-versions" in proc.stderr
    proc = project.cli("metadata", "compact", "--older-than", "3 days", expect=1)
    assert "e.g. 30d" in proc.stderr
