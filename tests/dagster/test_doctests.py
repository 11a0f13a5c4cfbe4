"""The docstring examples in metaxy_dagster run (unlike dagster's own, which are never executed)."""

import doctest
import importlib
import pkgutil

import pytest

import metaxy_dagster

MODULES = [m.name for m in pkgutil.iter_modules(metaxy_dagster.__path__, "metaxy_dagster.")]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
