"""Pruning the incremental-resolve bookkeeping: checkpoints and change events stay bounded, and a
prune never removes what a resolve can still use (on every store that records them)."""

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core.stores import _incremental
from metaxy_core.stores._incremental import CHECKPOINTS, EVENTS
from tests.core.test_incremental import IDS, build_graph, frames, samples, write_rows

CHECKPOINT_SCHEMA = {"feature": pl.String, "fingerprint": pl.String, "since": pl.Datetime("us", "UTC")}
EVENT_SCHEMA = {"feature": pl.String, "at": pl.Datetime("us", "UTC"), "operation": pl.String}


def incremental(store: mx.MetadataStore) -> mx.MetadataStore:
    if not store.supports_incremental:
        pytest.skip(f"{type(store).__name__} records no checkpoints")
    store.incremental_lag = timedelta(minutes=1)
    return store


def table(store: mx.MetadataStore, name: str) -> pl.DataFrame:
    rows = store.read_system(name)
    assert rows is not None
    stamp = "since" if name == CHECKPOINTS else "at"
    # some engines hand back naive UTC timestamps: compare them as UTC
    if rows.schema[stamp] == pl.Datetime("us"):
        rows = rows.with_columns(pl.col(stamp).dt.replace_time_zone("UTC"))
    return rows.with_columns(pl.col(stamp).cast(pl.Datetime("us", "UTC"))).sort(list(rows.columns))


def fill(store: mx.MetadataStore) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Checkpoints: feature a with 10 fingerprints (two rows each), feature b with one fingerprint
    whose newest row is 5 days old; events 6 days, 3 days and 2 hours old."""
    now = _incremental.now().replace(microsecond=0)
    rows = []
    for i in range(10):
        for age in (2 * i + 1, 2 * i):  # fingerprint a0 is the most recently in sync
            rows.append(("a", f"a{i}", now - timedelta(minutes=age)))
    rows += [("b", "b0", now - timedelta(days=6)), ("b", "b0", now - timedelta(days=5))]
    checkpoints = pl.DataFrame(rows, schema=CHECKPOINT_SCHEMA, orient="row")
    events = pl.DataFrame(
        [
            (k, now - age, "delete")
            for k, age in (("a", timedelta(days=6)), ("b", timedelta(days=3)), ("a", timedelta(hours=2)))
        ],
        schema=EVENT_SCHEMA,
        orient="row",
    )
    store.append_system(CHECKPOINTS, checkpoints)
    store.append_system(EVENTS, events)
    return checkpoints, events


def test_prune_keeps_the_newest_checkpoint_of_the_newest_fingerprints(store: mx.MetadataStore) -> None:
    store = incremental(store)
    with store:
        checkpoints, events = fill(store)
        _incremental.prune(store, force=True)
        kept = table(store, CHECKPOINTS)
        newest = checkpoints.group_by("feature", "fingerprint").agg(pl.col("since").max())
        expected = newest.filter(pl.col("feature") == "b").vstack(
            newest.filter(pl.col("feature") == "a")
            .sort("since", descending=True)
            .head(_incremental.KEEP_FINGERPRINTS)
        )
        assert kept.equals(expected.select(kept.columns).sort(list(kept.columns)))
        # the oldest newest checkpoint (b, 5 days) can be voided by the 3-day-old event, not the 6-day-old one
        assert table(store, EVENTS).equals(
            events.filter(pl.col("at") > events["at"].min()).sort(list(EVENT_SCHEMA))
        )
        _incremental.prune(store, force=True)  # nothing more to remove
        assert table(store, CHECKPOINTS).equals(kept)


def test_an_interrupted_prune_loses_nothing_a_resolve_needs(
    store: mx.MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = incremental(store)
    with store:
        checkpoints, events = fill(store)
        run = store._run  # type: ignore[attr-defined]

        def failing(sql: str, *args: Any) -> Any:
            if EVENTS in sql and ("DELETE" in sql.upper()):
                raise RuntimeError("connection lost")
            return run(sql, *args)

        monkeypatch.setattr(store, "_run", failing)
        with pytest.raises(Exception, match="connection lost"):
            _incremental.prune(store, force=True)
        monkeypatch.undo()
        kept = table(store, CHECKPOINTS)
        newest = checkpoints.group_by("feature", "fingerprint").agg(pl.col("since").max())
        assert (
            newest.join(kept, on=list(newest.columns), how="anti")
            .filter((pl.col("feature") == "b") | pl.col("fingerprint").is_in([f"a{i}" for i in range(8)]))
            .is_empty()
        )
        assert table(store, EVENTS).equals(events.sort(list(EVENT_SCHEMA)))
        if store.kind != "clickhouse":  # one transaction: nothing changed at all
            assert kept.equals(checkpoints.sort(list(CHECKPOINT_SCHEMA)))


def test_bookkeeping_stays_bounded_and_results_exact(
    store_factory: Callable[..., mx.MetadataStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many in-sync resolves under switching code versions: the tables stay bounded, results exact."""
    store = incremental(store_factory())
    store.incremental_lag = timedelta(0)
    monkeypatch.setattr(_incremental, "KEEP_FINGERPRINTS", 2)
    monkeypatch.setattr(_incremental, "PRUNE_SLACK", 3)
    graphs = [build_graph(crop_audio=v) for v in ("1", "2", "3")]
    values = {sid: "v" for sid in IDS[:3]}
    with store:
        for i in range(12):
            g = graphs[i % 3]
            with g.graph.use():
                values[IDS[i % 3]] = f"v{i}"
                write_rows(store, g.raw, store.resolve_update(g.raw, samples=samples(values)), None)
                write_rows(store, g.crop, store.resolve_update(g.crop), None)
                store.delete(g.raw, "sid = 'absent'")  # a change event each round
                inc = store.resolve_update(g.crop)
                assert inc.is_empty
                full = store.resolve_update(g.crop, full=True)
                assert all(a.equals(b) for a, b in zip(frames(inc), frames(full), strict=True))
            recorded = table(store, CHECKPOINTS)
            assert recorded.height <= 2 + 3, recorded
        with graphs[0].graph.use():
            store.compact(keep_versions=1)
        recorded = table(store, CHECKPOINTS)
        # one row for each of the two fingerprints most recently in sync (crop code versions 2 and 3)
        assert recorded.height == 2
        assert recorded["fingerprint"].n_unique() == 2
