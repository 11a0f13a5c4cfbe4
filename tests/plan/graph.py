"""A four-level graph with every lineage, and the pipeline steps that run it, for the plan tests.

plan/video (root) ──expansion──▶ plan/chunk ──▶ plan/faces ──aggregation──▶ plan/video_faces
      ├──────────────────────────▶ plan/stt          (reads audio only)
      └──aggregation by speaker──▶ plan/speaker      (reads audio only)

faces reads only the chunk's frames, so an audio change stops at the chunk.
"""

from dataclasses import dataclass
from typing import Any

import polars as pl

import metaxy_core as mx
from metaxy_core import columns as C

CHILDREN = 3


@dataclass(frozen=True)
class PlanGraph:
    graph: mx.FeatureGraph
    video: type[mx.BaseFeature]
    chunk: type[mx.BaseFeature]
    faces: type[mx.BaseFeature]
    video_faces: type[mx.BaseFeature]
    stt: type[mx.BaseFeature]
    speaker: type[mx.BaseFeature]


def build(chunk_audio: str = "1") -> PlanGraph:
    graph = mx.FeatureGraph()
    with graph.use():

        class Video(
            mx.BaseFeature,
            spec=mx.FeatureSpec(key="plan/video", id_columns=["video_id"], fields=["audio", "frames"]),
        ):
            video_id: str
            speaker: str

        class Chunk(
            mx.BaseFeature,
            spec=mx.FeatureSpec(
                key="plan/chunk",
                id_columns=["chunk_id"],
                deps=[
                    mx.FeatureDep(feature=Video, lineage=mx.LineageRelationship.expansion(on=["video_id"]))
                ],
                fields=[mx.FieldSpec("audio", code_version=chunk_audio), "frames"],
            ),
        ):
            video_id: str
            chunk_id: str

        class Faces(
            mx.BaseFeature,
            spec=mx.FeatureSpec(
                key="plan/faces",
                id_columns=["chunk_id"],
                deps=[mx.FeatureDep(feature=Chunk, columns=["video_id"])],
                fields=[mx.FieldSpec("faces", deps=[mx.FieldDep(feature=Chunk, fields=["frames"])])],
            ),
        ):
            chunk_id: str
            video_id: str

        class VideoFaces(
            mx.BaseFeature,
            spec=mx.FeatureSpec(
                key="plan/video_faces",
                id_columns=["video_id"],
                deps=[
                    mx.FeatureDep(feature=Faces, lineage=mx.LineageRelationship.aggregation(on=["video_id"]))
                ],
                fields=["faces"],
            ),
        ):
            video_id: str

        class Stt(
            mx.BaseFeature,
            spec=mx.FeatureSpec(
                key="plan/stt",
                id_columns=["video_id"],
                deps=[mx.FeatureDep(feature=Video, columns=[])],
                fields=[mx.FieldSpec("text", deps=[mx.FieldDep(feature=Video, fields=["audio"])])],
            ),
        ):
            video_id: str

        class Speaker(
            mx.BaseFeature,
            spec=mx.FeatureSpec(
                key="plan/speaker",
                id_columns=["speaker"],
                deps=[
                    mx.FeatureDep(feature=Video, lineage=mx.LineageRelationship.aggregation(on=["speaker"]))
                ],
                fields=[mx.FieldSpec("voice", deps=[mx.FieldDep(feature=Video, fields=["audio"])])],
            ),
        ):
            speaker: str

    return PlanGraph(graph, Video, Chunk, Faces, VideoFaces, Stt, Speaker)


def samples(
    n: int, *, audio: dict[int, str] | None = None, frames: dict[int, str] | None = None
) -> pl.DataFrame:
    """Videos 0..n-1 spoken by five speakers; ``audio``/``frames`` give some videos another content hash."""
    audio, frames = audio or {}, frames or {}
    return pl.DataFrame(
        {
            "video_id": [f"v{i:03d}" for i in range(n)],
            "speaker": [f"s{i % 5}" for i in range(n)],
            C.PROVENANCE_BY_FIELD: [
                {"audio": audio.get(i, "a0"), "frames": frames.get(i, "f0")} for i in range(n)
            ],
        }
    )


def run_step(store: mx.MetadataStore, g: PlanGraph, feature: type[mx.BaseFeature], given: Any) -> Any:
    """Resolve and write one feature like a pipeline step; returns the increment it resolved."""
    inc = store.resolve_update(feature, samples=given if feature is g.video else None)
    todo = inc.to_process()
    if todo.height == 0:
        return inc
    if feature is g.chunk:
        todo = (
            todo.with_columns(pl.int_range(CHILDREN).implode().alias("i"))
            .explode("i")
            .with_columns(pl.format("{}-{}", "video_id", "i").alias("chunk_id"))
            .drop("i")
        )
    keep = [c for c in todo.columns if c in feature.model_fields or C.is_system(c)]
    store.write(feature, todo.select(keep))
    return inc


def run_all(store: mx.MetadataStore, g: PlanGraph, given: Any) -> dict[str, Any]:
    """Every feature in turn, each after its upstreams; returns the increments by feature key."""
    with g.graph.use():
        return {
            str(k): run_step(store, g, g.graph.get_feature(k), given) for k in g.graph.topological_order()
        }
