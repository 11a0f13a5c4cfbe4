"""Render feature graphs and graph diffs: mermaid, terminal (rich), graphviz dot and JSON.

Everything renders from a :class:`~metaxy_core.snapshots.GraphSnapshot`, so a pushed snapshot
renders exactly like the graph in code. Mermaid and dot show versions shortened to 8 characters;
JSON carries them in full.

Mermaid labels are HTML (``htmlLabels``) and quote their attributes with single quotes: a double
quote inside a mermaid ``["..."]`` label ends the label early.

>>> import metaxy_core as mx
>>> with mx.FeatureGraph().use() as graph:
...     class Video(mx.BaseFeature, spec=mx.FeatureSpec(key="video/raw", id_columns=["video_id"])):
...         video_id: str
>>> print(mx.render_graph(graph, "dot", hash_length=8), end="")
digraph feature_graph {
    // Snapshot version: 3e8312c1
    rankdir=TB;
    node [shape=box, style=rounded, fontname="Helvetica"];
    "video/raw" [label="video/raw\\nv: 3fac41dd\\l---\\ldefault (v: 65256afc)\\l"];
}
"""

import io
import json
from typing import TYPE_CHECKING, Any, Literal

from metaxy_core.diff import FeatureChange, FieldChange, GraphDiff
from metaxy_core.graph import FeatureGraph
from metaxy_core.snapshots import FeatureSnapshot, GraphSnapshot, resolve_snapshot

if TYPE_CHECKING:
    from rich.console import RenderableType

    from metaxy_core.stores.base import MetadataStore

GraphFormat = Literal["mermaid", "terminal", "dot", "json"]
DiffFormat = Literal["mermaid", "terminal", "json"]
GRAPH_FORMATS: tuple[str, ...] = ("mermaid", "terminal", "dot", "json")
DIFF_FORMATS: tuple[str, ...] = ("mermaid", "terminal", "json")
SHORT = 8

_INIT = "%%{init: {'flowchart': {'htmlLabels': true, 'curve': 'basis'}, 'themeVariables': {'fontSize': '14px'}}}%%"
_RULE = "<font color='#999'>---</font>"
_OLD = "#CC0000"
_NEW = "#00AA00"
_FIELD_CHANGED = "#FFAA00"
_STROKE_CHANGED = "#FFA500"


def _short(version: str | None) -> str:
    return (version or "")[:SHORT]


def _check(fmt: str, allowed: tuple[str, ...], what: str) -> None:
    if fmt not in allowed:
        from metaxy_core.errors import MetaxyError

        raise MetaxyError(f"Unknown {what} format '{fmt}'. Use one of: {', '.join(allowed)}.")


class _NodeIds:
    """Mermaid node ids from feature keys (``example/video`` -> ``example_video``), kept unique."""

    def __init__(self) -> None:
        self._ids: dict[str, str] = {}

    def __call__(self, key: str) -> str:
        if key not in self._ids:
            base = key.replace("/", "_").replace("-", "_")
            candidate, n = base, 2
            while candidate in self._ids.values():
                candidate, n = f"{base}_{n}", n + 1
            self._ids[key] = candidate
        return self._ids[key]


# -- graph ------------------------------------------------------------------------------------------
def render_graph(
    graph: "GraphSnapshot | FeatureGraph | str | None" = None,
    format: str = "mermaid",
    *,
    store: "MetadataStore | None" = None,
    hash_length: int | None = None,
    width: int = 100,
) -> str:
    """The graph (default: the active one; or a snapshot, or ``latest`` / a version read from ``store``)
    as text in ``format``: ``mermaid``, ``terminal``, ``dot`` or ``json``."""
    _check(format, GRAPH_FORMATS, "graph render")
    snapshot = resolve_snapshot(
        graph if graph is not None else "current", store=store, hash_length=hash_length
    )
    if format == "mermaid":
        return render_mermaid(snapshot)
    if format == "dot":
        return render_dot(snapshot)
    if format == "json":
        return json.dumps(snapshot.to_dict(), indent=2)
    return to_text(graph_tree(snapshot), width=width)


def render_mermaid(snapshot: GraphSnapshot, *, direction: str = "TB") -> str:
    ids = _NodeIds()
    lines = [
        "---",
        "title: Feature Graph",
        "---",
        f"flowchart {direction}",
        f"    %% Snapshot version: {_short(snapshot.snapshot_version)}",
        f"    {_INIT}",
    ]
    for f in snapshot.features:
        fields = "".join(f"<br/>• {x.key} <small>(v: {_short(x.version)})</small>" for x in f.fields)
        label = (
            f"<div style='text-align:left'><b>{f.key}</b><br/><small>(v: {_short(f.version)})</small><br/>"
            f"{_RULE}{fields}</div>"
        )
        lines.append(f'        {ids(f.key)}["{label}"]')
    for upstream, downstream in snapshot.edges:
        lines.append(f"        {ids(upstream)} --> {ids(downstream)}")
    return "\n".join(lines) + "\n"


def render_dot(snapshot: GraphSnapshot) -> str:
    lines = [
        "digraph feature_graph {",
        f"    // Snapshot version: {_short(snapshot.snapshot_version)}",
        "    rankdir=TB;",
        '    node [shape=box, style=rounded, fontname="Helvetica"];',
    ]
    for f in snapshot.features:
        fields = "".join(f"{x.key} (v: {_short(x.version)})\\l" for x in f.fields)
        lines.append(f'    "{f.key}" [label="{f.key}\\nv: {_short(f.version)}\\l---\\l{fields}"];')
    for upstream, downstream in snapshot.edges:
        lines.append(f'    "{upstream}" -> "{downstream}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def graph_tree(snapshot: GraphSnapshot) -> "RenderableType":
    """A rich tree: one branch per feature (topological order) with its fields and upstream features."""
    from rich.tree import Tree

    title = (
        f"[bold]Feature graph[/bold] ({snapshot.label}, {len(snapshot)} features)\n"
        f"snapshot [cyan]{snapshot.snapshot_version}[/cyan]"
    )
    tree = Tree(title)
    for f in snapshot.features:
        node = tree.add(
            f"[bold]{f.key}[/bold]  [cyan]{f.version}[/cyan]" + ("  [dim](root)[/dim]" if f.is_root else "")
        )
        for x in f.fields:
            node.add(f"{x.key}  [cyan]{x.version}[/cyan]  [dim]code {x.code_version}[/dim]")
        if f.deps:
            node.add(f"[dim]depends on: {', '.join(f.deps)}[/dim]")
    return tree


def to_text(renderable: "RenderableType", *, width: int = 100) -> str:
    """Plain text of a rich renderable (no colour codes)."""
    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False, no_color=True).print(
        renderable
    )
    return buffer.getvalue()


# -- diff -------------------------------------------------------------------------------------------
def render_diff(diff: GraphDiff, format: str = "terminal", *, width: int = 100) -> str:
    """A :class:`~metaxy_core.diff.GraphDiff` as text: ``mermaid``, ``terminal`` or ``json``."""
    _check(format, DIFF_FORMATS, "graph diff")
    if format == "mermaid":
        return render_diff_mermaid(diff)
    if format == "json":
        return diff.to_json() + "\n"
    return to_text(diff_table(diff), width=width)


def _was_is(old: str | None, new: str | None) -> str:
    return f"<font color='{_OLD}'>{_short(old)}</font> → <font color='{_NEW}'>{_short(new)}</font>"


def _field_line(x: FieldChange) -> str:
    if x.status == "added":
        return f"- <font color='{_NEW}'>+ {x.key}</font> ({_short(x.new_version)})"
    if x.status == "removed":
        return f"- <font color='{_OLD}'><s>{x.key}</s></font> ({_short(x.old_version)})"
    if x.status == "changed":
        return f"- <font color='{_FIELD_CHANGED}'>{x.key}</font> ({_was_is(x.old_version, x.new_version)})"
    return f"- {x.key} ({_short(x.new_version)})"


def _diff_node(c: FeatureChange) -> tuple[str, str | None]:
    """Label and node style of one feature in the merged diff graph."""
    if c.status == "added":
        head, style = (
            f"<font color='{_NEW}'>+ {_short(c.new_version)}</font>",
            f"stroke:{_NEW},stroke-width:3px",
        )
    elif c.status == "removed":
        head = f"<font color='{_OLD}'><s>{_short(c.old_version)}</s></font>"
        style = f"stroke:{_OLD},stroke-width:3px,stroke-dasharray:5 5"
    elif c.status == "changed":
        head = (
            _was_is(c.old_version, c.new_version) if c.old_version != c.new_version else _short(c.new_version)
        )
        # Dashed: the feature's own definition did not change, only something upstream of it.
        dash = ",stroke-dasharray:5 5" if c.upstream_only else ""
        style = f"stroke:{_STROKE_CHANGED},stroke-width:3px{dash}"
    else:
        head, style = _short(c.new_version), None
    fields = "".join(f"<br/>{_field_line(x)}" for x in c.fields)
    label = f"<div style='text-align:left'><b>{c.key}</b><br/>{head}<br/>{_RULE}{fields}</div>"
    return label, style


def render_diff_mermaid(diff: GraphDiff) -> str:
    """The merged graph of both sides, coloured: changed (orange; dashed when only upstream changed),
    added (green), removed (red, dashed); changed versions shown as red old → green new."""
    ids = _NodeIds()
    lines = [
        "---",
        "title: Merged Graph Diff",
        "---",
        "flowchart TB",
        f"    %% From: {_short(diff.old.snapshot_version)} ({diff.old.label})  "
        f"To: {_short(diff.new.snapshot_version)} ({diff.new.label})",
        f"    {_INIT}",
        "",
    ]
    for change in diff.features:
        label, style = _diff_node(change)
        lines.append(f'    {ids(change.key)}["{label}"]')
        if style:
            lines.append(f"    style {ids(change.key)} {style}")
    lines.append("")
    seen: set[tuple[str, str]] = set()
    for edge in [*diff.new.edges, *diff.old.edges]:
        if edge not in seen:
            seen.add(edge)
            removed = edge not in diff.new.edges
            arrow = "-.->" if removed else "-->"
            lines.append(f"    {ids(edge[0])} {arrow} {ids(edge[1])}")
    return "\n".join(lines) + "\n"


_STATUS_STYLE = {"added": "green", "removed": "red", "changed": "yellow", "unchanged": "dim"}


def diff_table(diff: GraphDiff) -> "RenderableType":
    """A rich table: one row per feature with its status, versions and changed fields."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    title = (
        f"Graph diff {_short(diff.old.snapshot_version)} ({diff.old.label}) → "
        f"{_short(diff.new.snapshot_version)} ({diff.new.label})"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("Feature", no_wrap=True)
    table.add_column("Status")
    table.add_column("Version", no_wrap=True)
    table.add_column("Fields")
    for c in diff.features:
        status = c.status + (" (upstream)" if c.upstream_only else "")
        if c.status == "changed" and c.old_version != c.new_version:
            version = f"{_short(c.old_version)} → {_short(c.new_version)}"
        else:
            version = _short(c.new_version or c.old_version)
        parts = []
        for x in c.fields:
            if x.status == "unchanged":
                continue
            why = f" [{', '.join(x.reasons)}]" if x.reasons else ""
            if x.status == "changed":
                parts.append(f"{x.key}: {_short(x.old_version)} → {_short(x.new_version)}{why}")
            else:
                parts.append(f"{x.key}: {x.status}")
        if "spec" in c.reasons:
            parts.append("spec changed (lineage, columns, id columns, ...)")
        table.add_row(c.key, Text(status, style=_STATUS_STYLE[c.status]), version, "\n".join(parts))
    d = diff.to_dict()["summary"]
    summary = Text(
        f"{d['added']} added, {d['removed']} removed, {d['changed']} changed "
        f"({d['upstream_only']} only through upstream), {d['unchanged']} unchanged"
    )
    if not diff.has_changes:
        summary = Text("No changes.")
    return Group(table, summary)


def feature_label(f: FeatureSnapshot) -> str:
    """One-line summary of a feature (used by ``metaxy list features``)."""
    return ", ".join(f"{x.key} ({_short(x.version)})" for x in f.fields)


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2) + "\n"
