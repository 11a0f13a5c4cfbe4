"""Built-in asset checks of every metaxy asset, counted inside the store.

* ``metaxy_in_sync``: no new and no stale samples (what the next materialization would recompute);
  metadata carries the counts and how many stale samples each field changed in.
* ``metaxy_no_orphans``: no stored samples that are no longer expected.

They run after each materialization of the asset (in the same step) and on their own (``dagster
asset check``, a checks-only job, or the UI's "Execute checks"): the asset is built with
``can_subset=True``, so a checks-only run evaluates the checks without running the body.
A failed check is a WARN by default: a feature that is out of sync is work to do, not broken data.
"""

from collections.abc import Collection, Iterable
from typing import Any

import dagster as dg
import narwhals as nw

from metaxy_core import columns as C
from metaxy_core.feature import BaseFeature
from metaxy_core.increment import Increment

IN_SYNC = "metaxy_in_sync"
NO_ORPHANS = "metaxy_no_orphans"
BUILTIN_CHECKS = (IN_SYNC, NO_ORPHANS)

_DESCRIPTIONS = {
    IN_SYNC: "No new or stale samples: every expected sample is stored with its current provenance.",
    NO_ORPHANS: "No orphaned samples: every stored sample is still expected from upstream.",
}


def selected_builtin_checks(checks: bool | Iterable[str]) -> tuple[str, ...]:
    """The built-in checks an asset gets from its ``checks=`` option (True: all, False: none)."""
    if checks is True:
        return BUILTIN_CHECKS
    if checks is False:
        return ()
    names = tuple(checks)
    unknown = [n for n in names if n not in BUILTIN_CHECKS]
    if unknown:
        from metaxy_dagster.errors import MetaxyDefinitionError

        raise MetaxyDefinitionError(
            f"checks={names!r}: unknown built-in check(s) {unknown}; choose from {list(BUILTIN_CHECKS)}, "
            "or pass checks=True (all) / checks=False (none)."
        )
    return names


def builtin_check_specs(asset_key: dg.AssetKey, names: Collection[str]) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(name, asset=asset_key, description=_DESCRIPTIONS[name]) for name in names]


def changed_field_counts(increment: Increment) -> dict[str, int]:
    """How many stale samples each field changed in (one engine query over the stale part)."""
    stale = increment.stale
    if isinstance(stale, nw.LazyFrame):
        stale = stale.select(C.CHANGED_FIELDS).collect()
    column = stale.to_polars().get_column(C.CHANGED_FIELDS)
    exploded = column.explode().drop_nulls()
    return {str(k): int(v) for k, v in exploded.value_counts(sort=True).iter_rows()}


def check_results(
    feature: type[BaseFeature],
    asset_key: dg.AssetKey,
    increment: Increment,
    names: Collection[str],
    severity: dg.AssetCheckSeverity,
) -> list[dg.AssetCheckResult]:
    """Results of the selected built-in checks from one resolved increment."""
    counts = increment.counts()
    results = []
    if IN_SYNC in names:
        todo = counts["new"] + counts["stale"]
        meta: dict[str, Any] = {"new": counts["new"], "stale": counts["stale"]}
        if counts["stale"]:
            changed = changed_field_counts(increment)
            meta["changed fields"] = ", ".join(f"{k}:{v}" for k, v in changed.items()) or "-"
        results.append(
            dg.AssetCheckResult(
                asset_key=asset_key,
                check_name=IN_SYNC,
                passed=todo == 0,
                severity=severity,
                metadata=meta,
                description=(
                    f"'{feature.spec.key}' is in sync."
                    if todo == 0
                    else f"'{feature.spec.key}' has {counts['new']} new and {counts['stale']} stale sample(s) to compute."
                ),
            )
        )
    if NO_ORPHANS in names:
        results.append(
            dg.AssetCheckResult(
                asset_key=asset_key,
                check_name=NO_ORPHANS,
                passed=counts["orphaned"] == 0,
                severity=severity,
                metadata={"orphaned": counts["orphaned"]},
            )
        )
    return results
