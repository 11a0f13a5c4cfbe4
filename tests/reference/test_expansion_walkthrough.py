"""The reference expansion walkthrough's API calls, exactly as the original documents them.

Only the import differs (``import metaxy_core as mx``). Store from ``mx.init()`` / ``cfg.get_store("dev")``
with no config file (the default DuckDB file in the working directory), ``resolve_update`` with a
narwhals-wrapped root frame, ``len(increment.new)``, ``pl.concat`` of new and stale, rows as dicts.
"""

import random

import narwhals as nw
import polars as pl

import metaxy_core as mx
from tests.graphs import expansion_features as define


def pipeline(features, log: list[str]) -> None:
    video_cls, chunk_cls, faces_cls = features
    random.seed(0)
    cfg = mx.init()
    store = cfg.get_store("dev")
    samples = pl.DataFrame(
        {
            "video_id": [1, 2, 3],
            "path": ["video1.mp4", "video2.mp4", "video3.mp4"],
            "metaxy_provenance_by_field": [
                {"audio": "v1", "frames": "v1"},
                {"audio": "v2", "frames": "v2"},
                {"audio": "v3", "frames": "v3"},
            ],
        }
    )
    with store:
        increment = store.resolve_update(video_cls, samples=nw.from_native(samples))
        if len(increment.new) > 0:
            log.append(f"Found {len(increment.new)} new videos")
            store.write(video_cls, increment.new)
        if len(increment.stale) > 0:
            log.append(f"Found {len(increment.stale)} stale videos")
            store.write(video_cls, increment.stale)
    with store:
        increment = store.resolve_update(chunk_cls)
        log.append(f"chunking: {len(increment.new)} new, {len(increment.stale)} stale")
        for row_dict in pl.concat([increment.new.to_polars(), increment.stale.to_polars()]).iter_rows(
            named=True
        ):
            n = random.randint(3, 5)
            chunk_df = pl.DataFrame(
                {
                    "video_id": [row_dict["video_id"]] * n,
                    "video_chunk_id": [f"{row_dict['video_id']}_{i}" for i in range(n)],
                    "path": [f"{row_dict['path']}.{i}" for i in range(n)],
                    "metaxy_provenance_by_field": [row_dict["metaxy_provenance_by_field"]] * n,
                    "metaxy_provenance": [row_dict["metaxy_provenance"]] * n,
                }
            )
            store.write(chunk_cls, nw.from_native(chunk_df))
    with store:
        increment = store.resolve_update(faces_cls)
        log.append(f"faces: {len(increment.new)} new, {len(increment.stale)} stale")
        if len(increment.new) > 0:
            face_data = [
                {
                    "video_chunk_id": row["video_chunk_id"],
                    "num_faces": random.randint(0, 10),
                    "metaxy_provenance_by_field": row["metaxy_provenance_by_field"],
                    "metaxy_provenance": row["metaxy_provenance"],
                }
                for row in pl.concat([increment.new.to_polars(), increment.stale.to_polars()]).iter_rows(
                    named=True
                )
            ]
            store.write(faces_cls, nw.from_native(pl.DataFrame(face_data)))


def test_walkthrough(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with mx.FeatureGraph().use():
        v1 = define("1")
    with mx.FeatureGraph().use():
        v2 = define("2")
    steps = []
    for features in (v1, v1, v2, v2):
        log: list[str] = []
        pipeline(features, log)
        steps.append(log)
    assert steps[0] == ["Found 3 new videos", "chunking: 3 new, 0 stale", "faces: 11 new, 0 stale"]
    assert steps[1] == ["chunking: 0 new, 0 stale", "faces: 0 new, 0 stale"]
    assert steps[2] == ["Found 3 stale videos", "chunking: 0 new, 3 stale", "faces: 0 new, 0 stale"]
    assert steps[3] == steps[1]
    assert (tmp_path / "metadata.duckdb").is_file()
