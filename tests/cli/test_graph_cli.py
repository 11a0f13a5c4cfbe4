"""``metaxy graph render | push | diff | history`` and ``metaxy list features`` through a subprocess."""

import json
import re

from tests.cli.conftest import Project

GOLDEN_64 = {"METAXY_HASH_LENGTH": "64"}


def test_render_json_and_mermaid_match_the_reference_graph_at_hash_length_64(project: Project) -> None:
    data = project.cli_json("graph", "render", "--format", "json", env=GOLDEN_64, subprocess=True)
    assert list(data) == ["snapshot_version", "features"]
    assert data["snapshot_version"].startswith("8468950d")
    assert len(data["snapshot_version"]) == 64
    by_key = {f["key"]: f for f in data["features"]}
    assert [f["key"] for f in data["features"]] == sorted(by_key)
    assert set(by_key["example/video"]) == {"key", "version", "code_version", "fields"}
    assert by_key["example/video"]["version"].startswith("bc9ca835")
    fields = {f["key"]: f["version"][:8] for f in by_key["example/video"]["fields"]}
    assert fields == {"audio": "22742381", "frames": "794116a9"}
    assert set(by_key["example/video"]["fields"][0]) == {"key", "version", "code_version"}
    assert by_key["example/crop"]["version"][:8] == "3ac04df8"
    assert {f["key"]: f["version"][:8] for f in by_key["example/crop"]["fields"]} == {
        "audio": "76c8bdc9",
        "frames": "abc79017",
    }
    assert by_key["example/face_detection"]["version"][:8] == "1ac83b07"
    assert by_key["example/stt"]["version"][:8] == "c83a754a"
    assert by_key["example/stt"]["fields"][0]["version"][:8] == "ac412b3c"

    mermaid = project.cli("graph", "render", "--format", "mermaid", env=GOLDEN_64, subprocess=True).stdout
    lines = mermaid.splitlines()
    assert lines[:4] == ["---", "title: Feature Graph", "---", "flowchart TB"]
    assert lines[4] == "    %% Snapshot version: 8468950d"
    assert lines[5].strip().startswith("%%{init: {'flowchart': {'htmlLabels': true, 'curve': 'basis'}")
    video = next(line for line in lines if line.strip().startswith("example_video["))
    assert "<b>example/video</b><br/><small>(v: bc9ca835)</small>" in video
    assert "• audio <small>(v: 22742381)</small><br/>• frames <small>(v: 794116a9)</small>" in video
    assert [line.strip() for line in lines if "-->" in line] == [
        "example_video --> example_crop",
        "example_crop --> example_face_detection",
        "example_video --> example_stt",
    ]
    # Same numbers as the Python API, and no double quote inside a label (it would end it).
    assert all(line.count('"') == 2 for line in lines if line.strip().startswith("example_") and "[" in line)


def test_render_dot_and_terminal(project: Project) -> None:
    dot = project.cli("graph", "render", "-f", "dot").stdout
    assert dot.startswith("digraph feature_graph {")
    assert '"example/video" -> "example/crop";' in dot
    assert re.search(
        r'"example/stt" \[label="example/stt\\nv: [0-9a-f]{8}\\l---\\ltranscription \(v: [0-9a-f]{8}\)', dot
    )
    tree = project.cli("graph", "render").stdout
    assert "Feature graph (current, 4 features)" in tree
    assert "example/face_detection" in tree
    assert "depends on: example/crop" in tree


def test_push_records_a_snapshot_once_and_diff_shows_upstream_changes(project: Project) -> None:
    first = project.cli("graph", "push", subprocess=True).stdout
    assert "Recorded graph snapshot" in first
    again = project.cli("graph", "push").stdout
    assert "already recorded" in again
    assert "nothing recorded" in again
    history = project.cli_json("graph", "history", "-f", "json")
    assert len(history) == 1
    pushed = history[0]["snapshot_version"]
    assert history[0]["features"] == 4
    with project.store() as store:
        rows = store.read_system("feature_versions")
        assert rows is not None
        assert rows.height == 4

    # Change the code: audio of the root feature gets a new code version.
    project.write_features(video_audio="2")
    diff = project.cli_json("graph", "diff", "latest", "current", "--format", "json", subprocess=True)
    assert diff["from"]["snapshot_version"] == pushed
    assert diff["summary"] == {"added": 0, "removed": 0, "changed": 3, "upstream_only": 2, "unchanged": 1}
    changes = {f["key"]: f for f in diff["features"]}
    assert changes["example/video"]["reasons"] == ["code_version"]
    assert changes["example/video"]["upstream_only"] is False
    assert changes["example/crop"]["upstream_only"] is True
    assert changes["example/stt"]["upstream_only"] is True
    assert changes["example/face_detection"]["status"] == "unchanged"
    crop_fields = {f["key"]: f["status"] for f in changes["example/crop"]["fields"]}
    assert crop_fields == {"audio": "changed", "frames": "unchanged"}

    mermaid = project.cli("graph", "diff", "-f", "mermaid").stdout
    assert "title: Merged Graph Diff" in mermaid
    assert "style example_video stroke:#FFA500,stroke-width:3px\n" in mermaid
    assert "style example_crop stroke:#FFA500,stroke-width:3px,stroke-dasharray:5 5" in mermaid
    assert "style example_face_detection" not in mermaid
    assert "<font color='#FFAA00'>audio</font>" in mermaid

    table = project.cli("graph", "diff", pushed[:6]).stdout
    assert "changed (upstream)" in table
    assert "3 changed (2 only through upstream), 1 unchanged" in table

    # A second push records the new snapshot; `latest` now equals the code.
    project.cli("graph", "push")
    assert len(project.cli_json("graph", "history", "-f", "json")) == 2
    same = project.cli_json("graph", "diff", "-f", "json")
    assert same["summary"]["changed"] == 0
    old_vs_new = project.cli_json("graph", "diff", pushed, "latest", "-f", "json")
    assert old_vs_new["summary"]["changed"] == 3
    rendered_old = project.cli_json("graph", "render", "-f", "json", "--snapshot", pushed[:8])
    assert rendered_old["snapshot_version"] == pushed


def test_list_features(project: Project) -> None:
    data = project.cli_json("list", "features", "--format", "json", subprocess=True)
    keys = [f["key"] for f in data["features"]]
    assert keys == ["example/video", "example/crop", "example/face_detection", "example/stt"]
    assert data["features"][0]["root"] is True
    assert data["features"][1]["deps"] == ["example/video"]
    assert all(len(f["version"]) == 16 for f in data["features"])
    table = project.cli("list", "features").stdout
    assert "4 features" in table
    assert "example/video" in table
    assert "(root)" in table


def test_errors_name_what_was_asked_and_what_exists(project: Project, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    proc = project.cli("graph", "diff", "cafe", expect=1)
    assert "Error:" in proc.stderr
    assert "No graph snapshot of project 'cli-test'" in proc.stderr
    project.cli("graph", "push")
    proc = project.cli("graph", "diff", "cafebabe", expect=1, subprocess=True)
    assert "No graph snapshot 'cafebabe'" in proc.stderr
    assert "recorded (newest first)" in proc.stderr
    proc = project.cli("metadata", "status", "example/nope", expect=1)
    assert "Unknown feature 'example/nope'. Known features: example/crop" in proc.stderr
    proc = project.cli("--store", "prod", "graph", "push", expect=1)
    assert "No store named 'prod'" in proc.stderr
    assert "Configured stores: dev, other" in proc.stderr
    proc = project.cli("graph", "push", "--config", "missing.toml", expect=1)
    assert "missing.toml does not exist" in proc.stderr
    proc = project.cli("graph", "render", "--format", "svg", expect=1)
    assert 'Invalid value "svg"' in proc.stderr
    # No config anywhere up from an empty folder.
    empty = tmp_path_factory.mktemp("empty")
    (empty / "pyproject.toml").write_text("[project]\nname='x'\n")
    outside = Project(empty)
    proc = outside.cli("graph", "render", expect=1, subprocess=True)
    assert "No features are defined: no metaxy config was found" in proc.stderr
    assert proc.stdout == ""


def test_other_store_and_env_override(project: Project) -> None:
    project.cli("--store", "other", "graph", "push", subprocess=True)
    assert (project.root / "other.duckdb").exists()
    assert json.loads(project.cli("-s", "other", "graph", "history", "-f", "json").stdout)[0]["features"] == 4
    # The default store has no snapshot.
    assert project.cli_json("graph", "history", "-f", "json") == []
