"""``metaxy metadata copy``: between two configured stores, resumable, verified, JSON and table output."""

import polars as pl

import metaxy_core as mx
from metaxy_core import columns as C
from tests.cli.conftest import Project, run_pipeline


def _provenance(store: mx.MetadataStore, feature: type[mx.BaseFeature]) -> pl.DataFrame:
    with store:
        frame = store.read(feature).to_polars()
    return frame.select("sample_uid", C.PROVENANCE_BY_FIELD, C.PROVENANCE, C.DATA_VERSION).sort("sample_uid")


def test_copy_between_configured_stores(project: Project) -> None:
    run_pipeline(project)
    data = project.cli_json(
        "metadata", "copy", "--from", "dev", "--to", "other", "--snapshots", "--format", "json"
    )
    assert {f["key"]: (f["rows"], f["copied"]) for f in data["features"]} == {
        "example/crop": (3, 3),
        "example/face_detection": (3, 3),
        "example/stt": (3, 3),
        "example/video": (3, 3),
    }
    other = mx.DuckDBMetadataStore(database=project.root / "other.duckdb")
    for key, cls in project.features().items():
        assert _provenance(other, cls).equals(_provenance(project.store(), cls)), key
    # the target is in sync: status against it finds nothing to do
    status = project.cli_json("--store", "other", "metadata", "status", "--format", "json")
    assert status["in_sync"] is True
    # a second run resumes and copies nothing
    again = project.cli("metadata", "copy", "example/video", "--from", "dev", "--to", "other")
    assert "counts verified" in again.stdout
    assert "example/video" in again.stdout


def test_copy_rejects_same_store_and_unknown_names(project: Project) -> None:
    run_pipeline(project)
    same = project.cli("metadata", "copy", "--from", "dev", "--to", "dev", expect=1)
    assert "two different stores" in same.stderr
    unknown = project.cli("metadata", "copy", "--from", "dev", "--to", "prod", expect=None)
    assert unknown.returncode != 0
    assert "prod" in unknown.stderr
