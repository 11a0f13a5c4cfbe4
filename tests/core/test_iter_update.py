"""``store.iter_update``: the increment in bounded chunks, the same rows as ``resolve_update``, on every store."""

import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core import columns as C
from tests.core.pipelines import build_video_pipeline, process, raw_samples, run_pipeline, sorted_polars


def _chunks(store: mx.MetadataStore, feature: type[mx.BaseFeature], size: int, **kwargs: object) -> dict:
    parts: dict[str, list[pl.DataFrame]] = {}
    for part, chunk in store.iter_update(feature, batch_size=size, **kwargs):
        assert len(chunk) <= size
        parts.setdefault(part, []).append(chunk.to_polars())
    return parts


def test_chunks_hold_the_same_rows_as_the_increment(store: mx.MetadataStore) -> None:
    p = build_video_pipeline()
    ids = [f"v{i:02d}" for i in range(23)]
    run_pipeline(store, p, raw_samples(ids[:20]))
    changed = raw_samples(ids[3:], **{v: {"frames": "new"} for v in ids[5:12]})  # 3 gone, 3 new, 7 stale
    process(store, p.raw, store.resolve_update(p.raw, samples=changed))
    store.delete(p.raw, "video_id IN ('v00', 'v01', 'v02')")

    parts = _chunks(store, p.crop, 4)
    assert list(parts) == ["new", "stale", "orphaned"]
    whole = store.resolve_update(p.crop)
    for part in ("new", "stale", "orphaned"):
        got = pl.concat(parts[part], how="vertical_relaxed")
        expected = sorted_polars(getattr(whole, part), "video_id")
        assert sorted_polars(got, "video_id").select(expected.columns).equals(expected), part
    assert [len(c) for c in parts["stale"]] == [4, 3]
    assert sorted(pl.concat(parts["orphaned"])["video_id"]) == ["v00", "v01", "v02"]


def test_empty_parts_yield_one_typed_empty_chunk(store: mx.MetadataStore) -> None:
    p = build_video_pipeline()
    parts = _chunks(store, p.raw, 10, samples=raw_samples(), parts=("stale", "new"))
    assert list(parts) == ["stale", "new"]
    (stale,) = parts["stale"]
    assert stale.height == 0
    assert C.PROVENANCE_BY_FIELD in stale.columns
    assert sum(len(c) for c in parts["new"]) == 3


def test_filters_scope_the_chunks(store: mx.MetadataStore) -> None:
    p = build_video_pipeline()
    parts = _chunks(store, p.raw, 1, samples=raw_samples(), filters="video_id <> 'b'", parts=("new",))
    assert sorted(c["video_id"].item() for c in parts["new"]) == ["a", "c"]


def test_bad_arguments_are_refused(store: mx.MetadataStore) -> None:
    p = build_video_pipeline()
    with pytest.raises(ValueError, match="batch_size must be a positive"):
        next(store.iter_update(p.raw, batch_size=0, samples=raw_samples()))
    with pytest.raises(ValueError, match="unknown part"):
        next(store.iter_update(p.raw, batch_size=5, samples=raw_samples(), parts=("fresh",)))
