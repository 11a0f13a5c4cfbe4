"""The pipeline's Dagster assets: the bodies of ``bodies.py`` with ``@mxd.metaxy_asset``.

Each body gets the increment (new + stale samples only) and returns the rows it computed; the metaxy
IO manager attaches provenance and writes them.
"""

import dagster as dg

import metaxy_dagster as mxd
from example_project import bodies, media
from example_project.features import FaceRecognition, SpeechToText, Video, VideoChunk, VideoEmbedding

SPLITS = dg.StaticPartitionsDefinition(["train", "test"])

raw_videos = mxd.metaxy_asset(Video, samples=media.list_videos)(bodies.raw_videos)
video_chunks = mxd.metaxy_asset(VideoChunk)(bodies.video_chunks)
faces = mxd.metaxy_asset(FaceRecognition)(bodies.faces)
transcripts = mxd.metaxy_asset(SpeechToText)(bodies.transcripts)
embeddings = mxd.metaxy_asset(VideoEmbedding, partitions_def=SPLITS, partition_by="split")(bodies.embeddings)


feature_graph = mxd.build_metaxy_graph_asset()

FEATURE_ASSETS = [raw_videos, video_chunks, faces, transcripts, embeddings]
UNPARTITIONED_ASSETS = [raw_videos, video_chunks, faces, transcripts]
PARTITIONED_ASSETS = [embeddings]
