"""The ``metaxy`` application: global options, the shared context and the one error handler."""

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from cyclopts import App, Parameter
from cyclopts.exceptions import CycloptsError

if TYPE_CHECKING:
    from rich.console import Console

    from metaxy_core.config import MetaxyConfig
    from metaxy_core.graph import FeatureGraph
    from metaxy_core.stores.base import MetadataStore

app = App(
    name="metaxy",
    help="Sample-level, field-level data versioning: graph snapshots, diffs, metadata status and migrations.",
    version=lambda: __import__("metaxy_core").__version__,
)
graph_app = App(name="graph", help="Render, push, diff and list snapshots of the feature graph.")
list_app = App(name="list", help="List what the project defines.")
metadata_app = App(name="metadata", help="Inspect and delete stored metadata.")
migrations_app = App(
    name="migrations", help="Re-stamp stored provenance after output-neutral definition changes."
)
for _sub in (graph_app, list_app, metadata_app, migrations_app):
    app.command(_sub)


class CliExit(Exception):
    """Leave with ``code`` after printing ``message`` (if any) as an error."""

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(message or "")
        self.code = code
        self.message = message


@dataclass
class Context:
    """What the global options selected; config, store and graph are loaded on first use."""

    config_file: str | None = None
    store_name: str | None = None
    _config: "MetaxyConfig | None" = field(default=None, repr=False)

    def config(self) -> "MetaxyConfig":
        if self._config is None:
            import metaxy_core as mx

            cfg = mx.init(self.config_file, load_entrypoints=False)
            # Entrypoints are modules of the project: importable from its root like `python -m` would.
            for folder in (str(cfg.root), os.getcwd()):
                if folder not in sys.path:
                    sys.path.insert(0, folder)
            cfg.load_entrypoints()
            self._config = cfg
        return self._config

    def store(self) -> "MetadataStore":
        return self.config().get_store(self.store_name)

    @property
    def store_label(self) -> str:
        cfg = self.config()
        return self.store_name or cfg.store

    def graph(self, *, allow_empty: bool = False) -> "FeatureGraph":
        from metaxy_core.errors import ConfigError
        from metaxy_core.graph import FeatureGraph

        cfg = self.config()
        graph = FeatureGraph.get_active()
        if len(graph) == 0 and not allow_empty:
            if cfg.source is None:
                raise ConfigError(
                    f"No features are defined: no metaxy config was found searching up from {Path.cwd()} "
                    "(metaxy.toml, or [tool.metaxy] in pyproject.toml) and METAXY_ENTRYPOINTS is not set. "
                    'Create one with `entrypoints = ["my_project.features"]`, or pass --config PATH.'
                )
            if not cfg.entrypoints:
                raise ConfigError(
                    f"No features are defined: {cfg.source} lists no entrypoints. Add "
                    '`entrypoints = ["my_project.features"]` (modules that define your features).'
                )
            raise ConfigError(
                f"No features are defined: the entrypoints {cfg.entrypoints} (from {cfg.source}) imported fine but "
                "define no feature classes."
            )
        return graph


CTX = Context()


def stdout() -> "Console":
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def stderr() -> "Console":
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def emit(text: str) -> None:
    """Machine-readable output (json, mermaid, dot): written as is, never wrapped or styled."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


@contextmanager
def progress(description: str, total: int) -> Iterator[Any]:
    """A rich progress bar on stderr (hidden when stderr is not a terminal); yields ``advance(label)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[item]}"),
        TimeElapsedColumn(),
        console=stderr(),
        transient=True,
        disable=not sys.stderr.isatty(),
    )
    with bar:
        task = bar.add_task(description, total=total, item="")

        def advance(item: str = "", steps: int = 1) -> None:
            # steps=0 only relabels the current item (e.g. rows done within one feature)
            bar.update(task, advance=steps, item=item)

        yield advance


@app.meta.default
def _launcher(
    *tokens: Annotated[str, Parameter(show=False, allow_leading_hyphen=True)],
    config: Annotated[
        str | None,
        Parameter(
            name=["--config", "-c"],
            help="Config file (default: metaxy.toml or pyproject.toml found searching up).",
        ),
    ] = None,
    store: Annotated[
        str | None,
        Parameter(name=["--store", "-s"], help="Store name from the config (default: its `store`)."),
    ] = None,
) -> Any:
    CTX.config_file = config
    CTX.store_name = store
    CTX._config = None
    return app(tokens, exit_on_error=False, print_error=False, result_action="return_value")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it).

    Every failure goes through here: a red ``Error: ...`` on stderr and exit code 1. Set
    ``METAXY_DEBUG=1`` to get the traceback of unexpected errors instead.
    """
    # Register the commands (their modules attach themselves to the sub-apps).
    from metaxy_core.cli import graph, listing, metadata, migrations, plan  # noqa: F401
    from metaxy_core.errors import MetaxyError

    tokens = list(sys.argv[1:] if argv is None else argv)
    try:
        result = app.meta(tokens, exit_on_error=False, print_error=False, result_action="return_value")
    except CliExit as exc:
        if exc.message:
            _error(exc.message)
        return exc.code
    except CycloptsError as exc:
        _error(_cyclopts_message(exc))
        return 1
    except MetaxyError as exc:
        _error(str(exc))
        return 1
    except KeyboardInterrupt:
        _error("Interrupted.")
        return 130
    except Exception as exc:
        if os.environ.get("METAXY_DEBUG"):
            raise
        _error(f"{type(exc).__name__}: {exc} (set METAXY_DEBUG=1 for the traceback)")
        return 1
    return result if isinstance(result, int) else 0


def _cyclopts_message(exc: CycloptsError) -> str:
    message = str(exc).strip()
    return message or type(exc).__name__


def _error(message: str) -> None:
    from rich.markup import escape

    stderr().print(f"[bold red]Error:[/bold red] [red]{escape(message)}[/red]", soft_wrap=True)
