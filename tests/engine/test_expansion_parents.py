"""``write(..., parents=...)``: expansion parents with zero children are in sync after their write."""

import narwhals as nw
import polars as pl
import pytest

import metaxy_core as mx
from tests.graphs import expansion_features

IN_SYNC = {"new": 0, "stale": 0, "orphaned": 0}


def _videos(versions: dict[str, str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "video_id": list(versions),
            "path": [f"{v}.mp4" for v in versions],
            "metaxy_provenance_by_field": [{"audio": p, "frames": p} for p in versions.values()],
        }
    )


def _chunks(parents: pl.DataFrame, per_parent: dict[str, int]) -> pl.DataFrame:
    rows = [
        {**parent, "video_chunk_id": f"{parent['video_id']}_{i}", "path": f"{parent['video_id']}.{i}"}
        for parent in parents.select("video_id", "metaxy_provenance_by_field", "metaxy_provenance").to_dicts()
        for i in range(per_parent.get(parent["video_id"], 0))
    ]
    if not rows:
        return pl.DataFrame()
    return pl.DataFrame(rows)


def _ingest(store: mx.MetadataStore, video: type[mx.BaseFeature], versions: dict[str, str]) -> None:
    inc = store.resolve_update(video, samples=_videos(versions))
    todo = _todo(inc)
    store.write(video, todo)


def _todo(inc: mx.Increment) -> pl.DataFrame:
    return pl.concat(
        [inc.new.to_polars(), inc.stale.to_polars().drop("metaxy_changed_fields")], how="diagonal"
    )


def test_parent_without_children_is_in_sync(store: mx.MetadataStore) -> None:
    video, chunk, _ = expansion_features()
    _ingest(store, video, {"a": "1", "b": "1", "c": "1"})
    inc = store.resolve_update(chunk)
    assert inc.counts() == {"new": 3, "stale": 0, "orphaned": 0}
    todo = _todo(inc)
    # "c" turns out to have no chunks: declaring it covered records that.
    assert store.write(chunk, _chunks(todo, {"a": 2, "b": 3}), parents=todo) == 5
    assert store.resolve_update(chunk).counts() == IN_SYNC

    # "b" changes and now has no chunks: a write of zero rows removes its old ones (kept in history).
    _ingest(store, video, {"a": "1", "b": "2", "c": "1"})
    inc = store.resolve_update(chunk)
    assert inc.counts() == {"new": 0, "stale": 1, "orphaned": 0}
    assert store.write(chunk, pl.DataFrame(), parents=_todo(inc)) == 0
    assert store.resolve_update(chunk).counts() == IN_SYNC
    current = store.read(chunk).to_polars()
    assert sorted(current["video_chunk_id"]) == ["a_0", "a_1"]
    history = store.read(chunk, history=True).to_polars()
    assert history.filter(pl.col("video_id") == "b").height == 3

    # "c" changes and now has chunks: a plain write (no parents=) replaces its marker.
    _ingest(store, video, {"a": "1", "b": "2", "c": "3"})
    inc = store.resolve_update(chunk)
    assert inc.stale["video_id"].to_list() == ["c"]
    store.write(chunk, _chunks(_todo(inc), {"c": 2}))
    assert store.resolve_update(chunk).counts() == IN_SYNC
    assert sorted(store.read(chunk).to_polars()["video_chunk_id"]) == ["a_0", "a_1", "c_0", "c_1"]

    # A parent without children that disappears upstream is reported orphaned.
    store.delete(video, nw.col("video_id") == "b")
    assert store.resolve_update(chunk).counts() == {"new": 0, "stale": 0, "orphaned": 1}


def test_first_write_of_zero_rows(store: mx.MetadataStore) -> None:
    video, chunk, _ = expansion_features()
    _ingest(store, video, {"a": "1"})
    todo = _todo(store.resolve_update(chunk))
    assert store.write(chunk, pl.DataFrame(), parents=todo) == 0
    assert store.has_feature(chunk)
    assert store.resolve_update(chunk).counts() == IN_SYNC
    assert store.read(chunk).to_polars().height == 0


def test_parents_errors(store: mx.MetadataStore) -> None:
    video, chunk, _ = expansion_features()
    _ingest(store, video, {"a": "1"})
    todo = _todo(store.resolve_update(chunk))
    with pytest.raises(mx.MetadataValidationError, match="parents= is for expansion features"):
        store.write(video, pl.DataFrame(), parents=todo)
    with pytest.raises(mx.MetadataValidationError, match=r"1 parent\(s\) have no rows.*metaxy_provenance"):
        store.write(chunk, pl.DataFrame(), parents=todo.select("video_id"))
    with pytest.raises(mx.MetadataValidationError, match="lacks the expansion's on column"):
        store.write(chunk, pl.DataFrame(), parents=todo.drop("video_id"))
    assert not store.has_feature(chunk)
