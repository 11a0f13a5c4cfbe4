"""Expansion (1:N): videos are split into chunks, chunks get face counts.

Run it as the reference walkthrough does, four times:

    python examples/expansion_demo.py --database /tmp/expansion.duckdb             # 3 videos -> 11 chunks
    python examples/expansion_demo.py --database /tmp/expansion.duckdb             # nothing to do
    python examples/expansion_demo.py --database /tmp/expansion.duckdb --audio 2   # audio bump: videos, chunks
    python examples/expansion_demo.py --database /tmp/expansion.duckdb --audio 2   # nothing to do

After the bump, videos and their chunks are recomputed for field ``audio``; faces, which read only
``frames``, are not.
"""

import argparse
import random
import tempfile
from pathlib import Path

import polars as pl

import metaxy_core as mx


def define(audio_version: str):
    class Video(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key="video/raw",
            id_columns=["video_id"],
            fields=[mx.FieldSpec("audio", code_version=audio_version), "frames"],
        ),
    ):
        video_id: str
        path: str

    class VideoChunk(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key="video/chunk",
            id_columns=["video_chunk_id"],
            deps=[mx.FeatureDep(feature=Video, lineage=mx.LineageRelationship.expansion(on=["video_id"]))],
            fields=["audio", "frames"],
        ),
    ):
        video_id: str
        video_chunk_id: str
        path: str

    class FaceRecognition(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key="video/faces",
            id_columns=["video_chunk_id"],
            deps=[VideoChunk],
            fields=[mx.FieldSpec("faces", deps=[mx.FieldDep(feature=VideoChunk, fields=["frames"])])],
        ),
    ):
        video_chunk_id: str
        num_faces: int

    return Video, VideoChunk, FaceRecognition


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # A fixed file in the system's temp folder (not the current directory), so reruns see the
    # previous run's metadata; --database puts it elsewhere.
    default = Path(tempfile.gettempdir()) / "metaxy-expansion-demo.duckdb"
    parser.add_argument("--database", default=str(default), help=f"DuckDB file (default: {default})")
    parser.add_argument("--audio", default="1", help="code_version of video/raw.audio")
    args = parser.parse_args()
    rng = random.Random(42)
    video, chunk, faces = define(args.audio)
    store = mx.DuckDBMetadataStore(database=args.database)
    print(f"metadata store: {args.database}")
    samples = pl.DataFrame(
        {
            "video_id": ["1", "2", "3"],
            "path": ["video1.mp4", "video2.mp4", "video3.mp4"],
            "metaxy_provenance_by_field": [{"audio": f"a{i}", "frames": f"f{i}"} for i in (1, 2, 3)],
        }
    )
    with store:
        inc = store.resolve_update(video, samples=samples)
        print(f"video/raw:   {inc.summary()}")
        for part in (inc.new, inc.stale):
            if len(part):
                store.write(video, part)

        inc = store.resolve_update(chunk)
        print(f"video/chunk: {inc.summary()} (one row per video to split)")
        for row in inc.to_process().iter_rows(named=True):
            n = rng.randint(3, 5)
            store.write(
                chunk,
                pl.DataFrame(
                    {
                        "video_id": [row["video_id"]] * n,
                        "video_chunk_id": [f"{row['video_id']}_{i}" for i in range(n)],
                        "path": [f"{row['video_id']}_{i}.mp4" for i in range(n)],
                        # every chunk carries its parent's provenance
                        "metaxy_provenance_by_field": [row["metaxy_provenance_by_field"]] * n,
                        "metaxy_provenance": [row["metaxy_provenance"]] * n,
                    }
                ),
            )
            print(f"  video {row['video_id']}: wrote {n} chunks")

        inc = store.resolve_update(faces)
        print(f"video/faces: {inc.summary()}")
        rows = inc.to_process()
        if len(rows):
            store.write(
                faces,
                rows.select(
                    "video_chunk_id",
                    "metaxy_provenance_by_field",
                    "metaxy_provenance",
                    num_faces=pl.Series([rng.randint(0, 10) for _ in range(len(rows))]),
                ),
            )


if __name__ == "__main__":
    main()
