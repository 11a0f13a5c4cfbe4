"""Processing-cost prediction: what a full run will recompute, feature by feature, and how long it takes.

For every feature, ``now`` is what ``resolve_update`` reports at this moment, and ``predicted`` is
what it will report when its turn comes in a run where every upstream feature is first recomputed
and written. The prediction follows changes down the graph at sample level:

* each feature's *changes* are its new and stale samples, each with the fields that change (a stale
  sample's ``metaxy_changed_fields``; every field of a new sample);
* a downstream feature is affected only through the fields it reads (field-level deps), on the
  samples its lineage maps them to: identity = the same ids, expansion = a parent's stored
  children, aggregation = the member's group;
* an affected sample is stale if the feature stores it, else new; orphans are reported by a run,
  not deleted, so they do not travel downstream.

Counts come from the store's engine (``resolve_update(lazy=True).counts()``); the changed samples
themselves are fetched by key, so the work is bounded by the number of changed samples, never by
the size of the tables.

The prediction is an upper bound where a feature overrides its data version (early cut-off): a
recomputed sample whose output did not change stops the propagation there. Children of *new*
parents of an expansion feature do not exist before it runs, so what they cause further down is
counted only once the expansion has run (the feature's ``uncounted_from`` and ``notes`` say so).

>>> import metaxy_core as mx
>>> import polars as pl
>>> with mx.FeatureGraph().use():
...     class Video(mx.BaseFeature, spec=mx.FeatureSpec(key="video", id_columns=["id"], fields=["audio", "frames"])):
...         id: str
...     class Stt(mx.BaseFeature, spec=mx.FeatureSpec(key="stt", id_columns=["id"], deps=[Video], fields=["audio"])):
...         id: str
...     store = mx.InMemoryMetadataStore()
...     samples = pl.DataFrame({"id": ["a", "b"], "metaxy_provenance_by_field": [{"audio": "1", "frames": "1"}] * 2})
...     store.write(Video, store.resolve_update(Video, samples=samples).new)
...     store.write(Stt, store.resolve_update(Stt).new)
...     edited = samples.with_columns(pl.when(pl.col("id") == "a").then(pl.struct(audio=pl.lit("2"), frames=pl.lit("1")))
...                                   .otherwise(pl.col("metaxy_provenance_by_field")).alias("metaxy_provenance_by_field"))
...     [(f.key, f.now.stale, f.predicted.stale) for f in mx.plan(store, samples={Video: edited}).features]
2
2
[('video', 1, 1), ('stt', 0, 1)]
"""

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import narwhals as nw
import polars as pl

from metaxy_core import columns as C
from metaxy_core.errors import MetaxyError
from metaxy_core.feature import BaseFeature
from metaxy_core.graph import FeatureGraph
from metaxy_core.keys import FeatureKey
from metaxy_core.lineage import DepPlan, ResolvePlan, TableSchema, build_plan
from metaxy_core.runs import seconds_per_sample

if TYPE_CHECKING:
    from metaxy_core.stores.base import MetadataStore

CHANGED = "__metaxy_plan_changed"
"""Helper column: the fields of a sample that change (a list of field keys)."""
IS_NEW = "__metaxy_plan_new"
"""Helper column: the sample is not stored yet."""
UPSTREAM_NEW = "__metaxy_plan_upstream_new"
"""Helper column: the sample is reached from a sample that is new upstream."""
MAX_LOOKUP_CHARS = 12_000
"""Id values per lookup query, by their text length: each lookup is one ``IN (...)`` filter, and
filters are capped in size (see :mod:`metaxy_core.filters`)."""
MAX_LOOKUP_QUERIES = 1
"""Beyond this many lookup queries, one read of the needed columns is faster than parsing more ``IN`` lists."""
UPPER_BOUND_NOTE = (
    "Predictions are upper bounds where a feature overrides its data version (early cut-off): a "
    "recomputed sample whose output did not change stops there."
)


@dataclass(frozen=True)
class Counts:
    """New, stale and orphaned samples; ``None`` where unknown (a root feature without samples)."""

    new: int | None
    stale: int | None
    orphaned: int | None

    @property
    def to_process(self) -> int:
        """New + stale: the samples a run recomputes (unknown parts count as 0)."""
        return (self.new or 0) + (self.stale or 0)


@dataclass(frozen=True)
class FeaturePlan:
    """One feature's row of the plan."""

    key: str
    now: Counts
    """What ``resolve_update`` reports now."""
    predicted: Counts
    """What ``resolve_update`` will report at this feature's turn, once every upstream is rerun."""
    changed_fields: dict[str, int]
    """Field key -> predicted stale samples in which that field changes."""
    seconds_per_sample: float | None
    """Measured from recorded materializations; ``None`` without records."""
    estimated_seconds: float | None
    """Predicted new + stale samples x seconds per sample; ``None`` without records."""
    notes: tuple[str, ...] = ()
    """Why a count may be off: a root without samples, changes that cannot be followed yet."""
    uncounted_from: tuple[str, ...] = ()
    """Upstream features with changed samples the prediction cannot follow to this feature: children
    of new parents of an expansion (they exist only once it has run), or new samples lacking the
    values this feature joins on. Their effect is not in ``predicted``, which may be higher."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["notes"] = list(self.notes)
        data["uncounted_from"] = list(self.uncounted_from)
        for name in ("seconds_per_sample", "estimated_seconds"):
            if data[name] is not None:
                data[name] = round(data[name], 6)
        return data


@dataclass(frozen=True)
class Plan:
    """The prediction for a whole graph, in topological order (see :func:`plan`)."""

    features: list[FeaturePlan]
    store: str = ""

    @property
    def total_estimated_seconds(self) -> float | None:
        """Sum over features with an estimate; ``None`` when no feature has one."""
        known = [f.estimated_seconds for f in self.features if f.estimated_seconds is not None]
        return sum(known) if known else None

    @property
    def unmeasured(self) -> list[str]:
        """Features that will recompute samples but have no recorded materializations."""
        return [f.key for f in self.features if f.predicted.to_process and f.estimated_seconds is None]

    @property
    def to_run(self) -> list[str]:
        """Keys of the features with predicted new or stale samples."""
        return [f.key for f in self.features if f.predicted.to_process]

    @property
    def may_run(self) -> list[str]:
        """:attr:`to_run` plus the features whose prediction leaves out children of new expansion parents."""
        return [f.key for f in self.features if f.predicted.to_process or f.uncounted_from]

    def __getitem__(self, key: Any) -> FeaturePlan:
        wanted = str(key.spec.key if isinstance(key, type) else FeatureKey(key))
        for f in self.features:
            if f.key == wanted:
                return f
        raise KeyError(f"'{wanted}' is not in the plan; it has {[f.key for f in self.features]}.")

    def __iter__(self) -> Iterator[FeaturePlan]:
        return iter(self.features)

    def to_dict(self) -> dict[str, Any]:
        total = self.total_estimated_seconds
        return {
            "features": [f.to_dict() for f in self.features],
            "total_estimated_seconds": None if total is None else round(total, 6),
            "note": UPPER_BOUND_NOTE,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_markdown(self) -> str:
        """A markdown table (for Dagster metadata and run logs)."""
        lines = [
            "| Feature | Now new | Now stale | Predicted new | Predicted stale | Orphaned | Changed fields | Est. |",
            "|---|---:|---:|---:|---:|---:|---|---:|",
        ]
        for f in self.features:
            changed = ", ".join(f"{k}: {v}" for k, v in f.changed_fields.items()) or "-"
            lines.append(
                f"| {f.key} | {_n(f.now.new)} | {_n(f.now.stale)} | {_n(f.predicted.new)} | "
                f"{_n(f.predicted.stale)} | {_n(f.predicted.orphaned)} | {changed} | "
                f"{format_seconds(f.estimated_seconds)} |"
            )
        lines.append(f"| **total** | | | | | | | **{format_seconds(self.total_estimated_seconds)}** |")
        lines += ["", f"_{UPPER_BOUND_NOTE}_"]
        return "\n".join(lines)

    def to_mermaid(self, graph: FeatureGraph | None = None) -> str:
        """A mermaid flowchart: every feature with its predicted counts, features to rerun highlighted."""
        graph = graph or FeatureGraph.get_active()
        ids = {f.key: f"f{i}" for i, f in enumerate(self.features)}
        lines = ["flowchart TD"]
        for f in self.features:
            label = f"{f.key}<br/>new {_n(f.predicted.new)} · stale {_n(f.predicted.stale)}"
            if f.estimated_seconds is not None and f.predicted.to_process:
                label += f"<br/>~{format_seconds(f.estimated_seconds)}"
            lines.append(f'    {ids[f.key]}["{label}"]')
        for f in self.features:
            for dep in graph.get_spec(FeatureKey(f.key)).deps:
                if str(dep.feature) in ids:
                    lines.append(f"    {ids[str(dep.feature)]} --> {ids[f.key]}")
        lines.append("    classDef rerun fill:#fde68a,stroke:#b45309")
        rerun = [ids[k] for k in self.to_run]
        if rerun:
            lines.append(f"    class {','.join(rerun)} rerun")
        return "\n".join(lines) + "\n"


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def plan(
    store: "MetadataStore",
    *,
    graph: FeatureGraph | None = None,
    samples: Mapping[Any, Any] | None = None,
    features: Sequence[Any] | None = None,
) -> Plan:
    """Predict, for every feature, what a run that recomputes everything upstream first will do.

    ``samples``: root feature (class or key) -> its complete samples, as for
    ``resolve_update(samples=...)``. A root without samples is compared by feature version only
    (rows written under an older code version are stale in every field), and what changed in its
    data is unknown. ``features``: report only these (the whole graph is still followed).
    """
    graph = graph or FeatureGraph.get_active()
    given = {graph.get_feature(k).spec.key: v for k, v in (samples or {}).items()}
    wanted = {graph.get_feature(f).spec.key for f in features} if features else None
    changes: dict[FeatureKey, _Changes] = {}
    result: list[FeaturePlan] = []
    with store:
        rates = seconds_per_sample(store)
        for key in graph.topological_order():
            cls = graph.get_feature(key)
            predicted, changes[key] = _predict(store, cls, given.get(key), key in given, changes)
            if wanted is not None and key not in wanted:
                continue
            result.append(_feature_plan(str(key), predicted, rates.get(str(key))))
    return Plan(result, store=type(store).__name__)


def _feature_plan(key: str, p: "_Prediction", rate: float | None) -> FeaturePlan:
    todo = p.predicted.to_process
    estimate = None if rate is None else rate * todo
    return FeaturePlan(
        key=key,
        now=p.now,
        predicted=p.predicted,
        changed_fields=p.changed_fields,
        seconds_per_sample=rate,
        estimated_seconds=estimate,
        notes=p.notes,
        uncounted_from=p.uncounted_from,
    )


@dataclass
class _Changes:
    """A feature's rows that change in the run, at its own id granularity.

    ``rows``: the feature's id columns and the other columns downstream joins may use, plus
    :data:`CHANGED` (fields) and :data:`IS_NEW`. ``incomplete``: some changed samples are not
    known yet (children of new expansion parents), so downstream counts may be low.
    """

    rows: pl.DataFrame
    incomplete: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Prediction:
    now: Counts
    predicted: Counts
    changed_fields: dict[str, int]
    notes: tuple[str, ...]
    uncounted_from: tuple[str, ...]


def _predict(
    store: "MetadataStore",
    cls: type[BaseFeature],
    samples: Any,
    has_samples: bool,
    upstream: Mapping[FeatureKey, _Changes],
) -> tuple[_Prediction, _Changes]:
    rplan = _resolve_plan(store, cls)
    keys = list(rplan.key_columns)
    fields = sorted(str(f) for f in cls.spec.field_keys)
    stored = store.has_feature(cls)
    notes: list[str] = []

    # -- now: the increment as it stands, counted in the engine; its rows fetched once, by part
    if not cls.spec.deps and not has_samples:
        outdated = (
            _collect(store.read(cls, filters=nw.col(C.FEATURE_VERSION) != cls.feature_version(), lazy=True))
            if stored
            else pl.DataFrame()
        )
        now = Counts(new=None, stale=outdated.height, orphaned=None)
        now_new = _empty_like(keys)
        now_stale = (
            outdated.select(_user_columns(outdated)).with_columns(pl.lit(fields).alias(CHANGED))
            if stored
            else _empty_like(keys).with_columns(pl.lit([], dtype=pl.List(pl.String)).alias(CHANGED))
        )
        orphans = _empty_like(keys)
        notes.append("root without samples: only code-version changes are known (pass samples)")
    else:
        inc = store.resolve_update(cls, samples=samples if not cls.spec.deps else None, lazy=True)
        counts = inc.counts()
        now = Counts(new=counts["new"], stale=counts["stale"], orphaned=counts["orphaned"])
        # each part is one more query in the engine: fetch only the parts that have rows
        now_new = _collect(inc.new) if counts["new"] else _empty_like(keys)
        now_new = now_new.select(_user_columns(now_new))
        now_stale = (
            _collect(inc.stale).rename({C.CHANGED_FIELDS: CHANGED})
            if counts["stale"]
            else _empty_like(keys).with_columns(pl.lit([], dtype=pl.List(pl.String)).alias(CHANGED))
        )
        now_stale = now_stale.select(*_user_columns(now_stale), CHANGED)
        orphans = _collect(inc.orphaned).select(keys) if counts["orphaned"] else _empty_like(keys)

    # -- what upstream changes do to this feature, per increment key
    found = [
        now_stale.select(*keys, CHANGED, pl.lit(False).alias(IS_NEW), pl.lit(False).alias(UPSTREAM_NEW)),
        now_new.select(
            *keys,
            pl.lit(fields).alias(CHANGED),
            pl.lit(True).alias(IS_NEW),
            pl.lit(False).alias(UPSTREAM_NEW),
        ),
    ]
    incomplete: list[str] = []
    for dep in rplan.deps:
        changes = upstream.get(dep.feature)
        if changes is None:
            continue
        if changes.incomplete:
            incomplete += changes.incomplete
        mapped, lost = _through_dep(store, cls, rplan, dep, changes.rows, keys)
        if lost:
            incomplete.append(str(dep.feature))
        if mapped is not None and mapped.height:
            found.append(mapped.with_columns(pl.lit(None, dtype=pl.Boolean).alias(IS_NEW)))
    candidates = (
        _concat(found, keys)
        .group_by(keys)
        .agg(
            pl.col(CHANGED).list.explode(keep_nulls=False, empty_as_null=False).unique().sort(),
            pl.col(IS_NEW).max(),
            pl.col(UPSTREAM_NEW).max(),
        )
    )
    # a sample reached only through fields this feature does not read does not change, unless it
    # is new upstream: then the join may expect it for the first time
    candidates = candidates.filter((pl.col(CHANGED).list.len() > 0) | pl.col(UPSTREAM_NEW))

    # -- new or stale: whether the feature stores the sample now
    candidates = candidates.with_columns(pl.col(IS_NEW).is_null().alias("__derived"))
    undecided = candidates.filter(pl.col(IS_NEW).is_null())
    present = _lookup(store, cls, undecided.select(keys), keys, keys) if stored else _empty_like(keys)
    present = _align_keys(present.select(keys).unique(), candidates, keys).with_columns(
        pl.lit(True).alias("__present")
    )
    candidates = (
        candidates.join(present, on=keys, how="left", nulls_equal=True)
        .with_columns(
            pl.when(pl.col(IS_NEW).is_null())
            .then(pl.col("__present").is_null())
            .otherwise(pl.col(IS_NEW))
            .alias(IS_NEW)
        )
        .drop("__present")
    )
    candidates = (
        _expected_by_every_dep(store, cls, rplan, candidates, upstream)
        .drop("__derived", UPSTREAM_NEW)
        # every field of a new sample is new; a stored one reached by nothing it reads is unchanged
        .with_columns(pl.when(pl.col(IS_NEW)).then(pl.lit(fields)).otherwise(pl.col(CHANGED)).alias(CHANGED))
        .filter(pl.col(CHANGED).list.len() > 0)
    )
    stale = candidates.filter(~pl.col(IS_NEW))
    new = candidates.filter(pl.col(IS_NEW))
    still_orphaned = _align_keys(orphans, candidates, keys).join(
        candidates.select(keys), on=keys, how="anti", nulls_equal=True
    )
    changed_fields = (
        {
            str(r[CHANGED]): int(r["count"])
            for r in stale.select(pl.col(CHANGED).explode())
            .get_column(CHANGED)
            .value_counts(sort=True)
            .iter_rows(named=True)
        }
        if stale.height
        else {}
    )
    changed_fields = dict(sorted(changed_fields.items()))
    predicted = Counts(
        new=new.height if now.new is not None or new.height else now.new,
        stale=stale.height,
        orphaned=None if now.orphaned is None else still_orphaned.height,
    )
    if incomplete:
        notes.append(
            "some new samples of "
            + ", ".join(sorted(set(incomplete)))
            + " are known only once it runs (e.g. children of new expansion parents); "
            "their effect here is not counted"
        )

    # -- this feature's changed rows at its own id granularity, for downstream features
    rows, more_incomplete = _own_rows(store, cls, rplan, candidates, now_new, stored)
    return (
        _Prediction(now, predicted, changed_fields, tuple(notes), tuple(sorted(set(incomplete)))),
        _Changes(rows, sorted(set(incomplete + more_incomplete))),
    )


def _resolve_plan(store: "MetadataStore", cls: type[BaseFeature]) -> ResolvePlan:
    """The feature's resolve plan, with upstreams that are not stored yet taken as declared.

    Their rows will exist at this feature's turn; the store's own plan leaves them out.
    """
    graph = cls.graph

    def schema_of(key: FeatureKey) -> TableSchema | None:
        stored = store._schema(key)
        if stored is not None:
            return stored
        upstream = graph.get_feature(key)
        columns = tuple(dict.fromkeys([*upstream.spec.id_columns, *upstream.model_fields]))
        fields = tuple(sorted(str(f) for f in upstream.spec.field_keys))
        return TableSchema(columns=columns, struct_fields={C.DATA_VERSION_BY_FIELD: fields})

    try:
        return build_plan(graph, cls.spec.key, schema_of)
    except MetaxyError:
        # declared columns do not cover the joins (columns known only once written): stored ones only
        return build_plan(graph, cls.spec.key, store._schema)


def _through_dep(
    store: "MetadataStore",
    cls: type[BaseFeature],
    rplan: ResolvePlan,
    dep: DepPlan,
    rows: pl.DataFrame,
    keys: list[str],
) -> tuple[pl.DataFrame | None, bool]:
    """Upstream changed rows mapped to this feature's increment keys, with this feature's changed fields.

    The flag is True when some changed rows could not be followed: they lack the values this
    feature joins on (new rows of a column the upstream computes itself).
    """
    reads = {fp.key: [p.field for p in fp.parents if p.dep_index == dep.index] for fp in rplan.fields}
    exprs = [
        pl.when(pl.col(CHANGED).list.eval(pl.element().is_in(parents)).list.any()).then(pl.lit(f))
        for f, parents in reads.items()
        if parents
    ]
    if rows.height == 0:
        return None, False
    if not exprs:  # no field reads this dependency: only its new samples matter (they join)
        exprs = [pl.lit(None, dtype=pl.String)]
    upstream_name = {out: up for up, out in dep.carried}
    join_on = list(dep.join_on)
    if any(upstream_name.get(c) not in rows.columns for c in join_on):
        return None, True
    mapped = rows.select(
        *(pl.col(upstream_name[c]).alias(c) for c in join_on),
        pl.concat_list(exprs).list.drop_nulls().alias(CHANGED),
        pl.col(IS_NEW).fill_null(False).alias(UPSTREAM_NEW),
    )
    followed = mapped.drop_nulls(join_on)
    lost = followed.height < mapped.height
    if followed.height == 0:
        return None, lost
    if set(join_on) == set(keys):
        return followed.select(*keys, CHANGED, UPSTREAM_NEW), lost
    # the dependency joins on other columns than this feature's keys (aggregation by a column that
    # is not the id): find the stored samples those values reach
    if not store.has_feature(cls):
        return None, lost
    reached = _lookup(store, cls, followed.select(join_on), join_on, [*keys, *join_on])
    reached = reached.join(followed, on=join_on, how="inner", nulls_equal=True)
    return reached.select(*keys, CHANGED, UPSTREAM_NEW), lost


def _expected_by_every_dep(
    store: "MetadataStore",
    cls: type[BaseFeature],
    rplan: ResolvePlan,
    candidates: pl.DataFrame,
    upstream: Mapping[FeatureKey, _Changes],
) -> pl.DataFrame:
    """Drop new samples reached through one dependency that another required one will not have.

    The expected samples are an inner join of the required dependencies: a sample new upstream in
    one of them is expected only if every other one stores it or gains it in the run.
    """
    required = [d for d in rplan.deps if not d.optional]
    keys = list(rplan.key_columns)
    derived = pl.col("__derived") & pl.col(IS_NEW)
    # all deps optional: any one of them makes a sample expected; a single dep: it has the sample
    if not required or len(rplan.deps) < 2 or candidates.filter(derived).height == 0:
        return candidates
    kept = candidates.filter(derived).select(keys)
    for dep in required:
        if set(dep.join_on) != set(keys):
            continue  # an aggregation by other columns: a group exists as soon as one member does
        upstream_name = {out: up for up, out in dep.carried}
        if any(c not in upstream_name for c in keys):
            continue
        wanted = kept.select(pl.col(c).alias(upstream_name[c]) for c in keys)
        up_cls = cls.graph.get_feature(dep.feature)
        found = [wanted.head(0)]
        if store.has_feature(up_cls):
            found.append(_lookup(store, up_cls, wanted, list(wanted.columns), list(wanted.columns)))
        changes = upstream.get(dep.feature)
        if changes is not None and all(c in changes.rows.columns for c in wanted.columns):
            found.append(changes.rows.filter(pl.col(IS_NEW)).select(wanted.columns))
        there = _concat(found, list(wanted.columns)).select(pl.col(upstream_name[c]).alias(c) for c in keys)
        kept = kept.join(_align_keys(there.unique(), kept, keys), on=keys, how="semi", nulls_equal=True)
    return candidates.filter(~derived).vstack(
        candidates.filter(derived).join(kept, on=keys, how="semi", nulls_equal=True)
    )


def _own_rows(
    store: "MetadataStore",
    cls: type[BaseFeature],
    rplan: ResolvePlan,
    candidates: pl.DataFrame,
    now_new: pl.DataFrame,
    stored: bool,
) -> tuple[pl.DataFrame, list[str]]:
    """The changed samples at the feature's own id granularity, with their stored columns."""
    keys = list(rplan.key_columns)
    ids = list(cls.spec.id_columns)
    incomplete: list[str] = []
    parts: list[pl.DataFrame] = []
    existing = candidates.filter(~pl.col(IS_NEW))
    if stored and existing.height:
        # for an expansion feature, every stored child of a changed parent
        rows = _lookup(store, cls, existing.select(keys), keys, None)
        parts.append(_align_keys(rows, existing, keys).join(existing, on=keys, how="inner", nulls_equal=True))
    fresh = candidates.filter(pl.col(IS_NEW))
    if fresh.height:
        if keys != ids and not set(ids) <= set(keys):
            # an expansion's children of new parents are only known once it has run
            incomplete.append(str(cls.spec.key))
        else:
            extra = (
                now_new.join(fresh.select(keys), on=keys, how="semi", nulls_equal=True)
                if now_new.height
                else None
            )
            if extra is not None and extra.height:
                fresh = fresh.join(_align_keys(extra, fresh, keys), on=keys, how="left", nulls_equal=True)
            parts.append(fresh)
    if not parts:
        return _empty_like(ids).with_columns(
            pl.lit([], dtype=pl.List(pl.String)).alias(CHANGED), pl.lit(True).alias(IS_NEW)
        ), incomplete
    return pl.concat(parts, how="diagonal_relaxed"), incomplete


def _lookup(
    store: "MetadataStore",
    cls: type[BaseFeature],
    wanted: pl.DataFrame,
    on: list[str],
    columns: list[str] | None,
) -> pl.DataFrame:
    """Current stored rows of ``cls`` whose ``on`` values are among ``wanted``'s (user columns only).

    A few changed samples: one ``IN`` filter per column and chunk of values, so each query touches
    only matching rows in the engine; the exact multi-column match is made on the (small) result.
    Many: one read of just the needed columns, matched in polars, since parsing and checking huge
    ``IN`` lists costs more than reading the columns.
    """
    wanted = wanted.select(on).unique()
    if wanted.height == 0:
        return wanted
    chunks = list(_chunks(wanted))
    if len(chunks) > MAX_LOOKUP_QUERIES:
        frame = store.read(cls, lazy=True)
        names = list(frame.columns)
        keep = [c for c in names if not C.is_system(c)] if columns is None else list(dict.fromkeys(columns))
        found = _collect(frame.select(keep))
        return _align_keys(found, wanted, on).join(wanted, on=on, how="semi", nulls_equal=True)
    parts = []
    for chunk in chunks:
        filters = [nw.col(c).is_in(chunk.get_column(c).unique().to_list()) for c in on]
        frame = _collect(store.read(cls, filters=filters, lazy=True))
        frame = frame.select(_user_columns(frame) if columns is None else list(dict.fromkeys(columns)))
        parts.append(_align_keys(frame, chunk, on).join(chunk, on=on, how="semi", nulls_equal=True))
    return pl.concat(parts, how="vertical_relaxed")


def _chunks(frame: pl.DataFrame) -> Iterator[pl.DataFrame]:
    size = frame.select(
        pl.sum_horizontal(pl.col(c).cast(pl.String).str.len_bytes().fill_null(0) + 4 for c in frame.columns)
    ).to_series()
    budget = size.cum_sum() // MAX_LOOKUP_CHARS
    for _, part in frame.with_columns(budget.alias("__chunk")).group_by("__chunk", maintain_order=True):
        yield part.drop("__chunk")


def _concat(frames: list[pl.DataFrame], keys: list[str]) -> pl.DataFrame:
    """Concatenate, typing the key columns like the first non-empty frame (empty frames carry no types)."""
    filled = [f for f in frames if f.height]
    if not filled:
        return frames[0]
    return pl.concat([_align_keys(f, filled[0], keys) for f in filled], how="diagonal_relaxed")


def _collect(frame: Any) -> pl.DataFrame:
    if isinstance(frame, nw.LazyFrame):
        frame = frame.collect()
    if isinstance(frame, nw.DataFrame):
        return frame.to_polars()
    return frame


def _user_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if not C.is_system(c) and not c.startswith("__metaxy")]


def _empty_like(keys: list[str]) -> pl.DataFrame:
    return pl.DataFrame(schema={k: pl.String for k in keys})


def _align_keys(frame: pl.DataFrame, like: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Cast ``frame``'s key columns to ``like``'s types so joins and concatenations line up."""
    casts = [
        pl.col(k).cast(like.schema[k])
        for k in keys
        if k in frame.columns
        and k in like.columns
        and frame.schema[k] != like.schema[k]
        and like.schema[k] != pl.Null
    ]
    return frame.with_columns(casts) if casts else frame
