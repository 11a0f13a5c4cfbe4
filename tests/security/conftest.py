"""A small feature with columns of every basic type, stored in each store of the conformance matrix."""

from collections.abc import Callable

import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core import columns as C

IDS = ["a", "b", "c", "d", "e", "f"]


@pytest.fixture
def clip(graph: mx.FeatureGraph) -> type[mx.BaseFeature]:
    class Clip(
        mx.BaseFeature, spec=mx.FeatureSpec(key="media/clip", id_columns=["clip_id"], fields=["frames"])
    ):
        clip_id: str
        split: str
        n_frames: int
        score: float
        tag: str | None

    return Clip


def clip_rows() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "clip_id": IDS,
            "split": ["train", "train", "test", "val", "Train", "test"],
            "n_frames": [10, 25, 3, 40, 17, 0],
            "score": [0.5, 1.25, -2.0, 3.5, 0.0, 9.75],
            "tag": ["cat_1", None, "dog", "cat%2", None, "Cat_3"],
            C.PROVENANCE_BY_FIELD: [{"frames": f"p-{i}"} for i in IDS],
        },
        schema_overrides={"tag": pl.String},
    )


@pytest.fixture
def stored_clip(store: mx.MetadataStore, clip: type[mx.BaseFeature]) -> type[mx.BaseFeature]:
    rows = clip_rows()
    store.write(clip, store.resolve_update(clip, samples=rows).new)
    return clip


def snapshot(store: mx.MetadataStore, feature: type[mx.BaseFeature]) -> pl.DataFrame:
    """Every stored version of every row, deleted ones included, in a stable order."""
    frame = store.read(feature, history=True, include_deleted=True).to_polars()
    return frame.sort("clip_id", C.UPDATED_AT)


Snapshot = Callable[[mx.MetadataStore, type[mx.BaseFeature]], pl.DataFrame]
