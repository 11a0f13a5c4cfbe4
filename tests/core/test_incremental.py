"""Incremental resolves give exactly the result of full ones, on every store; partial root updates.

The property test runs random sequences of pipeline operations (root updates, complete or partial;
partial writes of increments; soft and hard deletes in roots and mid-levels; code version bumps)
and after each step compares ``resolve_update(feature)`` with ``resolve_update(feature, full=True)``
for every downstream feature.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import narwhals as nw
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import metaxy_core as mx
from metaxy_core import columns as C
from metaxy_core.stores import _incremental
from metaxy_core.stores._incremental import CHECKPOINTS, KeyRestriction

IDS = ["a", "b", "c", "d", "e", "f"]


@dataclass(frozen=True)
class Graph:
    graph: mx.FeatureGraph
    raw: type[mx.BaseFeature]
    crop: type[mx.BaseFeature]
    mix: type[mx.BaseFeature]
    side: type[mx.BaseFeature]

    @property
    def downstream(self) -> list[type[mx.BaseFeature]]:
        return [self.crop, self.mix, self.side]


def build_graph(raw_audio: str = "1", crop_audio: str = "1") -> Graph:
    """raw -> crop; mix joins raw and crop; side joins raw and (optionally) crop with a dep filter."""
    graph = mx.FeatureGraph()
    with graph.use():

        class Raw(
            mx.BaseFeature,
            spec=mx.FeatureSpec(
                key="inc/raw",
                id_columns=["sid"],
                fields=[mx.FieldSpec("audio", code_version=raw_audio), "frames"],
            ),
        ):
            sid: str
            path: str

        class Crop(
            mx.BaseFeature,
            spec=mx.FeatureSpec(
                key="inc/crop",
                id_columns=["sid"],
                deps=[Raw],
                fields=[mx.FieldSpec("audio", code_version=crop_audio), "frames"],
            ),
        ):
            sid: str
            crop_path: str

        class Mix(
            mx.BaseFeature,
            spec=mx.FeatureSpec(
                key="inc/mix", id_columns=["sid"], deps=[Raw, Crop], fields=["audio", "frames"]
            ),
        ):
            sid: str
            score: int

        class Side(
            mx.BaseFeature,
            spec=mx.FeatureSpec(
                key="inc/side",
                id_columns=["sid"],
                deps=[
                    mx.FeatureDep(feature=Raw, filters=["sid <> 'f'"]),
                    mx.FeatureDep(feature=Crop, optional=True),
                ],
                fields=["frames"],
            ),
        ):
            sid: str
            note: str

    return Graph(graph, Raw, Crop, Mix, Side)


COMPUTED = {"inc/crop": {"crop_path": "c.mp4"}, "inc/mix": {"score": 1}, "inc/side": {"note": "n"}}


def samples(values: dict[str, str]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "sid": sid,
                "path": f"{sid}.mp4",
                C.PROVENANCE_BY_FIELD: {"audio": f"a-{v}", "frames": f"f-{sid}"},
            }
            for sid, v in sorted(values.items())
        ],
        schema={
            "sid": pl.String,
            "path": pl.String,
            C.PROVENANCE_BY_FIELD: pl.Struct({"audio": pl.String, "frames": pl.String}),
        },
    )


def write_rows(
    store: mx.MetadataStore, feature: type[mx.BaseFeature], inc: mx.Increment, keep: int | None
) -> None:
    rows = inc.to_process().sort("sid")
    if keep is not None:
        rows = rows.head(keep)
    if rows.height == 0:
        return
    wanted = [
        c
        for c in rows.columns
        if c in feature.user_columns() or c in ("sid", C.PROVENANCE_BY_FIELD, C.PROVENANCE)
    ]
    extra = COMPUTED.get(str(feature.spec.key), {})
    store.write(feature, rows.select(wanted).with_columns(pl.lit(v).alias(k) for k, v in extra.items()))


def frames(inc: mx.Increment) -> list[pl.DataFrame]:
    parts = (inc.new, inc.stale, inc.orphaned)
    return [(p.collect() if isinstance(p, nw.LazyFrame) else p).to_polars().sort("sid") for p in parts]


def assert_same(store: mx.MetadataStore, g: Graph, where: str, *, lazy: bool = False) -> None:
    """Incremental and full resolves agree; ``lazy``: the incremental one is lazy and counted first
    (as a sensor tick does, which may record a checkpoint), then materialised."""
    for feature in g.downstream:
        inc = store.resolve_update(feature, lazy=lazy)
        full_inc = store.resolve_update(feature, full=True)
        if lazy:
            assert inc.counts() == full_inc.counts(), f"{where}: {feature.spec.key} lazy counts"
        fast, full = frames(inc), frames(full_inc)
        # An eager resolve may find the differing keys first and fetch their rows after (DuckDB);
        # a lazy one is the single diff query: they agree too.
        one_pass = frames(store.resolve_update(feature, full=True, lazy=True))
        for name, a, b, c in zip(("new", "stale", "orphaned"), fast, full, one_pass, strict=True):
            assert a.schema == b.schema, f"{where}: {feature.spec.key} {name} schema"
            assert a.equals(b), f"{where}: {feature.spec.key} {name}\nincremental:\n{a}\nfull:\n{b}"
            assert b.equals(c), f"{where}: {feature.spec.key} {name}\neager:\n{b}\nlazy, one pass:\n{c}"


operation = st.one_of(
    st.tuples(
        st.just("root"),
        st.dictionaries(st.sampled_from(IDS), st.one_of(st.none(), st.sampled_from("xyz")), max_size=3),
        st.booleans(),
    ),
    st.tuples(
        st.just("process"), st.sampled_from(["crop", "mix", "side"]), st.one_of(st.none(), st.integers(0, 2))
    ),
    st.tuples(
        st.just("delete"),
        st.sampled_from(["raw", "crop"]),
        st.lists(st.sampled_from(IDS), min_size=1, max_size=2),
        st.booleans(),
    ),
    st.tuples(st.just("bump"), st.sampled_from(["1", "2"]), st.sampled_from(["1", "2"])),
)


def settle(store: mx.MetadataStore, g: Graph, values: dict[str, str]) -> None:
    """Run the whole pipeline to completion (roots from ``values``), so checkpoints get recorded."""
    write_rows(store, g.raw, store.resolve_update(g.raw, samples=samples(values)), None)
    for feature in g.downstream:
        write_rows(store, feature, store.resolve_update(feature), None)
        assert store.resolve_update(feature).is_empty


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(st.tuples(operation, st.booleans()), min_size=2, max_size=5))
def test_incremental_equals_full(
    store_factory: Callable[..., mx.MetadataStore],
    monkeypatch: pytest.MonkeyPatch,
    steps: list[tuple[Any, bool]],
) -> None:
    graphs = {(r, c): build_graph(r, c) for r in "12" for c in "12"}
    g = graphs[("1", "1")]
    store = store_factory()
    # look back exactly to each checkpoint: the tests write from one process, nothing runs alongside
    store.incremental_lag = timedelta(0)
    # prune the bookkeeping on almost every checkpoint, keeping fewer fingerprints than the 4 graphs have
    monkeypatch.setattr(_incremental, "PRUNE_SLACK", 1)
    monkeypatch.setattr(_incremental, "KEEP_FINGERPRINTS", 2)
    values = {sid: "v" for sid in IDS[:4]}
    with store, g.graph.use():
        settle(store, g, values)
    # ``lazy``: the step checks its results the way a sensor tick does (lazy, counted first)
    for i, (step, lazy) in enumerate(steps):
        with store, g.graph.use():
            if step[0] == "root":
                _, changes, partial = step
                if partial:
                    given_values = {sid: v or "p" for sid, v in changes.items()}
                    values.update(given_values)
                    inc = store.resolve_update(g.raw, samples=samples(given_values), partial=True)
                    assert len(inc.orphaned) == 0
                else:
                    for sid, v in changes.items():
                        if v is None:
                            values.pop(sid, None)
                        else:
                            values[sid] = v
                    inc = store.resolve_update(g.raw, samples=samples(values))
                    one_pass = store.resolve_update(g.raw, samples=samples(values), lazy=True)
                    for name, a, b in zip(
                        ("new", "stale", "orphaned"), frames(inc), frames(one_pass), strict=True
                    ):
                        assert a.equals(b), f"step {i}: root {name}\neager:\n{a}\nlazy, one pass:\n{b}"
                write_rows(store, g.raw, inc, None)
            elif step[0] == "process":
                _, name, keep = step
                feature = getattr(g, name)
                write_rows(store, feature, store.resolve_update(feature), keep)
            elif step[0] == "delete":
                _, name, ids, soft = step
                listed = ", ".join(f"'{sid}'" for sid in ids)
                store.delete(getattr(g, name), f"sid IN ({listed})", soft=soft)
            else:
                g = graphs[(step[1], step[2])]
                continue
            assert_same(store, g, f"step {i} {step}", lazy=lazy)
        with store, g.graph.use():
            assert_same(store, g, f"after step {i} {step} (fresh session)", lazy=lazy)


def test_unchanged_inputs_skip_the_scan(store: mx.MetadataStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once in sync, a resolve with no change examines no key; one change examines that key only."""
    g = build_graph()
    if not store.supports_incremental:
        pytest.skip(f"{type(store).__name__} resolves in full")
    store.incremental_lag = timedelta(0)
    seen: list[KeyRestriction | None] = []
    original = store._resolve

    def spy(*args: Any, restriction: KeyRestriction | None = None, **kwargs: Any) -> mx.Increment:
        seen.append(restriction)
        return original(*args, restriction=restriction, **kwargs)

    values = {sid: "v" for sid in IDS}
    with g.graph.use():
        settle(store, g, values)
        assert store.read_system(CHECKPOINTS) is not None
        monkeypatch.setattr(store, "_resolve", spy)
        assert store.resolve_update(g.crop).is_empty
        assert seen[-1] is not None
        assert seen[-1].nothing
        values["b"] = "changed"
        write_rows(store, g.raw, store.resolve_update(g.raw, samples=samples(values)), None)
        inc = store.resolve_update(g.crop)
        assert seen[-1] is not None
        assert seen[-1].since is not None
        assert inc.stale.to_polars()["sid"].to_list() == ["b"]
        assert inc.stale.to_polars()[C.CHANGED_FIELDS].to_list() == [["audio"]]
        full = store.resolve_update(g.crop, full=True)
        assert seen[-1] is None
        assert all(a.equals(b) for a, b in zip(frames(full), frames(inc), strict=True))


def test_delete_voids_checkpoints(store: mx.MetadataStore) -> None:
    """A hard delete in an upstream leaves no stamped row behind: the next resolve is a full one."""
    g = build_graph()
    store.incremental_lag = timedelta(0)
    with g.graph.use():
        settle(store, g, {sid: "v" for sid in IDS})
        store.delete(g.raw, "sid = 'c'", soft=False)
        inc = store.resolve_update(g.crop)
        assert inc.orphaned.to_polars()["sid"].to_list() == ["c"]


def test_direct_writes_to_the_target_are_examined(store: mx.MetadataStore) -> None:
    """Rows written to the feature itself after it was in sync (here with provenance that matches
    nothing upstream) are rechecked although no upstream row changed."""
    g = build_graph()
    store.incremental_lag = timedelta(0)
    with g.graph.use():
        settle(store, g, {sid: "v" for sid in IDS})
        scribbled = (
            store.read(g.crop)
            .to_polars()
            .filter(pl.col("sid") == "d")
            .select("sid", "crop_path", C.PROVENANCE_BY_FIELD)
            .with_columns(pl.struct(audio=pl.lit("old"), frames=pl.lit("old")).alias(C.PROVENANCE_BY_FIELD))
        )
        store.write(g.crop, scribbled)
        inc = store.resolve_update(g.crop)
        assert inc.stale.to_polars()["sid"].to_list() == ["d"]
        assert all(
            a.equals(b)
            for a, b in zip(frames(inc), frames(store.resolve_update(g.crop, full=True)), strict=True)
        )


def test_partial_root_update(store: mx.MetadataStore) -> None:
    """partial=True: the given samples are compared, the other stored samples are not orphaned."""
    g = build_graph()
    with g.graph.use():
        settle(store, g, {sid: "v" for sid in IDS})
        subset = samples({"b": "v", "c": "w", "z": "v"})
        inc = store.resolve_update(g.raw, samples=subset, partial=True)
        assert inc.counts() == {"new": 1, "stale": 1, "orphaned": 0}
        assert inc.new.to_polars()["sid"].to_list() == ["z"]
        assert inc.stale.to_polars()["sid"].to_list() == ["c"]
        # the same samples as the complete set: every other stored sample is orphaned
        assert len(store.resolve_update(g.raw, samples=subset).orphaned) == len(IDS) - 2
        lazy = store.resolve_update(g.raw, samples=subset, partial=True, lazy=True)
        assert lazy.counts() == {"new": 1, "stale": 1, "orphaned": 0}


def test_partial_is_for_roots(store: mx.MetadataStore) -> None:
    g = build_graph()
    with g.graph.use(), pytest.raises(mx.ResolveError, match="partial is for root features"):
        store.resolve_update(g.crop, partial=True)


def test_read_only_resolves_record_checkpoints_at_the_next_write_session(
    store_factory: Callable[..., mx.MetadataStore],
) -> None:
    """DuckDB opens a store read-only for a call outside ``with``: its checkpoint waits for a writable open."""
    g = build_graph()
    store = store_factory()
    if not store.supports_incremental:
        pytest.skip(f"{type(store).__name__} resolves in full")
    store.incremental_lag = timedelta(0)
    with g.graph.use():
        with store:
            write_rows(store, g.raw, store.resolve_update(g.raw, samples=samples({"a": "v", "b": "v"})), None)
            write_rows(store, g.crop, store.resolve_update(g.crop), None)
        assert store.resolve_update(g.crop).is_empty  # outside `with`: read-only on DuckDB
        with store:
            recorded = store.read_system(CHECKPOINTS)
            assert recorded is not None
            assert "inc/crop" in recorded["feature"].to_list()


def checkpoints_of(store: mx.MetadataStore, key: str) -> int:
    recorded = store.read_system(CHECKPOINTS)
    return 0 if recorded is None else recorded.filter(pl.col("feature") == key).height


def test_lazy_counts_record_checkpoints(store: mx.MetadataStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sensor tick (lazy resolve, ``counts()``) that finds nothing to do makes the next one incremental."""
    g = build_graph()
    if not store.supports_incremental:
        pytest.skip(f"{type(store).__name__} resolves in full")
    store.incremental_lag = timedelta(0)
    values = {sid: "v" for sid in IDS}
    with store, g.graph.use():
        write_rows(store, g.raw, store.resolve_update(g.raw, samples=samples(values)), None)
        write_rows(store, g.crop, store.resolve_update(g.crop), None)
        assert checkpoints_of(store, "inc/crop") == 0  # nothing has found crop in sync yet
        pending = store.resolve_update(g.crop, lazy=True)
        frames(pending)  # materialising the frames records nothing
        assert checkpoints_of(store, "inc/crop") == 0
        assert pending.counts() == {"new": 0, "stale": 0, "orphaned": 0}
        assert pending.is_empty
        assert checkpoints_of(store, "inc/crop") == 1  # once, however often it is counted

        changed: list[int] = []
        count_changed = store._count_changed

        def spy(*args: Any, **kwargs: Any) -> int:
            changed.append(count_changed(*args, **kwargs))
            return changed[-1]

        monkeypatch.setattr(store, "_count_changed", spy)
        values["b"] = "changed"
        write_rows(store, g.raw, store.resolve_update(g.raw, samples=samples(values)), None)
        inc = store.resolve_update(g.crop, lazy=True)
        assert changed == [1]  # the checkpoint was used: one changed key examined, not six
        assert inc.counts() == {"new": 0, "stale": 1, "orphaned": 0}
        assert frames(inc)[1]["sid"].to_list() == ["b"]
        assert checkpoints_of(store, "inc/crop") == 1  # work to do: no checkpoint


def test_lazy_counts_after_the_store_closed_record_at_the_next_open(
    store_factory: Callable[..., mx.MetadataStore],
) -> None:
    """PostgreSQL and ClickHouse fetch a lazy increment's rows up front: counting may come after ``with``."""
    g = build_graph()
    store = store_factory()
    if not store.supports_incremental or store._read_sessions_read_only:
        pytest.skip(f"{type(store).__name__}: lazy frames need the open store")
    with g.graph.use():
        with store:
            write_rows(store, g.raw, store.resolve_update(g.raw, samples=samples({"a": "v"})), None)
            write_rows(store, g.crop, store.resolve_update(g.crop), None)
            inc = store.resolve_update(g.crop, lazy=True)
        assert inc.is_empty  # counted with the store closed: kept for the next writable open
        assert checkpoints_of(store, "inc/crop") == 1
