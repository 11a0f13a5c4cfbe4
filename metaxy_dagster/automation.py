"""``metaxy_automation_condition()``: declarative automation that fires only when a feature has work.

Dagster's ``AutomationCondition.eager()`` requests an asset whenever a dependency has a *new
materialization*. A metaxy step whose increment is empty still records a materialization (with its
counts as metadata), so under ``eager()`` a no-op upstream run would cascade through the graph.

A metaxy asset's data version is an aggregate of its stored samples' data versions: it changes
exactly when the stored samples change. The condition below therefore fires when the asset

* is newly missing (never materialized, or wiped),
* has a new code version (a feature or field ``code_version`` bump), or
* has a dependency whose **data version changed** (not merely re-materialized), or
* has a dependency requested on the same tick: the whole downstream set of a real change runs in
  one run (steps with nothing to do return at once, keeping their data versions),

and, like ``eager()``, waits while a dependency is missing or in progress. It is the recommended
condition for metaxy assets::

    @mxd.metaxy_asset(VideoChunk, automation_condition=mxd.metaxy_automation_condition())
"""

import dagster as dg


def metaxy_automation_condition() -> dg.AutomationCondition:
    """Request the asset when it is missing, its code changed, or an upstream data version changed."""
    AC = dg.AutomationCondition
    has_work = (
        AC.newly_missing() | AC.code_version_changed() | AC.any_deps_match(AC.data_version_changed())
    ).since_last_handled() | AC.any_deps_match(AC.will_be_requested())
    return (
        AC.in_latest_time_window()
        & has_work.with_label("missing, code changed or upstream data changed")
        & ~AC.any_deps_missing()
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
    ).with_label("metaxy")
