"""Feature graphs and pipeline steps shared by the core tests.

Every builder defines its classes in a *new* isolated :class:`mx.FeatureGraph`, so a test can hold
two versions of the same pipeline (before and after a code change) side by side, with the same
feature keys, against the same store.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import narwhals as nw
import polars as pl

import metaxy_core as mx
from metaxy_core import columns as C

PROVENANCE_COLUMNS = [C.PROVENANCE_BY_FIELD, C.PROVENANCE]


@dataclass(frozen=True)
class VideoPipeline:
    """raw -> crop -> faces, raw -> stt: faces reads only crop's frames, stt only raw's audio."""

    graph: mx.FeatureGraph
    raw: type[mx.BaseFeature]
    crop: type[mx.BaseFeature]
    faces: type[mx.BaseFeature]
    stt: type[mx.BaseFeature]

    @property
    def features(self) -> list[type[mx.BaseFeature]]:
        return [self.raw, self.crop, self.faces, self.stt]

    @property
    def downstream(self) -> list[type[mx.BaseFeature]]:
        return [self.crop, self.faces, self.stt]


def build_video_pipeline(
    *, raw_audio: str = "1", crop_audio: str | None = None, crop_frames: str | None = None
) -> VideoPipeline:
    graph = mx.FeatureGraph()
    crop_fields: list[Any] = [
        mx.FieldSpec("audio") if crop_audio is None else mx.FieldSpec("audio", code_version=crop_audio),
        mx.FieldSpec("frames") if crop_frames is None else mx.FieldSpec("frames", code_version=crop_frames),
    ]
    with graph.use():

        class Raw(
            mx.BaseFeature,
            spec=mx.FeatureSpec(
                key="video/raw",
                id_columns=["video_id"],
                fields=[mx.FieldSpec("audio", code_version=raw_audio), "frames"],
            ),
        ):
            video_id: str
            path: str

        class Crop(
            mx.BaseFeature,
            spec=mx.FeatureSpec(key="video/crop", id_columns=["video_id"], deps=[Raw], fields=crop_fields),
        ):
            video_id: str
            crop_path: str

        class Faces(
            mx.BaseFeature,
            spec=mx.FeatureSpec(
                key="video/faces",
                id_columns=["video_id"],
                deps=[Crop],
                fields=[mx.FieldSpec("faces", deps=[mx.FieldDep(feature=Crop, fields=["frames"])])],
            ),
        ):
            video_id: str
            num_faces: int

        class Stt(
            mx.BaseFeature,
            spec=mx.FeatureSpec(
                key="video/stt",
                id_columns=["video_id"],
                deps=[Raw],
                fields=[mx.FieldSpec("transcription", deps=[mx.FieldDep(feature=Raw, fields=["audio"])])],
            ),
        ):
            video_id: str
            text: str

    return VideoPipeline(graph, Raw, Crop, Faces, Stt)


# Values the pipeline "computes" for each feature: constant, since only provenance matters here.
COMPUTED: dict[str, dict[str, Any]] = {
    "video/crop": {"crop_path": "crop.mp4"},
    "video/faces": {"num_faces": 2},
    "video/stt": {"text": "hello"},
}


def raw_samples(ids: Sequence[str] = ("a", "b", "c"), **overrides: dict[str, str]) -> pl.DataFrame:
    """Root samples with a content hash per field; ``overrides={"b": {"audio": "x"}}`` changes one value."""
    rows = []
    for vid in ids:
        values = {"audio": f"audio-{vid}", "frames": f"frames-{vid}", **overrides.get(vid, {})}
        rows.append({"video_id": vid, "path": f"{vid}.mp4", C.PROVENANCE_BY_FIELD: values})
    return pl.DataFrame(rows)


def process(
    store: mx.MetadataStore, feature: type[mx.BaseFeature], increment: mx.Increment, **extra: Any
) -> int:
    """Write the new and stale rows of ``increment`` the way a pipeline step would."""
    rows = increment.to_process()
    if rows.height == 0:
        return 0
    key = str(feature.spec.key)
    ids = list(feature.spec.id_columns)
    keep = [c for c in rows.columns if c in feature.user_columns() or c in ids or c in PROVENANCE_COLUMNS]
    rows = rows.select(keep).with_columns(
        *[pl.lit(v).alias(k) for k, v in COMPUTED.get(key, {}).items()],
        *[pl.lit(v).alias(k) for k, v in extra.items()],
    )
    return store.write(feature, rows)


def run_pipeline(
    store: mx.MetadataStore, pipeline: VideoPipeline, samples: pl.DataFrame
) -> dict[str, dict[str, int]]:
    """Resolve and process every feature in order; return the counts seen before each write."""
    counts: dict[str, dict[str, int]] = {}
    for feature in pipeline.features:
        kwargs = {"samples": samples} if feature is pipeline.raw else {}
        increment = store.resolve_update(feature, **kwargs)
        counts[str(feature.spec.key)] = increment.counts()
        process(store, feature, increment)
    return counts


def counts_of(store: mx.MetadataStore, *features: type[mx.BaseFeature]) -> dict[str, dict[str, int]]:
    return {str(f.spec.key): store.resolve_update(f).counts() for f in features}


ZERO = {"new": 0, "stale": 0, "orphaned": 0}


def sorted_polars(frame: Any, by: str | Sequence[str]) -> pl.DataFrame:
    if isinstance(frame, nw.LazyFrame):
        frame = frame.collect()
    if isinstance(frame, nw.DataFrame):
        frame = frame.to_polars()
    return frame.sort(by)


def changed_fields(increment: mx.Increment, id_column: str) -> dict[str, list[str]]:
    stale = sorted_polars(increment.stale, id_column)
    return dict(zip(stale[id_column].to_list(), stale[C.CHANGED_FIELDS].to_list(), strict=True))
