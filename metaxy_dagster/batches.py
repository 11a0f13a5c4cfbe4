"""Checkpointed batches: how a metaxy asset body's ``increment.commit(rows)`` reaches the store.

A body may work through its increment in batches and commit each as it goes::

    for batch in increment.batches(10_000):
        increment.commit(compute(batch))

Each commit is checked and stamped like a returned frame and written in one atomic ``store.write``
tagged with the run id. Nothing else is kept between commits, so a retry (or a new run) after a
failure at batch k resolves again and gets exactly the samples no commit wrote. When the body
returns, the step reports totals over its commits and the feature's data version, computed once.
"""

from typing import Any

import polars as pl

from metaxy_dagster.errors import MetaxyOutputError
from metaxy_dagster.io_manager import MetaxyIncrement, MetaxyIOManager, MetaxyWriteReport


def bind_commits(io: MetaxyIOManager, increment: MetaxyIncrement, run_id: str | None, log: Any) -> None:
    """Make ``increment.commit`` write through ``io``, logging progress (done / total) per commit."""
    key = increment.feature.spec.key

    def commit(inc: MetaxyIncrement, todo: pl.DataFrame, rows: Any) -> int:
        written = io.commit_rows(inc.feature, inc, todo, rows, materialization_id=run_id)
        p = inc.progress
        share = f" ({100 * p.committed / p.total:.0f}%)" if p.total else ""
        log.info(
            f"{key}: batch {p.commits} committed: {p.committed}/{p.total} samples done{share}, "
            f"{written} row(s) written ({p.written} in total)"
        )
        return written

    increment.bind(commit)


def finish_increment(
    io: MetaxyIOManager,
    increment: MetaxyIncrement,
    rows: Any,
    run_id: str | None,
    filters: Any,
) -> MetaxyWriteReport:
    """The step's report once the body returned ``rows``.

    A body that committed may return None (everything is written) or rows for the batches it took
    after its last commit (committed as one more batch). A body that never committed returns all its
    rows, written in one go as before.
    """
    if not increment.committed:
        return io.write_rows(increment.feature, increment, rows, materialization_id=run_id, filters=filters)
    if rows is not None:
        if increment.pending().height == 0:
            raise MetaxyOutputError(
                f"The asset for feature '{increment.feature.spec.key}' committed its batches and then returned rows, "
                "but no batch taken from increment.batches(n) is left uncommitted for them. Return None after "
                "committing (or return the rows of the batches taken after the last commit)."
            )
        increment.commit(rows)
    return io.batch_report(increment.feature, increment, materialization_id=run_id, filters=filters)
