"""The features of the video pipeline (video expansion into chunks, plus speech to text).

video/raw ──expansion──▶ video/chunk ──▶ video/faces   (faces reads frames only)
    ├──────────────────▶ video/stt                     (transcription reads audio only)
    └──────────────────▶ video/embedding               (frames only; partitioned by train/test split)
"""

import metaxy_core as mx


class Video(
    mx.BaseFeature,
    spec=mx.FeatureSpec(
        key="video/raw",
        id_columns=["video_id"],
        fields=[mx.FieldSpec("audio", code_version="1"), "frames"],
    ),
):
    """Raw videos found on disk (example_project/data/videos). Provenance: content hashes of the audio
    and frames tracks, so editing one track only invalidates what depends on it."""

    video_id: str
    path: str
    duration_s: int
    split: str
    """'train' or 'test': fixed per video (a hash of its id), so a video never changes split."""


class VideoChunk(
    mx.BaseFeature,
    spec=mx.FeatureSpec(
        key="video/chunk",
        id_columns=["video_chunk_id"],
        deps=[
            mx.FeatureDep(
                feature=Video,
                columns=["path"],
                rename={"path": "video_path"},
                lineage=mx.LineageRelationship.expansion(on=["video_id"]),
            )
        ],
        fields=["audio", "frames"],
    ),
):
    """10-second chunks of each video (one video expands into several chunks)."""

    video_id: str
    video_chunk_id: str
    path: str
    start_s: int


class FaceRecognition(
    mx.BaseFeature,
    spec=mx.FeatureSpec(
        key="video/faces",
        id_columns=["video_chunk_id"],
        deps=[mx.FeatureDep(feature=VideoChunk, columns=["path"])],
        fields=[
            mx.FieldSpec("faces", code_version="1", deps=[mx.FieldDep(feature=VideoChunk, fields=["frames"])])
        ],
    ),
):
    """Faces detected in each chunk; depends on the chunk's frames only."""

    video_chunk_id: str
    num_faces: int


class SpeechToText(
    mx.BaseFeature,
    spec=mx.FeatureSpec(
        key="video/stt",
        id_columns=["video_id"],
        deps=[mx.FeatureDep(feature=Video, columns=["path"])],
        fields=[
            mx.FieldSpec(
                "transcription", code_version="1", deps=[mx.FieldDep(feature=Video, fields=["audio"])]
            )
        ],
    ),
):
    """Transcript of each video's audio track."""

    video_id: str
    transcription: str
    words: int


class VideoEmbedding(
    mx.BaseFeature,
    spec=mx.FeatureSpec(
        key="video/embedding",
        id_columns=["video_id"],
        deps=[mx.FeatureDep(feature=Video, columns=["path", "split"])],
        fields=[
            mx.FieldSpec("embedding", code_version="1", deps=[mx.FieldDep(feature=Video, fields=["frames"])])
        ],
    ),
):
    """A small vector per video from its frames, for training a model; the asset is partitioned by the
    video's split, so the train and test sets are computed (and shown) separately."""

    video_id: str
    split: str
    embedding: str
