"""Bookkeeping that lets a resolve look only at what changed since the feature was last in sync.

Every write stamps ``metaxy_updated_at`` on the rows it stores. When an unfiltered resolve finds a
feature fully in sync (an eager one at once, a lazy one when its ``counts()`` comes back all zero),
the store records a *checkpoint*: the time the resolve started and a fingerprint of everything
besides row data that decides the result (the resolve plan: code versions, carried columns, joins,
dependency filters; the stored provenance fields; the hash settings). A later resolve with the
same fingerprint only needs the target keys whose upstream rows or own row were written since that
time: every other key was in sync then and nothing it depends on has changed. Operations that change rows without stamping them (deletes, column type changes,
id columns added, rows imported from another store) record a *change event* for the feature first,
which voids every older checkpoint of the features reading it.

This is sound only where a changed upstream row names the target key it feeds: identity lineage
joined on upstream id columns, with upstreams whose writes never remove rows (no expansion). Other
plans always resolve in full.

Both tables are pruned in the engine (:func:`prune`): a resolve reads only the newest checkpoint
of its (feature, fingerprint), so the older ones go, as do all of a feature's fingerprints beyond
the :data:`KEEP_FINGERPRINTS` most recently in sync; an event goes once it is older than every
remaining checkpoint it could void (their start minus the lag, and at least :data:`EVENT_GRACE`
back). Recording a checkpoint prunes when :data:`PRUNE_SLACK` surplus rows have accumulated;
``compact`` always does.
"""

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import polars as pl

from metaxy_core.feature import BaseFeature
from metaxy_core.keys import FeatureKey
from metaxy_core.lineage import ResolvePlan, TableSchema

if TYPE_CHECKING:
    from metaxy_core.stores.base import MetadataStore

CHECKPOINTS = "metaxy_resolve_checkpoints"
"""System table: one row per in-sync resolve that examined changes (feature, fingerprint, since)."""
EVENTS = "metaxy_change_events"
"""System table: one row per operation that changed a feature's rows without stamping them."""


@dataclass(frozen=True)
class KeyRestriction:
    """Limit a resolve to some of the target's keys (for ``_resolve(..., restriction=...)``).

    ``since``: the keys whose upstream rows or stored row were written at or after this time.
    ``samples_only``: the keys of the given root samples (a partial root update: no orphans).
    ``nothing``: no key at all (nothing changed): the result is empty but typed like any other.
    ``keys``: the keys in this SELECT (of the key columns, in order).
    """

    since: datetime | None = None
    samples_only: bool = False
    nothing: bool = False
    keys: str | None = None


def eligible(cls: type[BaseFeature], plan: ResolvePlan) -> bool:
    """Whether every changed upstream row names the one target key it feeds (see module docs)."""
    if not plan.deps or plan.missing_required or plan.key_columns != plan.target_ids:
        return False
    graph = cls.graph
    for dep in plan.deps:
        if dep.lineage != "identity" or any(not isinstance(f, str) for f in dep.filters):
            return False
        upstream = graph.get_feature(dep.feature)
        if any(d.lineage.type == "expansion" for d in upstream.spec.deps):
            return False  # its writes replace whole parents, removing rows without a trace
        source_of = {out: src for src, out in dep.carried}
        ids = set(upstream.spec.id_columns)
        if any(source_of.get(k) not in ids for k in plan.key_columns):
            return False  # a joined column that may change value would orphan its old key silently
    return True


def fingerprint(store: "MetadataStore", plan: ResolvePlan, target: TableSchema | None) -> str:
    """What besides row data decides a resolve's result, as a digest."""
    stored_fields = target.struct_fields if target is not None else None
    parts = [
        type(store).__name__,
        store.hash_algorithm,
        str(store.hash_length),
        repr(plan),
        repr(sorted((stored_fields or {}).items())),
        repr(target is None),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def dependencies(plan: ResolvePlan) -> list[str]:
    """Features whose change events void a checkpoint of ``plan``'s feature."""
    return [str(plan.feature), *(str(dep.feature) for dep in plan.deps)]


def last_in_sync(store: "MetadataStore", plan: ResolvePlan, digest: str) -> datetime | None:
    """Start time of the latest checkpoint still valid for ``plan``, or None."""
    checkpoints = store._read_system(CHECKPOINTS)
    if checkpoints is None or checkpoints.height == 0:
        return None
    mine = checkpoints.filter((pl.col("feature") == str(plan.feature)) & (pl.col("fingerprint") == digest))
    if mine.height == 0:
        return None
    since = _utc(mine.get_column("since").max())
    if since is None:
        return None
    events = store._read_system(EVENTS)
    if events is not None and events.height:
        hit = events.filter(pl.col("feature").is_in(dependencies(plan)))
        latest = _utc(hit.get_column("at").max()) if hit.height else None
        if latest is not None and latest >= since - store.incremental_lag:
            return None
    return since - store.incremental_lag


def record_in_sync(store: "MetadataStore", plan: ResolvePlan, digest: str, started: datetime) -> None:
    if started < now() - EVENT_GRACE:
        return  # the change events that could void it may be pruned already (see EVENT_GRACE)
    store._append_system(
        CHECKPOINTS,
        pl.DataFrame(
            {"feature": [str(plan.feature)], "fingerprint": [digest], "since": [started]},
            schema={"feature": pl.String, "fingerprint": pl.String, "since": pl.Datetime("us", "UTC")},
        ),
    )
    prune(store, force=False)


def prune(store: "MetadataStore", *, force: bool) -> None:
    """Drop the checkpoints and change events no resolve can use any more (see :data:`KEEP_FINGERPRINTS`).

    Without ``force`` only when the checkpoints table holds :data:`PRUNE_SLACK` rows more than a
    prune keeps: deleting rewrites table storage, so it runs once per that many in-sync resolves.
    """
    checkpoints = store._read_system(CHECKPOINTS)
    groups = None
    if checkpoints is not None and checkpoints.height:
        groups = checkpoints.group_by("feature", "fingerprint").agg(pl.col("since").max())
        if not force:
            per_feature = (
                groups.group_by("feature").len().get_column("len").clip(upper_bound=KEEP_FINGERPRINTS)
            )
            if checkpoints.height - int(per_feature.sum()) < PRUNE_SLACK:
                return
    elif not force:
        return
    # An event can void a checkpoint only if it is no older than the checkpoint's start minus the lag.
    # Every (feature, fingerprint) pair's newest checkpoint (the one a resolve reads) is at least as
    # new as the oldest of them; a checkpoint recorded later started at most EVENT_GRACE ago.
    horizon = now() - EVENT_GRACE
    oldest = _utc(groups.get_column("since").min()) if groups is not None else None
    events_before = (horizon if oldest is None else min(oldest, horizon)) - store.incremental_lag
    store._prune_bookkeeping(KEEP_FINGERPRINTS, events_before)


def doomed_checkpoints_sql(table: str, keep: int) -> str:
    """``feature, fingerprint, since`` of the checkpoint rows a prune removes from ``table``.

    A resolve reads only the newest checkpoint of its (feature, fingerprint): older ones go, and so
    do all of a feature's fingerprints beyond the ``keep`` most recently in sync. The newest row
    of a kept pair is never selected (not even a duplicate of it), so deleting the selected rows
    is safe to repeat and to interrupt: what it keeps does not depend on what it already removed.
    """
    newest = (
        'SELECT "feature", "fingerprint", "since", '
        'max("since") OVER (PARTITION BY "feature", "fingerprint") AS "latest" '
        f"FROM {table}"
    )
    ranked = (
        'SELECT "feature", "fingerprint", "since", "latest", '
        'dense_rank() OVER (PARTITION BY "feature" ORDER BY "latest" DESC, "fingerprint") AS "rank" '
        f"FROM ({newest}) AS n"
    )
    return (
        f'SELECT "feature", "fingerprint", "since" FROM ({ranked}) AS r '
        f'WHERE "since" < "latest" OR "rank" > {int(keep)}'
    )


def prune_statements(checkpoints: str | None, events: str | None, keep: int, events_before: str) -> list[str]:
    """The deletes of a prune for engines with ``DELETE ... USING`` (DuckDB, PostgreSQL), one transaction.

    ``checkpoints`` / ``events``: the tables as the engine names them (None: not created yet);
    ``events_before``: a timestamp literal.
    """
    statements = []
    if checkpoints is not None:
        match = " AND ".join(f't."{c}" = d."{c}"' for c in ("feature", "fingerprint", "since"))
        doomed = doomed_checkpoints_sql(checkpoints, keep)
        statements.append(f"DELETE FROM {checkpoints} AS t USING ({doomed}) AS d WHERE {match}")
    if events is not None:
        statements.append(f'DELETE FROM {events} WHERE "at" < {events_before}')
    return statements


def record_change(store: "MetadataStore", key: FeatureKey, what: str) -> None:
    """Note that ``key``'s rows change without fresh ``metaxy_updated_at`` stamps (before the change)."""
    store._append_system(
        EVENTS,
        pl.DataFrame(
            {"feature": [str(key)], "at": [now()], "operation": [what]},
            schema={"feature": pl.String, "at": pl.Datetime("us", "UTC"), "operation": pl.String},
        ),
    )


def now() -> datetime:
    return datetime.now(UTC)


def _utc(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


DEFAULT_LAG = timedelta(0)
KEEP_FINGERPRINTS = 8
"""Fingerprints a prune keeps per feature (the most recently in sync): switching code versions
back and forth among that many stays incremental."""
PRUNE_SLACK = 64
"""Checkpoint rows beyond what a prune keeps before one runs on recording."""
EVENT_GRACE = timedelta(days=1)
"""How long before its recording a checkpoint may have started (a read-only session's checkpoint
waits for the next writable open; a lazy increment may be counted later): change events younger
than this (plus the lag) are always kept."""
