"""The recompute story in plain Python, on a DuckDB file.

Four runs of the pipeline video/raw -> video/crop -> video/faces, video/raw -> video/stt:

1. initial run: every sample is new;
2. rerun: nothing to do;
3. ``video/raw.audio`` code_version 1 -> 2: raw, crop and stt are recomputed for field ``audio``,
   faces (which reads only ``frames``) is untouched;
4. one video's content changes: only that sample is recomputed downstream.

Run: ``python examples/recompute_demo.py [--database PATH]``.
"""

import argparse
import tempfile
from pathlib import Path

import polars as pl

import metaxy_core as mx


def define(audio_version: str) -> dict[str, type[mx.BaseFeature]]:
    """The feature graph, with a configurable ``audio`` code version (a new graph each call)."""

    class Video(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key="video/raw",
            id_columns=["video_id"],
            fields=[mx.FieldSpec("audio", code_version=audio_version), "frames"],
        ),
    ):
        """Raw videos found on disk."""

        video_id: str
        path: str

    class Crop(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key="video/crop", id_columns=["video_id"], deps=[Video], fields=["audio", "frames"]
        ),
    ):
        """Cropped videos: audio from audio, frames from frames."""

        video_id: str

    class Faces(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key="video/faces",
            id_columns=["video_id"],
            deps=[Crop],
            fields=[mx.FieldSpec("faces", deps=[mx.FieldDep(feature=Crop, fields=["frames"])])],
        ),
    ):
        """Face counts, computed from frames only."""

        video_id: str
        num_faces: int

    class SpeechToText(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key="video/stt",
            id_columns=["video_id"],
            deps=[Video],
            fields=[mx.FieldSpec("transcription", deps=[mx.FieldDep(feature=Video, fields=["audio"])])],
        ),
    ):
        """Transcripts, computed from audio only."""

        video_id: str
        text: str

    return {"raw": Video, "crop": Crop, "faces": Faces, "stt": SpeechToText}


def run(store: mx.MetadataStore, features: dict[str, type[mx.BaseFeature]], contents: dict[str, str]) -> None:
    video, crop, faces, stt = features["raw"], features["crop"], features["faces"], features["stt"]
    samples = pl.DataFrame(
        {
            "video_id": list(contents),
            "path": [f"/videos/{v}.mp4" for v in contents],
            # the user's own content hashes: one per field
            "metaxy_provenance_by_field": [
                {"audio": f"a-{c}", "frames": f"f-{c}"} for c in contents.values()
            ],
        }
    )
    with store:
        for feature in (video, crop, faces, stt):
            inc = store.resolve_update(feature, samples=samples if feature is video else None)
            counts = inc.counts()
            changed = sorted(
                {f for fs in inc.stale.to_polars()["metaxy_changed_fields"].to_list() for f in fs}
            )
            print(
                f"  {feature.spec.key!s:12} new={counts['new']} stale={counts['stale']} orphaned={counts['orphaned']}"
                + (f" changed fields={changed}" if changed else "")
            )
            rows = inc.to_process()
            if rows.is_empty():
                continue
            keep = ["video_id", "metaxy_provenance_by_field", "metaxy_provenance"]
            if feature is video:
                rows = rows.select(*keep, "path")
            elif feature is faces:
                rows = rows.select(*keep, num_faces=pl.col("video_id").str.len_chars())
            elif feature is stt:
                rows = rows.select(*keep, text=pl.lit("hello"))
            else:
                rows = rows.select(keep)
            store.write(feature, rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", help="DuckDB file (default: a fresh temporary file)")
    args = parser.parse_args()
    database = Path(args.database) if args.database else Path(tempfile.mkdtemp()) / "metadata.duckdb"
    store = mx.DuckDBMetadataStore(database=database)
    contents = {"v1": "111", "v2": "222", "v3": "333"}
    steps = [
        ("1. initial run", "1", contents),
        ("2. rerun, nothing changed", "1", contents),
        ("3. video/raw.audio code_version 1 -> 2", "2", contents),
        ("4. the content of v2 changed", "2", {**contents, "v2": "999"}),
    ]
    print(f"metadata store: {database}")
    for title, audio_version, data in steps:
        with mx.FeatureGraph().use():
            features = define(audio_version)
        print(title)
        run(store, features, data)


if __name__ == "__main__":
    main()
