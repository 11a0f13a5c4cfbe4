"""``metaxy plan``: what a full run will recompute, per feature, and how long it will take."""

import importlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from cyclopts import Parameter

from metaxy_core.cli._app import CTX, CliExit, app, emit, progress, stdout
from metaxy_core.cli.metadata import _read_samples, _split_samples

if TYPE_CHECKING:
    from metaxy_core.planning import Plan

_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@app.command
def plan(
    features: Annotated[tuple[str, ...], Parameter(name="FEATURES")] = (),
    *,
    format: Annotated[
        Literal["terminal", "json", "mermaid"], Parameter(name=["--format", "-f"])
    ] = "terminal",
    samples: Annotated[tuple[str, ...], Parameter(name="--samples")] = (),
) -> int:
    """Predict what a run that recomputes every upstream first will do: samples per feature and time.

    For every feature: "now" is what resolve_update reports now, "predicted" what it will report at
    the feature's turn once everything upstream has been recomputed and written (following
    field-level deps and lineage). Estimates are predicted samples x seconds per sample measured
    from recorded materializations. Predictions are upper bounds where a feature overrides its data
    version (early cut-off).

    Parameters
    ----------
    features
        Feature keys to show (default: all); the whole graph is followed either way.
    format
        terminal (a table), json or mermaid (a flowchart with the counts).
    samples
        KEY=FILE: the complete samples of root feature KEY (Parquet, CSV, JSON or NDJSON with the
        id columns and metaxy_provenance_by_field), or KEY=module:function returning them.
        Repeatable. Without it a root shows only code-version changes.
    """
    from metaxy_core.planning import plan as make_plan

    graph = CTX.graph()
    for key in features:
        graph.get_feature(key)  # unknown keys fail here, naming the known ones
    sources = [_split_samples(item) for item in samples]
    for key, _ in sources:
        if graph.get_feature(key).spec.deps:
            raise CliExit(1, f"--samples {key}=...: '{key}' is not a root feature; only roots take samples.")
    given = {key: _load_samples(key, source) for key, source in sources}
    store = CTX.store()
    with progress("Planning", 1):
        result = make_plan(store, graph=graph, samples=given, features=list(features) or None)
    if format == "json":
        emit(result.to_json())
    elif format == "mermaid":
        emit(result.to_mermaid(graph))
    else:
        _print_table(result)
    return 0


def _load_samples(key: str, source: str) -> Any:
    """A samples file, or ``module:function`` called with no arguments (e.g. the pipeline's own lister)."""
    if Path(source).is_file() or not _CALLABLE.match(source):
        return _read_samples(key, source)
    module_name, _, attr = source.partition(":")
    try:
        provider = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise CliExit(
            1, f"--samples {key}={source}: cannot load {attr!r} from module {module_name!r} ({exc})."
        ) from exc
    if not callable(provider):
        raise CliExit(
            1, f"--samples {key}={source}: {source} is not callable; name a function returning samples."
        )
    frame = provider()
    if frame is None:
        raise CliExit(1, f"--samples {key}={source}: the function returned None instead of a dataframe.")
    return frame


def _print_table(result: "Plan") -> None:
    from rich.markup import escape
    from rich.table import Table

    from metaxy_core.planning import UPPER_BOUND_NOTE, format_seconds

    table = Table(
        title=f"Plan (store '{CTX.store_label}'): what a full run will recompute", title_justify="left"
    )
    for name, justify in [
        ("Feature", "left"),
        ("Now\nnew/stale/orph.", "right"),
        ("Predicted\nnew/stale/orph.", "right"),
        ("Changed fields\n(stale samples)", "left"),
        ("Seconds\nper sample", "right"),
        ("Estimate", "right"),
    ]:
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]

    def n(value: int | None) -> str:
        return "-" if value is None else str(value)

    for f in result.features:
        busy = f.predicted.to_process > 0
        style = "yellow" if busy else "green"
        rate = "-" if f.seconds_per_sample is None else f"{f.seconds_per_sample:.3g}"
        table.add_row(
            f"[{style}]{escape(f.key)}[/]",
            f"{n(f.now.new)} / {n(f.now.stale)} / {n(f.now.orphaned)}",
            f"[{style}]{n(f.predicted.new)} / {n(f.predicted.stale)} / {n(f.predicted.orphaned)}[/]",
            escape(", ".join(f"{k} ({v})" for k, v in f.changed_fields.items()) or "-"),
            rate,
            format_seconds(f.estimated_seconds) if busy else "-",
        )
    table.add_section()
    total = result.total_estimated_seconds
    table.add_row("[bold]total[/]", "", "", "", "", f"[bold]{format_seconds(total)}[/]")
    out = stdout()
    out.print(table)
    to_run = result.to_run
    out.print(f"{len(to_run)} of {len(result.features)} feature(s) will recompute samples.")
    unmeasured = result.unmeasured
    if unmeasured:
        out.print(
            f"No recorded materializations for {', '.join(unmeasured)}: the total leaves them out "
            "(the Dagster integration records them; or call store.record_run(...))."
        )
    for f in result.features:
        for note in f.notes:
            out.print(f"Note ({escape(f.key)}): {escape(note)}.")
    out.print(f"[dim]{UPPER_BOUND_NOTE}[/dim]")
