"""The Python API behind the CLI (snapshots, diff, render, migrations), in-process on DuckDB files."""

import json
from pathlib import Path

import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core.migrations import Migration, MigrationError
from metaxy_core.snapshots import GraphSnapshot, list_graph_snapshots
from tests.cli.conftest import Project, run_pipeline


def _graph(
    *,
    video_cv: str = "1",
    extra_field: bool = False,
    ids: tuple[str, ...] = ("id",),
    with_stt: bool = True,
    with_crop: bool = False,
) -> mx.FeatureGraph:
    graph = mx.FeatureGraph()
    with graph.use():
        fields = [mx.FieldSpec("audio", code_version=video_cv), "frames"] + (["depth"] if extra_field else [])

        class Video(mx.BaseFeature, spec=mx.FeatureSpec(key="video", id_columns=["id"], fields=fields)):
            id: str
            id2: str | None = None  # lets stt widen its ids to (id, id2): join columns come from upstream

        if with_stt:

            class Stt(
                mx.BaseFeature,
                spec=mx.FeatureSpec(key="stt", id_columns=list(ids), deps=[Video], fields=["audio"]),
            ):
                id: str

        if with_crop:

            class Crop(mx.BaseFeature, spec=mx.FeatureSpec(key="crop", id_columns=["id"], deps=[Video])):
                id: str

    return graph


def test_diff_reasons_added_removed_fields_and_spec() -> None:
    base = _graph()
    d = mx.diff_graphs(base, _graph(video_cv="2", extra_field=True, ids=("id", "id2"), with_crop=True))
    assert isinstance(d, mx.GraphDiff)
    got = {c.key: (c.status, c.reasons) for c in d.features}
    # stt: its id columns changed (spec) and its audio version moved with video's (upstream).
    assert got == {
        "video": ("changed", ("fields", "code_version")),
        "stt": ("changed", ("spec", "upstream")),
        "crop": ("added", ()),
    }
    assert not d.get("stt").upstream_only  # type: ignore[union-attr]
    assert [f.status for f in d.get("video").fields] == ["changed", "added", "unchanged"]  # type: ignore[union-attr]
    removed = mx.diff_graphs(base, _graph(with_stt=False))
    assert [(c.key, c.status) for c in removed.features] == [("video", "unchanged"), ("stt", "removed")]
    assert removed.removed[0].fields[0].status == "removed"
    data = json.loads(removed.to_json())
    assert data["summary"] == {"added": 0, "removed": 1, "changed": 0, "upstream_only": 0, "unchanged": 1}
    assert not mx.diff_graphs(base, _graph()).has_changes
    mermaid = mx.render_diff(removed, "mermaid")
    assert "style stt stroke:#CC0000,stroke-width:3px,stroke-dasharray:5 5" in mermaid
    assert "video -.-> stt" in mermaid
    added = mx.render_diff(mx.diff_graphs(base, _graph(with_crop=True)), "mermaid")
    assert "style crop stroke:#00AA00,stroke-width:3px" in added
    with pytest.raises(
        mx.MetaxyError, match=r"Unknown graph diff format 'dot'\. Use one of: mermaid, terminal, json"
    ):
        mx.render_diff(removed, "dot")


def test_snapshots_push_load_prefix_and_hash_length(tmp_path: Path) -> None:
    store = mx.DuckDBMetadataStore(database=tmp_path / "m.duckdb", hash_length=8)
    g1, g2 = _graph(), _graph(video_cv="2")
    r1 = mx.push_graph_snapshot(store, g1)
    assert r1.recorded
    assert r1.features == 2
    assert not mx.push_graph_snapshot(store, g1).recorded
    r2 = mx.push_graph_snapshot(store, g2)
    assert [i.snapshot_version for i in list_graph_snapshots(store)] == [
        r1.snapshot_version,
        r2.snapshot_version,
    ]
    latest = mx.load_graph_snapshot(store)
    assert latest.snapshot_version == r2.snapshot_version
    assert latest.hash_length == 8
    assert latest.to_dict() == GraphSnapshot.from_graph(g2, hash_length=8).to_dict()
    by_prefix = mx.load_graph_snapshot(store, r1.snapshot_version[:4])
    assert by_prefix.snapshot_version == r1.snapshot_version
    assert by_prefix.feature("stt").fields[0].parents == ("video.audio",)
    with pytest.raises(
        mx.SnapshotNotFoundError, match=r"No graph snapshot 'ffff0000'.*recorded \(newest first\)"
    ):
        mx.load_graph_snapshot(store, "ffff0000")
    with pytest.raises(mx.SnapshotNotFoundError, match="Feature 'nope' is not in graph snapshot"):
        latest.feature("nope")
    # A stored snapshot compared with code: the code is versioned at the snapshot's hash length.
    mx.set_config(mx.load_config(None, hash_length=16))
    d = mx.diff_graphs(r1.snapshot_version, g2, store=store)
    assert d.new.hash_length == 8
    assert [c.status for c in d.features] == ["changed", "changed"]
    assert d.features[1].upstream_only
    # Same specs pushed at another hash length: another snapshot; comparing the two is refused.
    store16 = mx.DuckDBMetadataStore(database=tmp_path / "m.duckdb", hash_length=16)
    r3 = mx.push_graph_snapshot(store16, g2)
    with pytest.raises(mx.MetaxyError, match="different hash lengths never match"):
        mx.diff_graphs(r1.snapshot_version, r3.snapshot_version, store=store16)


def test_render_formats_from_the_api() -> None:
    graph = _graph(with_crop=True)
    snap = GraphSnapshot.from_graph(graph, hash_length=8)
    assert json.loads(mx.render_graph(graph, "json", hash_length=8)) == snap.to_dict()
    mermaid = mx.render_graph(graph, "mermaid", hash_length=8)
    assert f"%% Snapshot version: {snap.snapshot_version}" in mermaid
    assert "video --> stt" in mermaid
    assert "video --> crop" in mermaid
    assert "Feature graph (current, 3 features)" in mx.render_graph(graph, "terminal", hash_length=8)
    with pytest.raises(mx.MetaxyError, match="Unknown graph render format 'png'"):
        mx.render_graph(graph, "png")


def test_status_api_with_root_samples(tmp_path: Path) -> None:
    graph = _graph()
    video = graph.get_feature("video")
    store = mx.DuckDBMetadataStore(database=tmp_path / "s.duckdb")
    samples = pl.DataFrame(
        {"id": ["a", "b"], "metaxy_provenance_by_field": [{"audio": "1", "frames": "2"}] * 2}
    )
    with store:
        store.write(video, store.resolve_update(video, samples=samples).new)
    rows = mx.feature_status(store, graph=graph, samples={"video": samples.head(1)})
    assert [(r.key, r.state, r.rows, r.new, r.stale, r.orphaned) for r in rows] == [
        ("video", "out of sync", 2, 0, 0, 1),
        ("stt", "out of sync", 0, 2, 0, 0),
    ]


def test_field_and_feature_renames_are_restamped(project: Project) -> None:
    run_pipeline(project)
    store = project.store()
    old = project.features()
    mx.push_graph_snapshot(store, old["example/video"].graph)
    with store:
        crop_before = store.read(old["example/crop"]).to_polars().sort("sample_uid")
        stt_before = store.read(old["example/stt"]).to_polars().sort("sample_uid")

    project.write_features(crop_audio_field="sound", stt_key="example/speech")
    feats = project.features()
    graph = feats["example/video"].graph
    migration = mx.generate_migration(store, graph=graph, directory=project.root / "migrations")
    assert migration is not None
    ops = {op.feature: op for op in migration.operations}
    assert set(ops) == {"example/crop", "example/speech"}
    assert ops["example/crop"].field_renames == {"sound": "audio"}
    assert ops["example/crop"].reason == "field 'audio' renamed to 'sound'"
    assert ops["example/speech"].renamed_from == "example/stt"
    assert Migration.load(migration.path).operations == migration.operations  # type: ignore[arg-type]

    result = mx.apply_migration(store, migration, graph=graph)
    assert [(o.feature, o.status, o.rows) for o in result.operations] == [
        ("example/crop", "applied", 3),
        ("example/speech", "applied", 3),
    ]
    with store:
        crop = store.read(feats["example/crop"]).to_polars().sort("sample_uid")
        speech = store.read(feats["example/speech"]).to_polars().sort("sample_uid")
        assert crop["metaxy_data_version_by_field"].struct.field("sound").to_list() == (
            crop_before["metaxy_data_version_by_field"].struct.field("audio").to_list()
        )
        assert speech["text"].to_list() == stt_before["text"].to_list()
        assert (
            speech["metaxy_data_version_by_field"].to_list()
            == stt_before["metaxy_data_version_by_field"].to_list()
        )
        for key in ("example/crop", "example/speech", "example/face_detection"):
            assert store.resolve_update(feats[key]).counts() == {"new": 0, "stale": 0, "orphaned": 0}, key
    again = mx.apply_migration(store, migration.path, graph=graph)
    assert {o.status for o in again.operations} == {"already applied"}


def test_expansion_children_are_restamped_in_one_write(tmp_path: Path) -> None:
    def build(chunk_cv: str) -> mx.FeatureGraph:
        graph = mx.FeatureGraph()
        with graph.use():

            class Raw(
                mx.BaseFeature,
                spec=mx.FeatureSpec(key="video/raw", id_columns=["video_id"], fields=["audio"]),
            ):
                video_id: str

            class Chunk(
                mx.BaseFeature,
                spec=mx.FeatureSpec(
                    key="video/chunk",
                    id_columns=["chunk_id"],
                    fields=[mx.FieldSpec("audio", code_version=chunk_cv)],
                    deps=[
                        mx.FeatureDep(feature=Raw, lineage=mx.LineageRelationship.expansion(on=["video_id"]))
                    ],
                ),
            ):
                video_id: str
                chunk_id: str

            class Faces(
                mx.BaseFeature, spec=mx.FeatureSpec(key="video/faces", id_columns=["chunk_id"], deps=[Chunk])
            ):
                chunk_id: str

        return graph

    store = mx.DuckDBMetadataStore(database=tmp_path / "e.duckdb", hash_length=8)
    mx.set_config(mx.load_config(None, hash_length=8))
    g1 = build("1")
    raw, chunk, faces = (g1.get_feature(k) for k in ("video/raw", "video/chunk", "video/faces"))
    with store:
        samples = pl.DataFrame(
            {"video_id": ["v1", "v2"], "metaxy_provenance_by_field": [{"audio": "x"}, {"audio": "y"}]}
        )
        store.write(raw, store.resolve_update(raw, samples=samples).new)
        parents = store.resolve_update(chunk).new.to_polars()
        children = parents.join(
            pl.DataFrame({"video_id": ["v1", "v1", "v1", "v2"], "chunk_id": ["1a", "1b", "1c", "2a"]}),
            on="video_id",
        ).select("video_id", "chunk_id", "metaxy_provenance_by_field", "metaxy_provenance")
        store.write(chunk, children)
        store.write(
            faces,
            store.resolve_update(faces)
            .new.to_polars()
            .select("chunk_id", "metaxy_provenance_by_field", "metaxy_provenance"),
        )
    mx.push_graph_snapshot(store, g1)
    g2 = build("2")
    migration = mx.generate_migration(store, graph=g2, write=False)
    assert migration is not None
    assert [op.feature for op in migration.operations] == ["video/chunk"]
    assert migration.downstream == [{"feature": "video/faces", "note": migration.downstream[0]["note"]}]
    with store:
        assert (
            store.resolve_update(g2.get_feature("video/chunk")).counts()["stale"] == 2
        )  # parent granularity
    result = mx.apply_migration(store, migration, graph=g2)
    assert [(o.status, o.rows) for o in result.operations] == [("applied", 4)]
    with store:
        assert store.read(g2.get_feature("video/chunk")).to_polars().height == 4
        for key in ("video/chunk", "video/faces"):
            assert store.resolve_update(g2.get_feature(key)).counts() == {"new": 0, "stale": 0, "orphaned": 0}


def test_apply_refuses_a_migration_for_another_graph(project: Project) -> None:
    run_pipeline(project)
    store = project.store()
    mx.push_graph_snapshot(store, project.features()["example/video"].graph)
    project.write_features(crop_audio="2")
    graph = project.features()["example/video"].graph
    migration = mx.generate_migration(store, graph=graph, directory=project.root / "migrations")
    assert migration is not None
    project.write_features(crop_audio="3")
    newer = project.features()["example/video"].graph
    with pytest.raises(MigrationError, match=r"was generated for graph .* but the code's graph is now"):
        mx.apply_migration(store, migration, graph=newer)
    with pytest.raises(MigrationError, match=r"No migration 'zzz' in .*Migrations there: "):
        mx.apply_migration(store, "zzz", graph=newer)
