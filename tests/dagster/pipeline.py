"""The video pipeline used by the Dagster tests: raw → chunk (expansion) → faces; raw → stt.

Features are defined by :func:`define_features` in the caller's active graph (the suite's autouse
``graph`` fixture gives each test its own), so a test can redefine them with other code versions
in a fresh graph to simulate a code change.
"""

from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import polars as pl

import metaxy_core as mx
import metaxy_dagster as mxd


@dataclass
class Features:
    Video: type[mx.BaseFeature]
    Chunk: type[mx.BaseFeature]
    Faces: type[mx.BaseFeature]
    Transcript: type[mx.BaseFeature]

    @property
    def all(self) -> list[type[mx.BaseFeature]]:
        return [self.Video, self.Chunk, self.Faces, self.Transcript]


def define_features(audio_code_version: str = "1", faces_code_version: str = "1") -> Features:
    class Video(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key="video/raw",
            id_columns=["video_id"],
            fields=[mx.FieldSpec("audio", code_version=audio_code_version), "frames"],
        ),
    ):
        """Raw videos listed from disk."""

        video_id: str
        path: str

    class Chunk(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key="video/chunk",
            id_columns=["video_chunk_id"],
            deps=[mx.FeatureDep(feature=Video, lineage=mx.LineageRelationship.expansion(on=["video_id"]))],
            fields=["audio", "frames"],
        ),
    ):
        """Fixed-length chunks of each video."""

        video_id: str
        video_chunk_id: str
        chunk_index: int

    class Faces(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key="video/faces",
            id_columns=["video_chunk_id"],
            deps=[Chunk],
            fields=[
                mx.FieldSpec(
                    "faces",
                    code_version=faces_code_version,
                    deps=[mx.FieldDep(feature=Chunk, fields=["frames"])],
                )
            ],
        ),
    ):
        """Faces detected per chunk (depends on frames only)."""

        video_chunk_id: str
        num_faces: int

    class Transcript(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key="video/stt",
            id_columns=["video_id"],
            deps=[Video],
            fields=[mx.FieldSpec("transcription", deps=[mx.FieldDep(feature=Video, fields=["audio"])])],
        ),
    ):
        """Speech to text per video (depends on audio only)."""

        video_id: str
        text: str

    return Features(Video, Chunk, Faces, Transcript)


@dataclass
class Samples:
    """The 'files on disk': video id -> (audio content hash, frames content hash), and chunks per video."""

    videos: dict[str, tuple[str, str]] = field(default_factory=dict)
    chunks_per_video: dict[str, int] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def frame(self) -> pl.DataFrame:
        ids = sorted(self.videos)
        return pl.DataFrame(
            {
                "video_id": ids,
                "path": [f"/videos/{v}.mp4" for v in ids],
                "metaxy_provenance_by_field": [
                    {"audio": self.videos[v][0], "frames": self.videos[v][1]} for v in ids
                ],
            },
            schema={
                "video_id": pl.String,
                "path": pl.String,
                "metaxy_provenance_by_field": pl.Struct({"audio": pl.String, "frames": pl.String}),
            },
        )


def build_assets(
    f: Features, samples: Samples, translator: mxd.MetaxyTranslator | None = None
) -> list[dg.AssetsDefinition]:
    @mxd.metaxy_asset(f.Video, samples=samples.frame, translator=translator)
    def raw(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        samples.calls.append("raw")
        return increment.to_process().select("video_id", "path")

    @mxd.metaxy_asset(f.Chunk, translator=translator)
    def chunk(context: dg.AssetExecutionContext, increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        samples.calls.append("chunk")
        parents = increment.to_process()
        rows: list[dict[str, Any]] = []
        for video_id in parents["video_id"]:
            for i in range(samples.chunks_per_video.get(video_id, 2)):
                rows.append({"video_id": video_id, "video_chunk_id": f"{video_id}_{i}", "chunk_index": i})
        return pl.DataFrame(
            rows, schema={"video_id": pl.String, "video_chunk_id": pl.String, "chunk_index": pl.Int64}
        )

    @mxd.metaxy_asset(f.Faces, translator=translator)
    def faces(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        samples.calls.append("faces")
        todo = increment.to_process()
        return todo.select("video_chunk_id", pl.col("chunk_index").alias("num_faces"))

    @mxd.metaxy_asset(f.Transcript, translator=translator)
    def stt(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
        samples.calls.append("stt")
        return increment.to_process().select("video_id", pl.lit("hello").alias("text"))

    return [raw, chunk, faces, stt]


def resources(database: str) -> dict[str, Any]:
    store = mxd.MetaxyStoreResource(type="duckdb", config={"database": database})
    return {"metaxy_store": store, "metaxy_io_manager": mxd.MetaxyIOManager(store=store)}


def materialization_metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    """Asset key string -> raw metadata values of its materialization in ``result``."""
    out: dict[str, dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        out[mat.asset_key.to_user_string()] = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    return out


def counts(meta: dict[str, dict[str, Any]]) -> dict[str, tuple[int, int, int, int]]:
    """Asset -> (new, stale, orphaned, written)."""
    return {
        key: (m["metaxy/new"], m["metaxy/stale"], m["metaxy/orphaned"], m["metaxy/written"])
        for key, m in meta.items()
    }
