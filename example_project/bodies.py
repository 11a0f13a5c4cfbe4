"""The computations of the video pipeline, as plain functions.

Each gets the increment (new + stale samples only) and returns the rows it computed; the metaxy IO
manager attaches provenance and writes them. ``assets.py`` turns them into assets with
``@mxd.metaxy_asset``; the ``defs/`` variant of the project names this module in its ``defs.yaml``
(the ``compute`` and ``samples`` mappings below).

No ``from __future__ import annotations`` here: Dagster reads the ``context`` annotation at runtime.
"""

import dagster as dg
import polars as pl

import metaxy_dagster as mxd
from example_project import media
from example_project.features import FaceRecognition, SpeechToText, Video, VideoChunk, VideoEmbedding


def raw_videos(context: dg.AssetExecutionContext, increment: mxd.MetaxyIncrement) -> pl.DataFrame:
    """Register the videos on disk: new and changed ones are (re)written, unchanged ones skipped."""
    todo = increment.to_process()
    context.log.info(f"registering {todo.height} video(s): {todo['video_id'].to_list()}")
    return todo.select("video_id", "path", "duration_s", "split")


def video_chunks(context: dg.AssetExecutionContext, increment: mxd.MetaxyIncrement) -> pl.DataFrame:
    """Split each new or changed video into 10-second chunks. All chunks of a video are written in one
    go, so chunks left over from a longer previous version are replaced."""
    rows = []
    for video in increment.to_process().iter_rows(named=True):
        rows += media.split_into_chunks(video["video_id"], video["video_path"])
    context.log.info(f"{len(rows)} chunk(s) from {increment.to_process().height} video(s)")
    return pl.DataFrame(
        rows,
        schema={"video_id": pl.String, "video_chunk_id": pl.String, "path": pl.String, "start_s": pl.Int64},
    )


def faces(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
    """Count faces in each new or changed chunk (only frame changes make a chunk stale here)."""
    todo = increment.to_process()
    return todo.select(
        "video_chunk_id",
        pl.col("path").map_elements(media.count_faces, return_dtype=pl.Int64).alias("num_faces"),
    )


def transcripts(increment: mxd.MetaxyIncrement) -> pl.DataFrame:
    """Transcribe each new or changed video (only audio changes make a video stale here)."""
    todo = increment.to_process()
    text = pl.col("path").map_elements(media.transcribe, return_dtype=pl.String)
    return todo.select("video_id", text.alias("transcription")).with_columns(
        pl.col("transcription").str.split(" ").list.len().cast(pl.Int64).alias("words")
    )


def embeddings(context: dg.AssetExecutionContext, increment: mxd.MetaxyIncrement) -> pl.DataFrame:
    """Embed the new or changed videos of this run's split (a partition run only sees its own videos)."""
    todo = increment.to_process()
    context.log.info(f"split {context.partition_key}: embedding {todo.height} video(s)")
    return todo.select(
        "video_id",
        "split",
        pl.col("path").map_elements(media.embed, return_dtype=pl.String).alias("embedding"),
    )


compute = {
    Video: raw_videos,
    VideoChunk: video_chunks,
    FaceRecognition: faces,
    SpeechToText: transcripts,
    VideoEmbedding: embeddings,
}
"""Feature -> body, for the ``defs/`` variant's component."""
samples = {Video: media.list_videos}
"""Root feature -> samples provider (the videos on disk, with content hashes per track)."""
