"""End to end: the example project under a real ``dagster dev -w workspace.yaml`` (webserver, daemon,
code server), driven over GraphQL, and its asset lineage in a headless browser.

The example project and workspace.yaml are copied to a temporary folder, so the code change
(a bumped code version) and the data (videos, DuckDB file, Dagster home) never touch the repository.
Figures (startup, run and reload times) are printed; run with ``-s`` to see them.
"""

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dagster.dagster_dev import DagsterDev

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ALL_ASSETS = [["video", "raw"], ["video", "chunk"], ["video", "faces"], ["video", "stt"], ["metaxy", "graph"]]
EMBEDDING = ["video", "embedding"]  # partitioned by split: launched per partition
SENSOR = "metaxy_sensor"
OBSERVE_JOB = "metaxy_observe"
FIGURES: dict[str, float] = {}


class Project:
    """The copied project: its folder, its media helpers (pointed at its data dir) and the server."""

    def __init__(self, root: Path, server: DagsterDev, media: Any) -> None:
        self.root, self.server, self.media = root, server, media

    def bump_code_version(self, old: str, new: str) -> None:
        path = self.root / "example_project" / "features.py"
        text = path.read_text()
        assert text.count(old) == 1, f"{old!r} not found exactly once in {path}"
        path.write_text(text.replace(old, new))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("e2e")
    shutil.copytree(
        REPO / "example_project",
        root / "example_project",
        ignore=shutil.ignore_patterns("data", "__pycache__"),
    )
    shutil.copy(REPO / "workspace.yaml", root / "workspace.yaml")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METAXY_", "DAGSTER_", "EXAMPLE_"))}
    env.update(
        DAGSTER_HOME=str(home),
        EXAMPLE_DATA_DIR=str(root / "data"),
        METAXY_STORES__DEV__CONFIG__DATABASE=str(root / "data" / "meta.duckdb"),
        EXAMPLE_SENSOR_INTERVAL="5",
        EXAMPLE_SENSOR_STATUS="stopped",
        # the copied project first, then this checkout (its metaxy packages, not an installed copy)
        PYTHONPATH=os.pathsep.join([str(root), str(REPO)]),
    )
    server = DagsterDev(root / "workspace.yaml", root, env, root / "dagster_dev.log")
    # The test process writes videos with the copied project's own helpers.
    os.environ["EXAMPLE_DATA_DIR"] = env["EXAMPLE_DATA_DIR"]
    sys.path.insert(0, str(REPO))
    from example_project import media

    try:
        server.start()
        FIGURES["startup_s"] = server.startup_seconds or 0.0
        yield Project(root, server, media)
    finally:
        if server.proc is not None:
            code = server.stop()
            FIGURES["exit_code"] = code
        os.environ.pop("EXAMPLE_DATA_DIR", None)
        print("\ne2e figures:", {k: round(v, 1) for k, v in FIGURES.items()})


def _wait_for_sensor_run(server: DagsterDev, seen: set[str], timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in server.runs({"dagster/sensor_name": SENSOR}):
            if run["runId"] not in seen and run["status"] in ("SUCCESS", "FAILURE"):
                return run
        time.sleep(1)
    raise TimeoutError(f"{SENSOR} launched no run within {timeout}s:\n{server.log()[-4000:]}")


def _tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


def _statuses(server: DagsterDev) -> dict[str, str]:
    """Stale status of the unpartitioned assets (a partitioned asset has one per partition)."""
    return {k: v for k, v in server.stale_statuses().items() if k != "/".join(EMBEDDING)}


def _observe(server: DagsterDev) -> None:
    status, seconds = server.wait_run(server.launch([], job=OBSERVE_JOB))
    FIGURES["observe_run_s"] = seconds
    assert status == "SUCCESS", server.log()[-4000:]


def test_dagster_dev_end_to_end(project: Project) -> None:
    server, media = project.server, project.media
    assert _statuses(server) == {
        k: "MISSING" for k in ("video/raw", "video/chunk", "video/faces", "video/stt", "metaxy/graph")
    }

    # 0. A fresh project has demo media as soon as its definitions load: the first run has work to do.
    assert media.list_video_ids() == ["v001", "v002", "v003"]

    # 1. Launch a run of everything; read the materialization metadata and Dagster's staleness.
    status, seconds = server.wait_run(server.launch(ALL_ASSETS))
    FIGURES["first_run_s"] = seconds
    assert status == "SUCCESS", server.log()[-4000:]
    chunk = server.latest_metadata(["video", "chunk"])
    assert (
        chunk["metaxy/new"],
        chunk["metaxy/stale"],
        chunk["metaxy/orphaned"],
        chunk["metaxy/written"],
    ) == (3, 0, 0, 13)
    faces = server.latest_metadata(["video", "faces"])
    assert (faces["metaxy/new"], faces["metaxy/written"], faces["dagster/row_count"]) == (13, 13, 13)
    assert "| feature | version |" in server.latest_metadata(["metaxy", "graph"])["metaxy/graph"]
    assert set(_statuses(server).values()) == {"FRESH"}
    # the built-in checks ran with each materialization
    assert server.check_statuses(["video", "chunk"]) == {
        "metaxy_in_sync": "SUCCEEDED",
        "metaxy_no_orphans": "SUCCEEDED",
    }

    # 1b. The partitioned feature, one split at a time (as the UI's partition picker launches it):
    # each run computes only its split's videos (v001 is in test, v002 and v003 in train).
    assert server.partitions(EMBEDDING) == {
        "numMaterialized": 0,
        "numPartitions": 2,
        "numFailed": 0,
        "materializedPartitions": [],
        "unmaterializedPartitions": ["train", "test"],
        "failedPartitions": [],
    }
    for split, videos, done in (("train", 2, ["train"]), ("test", 1, ["train", "test"])):
        status, _ = server.wait_run(server.launch([EMBEDDING], tags={"dagster/partition": split}))
        assert status == "SUCCESS", server.log()[-4000:]
        meta = server.latest_metadata(EMBEDDING)
        assert (meta["metaxy/new"], meta["metaxy/written"], meta["dagster/row_count"]) == (
            videos,
            videos,
            videos,
        )
        parts = server.partitions(EMBEDDING)
        assert (parts["numMaterialized"], sorted(parts["materializedPartitions"])) == (
            len(done),
            sorted(done),
        )
        assert server.check_statuses(EMBEDDING) == {
            "metaxy_in_sync": "SUCCEEDED",
            "metaxy_no_orphans": "SUCCEEDED",
        }
    versions = {split: server.data_version(EMBEDDING, split) for split in ("train", "test")}
    assert None not in versions.values()
    assert versions["train"] != versions["test"]  # one data version per partition

    # 2. A data change: v002's audio is re-encoded. Only raw runs; its direct children turn stale.
    media.edit_track("v002", "audio")
    status, seconds = server.wait_run(server.launch([["video", "raw"]]))
    FIGURES["raw_run_s"] = seconds
    raw = server.latest_metadata(["video", "raw"])
    assert (raw["metaxy/new"], raw["metaxy/stale"], raw["metaxy/written"], raw["metaxy/changed_fields"]) == (
        0,
        1,
        1,
        {"audio": 1},
    )
    assert _statuses(server) == {
        "video/raw": "FRESH",
        "video/chunk": "STALE",
        "video/faces": "FRESH",
        "video/stt": "STALE",
        "metaxy/graph": "FRESH",
    }

    # 3. The sensor (run by the daemon) sees the stale samples and launches one run for chunk and stt.
    seen = {r["runId"] for r in server.runs()}
    started = time.perf_counter()
    server.start_sensor(SENSOR)
    run = _wait_for_sensor_run(server, seen)
    FIGURES["sensor_run_after_start_s"] = time.perf_counter() - started
    assert run["status"] == "SUCCESS"
    assert sorted("/".join(a["path"]) for a in run["assetSelection"]) == ["video/chunk", "video/stt"]
    tags = _tags(run)
    assert tags["metaxy/video__chunk"] == "new=0 stale=1 orphaned=0"
    assert tags["metaxy/video__stt"] == "new=0 stale=1 orphaned=0"
    assert server.latest_metadata(["video", "stt"])["metaxy/changed_fields"] == {"transcription": 1}
    statuses = _statuses(server)
    # faces reads frames only: metaxy has nothing for it to do, Dagster's asset-level view says Unsynced.
    assert statuses == {
        "video/raw": "FRESH",
        "video/chunk": "FRESH",
        "video/faces": "STALE",
        "video/stt": "FRESH",
        "metaxy/graph": "FRESH",
    }
    server.stop_sensor(SENSOR)

    # 3b. The observation job makes Dagster agree with the store without running faces: faces is in
    # sync with its upstream in the store, so it is Fresh again and keeps its data version.
    faces_version = server.data_version(["video", "faces"])
    _observe(server)
    assert set(_statuses(server).values()) == {"FRESH"}
    assert server.data_version(["video", "faces"]) == faces_version
    assert server.latest_materialization_tags(["video", "faces"])["metaxy/observed"] == "provenance"

    # 4. A code change: the transcription code version 1 -> 2, then reload the code location.
    project.bump_code_version('"transcription", code_version="1"', '"transcription", code_version="2"')
    FIGURES["reload_s"] = server.reload()
    assert _statuses(server)["video/stt"] == "STALE"

    # 5. The sensor picks the code change up: all three transcripts are stale now.
    seen = {r["runId"] for r in server.runs()}
    server.start_sensor(SENSOR)
    run = _wait_for_sensor_run(server, seen)
    assert run["status"] == "SUCCESS"
    assert ["/".join(a["path"]) for a in run["assetSelection"]] == ["video/stt"]
    assert _tags(run)["metaxy/video__stt"] == "new=0 stale=3 orphaned=0"
    stt = server.latest_metadata(["video", "stt"])
    assert (stt["metaxy/stale"], stt["metaxy/written"], stt["metaxy/changed_fields"]) == (
        3,
        3,
        {"transcription": 3},
    )
    assert stt["metaxy/definition_diff"].splitlines()[-1].endswith("| code version 1 → 2 |")
    assert _statuses(server)["video/stt"] == "FRESH"
    server.stop_sensor(SENSOR)


def test_observation_learns_a_delete_made_outside_dagster(project: Project) -> None:
    """A delete through the store's API, no Dagster involved: the next observation reports chunk's new
    data version, faces turns Unsynced and chunk's in-sync check fails (v003's chunks are missing)."""
    import metaxy_core as mx
    from example_project.features import VideoChunk

    server, media = project.server, project.media
    if (
        _statuses(server)["video/faces"] == "MISSING"
    ):  # on a worker of its own (pytest-xdist): run it all first
        if not media.list_video_ids():
            media.generate_videos(3)
        assert server.wait_run(server.launch(ALL_ASSETS))[0] == "SUCCESS"
    _observe(server)  # whatever the previous test left, Dagster agrees with the store now
    before = server.data_version(["video", "chunk"])
    assert _statuses(server)["video/faces"] == "FRESH"
    with mx.DuckDBMetadataStore(str(project.root / "data" / "meta.duckdb")) as store:
        assert store.delete(VideoChunk, filters="video_id = 'v003'", soft=False) > 0
    assert _statuses(server)["video/faces"] == "FRESH"  # Dagster has not noticed yet

    _observe(server)
    assert server.data_version(["video", "chunk"]) not in (before, None)
    assert server.latest_materialization_tags(["video", "chunk"])["metaxy/observed"] == "data_version"
    assert _statuses(server)["video/faces"] == "STALE"
    assert server.check_statuses(["video", "chunk"])["metaxy_in_sync"] == "FAILED"

    # Recomputing chunk brings v003's chunks back: the same data version as before the delete.
    status, _ = server.wait_run(server.launch([["video", "chunk"]]))
    assert status == "SUCCESS", server.log()[-4000:]
    assert server.data_version(["video", "chunk"]) == before
    assert _statuses(server)["video/faces"] == "FRESH"


def test_lineage_in_the_browser_shows_features_and_unsynced(project: Project) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    server, media = project.server, project.media
    if not media.list_video_ids():
        media.generate_videos(3)
        assert server.wait_run(server.launch(ALL_ASSETS))[0] == "SUCCESS"
    # Make chunk and stt Unsynced: a new audio track, only raw re-materialized.
    media.edit_track("v001", "audio")
    assert server.wait_run(server.launch([["video", "raw"]]))[0] == "SUCCESS"
    # The observation job re-evaluates every check and leaves Unsynced only what has work.
    _observe(server)
    statuses = _statuses(server)
    assert statuses["video/chunk"] == statuses["video/stt"] == "STALE"
    assert statuses["video/faces"] == "FRESH"
    expected_badges = sum(1 for k, v in statuses.items() if k.startswith("video/") and v == "STALE")

    out_dir = Path(os.environ.get("MXD_ARTIFACTS_DIR", REPO / "tmp" / "dagster_ui"))
    out_dir.mkdir(parents=True, exist_ok=True)
    screenshot = out_dir / "lineage_unsynced.png"
    args = [
        "--no-sandbox",
        "--headless",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=args)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(
                f"{server.url}/locations/example_project.definitions/asset-groups/video/lineage",
                timeout=90_000,
            )
            skip = page.get_by_role("button", name="Skip")  # the first-visit newsletter dialog
            with contextlib.suppress(sync_api.TimeoutError):
                skip.click(timeout=10_000)
            for node in ("raw", "chunk", "faces", "stt", "embedding"):
                page.get_by_text(node, exact=True).first.wait_for(timeout=60_000)
            unsynced = page.get_by_text("Unsynced", exact=False)
            unsynced.first.wait_for(timeout=60_000)
            assert unsynced.count() == expected_badges
            page.screenshot(path=str(screenshot))

            # The partitioned feature's page: both splits materialized, and its checks.
            page.goto(f"{server.url}/assets/video/embedding?view=partitions", timeout=90_000)
            page.get_by_text("test", exact=True).first.wait_for(timeout=60_000)
            page.get_by_text("train", exact=True).first.click(timeout=60_000)
            page.get_by_text("metaxy/new", exact=True).first.wait_for(timeout=60_000)  # its metadata
            page.screenshot(path=str(out_dir / "embedding_partitions.png"))
            page.goto(f"{server.url}/assets/video/embedding?view=checks", timeout=90_000)
            page.get_by_text("metaxy_in_sync", exact=True).first.wait_for(timeout=60_000)
            page.get_by_text("metaxy_no_orphans", exact=True).first.wait_for(timeout=60_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out_dir / "embedding_checks.png"))
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000
    print(f"\nscreenshot: {screenshot}")
