"""User checks of a metaxy asset (``check_specs``, the translator's ``get_check_specs``): the body owes their results."""

import functools
import inspect
from collections.abc import Callable
from typing import Any

import dagster as dg

from metaxy_core.feature import BaseFeature
from metaxy_dagster.errors import MetaxyOutputError

AssetBody = Callable[..., Any]


def requiring_check_results(fn: AssetBody, names: list[str], feature: type[BaseFeature]) -> AssetBody:
    """``fn``, failing when it gives no result for one of its declared checks (``dg.asset`` does the same).

    The check runs once the body has finished, before its rows are written, so a body that forgot a
    check leaves nothing behind. The results are handed on as a generator, as the body yielded them.
    """

    @functools.wraps(fn)
    def body(**kwargs: Any) -> Any:
        result = fn(**kwargs)
        items = list(result) if inspect.isgenerator(result) else [result]
        given = {i.check_name for i in items if isinstance(i, dg.AssetCheckResult)}
        missing = [n for n in names if n not in given]
        if missing:
            raise MetaxyOutputError(
                f"The body of '{feature.spec.key}' declares checks {missing} but gave no result for them: "
                f"yield dg.AssetCheckResult(check_name='{missing[0]}', passed=...) besides the rows, or drop "
                "the check spec. Nothing was written."
            )
        return (i for i in items)

    return body
