"""Feature graphs of the reference documents, shared by several test modules.

Each builder defines its classes in the *active* graph; wrap the call in
``with mx.FeatureGraph().use():`` to get an isolated copy (e.g. one per code version).
"""

import metaxy_core as mx


def expansion_features(audio_code_version: str = "1") -> tuple[type[mx.BaseFeature], ...]:
    """The reference expansion graph: video/raw -> video/chunk (expansion) -> video/faces."""

    class Video(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key="video/raw",
            id_columns=["video_id"],
            fields=[mx.FieldSpec(key="audio", code_version=audio_code_version), "frames"],
        ),
    ):
        video_id: str
        path: str

    class VideoChunk(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key=["video", "chunk"],
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
            key=["video", "faces"],
            id_columns=["video_chunk_id"],
            deps=[VideoChunk],
            fields=[mx.FieldSpec(key="faces", deps=[mx.FieldDep(feature=VideoChunk, fields=["frames"])])],
        ),
    ):
        video_chunk_id: str
        num_faces: int

    return Video, VideoChunk, FaceRecognition
