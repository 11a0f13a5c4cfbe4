"""Dagster Pipes: an external process computes a feature's rows; the metaxy asset stamps and writes them.

The step resolves the increment as usual, hands it to the external process as a parquet file, and
reads the rows the process produced back. The process never touches the metadata store, so it
needs neither metaxy nor the store's credentials: it reads one file and writes another.

What the external process receives in its Pipes ``extras``:

* ``metaxy_feature``: the feature key (``"video/stt"``);
* ``metaxy_id_columns``: the id columns its rows must carry;
* ``metaxy_increment_path``: a parquet file with the samples to compute (``increment.to_process()``),
  or None for a root feature without a samples provider (the process lists the samples itself);
* ``metaxy_rows_path``: where to write its rows as a parquet file.

Rows may instead be reported through Pipes as a custom message ``{"metaxy_rows": [{...}, ...]}``
(for small results, or a process that cannot reach the step's files). Metadata the process reports
with ``report_asset_materialization`` is kept on the materialization; the data version stays
metaxy's (a version the process reports is recorded as ``metaxy/external_data_version``).
"""

import inspect
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from metaxy_core.feature import BaseFeature
from metaxy_dagster.assets import DEFAULT_IO_MANAGER_KEY, metaxy_asset
from metaxy_dagster.errors import MetaxyOutputError
from metaxy_dagster.io_manager import MetaxyIncrement

ROWS_MESSAGE_KEY = "metaxy_rows"
"""Key of a Pipes custom message carrying rows (a list of records)."""
DEFAULT_PIPES_CLIENT_KEY = "pipes_subprocess_client"


@dataclass(frozen=True)
class MetaxyPipesResult:
    """What the external process produced: its rows, and what it reported through Pipes.

    Return ``result.as_output()`` from a metaxy asset body: the rows are stamped and written by
    metaxy, the reported metadata lands on the materialization.
    """

    rows: pl.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict)
    check_results: tuple[dg.AssetCheckResult, ...] = ()
    external_data_version: str | None = None

    def as_output(self) -> dg.Output:
        meta = dict(self.metadata)
        if self.external_data_version is not None:
            meta["metaxy/external_data_version"] = dg.MetadataValue.text(self.external_data_version)
        return dg.Output(self.rows, metadata=meta)


def run_pipes(
    context: dg.AssetExecutionContext,
    client: dg.PipesClient,
    *,
    feature: type[BaseFeature],
    increment: MetaxyIncrement | None,
    extras: Mapping[str, Any] | None = None,
    **run_kwargs: Any,
) -> MetaxyPipesResult:
    """Run ``client`` on ``increment`` and collect the rows and metadata the external process produced.

    Call it inside a :func:`metaxy_dagster.metaxy_asset` body::

        @mxd.metaxy_asset(Transcript)
        def transcripts(context, increment, pipes_subprocess_client: dg.PipesSubprocessClient):
            return mxd.run_pipes(
                context, pipes_subprocess_client, feature=Transcript, increment=increment,
                command=[sys.executable, "transcribe.py"],
            ).as_output()

    ``run_kwargs`` go to ``client.run`` (``command``, ``env``, ``cwd`` for a subprocess client);
    ``extras`` are added to metaxy's own (see the module docstring).
    """
    workdir = Path(tempfile.mkdtemp(prefix="metaxy_pipes_"))
    try:
        increment_path = None
        if increment is not None:
            increment_path = workdir / "increment.parquet"
            increment.to_process().write_parquet(increment_path)
        rows_path = workdir / "rows.parquet"
        all_extras = {
            "metaxy_feature": str(feature.spec.key),
            "metaxy_id_columns": list(feature.spec.id_columns),
            "metaxy_increment_path": None if increment_path is None else str(increment_path),
            "metaxy_rows_path": str(rows_path),
            **(extras or {}),
        }
        invocation = client.run(context=context, extras=all_extras, **run_kwargs)
        rows = _rows(feature, rows_path, invocation.get_custom_messages())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    metadata: dict[str, Any] = {}
    checks: list[dg.AssetCheckResult] = []
    version: str | None = None
    for result in invocation.get_results():
        if isinstance(result, dg.AssetCheckResult):
            checks.append(result)
        else:
            metadata.update(result.metadata or {})
            if result.data_version is not None:
                version = result.data_version.value
    return MetaxyPipesResult(rows, metadata, tuple(checks), version)


def _rows(feature: type[BaseFeature], path: Path, messages: Sequence[Any]) -> pl.DataFrame:
    if path.exists():
        return pl.read_parquet(path)
    records: list[dict[str, Any]] = []
    reported = False
    for message in messages:
        if isinstance(message, Mapping) and ROWS_MESSAGE_KEY in message:
            records.extend(message[ROWS_MESSAGE_KEY])
            reported = True
    if not reported:
        raise MetaxyOutputError(
            f"The external process for feature '{feature.spec.key}' produced no rows: write them as parquet to "
            f"extras['metaxy_rows_path'], or report them with report_custom_message({{'{ROWS_MESSAGE_KEY}': "
            "[...]}) (an empty list to write nothing). Nothing was written."
        )
    if not records:
        return pl.DataFrame({c: [] for c in feature.spec.id_columns})
    return pl.DataFrame(records)


def metaxy_pipes_asset(
    feature: type[BaseFeature],
    *,
    command: str | Sequence[str],
    client_key: str = DEFAULT_PIPES_CLIENT_KEY,
    extras: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    io_manager_key: str = DEFAULT_IO_MANAGER_KEY,
    **metaxy_asset_options: Any,
) -> dg.AssetsDefinition:
    """A metaxy asset whose rows are computed by an external process launched with a Pipes client.

    The client is the resource ``client_key`` (a ``dg.PipesSubprocessClient`` by default; any Pipes
    client whose ``run`` takes ``command``, ``env`` and ``cwd`` works). ``metaxy_asset_options`` are the
    options of :func:`metaxy_dagster.metaxy_asset` (``samples=``, ``checks=``, ``dg.asset`` options).
    Checks the process reports (``report_asset_check``) are passed on for ``check_specs`` you declare.
    """
    run_kwargs: dict[str, Any] = {"command": command}
    if env is not None:
        run_kwargs["env"] = dict(env)
    if cwd is not None:
        run_kwargs["cwd"] = cwd
    root_without_samples = not feature.spec.deps and metaxy_asset_options.get("samples") is None

    def body(context: dg.AssetExecutionContext, **kwargs: Any) -> Any:
        result = run_pipes(
            context,
            kwargs[client_key],
            feature=feature,
            increment=kwargs.get("increment"),
            extras=extras,
            **run_kwargs,
        )
        yield from result.check_results
        yield result.as_output()

    # The body's parameters name what metaxy_asset injects: the resource is matched by its name, so
    # the signature is spelled out for the chosen client key (a root without samples has no increment).
    params = [inspect.Parameter("context", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    if not root_without_samples:
        params.append(inspect.Parameter("increment", inspect.Parameter.KEYWORD_ONLY))
    params.append(
        inspect.Parameter(
            client_key, inspect.Parameter.KEYWORD_ONLY, annotation=dg.ResourceParam[dg.PipesClient]
        )
    )
    body.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    body.__annotations__ = {client_key: dg.ResourceParam[dg.PipesClient]}
    body.__name__ = f"{feature.spec.key.table_name}_pipes"
    return metaxy_asset(feature, io_manager_key=io_manager_key, **metaxy_asset_options)(body)
